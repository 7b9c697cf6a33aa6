"""The monolith stand-in speaks the public contract (DESIGN.md) over real HTTP.

Every endpoint of the contract, its errors, the force=0 cursor, read/unread counts, the ways real
clients send parameters, the legacy rows the app renders, and the public API's rate limits (the
same app on the rate-limited port). These answers are what the gateway and the new core must
reproduce, so the assertions are on exact status codes and bodies.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.support.monolith_world import (
    DEFAULT_AVATAR,
    Api,
    Member,
    MonolithWorld,
    limited_port,
)
from tests.support.stack import Stack, require_port

pytestmark = pytest.mark.services

INVALID_TOKEN = {"errors": ["Invalid API token"]}
JSON_TYPE = "application/json; charset=utf-8"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture
def world(stack: Stack) -> Iterator[MonolithWorld]:
    require_port("MariaDB", stack.host, stack.mariadb_port)
    built = MonolithWorld.open(stack)
    try:
        yield built
    finally:
        built.cleanup()


@pytest.fixture
def api(stack: Stack) -> Iterator[Api]:
    require_port("the monolith (nginx + PHP-FPM)", stack.host, stack.monolith_port)
    client = Api(stack.monolith_url)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def limited_api(stack: Stack) -> Iterator[Api]:
    port = limited_port()
    require_port("the rate-limited monolith (nginx + PHP-FPM)", stack.host, port)
    client = Api(f"http://{stack.host}:{port}")
    try:
        yield client
    finally:
        client.close()


@dataclass(frozen=True)
class Scene:
    """Two members of one room (alice is its admin), and an outsider."""

    alice: Member
    bob: Member
    outsider: Member
    room: int


@pytest.fixture
def scene(world: MonolithWorld) -> Scene:
    alice = world.account("アリス")
    bob = world.account("Bob 🐟", avatar_image_url="https://example.com/bob.png")
    outsider = world.account("outsider")
    room = world.room(name="プロジェクト")
    world.join(room, alice, "admin")
    world.join(room, bob, "member")
    return Scene(alice, bob, outsider, room)


# -- assertions ---------------------------------------------------------------------------


def json_of(answer: httpx.Response, status: int = 200) -> Any:
    assert answer.status_code == status, (answer.status_code, answer.text)
    assert answer.headers["content-type"] == JSON_TYPE
    return answer.json()


def assert_error(answer: httpx.Response, status: int, message: str) -> None:
    assert json_of(answer, status) == {"errors": [message]}


def assert_no_content(answer: httpx.Response) -> None:
    assert answer.status_code == 204, (answer.status_code, answer.text)
    assert answer.content == b""
    assert "content-type" not in answer.headers


def message_object(
    message_id: str | int,
    member: Member,
    body: str,
    send_time: int,
    update_time: int = 0,
    avatar: str = DEFAULT_AVATAR,
) -> dict[str, Any]:
    return {
        "message_id": str(message_id),
        "account": {
            "account_id": member.account_id,
            "name": member.name,
            "avatar_image_url": avatar,
        },
        "body": body,
        "send_time": send_time,
        "update_time": update_time,
    }


def ids_of(answer: httpx.Response) -> list[str]:
    listed = json_of(answer)
    assert isinstance(listed, list)
    ids = [message["message_id"] for message in listed]
    assert all(isinstance(message_id, str) for message_id in ids)
    return ids


def strs(ids: list[int]) -> list[str]:
    return [str(message_id) for message_id in ids]


def messages_path(room: int, message: str | int | None = None) -> str:
    return f"/v2/rooms/{room}/messages" + ("" if message is None else f"/{message}")


# -- authentication and routing -----------------------------------------------------------

BAD_TOKENS: list[list[tuple[bytes, bytes]]] = [
    [],
    [(b"X-ChatWorkToken", b"")],
    [(b"X-ChatWorkToken", b"0123456789abcdef0123456789abcdef")],
    [(b"X-ChatWorkToken", b"a" * 65)],
    [(b"X-ChatWorkToken", b"has space")],
    [(b"X-ChatWorkToken", "トークン".encode())],
]


@pytest.mark.parametrize(
    "headers", BAD_TOKENS, ids=["missing", "empty", "unknown", "too-long", "space", "non-ascii"]
)
def test_missing_or_unknown_token_is_401(
    api: Api, world: MonolithWorld, scene: Scene, headers: list[tuple[bytes, bytes]]
) -> None:
    for method, path in [
        ("GET", "/v2/me"),
        ("GET", "/v2/rooms"),
        ("GET", messages_path(scene.room)),
        ("POST", messages_path(scene.room)),
        ("PUT", messages_path(scene.room, "read")),
        ("DELETE", messages_path(scene.room, 1)),
        ("GET", "/v2/no-such-thing"),
    ]:
        answer = httpx.request(
            method, f"{api.base_url}{path}", headers=headers, params={"body": "hi"}
        )
        assert json_of(answer, 401) == INVALID_TOKEN, (method, path)
    assert world.count_messages(scene.room) == 0


def test_token_header_name_is_case_insensitive(api: Api, scene: Scene) -> None:
    answer = api.get("/v2/me", None, headers={"x-chatworktoken": scene.alice.token})
    assert json_of(answer)["account_id"] == scene.alice.account_id


@pytest.mark.parametrize("path", ["/", "/v1/me", "/index.php", "/v2"])
def test_paths_outside_v2_are_404_even_without_token(api: Api, path: str) -> None:
    assert_error(api.get(path, None), 404, "Resource not found")


@pytest.mark.parametrize(
    "path",
    [
        "/v2/nothing",
        "/v2/me/",
        "/v2/rooms/abc/messages",
        "/v2/rooms/0/messages",
        "/v2/rooms/{room}/messages/",
        "/v2/rooms/{room}/messages/0",
        "/v2/rooms/{room}/messages/012",
        "/v2/rooms/{room}/messages/12345678901234567890",
        "/v2/rooms/{room}/messages/1/extra",
        "/v2/rooms/{room}/messages/reads",
        "/v2/rooms/{room}/tasks",
    ],
)
def test_unknown_path_is_404(api: Api, scene: Scene, path: str) -> None:
    answer = api.get(path.format(room=scene.room), scene.alice)
    assert_error(answer, 404, "Resource not found")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v2/me"),
        ("DELETE", "/v2/rooms"),
        ("DELETE", "/v2/rooms/{room}/messages"),
        ("PUT", "/v2/rooms/{room}/messages"),
        ("POST", "/v2/rooms/{room}/messages/1"),
        ("PATCH", "/v2/rooms/{room}/messages/1"),
        ("GET", "/v2/rooms/{room}/messages/read"),
        ("POST", "/v2/rooms/{room}/messages/unread"),
        ("DELETE", "/v2/rooms/{room}/messages/read"),
    ],
)
def test_known_path_with_wrong_method_is_405(
    api: Api, scene: Scene, method: str, path: str
) -> None:
    answer = api.call(method, path.format(room=scene.room), scene.alice, data={"body": "x"})
    assert_error(answer, 405, "Method not allowed")


# -- /v2/me and /v2/rooms (they stay on the monolith) -------------------------------------


def test_me_answers_the_account(api: Api, world: MonolithWorld) -> None:
    plain = world.account("山田 太郎")
    dressed = world.account(
        "Dressed",
        avatar_image_url="https://example.com/a/b.png",
        chatwork_id="dressed_cw",
        organization_name="株式会社テスト",
        my_room_id=12345,
    )
    empty_fields = {
        key: ""
        for key in [
            "department",
            "title",
            "url",
            "introduction",
            "mail",
            "tel_organization",
            "tel_extension",
            "tel_mobile",
            "skype",
            "facebook",
            "twitter",
            "login_mail",
        ]
    }
    assert json_of(api.get("/v2/me", plain)) == {
        "account_id": plain.account_id,
        "room_id": 0,
        "name": "山田 太郎",
        "chatwork_id": "",
        "organization_id": 0,
        "organization_name": "",
        **empty_fields,
        "avatar_image_url": DEFAULT_AVATAR,
    }
    assert json_of(api.get("/v2/me", dressed)) == {
        "account_id": dressed.account_id,
        "room_id": 12345,
        "name": "Dressed",
        "chatwork_id": "dressed_cw",
        "organization_id": 0,
        "organization_name": "株式会社テスト",
        **empty_fields,
        "avatar_image_url": "https://example.com/a/b.png",
    }


def test_rooms_lists_the_memberships_with_counts(
    api: Api, world: MonolithWorld, scene: Scene
) -> None:
    other = world.room(
        scene.bob,
        name="雑談",
        role="readonly",
        room_type="direct",
        icon_path="https://example.com/icon.png",
    )
    world.room(scene.alice, name="not bob's")
    before = int(time.time())
    api.post_message(scene.room, scene.alice, f"[To:{scene.bob.account_id}] よろしく")
    api.post_message(scene.room, scene.alice, "second")
    deleted = api.post_message(scene.room, scene.alice, f"[To:{scene.bob.account_id}] gone")
    assert json_of(api.delete(messages_path(scene.room, deleted), scene.alice)) == {
        "message_id": deleted
    }
    world.message(other, scene.alice.account_id, body="old", send_time=5)

    rooms = json_of(api.get("/v2/rooms", scene.bob))
    assert [room["room_id"] for room in rooms] == sorted([scene.room, other])
    by_id = {room["room_id"]: room for room in rooms}
    last_update = by_id[scene.room].pop("last_update_time")
    assert before <= last_update <= int(time.time())
    assert by_id[scene.room] == {
        "room_id": scene.room,
        "name": "プロジェクト",
        "type": "group",
        "role": "member",
        "sticky": False,
        "unread_num": 2,
        "mention_num": 1,
        "mytask_num": 0,
        "message_num": 2,
        "file_num": 0,
        "task_num": 0,
        "icon_path": "",
    }
    assert by_id[other] == {
        "room_id": other,
        "name": "雑談",
        "type": "direct",
        "role": "readonly",
        "sticky": False,
        "unread_num": 1,
        "mention_num": 0,
        "mytask_num": 0,
        "message_num": 1,
        "file_num": 0,
        "task_num": 0,
        "icon_path": "https://example.com/icon.png",
        "last_update_time": 0,
    }


# -- room and membership errors, for every message endpoint -------------------------------

MESSAGE_ENDPOINTS = [
    ("GET", "/messages", {"force": "1"}),
    ("POST", "/messages", {"body": "hello"}),
    ("GET", "/messages/{message}", {}),
    ("PUT", "/messages/{message}", {"body": "edited"}),
    ("DELETE", "/messages/{message}", {}),
    ("PUT", "/messages/read", {}),
    ("PUT", "/messages/unread", {"message_id": "{message}"}),
]


@pytest.mark.parametrize(
    ("method", "tail", "data"), MESSAGE_ENDPOINTS, ids=[f"{m} {t}" for m, t, _ in MESSAGE_ENDPOINTS]
)
def test_missing_room_is_404_and_outsider_is_403(
    api: Api, world: MonolithWorld, scene: Scene, method: str, tail: str, data: dict[str, str]
) -> None:
    message = world.message(scene.room, scene.alice.account_id, body="mine")
    filled = {key: value.format(message=message) for key, value in data.items()}
    missing = world.missing_room_id()
    for room, member, status, error in [
        (missing, scene.alice, 404, "Room not found"),
        (scene.room, scene.outsider, 403, "You don't have permission to access this room"),
    ]:
        path = f"/v2/rooms/{room}" + tail.format(message=message)
        assert_error(api.call(method, path, member, data=filled), status, error)
    row = world.row(message)
    assert row is not None and (row.body, row.deleted) == ("mine", 0)
    assert world.count_messages(scene.room) == 1
    assert world.cursor_of(scene.room, scene.outsider) is None


# -- GET /messages: force=1 and the force=0 cursor ----------------------------------------


def test_force_1_answers_the_latest_100_oldest_first_and_moves_no_cursor(
    api: Api, world: MonolithWorld, scene: Scene
) -> None:
    ids = world.messages(scene.room, scene.bob.account_id, [f"m{i}" for i in range(105)])
    listed = json_of(api.fetch(scene.room, scene.alice, force="1"))
    assert listed == [
        message_object(
            mid, scene.bob, f"m{i + 5}", 1_700_000_000, avatar="https://example.com/bob.png"
        )
        for i, mid in enumerate(ids[5:])
    ]
    assert ids_of(api.fetch(scene.room, scene.alice, force="1")) == strs(ids[5:])
    assert world.cursor_of(scene.room, scene.alice) is None
    # force=1 never counted as a fetch: the first force=0 still starts from the latest 100.
    assert ids_of(api.fetch(scene.room, scene.alice, force="0")) == strs(ids[5:])
    assert world.cursor_of(scene.room, scene.alice) == (0, ids[-1])
    assert ids_of(api.fetch(scene.room, scene.alice, force="1")) == strs(ids[5:])
    assert world.cursor_of(scene.room, scene.alice) == (0, ids[-1])


def test_force_0_first_fetch_is_the_latest_100_then_only_what_is_new(
    api: Api, world: MonolithWorld, scene: Scene
) -> None:
    assert_no_content(api.fetch(scene.room, scene.alice))  # empty room, never fetched
    ids = world.messages(scene.room, scene.bob.account_id, [f"m{i}" for i in range(130)])
    assert ids_of(api.fetch(scene.room, scene.alice)) == strs(ids[30:])
    assert_no_content(api.fetch(scene.room, scene.alice))
    assert_no_content(api.fetch(scene.room, scene.alice, force="0"))
    new = api.post_message(scene.room, scene.bob, "新着")
    assert ids_of(api.fetch(scene.room, scene.alice)) == [new]
    assert_no_content(api.fetch(scene.room, scene.alice))
    own = api.post_message(scene.room, scene.alice, "my own post is new to my fetch cursor")
    assert ids_of(api.fetch(scene.room, scene.alice)) == [own]
    assert_no_content(api.fetch(scene.room, scene.alice))


def test_force_0_pages_past_100_from_the_cursor(
    api: Api, world: MonolithWorld, scene: Scene
) -> None:
    first = world.message(scene.room, scene.bob.account_id, body="first")
    assert ids_of(api.fetch(scene.room, scene.alice)) == [str(first)]
    ids = world.messages(scene.room, scene.bob.account_id, [f"p{i}" for i in range(250)])
    assert ids_of(api.fetch(scene.room, scene.alice)) == strs(ids[:100])
    assert world.cursor_of(scene.room, scene.alice) == (0, ids[99])
    assert ids_of(api.fetch(scene.room, scene.alice)) == strs(ids[100:200])
    assert ids_of(api.fetch(scene.room, scene.alice)) == strs(ids[200:])
    assert_no_content(api.fetch(scene.room, scene.alice))
    assert world.cursor_of(scene.room, scene.alice) == (0, ids[-1])


def test_force_0_cursor_is_per_account(api: Api, world: MonolithWorld, scene: Scene) -> None:
    ids = world.messages(scene.room, scene.alice.account_id, ["a", "b"])
    assert ids_of(api.fetch(scene.room, scene.alice)) == strs(ids)
    assert_no_content(api.fetch(scene.room, scene.alice))
    assert ids_of(api.fetch(scene.room, scene.bob)) == strs(ids)
    later = world.message(scene.room, scene.alice.account_id, body="c")
    assert ids_of(api.fetch(scene.room, scene.bob)) == [str(later)]
    assert ids_of(api.fetch(scene.room, scene.alice)) == [str(later)]


def test_concurrent_force_0_fetches_deliver_each_message_once(
    api: Api, world: MonolithWorld, scene: Scene
) -> None:
    """One account fetching from several clients at once: no message twice, none lost, no 500."""
    base = api.base_url

    def fetch_once(_: int) -> httpx.Response:
        with httpx.Client(base_url=base, timeout=30.0) as client:
            return client.get(
                messages_path(scene.room), headers={"X-ChatWorkToken": scene.alice.token}
            )

    def fetch_together() -> list[list[str]]:
        with ThreadPoolExecutor(max_workers=4) as pool:
            answers = list(pool.map(fetch_once, range(4)))
        for answer in answers:
            if answer.status_code != 200:
                assert_no_content(answer)
        return sorted((ids_of(a) for a in answers if a.status_code == 200), key=len, reverse=True)

    first = world.messages(scene.room, scene.bob.account_id, [f"f{i}" for i in range(150)])
    assert fetch_together() == [strs(first[50:])]  # never fetched: the latest 100, once
    ids = world.messages(scene.room, scene.bob.account_id, [f"c{i}" for i in range(250)])
    pages = fetch_together()
    assert [len(page) for page in pages] == [100, 100, 50]
    assert sorted(mid for page in pages for mid in page) == sorted(strs(ids))
    assert world.cursor_of(scene.room, scene.alice) == (0, ids[-1])


def test_more_clients_than_php_workers_are_all_served(
    api: Api, world: MonolithWorld, scene: Scene
) -> None:
    """Regression: with FastCGI keep-alive, idle connections cached by one nginx worker held every
    PHP-FPM worker, and requests through the other nginx worker stalled for keepalive_timeout
    (60 s). Many clients at once must each get an answer well within a short timeout."""
    world.messages(scene.room, scene.bob.account_id, [f"m{i}" for i in range(20)])
    base = api.base_url
    path = messages_path(scene.room)

    def client_session(_: int) -> list[int]:
        with httpx.Client(base_url=base, timeout=10.0) as client:
            return [
                client.get(
                    path, params={"force": "1"}, headers={"X-ChatWorkToken": scene.alice.token}
                ).status_code
                for _ in range(15)
            ]

    with ThreadPoolExecutor(max_workers=24) as pool:
        statuses = [code for codes in pool.map(client_session, range(24)) for code in codes]
    assert statuses == [200] * (24 * 15)


def test_force_0_never_returns_deleted_messages(
    api: Api, world: MonolithWorld, scene: Scene
) -> None:
    first = world.message(scene.room, scene.bob.account_id, body="first")
    assert ids_of(api.fetch(scene.room, scene.alice)) == [str(first)]
    world.message(scene.room, scene.bob.account_id, body="soft", deleted=1)
    assert_no_content(api.fetch(scene.room, scene.alice))
    live = world.message(scene.room, scene.bob.account_id, body="live")
    world.message(scene.room, scene.bob.account_id, body="soft again", deleted=1)
    assert ids_of(api.fetch(scene.room, scene.alice)) == [str(live)]
    assert ids_of(api.fetch(scene.room, scene.alice, force="1")) == [str(first), str(live)]


def test_fetching_does_not_read(api: Api, world: MonolithWorld, scene: Scene) -> None:
    world.messages(scene.room, scene.bob.account_id, ["x", f"[To:{scene.alice.account_id}]"])
    assert api.room_counts(scene.room, scene.alice) == (2, 1)
    assert len(ids_of(api.fetch(scene.room, scene.alice))) == 2
    assert len(ids_of(api.fetch(scene.room, scene.alice, force="1"))) == 2
    assert api.room_counts(scene.room, scene.alice) == (2, 1)


@pytest.mark.parametrize("value", ["2", "-1", "01", "true", "yes", " 1"])
def test_force_must_be_0_or_1(api: Api, world: MonolithWorld, scene: Scene, value: str) -> None:
    world.message(scene.room, scene.bob.account_id, body="x")
    answer = api.get(messages_path(scene.room), scene.alice, params={"force": value})
    assert_error(answer, 400, "Invalid value for parameter 'force': use 0 or 1")
    assert world.cursor_of(scene.room, scene.alice) is None


def test_force_given_as_an_array_is_400(api: Api, scene: Scene) -> None:
    answer = api.get(messages_path(scene.room), scene.alice, params=[("force[]", "1")])
    assert_error(answer, 400, "Invalid value for parameter 'force'")


# -- POST /messages -----------------------------------------------------------------------


def test_post_answers_a_string_id_and_the_message_reads_back(
    api: Api, world: MonolithWorld, scene: Scene
) -> None:
    before = int(time.time())
    answer = json_of(api.post(messages_path(scene.room), scene.bob, data={"body": "hello"}))
    after = int(time.time())
    assert list(answer) == ["message_id"]
    message_id = answer["message_id"]
    assert isinstance(message_id, str) and message_id.isdigit()
    got = json_of(api.get(messages_path(scene.room, message_id), scene.alice))
    assert before <= got["send_time"] <= after
    assert got == message_object(
        message_id, scene.bob, "hello", got["send_time"], avatar="https://example.com/bob.png"
    )
    row = world.row(int(message_id))
    assert row is not None
    assert (row.room_id, row.account_id, row.body, row.update_time, row.deleted) == (
        scene.room,
        scene.bob.account_id,
        "hello",
        0,
        0,
    )


ROUND_TRIP_TEXTS = [
    "こんにちは、世界。全角ＡＢＣ・半角ｶﾅ・𠮷野家",
    "emoji 😀👍🏽 👨\u200d👩\u200d👧\u200d👦 🇯🇵 ❤️ e\u0301",
    "[To:123] 山田さん\n[rp aid=456 to=789-1234567890] 返信です",
    "[qt][qtmeta aid=1 time=1700000000]引用[/qt]\n[info][title]お知らせ[/title]本文[/info]",
    "a&b=c+d %20 %zz ? # ; / \\ \"quoted\" 'single' <tag> \t tab\r\nCRLF\nend",
    " leading and trailing spaces ",
]


@pytest.mark.parametrize("text", ROUND_TRIP_TEXTS)
@pytest.mark.parametrize("where", ["form", "query"])
def test_text_round_trips_exactly(api: Api, scene: Scene, text: str, where: str) -> None:
    if where == "form":
        answer = api.post(messages_path(scene.room), scene.alice, data={"body": text})
    else:
        answer = api.post(
            messages_path(scene.room), scene.alice, params={"body": text}, content=b"", headers=FORM
        )
    message_id = json_of(answer)["message_id"]
    got = json_of(api.get(messages_path(scene.room, message_id), scene.bob))
    assert got["body"] == text
    listed = json_of(api.fetch(scene.room, scene.bob, force="1"))
    assert [m["body"] for m in listed if m["message_id"] == message_id] == [text]
    edited = text[::-1]
    sent = {"data" if where == "form" else "params": {"body": edited}}
    put = api.put(messages_path(scene.room, message_id), scene.alice, **sent)
    assert json_of(put) == {"message_id": message_id}
    assert json_of(api.get(messages_path(scene.room, message_id), scene.bob))["body"] == edited


def test_post_with_body_only_in_the_query_string_and_no_content_type(
    api: Api, world: MonolithWorld, scene: Scene
) -> None:
    answer = api.post(messages_path(scene.room), scene.alice, params={"body": "クエリ"})
    message_id = json_of(answer)["message_id"]
    row = world.row(int(message_id))
    assert row is not None and row.body == "クエリ"


def test_form_body_wins_over_the_query_string(api: Api, world: MonolithWorld, scene: Scene) -> None:
    answer = api.post(
        messages_path(scene.room),
        scene.alice,
        params={"body": "from query"},
        data={"body": "from form"},
    )
    message_id = json_of(answer)["message_id"]
    posted = world.row(int(message_id))
    assert posted is not None and posted.body == "from form"
    put = api.put(
        messages_path(scene.room, message_id),
        scene.alice,
        params={"body": "edit query"},
        data={"body": "edit form"},
    )
    assert json_of(put) == {"message_id": message_id}
    row = world.row(int(message_id))
    assert row is not None and row.body == "edit form"


def test_unknown_parameters_are_ignored(api: Api, world: MonolithWorld, scene: Scene) -> None:
    answer = api.post(
        messages_path(scene.room),
        scene.alice,
        params={"foo": "1", "force": "9"},
        data={"body": "extra", "to_ids": "1,2", "self_unread": "0", "x[]": "y"},
    )
    message_id = json_of(answer)["message_id"]
    assert ids_of(
        api.get(messages_path(scene.room), scene.bob, params={"force": "1", "unknown": "z"})
    ) == [message_id]
    got = api.get(messages_path(scene.room, message_id), scene.bob, params={"force": "junk"})
    assert json_of(got)["body"] == "extra"
    read = api.put(
        messages_path(scene.room, "read"),
        scene.bob,
        data={"message_id": message_id, "body": "ignored", "flag": "zz"},
    )
    assert json_of(read) == {"unread_num": 0, "mention_num": 0}


def test_get_and_delete_with_a_form_content_type_and_no_body(
    api: Api, world: MonolithWorld, scene: Scene
) -> None:
    message_id = api.post_message(scene.room, scene.alice, "x")
    listed = api.get(messages_path(scene.room), scene.bob, params={"force": "1"}, headers=FORM)
    assert ids_of(listed) == [message_id]
    assert ids_of(api.get(messages_path(scene.room), scene.bob, headers=FORM)) == [message_id]
    assert_no_content(api.get(messages_path(scene.room), scene.bob, headers=FORM, content=b""))
    got = api.get(messages_path(scene.room, message_id), scene.bob, headers=FORM)
    assert json_of(got)["message_id"] == message_id
    assert json_of(api.get("/v2/me", scene.bob, headers=FORM))["account_id"] == scene.bob.account_id
    gone = api.delete(messages_path(scene.room, message_id), scene.alice, headers=FORM, content=b"")
    assert json_of(gone) == {"message_id": message_id}


def test_body_of_65535_characters_is_accepted_and_65536_is_400(
    api: Api, world: MonolithWorld, scene: Scene
) -> None:
    for text in ["あ" * 65535, "😀" * 65535, "a" * 65535]:
        message_id = api.post_message(scene.room, scene.alice, text)
        assert json_of(api.get(messages_path(scene.room, message_id), scene.bob))["body"] == text
    too_long = api.post(messages_path(scene.room), scene.alice, data={"body": "あ" * 65536})
    assert_error(too_long, 400, "Parameter 'body' is too long (at most 65535 characters)")
    edit = api.put(messages_path(scene.room, message_id), scene.alice, data={"body": "a" * 65536})
    assert_error(edit, 400, "Parameter 'body' is too long (at most 65535 characters)")
    assert world.count_messages(scene.room) == 3


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (b"", "Parameter 'body' is required"),
        (b"body=", "Parameter 'body' is required"),
        (b"self_unread=1", "Parameter 'body' is required"),
        (b"body%5B%5D=x", "Invalid value for parameter 'body'"),
        (b"body=%FF%FE", "Parameter 'body' is not valid UTF-8"),
        (b"body=%E3%81", "Parameter 'body' is not valid UTF-8"),
        (b"body=ok&self_unread=2", "Invalid value for parameter 'self_unread': use 0 or 1"),
        (b"body=ok&self_unread=true", "Invalid value for parameter 'self_unread': use 0 or 1"),
    ],
)
def test_post_bad_parameters_are_400(
    api: Api, world: MonolithWorld, scene: Scene, content: bytes, error: str
) -> None:
    answer = api.post(messages_path(scene.room), scene.alice, content=content, headers=FORM)
    assert_error(answer, 400, error)
    assert world.count_messages(scene.room) == 0


def test_readonly_member_cannot_post(api: Api, world: MonolithWorld, scene: Scene) -> None:
    reader = world.account("reader")
    world.join(scene.room, reader, "readonly")
    answer = api.post(messages_path(scene.room), reader, data={"body": "may I?"})
    assert_error(answer, 403, "You have no permission to post in this room")
    assert world.count_messages(scene.room) == 0
    posted = api.post_message(scene.room, scene.alice, "readers still read")
    assert ids_of(api.fetch(scene.room, reader)) == [posted]


def test_posting_reads_the_room_for_the_poster_unless_self_unread(
    api: Api, world: MonolithWorld, scene: Scene
) -> None:
    world.messages(scene.room, scene.bob.account_id, ["1", f"[To:{scene.alice.account_id}]"])
    assert api.room_counts(scene.room, scene.alice) == (2, 1)
    own = api.post_message(scene.room, scene.alice, "reply", self_unread="0")
    assert api.room_counts(scene.room, scene.alice) == (0, 0)
    assert world.cursor_of(scene.room, scene.alice) == (int(own), 0)
    assert api.room_counts(scene.room, scene.bob) == (3, 0)
    note = f"[To:{scene.alice.account_id}] note"
    api.post_message(scene.room, scene.alice, note, self_unread="1")
    assert api.room_counts(scene.room, scene.alice) == (1, 1)
    assert world.cursor_of(scene.room, scene.alice) == (int(own), 0)
    api.post_message(scene.room, scene.alice, "default is self_unread=0")
    assert api.room_counts(scene.room, scene.alice) == (0, 0)


# -- GET /messages/{id} -------------------------------------------------------------------


def test_get_message_errors(api: Api, world: MonolithWorld, scene: Scene) -> None:
    elsewhere = world.room(scene.alice)
    foreign = world.message(elsewhere, scene.alice.account_id, body="other room")
    assert_error(api.get(messages_path(scene.room, foreign), scene.alice), 404, "Message not found")
    assert_error(
        api.get(messages_path(scene.room, "9999999999999999999"), scene.alice),
        404,
        "Message not found",
    )
    assert json_of(api.get(messages_path(elsewhere, foreign), scene.alice))["body"] == "other room"


# -- PUT /messages/{id} (edit) ------------------------------------------------------------


def test_author_edits_a_message(api: Api, world: MonolithWorld, scene: Scene) -> None:
    message_id = world.message(scene.room, scene.alice.account_id, body="typo", send_time=1000)
    before = int(time.time())
    answer = api.put(messages_path(scene.room, message_id), scene.alice, data={"body": "fixed"})
    assert json_of(answer) == {"message_id": str(message_id)}
    got = json_of(api.get(messages_path(scene.room, message_id), scene.bob))
    assert before <= got["update_time"] <= int(time.time())
    assert got == message_object(message_id, scene.alice, "fixed", 1000, got["update_time"])


def test_edit_errors(api: Api, world: MonolithWorld, scene: Scene) -> None:
    bobs = world.message(scene.room, scene.bob.account_id, body="bob's")
    alices = world.message(scene.room, scene.alice.account_id, body="alice's")
    deleted = world.message(scene.room, scene.alice.account_id, body="gone", deleted=1)
    path = messages_path(scene.room, bobs)
    # alice is the room's admin: still not the author.
    assert_error(
        api.put(path, scene.alice, data={"body": "x"}), 403, "You can only change your own messages"
    )
    assert_error(
        api.put(messages_path(scene.room, deleted), scene.alice, data={"body": "x"}),
        404,
        "Message not found",
    )
    assert_error(
        api.put(messages_path(scene.room, 1), scene.alice, data={"body": "x"}),
        404,
        "Message not found",
    )
    assert_error(
        api.put(messages_path(scene.room, alices), scene.alice, data={"body": ""}),
        400,
        "Parameter 'body' is required",
    )
    assert_error(
        api.put(messages_path(scene.room, alices), scene.alice), 400, "Parameter 'body' is required"
    )
    for message_id, body in [(bobs, "bob's"), (alices, "alice's"), (deleted, "gone")]:
        row = world.row(message_id)
        assert row is not None and (row.body, row.update_time) == (body, 0)


# -- DELETE /messages/{id} ----------------------------------------------------------------


def test_author_deletes_softly(api: Api, world: MonolithWorld, scene: Scene) -> None:
    keep = api.post_message(scene.room, scene.bob, "keep")
    gone = api.post_message(scene.room, scene.bob, f"[To:{scene.alice.account_id}] gone")
    assert api.room_counts(scene.room, scene.alice) == (2, 1)
    assert_error(
        api.delete(messages_path(scene.room, gone), scene.alice),
        403,
        "You can only change your own messages",
    )
    assert json_of(api.delete(messages_path(scene.room, gone), scene.bob)) == {"message_id": gone}
    row = world.row(int(gone))
    assert row is not None and row.deleted == 1
    assert_error(api.get(messages_path(scene.room, gone), scene.alice), 404, "Message not found")
    assert_error(api.delete(messages_path(scene.room, gone), scene.bob), 404, "Message not found")
    assert ids_of(api.fetch(scene.room, scene.alice, force="1")) == [keep]
    assert ids_of(api.fetch(scene.room, scene.alice)) == [keep]
    assert api.room_counts(scene.room, scene.alice) == (1, 0)


# -- PUT /messages/read and /messages/unread ----------------------------------------------


def test_read_without_message_id_reads_to_the_latest_then_400(
    api: Api, world: MonolithWorld, scene: Scene
) -> None:
    read_path = messages_path(scene.room, "read")
    assert_error(api.put(read_path, scene.alice), 400, "The messages are already read")
    ids = world.messages(scene.room, scene.bob.account_id, ["1", "2"])
    latest_deleted = world.message(scene.room, scene.bob.account_id, body="3", deleted=1)
    assert json_of(api.put(read_path, scene.alice)) == {"unread_num": 0, "mention_num": 0}
    assert world.cursor_of(scene.room, scene.alice) == (ids[-1], 0)
    assert_error(api.put(read_path, scene.alice), 400, "The messages are already read")
    assert world.cursor_of(scene.room, scene.alice) == (ids[-1], 0)
    assert latest_deleted > ids[-1]


def test_read_up_to_a_message_counts_the_rest_with_mentions(
    api: Api, world: MonolithWorld, scene: Scene
) -> None:
    me = scene.alice.account_id
    ids = world.messages(
        scene.room,
        scene.bob.account_id,
        [
            f"[To:{me}] first",
            "plain",
            f"[To:{me}] third",
            f"[To:{scene.bob.account_id}] not me",
            f"[rp aid={me} to={scene.room}-1] a reply is not a [To:]",
            f"cc [To:{me}][To:1]",
        ],
    )
    world.message(scene.room, scene.bob.account_id, body=f"[To:{me}] deleted", deleted=1)
    read_path = messages_path(scene.room, "read")
    assert api.room_counts(scene.room, scene.alice) == (6, 3)
    answer = api.put(read_path, scene.alice, data={"message_id": str(ids[1])})
    assert json_of(answer) == {"unread_num": 4, "mention_num": 2}
    assert_error(
        api.put(read_path, scene.alice, data={"message_id": str(ids[0])}),
        400,
        "The messages are already read",
    )
    assert_error(
        api.put(read_path, scene.alice, data={"message_id": str(ids[1])}),
        400,
        "The messages are already read",
    )
    answer = api.put(read_path, scene.alice, params={"message_id": str(ids[3])})
    assert json_of(answer) == {"unread_num": 2, "mention_num": 1}
    assert api.room_counts(scene.room, scene.alice) == (2, 1)
    assert api.room_counts(scene.room, scene.bob) == (6, 1)


def test_read_errors(api: Api, world: MonolithWorld, scene: Scene) -> None:
    live = world.message(scene.room, scene.bob.account_id, body="live")
    deleted = world.message(scene.room, scene.bob.account_id, body="deleted", deleted=1)
    foreign = world.message(world.room(scene.bob), scene.bob.account_id, body="elsewhere")
    read_path = messages_path(scene.room, "read")
    for message_id in [deleted, foreign, 1]:
        assert_error(
            api.put(read_path, scene.alice, data={"message_id": str(message_id)}),
            404,
            "Message not found",
        )
    for bad in ["abc", "0", "-1", "012", "1.5", "12345678901234567890"]:
        assert_error(
            api.put(read_path, scene.alice, data={"message_id": bad}),
            400,
            "Invalid value for parameter 'message_id'",
        )
    assert world.cursor_of(scene.room, scene.alice) is None
    assert json_of(api.put(read_path, scene.alice, data={"message_id": str(live)})) == {
        "unread_num": 0,
        "mention_num": 0,
    }


def test_unread_makes_the_message_and_all_later_ones_unread(
    api: Api, world: MonolithWorld, scene: Scene
) -> None:
    me = scene.alice.account_id
    ids = world.messages(
        scene.room, scene.bob.account_id, [f"[To:{me}] a", "b", f"[To:{me}] c", "d"]
    )
    unread_path = messages_path(scene.room, "unread")
    assert json_of(api.put(messages_path(scene.room, "read"), scene.alice)) == {
        "unread_num": 0,
        "mention_num": 0,
    }
    answer = api.put(unread_path, scene.alice, data={"message_id": str(ids[2])})
    assert json_of(answer) == {"unread_num": 2, "mention_num": 1}
    assert world.cursor_of(scene.room, scene.alice) == (ids[1], 0)
    answer = api.put(unread_path, scene.alice, params={"message_id": str(ids[0])})
    assert json_of(answer) == {"unread_num": 4, "mention_num": 2}
    assert world.cursor_of(scene.room, scene.alice) == (0, 0)
    answer = api.put(unread_path, scene.alice, data={"message_id": str(ids[3])})
    assert json_of(answer) == {"unread_num": 1, "mention_num": 0}
    assert api.room_counts(scene.room, scene.alice) == (1, 0)


def test_unread_errors(api: Api, world: MonolithWorld, scene: Scene) -> None:
    deleted = world.message(scene.room, scene.bob.account_id, body="deleted", deleted=1)
    foreign = world.message(world.room(scene.bob), scene.bob.account_id, body="elsewhere")
    unread_path = messages_path(scene.room, "unread")
    assert_error(api.put(unread_path, scene.alice), 400, "Parameter 'message_id' is required")
    assert_error(
        api.put(unread_path, scene.alice, data={"message_id": ""}),
        400,
        "Parameter 'message_id' is required",
    )
    assert_error(
        api.put(unread_path, scene.alice, data={"message_id": "x1"}),
        400,
        "Invalid value for parameter 'message_id'",
    )
    for message_id in [deleted, foreign, 1]:
        assert_error(
            api.put(unread_path, scene.alice, data={"message_id": str(message_id)}),
            404,
            "Message not found",
        )
    assert world.cursor_of(scene.room, scene.alice) is None


# -- legacy rows as the app renders them --------------------------------------------------


@pytest.mark.parametrize(
    ("columns", "rendered"),
    [
        ({"body_v1": "2014年の本文 [To:1] emoji was ?"}, "2014年の本文 [To:1] emoji was ?"),
        ({"body_raw": "Talk時代".encode()}, "Talk時代"),
        ({"body_raw": b"truncated \xe3\x81"}, "truncated \ufffd"),
        ({"body_raw": b"\xff"}, "\ufffd"),
        ({"body_raw": b"a\xe3\x81b\xffc\xe3\x81\x82"}, "a\ufffdb\ufffdcあ"),
        ({"body_raw": b""}, ""),
        ({"body": "current", "body_v1": "v1", "body_raw": b"raw"}, "current"),
        ({"body_v1": "v1", "body_raw": b"raw"}, "v1"),
        ({"body": "", "body_v1": "v1"}, ""),
    ],
    ids=[
        "v1",
        "raw-utf8",
        "raw-truncated",
        "raw-ff",
        "raw-mixed",
        "raw-empty",
        "body-first",
        "v1-before-raw",
        "empty-body-wins",
    ],
)
def test_legacy_body_columns(
    api: Api, world: MonolithWorld, scene: Scene, columns: dict[str, Any], rendered: str
) -> None:
    message_id = world.message(scene.room, scene.bob.account_id, **{"body": None, **columns})
    expected = message_object(
        message_id, scene.bob, rendered, 1_700_000_000, avatar="https://example.com/bob.png"
    )
    assert json_of(api.get(messages_path(scene.room, message_id), scene.alice)) == expected
    assert json_of(api.fetch(scene.room, scene.alice, force="1")) == [expected]
    assert json_of(api.fetch(scene.room, scene.alice)) == [expected]


def test_legacy_rows_count_as_mentions(api: Api, world: MonolithWorld, scene: Scene) -> None:
    me = scene.alice.account_id
    world.message(scene.room, scene.bob.account_id, body=None, body_v1=f"[To:{me}] v1")
    world.message(
        scene.room, scene.bob.account_id, body=None, body_raw=f"[To:{me}] raw ".encode() + b"\xff"
    )
    world.message(scene.room, scene.bob.account_id, body=None, body_raw=b"\xe3\x81 no mention")
    assert api.room_counts(scene.room, scene.alice) == (3, 2)


@pytest.mark.parametrize(
    ("send_time", "created_at", "update_time", "rendered_send", "rendered_update"),
    [
        # created_at is JST wall time: 2014-03-01 09:00:00 +09:00 is 00:00:00 UTC.
        (None, "2014-03-01 09:00:00", None, 1_393_632_000, 0),
        (None, "2012-12-31 23:59:59", 1_400_000_000, 1_356_965_999, 1_400_000_000),
        (None, "0000-00-00 00:00:00", None, 0, 0),
        (None, None, None, 0, 0),
        (1_500_000_000, "2014-03-01 09:00:00", 1_500_000_100, 1_500_000_000, 1_500_000_100),
        (0, "2014-03-01 09:00:00", 0, 0, 0),
    ],
    ids=[
        "jst-created",
        "jst-created-edited",
        "zero-date",
        "no-time",
        "send-time-wins",
        "send-time-zero-wins",
    ],
)
def test_legacy_times(
    api: Api,
    world: MonolithWorld,
    scene: Scene,
    send_time: int | None,
    created_at: str | None,
    update_time: int | None,
    rendered_send: int,
    rendered_update: int,
) -> None:
    message_id = world.message(
        scene.room,
        scene.bob.account_id,
        body="old",
        send_time=send_time,
        created_at=created_at,
        update_time=update_time,
    )
    got = json_of(api.get(messages_path(scene.room, message_id), scene.alice))
    assert (got["send_time"], got["update_time"]) == (rendered_send, rendered_update)
    listed = json_of(api.fetch(scene.room, scene.alice, force="1"))
    assert [(m["send_time"], m["update_time"]) for m in listed] == [
        (rendered_send, rendered_update)
    ]


def test_message_of_a_missing_account_has_an_empty_name(
    api: Api, world: MonolithWorld, scene: Scene
) -> None:
    ghost_id = world.fresh_id()
    message_id = world.message(scene.room, ghost_id, body="from a purged account")
    expected = {
        "message_id": str(message_id),
        "account": {"account_id": ghost_id, "name": "", "avatar_image_url": DEFAULT_AVATAR},
        "body": "from a purged account",
        "send_time": 1_700_000_000,
        "update_time": 0,
    }
    assert json_of(api.get(messages_path(scene.room, message_id), scene.alice)) == expected
    assert json_of(api.fetch(scene.room, scene.alice, force="1")) == [expected]


def test_hard_and_soft_deleted_rows_are_404_and_absent(
    api: Api, world: MonolithWorld, scene: Scene
) -> None:
    keep = world.message(scene.room, scene.bob.account_id, body="keep")
    purged = world.message(scene.room, scene.bob.account_id, body="purged")
    soft = world.message(scene.room, scene.bob.account_id, body="soft", deleted=1)
    assert world.execute("DELETE FROM messages WHERE message_id = %s", (purged,)) == 1
    for gone in [purged, soft]:
        assert_error(
            api.get(messages_path(scene.room, gone), scene.alice), 404, "Message not found"
        )
        assert_error(
            api.delete(messages_path(scene.room, gone), scene.bob), 404, "Message not found"
        )
    assert ids_of(api.fetch(scene.room, scene.alice, force="1")) == [str(keep)]
    assert ids_of(api.fetch(scene.room, scene.alice)) == [str(keep)]
    assert api.room_counts(scene.room, scene.alice) == (1, 0)
    assert api.room_counts(scene.room, scene.bob) == (1, 0)


def test_eighteen_digit_message_ids(api: Api, world: MonolithWorld, scene: Scene) -> None:
    base = 123_456_789_012_345_678 + world.fresh_id() % 1_000_000 * 16
    old = world.message(scene.room, scene.bob.account_id, body="32-bit era")
    ids = [base, base + 1, base + 2]  # adjacent: a float would not tell them apart
    for offset, message_id in enumerate(ids):
        world.message(
            scene.room,
            scene.bob.account_id,
            body=f"big {offset}",
            message_id=message_id,
            send_time=1_600_000_000 + offset,
        )
    world.message(scene.room, scene.alice.account_id, body="mine", message_id=base + 3)
    for offset, message_id in enumerate(ids):
        got = json_of(api.get(messages_path(scene.room, message_id), scene.alice))
        assert (got["message_id"], got["body"]) == (str(message_id), f"big {offset}")
    all_ids = strs([old, *ids, base + 3])
    assert ids_of(api.fetch(scene.room, scene.alice, force="1")) == all_ids
    assert ids_of(api.fetch(scene.room, scene.bob)) == all_ids
    assert world.cursor_of(scene.room, scene.bob) == (0, base + 3)
    assert_no_content(api.fetch(scene.room, scene.bob))
    read_path = messages_path(scene.room, "read")
    answer = api.put(read_path, scene.alice, data={"message_id": str(ids[1])})
    assert json_of(answer) == {"unread_num": 2, "mention_num": 0}
    assert world.cursor_of(scene.room, scene.alice) == (ids[1], 0)
    answer = api.put(
        messages_path(scene.room, "unread"), scene.alice, data={"message_id": str(ids[1])}
    )
    assert json_of(answer) == {"unread_num": 3, "mention_num": 0}
    assert world.cursor_of(scene.room, scene.alice) == (ids[0], 0)
    edit = api.put(messages_path(scene.room, base + 3), scene.alice, data={"body": "edited"})
    assert json_of(edit) == {"message_id": str(base + 3)}
    assert json_of(api.delete(messages_path(scene.room, base + 3), scene.alice)) == {
        "message_id": str(base + 3)
    }
    assert ids_of(api.fetch(scene.room, scene.alice, force="1")) == all_ids[:-1]


def test_wire_form_of_a_message(api: Api, world: MonolithWorld, scene: Scene) -> None:
    """Compact JSON, UTF-8 unescaped, slashes unescaped, keys in the contract's order."""
    message_id = world.message(
        scene.room,
        scene.bob.account_id,
        body='日本語 😀 a/b "q"\n',
        send_time=1_700_000_001,
        update_time=1_700_000_002,
    )
    answer = api.get(messages_path(scene.room, message_id), scene.alice)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == JSON_TYPE
    assert (
        answer.content
        == (
            f'{{"message_id":"{message_id}","account":{{"account_id":{scene.bob.account_id},'
            f'"name":"Bob 🐟","avatar_image_url":"https://example.com/bob.png"}},'
            f'"body":"日本語 😀 a/b \\"q\\"\\n","send_time":1700000001,"update_time":1700000002}}'
        ).encode()
    )


