"""The Read API over HTTP (in process, httpx's ASGI transport, the app's own lifespan): PHP's
ways of reading a request and writing JSON, the routes the monolith knows, the headers of the
shadow variant, /healthz and /metrics."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from legacy_adapters.adapters.embedded.memory_monolith import InMemoryMonolith
from newcore.adapters.embedded.sqlite_read_store import SqliteReadStore
from newcore.domain.events import CursorMoved, MessageUpserted
from newcore.domain.model import Message, ReadCursor
from newcore.entrypoints import read_api
from newcore.entrypoints.read_api import (
    ROOM_POSITION,
    create_app,
    get_reads,
    php_json,
    php_params,
    php_parse_str,
)
from newcore.errors import ReadStoreUnavailable
from newcore.service.reads import ArrayParam, Reads

ROOM, ALICE, NOW = 42, 7, 1_800_000_000.0
JSON = "application/json; charset=utf-8"


class Client:
    """The app started as uvicorn would (lifespan on), asked over httpx in one event loop."""

    def __init__(self, app: Any, runner: asyncio.Runner) -> None:
        self.app = app
        self._runner = runner
        self._http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
            base_url="http://read-api",
        )

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self._runner.run(self._http.request(method, url, **kwargs))

    def get(self, url: str, token: str | None = "alice", **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["X-ChatWorkToken"] = token
        return self.request("GET", url, headers=headers, **kwargs)

    def close(self) -> None:
        self._runner.run(self._http.aclose())


@contextmanager
def serving(build: Callable[[], Any]) -> Iterator[Client]:
    app = create_app(build)
    with asyncio.Runner() as runner:
        lifespan = app.router.lifespan_context(app)
        runner.run(lifespan.__aenter__())
        client = Client(app, runner)
        try:
            yield client
        finally:
            client.close()
            runner.run(lifespan.__aexit__(None, None, None))


@pytest.fixture
def store() -> Iterator[SqliteReadStore]:
    store = SqliteReadStore(":memory:")
    yield store
    store.close()


@pytest.fixture
def directory() -> InMemoryMonolith:
    directory = InMemoryMonolith()
    directory.add_room(ROOM)
    directory.add_account(ALICE, "佐藤", None, "alice")
    directory.add_member(ROOM, ALICE, "member")
    return directory


@pytest.fixture
def api(store: SqliteReadStore, directory: InMemoryMonolith) -> Iterator[Client]:
    reads = Reads(store, directory, settle_s=3, clock=lambda: NOW)

    @contextmanager
    def build() -> Iterator[Reads]:
        yield reads

    with serving(build) as client:
        yield client


def post(store: SqliteReadStore, message_id: int, body: str = "x", age_s: float = 60) -> None:
    message = Message(ROOM, message_id, ALICE, body, math.floor(NOW - age_s), 0)
    store.apply([MessageUpserted(message, message_id, 1)])


# -- PHP's ways -----------------------------------------------------------------------------------


def test_json_is_phps_json_encode_byte_for_byte() -> None:
    # php -r 'echo json_encode(["a"=>"\u{2028}\u{2029}/é\x01\x7f\t\"\\\u{1F600}", "b"=>[],
    #   "c"=>1, "d"=>"\xff"], JSON_UNESCAPED_UNICODE|JSON_UNESCAPED_SLASHES|JSON_INVALID_UTF8_SUBSTITUTE);'
    payload = {"a": '\u2028\u2029/é\x01\x7f\t"\\\U0001f600', "b": [], "c": 1, "d": "\udcff"}
    expected = '{"a":"\\u2028\\u2029/é\\u0001\x7f\\t\\"\\\\😀","b":[],"c":1,"d":"\ufffd"}'
    assert php_json(payload) == expected.encode("utf-8")
    assert php_json({"errors": ["Invalid API token"]}) == b'{"errors":["Invalid API token"]}'
    assert php_json([]) == b"[]"


def test_parameter_names_as_php_registers_them() -> None:
    # php -r 'parse_str("a.b=1&c[=2& force=3&d[x=4&e]=5&f[a.b=6&g[]x=7&h%5B%5D=8&=9&[]=10&i+j=11
    #   &k[[]]=12&l=1&l[]=2&m[]=1&m=3&n", $o); var_export($o);'
    query = (
        b"a.b=1&c[=2& force=3&d[x=4&e]=5&f[a.b=6&g[]x=7&h%5B%5D=8&=9&[]=10&i+j=11"
        b"&k[[]]=12&l=1&l[]=2&m[]=1&m=3&n"
    )
    assert php_parse_str(query) == {
        "a_b": "1", "c_": "2", "force": "3", "d_x": "4", "e]": "5", "f_a_b": "6",
        "g": ArrayParam(), "h": ArrayParam(), "i_j": "11", "k": ArrayParam(), "l": ArrayParam(),
        "m": "3", "n": "",
    }  # fmt: skip


def test_a_form_body_wins_over_the_query_unless_multipart_or_json() -> None:
    assert php_params(b"force=1", b"force=0", None) == {"force": "0"}
    form = "application/x-www-form-urlencoded"
    assert php_params(b"force=1", b"force[]=0", form) == {"force": ArrayParam()}
    assert php_params(b"force=1", b'{"force": 0}', "application/json") == {"force": "1"}
    assert php_params(b"force=1", b"force=0", "multipart/form-data; boundary=x") == {"force": "1"}
    assert php_params(b"", b"", None) == {}


# -- the routes ----------------------------------------------------------------------------------


def test_force_1_as_the_monolith_writes_it(api: Client, store: SqliteReadStore) -> None:
    post(store, 1, "a/b [To:7]\n😀")
    answer = api.get(f"/v2/rooms/{ROOM}/messages", params={"force": "1"})
    assert answer.status_code == 200
    assert answer.headers["content-type"] == JSON
    assert answer.headers[ROOM_POSITION] == "1"
    assert (
        answer.content
        == (
            '[{"message_id":"1","account":{"account_id":7,"name":"佐藤","avatar_image_url":'
            '"https://appdata.chatwork.com/avatar/ico_default_blue.png"},"body":"a/b [To:7]\\n😀",'
            f'"send_time":{math.floor(NOW - 60)},"update_time":0}}]'
        ).encode()
    )
    one = api.get(f"/v2/rooms/{ROOM}/messages/1")
    assert (one.status_code, one.json()) == (200, answer.json()[0])


def test_nothing_new_is_204_with_no_body_and_no_type(api: Client, store: SqliteReadStore) -> None:
    answer = api.get(f"/v2/rooms/{ROOM}/messages")
    assert (answer.status_code, answer.content) == (204, b"")
    assert "content-type" not in answer.headers
    assert answer.headers[ROOM_POSITION] == "-1"


def test_parameters_come_from_a_get_body_too(api: Client) -> None:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    answer = api.get(f"/v2/rooms/{ROOM}/messages?force=1", content=b"force=2", headers=form)
    assert (answer.status_code, answer.json()) == (
        400, {"errors": ["Invalid value for parameter 'force': use 0 or 1"]}
    )  # fmt: skip
    answer = api.get(f"/v2/rooms/{ROOM}/messages?force[]=1")
    assert answer.json() == {"errors": ["Invalid value for parameter 'force'"]}
    answer = api.get(f"/v2/rooms/{ROOM}/messages?force=2&unknown=1", content=b"force=1")
    assert answer.status_code == 200  # the body won; unknown parameters are ignored


@pytest.mark.parametrize(
    ("method", "path", "token", "status", "error"),
    [
        ("GET", f"/v2/rooms/{ROOM}/messages", None, 401, "Invalid API token"),
        ("GET", f"/v2/rooms/{ROOM}/messages", "wrong", 401, "Invalid API token"),
        ("GET", "/v2/rooms/abc/messages", None, 401, "Invalid API token"),
        ("GET", "/v2/rooms/abc/messages", "alice", 404, "Resource not found"),
        ("GET", "/v2/rooms/0/messages", "alice", 404, "Resource not found"),
        ("GET", "/v2/rooms/%34%32/messages", "alice", 404, "Resource not found"),  # raw: not digits
        ("GET", "/v2/rooms/4%2F2/messages", "alice", 404, "Resource not found"),
        ("GET", f"/v2/rooms/{ROOM}/messages/", "alice", 404, "Resource not found"),  # no redirect
        ("GET", f"/v2/rooms/{ROOM}/messages/abc", "alice", 404, "Resource not found"),
        ("GET", f"/v2/rooms/{ROOM}/messages/0123", "alice", 404, "Resource not found"),
        ("GET", f"/v2/rooms/{ROOM}/messages/5", "alice", 404, "Message not found"),
        ("GET", f"/v2/rooms/{ROOM}/messages/read", "alice", 405, "Method not allowed"),
        ("GET", "/v2/rooms/99/messages", "alice", 404, "Room not found"),
        ("GET", "/v2/rooms/99/messages/1", "alice", 404, "Room not found"),
        ("GET", "/v2/me", "alice", 404, "Resource not found"),  # stays on the monolith
        ("GET", "/v2/me", None, 401, "Invalid API token"),
        ("POST", f"/v2/rooms/{ROOM}/messages", "alice", 405, "Method not allowed"),
        ("PUT", f"/v2/rooms/{ROOM}/messages/read", "alice", 405, "Method not allowed"),
        ("DELETE", f"/v2/rooms/{ROOM}/messages/1", "alice", 405, "Method not allowed"),
        ("DELETE", f"/v2/rooms/{ROOM}/messages/1", None, 401, "Invalid API token"),
        ("GET", "/", None, 404, "Resource not found"),
        ("GET", "/docs", "alice", 404, "Resource not found"),
        ("POST", "/healthz", None, 404, "Resource not found"),
    ],
)
def test_errors_as_the_monolith_answers_them(
    api: Client, method: str, path: str, token: str | None, status: int, error: str
) -> None:
    headers = {} if token is None else {"X-ChatWorkToken": token}
    answer = api.request(method, path, headers=headers)
    assert (answer.status_code, answer.json()) == (status, {"errors": [error]})
    assert answer.headers["content-type"] == JSON
    assert ROOM_POSITION in answer.headers


def test_head_is_a_known_path_with_another_method(api: Client) -> None:
    answer = api.request("HEAD", f"/v2/rooms/{ROOM}/messages", headers={"X-ChatWorkToken": "alice"})
    assert answer.status_code == 405


def test_the_shadow_headers(api: Client, store: SqliteReadStore) -> None:
    post(store, 1, age_s=60)
    post(store, 2, age_s=0)  # young: held back unless shadow
    store.apply([CursorMoved(ReadCursor(ROOM, ALICE, 0, 1), 3, 1)])
    url = f"/v2/rooms/{ROOM}/messages"
    assert api.get(url).status_code == 204
    shadow = api.get(url, headers={"X-Migration-Shadow": "1"})
    assert [m["message_id"] for m in shadow.json()] == ["2"]
    assert shadow.headers[ROOM_POSITION] == "3"
    after = api.get(url, headers={"X-Migration-Shadow": "1", "X-Migration-After": "0"})
    assert [m["message_id"] for m in after.json()] == ["1", "2"]
    bad = api.get(url, headers={"X-Migration-Shadow": "1", "X-Migration-After": "x"})
    assert (bad.status_code, bad.json()) == (
        400, {"errors": ["Invalid value for header 'X-Migration-After'"]}
    )  # fmt: skip
    assert api.get(url, headers={"X-Migration-Shadow": "yes"}).status_code == 204  # only "1"
    assert store.cursor(ROOM, ALICE) == ReadCursor(ROOM, ALICE, 0, 1)  # nothing moved


# -- ops, failures, wiring ---------------------------------------------------------------------------


def test_healthz_and_metrics(api: Client, store: SqliteReadStore) -> None:
    health = api.get("/healthz", token=None)
    assert health.status_code == 200
    assert health.json()["ok"] is True and health.json()["read_store"] == "ok"
    api.get(f"/v2/rooms/{ROOM}/messages/123")
    api.get(f"/v2/rooms/{ROOM}/messages/123")
    api.get("/v2/nowhere")
    text = api.get("/metrics", token=None).text
    route = "/v2/rooms/{room_id}/messages/{message_id}"
    assert _sample(text, f'chat_read_api_requests_total{{route="{route}",status="404"}}') >= 2
    assert _sample(text, 'chat_read_api_requests_total{route="other",status="404"}') >= 1
    assert _sample(text, f'chat_read_api_request_seconds_count{{route="{route}"}}') >= 2
    assert "/v2/nowhere" not in text and "/123" not in text  # never a raw path as a label


def _sample(metrics: str, name: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in the metrics")


class Broken:
    def __getattr__(self, name: str) -> Callable[..., Any]:
        def fail(*args: object) -> Any:
            raise ReadStoreUnavailable("HBase Thrift at 127.0.0.1:9090: refused")

        return fail


class Crashing(InMemoryMonolith):
    def account_for_token(self, token: str) -> int | None:
        raise RuntimeError("a bug")


def test_unavailable_is_503_and_a_bug_is_500_in_the_contracts_shape(
    directory: InMemoryMonolith,
) -> None:
    broken = Reads(Broken(), directory, settle_s=3)

    @contextmanager
    def build() -> Iterator[Reads]:
        yield broken

    with serving(build) as client:
        answer = client.get(f"/v2/rooms/{ROOM}/messages")
        assert (answer.status_code, answer.json()) == (
            503, {"errors": ["Service temporarily unavailable; retry later"]}
        )  # fmt: skip
        health = client.get("/healthz", token=None)
        assert health.status_code == 503
        assert health.json()["read_store"] == "HBase Thrift at 127.0.0.1:9090: refused"
        client.app.dependency_overrides[get_reads] = lambda: Reads(
            SqliteReadStore(":memory:"), Crashing(), settle_s=3
        )
        crash = client.get(f"/v2/rooms/{ROOM}/messages")
        assert (crash.status_code, crash.json()) == (500, {"errors": ["Internal server error"]})
        assert crash.headers["content-type"] == JSON


def test_the_lifespan_builds_the_use_cases_and_closes_them(
    store: SqliteReadStore, directory: InMemoryMonolith
) -> None:
    life: list[str] = []

    @contextmanager
    def build() -> Iterator[Reads]:
        life.append("built")
        yield Reads(store, directory, settle_s=3)
        life.append("closed")

    with serving(build) as client:
        assert life == ["built"]
        assert client.get(f"/v2/rooms/{ROOM}/messages", params={"force": "1"}).json() == []
    assert life == ["built", "closed"]


def test_the_command_refuses_a_bad_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MIG_READ_API_SETTLE_S", "soon")
    assert read_api.main([]) == 2
    assert "MIG_READ_API_SETTLE_S" in capsys.readouterr().err
    monkeypatch.delenv("MIG_READ_API_SETTLE_S")
    monkeypatch.setenv("MIG_MARIADB_PORT", "0")
    assert read_api.main([]) == 2
    assert "MIG_MARIADB_PORT" in capsys.readouterr().err
