"""The gateway's durable hint spool: hints wait here, on the gateway's own disk, until the
shipper has them in the hints topic (gateway/README.md, "Hints from the gateway").

Why a spool and not a send: a hint is taken after the monolith has answered, and nothing the new
side does may fail or slow that request (DESIGN.md, promise 1). So `put` is one `os.write` of a
framed record into an append-only segment file and returns; Kafka being slow or down only makes
the spool grow. What is promised:

- **A put that returned survives `kill -9` of the gateway.** Its bytes are in the kernel's page
  cache when `os.write` returns. A power loss takes at most the last `fsync_interval_s`: a
  daemon thread of the spool (`flush`) fdatasyncs what was written, the cursor, the lost-rooms
  file and the directory at most that often. `os.fsync` releases the GIL, so the event loop
  that calls `put` never waits for a disk flush; the lock they share is never held across an
  fsync (nor across the cursor's rename or a segment's deletion).
- **Bounded.** The records not yet shipped never exceed `max_bytes` (the disk holds at most
  that plus the shipped head of the oldest segment, under `segment_bytes` more). Past the bound
  a hint is not written: `put` returns None, and its room goes to the lost-rooms file with a
  count and the times (the repair of issue 13 reads it; the binlog source still captures the
  write), and is counted. The same when the disk fails a write (`SpoolUnavailable`'s case): the
  room is counted lost, in memory at least. A request is never failed for it.
- **Recovered on open, never a crash on damage.** A torn last record (a kill -9 or a power
  loss in the middle of a write) is cut off and reported; a record whose CRC fails (or whose
  frame makes no sense) is skipped, with the reason counted, and the records after it are
  found again by their frame's magic; the sequence goes on after the highest seen.
- **Shipped at least once, in order.** `pending` hands out the oldest records not yet shipped;
  `shipped(seq)` moves a cursor (a small file replaced atomically: temp + rename) and deletes
  segments that are wholly shipped. A record shipped twice is harmless (a hint carries no
  data); a cursor a power loss took back only ships records again.

Layout of the directory (one per gateway process):

- `<first seq, 20 digits>.seg`: a segment. A header (`chathint`, format version u16) and
  records: magic (4 bytes), body length (u32), CRC-32 of the body (u32), then the body:
  sequence (u64), room id (u64), spooled at (u64, unix microseconds), the hint in its wire
  form (`newcore/wire/hints.py`). Big-endian throughout.
- `cursor`: JSON, the highest sequence shipped.
- `lost-rooms`: a header line, then `room count first_lost last_lost` lines. A room is
  appended (one `os.write`) the first time it loses a hint, so a kill -9 keeps it; its counts
  are rewritten (temp + rename) by the flusher.

Thread use: every method may be called from any thread (the gateway calls them from its event
loop); the flusher is the spool's own thread.
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import fcntl
import json
import logging
import os
import struct
import threading
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from gateway.errors import SpoolMisconfigured, SpoolUnavailable
from newcore.domain.hints import Hint
from newcore.wire.hints import MAX_HINT_BYTES, encode_hint

FORMAT_VERSION = 1
_SEGMENT_MAGIC = b"chathint"
_SEGMENT_HEADER = struct.Struct(">8sH")
HEADER_BYTES = _SEGMENT_HEADER.size
_RECORD_MAGIC = b"\xf3\x8e\xa1\x5c"  # never in a hint's ASCII JSON: found again after damage
_RECORD = struct.Struct(">4sII")  # magic, body length, CRC-32 of the body
_BODY = struct.Struct(">QQQ")  # sequence, room id, spooled at (unix microseconds)
_FRAME = struct.Struct(">4sIIQQQ")  # both at once, for reading
_MAX_BODY = _BODY.size + MAX_HINT_BYTES
MAX_RECORD_BYTES = _RECORD.size + _MAX_BODY
_SEGMENT_SUFFIX = ".seg"
_CURSOR = "cursor"
_CURSOR_FORMAT = "chat-hint-spool-cursor"
_LOST = "lost-rooms"
_LOST_HEADER = "chat-hint-spool lost-rooms"
_READ_CHUNK = 256 * 1024  # larger than any record: a record cut by a chunk is read again whole
_U64 = 1 << 64

_fdatasync = getattr(os, "fdatasync", os.fsync)
_log = logging.getLogger("gateway.spool")


class SpooledHint(NamedTuple):
    """A record of the spool: the hint's wire form, for the hints topic (key: the room). A
    named tuple: the shipper takes hundreds per batch on the gateway's event loop."""

    seq: int
    room_id: int
    value: bytes
    spooled_at: float  # unix seconds


@dataclass(frozen=True, slots=True)
class LostRoom:
    """A room that lost hints (not spooled: the bound, or the disk): the repair mends it."""

    count: int
    first_lost_at: float  # unix seconds
    last_lost_at: float


