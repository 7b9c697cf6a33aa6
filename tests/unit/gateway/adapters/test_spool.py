"""The hint spool keeps every hint whose put returned, across kill -9, damage and reopens; past
its bound it records the room as lost instead (gateway/README.md, "Hints from the gateway")."""

from __future__ import annotations

import json
import os
import random
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import gateway.adapters.spool as spool_module
from gateway.adapters.spool import HEADER_BYTES, HintSpool, SpooledHint
from gateway.errors import SpoolMisconfigured
from newcore.domain.hints import CursorHint, Hint, MessageHint, RangeHint
from newcore.wire.hints import decode_hint
from tests.support.stack import REPO

SEGMENT = 8192  # the smallest segment that holds the largest hint: many segments in a test


@pytest.fixture
def opened(tmp_path: Path) -> Iterator[list[HintSpool]]:
    """Spools a test opened, closed at its end (their flusher threads stopped)."""
    spools: list[HintSpool] = []
    yield spools
    for spool in spools:
        spool.close()


def open_spool(
    opened: list[HintSpool],
    directory: Path,
    max_bytes: int = 1 << 30,
    fsync_interval_s: float = 1.0,
) -> HintSpool:
    spool = HintSpool(
        directory, max_bytes, segment_bytes=SEGMENT, fsync_interval_s=fsync_interval_s
    )
    opened.append(spool)
    return spool


def hints(count: int, rooms: int = 7, start: int = 0) -> list[Hint]:
    kinds: list[Hint] = []
    for i in range(start, start + count):
        room = i % rooms + 1
        if i % 5 == 3:
            kinds.append(CursorHint(room, 100 + i))
        elif i % 5 == 4:
            kinds.append(RangeHint(room, 1 + i, 10 + i))
        else:
            kinds.append(MessageHint(room, 1_000_000_000_000_000_000 + i))
    return kinds


def all_pending(spool: HintSpool) -> list[SpooledHint]:
    return spool.pending(1_000_000)


def records_of(path: Path) -> list[tuple[int, int]]:
    """(start, size) of each record of a segment file, read by its frame."""
    data = path.read_bytes()
    found, at = [], HEADER_BYTES
    while at + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, at + 4)
        found.append((at, 12 + length))
        at += 12 + length
    return found


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.seg"))


def test_round_trip(tmp_path: Path, opened: list[HintSpool]) -> None:
    spool = open_spool(opened, tmp_path)
    given = hints(50)
    before = time.time()
    seqs = [spool.put(hint) for hint in given]
    after = time.time()
    assert seqs == list(range(1, 51))
    found = all_pending(spool)
    assert [r.seq for r in found] == seqs
    assert [decode_hint(r.value) for r in found] == given
    assert [r.room_id for r in found] == [h.room_id for h in given]
    assert all(before - 0.001 <= r.spooled_at <= after + 0.001 for r in found)
    state = spool.state()
    assert (state.pending_records, state.last_seq, state.shipped_seq) == (50, 50, 0)
    assert state.pending_bytes == sum(12 + 24 + len(r.value) for r in found)
    assert state.oldest_pending_age_s is not None and state.oldest_pending_age_s >= 0
    assert spool.last_seq_for(given[-1].room_id) == 50
    assert spool.last_seq_for(999) is None
    assert spool.pending(0) == [] and [r.seq for r in spool.pending(3)] == [1, 2, 3]


def test_pending_comes_again_until_shipped(tmp_path: Path, opened: list[HintSpool]) -> None:
    spool = open_spool(opened, tmp_path)
    for hint in hints(10):
        spool.put(hint)
    assert [r.seq for r in spool.pending(4)] == [1, 2, 3, 4]
    assert [r.seq for r in spool.pending(4)] == [1, 2, 3, 4]
    spool.shipped(4)
    assert [r.seq for r in spool.pending(4)] == [5, 6, 7, 8]
    spool.shipped(3)  # behind the cursor: nothing moves back
    spool.shipped(10)
    assert spool.pending(4) == []
    state = spool.state()
    assert (state.pending_records, state.pending_bytes, state.shipped_seq) == (0, 0, 10)
    assert state.oldest_pending_age_s is None
    spool.shipped(99)  # past the last sequence: the cursor stops at the last one
    assert spool.state().shipped_seq == 10
    assert spool.put(MessageHint(1, 1)) == 11
    assert [r.seq for r in all_pending(spool)] == [11]


