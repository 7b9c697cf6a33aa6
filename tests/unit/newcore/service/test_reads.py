"""The Read API's use cases on the embedded read store and the in-memory directory: the
monolith's answers (status, error strings, order of the checks), names rendered at read time,
no cursor moved, the room's position read first, and the applied frontier under interleavings
of commits, capture lag and reads (a fake clock)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from legacy_adapters.adapters.embedded.memory_monolith import InMemoryMonolith
from newcore.adapters.embedded.sqlite_read_store import SqliteReadStore
from newcore.domain.events import CursorMoved, Event, MessageDeleted, MessageUpserted
from newcore.domain.model import Message, ReadCursor
from newcore.errors import MonolithUnavailable, ReadStoreUnavailable
from newcore.ports import DEFAULT_AVATAR, ReadStore
from newcore.service.reads import (
    Answer,
    ArrayParam,
    ListRequest,
    MessageRequest,
    Reads,
    frontier_cut,
)

ROOM, OTHER_ROOM, NO_ROOM = 500, 501, 999
ALICE, BOB, GONE, STRANGER = 11, 12, 13, 14  # GONE posted, then withdrew (no account row)
NOW = 1_800_000_000.0


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    store: SqliteReadStore
    directory: InMemoryMonolith
    clock: Clock
    reads: Reads
    position: int = 0

    def apply(self, *events: Event) -> None:
        self.store.apply(list(events))

    def post(
        self, message_id: int, account: int = ALICE, *, age_s: float = 60, body: str = ""
    ) -> Message:
        """A message sent `age_s` before the clock's now, applied at the next position."""
        self.position += 1
        message = Message(
            ROOM, message_id, account, body or f"message {message_id}",
            send_time=math.floor(self.clock.now - age_s), update_time=0,
        )  # fmt: skip
        self.apply(MessageUpserted(message, self.position, 1))
        return message

    def fetched(self, account: int, last_fetched: int) -> None:
        self.position += 1
        self.apply(CursorMoved(ReadCursor(ROOM, account, 0, last_fetched), self.position, 1))

    def list(self, force: str | ArrayParam | None = None, *, token: str | None = "alice",
             shadow: bool = False, after: str | None = None, room: str = str(ROOM)) -> Answer:  # fmt: skip
        return self.reads.list_messages(ListRequest(token, room, force, shadow, after))

    def one(self, message: str, *, token: str | None = "alice", room: str = str(ROOM)) -> Answer:
        return self.reads.message(MessageRequest(token, room, message))


@pytest.fixture
def world() -> Iterator[World]:
    directory = InMemoryMonolith()
    for room in (ROOM, OTHER_ROOM):
        directory.add_room(room)
    directory.add_account(ALICE, "佐藤 花子", "https://appdata.chatwork.com/avatar/11.png", "alice")
    directory.add_account(BOB, "Bob", None, "bob")
    directory.add_account(STRANGER, "Stranger", None, "stranger")
    directory.add_member(ROOM, ALICE, "admin")
    directory.add_member(ROOM, BOB, "readonly")
    directory.add_member(OTHER_ROOM, STRANGER, "member")
    store = SqliteReadStore(":memory:")
    clock = Clock()
    yield World(store, directory, clock, Reads(store, directory, settle_s=3, clock=clock))
    store.close()


def ids(answer: Answer) -> list[str]:
    assert answer.status == 200 and isinstance(answer.payload, list), answer
    return [m["message_id"] for m in answer.payload]


def refused(status: int, message: str, position: int = -1) -> Answer:
    return Answer(status, {"errors": [message]}, position)


# -- the monolith's checks, in its order -----------------------------------------------------


def test_no_token_or_a_bad_one_is_401_before_anything_else(world: World) -> None:
    world.post(1)
    for token in (None, "", "nope", "x" * 65, "日本語"):
        assert world.list(token=token) == refused(401, "Invalid API token", 1)
        assert world.list("2", token=token, room="abc") == refused(401, "Invalid API token")
        assert world.one("1", token=token) == refused(401, "Invalid API token", 1)
        assert world.one("x", token=token, room="0") == refused(401, "Invalid API token")