@dataclass(frozen=True, slots=True)
class SpoolRecovery:
    """What opening the spool found and did."""

    segments: int  # segment files found
    records: int  # whole records found (shipped or not)
    pending: int  # of which not yet shipped
    torn_bytes: int  # bytes cut off segments' tails (writes a crash interrupted)
    skipped: dict[str, int]  # damaged records (or stretches of bytes) passed over, by reason
    notes: list[str]  # what an operator may want to know, in words


@dataclass(frozen=True, slots=True)
class SpoolState:
    """The spool at one moment, for the admin API, health and metrics."""

    pending_records: int
    pending_bytes: int
    max_bytes: int
    disk_bytes: int  # segment files, their shipped heads included
    shipped_seq: int
    last_seq: int  # the highest sequence given (0: none yet)
    oldest_pending_age_s: float | None  # None: nothing pending
    lost_rooms: dict[int, int]  # room -> hints it lost
    spooled: int  # puts kept, since open
    dropped_full: int  # puts refused at the bound, since open
    dropped_unwritable: int  # puts the disk failed (or after close), since open
    fsync_errors: int
    last_error: str | None
    skipped: dict[str, int]  # damaged records passed over, by reason
    torn_bytes: int  # cut at open


@dataclass(slots=True)
class _Segment:
    first_seq: int  # from the file's name
    path: Path
    end: int  # where the next record goes: the header and whole records are before it
    records: int = 0
    # Stretches start -> end found damaged: a reader jumps over them.
    holes: dict[int, int] = field(default_factory=dict)


@dataclass(slots=True)
class _Lost:
    count: int
    first: float
    last: float

    def line(self, room: int) -> str:
        return f"{room} {self.count} {self.first:.3f} {self.last:.3f}\n"


class _Record(NamedTuple):
    """A whole, intact record, and where it lies."""

    seq: int
    room_id: int
    value: bytes
    spooled_at_us: int
    segment: int  # the first_seq of its segment
    start: int
    end: int


def _check(view: memoryview, at: int, end: int) -> int | str:
    """The size of the whole, intact record at `at` (ending at or before `end`), or why there
    is none."""
    if end - at < _RECORD.size:
        return "torn"
    magic, length, crc = _RECORD.unpack_from(view, at)
    if magic != _RECORD_MAGIC:
        return "no record frame"
    if not _BODY.size <= length <= _MAX_BODY:
        return "impossible length"
    stop = at + _RECORD.size + length
    if stop > end:
        return "torn"
    if zlib.crc32(view[at + _RECORD.size : stop]) != crc:
        return "crc mismatch"
    return int(stop - at)


def _why(view: memoryview, at: int, end: int) -> str:
    """Why the bytes at `at` are no whole record (when `_parse` has seen they are not)."""
    checked = _check(view, at, end)
    return checked if isinstance(checked, str) else "torn"


def _parse(
    view: memoryview,
    at: int,
    base: int,
    segment: int,
    holes: Mapping[int, int],
    out: list[_Record],
    limit: int,
) -> tuple[int, str | None]:
    """Appends the whole records of `view` from `at` on to `out` (offsets plus `base`),
    jumping over `holes`, until `limit` are there or the bytes are no whole record. Returns
    where it stopped, and None or why the bytes there are no record. The hot loop of reading:
    one unpack and one CRC per record."""
    end = len(view)
    unpack, crc32, frame, fixed = _FRAME.unpack_from, zlib.crc32, _RECORD.size, _FRAME.size
    while at < end and len(out) < limit:
        if holes:
            hole = holes.get(base + at)
            if hole is not None:
                at = hole - base
                continue
        if end - at < fixed:
            return at, _why(view, at, end)
        magic, length, crc, seq, room, spooled_at_us = unpack(view, at)
        stop = at + frame + length
        if magic != _RECORD_MAGIC or not fixed - frame <= length <= _MAX_BODY or stop > end:
            return at, _why(view, at, end)
        if crc32(view[at + frame : stop]) != crc:
            return at, "crc mismatch"
        out.append(
            _Record(
                seq,
                room,
                bytes(view[at + fixed : stop]),
                spooled_at_us,
                segment,
                base + at,
                base + stop,
            )
        )
        at = stop
    return at, None


def _scan(
    data: bytes, at: int, base: int, segment: int
) -> Iterator[list[_Record] | tuple[int, int, str]]:
    """Every record of `data` from `at` on, in lists, and every damaged stretch `(start, end,
    reason)` between them (offsets plus `base`). After damage, the next intact record is found
    by its magic; the CRC over the frame it starts tells a true one from bytes that look like
    it. A stretch that ends at the end of `data` has no whole record after it."""
    view, end = memoryview(data), len(data)
    while at < end:
        found: list[_Record] = []
        at, problem = _parse(view, at, base, segment, {}, found, 4096)
        if found:
            yield found
        if problem is None:
            continue
        bad = at
        at = data.find(_RECORD_MAGIC, at + 1)
        while at != -1 and not isinstance(_check(view, at, end), int):
            at = data.find(_RECORD_MAGIC, at + 1)
        yield (base + bad, base + (end if at == -1 else at), problem)
        if at == -1:
            return


