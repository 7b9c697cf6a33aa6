"""`chat-migrate repair` and its use cases on fakes: hints from a parity result (one per row,
never for an unreadable one, late rooms named), range hints over lost rooms then forgotten, a
dry run that lists and sends nothing, reconcile's loop, and bad input (another version, not
JSON, a cut document, a missing file, no source): exit 2 with nothing sent."""

from __future__ import annotations

import asyncio
import io
import json
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import pytest
import typer

from gateway.adapters.embedded.memory_phase_store import MemoryRoomCatalog
from migrator.domain.parity import Kind, Verdict
from migrator.entrypoints.commands import repair
from migrator.entrypoints.commands.repair import RepairParts
from migrator.entrypoints.failures import run_guarded
from migrator.ports import Forgotten, LostRoom, RoomBounds
from migrator.service.repair import reconcile, repair_from_report
from newcore.domain.hints import CursorHint, Hint, MessageHint, RangeHint
from newcore.ports import EventLog, LogRecord
from newcore.wire.hints import decode_hint
from tests.unit.migrator.repair.documents import cursor, document, message


class Hints:
    """The hints log: what was appended, in order (an EventLog that only appends)."""

    def __init__(self) -> None:
        self.appends: list[list[tuple[int, bytes]]] = []
        self.closed = False

    @property
    def partitions(self) -> int:
        return 4

    async def append(self, records: Sequence[tuple[int, bytes]]) -> list[int]:
        self.appends.append(list(records))
        return list(range(len(records)))

    def hints(self) -> list[Hint]:
        return [decode_hint(value) for batch in self.appends for _, value in batch]

    def keys(self) -> list[int]:
        return [key for batch in self.appends for key, _ in batch]

    async def read(
        self, partition: int, from_position: int, max_records: int, timeout_ms: int
    ) -> list[LogRecord]:
        raise NotImplementedError

    async def committed(self, group: str, partition: int) -> int:
        raise NotImplementedError

    async def commit(self, group: str, positions: Mapping[int, int]) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        self.closed = True


class History:
    """RoomHistory over fixed ids per room."""

    def __init__(self, ids: dict[int, list[int]]) -> None:
        self.ids = ids

    def fingerprint(self) -> str:
        return "fake"

    def bounds(self, room_id: int) -> RoomBounds | None:
        ids = self.ids.get(room_id, [])
        return RoomBounds(room_id, ids[0], ids[-1], len(ids)) if ids else None

    def chunk_ends(self, room_id: int, after: int, high: int, rows: int, count: int) -> list[int]:
        ids = [i for i in self.ids.get(room_id, []) if after < i <= high]
        ends = ids[rows - 1 :: rows][:count]
        if len(ends) < count and ids and (not ends or ends[-1] != ids[-1]):
            ends.append(ids[-1])
        return ends

    def activity(self, room_ids: Sequence[int], since_unix: int) -> dict[int, int]:
        return {}


class Lost:
    def __init__(self, rooms: list[LostRoom]) -> None:
        self.rooms = rooms
        self.forgotten: list[tuple[list[int], str, str]] = []

    def read(self) -> list[LostRoom]:
        return list(self.rooms)

    def forget(self, seen: Sequence[LostRoom], who: str, why: str) -> Forgotten:
        ids = [r.room_id for r in seen]
        self.forgotten.append((ids, who, why))
        self.rooms = [r for r in self.rooms if r.room_id not in ids]
        return Forgotten(ids, [], "in the fake")


@dataclass
class Ran:
    code: int
    out: str
    err: str


