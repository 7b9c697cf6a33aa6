"""The Read API answers as the PHP monolith does, on the real stack.

A room is seeded in the monolith's database (through its own HTTP API and, for the eras the app
no longer writes, as rows), captured with the capture service (a range hint, the monolith's rows
read through the MariaDB reader) and applied to a real HBase read store; then the monolith and
the Read API (its app in process, over the real HBase and the monolith's MariaDB as directory)
are asked the same reads and errors, and must answer the same status, the same Content-Type and
the same bytes (so the same parsed JSON)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from legacy_adapters.adapters.mariadb.directory import MariaDbAccountDirectory
from legacy_adapters.adapters.mariadb.engine import make_engine
from legacy_adapters.adapters.mariadb.monolith_reader import MariaDbMonolithReader
from legacy_adapters.settings import LegacyDatabaseSettings
from newcore.adapters.hbase.read_store import HBaseReadStore, drop_tables, ensure_tables
from newcore.domain.hints import CursorHint, Hint, RangeHint
from newcore.domain.model import MAX_ID
from newcore.domain.partitioning import partition_for
from newcore.entrypoints.read_api import ROOM_POSITION, create_app
from newcore.ports import LogRecord
from newcore.service.capture import Capturer
from newcore.service.reads import Reads
from newcore.settings import HBaseSettings
from newcore.wire.hints import encode_hint
from tests.support.monolith_world import Api, Member, MonolithWorld
from tests.support.stack import Stack, require_port

PARTITIONS = 16
BODIES = [
    "おはようございます 😀👍🏽",
    "[To:1]佐藤さん\n[rp aid=2 to=3-4]了解です",
    "[qt][qtmeta aid=5 time=1700000000]引用[/qt] a/b\\c \"quoted\" <tag> & 'single'",
    "[info][title]お知らせ[/title]本文 https://example.com/a/b?c=d&e=f[/info]",
    "tab\there, line\u2028separator, paragraph\u2029separator, control \x01 and del \x7f",
    "x" * 3000,
]


@pytest.fixture(scope="module")
def hbase(stack: Stack) -> Iterator[HBaseSettings]:
    require_port("HBase Thrift", stack.host, stack.hbase_thrift_port)
    settings = HBaseSettings(
        host=stack.host, thrift_port=stack.hbase_thrift_port,
        table_prefix=f"test_{uuid.uuid4().hex[:8]}",
    )  # fmt: skip
    ensure_tables(settings)
    try:
        yield settings
    finally:
        drop_tables(settings)


@pytest.fixture
def database(stack: Stack) -> LegacyDatabaseSettings:
    require_port("MariaDB", stack.host, stack.mariadb_port)
    return LegacyDatabaseSettings(
        mariadb_host=stack.host, mariadb_port=stack.mariadb_port, db_name=stack.db_name,
        db_user=stack.db_user, db_password=SecretStr(stack.db_password),
    )  # fmt: skip


@pytest.fixture
def world(stack: Stack) -> Iterator[MonolithWorld]:
    require_port("MariaDB", stack.host, stack.mariadb_port)
    built = MonolithWorld.open(stack)
    try:
        yield built
    finally:
        built.cleanup()


@pytest.fixture
def monolith(stack: Stack) -> Iterator[Api]:
    require_port("the monolith (nginx + PHP-FPM)", stack.host, stack.monolith_port)
    client = Api(stack.monolith_url)
    try:
        yield client
    finally:
        client.close()


class ReadApi:
    """The Read API's app, started with its lifespan, asked over httpx in one event loop."""

    def __init__(self, runner: asyncio.Runner, app: Any) -> None:
        self._runner = runner
        self._http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://read-api"
        )

    def get(
        self, path: str, member: Member | None, *, params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:  # fmt: skip
        sent = dict(headers or {})
        if member is not None:
            sent["X-ChatWorkToken"] = member.token
        return self._runner.run(self._http.get(path, params=params, headers=sent))

    def close(self) -> None:
        self._runner.run(self._http.aclose())


@contextmanager
def read_api(hbase: HBaseSettings, database: LegacyDatabaseSettings) -> Iterator[ReadApi]:
    engine = make_engine(database)

    @contextmanager
    def build() -> Iterator[Reads]:
        store = HBaseReadStore(hbase)
        try:
            yield Reads(store, MariaDbAccountDirectory(engine), settle_s=3)
        finally:
            store.close()

    app = create_app(build)
    try:
        with asyncio.Runner() as runner:
            lifespan = app.router.lifespan_context(app)
            runner.run(lifespan.__aenter__())
            client = ReadApi(runner, app)
            try:
                yield client
            finally:
                client.close()
                runner.run(lifespan.__aexit__(None, None, None))
    finally:
        engine.dispose()


def capture(
    database: LegacyDatabaseSettings, hbase: HBaseSettings, position: int, *hints: Hint
) -> None:
    """What the pipeline would do with these hints: read the monolith, apply the events."""
    engine = make_engine(database)
    store = HBaseReadStore(hbase)
    try:
        capturer = Capturer(MariaDbMonolithReader(engine), partitions=PARTITIONS)
        records = [
            LogRecord(partition_for(h.room_id, PARTITIONS), position, h.room_id, encode_hint(h))
            for h in hints
        ]
        outcome = capturer.capture(records, int(time.time() * 1000))
        assert outcome.events
        store.apply(outcome.events)
    finally:
        store.close()
        engine.dispose()


def same(theirs: httpx.Response, ours: httpx.Response, what: str) -> None:
    assert ours.status_code == theirs.status_code, what
    assert ours.headers.get("content-type") == theirs.headers.get("content-type"), what
    if theirs.status_code != 204:
        assert ours.json() == theirs.json(), what
    assert ours.content == theirs.content, what  # byte for byte, as PHP's json_encode


def test_the_read_api_answers_as_the_monolith(
    world: MonolithWorld, monolith: Api, hbase: HBaseSettings, database: LegacyDatabaseSettings
) -> None:
    alice = world.account("佐藤 花子", avatar_image_url="https://appdata.example/avatar/a/1.png")
    bob = world.account('Bob "the builder" O\'Brien / ボブ')  # no avatar: the default
    gone = world.account("退会した人")
    carol = world.account("Carol")  # not a member
    room = world.room(alice, gone)
    world.join(room, bob, "readonly")
    world.room(carol)
    world.messages(room, bob.account_id, [f"history {n}" for n in range(110)])
    ids = [monolith.post_message(room, alice, body) for body in BODIES]
    ids.append(monolith.post_message(room, gone, "then I left"))
    world.execute("DELETE FROM room_members WHERE account_id = %s", (gone.account_id,))
    world.execute("DELETE FROM api_tokens WHERE account_id = %s", (gone.account_id,))
    world.execute("DELETE FROM accounts WHERE account_id = %s", (gone.account_id,))
    edited, deleted = ids[0], ids[1]
    assert monolith.put(f"/v2/rooms/{room}/messages/{edited}", alice, data={"body": "編集済み"}).status_code == 200  # fmt: skip
    assert monolith.delete(f"/v2/rooms/{room}/messages/{deleted}", alice).status_code == 200
    legacy = [  # the eras the app no longer writes, as it left them
        world.message(room, bob.account_id, body=None, body_v1="旧い本文 ?", send_time=None,
                      update_time=None, created_at="2014-03-01 10:00:00"),
        world.message(room, bob.account_id, body=None, body_raw="シフトJIS".encode("shift_jis"),
                      send_time=None, update_time=None, created_at="2012-01-01 09:00:00"),
        world.message(room, bob.account_id, body=None, body_raw=b"cut \xe3\x81", send_time=None,
                      update_time=None, created_at="0000-00-00 00:00:00"),
        world.message(room, alice.account_id, body="soft-deleted", deleted=1),
    ]  # fmt: skip
    capture(database, hbase, 1, RangeHint(room, 1, MAX_ID))
    list_path = f"/v2/rooms/{room}/messages"
    missing = world.missing_room_id()

    with read_api(hbase, database) as ours:

        def compare(path: str, member: Member | None, params: dict[str, str] | None = None,
                    *, headers: dict[str, str] | None = None) -> httpx.Response:  # fmt: skip
            theirs = monolith.get(path, member, params=params)
            answer = ours.get(path, member, params=params, headers=headers)
            same(theirs, answer, f"GET {path} {params} as {member and member.name}")
            return answer

        for member in (alice, bob):
            answer = compare(list_path, member, {"force": "1"})
            assert len(answer.json()) == 100
            assert answer.headers[ROOM_POSITION] == "1"
        for message_id in [*ids, *map(str, legacy), "99999999999999999", "9999999999999999999"]:
            compare(f"{list_path}/{message_id}", alice)
        for path, who, params in [
            (list_path, None, {"force": "1"}),
            (list_path, Member(alice.account_id, "not-a-token", ""), {"force": "1"}),
            (list_path, Member(alice.account_id, "t" * 65, ""), {"force": "1"}),
            (f"/v2/rooms/{missing}/messages", alice, {"force": "1"}),
            (f"/v2/rooms/{missing}/messages/{ids[2]}", alice, None),
            (list_path, carol, {"force": "1"}),
            (f"{list_path}/{ids[2]}", carol, None),
            ("/v2/rooms/abc/messages", alice, None),
            ("/v2/rooms/0/messages", alice, None),
            ("/v2/rooms/abc/messages", None, None),
            (f"{list_path}/abc", alice, None),
            (f"{list_path}/0{ids[2]}", alice, None),
            (f"{list_path}/read", alice, None),
            (f"{list_path}/", alice, None),
            (list_path, alice, {"force": "2"}),
            (list_path, alice, {"force[]": "1"}),
        ]:
            compare(path, who, params)

        # force=0, compared as the gateway does: the monolith's first fetch (the latest 100)
        # against the shadow variant "as if the cursor were before its first message".
        theirs = monolith.get(list_path, alice)
        assert theirs.status_code == 200
        after = str(int(theirs.json()[0]["message_id"]) - 1)
        answer = ours.get(list_path, alice, headers={"X-Migration-Shadow": "1", "X-Migration-After": after})  # fmt: skip
        same(theirs, answer, "force=0 at the monolith's cursor")
        # The monolith's cursor moved; once captured, both have nothing new for alice.
        capture(database, hbase, 2, CursorHint(room, alice.account_id))
        shadow = {"X-Migration-Shadow": "1"}
        answer = compare(list_path, alice, {"force": "0"}, headers=shadow)
        assert answer.status_code == 204
        assert answer.headers[ROOM_POSITION] == "2"
        cursor = world.cursor_of(room, alice)  # the monolith's moved to its last live message
        assert cursor is not None and cursor[1] == legacy[2]