def _segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}{_SEGMENT_SUFFIX}"


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace(path: Path, text: str, sync: bool) -> None:
    """Writes `path` whole (temp + rename): a crash leaves the old or the new contents."""
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w") as file:
        file.write(text)
        if sync:
            file.flush()
            os.fsync(file.fileno())
    temporary.replace(path)


class HintSpool:
    def __init__(
        self,
        directory: Path,
        max_bytes: int,
        segment_bytes: int = 4 * 1024 * 1024,
        fsync_interval_s: float = 1.0,
    ) -> None:
        """Opens (making it if missing) and recovers the spool in `directory`, then starts its
        flusher. `max_bytes`: the bound on the bytes of records not yet shipped.
        `segment_bytes`: a segment is written no more past this size (and deleted once wholly
        shipped). `fsync_interval_s`: the longest a written record waits for an fdatasync (0:
        as soon as the flusher can). Raises SpoolMisconfigured (not a directory; a file of
        another format or version), SpoolUnavailable (the directory cannot be made, read or
        written), ValueError (sizes that cannot hold one hint)."""
        if max_bytes < MAX_RECORD_BYTES:
            raise ValueError(f"a spool bound of {max_bytes} bytes cannot hold one hint")
        if segment_bytes < HEADER_BYTES + MAX_RECORD_BYTES:
            raise ValueError(f"segments of {segment_bytes} bytes cannot hold one hint")
        if fsync_interval_s < 0:
            raise ValueError("fsync_interval_s: 0 or more")
        self._dir = directory
        self._max_bytes = max_bytes
        self._segment_bytes = segment_bytes
        self._interval = fsync_interval_s
        self._lock = threading.Lock()  # the state below; never held across an fsync
        self._compacting = threading.Lock()  # one rewrite of the lost-rooms file at a time
        self._cursor_lock = threading.Lock()  # cursor writes, in order
        self._segments: list[_Segment] = []
        self._fd: int | None = None  # the last segment's, opened for appending
        self._ship_offset = HEADER_BYTES  # in the first segment: the first record not shipped
        self._handed: list[_Record] = []  # what `pending` read last, from the ship offset on
        self._shipped = 0
        self._cursor_written = -1
        self._next_seq = 1
        self._pending_records = self._pending_bytes = self._disk_bytes = 0
        self._oldest_pending_at: float | None = None  # None with records pending: look it up
        self._last_seq_for: dict[int, int] = {}
        self._lost: dict[int, _Lost] = {}
        self._lost_on_disk: set[int] = set()  # rooms with a line in the lost-rooms file
        self._lost_fd: int | None = None
        self._spooled = self._dropped_full = self._dropped_unwritable = self._fsync_errors = 0
        self._last_error: str | None = None
        self._skipped: dict[str, int] = {}
        # What the flusher has to do: set under the lock, taken by the flusher.
        self._dirty = self._dir_dirty = self._cursor_dirty = self._cursor_stale = False
        self._lost_dirty = self._lost_appended = False
        self._retired: list[int] = []  # fds of segments written no more: synced, then closed
        self._recount = False  # damage found while reading: count what is pending again
        self._closed = False
        self._stopping = threading.Event()
        self._written = threading.Event()  # fsync_interval_s == 0: wakes the flusher
        self._holder: int | None = None
        try:
            self._hold(directory)
            self.recovery = self._recover()
        except OSError as exc:
            self._close_fds()
            raise SpoolUnavailable(f"hint spool at {directory}: {exc}") from exc
        except BaseException:
            self._close_fds()
            raise
        if self.recovery.torn_bytes or self.recovery.skipped or self.recovery.notes:
            _log.warning(
                "hint spool recovered",
                extra={
                    "directory": str(directory),
                    "torn_bytes": self.recovery.torn_bytes,
                    "skipped": self.recovery.skipped,
                    "notes": self.recovery.notes,
                },
            )
        self._flusher = threading.Thread(
            target=self._flush_loop, name=f"hint-spool-flush {directory}", daemon=True
        )
        self._flusher.start()

    # -- writing -------------------------------------------------------------------------

    def put(self, hint: Hint) -> int | None:
        """Spools the hint: its sequence number, or None when it was not kept (the bound is
        reached, the disk failed the write, or the spool is closed); then its room is recorded
        as lost and counted. Never raises for the disk or the bound (a request must not fail
        for it) and never waits for an fsync: one `os.write`. Raises ValueError for a hint
        that has no wire form here (a room id that is not a u64: the caller's bug)."""
        value = encode_hint(hint)
        room = hint.room_id
        if not 0 <= room < _U64 or len(value) > MAX_HINT_BYTES:
            raise ValueError(f"hint {hint!r}: not a hint the spool can frame")
        now = time.time()
        with self._lock:
            if self._closed:
                self._dropped_unwritable += 1
                self._lose(room, now)
                return None
            seq = self._next_seq
            body = _BODY.pack(seq, room, int(now * 1_000_000)) + value
            record = _RECORD.pack(_RECORD_MAGIC, len(body), zlib.crc32(body)) + body
            size = len(record)
            if self._pending_bytes + size > self._max_bytes:
                self._dropped_full += 1
                self._lose(room, now)
                return None
            try:
                fd = self._writable(size)
                written = os.write(fd, record)
                if written != size:
                    raise OSError(errno.ENOSPC, f"short write: {written} of {size} bytes")
            except OSError as exc:
                self._write_failed(exc)
                self._dropped_unwritable += 1
                self._lose(room, now)
                return None
            segment = self._segments[-1]
            segment.end += size
            segment.records += 1
            self._disk_bytes += size
            self._pending_bytes += size
            self._pending_records += 1
            if self._pending_records == 1:
                self._oldest_pending_at = now
            self._last_seq_for[room] = seq
            self._next_seq = seq + 1
            self._spooled += 1
            self._dirty = True
        if self._interval == 0:
            self._written.set()
        return seq

    def _writable(self, size: int) -> int:
        """The fd of the segment the next record goes to (a new one past `segment_bytes`)."""
        last = self._segments[-1] if self._segments else None
        if self._fd is not None and last is not None:
            if last.end + size <= self._segment_bytes or last.records == 0:
                return self._fd
            self._retired.append(self._fd)
            self._fd = None
        path = self._dir / _segment_name(self._next_seq)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
        fd = os.open(path, flags, 0o644)
        header = _SEGMENT_HEADER.pack(_SEGMENT_MAGIC, FORMAT_VERSION)
        try:
            if os.write(fd, header) != len(header):
                raise OSError(errno.ENOSPC, "short write of a segment header")
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                path.unlink()
            raise
        self._segments.append(_Segment(self._next_seq, path, len(header)))
        if len(self._segments) == 1:
            self._ship_offset = len(header)
        self._disk_bytes += len(header)
        self._fd = fd
        self._dir_dirty = True
        return fd

    def _write_failed(self, exc: OSError) -> None:
        """Takes back what a failed write may have left (part of a record); a segment that
        cannot be cut back is written no more (the next put starts another)."""
        self._last_error = f"writing a hint: {exc}"
        segment = self._segments[-1] if self._segments else None
        if self._fd is None or segment is None:
            return
        try:
            os.ftruncate(self._fd, segment.end)
            return
        except OSError:
            self._retired.append(self._fd)
            self._fd = None
        if segment.records == 0:  # its name is the next sequence's: free it
            with contextlib.suppress(OSError):
                segment.path.unlink()
            self._segments.pop()
            self._disk_bytes -= segment.end

    def _lose(self, room: int, now: float) -> None:
        """Records that the room lost a hint: in memory at once; on disk at once the first
        time (one `os.write`), its count within the flusher's interval."""
        lost = self._lost.get(room)
        if lost is None:
            lost = self._lost[room] = _Lost(1, now, now)
        else:
            lost.count += 1
            lost.last = now
        self._lost_dirty = True
        if room in self._lost_on_disk or self._lost_fd is None:
            return
        try:
            os.write(self._lost_fd, lost.line(room).encode())
            self._lost_on_disk.add(room)
            self._lost_appended = True
        except OSError as exc:  # the flusher's rewrite tries again
            self._last_error = f"recording a lost room: {exc}"

    # -- shipping ------------------------------------------------------------------------

    def pending(self, max_records: int) -> list[SpooledHint]:
        """The oldest records not yet shipped, at most `max_records`, in sequence order; the
        same again until `shipped` moves past them; [] when none. Raises SpoolUnavailable
        when the segments cannot be read."""
        with self._lock:
            if max_records <= 0 or self._pending_records == 0:
                return []
            try:
                records = self._collect(max_records)
                if self._recount:
                    self._count_pending()
            except OSError as exc:
                raise SpoolUnavailable(f"reading the hint spool at {self._dir}: {exc}") from exc
            self._handed = records
        return [SpooledHint(r.seq, r.room_id, r.value, r.spooled_at_us / 1e6) for r in records]

    def shipped(self, through_seq: int) -> None:
        """Every record up to `through_seq` is in the log: never handed out again; segments
        holding nothing else are deleted; the cursor is written (temp + rename: a kill -9
        keeps it; the flusher makes it survive a power loss). Records `pending` handed out
        are passed over without reading them again. Raises SpoolUnavailable if the cursor
        cannot be written (the records still count as shipped; the flusher writes it later)
        or the segments cannot be read."""
        gone: list[Path] = []
        with self._lock:
            through = min(through_seq, self._next_seq - 1)
            if through <= self._shipped:
                return
            handed = self._handed
            try:
                if handed and handed[-1].seq >= through:
                    count = bisect.bisect_right(handed, through, key=lambda r: r.seq)
                    done, self._handed = handed[:count], handed[count:]
                else:
                    done = [r for r in self._collect(through - self._shipped) if r.seq <= through]
                    self._handed = []
                for record in done:
                    self._pending_records -= 1
                    self._pending_bytes -= record.end - record.start
                if done:
                    while self._segments[0].first_seq != done[-1].segment:
                        gone.append(self._drop_first_segment())
                    self._ship_offset = done[-1].end
                while len(self._segments) > 1 and self._ship_offset >= self._segments[0].end:
                    gone.append(self._drop_first_segment())
                self._shipped = through
                self._oldest_pending_at = (
                    self._handed[0].spooled_at_us / 1e6 if self._handed else None
                )
                if self._recount:
                    self._count_pending()
            except OSError as exc:
                raise SpoolUnavailable(f"reading the hint spool at {self._dir}: {exc}") from exc
        for path in gone:
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:  # deleted at the next open: all of it is shipped
                self._last_error = f"deleting a shipped segment: {exc}"
        self._store_cursor(through)

    def _drop_first_segment(self) -> Path:
        """Forgets the first segment (wholly shipped); its file is for the caller to delete."""
        gone = self._segments.pop(0)
        self._ship_offset = HEADER_BYTES
        self._disk_bytes -= gone.end
        self._dir_dirty = True
        return gone.path

    def _store_cursor(self, through: int) -> None:
        with self._cursor_lock:
            if through <= self._cursor_written:
                return
            text = json.dumps({"format": _CURSOR_FORMAT, "v": FORMAT_VERSION, "shipped": through})
            try:
                _replace(self._dir / _CURSOR, text, sync=False)
            except OSError as exc:
                with self._lock:
                    self._cursor_stale = True
                    self._last_error = f"writing the cursor: {exc}"
                raise SpoolUnavailable(f"hint spool cursor at {self._dir}: {exc}") from exc
            self._cursor_written = through
        with self._lock:
            self._cursor_dirty = True

    def _collect(self, limit: int) -> list[_Record]:
        """Up to `limit` records after the shipping position, in order."""
        found: list[_Record] = []
        for index, segment in enumerate(self._segments):
            offset = self._ship_offset if index == 0 else HEADER_BYTES
            if offset >= segment.end:
                continue
            fd = os.open(segment.path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                while offset < segment.end and len(found) < limit:
                    offset = self._read_chunk(fd, segment, offset, found, limit)
            finally:
                os.close(fd)
            if len(found) >= limit:
                break
        return found

    def _read_chunk(
        self, fd: int, segment: _Segment, offset: int, found: list[_Record], limit: int
    ) -> int:
        """Reads the segment's records from `offset` on, one chunk, into `found`; returns the
        offset to go on from. Damage met here (bytes changed on disk since they were written
        or checked at open) becomes holes to jump over, counted once."""
        data = os.pread(fd, min(_READ_CHUNK, segment.end - offset), offset)
        if not data:
            raise OSError(errno.EIO, f"{segment.path} is shorter than what was written")
        at, problem = _parse(
            memoryview(data), 0, offset, segment.first_seq, segment.holes, found, limit
        )
        if problem is None or (problem == "torn" and at > 0 and offset + len(data) < segment.end):
            return offset + at  # (torn: a record cut by the chunk, read again from its start)
        start = offset + at
        rest = os.pread(fd, segment.end - start, start)
        for item in _scan(rest, 0, start, segment.first_seq):
            if isinstance(item, tuple):
                segment.holes[item[0]] = item[1]
                self._skipped[item[2]] = self._skipped.get(item[2], 0) + 1
                self._last_error = f"{segment.path.name}: {item[2]} at byte {item[0]}"
                self._recount = True
        if start not in segment.holes:  # nothing damaged after all: never read it in a loop
            raise OSError(errno.EIO, f"{segment.path}: unreadable record at byte {start}")
        return start

    def _count_pending(self) -> None:
        """Counts what is pending again, from the disk: damage found while reading took an
        unknown number of records with it."""
        self._recount = False
        self._handed = []
        self._pending_records = self._pending_bytes = 0
        self._oldest_pending_at = None
        for index, segment in enumerate(self._segments):
            offset = self._ship_offset if index == 0 else HEADER_BYTES
            fd = os.open(segment.path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                while offset < segment.end:
                    found: list[_Record] = []
                    offset = self._read_chunk(fd, segment, offset, found, 1 << 62)
                    for record in found:
                        if self._oldest_pending_at is None:
                            self._oldest_pending_at = record.spooled_at_us / 1e6
                        self._pending_records += 1
                        self._pending_bytes += record.end - record.start
            finally:
                os.close(fd)

    # -- reading the state ---------------------------------------------------------------

    def last_seq_for(self, room_id: int) -> int | None:
        """The sequence of the room's last hint spooled in this process's life (or found not
        yet shipped when the spool opened); None if none. A shadow read's frontier: once the
        shipper has that sequence in the log, its position is what the read model must
        reach."""
        return self._last_seq_for.get(room_id)

    def state(self) -> SpoolState:
        with self._lock:
            oldest = self._oldest_pending_at
            if oldest is None and self._pending_records:
                with contextlib.suppress(OSError):
                    first = self._collect(1)
                    oldest = self._oldest_pending_at = (
                        first[0].spooled_at_us / 1e6 if first else None
                    )
            return SpoolState(
                pending_records=self._pending_records,
                pending_bytes=self._pending_bytes,
                max_bytes=self._max_bytes,
                disk_bytes=self._disk_bytes,
                shipped_seq=self._shipped,
                last_seq=self._next_seq - 1,
                oldest_pending_age_s=None if oldest is None else max(0.0, time.time() - oldest),
                lost_rooms={room: lost.count for room, lost in self._lost.items()},
                spooled=self._spooled,
                dropped_full=self._dropped_full,
                dropped_unwritable=self._dropped_unwritable,
                fsync_errors=self._fsync_errors,
                last_error=self._last_error,
                skipped=dict(self._skipped),
                torn_bytes=self.recovery.torn_bytes,
            )

    def lost_rooms(self) -> dict[int, LostRoom]:
        """Rooms that lost hints since they were last forgotten, with counts and times."""
        with self._lock:
            return {r: LostRoom(x.count, x.first, x.last) for r, x in self._lost.items()}

    def forget_lost(self, room_ids: Iterable[int]) -> None:
        """The repair has mended these rooms: they leave the lost-rooms file, durably when
        this returns (a rewrite with fsync: not for a request's path). A room that loses a
        hint again comes back. Raises SpoolUnavailable if the file cannot be written (they
        are forgotten in memory; the flusher writes it later)."""
        with self._lock:
            if self._closed:
                raise SpoolUnavailable(f"hint spool at {self._dir} is closed")
            for room in room_ids:
                self._lost.pop(room, None)
            self._lost_dirty = True
        try:
            self._compact_lost()
        except OSError as exc:
            raise SpoolUnavailable(f"hint spool lost-rooms file at {self._dir}: {exc}") from exc

    # -- durability ----------------------------------------------------------------------

    def flush(self) -> None:
        """Makes everything written so far survive a power loss: records, the cursor, the
        lost rooms, the directory's entries. The flusher thread calls it every
        `fsync_interval_s`, `close` last. Failures are counted, kept in `state().last_error`
        and tried again next time, never raised."""
        with self._lock:
            active = self._fd if self._dirty else None
            lost_fd = self._lost_fd if self._lost_appended else None
            retired, self._retired = self._retired, []
            cursor, stale, directory = self._cursor_dirty, self._cursor_stale, self._dir_dirty
            self._dirty = self._lost_appended = False
            self._cursor_dirty = self._cursor_stale = self._dir_dirty = False
            lost, shipped = self._lost_dirty, self._shipped
        failed: list[str] = []
        for old in retired:
            try:
                _fdatasync(old)
            except OSError as exc:
                failed.append(f"fdatasync of a segment: {exc}")
            finally:
                os.close(old)
        for written, flag in ((active, "_dirty"), (lost_fd, "_lost_appended")):
            if written is not None:
                try:
                    _fdatasync(written)
                except OSError as exc:
                    failed.append(f"fdatasync: {exc}")
                    self._again(flag)
        if stale:
            try:
                self._store_cursor(shipped)
                cursor = True
            except SpoolUnavailable as exc:
                failed.append(str(exc))
        if cursor:
            try:
                fd = os.open(self._dir / _CURSOR, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
                directory = True
            except OSError as exc:
                failed.append(f"fsync of the cursor: {exc}")
                self._again("_cursor_dirty")
        if lost:
            try:
                self._compact_lost()  # syncs the directory itself
            except OSError as exc:
                failed.append(f"rewriting the lost-rooms file: {exc}")
        if directory:
            try:
                _sync_directory(self._dir)
            except OSError as exc:
                failed.append(f"fsync of the directory: {exc}")
                self._again("_dir_dirty")
        if failed:
            with self._lock:
                self._fsync_errors += len(failed)
                self._last_error = failed[-1]

    def _again(self, flag: str) -> None:
        with self._lock:
            setattr(self, flag, True)

    def _flush_loop(self) -> None:
        while not self._stopping.is_set():
            if self._interval > 0:
                self._stopping.wait(self._interval)
            else:
                self._written.wait(0.5)
                self._written.clear()
            try:
                self.flush()
            except Exception as exc:  # the flusher outlives anything
                with self._lock:
                    self._fsync_errors += 1
                    self._last_error = f"flusher: {exc!r}"

    def _compact_lost(self) -> None:
        """Rewrites the lost-rooms file from memory (temp, fsync, rename), then appends to the
        new one. Rooms lost while the temp file was written are appended to it before the
        swap; counts that moved meanwhile are written next time."""
        with self._compacting:
            with self._lock:
                snapshot = {room: _Lost(x.count, x.first, x.last) for room, x in self._lost.items()}
                self._lost_dirty = False
            path = self._dir / _LOST
            temporary = path.with_name(path.name + ".tmp")
            header = f"{_LOST_HEADER} {FORMAT_VERSION}\n"
            with temporary.open("w") as file:
                file.write(header + "".join(x.line(r) for r, x in sorted(snapshot.items())))
                file.flush()
                os.fsync(file.fileno())
            with self._lock:
                fd = os.open(temporary, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
                late = [room for room in self._lost if room not in snapshot]
                try:
                    for room in late:
                        os.write(fd, self._lost[room].line(room).encode())
                    os.replace(temporary, path)
                except OSError:
                    os.close(fd)
                    self._lost_dirty = True
                    raise
                old, self._lost_fd = self._lost_fd, fd
                self._lost_on_disk = set(self._lost)
                if late:
                    self._lost_appended = True
                if late or snapshot != self._lost:
                    self._lost_dirty = True
            if old is not None:
                os.close(old)
            _sync_directory(self._dir)

    def _hold(self, directory: Path) -> None:
        """One process per spool directory: two writing one directory would hand out the same
        sequences and skip each other's records at the next open. The lock is the kernel's
        (flock), so a killed holder releases it with its last file descriptor."""
        if directory.exists() and not directory.is_dir():
            return  # _recover says what is wrong
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SpoolMisconfigured(
                f"hint spool at {directory} is in use by another process (each gateway process "
                "needs a MIG_SPOOL_DIR of its own)"
            ) from None
        self._holder = fd

    def close(self) -> None:
        """Stops the flusher, makes everything durable, releases the files; what is pending
        stays for the next open. Puts after it are refused (None, counted)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stopping.set()
        self._written.set()
        self._flusher.join()
        with self._lock:
            if self._fd is not None:
                self._retired.append(self._fd)
                self._fd = None
        self.flush()
        self._close_fds()

    def _close_fds(self) -> None:
        # The directory's lock last: it is released with its file descriptor.
        for fd in [*self._retired, self._fd, self._lost_fd, self._holder]:
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._retired, self._fd, self._lost_fd, self._holder = [], None, None, None

    # -- recovery ------------------------------------------------------------------------

    def _recover(self) -> SpoolRecovery:
        directory = self._dir
        if directory.exists() and not directory.is_dir():
            raise SpoolMisconfigured(f"hint spool at {directory}: not a directory")
        directory.mkdir(parents=True, exist_ok=True)
        notes: list[str] = []
        for leftover in directory.glob("*.tmp"):  # a rewrite a crash interrupted
            leftover.unlink()
        self._shipped = self._read_cursor(notes)
        self._read_lost(notes)
        names = sorted(p for p in directory.iterdir() if p.name.endswith(_SEGMENT_SUFFIX))
        torn = records = pending = highest = 0
        first_unshipped: dict[int, int] = {}  # index in self._segments -> offset
        for path in names:
            segment, data = self._open_segment(path, notes)
            if segment is None:
                continue
            for item in _scan(data, HEADER_BYTES, 0, segment.first_seq):
                if isinstance(item, tuple):
                    start, end, reason = item
                    if reason != "torn" or end < len(data):
                        self._skipped[reason] = self._skipped.get(reason, 0) + 1
                    if end < len(data):  # whole records follow: jumped over
                        segment.holes[start] = end
                        notes.append(
                            f"{path.name}: {end - start} bytes at {start} skipped: {reason}"
                        )
                    continue  # else the tail a crash tore (damaged or not): cut below
                for record in item:
                    segment.end = record.end
                    if record.seq <= highest:
                        segment.holes[record.start] = record.end
                        reason = "sequence out of order"
                        self._skipped[reason] = self._skipped.get(reason, 0) + 1
                        continue
                    highest = record.seq
                    segment.records += 1
                    records += 1
                    if record.seq > self._shipped:
                        first_unshipped.setdefault(len(self._segments), record.start)
                        pending += 1
                        self._pending_bytes += record.end - record.start
                        self._last_seq_for[record.room_id] = record.seq
                        if self._oldest_pending_at is None:
                            self._oldest_pending_at = record.spooled_at_us / 1e6
            if segment.end < len(data):
                cut = len(data) - segment.end
                torn += cut
                notes.append(f"{path.name}: a torn tail of {cut} bytes cut off")
                with path.open("r+b") as file:
                    file.truncate(segment.end)
                    file.flush()
                    os.fsync(file.fileno())
            if segment.records == 0:
                path.unlink()
                continue
            self._segments.append(segment)
        self._pending_records = pending
        self._next_seq = max(highest, self._shipped) + 1
        self._disk_bytes = sum(s.end for s in self._segments)
        # Wholly shipped segments go; the position is the first record not shipped.
        gone: list[Path] = []
        if first_unshipped:
            first = min(first_unshipped)
            gone += [self._drop_first_segment() for _ in range(first)]
            self._ship_offset = first_unshipped[first]
        else:
            gone += [self._drop_first_segment() for _ in range(len(self._segments) - 1)]
            if self._segments:
                self._ship_offset = self._segments[0].end
        for path in gone:
            path.unlink()
        if self._segments and self._segments[-1].end < self._segment_bytes:
            path = self._segments[-1].path
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        _sync_directory(directory)
        self._dir_dirty = False
        self._cursor_written = self._shipped
        return SpoolRecovery(len(names), records, pending, torn, dict(self._skipped), notes)

    def _open_segment(self, path: Path, notes: list[str]) -> tuple[_Segment | None, bytes]:
        stem = path.name[: -len(_SEGMENT_SUFFIX)]
        if not stem.isdigit():
            raise SpoolMisconfigured(f"hint spool at {self._dir}: {path.name} is not our segment")
        data = path.read_bytes()
        if len(data) < HEADER_BYTES:
            notes.append(f"{path.name}: a segment torn at its creation, removed")
            path.unlink()
            return None, data
        magic, version = _SEGMENT_HEADER.unpack_from(data, 0)
        if magic != _SEGMENT_MAGIC:
            raise SpoolMisconfigured(f"hint spool at {self._dir}: {path.name} is not a segment")
        if version != FORMAT_VERSION:
            raise SpoolMisconfigured(
                f"hint spool at {self._dir}: {path.name} has format version {version}, this "
                f"version reads {FORMAT_VERSION}: ship it with that version or move it away"
            )
        return _Segment(int(stem), path, HEADER_BYTES), data

    def _read_cursor(self, notes: list[str]) -> int:
        path = self._dir / _CURSOR
        if not path.exists():
            return 0
        try:
            data = json.loads(path.read_bytes())
        except ValueError:
            # A power loss can leave a renamed cursor empty: what is left is shipped again
            # (at least once: a hint twice is harmless).
            notes.append("the cursor was unreadable: every record left is shipped again")
            return 0
        if not isinstance(data, dict) or data.get("format") != _CURSOR_FORMAT:
            raise SpoolMisconfigured(f"hint spool at {self._dir}: {_CURSOR} is not our cursor")
        if data.get("v") != FORMAT_VERSION:
            raise SpoolMisconfigured(
                f"hint spool at {self._dir}: a cursor of format version {data.get('v')}, "
                f"this version reads {FORMAT_VERSION}"
            )
        shipped = data.get("shipped")
        if not isinstance(shipped, int) or shipped < 0:
            notes.append("the cursor held no sequence: every record left is shipped again")
            return 0
        return shipped

    def _read_lost(self, notes: list[str]) -> None:
        path = self._dir / _LOST
        lines = (
            path.read_bytes().decode("utf-8", "replace").splitlines(True) if path.exists() else []
        )
        if lines:
            name, _, version = lines[0].strip().rpartition(" ")
            if name != _LOST_HEADER or not version.isdigit():
                raise SpoolMisconfigured(f"hint spool at {self._dir}: {_LOST} is not ours")
            if int(version) != FORMAT_VERSION:
                raise SpoolMisconfigured(
                    f"hint spool at {self._dir}: {_LOST} has format version {version}, this "
                    f"version reads {FORMAT_VERSION}"
                )
        unreadable = 0
        for line in lines[1:]:
            parts = line.split()
            try:
                if not line.endswith("\n") or len(parts) != 4:  # torn by a crash, or damaged
                    raise ValueError(line)
                room, count, first, last = (
                    int(parts[0]),
                    int(parts[1]),
                    float(parts[2]),
                    float(parts[3]),
                )
            except ValueError:
                unreadable += 1
                continue
            lost = self._lost.get(room)
            if lost is None:
                self._lost[room] = _Lost(count, first, last)
            else:  # never written so, but kept whole if it is
                lost.count += count
                lost.first, lost.last = min(lost.first, first), max(lost.last, last)
        if unreadable:
            self._skipped["unreadable lost-rooms line"] = unreadable
            notes.append(f"{unreadable} unreadable lines of {_LOST} skipped")
        # Rewritten whole, so that appends follow a clean file.
        body = "".join(x.line(r) for r, x in sorted(self._lost.items()))
        _replace(path, f"{_LOST_HEADER} {FORMAT_VERSION}\n{body}", sync=True)
        self._lost_on_disk = set(self._lost)
        self._lost_fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
