"""`chat-migrate backfill` as its own process on the real stack, against a private pipeline of
its own (tests/support/gateway_world.py: a scratch monolith database, the binlog source, the
capturer and the updater on scratch topics, scratch HBase tables, a scratch control database).

The history is written with `sql_log_bin = 0` (`world.unlogged()`): the binlog source never
sees it, so only the backfill can bring it into the read model, as for history written before
capture began. History is messages and read cursors (`room_cursors`), a room with cursors and
no message among them (regression: parity reported `cursor_missing` after a backfill that sent
messages only). Live writes (logged: captured by the binlog source) race the backfill.

The story: a run paused by its operator holds its job (a second run is refused, exit 2) and
serves its metrics; resumed, it is killed with `kill -9` mid-way; the next run resumes from the
checkpoint: the read model ends holding exactly the monolith's rows and cursors (no gap, nothing extra), no
chunk saved before the kill is sent again, and every room is marked backfilled only once its
history is in the read model. Bad input (unknown rooms, a nonsense argument, a checkpoint of
another data set) is refused with exit 2 and changes nothing: no hint appended, no mark, no
checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from gateway.adapters.mariadb.control_schema import control_engine
from gateway.adapters.mariadb.job_board import MariaDbJobBoard
from gateway.domain.jobs import JobState
from migrator.adapters.mariadb.checkpoints import MariaDbCheckpointStore, ensure_checkpoints
from migrator.domain.backfill import (
    KIND,
    PLAN_KIND,
    Order,
    Plan,
    PlannedRoom,
    Progress,
    decode_plan,
    decode_progress,
    digest,
    plan_key,
)
from migrator.domain.selection import Selection
from migrator.entrypoints.cli import app
from migrator.entrypoints.commands import backfill as command
from migrator.entrypoints.failures import run_guarded
from newcore.domain.hints import RangeHint
from newcore.domain.partitioning import partition_for
from newcore.wire.hints import decode_hint
from tests.support import topics
from tests.support.gateway_world import PARTITIONS, GatewayWorld, gateway_world
from tests.support.processes import free_port
from tests.support.stack import REPO, Stack

CHAT_MIGRATE = str(REPO / ".venv" / "bin" / "chat-migrate")
SIZES = (2400, 1100, 300, 35, 0)  # messages per room; the last room has none
OLD = 1_600_000_000  # every history row is older than hot_days: the order is smallest first


@dataclass
class Ran:
    code: int
    out: str
    err: str


@dataclass
class History:
    rooms: list[int]
    ids: dict[int, list[int]]  # room -> its history's message ids (soft-deleted ones too)


@pytest.fixture(scope="module")
def world(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayWorld]:
    with gateway_world(stack, tmp_path_factory.mktemp("backfill") / "logs") as built:
        yield built


@pytest.fixture(scope="module")
def history(world: GatewayWorld) -> History:
    """Rooms with history nothing captured: ids interleaved between rooms as in a real
    monolith, a few soft-deleted rows, a few purged ones (gaps in the ids)."""
    rooms = [world.seed.room(name=f"backfill {i}") for i in range(len(SIZES))]
    rows = []
    for turn in range(max(SIZES)):
        for room, size in zip(rooms, SIZES, strict=True):
            if turn < size:
                deleted = 1 if turn % 97 == 5 else 0
                rows.append((room, 1, f"履歴 {room}/{turn} 😀", OLD + turn, 0, deleted))
    with world.unlogged() as db, db.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO messages (room_id, account_id, body, send_time, update_time, deleted)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            rows,
        )
        cursor.execute("DELETE FROM messages WHERE room_id = %s AND MOD(message_id, 50) = 7",
                       (rooms[1],))  # fmt: skip
        # Read cursors: many accounts in the biggest room, a few in a small one, two in the
        # room without messages (a force=0 GET of an empty room leaves a row at 0).
        cursors = [(rooms[0], account, 1000 + account, 2000 + account) for account in range(1, 41)]
        cursors += [(rooms[3], 3, 7, 9), (rooms[3], 8, 0, 11), (rooms[4], 2, 0, 0),
                    (rooms[4], 5, 0, 0)]  # fmt: skip
        cursor.executemany(
            "INSERT INTO room_cursors (room_id, account_id, last_read_message_id,"
            " last_fetched_message_id) VALUES (%s, %s, %s, %s)",
            cursors,
        )
        ids: dict[int, list[int]] = {}
        for room in rooms:
            cursor.execute(
                "SELECT message_id FROM messages WHERE room_id = %s ORDER BY message_id", (room,)
            )
            ids[room] = [int(r[0]) for r in cursor.fetchall()]
    assert [len(ids[r]) > 0 for r in rooms] == [True, True, True, True, False]
    return History(rooms, ids)


def env_of(world: GatewayWorld, **extra: str) -> dict[str, str]:
    return {
        **world.env,
        "MIG_MIGRATOR_METRICS_PORT": "0",
        "MIG_MIGRATOR_WHO": "ops:integration",
        "MIG_BACKFILL_VISIBLE_TIMEOUT_S": "60",
        **extra,
    }


def chat_migrate(world: GatewayWorld, *args: str, **extra: str) -> Ran:
    done = subprocess.run(
        [CHAT_MIGRATE, *args], env=env_of(world, **extra), capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    return Ran(done.returncode, done.stdout, done.stderr)


class InProcess:
    """The same `chat-migrate` app in this process (the same wiring, read from the world's
    environment) through `run_guarded`: the real messages and exit codes without a process
    start, for the calls that are refused early."""

    def __init__(
        self,
        world: GatewayWorld,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        for name, value in env_of(world).items():
            monkeypatch.setenv(name, value)
        monkeypatch.setattr(command, "job_logging", lambda ops: logging.getLogger("test.backfill"))
        self._monkeypatch = monkeypatch
        self._capsys = capsys

    def __call__(self, *args: str) -> Ran:
        self._capsys.readouterr()
        self._monkeypatch.setattr(sys, "argv", ["chat-migrate", *args])
        code = run_guarded(app)
        out, err = self._capsys.readouterr()
        return Ran(code, out, err)


@pytest.fixture
def in_process(
    world: GatewayWorld, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> InProcess:
    return InProcess(world, monkeypatch, capsys)


def start(world: GatewayWorld, log: Path, *args: str, **extra: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [CHAT_MIGRATE, *args], env=env_of(world, **extra), stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip


def hint_ends(world: GatewayWorld) -> dict[int, int]:
    async def ends() -> dict[int, int]:
        consumer = AIOKafkaConsumer(bootstrap_servers=world.kafka.bootstrap)
        await consumer.start()
        try:
            tps = [TopicPartition(world.topic_hints, p) for p in range(PARTITIONS)]
            found = await consumer.end_offsets(tps)
            return {tp.partition: int(offset) for tp, offset in found.items()}
        finally:
            await consumer.stop()

    return asyncio.run(ends())


def backfill_hints(world: GatewayWorld, rooms: list[int]) -> list[tuple[int, int, RangeHint]]:
    """(partition, position, hint) of every range hint of `rooms` on the hints topic."""
    records = asyncio.run(topics.read_all(world.kafka, world.topic_hints, PARTITIONS))
    found = []
    for record in records:
        hint = decode_hint(record.value)
        if isinstance(hint, RangeHint) and hint.room_id in rooms:
            found.append((record.partition, record.position, hint))
    return found


@contextlib.contextmanager
def checkpoints(world: GatewayWorld) -> Iterator[tuple[MariaDbCheckpointStore, MariaDbJobBoard]]:
    server = world.database.model_copy(update={"db_name": world.stack.db_name})
    engine = control_engine(server, world.control_db, pool_size=2)
    try:
        ensure_checkpoints(engine)
        yield MariaDbCheckpointStore(engine), MariaDbJobBoard(engine)
    finally:
        engine.dispose()


def marked(world: GatewayWorld, rooms: list[int]) -> set[int]:
    return {room for room in rooms if world.control.room(room).backfilled_at is not None}


def monolith_cursors(world: GatewayWorld, room: int) -> dict[int, tuple[int, int]]:
    """The room's read cursors in the monolith: account -> (last read, last fetched)."""
    with world.unlogged() as db, db.cursor() as cursor:
        cursor.execute(
            "SELECT account_id, last_read_message_id, last_fetched_message_id FROM room_cursors"
            " WHERE room_id = %s ORDER BY account_id",
            (room,),
        )
        return {int(r[0]): (int(r[1]), int(r[2])) for r in cursor.fetchall()}


