"""`chat-migrate parity` on a private pipeline of its own (tests/support/gateway_world.py: the
monolith stand-in on a scratch database, binlog source, capturer, updater, Read API, gateway,
front door), with the command's real wiring: the console script once, as its own process; the
other runs are the same app with the same settings in this process.

- A clean room is clean, marked in the control store with its frontier, and parity changes
  nothing on either side (the read model's room positions and rows, every legacy cursor and
  message row are the same after it).
- Inconsistencies injected behind the pipeline's back (`SET SESSION sql_log_bin = 0`, so the
  binlog source never sees them): an edit with a later update_time (stale), an edit keeping it
  (field_differs), a soft delete and a hard delete (extra_in_new, `<deleted>` and `<absent>`),
  a row added (missing_in_new) and a cursor moved (cursor_differs) are each found, classified
  and explained with both values, in the JSON and in the HTML; exit 1, the room not marked.
- Rows written through the monolith's API while the check runs (posts, edits, deletes, cursor
  moves) never show up as differences: the room is clean.

One world for the module. Every service missing is a failure, never a skip.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from migrator.adapters.report.json_report import read_result
from migrator.domain.parity import DELETED, Difference, Kind, RoomResult, Verdict
from migrator.entrypoints.cli import app
from migrator.entrypoints.failures import run_guarded
from tests.support.gateway_world import GatewayWorld, gateway_world
from tests.support.monolith_world import Member
from tests.support.stack import REPO, Stack

CHAT_MIGRATE = str(REPO / ".venv" / "bin" / "chat-migrate")


@dataclass
class Seeded:
    world: GatewayWorld
    member: Member
    clean: int  # never touched behind the pipeline's back
    broken: int  # inconsistencies injected
    busy: int  # written through the API during a check
    broken_ids: list[int]
    busy_ids: list[int]
    reports: Path
    unreadable: int  # a row of the clean room the monolith cannot render faithfully


def api(world: GatewayWorld) -> httpx.Client:
    return httpx.Client(base_url=world.monolith.url, timeout=30)


@pytest.fixture(scope="module")
def seeded(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    with gateway_world(stack, tmp_path_factory.mktemp("parity") / "logs") as world:
        member = world.seed.account("パリティ テスト")
        clean, broken, busy = (world.seed.room(member) for _ in range(3))
        bodies = ["[info][title]予定[/title]<b>会議</b> 😀[/info]", "[To:1] こんにちは", "plain"]
        world.seed.messages(clean, member.account_id, [f"{bodies[i % 3]} {i}" for i in range(39)])
        broken_ids = world.seed.messages(broken, member.account_id, [f"b {i}" for i in range(20)])
        busy_ids = world.seed.messages(busy, member.account_id, [f"busy {i}" for i in range(300)])
        with api(world) as client:  # the member's cursors, moved by the monolith itself
            for room in (clean, broken, busy):
                answer = client.get(
                    f"/v2/rooms/{room}/messages", headers={"X-ChatWorkToken": member.token}
                )
                assert answer.status_code == 200, answer.text
        world.backfill([clean, broken, busy])
        # A 2011 import whose bytes are not UTF-8 (captured as any write): reported, migrated
        # as the monolith shows it, and the room still clean.
        unreadable = world.seed.message(clean, member.account_id, body=None, body_raw=b"caf\xe9")
        world.until(lambda: world.read_model.message(clean, unreadable) is not None, "the 2011 row")
        world.until(
            lambda: all(
                world.read_model.cursor(r, member.account_id) for r in (clean, broken, busy)
            ),
            "the member's cursors in the read model",
        )
        yield Seeded(
            world, member, clean, broken, busy, broken_ids, busy_ids,
            tmp_path_factory.mktemp("parity-reports"), unreadable,
        )  # fmt: skip


@dataclass
class Ran:
    code: int
    out: str
    err: str

    def reports(self) -> tuple[Path, Path]:
        lines = self.out.splitlines()
        result = next(line for line in lines if line.startswith("JSON result: "))
        html = next(line for line in lines if line.startswith("HTML report: "))
        return Path(result.split(": ", 1)[1]), Path(html.split(": ", 1)[1].split(" (")[0])


def environment(seeded: Seeded) -> dict[str, str]:
    return {
        **seeded.world.env,
        "MIG_PARITY_REPORTS_DIR": str(seeded.reports),
        "MIG_PARITY_FRONTIER_TIMEOUT_S": "60",
        "MIG_MIGRATOR_METRICS_PORT": "0",
        "MIG_MIGRATOR_LOG_FILE": str(seeded.reports / "chat-migrate.log"),
    }


Run = Callable[..., Ran]


@pytest.fixture
def run(seeded: Seeded, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Run:
    """The app with its real wiring, settings from this world's environment, in this process."""
    for name, value in environment(seeded).items():
        monkeypatch.setenv(name, value)

    def call(*args: str) -> Ran:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["chat-migrate", *args])
        code = run_guarded(app)
        out, err = capsys.readouterr()
        return Ran(code, out, err)

    return call