def test_reopened_after_shipping(tmp_path: Path, opened: list[HintSpool]) -> None:
    """The cursor survives a reopen; wholly shipped segments are gone; the sequence goes on;
    the frontier of a room covers only what is still to ship."""
    spool = open_spool(opened, tmp_path)
    given = hints(400)
    for hint in given:
        spool.put(hint)
    assert len(segments(tmp_path)) > 3
    spool.shipped(220)
    left = [int(path.name[:20]) for path in segments(tmp_path)]
    assert left[0] <= 221 < left[1]  # the segment holding 221 is the oldest left
    spool.close()

    again = open_spool(opened, tmp_path)
    assert again.recovery.pending == 180 and again.recovery.torn_bytes == 0
    found = all_pending(again)
    assert [r.seq for r in found] == list(range(221, 401))
    assert [decode_hint(r.value) for r in found] == given[220:]
    assert again.state().shipped_seq == 220
    assert again.last_seq_for(given[-1].room_id) == 400
    assert again.put(MessageHint(3, 3)) == 401
    again.shipped(401)
    again.close()

    third = open_spool(opened, tmp_path)
    assert all_pending(third) == [] and third.state().pending_records == 0
    assert third.put(MessageHint(4, 4)) == 402
    assert len(segments(tmp_path)) == 1


def test_the_sequence_goes_on_after_the_cursor_when_no_segment_is_left(
    tmp_path: Path, opened: list[HintSpool]
) -> None:
    (tmp_path / "cursor").write_text(
        json.dumps({"format": "chat-hint-spool-cursor", "v": 1, "shipped": 1000})
    )
    spool = open_spool(opened, tmp_path)
    assert spool.put(MessageHint(1, 2)) == 1001


def test_at_the_bound_the_room_is_recorded_lost_durably(
    tmp_path: Path, opened: list[HintSpool]
) -> None:
    spool = open_spool(opened, tmp_path, max_bytes=5000)
    kept = 0
    while spool.put(MessageHint(1, 10_000 + kept)) is not None:
        kept += 1
    assert 40 < kept < 60
    assert spool.put(MessageHint(2, 1)) is None
    assert spool.put(MessageHint(2, 2)) is None
    state = spool.state()
    assert state.pending_bytes <= 5000
    assert state.lost_rooms == {1: 1, 2: 2}
    assert (state.dropped_full, state.spooled) == (3, kept)
    lost = spool.lost_rooms()[2]
    assert lost.count == 2 and time.time() - 5 < lost.first_lost_at <= lost.last_lost_at
    # The room is on disk as soon as put returned (a kill -9 now keeps it).
    assert "\n2 1 " in (tmp_path / "lost-rooms").read_text()
    spool.close()

    again = open_spool(opened, tmp_path, max_bytes=5000)
    assert again.state().lost_rooms == {1: 1, 2: 2}
    assert again.lost_rooms()[2].first_lost_at == pytest.approx(lost.first_lost_at, abs=0.001)
    assert again.put(MessageHint(3, 1)) is None  # still full: nothing shipped
    again.shipped(kept)
    assert again.put(MessageHint(3, 2)) == kept + 1  # room again once shipped
    again.forget_lost([1, 2])
    assert again.state().lost_rooms == {3: 1}
    again.close()
    assert open_spool(opened, tmp_path, max_bytes=5000).state().lost_rooms == {3: 1}


def test_a_torn_tail_is_cut_off_and_reported(tmp_path: Path, opened: list[HintSpool]) -> None:
    spool = open_spool(opened, tmp_path)
    given = hints(5)
    for hint in given:
        spool.put(hint)
    spool.close()
    (path,) = segments(tmp_path)
    whole = path.read_bytes()
    start, size = records_of(path)[-1]
    with path.open("ab") as file:  # a write a kill -9 interrupted: a record's first bytes
        file.write(whole[start : start + size - 7])

    again = open_spool(opened, tmp_path)
    assert again.recovery.torn_bytes == size - 7
    assert again.recovery.skipped == {}
    assert any("torn tail" in note for note in again.recovery.notes)
    assert path.read_bytes() == whole
    assert [decode_hint(r.value) for r in all_pending(again)] == given
    assert again.put(MessageHint(9, 9)) == 6
    again.close()
    third = open_spool(opened, tmp_path)
    assert third.recovery.torn_bytes == 0
    assert [r.seq for r in all_pending(third)] == [1, 2, 3, 4, 5, 6]