# -- rate limits (the same app on the rate-limited port) ----------------------------------


def test_default_port_has_no_rate_limit_headers(api: Api, scene: Scene) -> None:
    answer = api.get("/v2/me", scene.alice)
    assert answer.status_code == 200
    assert not [name for name in answer.headers if name.startswith("x-ratelimit")]


def rate_headers(answer: httpx.Response) -> tuple[int, int, int]:
    return (
        int(answer.headers["x-ratelimit-limit"]),
        int(answer.headers["x-ratelimit-remaining"]),
        int(answer.headers["x-ratelimit-reset"]),
    )


def test_300_requests_per_5_minutes_per_token(limited_api: Api, world: MonolithWorld) -> None:
    """The fixed window may roll over mid-run: then the run is repeated once with a new token."""
    for attempt in range(2):
        member = world.account(f"limited {attempt}")
        seen = [rate_headers(json_ok(limited_api.get("/v2/me", member))) for _ in range(300)]
        over = limited_api.get("/v2/me", member)
        resets = {reset for _, _, reset in seen} | {rate_headers(over)[2]}
        if len(resets) > 1 and attempt == 0:
            continue
        assert len(resets) == 1, f"the 5-minute window rolled over twice: {resets}"
        (reset,) = resets
        assert reset % 300 == 0 and reset - 300 <= time.time() < reset + 1
        assert seen == [(300, 299 - i, reset) for i in range(300)]
        assert_error(over, 429, "Rate limit exceeded")
        assert rate_headers(over) == (300, 0, reset)
        # Another token has its own budget.
        fresh = limited_api.get("/v2/me", world.account("fresh"))
        assert rate_headers(json_ok(fresh))[:2] == (300, 299)
        return


