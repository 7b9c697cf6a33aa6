"""`chat-read-api`: the new core's Read API, the contract's message reads over HTTP (FastAPI).

Thin: it turns a request into the use case's input the way the PHP monolith reads it (the raw
path against the monolith's route patterns, parameters from the query string and a form body
alike, as `$_REQUEST` does), calls one use case (`newcore/service/reads.py`, where the checks,
their order and the frontier are), and writes the answer the way the monolith writes it:
`Content-Type: application/json; charset=utf-8`, PHP's `json_encode` with unescaped slashes and
Unicode (U+2028 and U+2029 still escaped, as PHP does), a 204 with no body and no type.

Headers (gateway/README.md, "Shadow reads"):
- `X-Migration-Shadow: 1` asks for the shadow variant: no hold-back at the frontier (never a
  side effect: no read of this API moves anything).
- `X-Migration-After: <id>`, with the shadow variant and `force=0`: answer as if the account's
  fetch cursor were at `<id>`.
- `X-Migration-Room-Position: <n>` on every answer: the room's applied position in the read
  model, read before the data (so the data is at least that new); -1 when none is known (the
  room has no event applied, the path names no room, or the read model could not be asked).

Also `GET /healthz` (200, or 503 naming what cannot be reached: the read model, the directory)
and `GET /metrics` (Prometheus: requests by route and status, latency by route).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager, asynccontextmanager
from functools import partial
from typing import Annotated, Any
from urllib.parse import unquote_to_bytes

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response
from prometheus_client import Counter, Histogram, make_asgi_app
from starlette.concurrency import run_in_threadpool
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from legacy_adapters.settings import LegacyDatabaseSettings
from newcore import bootstrap
from newcore.adapters.ops import AsgiEndpoint, configure_logging
from newcore.service.reads import (
    NO_POSITION,
    RESOURCE_NOT_FOUND,
    Answer,
    ArrayParam,
    ListRequest,
    MessageRequest,
    Param,
    Reads,
    errors,
)
from newcore.settings import NewCoreSettings, SettingsError, read

TOKEN = "X-ChatWorkToken"  # noqa: S105 (a header's name)
SHADOW = "X-Migration-Shadow"
AFTER = "X-Migration-After"
ROOM_POSITION = "X-Migration-Room-Position"
JSON_TYPE = "application/json; charset=utf-8"  # the monolith's, exactly (src/http.php)

_LATENCY = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
REQUESTS = Counter(
    "chat_read_api_requests_total", "Requests answered, by route and status", ["route", "status"]
)
SECONDS = Histogram(
    "chat_read_api_request_seconds", "From the request to its answer's last byte, by route",
    ["route"], buckets=_LATENCY,
)  # fmt: skip

# The raw path (still percent-encoded, as PHP's REQUEST_URI) of the two reads; the segments are
# checked against the monolith's id patterns by the use case, after the token.
RAW_LIST = re.compile(r"/v2/rooms/(?P<room>[^/]*)/messages")
RAW_MESSAGE = re.compile(r"/v2/rooms/(?P<room>[^/]*)/messages/(?P<message>[^/]*)")
RAW_ROOM = re.compile(r"/v2/rooms/(?P<room>[^/]*)/")
# The monolith's message routes (public/index.php): a request to one of these paths that is not
# one of the two reads gets 405, as the monolith answers a known path with another method.
_ROOM, _MESSAGE = r"[1-9][0-9]{0,9}", r"[1-9][0-9]{0,18}"
MESSAGE_PATHS = re.compile(rf"/v2/rooms/{_ROOM}/messages(/(read|unread|{_MESSAGE}))?")


# -- PHP's ways ------------------------------------------------------------------------------

_LINE_TERMINATORS = str.maketrans({"\u2028": "\\u2028", "\u2029": "\\u2029"})
_SURROGATES = re.compile("[\ud800-\udfff]")


def php_json(payload: Any) -> bytes:
    """`json_encode($payload, JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES |
    JSON_INVALID_UTF8_SUBSTITUTE)`, byte for byte: no spaces, keys in order, `/` and non-ASCII
    text as they are, control characters escaped (`\\n`, `\\u0001`), U+2028 and U+2029 escaped
    (PHP does so without JSON_UNESCAPED_LINE_TERMINATORS), and what UTF-8 cannot hold (a lone
    surrogate) as U+FFFD."""
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    text = text.translate(_LINE_TERMINATORS)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATES.sub("\ufffd", text).encode("utf-8")


def _urldecode(raw: bytes) -> str:
    return unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8", "surrogateescape")


def php_name(key: str) -> tuple[str, bool] | None:
    """A parameter's name as PHP registers it, and whether it is an array (`a[]`, `a[x]`);
    None for a name PHP drops. Leading spaces go, ` ` and `.` become `_`; a `[` with no `]`
    after it is no array: it becomes `_` too, as do ` `, `.` and `[` after it."""
    key = key.split("\x00", 1)[0].lstrip(" ")
    base: list[str] = []
    for i, char in enumerate(key):
        if char == "[":
            if not base:
                return None
            rest = key[i + 1 :]
            if "]" in rest:
                return "".join(base), True
            return "".join(base) + "_" + re.sub(r"[ .\[]", "_", rest), False
        base.append("_" if char in " ." else char)
    return ("".join(base), False) if base else None


def php_parse_str(data: bytes) -> dict[str, Param]:
    """`parse_str` (and `$_GET`): `&`-separated `name=value` pairs, url-decoded (`+` is a
    space); a later pair overwrites an earlier one of the same name; an array is an ArrayParam."""
    params: dict[str, Param] = {}
    for pair in data.split(b"&"):
        if not pair:
            continue
        raw_key, _, raw_value = pair.partition(b"=")
        named = php_name(_urldecode(raw_key))
        if named is None:
            continue
        name, is_array = named
        params[name] = ArrayParam() if is_array else _urldecode(raw_value)
    return params


def php_params(query: bytes, body: bytes, content_type: str | None) -> dict[str, Param]:
    """Parameters as the monolith takes them (src/http.php, `request_params`): the query
    string, then a body that is neither multipart nor JSON parsed as a form, which wins."""
    params = php_parse_str(query)
    kind = (content_type or "").lower()
    if body and not kind.startswith("multipart/") and "json" not in kind:
        params.update(php_parse_str(body))
    return params


def raw_path(request: Request) -> str:
    """The path as the client sent it, percent-encoding kept (PHP routes on REQUEST_URI)."""
    raw = request.scope.get("raw_path")
    if isinstance(raw, bytes):
        return raw.decode("latin-1").split("?", 1)[0]
    return request.url.path


def render(answer: Answer) -> Response:
    headers = {ROOM_POSITION: str(answer.room_position)}
    if answer.payload is None:
        return Response(status_code=answer.status, headers=headers)
    return Response(php_json(answer.payload), answer.status, headers, media_type=JSON_TYPE)


# -- the app ---------------------------------------------------------------------------------


def get_reads(request: Request) -> Reads:
    """The use cases the lifespan built (tests override this dependency)."""
    reads: Reads = request.app.state.reads
    return reads


ReadsDep = Annotated[Reads, Depends(get_reads)]

messages = APIRouter()


@messages.get("/v2/rooms/{room_id}/messages")
async def list_messages(request: Request, reads: ReadsDep) -> Response:
    token = request.headers.get(TOKEN)
    matched = RAW_LIST.fullmatch(raw_path(request))
    if matched is None:  # `%2F` in the raw path: not this route for the monolith
        return await unrouted(request, reads)
    params = php_params(
        request.scope.get("query_string", b""), await request.body(),
        request.headers.get("content-type"),
    )  # fmt: skip
    asked = ListRequest(
        token, matched["room"], params.get("force"),
        shadow=request.headers.get(SHADOW) == "1", after=request.headers.get(AFTER),
    )  # fmt: skip
    return render(await run_in_threadpool(reads.list_messages, asked))


@messages.get("/v2/rooms/{room_id}/messages/{message_id}")
async def one_message(request: Request, reads: ReadsDep) -> Response:
    matched = RAW_MESSAGE.fullmatch(raw_path(request))
    if matched is None:
        return await unrouted(request, reads)
    asked = MessageRequest(request.headers.get(TOKEN), matched["room"], matched["message"])
    return render(await run_in_threadpool(reads.message, asked))


@messages.api_route(
    "/{path:path}", methods=["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
)
async def elsewhere(request: Request, reads: ReadsDep) -> Response:
    return await unrouted(request, reads)


async def unrouted(request: Request, reads: Reads) -> Response:
    """What the monolith answers where neither read is: 404 outside /v2/ (before the token),
    else 401 for a bad token, 405 on a message path (another method: writes are not taken
    here), 404 elsewhere."""
    path = raw_path(request)
    if not path.startswith("/v2/"):
        return render(errors(404, RESOURCE_NOT_FOUND, NO_POSITION))
    room = RAW_ROOM.match(path)
    answer = await run_in_threadpool(
        partial(
            reads.unrouted, request.headers.get(TOKEN),
            known_path=MESSAGE_PATHS.fullmatch(path) is not None,
            room=None if room is None else room["room"],
        )
    )  # fmt: skip
    return render(answer)


ops = APIRouter()


@ops.get("/healthz", include_in_schema=False)
async def healthz(reads: ReadsDep) -> Response:
    state = await run_in_threadpool(reads.health)
    state["checked_at"] = round(time.time(), 3)
    body = json.dumps(state, ensure_ascii=False, default=str)
    return Response(body, 200 if state["ok"] else 503, media_type="application/json")


class Measured:
    """Counts every answer by route template (never the raw path: ids would make the labels
    unbounded) and status, and its latency by route."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", None)
            label = "other" if route is None or route == "/{path:path}" else route
            REQUESTS.labels(label, str(status)).inc()
            SECONDS.labels(label).observe(time.perf_counter() - started)