def read_model_cursors(
    world: GatewayWorld, room: int, accounts: Iterable[int]
) -> dict[int, tuple[int, int]]:
    """The same, as the read model holds them, for `accounts`."""
    found = {}
    for account in accounts:
        cursor = world.read_model.cursor(room, account)
        if cursor is not None:
            found[account] = (cursor.last_read_message_id, cursor.last_fetched_message_id)
    return found


def visible_history(world: GatewayWorld, history: History, room: int) -> bool:
    """The read model holds every live history row of the room (later rows may be missing:
    the backfill's promise is the history) and every read cursor, with the monolith's values."""
    live = world.monolith_rows(room)
    wanted = {m for m in history.ids[room] if m in live}
    cursors = monolith_cursors(world, room)
    return (
        wanted <= set(world.read_model_rows(room))
        and read_model_cursors(world, room, cursors) == cursors
    )


def test_bad_input_is_refused_and_changes_nothing(
    world: GatewayWorld, history: History, in_process: InProcess
) -> None:
    rooms = history.rooms
    with checkpoints(world) as (store, _):
        # A checkpoint another data set left under the job name "foreign".
        plan = Plan(
            job="foreign", fingerprint="mariadb:elsewhere/chat",
            target=f"{world.topic_hints}/{PARTITIONS}", selection=Selection(ids=(rooms[0],)),
            order=Order.HOT, rooms=(PlannedRoom(rooms[0], 1, 10, 10),), created_unix=1.0,
        )  # fmt: skip
        plan_text = plan.encode()
        progress = Progress(plan_digest=digest(plan_text), total_rooms=1, total_rows=10)
        store.save(plan_key("foreign"), PLAN_KIND, plan_text)
        store.save("foreign", KIND, progress.encode())
        before_jobs = store.jobs()
        before_ends = hint_ends(world)

        cases = [
            (["backfill", f"{rooms[0]},4000000001", "--job", "unknown"],
             "unknown room(s) 4000000001"),
            (["backfill", str(rooms[0]), "--chunk-rows", "5000", "--job", "big"],
             "--chunk-rows 5000 is more than the capturer's range page (1000"),
            (["backfill", str(rooms[0]), "--job", "foreign"],
             "was made against another data set"),
        ]  # fmt: skip
        for index, (args, says) in enumerate(cases):
            # The console script itself for the first; the same app in this process after.
            ran = chat_migrate(world, *args) if index == 0 else in_process(*args)
            assert ran.code == 2, (args, ran.out, ran.err)
            assert says in ran.err, (args, ran.err)
            assert "Traceback" not in ran.err
        assert store.jobs() == before_jobs  # no checkpoint made, the foreign one untouched
        assert hint_ends(world) == before_ends  # no hint appended
        assert marked(world, rooms) == set()  # no mark
        store.delete("foreign")
        store.delete(plan_key("foreign"))