def test_ids_the_monolith_routes_do_not_match_are_resource_not_found(world: World) -> None:
    for room in ("abc", "0", "0500", "-5", "5.0", "12345678901", "%35", ""):
        assert world.list("1", room=room) == refused(404, "Resource not found")
        assert world.one("1", room=room) == refused(404, "Resource not found")
    for message in ("abc", "0", "01", "12345678901234567890", "1e3", " 1", ""):
        assert world.one(message) == refused(404, "Resource not found")


def test_read_and_unread_are_known_paths_with_another_method(world: World) -> None:
    assert world.one("read") == refused(405, "Method not allowed")
    assert world.one("unread") == refused(405, "Method not allowed")
    assert world.one("read", room="abc") == refused(404, "Resource not found")


def test_force_is_checked_before_the_room(world: World) -> None:
    use = "Invalid value for parameter 'force': use 0 or 1"
    for bad in ("2", "true", " 1", "01", "-1"):
        assert world.list(bad) == refused(400, use)
        assert world.list(bad, room=str(NO_ROOM)) == refused(400, use)
    assert world.list(ArrayParam()) == refused(400, "Invalid value for parameter 'force'")
    assert world.list("", shadow=True).status == 204  # empty means the default, force=0


def test_unknown_room_then_not_a_member(world: World) -> None:
    assert world.list("1", room=str(NO_ROOM)) == refused(404, "Room not found")
    assert world.one("1", room=str(NO_ROOM)) == refused(404, "Room not found")
    assert world.list("1", token="stranger") == refused(
        403, "You don't have permission to access this room"
    )
    assert world.one("1", token="stranger") == refused(
        403, "You don't have permission to access this room"
    )


def test_readonly_members_read(world: World) -> None:
    world.post(1)
    assert ids(world.list("1", token="bob")) == ["1"]


def test_an_unknown_message_is_message_not_found(world: World) -> None:
    world.post(7)
    world.apply(MessageDeleted(ROOM, 7, 10, 1))
    world.apply(MessageUpserted(Message(OTHER_ROOM, 8, STRANGER, "elsewhere", 1, 0), 11, 1))
    for message in ("7", "8", "9", "9999999999999999999"):
        assert world.one(message) == refused(404, "Message not found", 10)


# -- the answers ------------------------------------------------------------------------------


def test_force_1_is_the_latest_100_oldest_first_with_names_at_read_time(world: World) -> None:
    for mid in range(1, 151):
        world.post(mid * 1000, account=(ALICE, BOB, GONE)[mid % 3], age_s=1)  # young: no hold-back
    answer = world.list("1")
    assert ids(answer) == [str(mid * 1000) for mid in range(51, 151)]
    assert answer.room_position == 150
    assert isinstance(answer.payload, list)
    first, second, third = answer.payload[:3]
    assert first == {
        "message_id": "51000",
        "account": {
            "account_id": ALICE,
            "name": "佐藤 花子",
            "avatar_image_url": "https://appdata.chatwork.com/avatar/11.png",
        },
        "body": "message 51000",
        "send_time": math.floor(NOW - 1),
        "update_time": 0,
    }
    assert list(first) == ["message_id", "account", "body", "send_time", "update_time"]
    assert list(first["account"]) == ["account_id", "name", "avatar_image_url"]
    assert second["account"] == {
        "account_id": BOB,
        "name": "Bob",
        "avatar_image_url": DEFAULT_AVATAR,
    }
    assert third["account"] == {"account_id": GONE, "name": "", "avatar_image_url": DEFAULT_AVATAR}
    world.directory.add_account(BOB, "Robert", None, "bob")  # a rename shows at once
    again = world.list("1")
    assert isinstance(again.payload, list)
    assert again.payload[1]["account"]["name"] == "Robert"


def test_force_1_of_an_empty_room_is_an_empty_list(world: World) -> None:
    assert world.list("1") == Answer(200, [], -1)