def test_a_record_whose_crc_fails_is_skipped_with_its_reason(
    tmp_path: Path, opened: list[HintSpool]
) -> None:
    spool = open_spool(opened, tmp_path)
    given = hints(6)
    for hint in given:
        spool.put(hint)
    spool.close()
    (path,) = segments(tmp_path)
    data = bytearray(path.read_bytes())
    offsets = records_of(path)
    start, size = offsets[2]  # the third record: a bit flipped in its hint
    data[start + size - 3] ^= 0x01
    start, _size = offsets[4]  # the fifth: its frame's magic damaged
    data[start] ^= 0xFF
    path.write_bytes(bytes(data))

    again = open_spool(opened, tmp_path)
    assert again.recovery.skipped == {"crc mismatch": 1, "no record frame": 1}
    assert again.state().skipped == {"crc mismatch": 1, "no record frame": 1}
    found = all_pending(again)
    assert [r.seq for r in found] == [1, 2, 4, 6]
    assert [decode_hint(r.value) for r in found] == [given[i] for i in (0, 1, 3, 5)]
    assert again.put(MessageHint(1, 1)) == 7
    again.shipped(7)  # shipping passes over the damage too
    assert all_pending(again) == []


def test_damage_after_open_is_skipped_while_reading(
    tmp_path: Path, opened: list[HintSpool]
) -> None:
    spool = open_spool(opened, tmp_path)
    for hint in hints(4):
        spool.put(hint)
    (path,) = segments(tmp_path)
    start, size = records_of(path)[1]
    with path.open("r+b") as file:
        file.seek(start + size - 2)
        file.write(b"\x00")
    assert [r.seq for r in all_pending(spool)] == [1, 3, 4]
    assert spool.state().skipped == {"crc mismatch": 1}
    spool.shipped(4)
    assert spool.state().pending_records == 0


def write_child(directory: Path) -> subprocess.Popen[bytes]:
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from gateway.adapters.spool import HintSpool
        from newcore.domain.hints import MessageHint

        spool = HintSpool(Path(sys.argv[1]), 1 << 30, segment_bytes=8192, fsync_interval_s=0.05)
        print("ready", flush=True)
        i = 0
        while True:
            i += 1
            room = i % 13 + 1
            seq = spool.put(MessageHint(room, i))
            sys.stdout.write(f"{seq} {room} {i}\\n")
            sys.stdout.flush()
        """
    )
    return subprocess.Popen(
        [sys.executable, "-c", script, str(directory)], cwd=REPO, stdout=subprocess.PIPE
    )


def test_every_put_that_returned_survives_kill_9(tmp_path: Path, opened: list[HintSpool]) -> None:
    """A child puts hints in a loop and prints each sequence once put has returned; it is
    killed with SIGKILL at a random moment. The reopened spool holds every printed record
    (and at most the one whose print the kill cut), and the next child goes on after them."""
    acknowledged: dict[int, tuple[int, int]] = {}
    for round_ in range(4):
        child = write_child(tmp_path)
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        lines: list[bytes] = []
        reader = threading.Thread(target=lines.extend, args=(child.stdout,))
        reader.start()
        time.sleep(random.uniform(0.15, 0.6))
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        reader.join(10)
        printed = {}
        for line in lines:
            if line.endswith(b"\n"):  # a line the kill cut was never acknowledged
                seq, room, message = (int(word) for word in line.split())
                printed[seq] = (room, message)
        assert len(printed) > 100, round_
        assert min(printed) == max(acknowledged, default=0) + 1  # went on after the last
        acknowledged |= printed

        spool = HintSpool(tmp_path, 1 << 30, segment_bytes=SEGMENT)
        try:
            found = {r.seq: r for r in all_pending(spool)}
            assert list(found) == list(range(1, len(found) + 1))  # no gap, no repeat
            assert max(found) - max(acknowledged) in (0, 1)
            for seq, (room, message) in acknowledged.items():
                assert found[seq].room_id == room
                assert decode_hint(found[seq].value) == MessageHint(room, message)
            acknowledged |= {
                seq: (r.room_id, decode_hint(r.value).message_id)  # type: ignore[union-attr]
                for seq, r in found.items()
                if seq not in acknowledged
            }
        finally:
            spool.close()


def test_put_never_waits_for_an_fsync(
    tmp_path: Path, opened: list[HintSpool], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The flusher thread syncs what was written, within its interval; no put does."""
    synced: list[int] = []
    real = spool_module._fdatasync

    def recording(fd: int) -> None:
        synced.append(threading.get_ident())
        real(fd)

    monkeypatch.setattr(spool_module, "_fdatasync", recording)
    for interval in (0.05, 0.0):
        synced.clear()
        spool = open_spool(opened, tmp_path / str(interval), fsync_interval_s=interval)
        for hint in hints(300):
            spool.put(hint)
        deadline = time.monotonic() + 5
        while not synced and time.monotonic() < deadline:
            time.sleep(0.01)
        assert synced, interval
        assert threading.get_ident() not in synced


