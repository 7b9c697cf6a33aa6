"""The gateway routes a request exactly as the monolith's front controller does.

Every expectation names what the PHP does (deploy/monolith/public/index.php, src/http.php);
the parameter cases were also checked against PHP 8.2's own parse_str, which fills $_GET the
same way (php_default_treat_data).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.domain.routing import (
    _COMMON_QUERIES,
    OTHER,
    PHP_MAX_INPUT_NESTING_LEVEL,
    PHP_MAX_INPUT_VARS,
    Absent,
    Route,
    RouteKind,
    classify,
    php_param,
)

FORM = "application/x-www-form-urlencoded"


def route(method: str, path: str, query: bytes = b"") -> Route:
    return classify(method, path, query, None, b"")


# --- the contract's seven endpoints -------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/v2/rooms/1/messages", Route(RouteKind.LIST, 1, None, False)),
        ("POST", "/v2/rooms/1/messages", Route(RouteKind.POST, 1)),
        ("GET", "/v2/rooms/1/messages/5", Route(RouteKind.ONE, 1, 5)),
        ("PUT", "/v2/rooms/1/messages/5", Route(RouteKind.EDIT, 1, 5)),
        ("DELETE", "/v2/rooms/1/messages/5", Route(RouteKind.DELETE, 1, 5)),
        ("PUT", "/v2/rooms/1/messages/read", Route(RouteKind.READ, 1)),
        ("PUT", "/v2/rooms/1/messages/unread", Route(RouteKind.UNREAD, 1)),
        # today's 18-digit ids and the largest room id the router takes
        ("GET", "/v2/rooms/4294967295/messages/123456789012345678",
         Route(RouteKind.ONE, 4294967295, 123456789012345678)),
    ],
)  # fmt: skip
def test_each_contract_endpoint_is_its_kind_with_its_ids(
    method: str, path: str, expected: Route
) -> None:
    assert route(method, path) == expected


@pytest.mark.parametrize(
    ("method", "path", "why"),
    [
        ("GET", "/v2/me", "stays on the monolith"),
        ("GET", "/v2/rooms", "stays on the monolith"),
        ("GET", "/v2/rooms/1", "a room, not its messages"),
        ("GET", "/v2/rooms/1/tasks", "tasks stay on the monolith"),
        ("POST", "/v2/rooms/1/tasks", "tasks stay on the monolith"),
        ("GET", "/v2/rooms/1/files", "files stay on the monolith"),
        ("GET", "/v2/contacts", "contacts stay on the monolith"),
        ("GET", "/", "not /v2/: 404"),
        ("GET", "", "no path at all"),
        ("GET", "*", "OPTIONS-style target"),
        ("GET", "/v1/rooms/1/messages", "another API version: 404"),
        ("GET", "/v2/rooms/1/messages/read", "read is PUT only: 405"),
        ("DELETE", "/v2/rooms/1/messages/read", "405: 'read' is not a message id"),
        ("PUT", "/v2/rooms/1/messages/Read", "the route is case-sensitive: 404"),
        ("PUT", "/v2/rooms/1/messages", "the collection takes GET and POST: 405"),
        ("DELETE", "/v2/rooms/1/messages", "405"),
        ("POST", "/v2/rooms/1/messages/5", "a message takes GET, PUT, DELETE: 405"),
        ("PATCH", "/v2/rooms/1/messages/5", "405"),
        ("HEAD", "/v2/rooms/1/messages", "PHP compares REQUEST_METHOD to GET: 405"),
        ("OPTIONS", "/v2/rooms/1/messages", "405"),
        ("get", "/v2/rooms/1/messages", "methods compare case-sensitively (nginx 400s them)"),
        ("Put", "/v2/rooms/1/messages/read", "methods compare case-sensitively"),
    ],
)  # fmt: skip
def test_what_the_monolith_does_not_route_as_a_message_endpoint_is_other(
    method: str, path: str, why: str
) -> None:
    assert route(method, path) is OTHER, why


# --- ids, as the router's patterns take them: room [1-9][0-9]{0,9}, message [1-9][0-9]{0,18} ---


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("/v2/rooms/0/messages", "room 0: no pattern starts with 0"),
        ("/v2/rooms/01/messages", "a leading zero: 404, not room 1"),
        ("/v2/rooms/-1/messages", "a sign: 404"),
        ("/v2/rooms/+1/messages", "a sign: 404"),
        ("/v2/rooms//messages", "an empty id: 404"),
        ("/v2/rooms/ 1/messages", "a space: 404"),
        ("/v2/rooms/1.0/messages", "not digits: 404"),
        ("/v2/rooms/1e3/messages", "not digits: 404"),
        ("/v2/rooms/0x1/messages", "not digits: 404"),
        ("/v2/rooms/\u0661/messages", "an Arabic-Indic digit: PCRE's [0-9] is ASCII"),
        ("/v2/rooms/\uff11/messages", "a full-width digit: 404"),
        ("/v2/rooms/10000000000/messages", "11 digits: beyond {0,9}, 404"),
        ("/v2/rooms/1/messages/0", "message 0: 404"),
        ("/v2/rooms/1/messages/05", "a leading zero: 404"),
        ("/v2/rooms/1/messages/-5", "a sign: 404"),
        ("/v2/rooms/1/messages/10000000000000000000", "20 digits: beyond {0,18}, 404"),
        ("/v2/rooms/1/messages/18446744073709551616", "2^64: 20 digits, 404"),
        ("/v2/rooms/1/messages/99999999999999999999999", "far beyond: 404"),
    ],
)  # fmt: skip
def test_an_id_the_router_refuses_makes_the_request_other(path: str, why: str) -> None:
    for method in ("GET", "PUT", "DELETE", "POST"):
        assert route(method, path) is OTHER, why


def test_ids_up_to_the_routers_limits_keep_their_kind_even_beyond_the_columns() -> None:
    # Ten digits pass the router although rooms.room_id is INT UNSIGNED: the monolith then
    # finds no room and answers 404, so no hint follows (hints need a 2xx).
    assert route("GET", "/v2/rooms/9999999999/messages").room_id == 9_999_999_999
    assert route("GET", "/v2/rooms/4294967296/messages").room_id == 2**32
    # Nineteen digits are the most the router takes, and always below 2^64: every routed id
    # fits a hint.
    longest = route("DELETE", "/v2/rooms/1/messages/9999999999999999999")
    assert longest == Route(RouteKind.DELETE, 1, 9_999_999_999_999_999_999)
    assert longest.message_id is not None and longest.message_id < 2**64


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("/v2/rooms/1/messages/", "a trailing slash: the patterns end at $, 404"),
        ("/v2/rooms/1/messages/5/", "a trailing slash after an id: 404"),
        ("/v2/rooms/1/messages/read/", "404"),
        ("/v2/rooms/1/messages//5", "a doubled slash: 404 (nothing normalises REQUEST_URI)"),
        ("/v2//rooms/1/messages", "a doubled slash: 404"),
        ("/v2/rooms/1/./messages", "a dot segment: 404"),
        ("/v2/rooms/1/messages/5/../6", "dot segments are not resolved: 404"),
        ("/v2/rooms/1/messages\n", "parse_url makes the newline '_': 404 (PCRE's $ would allow it)"),
        ("/v2/rooms/1/messages\r", "a control character becomes '_': 404"),
        ("/v2/rooms/1/messages\t", "404"),
        ("/v2/rooms/1/messages%0A", "not decoded: 404"),
        ("/v2/rooms/%31/messages", "REQUEST_URI is not percent-decoded: 404"),
        ("/v2/rooms/1/messages%2F5", "%2F is not a slash to PHP: 404"),
        ("/v2/rooms/1%2Fmessages", "404"),
        ("/v2/rooms/1/messages%2F", "404"),
        ("/v2/rooms/1/%6Dessages", "404"),
        ("/v2/rooms/1/messages/read%20", "404"),
        ("/v2/rooms/1/messages;x=1", "a path parameter is part of the path: 404"),
        ("/v2/rooms/1/messages:80", "404 (parse_url keeps it in the path)"),
        ("/v2/rooms/1/messagesX", "404"),
        ("/v2/rooms/1/messages\udcff", "a non-UTF-8 byte (surrogate-escaped): 404"),
        ("/v2/rooms/1/messages\u00e9", "a non-ASCII byte (latin-1 decoded): 404"),
    ],
)  # fmt: skip
def test_a_path_the_monolith_does_not_match_exactly_is_other(path: str, why: str) -> None:
    assert route("GET", path) is OTHER, why
    assert route("PUT", path) is OTHER, why


@pytest.mark.parametrize(
    "path",
    [
        "//host/v2/rooms/1/messages",  # parse_url takes "host" as the authority
        "http://host/v2/rooms/1/messages",  # absolute form
        "/v2/rooms/1/messages#fragment",  # parse_url drops the fragment
    ],
)
def test_targets_php_would_route_through_parse_url_quirks_are_other_on_purpose(path: str) -> None:
    # Deliberately not mirrored (routing.py's docstring): OTHER costs only the fast-path hint,
    # which the binlog source makes up for, and no client sends these.
    assert route("POST", path) is OTHER


def test_the_path_ends_at_the_first_question_mark_and_its_query_is_used() -> None:
    assert route("GET", "/v2/rooms/1/messages?force=1") == Route(RouteKind.LIST, 1, None, True)
    assert route("PUT", "/v2/rooms/1/messages/5?body=x") == Route(RouteKind.EDIT, 1, 5)
    assert route("PUT", "/v2/rooms/1/messages/read?") == Route(RouteKind.READ, 1)
    assert route("GET", "/v2/rooms/1/messages?x#y") == Route(RouteKind.LIST, 1, None, False)
    # A query given apart wins over one left in the path.
    assert route("GET", "/v2/rooms/1/messages?force=1", b"force=0").force is False


# --- force: $_GET merged with the form-decoded body, the body winning ---------------------------


@pytest.mark.parametrize(
    ("query", "force", "why"),
    [
        (b"", False, "absent: the default"),
        (b"force=0", False, ""),
        (b"force=1", True, ""),
        (b"force=", False, "empty: the default"),
        (b"force", False, "a name without '=' is an empty value"),
        (b"force=2", None, "400: use 0 or 1"),
        (b"force=true", None, "400"),
        (b"force=01", None, "400: compared as a string"),
        (b"force=1 ", None, "400: not trimmed"),
        (b"force=+1", None, "'+' is a space: ' 1', 400"),
        (b"force=1%00", None, "values are binary safe: '1\\0', 400"),
        (b"force=1#x", None, "a '#' in the query string is part of the value: 400"),
        (b"force=%31", True, "values are percent-decoded"),
        (b"force=%30", False, ""),
        (b"%66orce=1", True, "names are percent-decoded"),
        (b"+force=1", True, "leading spaces of a name are dropped"),
        (b"%20%20force=1", True, "leading spaces of a name are dropped"),
        (b"force%00junk=1", True, "a name ends at a decoded NUL"),
        (b"FORCE=1", False, "names are case-sensitive: absent"),
        (b"forced=1", False, "another name"),
        (b"force.=1", False, "'.' becomes '_': force_"),
        (b"force =1", False, "' ' becomes '_': force_"),
        (b"force[=1", False, "'[' without ']' becomes '_': force_"),
        (b"force[a=1", False, "force_a"),
        (b"force[]=1", None, "an array: param() answers 400"),
        (b"force%5B%5D=1", None, "an encoded array is an array"),
        (b"force[ ]=1", None, "one space inside the brackets is skipped: an array"),
        (b"force[a][b]=1", None, "a nested array"),
        (b"force[a]x=1", None, "after the first ']', what does not open '[' is dropped"),
        (b"force=1&force=0", False, "the last one wins"),
        (b"force=0&force=1", True, "the last one wins"),
        (b"force[]=1&force=1", True, "a string after the array replaces it"),
        (b"force=1&force[]=1", None, "an array after the string replaces it"),
        (b"force=1&&&", True, "empty pieces are skipped"),
        (b"&&force=1", True, ""),
        (b"=1&force=1", True, "an empty name is dropped"),
        (b"a=1;force=1", False, "';' does not separate (arg_separator.input is '&'): a='1;force=1'"),
        (b"a=%26force=1", False, "an encoded '&' is data, not a separator"),
        (b"force=1\0&force=0", True, "a raw NUL ends the input: PHP parses C strings"),
        (b"\0force=1", False, "nothing before the NUL"),
        (b"force=\xff", None, "any bytes are a value: 400"),
        (b"\xff\xfe=1&force=1", True, "non-UTF-8 names are just other names"),
        (b"body=%E3%81%82&force=1", True, ""),
        (b"force=%", None, "a lone '%' stays itself: 400"),
        (b"force=%3", None, "a '%' without two hex digits stays itself: 400"),
        (b"%6", False, "no name"),
    ],
)  # fmt: skip
def test_force_in_the_query_is_read_as_php_reads_it(
    query: bytes, force: bool | None, why: str
) -> None:
    assert route("GET", "/v2/rooms/1/messages", query).force is force, why


def test_an_array_nested_deeper_than_phps_limit_deletes_force() -> None:
    deepest = b"force=1&force" + b"[a]" * PHP_MAX_INPUT_NESTING_LEVEL + b"=2"
    too_deep = b"force=1&force" + b"[a]" * (PHP_MAX_INPUT_NESTING_LEVEL + 1) + b"=2"
    assert route("GET", "/v2/rooms/1/messages", deepest).force is None  # an array: 400
    assert route("GET", "/v2/rooms/1/messages", too_deep).force is False  # gone: the default
    # The level past the limit is counted at its '[', closed or not.
    opened = b"force=1&force" + b"[]" * PHP_MAX_INPUT_NESTING_LEVEL + b"[=2"
    assert route("GET", "/v2/rooms/1/messages", opened).force is False
    inner = b"force" + b"[]" * (PHP_MAX_INPUT_NESTING_LEVEL - 1) + b"[=2"
    assert route("GET", "/v2/rooms/1/messages", inner).force is None


def test_only_the_first_max_input_vars_pieces_count() -> None:
    last_counted = b"a=1&" * (PHP_MAX_INPUT_VARS - 1) + b"force=1"
    first_dropped = b"a=1&" * PHP_MAX_INPUT_VARS + b"force=1"
    assert route("GET", "/v2/rooms/1/messages", last_counted).force is True
    assert route("GET", "/v2/rooms/1/messages", first_dropped).force is False
    empty_pieces = b"&" * 5000 + b"force=1"  # skipped, not counted
    assert route("GET", "/v2/rooms/1/messages", empty_pieces).force is True


@pytest.mark.parametrize(
    ("query", "body", "content_type", "force", "why"),
    [
        (b"", b"force=1", FORM, True, "a form body on a GET is read (real clients send one)"),
        (b"", b"force=1", None, True, "http.php parses a GET body whatever its type..."),
        (b"", b"force=1", "", True, "...an empty type included"),
        (b"", b"force=1", "text/plain", True, "...text/plain included"),
        (b"", b"force=1", "application/octet-stream", True, ""),
        (b"force=0", b"force=1", FORM, True, "the body wins over the query"),
        (b"force=1", b"force=0", FORM, False, "the body wins over the query"),
        (b"force=1", b"force=", FORM, False, "an empty value in the body wins too: the default"),
        (b"force=1", b"force[]=1", FORM, None, "an array in the body wins: 400"),
        (b"force=1", b"other=1", FORM, True, "a body without force leaves the query's"),
        (b"force=1", b"force" + b"[a]" * 65 + b"=1", FORM, True,
         "deleted from the body's own array only: the query's stays"),
        (b"force=1", b"force=0", "multipart/form-data; boundary=x", True, "multipart: body not read"),
        (b"force=1", b"force=0", "Multipart/Form-Data", True, "the type is lowercased first"),
        (b"force=1", b"force=0", "application/json", True, "JSON: body not read"),
        (b"force=1", b"force=0", "application/vnd.api+JSON", True, "any type containing json"),
        (b"force=1", b"force=0", " multipart/form-data", False, "must start with multipart/"),
        (b"force=1", b"force=0", "text/\u212aelvin", False, "PHP lowercases ASCII only"),
        (b"", b'{"force": 1}', "application/json", False, "a JSON body is never read"),
        (b"", b"\xff\xfe\x00force=1", FORM, False, "a raw NUL ends the body"),
        (b"", b"force=1\r\n", FORM, None, "the body's bytes are the value's: 400"),
    ],
)  # fmt: skip
def test_force_in_a_get_body(
    query: bytes, body: bytes, content_type: str | None, force: bool | None, why: str
) -> None:
    got = classify("GET", "/v2/rooms/1/messages", query, content_type, body)
    assert got == Route(RouteKind.LIST, 1, None, force), why


@pytest.mark.parametrize("kind_path", [("POST", "/v2/rooms/1/messages"),
                                       ("PUT", "/v2/rooms/1/messages/read"),
                                       ("PUT", "/v2/rooms/1/messages/5"),
                                       ("GET", "/v2/rooms/1/messages/5")])  # fmt: skip
def test_force_belongs_to_the_list_only(kind_path: tuple[str, str]) -> None:
    method, path = kind_path
    # Real clients send `body` in the query string of a POST, and unknown parameters.
    got = classify(method, path, b"body=hi&force=1&self_unread=1", FORM, b"force=1")
    assert got.kind is not RouteKind.OTHER
    assert got.force is None


def test_the_common_queries_answered_without_parsing_are_what_parsing_gives() -> None:
    for query, force in _COMMON_QUERIES.items():
        parsed = php_param(query, b"force")
        assert (parsed == b"1") is force
        assert parsed in (Absent.ABSENT, b"0", b"1")


def test_php_param_tells_absent_from_empty_from_array() -> None:
    assert php_param(b"a=1", b"force") is Absent.ABSENT
    assert php_param(b"force", b"force") == b""
    assert php_param(b"force[]=1", b"force") is None
    assert php_param(b"message_id=%31%32", b"message_id") == b"12"


# --- never raises ------------------------------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "get", ""])
    | st.text(max_size=8),
    path=st.one_of(
        st.text(max_size=60),
        st.builds(
            lambda tail: "/v2/rooms/1/messages" + tail,
            st.text(alphabet="/?#%0123456789readun&=[] \n\x00", max_size=20),
        ),
    ),
    query=st.binary(max_size=80),
    content_type=st.none() | st.text(max_size=30),
    body=st.binary(max_size=80),
)
def test_classify_never_raises_and_keeps_its_invariants(
    method: str, path: str, query: bytes, content_type: str | None, body: bytes
) -> None:
    got = classify(method, path, query, content_type, body)
    if got.kind is RouteKind.OTHER:
        assert got == OTHER
        return
    assert got.room_id is not None and 0 < got.room_id < 10**10
    if got.kind in (RouteKind.ONE, RouteKind.EDIT, RouteKind.DELETE):
        assert got.message_id is not None and 0 < got.message_id < 2**64
    else:
        assert got.message_id is None
    if got.kind is not RouteKind.LIST:
        assert got.force is None


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [b"force", b"=", b"&", b"[", b"]", b"%5B", b"%66", b"%00", b"\0", b"+", b" ", b".",
             b"0", b"1", b"%", b"a", b"%26"]
        ),
        max_size=16,
    ).map(b"".join)
)  # fmt: skip
def test_php_param_never_raises(data: bytes) -> None:
    value = php_param(data, b"force")
    assert value is Absent.ABSENT or value is None or isinstance(value, bytes)