def test_one_message(world: World) -> None:
    world.post(123456789012345678, account=BOB, body="[To:11]佐藤さん 😀")
    answer = world.one("123456789012345678")
    assert answer == Answer(200, {
        "message_id": "123456789012345678",
        "account": {"account_id": BOB, "name": "Bob", "avatar_image_url": DEFAULT_AVATAR},
        "body": "[To:11]佐藤さん 😀", "send_time": math.floor(NOW - 60), "update_time": 0,
    }, 1)  # fmt: skip


def test_force_0_follows_the_fetch_cursor_and_never_moves_it(world: World) -> None:
    for mid in range(1, 251):
        world.post(mid)
    assert ids(world.list()) == [str(mid) for mid in range(151, 251)]  # never fetched: latest
    assert ids(world.list("0")) == [str(mid) for mid in range(151, 251)]  # asked again: the same
    assert world.store.cursor(ROOM, ALICE) is None
    world.fetched(ALICE, 120)
    assert ids(world.list()) == [str(mid) for mid in range(121, 221)]
    world.fetched(ALICE, 250)
    assert world.list() == Answer(204, None, 252)
    assert world.store.cursor(ROOM, ALICE) == ReadCursor(ROOM, ALICE, 0, 250)


def test_force_0_skips_deleted_messages_after_the_cursor(world: World) -> None:
    for mid in range(1, 6):
        world.post(mid)
    world.fetched(ALICE, 1)
    world.apply(MessageDeleted(ROOM, 2, 20, 1), MessageDeleted(ROOM, 3, 20, 1))
    assert ids(world.list()) == ["4", "5"]


# -- the applied frontier ----------------------------------------------------------------------


def test_force_0_holds_back_young_messages_and_stops_at_the_first(world: World) -> None:
    world.post(1, age_s=10)
    world.post(2, age_s=3)  # exactly settle_s old: served
    world.post(3, age_s=1)  # young
    world.post(4, age_s=30)  # old, but after a young one: never skipped over
    assert ids(world.list()) == ["1", "2"]
    world.fetched(ALICE, 2)
    assert world.list() == Answer(204, None, 5)  # all that is new is young
    world.clock.now += 2
    assert ids(world.list()) == ["3", "4"]


def test_shadow_reads_are_not_held_back(world: World) -> None:
    world.post(1, age_s=10)
    world.post(2, age_s=0)
    assert ids(world.list(shadow=True)) == ["1", "2"]
    assert ids(world.list("1")) == ["1", "2"]  # force=1 has no cursor: never held back
    assert world.one("2").status == 200


def test_shadow_after_answers_as_if_the_cursor_were_there(world: World) -> None:
    for mid in (10, 20, 30, 40):
        world.post(mid)
    world.fetched(ALICE, 40)
    assert ids(world.list(shadow=True, after="15")) == ["20", "30", "40"]
    assert ids(world.list(shadow=True, after="0")) == ["10", "20", "30", "40"]  # never fetched
    assert world.list(shadow=True, after="40") == Answer(204, None, 5)
    assert world.list(shadow=True) == Answer(204, None, 5)  # without it: the account's cursor
    assert world.list(after="15") == Answer(204, None, 5)  # not shadow: ignored
    assert ids(world.list("1", shadow=True, after="15")) == ["10", "20", "30", "40"]  # force=1
    bad = refused(400, "Invalid value for header 'X-Migration-After'", 5)
    for after in ("x", "-1", "1.5", "", "18446744073709551616", " 3"):
        assert world.list(shadow=True, after=after) == bad


def test_frontier_cut_examples() -> None:
    def m(mid: int, send_time: int) -> Message:
        return Message(ROOM, mid, ALICE, "", send_time, 0)

    page = [m(1, 90), m(2, 97), m(3, 98), m(4, 50)]
    assert frontier_cut(page, now=100, settle_s=3) == page[:2]
    assert frontier_cut(page, now=101, settle_s=3) == page
    assert frontier_cut(page, now=100, settle_s=5) == page[:1]
    assert frontier_cut(page, now=100, settle_s=20) == []
    assert frontier_cut([], now=100, settle_s=3) == []


