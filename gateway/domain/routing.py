"""Which contract endpoint a request is, read exactly as the monolith reads it.

The gateway hints and shadows only what the monolith itself routes as a message endpoint, so
this module mirrors the stand-in's front controller (deploy/monolith/public/index.php) and its
parameter parsing (deploy/monolith/src/http.php, PHP 8.2's own query-string parser), not the
contract's prose. Whatever the monolith's router refuses (404 unknown path, 405 wrong method)
is `OTHER`: passed through untouched, never hinted, never shadowed.

Paths (index.php: `parse_url(REQUEST_URI, PHP_URL_PATH)`, then `preg_match` per route):

- The path is the raw request target up to its first `?`. It is never percent-decoded (PHP
  matches REQUEST_URI as sent), so `/v2/rooms/%31/messages` and `.../messages%2F5` are 404
  there and `OTHER` here.
- A room id is `[1-9][0-9]{0,9}`, a message id `[1-9][0-9]{0,18}`: no leading zero, no sign,
  no empty id, at most 10 and 19 digits. A room id above 2^32-1 (the column is INT UNSIGNED)
  passes the router and meets no room (404): it keeps its kind here, since the refusal comes
  from the data like any unknown room, and a hint only ever follows a 2xx (capture.py). A
  19-digit message id is below 2^64, so every routed id fits a hint.
- The match is to the end of the path: a trailing slash, a trailing newline (parse_url turns
  control characters into `_`) or anything after the id is 404 there, `OTHER` here.
- Methods match case-sensitively, as PHP compares REQUEST_METHOD (nginx refuses lower case
  methods before PHP sees them). HEAD is 405 there, `OTHER` here.
- Deliberately `OTHER` although PHP would route them, because parse_url's authority and
  fragment handling has failure modes not worth mirroring and `OTHER` only costs the fast-path
  hint (the binlog source captures every committed write whoever made it): a target starting
  with `//` or with a scheme (`//host/v2/...`, `http://host/v2/...`: PHP takes the path after
  the authority) and a fragment in the path (`/v2/rooms/1/messages#x`). No client sends
  these, and the front door routes on nginx's normalised path, so they do not reach us anyway.

`force` (GET .../messages, `flag_param('force', false)` in http.php):

- Parameters are the query string (`$_GET`) merged with the form-decoded body, the body
  winning; for a GET the body is parsed whatever the Content-Type says (real clients send
  `application/x-www-form-urlencoded` on GETs), unless it starts with `multipart/` or contains
  `json` (ASCII case-insensitive). Absent or empty: the default, `False`; `"0"` or `"1"`: that;
  anything else, an array (`force[]=1`) included: the monolith answers 400, and the route says
  `force=None`.
- PHP's parser, mirrored for the one name we read: `&` separates, empty pieces are skipped,
  `+` and `%XX` decode in names and values, a name stops at a raw or decoded NUL byte (a raw
  NUL ends the whole input: PHP parses C strings), leading spaces of a name are dropped,
  `force[...]` is an array while `force[` without `]` is another name (`force_`), the last
  occurrence wins, an array nested deeper than 64 levels deletes the variable, and only the
  first 1000 pieces count (max_input_vars; the stand-in runs with PHP's defaults).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Final, Literal
from urllib.parse import unquote_to_bytes

# PHP's defaults (php.ini leaves them commented out on the stand-in): deploy/web.sh's pool.
PHP_MAX_INPUT_VARS: Final = 1000
PHP_MAX_INPUT_NESTING_LEVEL: Final = 64


class RouteKind(StrEnum):
    LIST = "list"  # GET    /v2/rooms/{room}/messages
    ONE = "one"  # GET    /v2/rooms/{room}/messages/{message}
    POST = "post"  # POST   /v2/rooms/{room}/messages
    EDIT = "edit"  # PUT    /v2/rooms/{room}/messages/{message}
    DELETE = "delete"  # DELETE /v2/rooms/{room}/messages/{message}
    READ = "read"  # PUT    /v2/rooms/{room}/messages/read
    UNREAD = "unread"  # PUT    /v2/rooms/{room}/messages/unread
    OTHER = "other"  # anything else: passed through, nothing more


@dataclass(frozen=True, slots=True)
class Route:
    """What a request is to the monolith's router.

    `room_id` is set for every kind but `OTHER`; `message_id` for `ONE`, `EDIT` and `DELETE`.
    `force` is set for `LIST` only: `True`/`False` as the monolith reads it, `None` when the
    monolith refuses the value (400); it is `None` for every other kind.
    """

    kind: RouteKind
    room_id: int | None = None
    message_id: int | None = None
    force: bool | None = None


OTHER: Final = Route(RouteKind.OTHER)
_LIST: Final = RouteKind.LIST  # an Enum attribute costs a lookup through its class on 3.11

# index.php's route table, as one expression over the path up to its first '?'.
_MESSAGES_PATH: Final = re.compile(
    r"/v2/rooms/([1-9][0-9]{0,9})/messages(?:/(?:(read|unread)|([1-9][0-9]{0,18})))?"
)
# (method, what follows .../messages) -> kind; "" is the collection, "id" a message id.
_KINDS: Final = {
    ("GET", ""): RouteKind.LIST,
    ("POST", ""): RouteKind.POST,
    ("GET", "id"): RouteKind.ONE,
    ("PUT", "id"): RouteKind.EDIT,
    ("DELETE", "id"): RouteKind.DELETE,
    ("PUT", "read"): RouteKind.READ,
    ("PUT", "unread"): RouteKind.UNREAD,
}


def classify(method: str, path: str, query: bytes, content_type: str | None, body: bytes) -> Route:
    """The route of one request; never raises, whatever the bytes.

    `path` is the raw request target (mitmproxy's `flow.request.path`), with or without its
    query string: the path ends at the first `?`. `query` is the raw query string; when it is
    empty and `path` carries one, that one is used. `content_type` is the first Content-Type
    header as sent (nginx passes the first to PHP), `body` the raw body as sent
    (`flow.request.raw_content`: PHP parses php://input, no content decoding). The body is
    looked at only for a GET of the message list, and only when `force` may be in it.
    """
    question = path.find("?")
    if question >= 0:
        if not query:
            query = path[question + 1 :].encode("utf-8", "surrogateescape")
        path = path[:question]
    match = _MESSAGES_PATH.fullmatch(path)
    if match is None:
        return OTHER
    room, tail, message = match.groups()
    kind = _KINDS.get((method, tail or ("id" if message else "")))
    if kind is None:
        return OTHER
    if kind is _LIST:
        return Route(kind, int(room), None, _force(query, content_type, body))
    return Route(kind, int(room), int(message) if message else None)


def _force(query: bytes, content_type: str | None, body: bytes) -> bool | None:
    value: bytes | Literal[Absent.ABSENT] | None = _ABSENT
    if body and _body_is_parsed(content_type):
        value = php_param(body, b"force")
    if value is _ABSENT:
        common = _COMMON_QUERIES.get(query)
        if common is not None:
            return common
        value = php_param(query, b"force")
    if value is _ABSENT or value == b"" or value == b"0":
        return False
    if value == b"1":
        return True
    return None  # another string, or an array: 400 "Invalid value for parameter 'force'"


# What real clients send, answered without parsing (php_param agrees: a test holds it).
_COMMON_QUERIES: Final = {b"": False, b"force=0": False, b"force=1": True}


def _body_is_parsed(content_type: str | None) -> bool:
    """http.php parses a non-POST body unless its type is multipart or JSON (strtolower is
    ASCII-only in PHP 8.2, hence no str.lower(): it maps the Kelvin sign to 'k')."""
    if not content_type:
        return True
    lowered = content_type.translate(_ASCII_LOWER)
    return not lowered.startswith("multipart/") and "json" not in lowered


_ASCII_LOWER: Final = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}


class Absent(Enum):
    """A parameter that is not there (never given, or deleted by PHP's nesting limit)."""

    ABSENT = "absent"


_ABSENT: Final = Absent.ABSENT


def php_param(data: bytes, name: bytes) -> bytes | Literal[Absent.ABSENT] | None:
    """One parameter of a query string or form body as PHP 8.2's parser leaves it.

    Returns its value as bytes, `None` when it ends up an array (`name[]=...`), or the
    module's unset marker when it is not there. `name` must be a plain name (no space, dot,
    bracket, NUL or leading space), as every contract parameter is.
    """
    nul = data.find(b"\0")
    if nul >= 0:
        data = data[:nul]  # PHP parses a C string: a raw NUL ends the input
    if name not in data and b"%" not in data:
        return _ABSENT  # fast path: the name can be neither written nor encoded in there
    value: bytes | Literal[Absent.ABSENT] | None = _ABSENT
    count = 0
    for piece in data.split(b"&"):
        if not piece:
            continue  # strtok skips empty pieces, and they do not count
        count += 1
        if count > PHP_MAX_INPUT_VARS:
            break
        raw_name, equals, raw_value = piece.partition(b"=")
        if raw_name == name:  # the common spelling, decoded the long way below otherwise
            value = _url_decode(raw_value) if equals else b""
            continue
        if name not in raw_name and b"%" not in raw_name:
            continue
        variable = _url_decode(raw_name)
        nul = variable.find(b"\0")
        if nul >= 0:
            variable = variable[:nul]
        variable = variable.lstrip(b" ")
        if not variable.startswith(name):
            continue
        rest = variable[len(name) :]
        if not rest:
            value = _url_decode(raw_value) if equals else b""
            continue
        if rest[:1] != b"[":
            continue  # another name ("forced"; "force." and "force " become "force_")
        shape = _array_shape(rest)
        if shape is _NOT_OURS:
            continue
        value = None if shape is _ARRAY else _ABSENT
    return value


_ARRAY: Final = object()
_NOT_OURS: Final = object()
_DELETED: Final = object()


def _array_shape(brackets: bytes) -> object:
    """What `name` + `brackets` (which starts with `[`) does to `name` in PHP's
    php_register_variable_ex: makes it an array, deletes it (nesting beyond the limit), or
    names another variable (a first `[` without its `]` becomes `_`)."""
    at = 0  # at a '['
    level = 0
    while True:
        level += 1
        if level > PHP_MAX_INPUT_NESTING_LEVEL:
            return _DELETED
        at += 1
        if brackets[at : at + 1] == b" ":
            at += 1
        if brackets[at : at + 1] != b"]":
            at = brackets.find(b"]", at)
            if at < 0:
                return _NOT_OURS if level == 1 else _ARRAY
        at += 1
        if brackets[at : at + 1] != b"[":
            return _ARRAY


def _url_decode(raw: bytes) -> bytes:
    """php_url_decode: `+` is a space, `%XX` a byte, a `%` without two hex digits itself."""
    if b"+" in raw:
        raw = raw.replace(b"+", b" ")
    if b"%" in raw:
        raw = unquote_to_bytes(raw)
    return raw