def test_a_write_the_disk_refuses_loses_the_room_and_the_next_put_works(
    tmp_path: Path, opened: list[HintSpool], monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = open_spool(opened, tmp_path)
    assert spool.put(MessageHint(1, 1)) == 1
    real_write = os.write
    failing = True

    def full_disk(fd: int, data: bytes) -> int:
        if failing and fd == spool._fd:
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full_disk)
    assert spool.put(MessageHint(5, 2)) is None
    state = spool.state()
    assert state.dropped_unwritable == 1 and state.lost_rooms == {5: 1}
    assert state.last_error is not None and "No space left" in state.last_error
    failing = False
    assert spool.put(MessageHint(6, 3)) == 2
    assert [r.seq for r in all_pending(spool)] == [1, 2]


def test_a_segment_that_cannot_be_written_is_left_for_a_new_one(
    tmp_path: Path, opened: list[HintSpool]
) -> None:
    spool = open_spool(opened, tmp_path)
    assert spool.put(MessageHint(1, 1)) == 1
    assert spool._fd is not None
    os.close(spool._fd)  # the fd is gone: writes and the cut-back both fail
    assert spool.put(MessageHint(2, 2)) is None
    assert spool.put(MessageHint(3, 3)) == 2
    assert len(segments(tmp_path)) == 2
    assert [r.seq for r in all_pending(spool)] == [1, 2]


def test_what_is_not_a_spool_is_refused(tmp_path: Path, opened: list[HintSpool]) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(SpoolMisconfigured, match="not a directory"):
        open_spool(opened, a_file)

    newer = tmp_path / "newer"
    newer.mkdir()
    (newer / f"{1:020d}.seg").write_bytes(b"chathint\x00\x02")
    with pytest.raises(SpoolMisconfigured, match="format version 2"):
        open_spool(opened, newer)

    cursor = tmp_path / "cursor-v2"
    cursor.mkdir()
    (cursor / "cursor").write_text(
        json.dumps({"format": "chat-hint-spool-cursor", "v": 2, "shipped": 3})
    )
    with pytest.raises(SpoolMisconfigured, match="format version 2"):
        open_spool(opened, cursor)

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / f"{1:020d}.seg").write_bytes(b"something else entirely")
    with pytest.raises(SpoolMisconfigured, match="not a segment"):
        open_spool(opened, foreign)


def test_an_unreadable_cursor_ships_everything_left_again(
    tmp_path: Path, opened: list[HintSpool]
) -> None:
    """A power loss can leave a renamed cursor empty: at least once, never lost."""
    spool = open_spool(opened, tmp_path)
    for hint in hints(5):
        spool.put(hint)
    spool.shipped(3)
    spool.close()
    (tmp_path / "cursor").write_bytes(b"")
    again = open_spool(opened, tmp_path)
    assert [r.seq for r in all_pending(again)] == [1, 2, 3, 4, 5]
    assert any("cursor" in note for note in again.recovery.notes)
    assert again.put(MessageHint(1, 1)) == 6


def test_one_process_per_spool_directory(tmp_path: Path) -> None:
    """Two writers of one directory would hand out the same sequences (a review found the
    second's records skipped at the next open): the second is refused, naming the setting."""
    first = HintSpool(tmp_path, max_bytes=1 << 20)
    with pytest.raises(SpoolMisconfigured, match="MIG_SPOOL_DIR"):
        HintSpool(tmp_path, max_bytes=1 << 20)
    in_child = subprocess.run(
        [sys.executable, "-c", "from pathlib import Path; from gateway.adapters.spool import HintSpool; "
         f"HintSpool(Path({str(tmp_path)!r}), max_bytes=1 << 20)"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert in_child.returncode != 0 and "in use by another process" in in_child.stderr
    first.close()
    HintSpool(tmp_path, max_bytes=1 << 20).close()  # released with the first's close