def test_the_gap_of_design_md_is_never_served_past() -> None:
    """DESIGN.md's example: 200 commits after 201, so 201 is applied first. A reader served 201
    at once would move its cursor past 200 for good; held back, it gets 200 and 201 in order."""
    assert Schedule(settle_s=3).run([
        Post(begin=0.0, insert=0.2, commit=0.9, lag=0.1),  # id 200: a slow transaction
        Post(begin=0.1, insert=0.3, commit=0.35, lag=0.1),  # id 201: fast, visible first
    ], reads=[0.5, 1.5, 3.2, 4.5]) == Outcome(served=[1, 2], skipped=[])  # fmt: skip
    assert Schedule(settle_s=0).run([
        Post(begin=0.0, insert=0.2, commit=0.9, lag=0.1),
        Post(begin=0.1, insert=0.3, commit=0.35, lag=0.1),
    ], reads=[0.5, 1.5, 3.2, 4.5]) == Outcome(served=[2], skipped=[1])  # fmt: skip


# -- interleavings: the frontier's argument as a property ------------------------------------------


@dataclass(frozen=True)
class Post:
    """One message's life, in seconds: its transaction begins (and takes `send_time`), the
    INSERT allocates its id, it commits, and the pipeline applies it `lag` later."""

    begin: float
    insert: float
    commit: float
    lag: float


@dataclass(frozen=True)
class Outcome:
    served: list[int]  # ids in the order the reader got them
    skipped: list[int]  # ids the reader's cursor moved past without serving them


@dataclass(frozen=True)
class Schedule:
    """A room written by the monolith and read by one `force=0` client that moves its own fetch
    cursor to the last message of every answer (the write path of `new_primary`, played here
    as the cursor event the capture would apply), the Read API in between."""

    settle_s: float

    def run(self, posts: Sequence[Post], reads: Sequence[float]) -> Outcome:
        # Ids come from the INSERT order (AUTO_INCREMENT), send_time from the start.
        order = sorted(range(len(posts)), key=lambda k: posts[k].insert)
        messages = {
            rank + 1: Message(ROOM, rank + 1, ALICE, "", math.floor(1000 + posts[k].begin), 0)
            for rank, k in enumerate(order)
        }
        visible = {rank + 1: posts[k].commit + posts[k].lag for rank, k in enumerate(order)}
        directory = InMemoryMonolith()
        directory.add_room(ROOM)
        directory.add_account(ALICE, "a", None, "alice")
        directory.add_member(ROOM, ALICE, "member")
        store = SqliteReadStore(":memory:")
        clock = Clock()
        reads_ = Reads(store, directory, settle_s=self.settle_s, clock=clock)
        applied: set[int] = set()
        position = 0
        served: list[int] = []
        skipped: list[int] = []
        cursor = 0
        final = max([*visible.values(), *reads], default=0) + self.settle_s + 2
        try:
            for at in [*sorted(reads), final, final]:
                clock.now = 1000 + at
                for mid in sorted(visible, key=visible.__getitem__):  # in the order they land
                    if visible[mid] <= at and mid not in applied:
                        position += 1
                        store.apply([MessageUpserted(messages[mid], position, 1)])
                        applied.add(mid)
                answer = reads_.list_messages(ListRequest("alice", str(ROOM)))
                if answer.status == 204:
                    continue
                got = [int(m["message_id"]) for m in answer.payload or []]  # type: ignore[index]
                skipped += [mid for mid in messages if cursor < mid < got[0] and mid not in served]
                served += got
                cursor = got[-1]
                position += 1
                store.apply([CursorMoved(ReadCursor(ROOM, ALICE, 0, cursor), position, 1)])
        finally:
            store.close()
        return Outcome(served, sorted(set(skipped) | (set(messages) - set(served))))


MAX_TRANSACTION_S, MAX_LAG_S = 0.5, 1.0
SETTLE_S = 1 + 2 * MAX_TRANSACTION_S + MAX_LAG_S  # the bound the module docstring derives


