"""The migration's story, end to end on the real stack, told with the real `chat-migrate`
(issue 13 item 5; migrator/README.md is the agreement each command is held to here).

A world of its own (tests/support/gateway_world.py: a monolith on a scratch database, the front
door, the gateway, the Read API, the binlog source, the capturer and the updater) holds a few
rooms whose history was written before capture began (`sql_log_bin = 0`: the binlog never had
it, so only the backfill can bring it). Two people post, edit, delete, open and read through the
front door in the background the whole time, and no answer they get may be a 5xx or no answer
at all (promise 1; a kept-alive connection that a room map reload closed before any answer is
resent once, the rule every keep-alive client follows, and such resends are bounded by the
reloads). Meanwhile the operator runs `.venv/bin/chat-migrate`, each command a
process of its own with the world's MIG_* environment:

1. `cutover ROOMS --to dual_write`: the rooms move, and the gateway sees their requests;
2. `backfill ROOMS` at a low rate, killed with SIGKILL once its checkpoint shows progress and
   before any room is done (none is marked backfilled), then run again: it resumes from the
   checkpoint and marks every room; the read model then holds exactly the monolith's messages,
   history and live writes alike: no gap, nothing extra (promise 5);
3. `parity ROOMS`, with the traffic going on: exit 0, every room clean and marked clean in the
   control store (rows written during the check are not differences);
4. `cutover ROOMS --to shadow_read`: live reads are compared with the Read API, the same, and
   never different (the admin API lists no difference; the gateway's metrics count none). The
   writes wait meanwhile (the reads go on): a write racing a read is not judged here (step 4
   says why);
5. an inconsistency nothing captured: with the binlog source stopped, one old message's body
   is changed in a session whose writes skip the binlog, then the binlog source starts again.
   `parity` of that room exits 1 and its JSON report names the room, the message, the field
   and both values; `repair REPORT.json` exits 0; `parity` of the room is clean again, and the
   read model holds the monolith's body;
6. `status --json`: every room in shadow_read, backfilled, with a recent clean parity and a
   shadow record with comparisons found the same.

Each step asserts what it proves, and every command's output is shown when it did not do what
the agreement says.
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect

from gateway.adapters.mariadb.control_schema import control_engine
from gateway.domain.phases import MarkKind, Phase
from migrator.adapters.mariadb.checkpoints import TABLE, MariaDbCheckpointStore
from migrator.domain.backfill import Progress, RoomState, decode_progress
from tests.e2e.client import REQUESTS, Answer, Operator, Person
from tests.support.gateway_world import GatewayWorld
from tests.support.processes import free_port
from tests.support.stack import REPO

pytestmark = pytest.mark.services

CHAT_MIGRATE = str(REPO / ".venv" / "bin" / "chat-migrate")
WHO = "e2e story operator"
JOB = "backfill"  # the backfill's job name when none is given (its checkpoint's key)
# History per room, written before capture began: a few hundred messages each, sizes close
# enough that, with every room's chunks interleaved in each append, no room is done before the
# kill (the smallest needs 7 of the 8 appends the largest needs).
HISTORY = (400, 380, 360, 340)
CHUNK_ROWS = 50
SLOW_RATE = 60  # messages per second of the first run: seconds of work, killed early
SHADOW_SAME = 20  # "same" comparisons seen before the shadow phase is judged
# A body no live writer ever sends: the injected change.
TAMPERED = "改ざん: 誰も捕まえなかった変更 🕵️"
SHADOWED_ROUTES = ("list", "one")
# How httpx (tests/e2e/client.py puts its error in the body of status 0) says a kept connection
# was reset or closed before any byte of an answer.
CLOSED_UNANSWERED = (b"ReadError(", b"RemoteProtocolError(", b"WriteError(")


# -- chat-migrate, as the operator runs it --------------------------------------------------


@dataclass(frozen=True)
class Ran:
    args: tuple[str, ...]
    code: int
    out: str
    err: str

    def brief(self) -> str:
        return f"chat-migrate {' '.join(self.args)[:80]} -> exit {self.code}"

    def __str__(self) -> str:
        return (
            f"chat-migrate {' '.join(self.args)} -> exit {self.code}\n"
            f"--- stdout ---\n{self.out[-4000:]}\n--- stderr ---\n{self.err[-4000:]}"
        )


class Migrate:
    """`.venv/bin/chat-migrate` with the world's environment: its scratch monolith database,
    control database, topics and tables; reports and metrics of its own."""

    def __init__(self, world: GatewayWorld, reports: Path) -> None:
        self.reports = reports
        self.env = {
            **world.env,
            "MIG_MIGRATOR_WHO": WHO,
            "MIG_MIGRATOR_METRICS_PORT": str(free_port()),
            "MIG_PARITY_REPORTS_DIR": str(reports),
            "MIG_PARITY_FRONTIER_TIMEOUT_S": "60",
            "MIG_BACKFILL_CHUNK_ROWS": str(CHUNK_ROWS),
            "MIG_BACKFILL_VISIBLE_TIMEOUT_S": "60",
            # The throttle is not what this story tells (unit tests and bench/ do): on a shared
            # two-core CI machine the probe's latency and Threads_running of other tests would
            # hold the backfill for no reason of ours.
            "MIG_BACKFILL_MAX_PROBE_MS": "2000",
            "MIG_BACKFILL_MAX_THREADS_RUNNING": "200",
        }

    def run(self, *args: str, timeout: float = 150) -> Ran:
        started, cpu = time.monotonic(), children_cpu()
        done = subprocess.run(
            [CHAT_MIGRATE, *args], env=self.env, capture_output=True, text=True,
            timeout=timeout, check=False,
        )  # fmt: skip
        ran = Ran(args, done.returncode, done.stdout, done.stderr)
        print(
            f"         {time.monotonic() - started:5.1f} s ({children_cpu() - cpu:4.1f} s of CPU): "
            f"{ran.brief()}",
            flush=True,
        )
        return ran

    def start(self, *args: str, log: Path) -> subprocess.Popen[bytes]:
        """A long command in the background, its output in `log`."""
        with log.open("wb") as out:
            return subprocess.Popen(
                [CHAT_MIGRATE, *args], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )

    def reports_written(self) -> set[Path]:
        return set(self.reports.rglob("*.json")) if self.reports.exists() else set()

    def parity(self, rooms: str) -> tuple[Ran, dict[str, Any], Path]:
        """`chat-migrate parity ROOMS`, the JSON result it wrote (exactly one new, with an HTML
        report beside it, both named in what it prints) and the result's path."""
        before = self.reports_written()
        ran = self.run("parity", rooms)
        new = sorted(self.reports_written() - before)
        assert len(new) == 1, f"one new JSON report expected under {self.reports}, got {new}\n{ran}"
        report: dict[str, Any] = json.loads(new[0].read_text())
        assert (report.get("schema"), report.get("version")) == ("chat-migration/parity", 1), (
            f"{new[0]} is not a chat-migration/parity v1 result: {str(report)[:500]}"
        )
        assert list(new[0].parent.glob("*.html")), f"no HTML report beside {new[0]}\n{ran}"
        assert str(new[0].parent) in ran.out, f"the output does not say where {new[0]} is\n{ran}"
        return ran, report, new[0]