def json_ok(answer: httpx.Response) -> httpx.Response:
    json_of(answer)
    return answer


def test_10_posts_per_10_seconds_per_room(limited_api: Api, world: MonolithWorld) -> None:
    """Windows are fixed 10 s slots of the server clock (this host): repeat once if one rolled."""
    for attempt in range(2):
        member = world.account(f"poster {attempt}")
        room = world.room(member)
        window = int(time.time()) // 10
        posts = [
            limited_api.post(messages_path(room), member, data={"body": f"p{i}"}) for i in range(11)
        ]
        rolled = int(time.time()) // 10 != window
        if rolled and attempt == 0:
            continue
        assert not rolled, "two window roll-overs in a row"
        for answer in posts[:10]:
            assert list(json_of(answer)) == ["message_id"]
        assert_error(
            posts[10], 429, "Too many messages posted to this room; retry in a few seconds"
        )
        # A 300 s window boundary is also a 10 s one: the token's window did not roll either.
        assert [rate_headers(p)[:2] for p in posts] == [(300, 299 - i) for i in range(11)]
        assert world.count_messages(room) == 10
        other_room = world.room(member)
        other = limited_api.post(messages_path(other_room), member, data={"body": "elsewhere"})
        assert list(json_of(other)) == ["message_id"]
        # Reading the limited room is not a post: still allowed.
        assert (
            len(ids_of(limited_api.get(messages_path(room), member, params={"force": "1"}))) == 10
        )
        return
