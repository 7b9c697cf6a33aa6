"""Repair on a private pipeline of its own (tests/support/gateway_world.py: monolith stand-in,
binlog source, capturer, updater, Read API, gateway, front door), with `chat-migrate`'s real
wiring (the console script once, as its own process; the other calls run the same app with
the same settings in this process).

Inconsistencies are made behind the pipeline's back: rows changed, purged or added in a
session that writes no binlog (`SET SESSION sql_log_bin = 0`), so nothing captures them. Then:

- from a parity result (written with the parity domain's own document writer, from a
  comparison of both sides): a dry run sends nothing; the repair makes the read model match
  the monolith (an edit taken, a purge deleted); a second repair changes nothing; a result of
  another version is refused with exit 2;
- from lost rooms (a spool no gateway holds, which lost hints of a room): range hints make the
  read model match, and the room leaves the spool's list;
- the gateway's shadow record: a room in shadow_read read through the front door gets its
  comparisons counted in the control store, `chat-migrate status` shows them, and the guard of
  new_primary no longer names the shadow record.

One world for the module. Every service missing is a failure, never a skip.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from gateway.adapters.spool import HintSpool
from gateway.domain.phases import Phase
from migrator.domain.parity import (
    ABSENT,
    Difference,
    DocumentWriter,
    Header,
    Kind,
    RoomResult,
    Tally,
    Verdict,
)
from migrator.entrypoints.cli import app
from migrator.entrypoints.failures import run_guarded
from migrator.ports import Frontier
from newcore.domain.hints import MessageHint
from tests.support.gateway_world import GatewayWorld, gateway_world
from tests.support.monolith_world import Member
from tests.support.stack import REPO, Stack

CHAT_MIGRATE = str(REPO / ".venv" / "bin" / "chat-migrate")


@dataclass
class Seeded:
    world: GatewayWorld
    member: Member
    room_a: int
    room_b: int
    a: list[int]
    b: list[int]


@pytest.fixture(scope="module")
def seeded(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    with gateway_world(stack, tmp_path_factory.mktemp("repair") / "logs") as world:
        member = world.seed.account("修復 テスト")
        room_a, room_b = world.seed.room(member), world.seed.room(member)
        a = world.seed.messages(room_a, member.account_id, [f"a {i} 🙂" for i in range(30)])
        b = world.seed.messages(room_b, member.account_id, [f"b {i}" for i in range(12)])
        world.backfill([room_a, room_b])
        yield Seeded(world, member, room_a, room_b, a, b)


@dataclass
class Ran:
    code: int
    out: str
    err: str


def chat_migrate(world: GatewayWorld, *args: str, **env: str) -> Ran:
    """The console script, a process of its own, on this world."""
    done = subprocess.run(
        [CHAT_MIGRATE, *args], env={**os.environ, **world.env, **env}, capture_output=True,
        text=True, timeout=120, check=False,
    )  # fmt: skip
    return Ran(done.returncode, done.stdout, done.stderr)


Run = Callable[..., Ran]


@pytest.fixture
def run(seeded: Seeded, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Run:
    """The same app with the same wiring (settings from this world's environment), run in
    this process: seconds faster than a process per call on a loaded machine."""
    for name, value in seeded.world.env.items():
        monkeypatch.setenv(name, value)

    def call(*args: str, **env: str) -> Ran:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["chat-migrate", *args])
        code = run_guarded(app)
        out, err = capsys.readouterr()
        return Ran(code, out, err)

    return call


def behind_the_back(world: GatewayWorld, *statements: tuple[str, tuple[object, ...]]) -> None:
    with world.unlogged() as db, db.cursor() as cursor:
        for sql, args in statements:
            cursor.execute(sql, args)


def parity_result(world: GatewayWorld, rooms: list[int], path: Path) -> None:
    """A parity result of the rooms as they are now, written by the parity domain's writer:
    each message live on one side only, or with another body or update_time."""
    frontier = Frontier("binlog.000001:4", time.time())
    tally = Tally()
    with path.open("w", encoding="utf-8") as out:
        writer = DocumentWriter(out.write, Header("test", time.time(), "rooms", "test", frontier))
        for room in rooms:
            writer.start_room(room)
            legacy, new = world.monolith_rows(room), world.read_model_rows(room)
            result = RoomResult(room, Verdict.CLEAN, compared_at=frontier)
            for message_id in sorted(set(legacy) | set(new)):
                kind, field, mine, theirs = (
                    None,
                    "message",
                    legacy.get(message_id),
                    new.get(message_id),
                )
                if theirs is None:
                    kind = Kind.MISSING_IN_NEW
                elif mine is None:
                    kind = Kind.EXTRA_IN_NEW
                elif mine != theirs:
                    kind, field = (
                        (Kind.STALE if theirs[1] < mine[1] else Kind.FIELD_DIFFERS),
                        "body",
                    )
                if kind is not None:
                    writer.difference(
                        Difference(room, kind, message_id, None, field,
                                   str(mine) if mine else ABSENT, str(theirs) if theirs else ABSENT)
                    )  # fmt: skip
                    result.counts[kind] += 1
            if result.blocking:
                result.verdict = Verdict.DIFFERENT
            tally.add(result)
            writer.end_room(result)
        writer.close(tally.summary(time.time(), 0.1))


def test_a_repair_from_a_parity_result_converges_and_a_second_changes_nothing(
    seeded: Seeded, tmp_path: Path, run: Run
) -> None:
    world, room, a = seeded.world, seeded.room_a, seeded.a
    edited, purged = a[3], a[7]
    behind_the_back(
        world,
        ("UPDATE messages SET body = %s, update_time = %s WHERE message_id = %s",
         ("edited behind the pipeline's back ✏️", int(time.time()), edited)),
        ("DELETE FROM messages WHERE message_id = %s", (purged,)),
    )  # fmt: skip
    assert world.read_model_rows(room) != world.monolith_rows(room)
    report = tmp_path / "parity.json"
    parity_result(world, [room], report)

    dry = run("repair", str(report), "--dry-run", "--json")
    assert dry.code == 0, dry.err
    answer = json.loads(dry.out)
    assert {(h["kind"], h["message_id"]) for h in answer["would_send"]} == {
        ("message", str(edited)), ("message", str(purged)),
    }  # fmt: skip
    assert answer["appended"] == 0
    position = world.read_model.room_position(room)
    time.sleep(1.0)  # had anything been sent, the pipeline would have applied it by now
    assert world.read_model.room_position(room) == position
    assert world.read_model_rows(room)[edited] != world.monolith_rows(room)[edited]

    ran = chat_migrate(world, "repair", str(report))
    assert ran.code == 0, ran.err
    assert "sent 2 hint(s) over 1 room(s)" in ran.out
    world.until_read_model_matches([room])
    rows = world.read_model_rows(room)
    assert purged not in rows and rows[edited][0] == "edited behind the pipeline's back ✏️"

    # Idempotent: the same hints again are one more read of the same rows.
    position = world.read_model.room_position(room)
    assert run("repair", str(report)).code == 0
    world.until(
        lambda: (world.read_model.room_position(room) or 0) > (position or 0),
        "the second repair's hints applied",
    )
    assert world.read_model_rows(room) == rows == world.monolith_rows(room)

    other = tmp_path / "other.json"
    other.write_text(report.read_text().replace('"version": 1', '"version": 9', 1))
    refused = run("repair", str(other))
    assert refused.code == 2
    assert "version 9" in refused.err and "Traceback" not in refused.err


def test_lost_rooms_get_range_hints_and_leave_the_list(
    seeded: Seeded, tmp_path: Path, run: Run
) -> None:
    world, room, b = seeded.world, seeded.room_b, seeded.b
    behind_the_back(
        world,
        ("UPDATE messages SET body = %s, update_time = %s WHERE message_id = %s",
         ("lost edit", int(time.time()), b[5])),
        ("INSERT INTO messages (room_id, account_id, body, send_time, update_time, deleted)"
         " VALUES (%s, %s, %s, %s, 0, 0)", (room, seeded.member.account_id, "lost post", 1)),
    )  # fmt: skip
    # A spool no gateway holds any more (its gateway died) that lost hints of room b.
    spool_dir = tmp_path / "spool"
    spool = HintSpool(spool_dir, 5000, fsync_interval_s=0)
    while spool.put(MessageHint(room, b[5])) is not None:
        pass
    spool.close()

    ran = run(
        "repair", "--lost-rooms", "--json", "--why", "spool full", MIG_SPOOL_DIR=str(spool_dir)
    )
    assert ran.code == 0, ran.err
    answer = json.loads(ran.out)
    assert [r["room_id"] for r in answer["lost_rooms"]] == [room]
    assert answer["rooms"][0]["range_hints"] >= 1 and answer["appended"] >= 1
    assert answer["forgotten"]["forgotten"] == [room]
    world.until_read_model_matches([room])
    assert "lost post" in {body for body, _ in world.read_model_rows(room).values()}
    again = HintSpool(spool_dir, 5000)
    assert again.lost_rooms() == {}
    again.close()


def test_the_gateway_records_shadow_comparisons_that_status_and_the_guard_read(
    seeded: Seeded, run: Run
) -> None:
    world, room = seeded.world, seeded.room_a
    world.until_read_model_matches([room])
    for to in ("dual_write", "shadow_read"):
        moved = run("cutover", str(room), "--to", to, "--why", "shadow test")
        assert moved.code == 0, moved.out + moved.err
    assert world.control.room(room).phase == Phase.SHADOW_READ

    def compared() -> bool:
        httpx.get(
            f"{world.front_door.url}/v2/rooms/{room}/messages", params={"force": "1"},
            headers={"X-ChatWorkToken": seeded.member.token}, timeout=10,
        )  # fmt: skip
        found = world.control.shadow_records([room]).get(room)
        return found is not None and found.same > 0

    world.until(compared, "a shadow comparison recorded in the control store", seconds=40)
    tally = world.control.shadow_records([room])[room]
    assert tally.different == 0 and tally.last_same_at is not None

    status = json.loads(run("status", "--json").out)
    shown = next(r for r in status["rooms"] if r["room_id"] == room)
    assert shown["phase"] == "shadow_read" and shown["shadow"]["same"] >= 1
    assert shown["shadow_clean"] is True

    dry = run("cutover", str(room), "--to", "new_primary", "--why", "x", "--dry-run")
    assert dry.code == 2
    reason = dry.out.split("because", 1)[1]
    assert "clean parity check" in reason and "shadow" not in reason


def test_reconcile_runs_parity_repair_parity_until_clean(
    seeded: Seeded, run: Run, tmp_path: Path
) -> None:
    world, room, b = seeded.world, seeded.room_b, seeded.b
    world.until_read_model_matches([room])
    behind_the_back(
        world,
        ("UPDATE messages SET body = %s, update_time = %s WHERE message_id = %s",
         ("reconciled edit", int(time.time()), b[8])),
    )  # fmt: skip
    ran = run(
        "reconcile", str(room), "--max-rounds", "3", "--json",
        MIG_PARITY_REPORTS_DIR=str(tmp_path), MIG_PARITY_FRONTIER_TIMEOUT_S="30",
    )  # fmt: skip
    assert ran.code == 0, ran.out + ran.err
    answer = json.loads(ran.out)
    assert answer["clean"] == [room] and answer["not_clean"] == {}
    first = answer["rounds"][0]
    assert first["verdicts"] == {str(room): "different"} and first["hints"] == 1
    assert answer["rounds"][-1]["verdicts"] == {str(room): "clean"}
    assert world.read_model_rows(room)[b[8]][0] == "reconciled edit"
    assert world.control.room(room).parity_clean_at is not None  # the clean round marked it
    assert len(list(tmp_path.glob("*/parity.json"))) == len(answer["rounds"])