def test_killed_mid_run_then_resumed_ends_exact_and_marks_only_visible_rooms(
    world: GatewayWorld, history: History, tmp_path: Path, in_process: InProcess
) -> None:
    rooms, big = history.rooms, history.rooms[0]
    selection = ",".join(str(r) for r in rooms)
    # Slow enough that the kill lands with the biggest room half sent whatever the machine's
    # load; the resumed run goes faster (the rate is not part of the checkpoint).
    args = ["backfill", selection, "--chunk-rows", "100", "--rooms-in-parallel", "2"]
    slow, fast = [*args, "--rate", "500"], [*args, "--rate", "5000"]
    metrics_port = free_port()
    with checkpoints(world) as (store, board):
        # Paused by its operator before it starts: it plans, holds the job and waits.
        board.set_control("backfill", "ops:integration", "hold at start", state=JobState.PAUSE)
        ends_before = hint_ends(world)
        first = start(world, tmp_path / "first.log", *slow,
                      MIG_MIGRATOR_METRICS_PORT=str(metrics_port))  # fmt: skip

        def log_of() -> str:
            return (tmp_path / "first.log").read_text(errors="replace")[-3000:]

        try:
            world.until(lambda: bool(board.reports()), "the paused backfill's heartbeat", 60)
            assert first.poll() is None
            # A second run of the same job is refused while the first holds it.
            second = in_process(*slow)
            assert second.code == 2 and "job backfill is running" in second.err, (
                second,
                log_of(),
            )
            # Its metrics are served while it runs.
            text = (
                urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)
                .read()
                .decode()
            )
            assert 'migrator_backfill_messages_total{job="backfill"} 0.0' in text
            assert store.load("backfill") is None  # paused before its first save
            assert hint_ends(world) == ends_before  # and before its first hint

            board.set_control("backfill", "ops:integration", "go", state=JobState.RUN)
            # Live writes race the backfill: new messages, an edit of an old one.
            live = [world.seed.message(big, 1, body=f"live {i}", send_time=int(time.time()))
                    for i in range(3)]  # fmt: skip
            world.seed.execute(
                "UPDATE messages SET body = 'edited live', update_time = %s WHERE message_id = %s",
                (int(time.time()), history.ids[rooms[1]][3]),
            )

            def far_enough() -> bool:
                saved = store.load("backfill")
                return saved is not None and decode_progress("backfill", saved[1]).sent_rows >= 900

            world.until(far_enough, "the backfill sent 900 messages", 60)
            first.send_signal(signal.SIGKILL)
            assert first.wait(10) == -signal.SIGKILL
        finally:
            if first.poll() is None:
                first.kill()
        log = (tmp_path / "first.log").read_text(errors="replace")
        saved = store.load("backfill")
        assert saved is not None, log
        at_kill = decode_progress("backfill", saved[1])
        ends_at_kill = hint_ends(world)
        plan_saved = store.load(plan_key("backfill"))
        assert plan_saved is not None
        plan = decode_plan("backfill", plan_saved[1])
        assert [r.room_id for r in plan.rooms] == sorted(
            rooms, key=lambda r: (len(history.ids[r]), r)
        )
        # Killed mid-way: the biggest room is not done, and is not marked.
        assert big in at_kill.rooms and big not in marked(world, rooms), (at_kill, log)
        for room in marked(world, rooms):
            assert visible_history(world, history, room), room

        # The next run resumes; every room it marks is visible when the mark is seen.
        second_run = start(world, tmp_path / "second.log", *fast)
        seen: set[int] = set(marked(world, rooms))
        try:
            deadline = time.monotonic() + 90
            while second_run.poll() is None:
                for room in marked(world, rooms) - seen:
                    assert visible_history(world, history, room), room
                    seen.add(room)
                assert time.monotonic() < deadline, "the resumed backfill did not end"
                time.sleep(0.1)
        finally:
            if second_run.poll() is None:
                second_run.kill()
        log = (tmp_path / "second.log").read_text(errors="replace")
        assert second_run.returncode == 0, log
        assert f"backfill backfill: done (resumed): {len(rooms)} rooms" in log

    # Every room marked, and the read model holds exactly the monolith's rows.
    assert marked(world, rooms) == set(rooms)
    world.until_read_model_matches(rooms, seconds=30)
    for room in rooms:
        assert world.read_model_rows(room) == world.monolith_rows(room), room
    assert set(live) <= set(world.read_model_rows(big))
    # Every read cursor of the backfilled rooms, with the monolith's values: the room without
    # messages included (nothing captured them: they were written with the binlog off).
    for room in rooms:
        cursors = monolith_cursors(world, room)
        assert read_model_cursors(world, room, cursors) == cursors, room
    assert len(monolith_cursors(world, big)) == 40 and len(monolith_cursors(world, rooms[4])) == 2
    assert world.read_model_rows(rooms[1])[history.ids[rooms[1]][3]][0] == "edited live"

    # The hints: the big room's chunks cover its history without a gap, and what the resumed
    # run sent starts right after the last chunk saved before the kill (nothing saved resent).
    hints = backfill_hints(world, [big])
    partition = partition_for(big, PARTITIONS)
    assert {p for p, _, _ in hints} == {partition}
    covered = sorted((h.first_message_id, h.last_message_id) for _, _, h in hints)
    top = max(history.ids[big])
    for message_id in history.ids[big]:
        assert any(first <= message_id <= last for first, last in covered), message_id
    assert max(last for _, last in covered) == top
    resumed = [h for _, position, h in hints if position >= ends_at_kill[partition]]
    assert resumed and resumed[0].first_message_id == at_kill.rooms[big].sent_to + 1
    assert all(h.first_message_id > at_kill.rooms[big].sent_to for h in resumed)