class Cli:
    def __init__(self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
        self.log = Hints()
        self.history = History({12: list(range(1, 26)), 34: [5, 9]})
        self.lost = Lost([LostRoom(12, 3, 100.0, 200.0), LostRoom(34, 1, 150.0, 150.0),
                          LostRoom(56, 1, 150.0, 150.0)])  # fmt: skip
        self.logs_opened = 0
        self.parity: object = None
        self._capsys, self._monkeypatch = capsys, monkeypatch
        self.app = typer.Typer(add_completion=False)

        @self.app.callback()
        def root() -> None:
            """chat-migrate, for tests."""

        @asynccontextmanager
        async def hints_log() -> AsyncIterator[EventLog]:
            self.logs_opened += 1
            yield self.log

        @contextmanager
        def wiring() -> Iterator[RepairParts]:
            yield RepairParts(
                who="ops:test", chunk_rows=10, hints_log=hints_log,
                history=lambda: self.history, lost_rooms=lambda: self.lost,
                catalog=lambda: MemoryRoomCatalog([12, 34, 56]),
                parity=self.parity,  # type: ignore[arg-type]
            )  # fmt: skip

        repair.register(self.app, wiring)

    def __call__(self, *args: str) -> Ran:
        self._capsys.readouterr()
        self._monkeypatch.setattr(sys, "argv", ["chat-migrate", *args])
        code = run_guarded(self.app)
        out, err = self._capsys.readouterr()
        return Ran(code, out, err)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    return Cli(capsys, monkeypatch)


REPORT = document(
    [
        (12, Verdict.DIFFERENT, [
            message(12, 3, Kind.STALE, "body"), message(12, 3, Kind.STALE, "update_time"),
            message(12, 4, Kind.MISSING_IN_NEW, "message"),
            message(12, 5, Kind.EXTRA_IN_NEW, "message"),
            message(12, 6, Kind.UNREADABLE_LEGACY, "body"),
            cursor(12, 77, Kind.CURSOR_MISSING),
        ]),
        (34, Verdict.CLEAN, [message(34, 1, Kind.UNREADABLE_LEGACY, "send_time")]),
        (56, Verdict.LATE, []),
    ]
)  # fmt: skip
EXPECTED = [MessageHint(12, 3), MessageHint(12, 4), MessageHint(12, 5), CursorHint(12, 77)]


@pytest.fixture
def report(tmp_path: Path) -> Path:
    path = tmp_path / "parity.json"
    path.write_text(REPORT, encoding="utf-8")
    return path


def test_a_repair_from_a_parity_result_sends_one_hint_per_row(cli: Cli, report: Path) -> None:
    ran = cli("repair", str(report))
    assert ran.code == 0, ran.err
    assert cli.log.hints() == EXPECTED
    assert cli.log.keys() == [12, 12, 12, 12]  # keyed by room: the room's partition
    assert "repair from a parity result: sent 4 hint(s) over 3 room(s)" in ran.out
    assert "the parity result's rooms: 1 clean, 1 different, 1 late" in ran.out
    assert "room 12: 3 message hint(s), 1 cursor hint(s), 1 unreadable row(s) left" in ran.out
    assert "room 56: no hint; late in the parity run (frontier not reached)" in ran.out
    # Idempotent: the same result sends the same hints again, nothing else.
    assert cli("repair", str(report)).code == 0
    assert cli.log.hints() == EXPECTED + EXPECTED


def test_a_dry_run_lists_every_hint_and_sends_nothing(cli: Cli, report: Path) -> None:
    ran = cli("repair", str(report), "--dry-run")
    assert ran.code == 0, ran.err
    assert cli.log.appends == [] and cli.logs_opened == 0
    assert "would send: room 12: message 3 (stale: body, stale: update_time)" in ran.out
    assert "would send: room 12: cursor of account 77 (cursor_missing: last_read_message_id)" in (
        ran.out
    )
    assert "(dry run: nothing sent, nothing changed)" in ran.out
    answer = json.loads(cli("repair", str(report), "--dry-run", "--json").out)
    assert answer["appended"] == 0 and answer["hints"] == 4
    assert answer["would_send"][1] == {
        "room_id": 12, "kind": "message", "message_id": "4", "why": "missing_in_new: message",
    }  # fmt: skip
    assert answer["late_rooms"] == [56]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (REPORT.replace('"version": 1', '"version": 2', 1), "schema 'chat-migration/parity' version 2"),
        ('{"schema": "chat-migration/backfill-progress", "version": 1}', "not a chat-migration/parity"),
        ("id,kind\n1,stale\n", "not a parity result"),
        (REPORT[: len(REPORT) // 2], "not a parity result"),  # cut short: found at the end
        (REPORT.replace('"summary"', '"summery"'), "no summary"),
    ],
)  # fmt: skip
def test_a_document_that_is_no_whole_parity_result_sends_nothing(
    cli: Cli, tmp_path: Path, text: str, says: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text, encoding="utf-8")
    ran = cli("repair", str(path))
    assert ran.code == 2
    assert says in ran.err and "chat-migrate parity" in ran.err
    assert cli.log.appends == []


def test_a_missing_file_bytes_that_are_not_text_and_no_source_exit_2(
    cli: Cli, tmp_path: Path, report: Path
) -> None:
    ran = cli("repair", str(tmp_path / "nope.json"))
    assert ran.code == 2 and "cannot read the parity result" in ran.err
    assert "No such file or directory" in ran.err
    binary = tmp_path / "binary.json"
    binary.write_bytes(b'{"schema": "\xff\xfe"}')
    ran = cli("repair", str(binary))
    assert ran.code == 2 and "not UTF-8" in ran.err
    assert "give one of a parity result" in cli("repair").err
    assert cli("repair", str(report), "--lost-rooms").code == 2
    assert cli.log.appends == []


def test_lost_rooms_get_range_hints_over_their_chunks_then_are_forgotten(cli: Cli) -> None:
    ran = cli("repair", "--lost-rooms", "--who", "ops:alice", "--why", "spool full at 3 am")
    assert ran.code == 0, ran.err
    assert cli.log.hints() == [
        RangeHint(12, 1, 10), RangeHint(12, 11, 20), RangeHint(12, 21, 25), RangeHint(34, 1, 9),
    ]  # fmt: skip
    # Room 56 has no row left: nothing a range finds, so it stays listed for a parity run.
    assert cli.lost.forgotten == [([12, 34], "ops:alice", "spool full at 3 am")]
    assert "lost rooms read: 3" in ran.out
    assert "room 12: 3 range hint(s)" in ran.out
    assert "room 56: no hint; 1 hint(s) lost between" in ran.out
    assert "no message row in the monolith now" in ran.out and "chat-migrate parity 56" in ran.out


def test_lost_rooms_dry_run_lists_ranges_and_forgets_nothing(cli: Cli) -> None:
    answer = json.loads(cli("repair", "--lost-rooms", "--dry-run", "--json").out)
    assert [(h["room_id"], h["first_message_id"], h["last_message_id"])
            for h in answer["would_send"]] == [
        (12, "1", "10"), (12, "11", "20"), (12, "21", "25"), (34, "1", "9"),
    ]  # fmt: skip
    assert answer["forgotten"] is None and cli.lost.forgotten == []
    assert cli.log.appends == [] and len(cli.lost.rooms) == 3


def test_hints_go_in_batches(report: Path) -> None:
    log = Hints()

    @contextmanager
    def opener() -> Iterator[TextIO]:
        yield io.StringIO(REPORT)

    outcome = asyncio.run(repair_from_report(opener, log, dry_run=False, batch=3))
    assert [len(batch) for batch in log.appends] == [3, 1]
    assert outcome.appended == 4 and outcome.tally.hints == 4


def test_reconcile_repairs_until_clean_or_the_bound(cli: Cli) -> None:
    """Room 12 is different, then clean after one repair; room 34 stays different."""
    runs: list[list[int]] = []

    async def parity(
        rooms: list[int],
    ) -> tuple[dict[int, Verdict], Callable[[], AbstractContextManager[TextIO]]]:
        runs.append(list(rooms))
        first = len(runs) == 1
        verdicts = {12: Verdict.DIFFERENT if first else Verdict.CLEAN, 34: Verdict.DIFFERENT}
        verdicts = {r: v for r, v in verdicts.items() if r in rooms}
        text = document([
            (r, v, [message(r, 7, Kind.STALE)] if v == Verdict.DIFFERENT else [])
            for r, v in verdicts.items()
        ])  # fmt: skip

        @contextmanager
        def opener() -> Iterator[TextIO]:
            yield io.StringIO(text)

        return verdicts, opener

    @asynccontextmanager
    async def rounds(who: str) -> AsyncIterator[object]:
        assert who == "ops:test"
        yield parity

    cli.parity = rounds
    ran = cli("reconcile", "12,34", "--max-rounds", "3")
    assert ran.code == 2  # room 34 is not clean at the bound
    assert runs == [[12, 34], [12, 34], [34]]
    assert cli.log.hints() == [MessageHint(12, 7), MessageHint(34, 7), MessageHint(34, 7)]
    assert "round 1: parity 2 different; repair sent 2 hint(s)" in ran.out
    assert "round 3: parity 1 different" in ran.out
    assert "not clean after 3 round(s): 34 (different)" in ran.out

    runs.clear()
    outcome = asyncio.run(reconcile([12], parity, Hints(), max_rounds=2))
    assert outcome.clean == [12] and outcome.not_clean == {}


def test_reconcile_refuses_bad_arguments_and_a_missing_parity(cli: Cli) -> None:
    assert "--max-rounds is in 1..20" in cli("reconcile", "12", "--max-rounds", "0").err
    assert "'x' in ROOMS is not a room id" in cli("reconcile", "x").err
    ran = cli("reconcile", "12")
    assert ran.code == 2 and "reconcile needs the parity check" in ran.err
    assert cli.log.appends == []