@st.composite
def posts(draw: st.DrawFn) -> list[Post]:
    count = draw(st.integers(1, 40))
    third = MAX_TRANSACTION_S / 3
    found = []
    for _ in range(count):
        begin = draw(st.floats(0, 6))
        # time() after BEGIN, the INSERT, then the COMMIT: the whole within the transaction bound
        insert = begin + draw(st.floats(0, third)) + draw(st.floats(0, third))
        commit = insert + draw(st.floats(0, third))
        found.append(Post(begin, insert, commit, draw(st.floats(0, MAX_LAG_S))))
    return found


@settings(max_examples=200, deadline=None)
@given(posts(), st.lists(st.floats(0, 10), max_size=30))
def test_a_reader_following_its_cursor_gets_every_message_once_in_order(
    posted: list[Post], reads: list[float]
) -> None:
    outcome = Schedule(SETTLE_S).run(posted, reads)
    assert outcome == Outcome(served=list(range(1, len(posted) + 1)), skipped=[])


# -- the room's position and failures -----------------------------------------------------------


class Recording:
    """A read store that records the order of its calls (and can fail)."""

    def __init__(self, inner: ReadStore, fail: bool = False) -> None:
        self.inner = inner
        self.calls: list[str] = []
        self.fail = fail

    def __getattr__(self, name: str) -> object:
        method = getattr(self.inner, name)

        def call(*args: object) -> object:
            self.calls.append(name)
            if self.fail:
                raise ReadStoreUnavailable("HBase Thrift at 127.0.0.1:9090: down")
            return method(*args)

        return call


def test_every_answer_carries_the_room_position_read_before_the_data(world: World) -> None:
    assert world.list("1").room_position == -1
    world.post(1)
    recording = Recording(world.store)
    reads = Reads(recording, world.directory, settle_s=3, clock=world.clock)  # type: ignore[arg-type]
    for request in (ListRequest("alice", str(ROOM), "1"), ListRequest("alice", str(ROOM), "0"),
                    ListRequest("nope", str(ROOM)), ListRequest("alice", str(ROOM), "2")):  # fmt: skip
        recording.calls.clear()
        assert reads.list_messages(request).room_position == 1
        assert recording.calls[0] == "room_position"
    recording.calls.clear()
    assert reads.message(MessageRequest("alice", str(ROOM), "1")).room_position == 1
    assert recording.calls == ["room_position", "message"]
    assert reads.unrouted("alice", known_path=True, room=str(ROOM)) == refused(
        405, "Method not allowed", 1
    )
    assert reads.unrouted("alice", known_path=False) == refused(404, "Resource not found")
    assert reads.unrouted(None, known_path=True, room=str(ROOM)) == refused(
        401, "Invalid API token", 1
    )


class DirectoryDown(InMemoryMonolith):
    def account_for_token(self, token: str) -> int | None:
        raise MonolithUnavailable("monolith database: OperationalError")

    def access(self, room_id: int, account_id: int) -> str:
        raise MonolithUnavailable("monolith database: OperationalError")


def test_a_dependency_down_is_503_with_the_contracts_error_shape(world: World) -> None:
    down = Reads(Recording(world.store, fail=True), world.directory, settle_s=3)  # type: ignore[arg-type]
    unavailable = refused(503, "Service temporarily unavailable; retry later")
    assert down.list_messages(ListRequest("alice", str(ROOM), "1")) == unavailable
    assert down.message(MessageRequest("alice", str(ROOM), "1")) == unavailable
    assert down.health() == {
        "ok": False, "read_store": "HBase Thrift at 127.0.0.1:9090: down", "directory": "ok"
    }  # fmt: skip
    world.post(1)
    no_directory = Reads(world.store, DirectoryDown(), settle_s=3)
    assert no_directory.list_messages(ListRequest("alice", str(ROOM), "1")) == refused(
        503, "Service temporarily unavailable; retry later", 1
    )
    assert no_directory.health()["ok"] is False
    assert world.reads.health() == {"ok": True, "read_store": "ok", "directory": "ok"}


def test_settle_must_not_be_negative(world: World) -> None:
    with pytest.raises(ValueError, match="settle_s"):
        Reads(world.store, world.directory, settle_s=-1)