def the_state(seeded: Seeded) -> dict[str, Any]:
    """Everything a parity run must leave as it is: both sides, every room."""
    world = seeded.world
    rooms = (seeded.clean, seeded.broken, seeded.busy)
    with world.unlogged() as db, db.cursor() as cursor:
        cursor.execute("SELECT * FROM room_cursors ORDER BY room_id, account_id")
        cursors = [row[:4] for row in cursor.fetchall()]
        cursor.execute("SELECT * FROM messages ORDER BY message_id")
        messages = cursor.fetchall()
    return {
        "positions": [world.read_model.room_position(r) for r in rooms],
        "read model": [world.read_model_rows(r) for r in rooms],
        "read model cursors": [world.read_model.cursor(r, seeded.member.account_id) for r in rooms],
        "legacy cursors": cursors,
        "messages": messages,
    }


def rooms_of(result: Path) -> dict[int, tuple[RoomResult, list[Difference]]]:
    found: dict[int, tuple[RoomResult, list[Difference]]] = {}
    pending: list[Difference] = []
    for item in read_result(result):
        if isinstance(item, Difference):
            pending.append(item)
        elif isinstance(item, RoomResult):
            found[item.room_id] = (item, pending)
            pending = []
    return found


def test_a_clean_room_is_clean_marked_and_nothing_changes(seeded: Seeded) -> None:
    world, room = seeded.world, seeded.clean
    before = the_state(seeded)
    done = subprocess.run(
        [CHAT_MIGRATE, "parity", str(room), "--who", "ops:parity-test"],
        env={**os.environ, **environment(seeded)}, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    ran = Ran(done.returncode, done.stdout, done.stderr)
    assert ran.code == 0, ran.out + ran.err
    result, html = ran.reports()
    (outcome, differences) = rooms_of(result)[room]
    assert outcome.verdict is Verdict.CLEAN
    assert [(d.kind, d.message_id, d.field, d.new) for d in differences] == [
        (Kind.UNREADABLE_LEGACY, seeded.unreadable, "body", "caf\ufffd")
    ]
    assert "body_raw is not UTF-8" in str(differences[0].legacy)
    assert (outcome.legacy_rows, outcome.new_messages, outcome.cursors) == (40, 40, 1)
    record = world.control.room(room)
    assert record.parity_clean_at is not None and outcome.marked_clean
    assert record.parity_positions == outcome.positions()
    assert "compared at binlog mariadb-bin." in (record.parity_positions or "")
    assert html.exists() and "Room" in html.read_text(encoding="utf-8")
    assert the_state(seeded) == before


def test_inconsistencies_behind_the_pipeline_s_back_are_found_and_explained(
    seeded: Seeded, run: Run
) -> None:
    world, room, ids, member = seeded.world, seeded.broken, seeded.broken_ids, seeded.member
    stale, differs, soft, hard = ids[2], ids[5], ids[8], ids[11]
    later = int(time.time()) + 60
    with world.unlogged() as db, db.cursor() as cursor:
        cursor.execute(
            "UPDATE messages SET body = %s, update_time = %s WHERE message_id = %s",
            ("edited behind the back <i>✏️</i>", later, stale),
        )
        cursor.execute(
            "UPDATE messages SET body = %s WHERE message_id = %s", ("same time", differs)
        )
        cursor.execute("UPDATE messages SET deleted = 1 WHERE message_id = %s", (soft,))
        cursor.execute("DELETE FROM messages WHERE message_id = %s", (hard,))
        cursor.execute(
            "INSERT INTO messages (room_id, account_id, body, send_time, update_time, deleted)"
            " VALUES (%s, %s, %s, %s, 0, 0)",
            (room, member.account_id, "only in the monolith", 1_700_000_000),
        )
        added = int(cursor.lastrowid)
        cursor.execute(
            "UPDATE room_cursors SET last_read_message_id = %s WHERE room_id = %s"
            " AND account_id = %s",
            (ids[1], room, member.account_id),
        )
    before = the_state(seeded)
    ran = run("parity", str(room), "--json")
    assert ran.code == 1, ran.out + ran.err
    said = json.loads(ran.out)
    assert said["rooms"]["different"] == 1
    outcome, differences = rooms_of(Path(said["result"]))[room]
    shown = {
        (d.kind, d.message_id or d.account_id, d.field): (d.legacy, d.new) for d in differences
    }
    legacy_cursor = world.read_model.cursor(room, member.account_id)
    assert legacy_cursor is not None
    assert shown == {
        (Kind.STALE, stale, "body"): ("edited behind the back <i>✏️</i>", "b 2"),
        (Kind.STALE, stale, "update_time"): (later, 0),
        (Kind.FIELD_DIFFERS, differs, "body"): ("same time", "b 5"),
        (Kind.EXTRA_IN_NEW, soft, "message"): (DELETED, shown[(Kind.EXTRA_IN_NEW, soft, "message")][1]),
        (Kind.EXTRA_IN_NEW, hard, "message"): ("<absent>", shown[(Kind.EXTRA_IN_NEW, hard, "message")][1]),
        (Kind.MISSING_IN_NEW, added, "message"): (
            {"account_id": member.account_id, "body": "only in the monolith",
             "send_time": 1_700_000_000, "update_time": 0},
            "<absent>",
        ),
        (Kind.CURSOR_DIFFERS, member.account_id, "last_read_message_id"): (
            str(ids[1]), str(legacy_cursor.last_read_message_id)
        ),
    }  # fmt: skip
    extra = shown[(Kind.EXTRA_IN_NEW, soft, "message")][1]
    assert isinstance(extra, dict) and extra["body"] == "b 8"
    assert outcome.verdict is Verdict.DIFFERENT and not outcome.marked_clean
    assert outcome.rechecked >= len(shown) - 1  # re-read at a frontier before being reported
    assert world.control.room(room).parity_clean_at is None
    page = Path(said["html"]).read_text(encoding="utf-8")
    assert "edited behind the back &lt;i&gt;✏️&lt;/i&gt;" in page and "only in the monolith" in page
    assert f'id="room-{room}-stale"' in page
    assert the_state(seeded) == before


def test_rows_written_through_the_monolith_during_the_check_are_not_differences(
    seeded: Seeded, run: Run
) -> None:
    world, room, member, ids = seeded.world, seeded.busy, seeded.member, seeded.busy_ids
    headers = {"X-ChatWorkToken": member.token}
    stop = threading.Event()
    wrote: list[str] = []
    failures: list[str] = []

    def write() -> None:
        """Posts, edits and deletes (each on a message of its own) and cursor moves (a force=0
        read about once a second), through the monolith's API, as clients do, until told to
        stop."""
        edits, deletes = iter(ids[:150]), iter(ids[150:])
        with api(world) as client:
            while not stop.is_set():
                calls = [
                    ("POST", f"/v2/rooms/{room}/messages", {"body": f"during the check {len(wrote)}"}),
                    ("PUT", f"/v2/rooms/{room}/messages/{next(edits)}", {"body": "edited during"}),
                    ("DELETE", f"/v2/rooms/{room}/messages/{next(deletes)}", None),
                ]  # fmt: skip
                if len(wrote) % 30 == 0:  # a client polling about once a second
                    calls.append(("GET", f"/v2/rooms/{room}/messages", None))
                for method, path, data in calls:
                    answer = client.request(method, path, data=data, headers=headers)
                    if answer.status_code not in (200, 204):
                        failures.append(f"{method} {path}: {answer.status_code} {answer.text}")
                    wrote.append(method)
                time.sleep(0.05)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        time.sleep(0.5)
        written_before = len(wrote)
        ran = run("parity", str(room))
        written_during = len(wrote) - written_before
    finally:
        stop.set()
        writer.join(30)
    assert not failures, failures[:3]
    assert written_during >= 8, "the writer wrote while the check ran"
    assert ran.code == 0, ran.out + ran.err
    result, _ = ran.reports()
    outcome, differences = rooms_of(result)[room]
    assert differences == [] and outcome.verdict is Verdict.CLEAN, outcome
    world.until_read_model_matches([room])


def test_several_rooms_are_scanned_by_processes_of_their_own(seeded: Seeded, run: Run) -> None:
    """The default for many rooms: rooms scanned by a pool of processes (MIG_PARITY_WORKERS,
    2), each with its own clients of the real MariaDB and HBase; results in the order asked."""
    empty = [seeded.world.seed.room(seeded.member) for _ in range(5)]  # rooms without messages
    rooms = [seeded.busy, seeded.clean, seeded.broken, *empty]
    ran = run("parity", ",".join(map(str, rooms)), "--no-mark")
    assert ran.code == 1, ran.out + ran.err  # the broken room is still broken
    result, _ = ran.reports()
    found = rooms_of(result)
    assert list(found) == rooms
    assert [found[r][0].verdict for r in rooms] == [
        Verdict.CLEAN, Verdict.CLEAN, Verdict.DIFFERENT, *[Verdict.CLEAN] * len(empty)
    ]  # fmt: skip
    assert found[seeded.clean][0].legacy_rows == 40
    assert {d.kind for d in found[seeded.broken][1]} == {
        Kind.STALE,
        Kind.FIELD_DIFFERS,
        Kind.EXTRA_IN_NEW,
        Kind.MISSING_IN_NEW,
        Kind.CURSOR_DIFFERS,
    }