def children_cpu() -> float:
    """CPU seconds of the child processes this test waited for: what a command costs whatever
    else the machine is doing."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def ids(rooms: list[int]) -> str:
    return ",".join(str(r) for r in rooms)


# -- live traffic through the front door -----------------------------------------------------


@dataclass
class Traffic:
    """Two people at the front door the whole story long: `writer` posts in each room in turn,
    edits and opens what it posted and now and then deletes it; `reader` reads each room
    (force=1, and force=0, which moves its cursor). `step` names what the operator is doing;
    every answer is counted under it. A 5xx or no answer is a failure (promise 1), and so is a
    refused write of one's own message."""

    writer: Person
    reader: Person
    rooms: list[int]
    step: str = "before"
    answers: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    resent: list[str] = field(default_factory=list)  # kept connections closed unanswered
    reloads: Callable[[], int] = lambda: 0  # the front door's reloads so far
    writing: bool = True
    _running: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _busy: list[threading.Lock] = field(default_factory=list)
    _mine: dict[int, list[int]] = field(default_factory=dict)  # room -> ids the writer posted
    _t0: float = 0.0
    _threads: list[threading.Thread] = field(default_factory=list)

    def begin(self, step: str) -> None:
        """The operator starts `step`; the time since the traffic started is printed (pytest
        shows it with a failure: where the story's time went)."""
        print(f"{time.monotonic() - self._t0:6.1f} s  {step}", flush=True)
        self.step = step

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._running.set()
        for loop in (self._write, self._read):
            busy = threading.Lock()
            self._busy.append(busy)
            thread = threading.Thread(target=self._forever, args=(loop, busy), daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        self._running.set()
        for thread in self._threads:
            thread.join(30)

    @contextmanager
    def quiet(self) -> Iterator[None]:
        """No request under way or sent while inside: for checks that need a still monolith
        (the read model's rows equal to the monolith's, every shadow read's verdict in)."""
        self._running.clear()
        for busy in self._busy:  # each loop finishes the request it is making
            with busy:
                pass
        try:
            yield
        finally:
            self._running.set()

    def check(self, step: str, at_least: int = 1) -> None:
        """No failure so far, and the people were at it during `step`."""
        assert not self.failures, f"{len(self.failures)} failed requests:\n" + "\n".join(
            self.failures[:20]
        )
        # Each of the two kept connections meets a reload's idle close at most once.
        assert len(self.resent) <= 2 * self.reloads(), (
            f"{len(self.resent)} requests resent after their kept connection closed unanswered, "
            f"with {self.reloads()} reloads of the front door:\n" + "\n".join(self.resent[:20])
        )
        assert self.answers[step] >= at_least, (
            f"only {self.answers[step]} requests during {step!r}: the traffic did not flow "
            f"({dict(self.answers)})"
        )

    def _forever(self, loop: Any, busy: threading.Lock) -> None:
        turn = 0
        while not self._stop.is_set():
            self._running.wait()
            with busy:
                if not self._running.is_set() or self._stop.is_set():
                    continue
                try:
                    loop(turn)
                except Exception as exc:  # a bug of the rig must show, not stop the traffic
                    self.failures.append(f"{self.step}: the traffic's own error {exc!r}")
            turn += 1
            time.sleep(0.05)  # people, not a load test

    def _note(self, call: Callable[[], Answer], ok: tuple[int, ...]) -> Answer:
        """Makes the call as a keep-alive client must (the rule of
        tests/integration/deploy/test_frontdoor.py, `keep_alive_client`): a request on a kept
        connection that the server closed before any byte of an answer (nginx closes idle
        connections when a room map reload retires its old workers; a request crossing that
        close is reset unread) is sent once more, on a new connection. Such resends are
        counted and bounded in `check`; any other failure is one."""
        answer = call()
        if answer.status == 0 and answer.body.startswith(CLOSED_UNANSWERED):
            self.resent.append(f"{self.step}: {answer}")
            answer = call()
        self.answers[self.step] += 1
        if answer.status not in ok:
            self.failures.append(f"{self.step}: {answer}")
        return answer

    @contextmanager
    def reads_only(self) -> Iterator[None]:
        """The writer only opens its messages while inside (the reader goes on): no write is
        under way or sent until the block ends."""
        self.writing = False
        with self._busy[0]:  # the writer finishes the write it is making
            pass
        try:
            yield
        finally:
            self.writing = True

    def _write(self, turn: int) -> None:
        room = self.rooms[turn % len(self.rooms)]
        mine = self._mine.setdefault(room, [])
        kind = turn // len(self.rooms) % 4
        if not self.writing:
            if mine:
                self._note(lambda: self.writer.opens(room, mine[-1]), (200,))
        elif kind == 0 or not mine:
            body = f"[To:{self.reader.account_id}] ライブ {self.step} {turn} ✨ [qt]引用[/qt]"
            posted = self._note(lambda: self.writer.posts(room, body), (200,))
            if posted.status == 200:
                mine.append(posted.message_id)
        elif kind == 1:
            self._note(lambda: self.writer.edits(room, mine[-1], f"編集済み {turn} ✏️"), (200,))
        elif kind == 2:
            self._note(lambda: self.writer.opens(room, mine[-1]), (200,))
        elif len(mine) > 3:
            gone = mine.pop(0)
            self._note(lambda: self.writer.deletes(room, gone), (200,))

    def _read(self, turn: int) -> None:
        room = self.rooms[turn % len(self.rooms)]
        if turn // len(self.rooms) % 2 == 0:
            self._note(lambda: self.reader.reads(room), (200,))
        else:
            self._note(lambda: self.reader.reads_new(room), (200, 204))


# -- the world before the migration ----------------------------------------------------------


def seed_history(world: GatewayWorld, rooms: list[int], authors: list[int]) -> dict[int, list[int]]:
    """Each room's history, written in one transaction that the binlog never sees (capture
    began after it): rows of the rooms interleaved (ids within a room not dense), some edited,
    some soft-deleted, Japanese text, emoji and ChatWork notation. Returns each room's ids."""
    now = int(time.time())
    rows: list[tuple[int, int, str, int, int, int]] = []
    for n in range(max(HISTORY)):
        for room, size in zip(rooms, HISTORY, strict=True):
            if n >= size:
                continue
            sent = now - 90 * 86400 + n * 600
            author = authors[n % len(authors)]
            body = (
                f"[To:{authors[0]}]過去ログ {room} #{n} 🎌 [info][title]議事録[/title]"
                f"項目 {n}[/info]"
                if n % 5
                else f"[rp aid={author} to={room}-1] 返信 {n} 😀"
            )
            edited = sent + 120 if n % 7 == 0 else 0
            deleted = 1 if n % 23 == 11 else 0
            rows.append((room, author, body, sent, edited, deleted))
    with world.unlogged() as db:
        db.begin()
        with db.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO messages (room_id, account_id, body, send_time, update_time,"
                " deleted) VALUES (%s, %s, %s, %s, %s, %s)",
                rows,
            )
        db.commit()
    return {room: sorted(world.monolith_rows(room)) for room in rooms}


def tamper(world: GatewayWorld, message: int, body: str) -> None:
    """Changes a message's body (not its update_time) where nothing captures it: the binlog
    source stopped, and the session's writes skip the binlog, so not even its restart finds
    the change."""
    world.binlog.stop()
    try:
        with world.unlogged() as db, db.cursor() as cursor:
            changed = cursor.execute(
                "UPDATE messages SET body = %s WHERE message_id = %s", (body, message)
            )
        assert changed == 1, f"message {message} not changed behind the gateway's back"
    finally:
        world.binlog.start()
    world.until_healthy(world.binlog)


# -- looking at the migration ----------------------------------------------------------------


def marks(world: GatewayWorld, room: int, kind: MarkKind) -> int:
    return sum(1 for m in world.control.marks(room, 100) if m.kind == kind)


def backfill_progress(world: GatewayWorld) -> Progress | None:
    """The backfill's saved progress; None before its first save (before its table exists: the
    job makes it)."""
    engine = control_engine(world.database, world.control_db, pool_size=1)
    try:
        if not inspect(engine).has_table(TABLE):
            return None
        found = MariaDbCheckpointStore(engine).load(JOB)
    finally:
        engine.dispose()
    return None if found is None else decode_progress(JOB, found[1])


def until_progress(world: GatewayWorld, job: subprocess.Popen[bytes], log: Path) -> None:
    """Until the running backfill's checkpoint shows messages sent; fails at once when the job
    ends first (it was to be killed mid-run), with its output."""
    deadline = time.monotonic() + 60
    while True:
        assert job.poll() is None, (
            f"the first backfill ended (exit {job.returncode}) before it was killed:\n"
            + log.read_text()[-4000:]
        )
        found = backfill_progress(world)
        if found is not None and found.sent_rows > 0:
            return
        assert time.monotonic() < deadline, (
            f"no progress in the backfill's checkpoint within 60 s ({found}):\n"
            + log.read_text()[-4000:]
        )
        time.sleep(0.05)


def verdicts_in(world: GatewayWorld, ops: Operator) -> None:
    """Every shadow read the gateway answered has its verdict."""

    def done() -> bool:
        asked = sum(
            world.gateway_count(REQUESTS, phase="shadow_read", route=route)
            for route in SHADOWED_ROUTES
        )
        _, health = world.gateway.ops("/healthz")
        return ops.comparisons() == asked and json.loads(health)["shadow_in_flight"] == 0

    world.until(done, "a verdict for every shadow read")


def outcomes(ops: Operator) -> dict[str, float]:
    return {
        o: ops.comparisons(outcome=o) for o in ("same", "different", "late", "skipped", "error")
    }


def differences_of(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [d for room in report["rooms"] for d in room["differences"]]


# -- the story ---------------------------------------------------------------------------------


@pytest.fixture
def people(world: GatewayWorld) -> Iterator[tuple[Person, Person]]:
    members = [world.seed.account(name) for name in ("書き手 ハナコ", "読み手 タロウ")]
    built = tuple(Person(m, world.front_door.url, world.monolith.url) for m in members)
    yield built  # type: ignore[misc]
    for person in built:
        person.close()


def test_a_migration_told_with_chat_migrate_under_live_traffic(
    world: GatewayWorld, people: tuple[Person, Person], tmp_path: Path
) -> None:
    writer, reader = people
    ops = Operator(world)
    migrate = Migrate(world, tmp_path / "reports")
    rooms = [
        world.seed.room(writer.member, reader.member, name=f"移行する部屋 {n}")
        for n in range(len(HISTORY))
    ]
    history = seed_history(world, rooms, [writer.account_id, reader.account_id])
    assert [len(history[r]) for r in rooms] == [
        size - sum(1 for n in range(size) if n % 23 == 11) for size in HISTORY
    ]
    traffic = Traffic(writer, reader, rooms, reloads=world.front_door.reloads_seen)
    traffic.start()
    try:
        # -- legacy: the binlog source captures live writes, never the history before it -----
        traffic.begin("legacy")

        def a_live_post_captured() -> bool:
            return any(set(world.read_model_rows(room)) - set(history[room]) for room in rooms)

        world.until(a_live_post_captured, "a live post of a room in legacy in the read model")
        for room in rooms:
            held = set(world.read_model_rows(room)) & set(history[room])
            assert not held, f"room {room}: history in the read model before any backfill: {held}"
        assert ops.requests_seen() == 0, "the gateway saw requests of rooms in legacy"
        traffic.check("legacy")

        # -- 1. legacy -> dual_write -----------------------------------------------------------
        traffic.begin("dual_write")
        ran = migrate.run("cutover", ids(rooms), "--to", "dual_write", "--why", "MIG-1 wave 1")
        assert ran.code == 0, ran
        assert ops.phases() == {r: "dual_write" for r in rooms}, ran
        world.until(
            lambda: world.gateway_count(REQUESTS, phase="dual_write") > 0,
            "the gateway sees the rooms' requests in dual_write",
        )
        ran = migrate.run("cutover", ids(rooms), "--to", "shadow_read", "--why", "too early")
        assert ran.code == 2, f"shadow_read before any backfill must be refused\n{ran}"
        assert ops.phases() == {r: "dual_write" for r in rooms}, ran

        # -- 2. backfill, killed with SIGKILL mid-run, then resumed ----------------------------
        traffic.begin("backfill")
        total = sum(len(history[r]) for r in rooms)
        first = migrate.start(
            "backfill", ids(rooms), "--rate", str(SLOW_RATE), log=tmp_path / "backfill-1.log"
        )
        try:
            until_progress(world, first, tmp_path / "backfill-1.log")
            os.kill(first.pid, signal.SIGKILL)
            assert first.wait(10) == -signal.SIGKILL
        finally:
            if first.poll() is None:
                first.kill()
                first.wait(10)
        killed_at = backfill_progress(world)
        assert killed_at is not None
        assert 0 < killed_at.sent_rows < total, (
            f"killed with {killed_at.sent_rows} of {total} messages sent: not mid-run"
        )
        assert killed_at.done_rooms == 0 and all(
            r.state is RoomState.SENDING for r in killed_at.rooms.values()
        ), f"a room was done (or waiting) before the kill: {killed_at}"
        assert [marks(world, r, MarkKind.BACKFILLED) for r in rooms] == [0] * len(rooms), (
            "a room was marked backfilled by the killed run"
        )

        second = migrate.run("backfill", ids(rooms))
        assert second.code == 0, second
        # It resumed where the checkpoint was: what it sent is what was not saved as sent.
        said = re.search(
            r"done \(resumed\): (\d+) rooms, (\d+) messages planned; this run marked (\d+) "
            r"rooms backfilled and sent (\d+) messages",
            second.out,
        )
        assert said is not None, f"the second run does not say it resumed\n{second}"
        planned, marked, sent = int(said[2]), int(said[3]), int(said[4])
        assert (int(said[1]), marked) == (len(rooms), len(rooms)), second
        assert sent == planned - killed_at.sent_rows, (
            f"resumed after {killed_at.sent_rows} of {planned} messages but sent {sent}\n{second}"
        )
        for room in rooms:
            assert world.control.room(room).backfilled_at is not None, (
                f"room {room} not marked backfilled after the second run\n{second}"
            )
            assert marks(world, room, MarkKind.BACKFILLED) == 1, world.control.marks(room, 10)
        with traffic.quiet():  # no gap, nothing extra: history and live writes alike
            world.until_read_model_matches(rooms, seconds=60)
        traffic.check("backfill")

        # -- 3. parity under live traffic: clean, and marked ---------------------------------
        traffic.begin("parity")
        ran, report, _ = migrate.parity(ids(rooms))
        assert ran.code == 0, ran
        verdicts = {room["room_id"]: room["verdict"] for room in report["rooms"]}
        assert verdicts == {r: "clean" for r in rooms}, f"{verdicts}\n{differences_of(report)}"
        for room in rooms:
            record = world.control.room(room)
            assert record.parity_clean_at is not None and record.parity_positions, (
                f"room {room} not marked parity-clean: {record}\n{ran}"
            )
        traffic.check("parity")

        # -- 4. shadow_read: live reads compared, the same, never different ------------------
        # Reads go on, writes wait while the comparisons are judged: today the gateway calls
        # a read that a later write raced "different" (gateway/domain/shadow.py: a delete made
        # after the monolith's read, a documented limitation; and a post made after a force=0
        # that the monolith answered 204, which the "new side ahead" rule does not excuse).
        traffic.begin("shadow_read")
        with traffic.reads_only():
            ran = migrate.run("cutover", ids(rooms), "--to", "shadow_read", "--why", "MIG-1 wave 1")
            assert ran.code == 0, ran
            assert ops.phases() == {r: "shadow_read" for r in rooms}, ran
            world.until(
                lambda: ops.comparisons(outcome="same") >= SHADOW_SAME,
                f"{SHADOW_SAME} shadow comparisons found the same",
                60,
            )
            with traffic.quiet():
                verdicts_in(world, ops)
                seen = outcomes(ops)
                listed = ops.differences()
        assert seen["different"] == 0 and listed == [], (
            f"shadow reads found differences: {seen}\n"
            + "\n".join(json.dumps(d, ensure_ascii=False)[:1500] for d in listed[:10])
        )
        assert seen["same"] >= SHADOW_SAME, seen
        traffic.check("shadow_read")

        # -- 5. an inconsistency nothing captured: parity finds it, repair fixes it ------------
        traffic.begin("tampered")
        room = rooms[0]
        # The room's oldest live message: far below the latest 100 that every read of the
        # traffic (force=1, and force=0 from a cursor already past it) and the shadow
        # comparisons look at, so only parity can find the change.
        message = history[room][0]
        original = world.monolith_rows(room)[message][0]
        tamper(world, message, TAMPERED)

        # The report's "new" value (the original body, at a frontier the read model reached
        # after the binlog source was back) says that nothing captured the change.
        clean_marks = marks(world, room, MarkKind.PARITY_CLEAN)
        ran, report, path = migrate.parity(str(room))
        assert ran.code == 1, f"parity of a tampered room must exit 1\n{ran}"
        assert marks(world, room, MarkKind.PARITY_CLEAN) == clean_marks, "a different room marked"
        (result,) = report["rooms"]
        assert (result["room_id"], result["verdict"]) == (room, "different"), result
        found = differences_of(report)
        assert [
            (d["room_id"], d["message_id"], d["field"], d["kind"], d["legacy"], d["new"])
            for d in found
        ] == [(room, str(message), "body", "field_differs", TAMPERED, original)], found
        assert str(message) in ran.out + ran.err, f"the summary does not name {message}\n{ran}"

        repaired = migrate.run("repair", str(path))
        assert repaired.code == 0, repaired
        ran, report, _ = migrate.parity(str(room))
        assert ran.code == 0, f"parity after repair must be clean\n{ran}\n{repaired}"
        assert [r["verdict"] for r in report["rooms"]] == ["clean"], report["rooms"]
        assert marks(world, room, MarkKind.PARITY_CLEAN) == clean_marks + 1
        assert world.read_model_rows(room)[message][0] == TAMPERED
        traffic.check("tampered")

        # -- 6. status: where the migration stands ---------------------------------------------
        traffic.begin("status")
        ran = migrate.run("status", "--json")
        assert ran.code == 0, ran
        shown = json.loads(ran.out)
        assert shown["rooms_by_phase"][Phase.SHADOW_READ.value] == len(rooms), shown
        by_room = {r["room_id"]: r for r in shown["rooms"]}
        for room in rooms:
            assert by_room[room]["phase"] == "shadow_read", by_room[room]
            assert by_room[room]["backfilled_at"] is not None, by_room[room]
            assert by_room[room]["parity_recent"] is True, by_room[room]
        assert {(a["room_id"], a["to"]) for a in shown["recent_actions"]} >= {
            (r, p) for r in rooms for p in ("dual_write", "shadow_read")
        }, shown["recent_actions"]
        assert all(a["who"] == WHO for a in shown["recent_actions"]), shown["recent_actions"]
        # The backfill's checkpoint, summarised: every room of its plan done.
        jobs = {job["job"]: job for job in shown["jobs"] or []}
        assert JOB in jobs, shown["jobs"]
        summary = jobs[JOB]["summary"]
        assert (summary.get("done_rooms"), summary.get("total_rooms")) == (len(rooms),) * 2, jobs
        for room in rooms:
            shadow = by_room[room]["shadow"]
            assert shadow is not None and shadow["same"] > 0, by_room[room]
        # With writes racing reads again since step 4: what the gateway calls different now
        # (the limitations named in step 4), shown, not judged.
        print(f"shadow comparisons with writes on again: {outcomes(ops)}", flush=True)
    finally:
        traffic.stop()
    traffic.begin("done")
    print(
        f"requests: {sum(traffic.answers.values())} {dict(traffic.answers)}; resent once after a "
        f"reload closed their kept connection: {len(traffic.resent)} "
        f"({traffic.reloads()} reloads of the front door)",
        flush=True,
    )
    traffic.check("done", at_least=0)