async def internal_error(request: Request, exc: Exception) -> Response:
    """As the monolith answers what it did not expect: 500, `Internal server error`."""
    return render(errors(500, "Internal server error", NO_POSITION))


def create_app(build: Callable[[], AbstractContextManager[Reads]]) -> FastAPI:
    """The Read API. `build` makes the use cases when the app starts and closes what they hold
    when it stops (`bootstrap.read_api` in production; tests pass their own)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with build() as reads:
            app.state.reads = reads
            yield

    app = FastAPI(
        title="chat-read-api", lifespan=lifespan, redirect_slashes=False,
        openapi_url=None, docs_url=None, redoc_url=None,
    )  # fmt: skip
    app.router.routes.append(Route("/metrics", AsgiEndpoint(make_asgi_app()), methods=["GET"]))
    app.include_router(ops)
    app.include_router(messages)  # last: its catch-all takes whatever no other route does
    app.add_exception_handler(Exception, internal_error)
    app.add_middleware(Measured)
    return app


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(
        prog="chat-read-api",
        description="The new core's Read API: GET /v2/rooms/{room}/messages (force 0/1) and "
        "GET /v2/rooms/{room}/messages/{message}, answered from the HBase read model as the "
        "monolith answers them; names, tokens and memberships from the monolith's database. "
        "No read moves a cursor. Headers: X-Migration-Shadow: 1 (no hold-back), "
        "X-Migration-After (shadow force=0), X-Migration-Room-Position on every answer. "
        "Settings: MIG_READ_API_* (host, port, settle_s, db_pool_size), MIG_HBASE_*, "
        "MIG_MARIADB_*, MIG_DB_*. Also GET /healthz and /metrics. Exit 2: a bad setting.",
    ).parse_args(argv)
    try:
        settings = NewCoreSettings.from_env()
        database = read(LegacyDatabaseSettings)
    except SettingsError as exc:
        print(f"chat-read-api: {exc}", file=sys.stderr)
        return 2
    log = configure_logging("read-api")
    s = settings.read_api
    log.info("starting", extra={"host": s.host, "port": s.port, "settle_s": s.settle_s})
    uvicorn.run(
        create_app(partial(bootstrap.read_api, settings, database)), host=s.host, port=s.port,
        log_config=None, access_log=False, server_header=False, lifespan="on",
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
