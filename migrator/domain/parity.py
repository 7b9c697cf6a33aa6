"""Parity: what "the read model holds what the monolith holds" means, message by message and
cursor by cursor, and the parity result every later step reads (repair, cutover, the reports).

Pure: the standard library, the new core's model and the migrator's ports' `Frontier` (a
value). The use case that streams both sides, waits for frontiers and re-checks is
`migrator/service/parity.py`; the outputs are `migrator/adapters/report/`.

## The rules

Both sides are compared as a client sees them (the gateway's shadow reads compare the same
fields for the same reasons: `gateway/domain/shadow.py`). The monolith's side is its rows read
by the capturer's own reader (`newcore.ports.MonolithReader`), so translated exactly as they
are migrated: what a rule compares is the monolith's *rendering* of a row, never its raw
columns.

| what | rule | kind when it differs | `field` |
|---|---|---|---|
| which messages | every id in the room, both sides walked in id order: live on one side only is a difference; soft-deleted or purged in the monolith and absent from the read model (a tombstone) is the same | `missing_in_new` (live in the monolith, absent in the read model), `extra_in_new` (live in the read model; the monolith's row is soft-deleted: `<deleted>`, purged: `<absent>`, either when re-read: `<deleted or purged>`) | `message` (the whole message as the value) |
| `update_time` | compared; lower in the read model than in the monolith makes every field of that message `stale` (an older state: a lost edit, a late capture) | `stale`, else `field_differs` | `update_time` |
| `body` | compared exactly, as the monolith renders it (`body ?? body_v1 ?? body_raw`, bytes that are not UTF-8 as U+FFFD) | `stale` or `field_differs` | `body` |
| `send_time` | compared (`send_time ?? created_at` read as JST, 0 when unknown) | `stale` or `field_differs` | `send_time` |
| `account_id` | compared: the link to the account that a client's `account.name` and avatar come from | `stale` or `field_differs` | `account_id` |
| `account.name`, `account.avatar_image_url` | not compared, and not in the read model: the monolith renders them at read time from its account table, which does not migrate, and the Read API asks that same directory at its own read time (DESIGN.md, "Parity noise"). `account_id` is compared | | |
| `message_id`, `room_id` | the merge's key: a message under another id or in another room is one missing and one extra | | |
| raw columns (`body_v1`, `body_raw`, `created_at`, `deleted`) | not compared as columns: through the rendering above, as a client sees them | | |
| a row the monolith's reader cannot read faithfully (`RowProblem`: bytes that are not UTF-8, no body, no send time) | reported, **not** counted against a clean room: it migrates as the monolith shows it (a client sees the same), and no repair can read it better. `legacy` is why, `new` the value migrated (the monolith's rendering); a read model that holds another value is a separate `field_differs` | `unreadable_legacy` | `body`, `send_time` or `row` |
| cursors | each cursor of the monolith's `room_cursors` of the room, by account: `last_read_message_id`, `last_fetched_message_id` compared | `cursor_missing` (none in the read model), `cursor_differs` | `cursor` (the whole cursor), `last_read_message_id`, `last_fetched_message_id` |
| a cursor only in the read model | not looked for (the read model's port lists no cursors; the monolith never deletes one) | | |

Values are JSON: ids of messages as digit strings (64-bit ids do not survive a JavaScript
number), other integers as numbers, a message as `{"account_id", "body", "send_time",
"update_time"}`, a cursor as `{"last_read_message_id", "last_fetched_message_id"}` (ids as
strings), a side without the row as a marker (`<absent>`, `<deleted>`, `<deleted or purged>`).
Texts longer than MAX_TEXT characters are cut, both at the same place, around the first
character where they part (a note says where and how long each is): the difference stays
visible in a 60 kB body.

## Lag is not a difference (DESIGN.md)

A row that differs in a scan is a *candidate*. It is read again, on both sides, once the read
model has reached a frontier marked after the scan read it (`recheck`): the same as the
monolith's current state is no difference (it was lag); still different, with the monolith's
state unchanged since the scan, is a difference that holds at a frontier the read model
reached: confirmed; the monolith's state changed meanwhile: written during the check, re-checked
again (from the state just read) at the next frontier, and never reported; still changing after
`recheck_rounds`: *unsettled*, which keeps the room from clean without calling it different. A
row that changes faster than the pipeline's lag (a cursor a client moves every second) never
reads the same on both sides at one moment: the states the monolith shows while a frontier is
awaited are sampled, and a read model holding one of them, a state the monolith had after the
frontier, has caught up (settled).

## The interface

- `Kind`, `BLOCKING` (the kinds that keep a room from clean: all but `unreadable_legacy`),
  `Difference` (room, kind, message id or account id, field, legacy value, new value; `.key`:
  what to re-read or repair).
- `LegacyRow`: one monolith row of a room in id order (live message, or soft-deleted), with
  the reasons it could not be read faithfully.
- `merge(room, legacy_rows, new_messages)`: the streaming merge of two id-ordered iterators
  (a room's monolith rows and its live read-model messages) into `MessageCandidate`s and
  `unreadable_legacy` `Difference`s, holding one row of each side at a time.
  `compare_cursor(...)` -> `CursorCandidate | None`.
- `recheck_message(candidate, legacy_now, new_now, seen_since)`, `recheck_cursor(...)`:
  `Settled` (no difference now), `Confirmed(differences)`, or `Changed(next_candidate)`;
  `state_digest` (what `seen_since` holds).
- `Verdict` (clean, different, late), `RoomResult` (one room's outcome and counts; `verdict_of`
  decides it), `Header`, `Summary`.
- The result document, `{"schema": "chat-migration/parity", "version": 1, ...}`:
  `DocumentWriter(write)` writes it as a stream (a room's differences between its `start_room`
  and `end_room`, never held), `read_document(read)` reads it back as a stream of `Header`,
  then per room its `Difference`s then its `RoomResult`, then `Summary`; `encode`/`decode` do
  the whole document at once (`ParityResult`). A document of another schema or version, or not
  a parity result at all, is refused with `WrongReportVersion` saying what was found and what
  to do. The layout:

      {"schema": "chat-migration/parity", "version": 1,
       "run": "...", "started_at": <unix s>, "selection": "12,34", "who": "...",
       "frontier": {"binlog": "file:pos", "at_unix": <s>} | null,
       "settings": {"page": .., "recheck_rounds": .., "frontier_timeout_s": ..},
       "rules": {"compared": {field: why}, "ignored": {field: why}},
       "rooms": [
         {"room_id": 12, "differences": [
            {"room_id": 12, "kind": "stale", "message_id": "123", "account_id": null,
             "field": "body", "legacy": "...", "new": "..."}, ...],
          "verdict": "clean" | "different" | "late", "reason": str | null,
          "compared_at": frontier | null, "settled_at": frontier | null,
          "legacy_rows": n, "new_messages": n, "cursors": n,
          "counts": {kind: n, ...every kind}, "rechecked": n, "unsettled": n,
          "marked_clean": bool, "seconds": s}, ...],
       "summary": {"finished_at": <s>, "seconds": s, "rooms": {verdict: n},
                   "differences": {kind: n}, "legacy_rows": n, "marked_clean": n}}

  `schema` and `version` come first, every other header key before `rooms` (the stream reader
  relies on it; `DocumentWriter` writes it so). Differences are in the order they were
  confirmed (`unreadable_legacy` as the scan met them, then by re-check round), one per line.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Final

from migrator.errors import WrongReportVersion
from migrator.ports import Frontier
from newcore.domain.model import Message, ReadCursor

SCHEMA: Final = "chat-migration/parity"
VERSION: Final = 1

ABSENT: Final = "<absent>"  # no such row (purged, never written)
DELETED: Final = "<deleted>"  # the monolith's row is soft-deleted
GONE: Final = "<deleted or purged>"  # gone when re-read (the re-read cannot tell which)
MAX_TEXT: Final = 2000  # characters of a text kept in a value
CONTEXT: Final = 200  # characters kept before the first one where two long texts part

COMPARED: Final[Mapping[str, str]] = {
    "message_id": "the merge's key: a message present on one side only is missing or extra",
    "account_id": "the link to the account whose name and avatar a client is shown",
    "body": "exactly, as the monolith renders it (body ?? body_v1 ?? body_raw, U+FFFD)",
    "send_time": "as the monolith renders it (send_time ?? created_at as JST, 0 if unknown)",
    "update_time": "lower in the read model: the whole message is stale (an older state)",
    "cursor.last_read_message_id": "each monolith cursor of the room, by account",
    "cursor.last_fetched_message_id": "each monolith cursor of the room, by account",
}
IGNORED: Final[Mapping[str, str]] = {
    "account.name": (
        "not in the read model: rendered at read time from the monolith's account table, "
        "which does not migrate (a rename is not a migration fault)"
    ),
    "account.avatar_image_url": "as account.name",
    "body_v1, body_raw, created_at, deleted": (
        "raw columns: compared through the monolith's rendering, as a client sees them"
    ),
    "unreadable_legacy": (
        "reported, not counted against clean: the row migrates as the monolith shows it"
    ),
    "cursors only in the read model": "not looked for: the monolith never deletes a cursor",
}


class Kind(StrEnum):
    MISSING_IN_NEW = "missing_in_new"
    EXTRA_IN_NEW = "extra_in_new"
    STALE = "stale"
    FIELD_DIFFERS = "field_differs"
    UNREADABLE_LEGACY = "unreadable_legacy"
    CURSOR_MISSING = "cursor_missing"
    CURSOR_DIFFERS = "cursor_differs"


BLOCKING: Final = frozenset(Kind) - {Kind.UNREADABLE_LEGACY}
CURSOR_KINDS: Final = frozenset({Kind.CURSOR_MISSING, Kind.CURSOR_DIFFERS})

MESSAGE_FIELDS: Final = ("account_id", "body", "send_time", "update_time")
CURSOR_FIELDS: Final = ("last_read_message_id", "last_fetched_message_id")


@dataclass(frozen=True, slots=True)
class Difference:
    """One thing that differs, down to the field, with both values (JSON values, see the
    module's rules). Exactly one of `message_id` (message kinds) and `account_id` (cursor
    kinds) is set."""

    room_id: int
    kind: Kind
    message_id: int | None
    account_id: int | None
    field: str
    legacy: object
    new: object

    @property
    def blocking(self) -> bool:
        """Whether it keeps the room from clean."""
        return self.kind in BLOCKING

    @property
    def key(self) -> tuple[str, int]:
        """("message", id) or ("cursor", account id): what a re-read or a repair names."""
        if self.message_id is not None:
            return ("message", self.message_id)
        assert self.account_id is not None
        return ("cursor", self.account_id)


# -- values as a difference shows them --------------------------------------------------------


def _cut(text: str, begin: int) -> str:
    if begin == 0 and len(text) <= MAX_TEXT:
        return text
    part = text[begin : begin + MAX_TEXT]
    before = f"… ({begin} chars as on the other side) " if begin else ""
    after = f" … ({len(text)} chars)" if begin + MAX_TEXT < len(text) else ""
    if not after and begin:
        after = f" ({len(text)} chars)"
    return before + part + after


def shown_texts(legacy: str, new: str) -> tuple[str, str]:
    """Two texts as a difference shows them: whole when short, else both cut at the same
    place, CONTEXT characters before the first one where they part."""
    if len(legacy) <= MAX_TEXT and len(new) <= MAX_TEXT:
        return legacy, new
    parted = next(
        (i for i, (a, b) in enumerate(zip(legacy, new, strict=False)) if a != b),
        min(len(legacy), len(new)),
    )
    begin = max(0, parted - CONTEXT)
    return _cut(legacy, begin), _cut(new, begin)


def message_value(message: Message) -> dict[str, object]:
    """A whole message as a value (for missing and extra)."""
    return {
        "account_id": message.account_id,
        "body": _cut(message.body, 0),
        "send_time": message.send_time,
        "update_time": message.update_time,
    }


def cursor_value(cursor: ReadCursor) -> dict[str, object]:
    return {
        "last_read_message_id": str(cursor.last_read_message_id),
        "last_fetched_message_id": str(cursor.last_fetched_message_id),
    }


# -- comparing one message and one cursor -------------------------------------------------------


def compare_messages(
    room_id: int, message_id: int, legacy: Message | None, new: Message | None, gone_as: str
) -> list[Difference]:
    """The differences between the monolith's state of one message (None: not live; shown as
    `gone_as`) and the read model's (None: absent); [] when the same."""
    if legacy is None and new is None:
        return []
    if legacy is None:
        assert new is not None
        return [
            Difference(
                room_id, Kind.EXTRA_IN_NEW, message_id, None, "message", gone_as,
                message_value(new),
            )
        ]  # fmt: skip
    if new is None:
        return [
            Difference(
                room_id, Kind.MISSING_IN_NEW, message_id, None, "message",
                message_value(legacy), ABSENT,
            )
        ]  # fmt: skip
    kind = Kind.STALE if new.update_time < legacy.update_time else Kind.FIELD_DIFFERS
    found: list[Difference] = []
    for name in MESSAGE_FIELDS:
        before, after = getattr(legacy, name), getattr(new, name)
        if before != after:
            if isinstance(before, str) and isinstance(after, str):
                before, after = shown_texts(before, after)
            found.append(Difference(room_id, kind, message_id, None, name, before, after))
    return found


def compare_cursors(
    room_id: int, account_id: int, legacy: ReadCursor | None, new: ReadCursor | None
) -> list[Difference]:
    """The differences between the monolith's cursor (None: none, nothing to compare) and
    the read model's (None: missing); [] when the same."""
    if legacy is None:
        return []
    if new is None:
        return [
            Difference(
                room_id, Kind.CURSOR_MISSING, None, account_id, "cursor",
                cursor_value(legacy), ABSENT,
            )
        ]  # fmt: skip
    return [
        Difference(
            room_id, Kind.CURSOR_DIFFERS, None, account_id, name,
            str(getattr(legacy, name)), str(getattr(new, name)),
        )
        for name in CURSOR_FIELDS
        if getattr(legacy, name) != getattr(new, name)
    ]  # fmt: skip


def unreadable(room_id: int, row: LegacyRow) -> list[Difference]:
    """The row's problems as `unreadable_legacy` differences: why (legacy) and the value that
    migrates (new: the monolith's rendering)."""
    found = []
    for reason in row.problems:
        name = "body" if reason.startswith("body") or "no body" in reason else "row"
        if reason.startswith("send_time"):
            name = "send_time"
        migrated: object = ABSENT
        if row.message is not None and name != "row":
            value = getattr(row.message, name)
            migrated = _cut(value, 0) if isinstance(value, str) else value
        found.append(
            Difference(
                room_id, Kind.UNREADABLE_LEGACY, row.message_id, None, name, reason, migrated
            )
        )
    return found


# -- the streaming merge ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LegacyRow:
    """One row of the monolith's `messages` of a room: live (`message`) or soft-deleted
    (None), and the reasons it could not be read faithfully."""

    message_id: int
    message: Message | None
    problems: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MessageCandidate:
    """A message that differed in a scan: the monolith's state then (`legacy`, None when not
    live, shown as `gone_as`), and what differed. `between`: read-model messages the scan met
    since the previous candidate of the room (None: unknown), so that a re-check can choose
    between one range read and a read per message."""

    room_id: int
    message_id: int
    legacy: Message | None
    gone_as: str
    differences: tuple[Difference, ...]
    between: int | None = None


@dataclass(frozen=True, slots=True)
class CursorCandidate:
    room_id: int
    account_id: int
    legacy: ReadCursor
    differences: tuple[Difference, ...]


def merge(
    room_id: int, legacy_rows: Iterable[LegacyRow], new_messages: Iterable[Message]
) -> Iterator[MessageCandidate | Difference]:
    """Walks a room's monolith rows and its live read-model messages, both in ascending id
    order, one row of each at a time: yields a `MessageCandidate` for each id whose states
    differ, and an `unreadable_legacy` `Difference` for each problem of a row (before the
    row's candidate, if any). ValueError when a side is not in strictly ascending id order
    or holds another room's message (a broken adapter: nothing can be concluded)."""
    legacy_iter = iter(legacy_rows)
    new_iter = iter(new_messages)
    last_legacy = last_new = -1
    between = 0

    def next_legacy() -> LegacyRow | None:
        nonlocal last_legacy
        row = next(legacy_iter, None)
        if row is not None:
            if row.message_id <= last_legacy:
                raise ValueError(
                    f"room {room_id}: the monolith's rows are not in id order "
                    f"({row.message_id} after {last_legacy})"
                )
            if row.message is not None and (
                row.message.room_id != room_id or row.message.message_id != row.message_id
            ):
                raise ValueError(f"room {room_id}: the monolith's reader gave {row.message}")
            last_legacy = row.message_id
        return row

    def next_new() -> Message | None:
        nonlocal last_new
        message = next(new_iter, None)
        if message is not None:
            if message.message_id <= last_new:
                raise ValueError(
                    f"room {room_id}: the read model's messages are not in id order "
                    f"({message.message_id} after {last_new})"
                )
            if message.room_id != room_id:
                raise ValueError(f"room {room_id}: the read model gave {message}")
            last_new = message.message_id
        return message

    def candidate(
        message_id: int, legacy: Message | None, gone_as: str, new: Message | None
    ) -> MessageCandidate | None:
        nonlocal between
        found = compare_messages(room_id, message_id, legacy, new, gone_as)
        if not found:
            return None
        made = MessageCandidate(room_id, message_id, legacy, gone_as, tuple(found), between)
        between = 0
        return made

    row, new = next_legacy(), next_new()
    while row is not None or new is not None:
        made: MessageCandidate | None
        if row is not None and new is not None and row.message_id == new.message_id:
            if row.problems:
                yield from unreadable(room_id, row)
            # The same state (the common case, millions of times): no field by field.
            made = None if row.message == new else candidate(row.message_id, row.message,
                                                              DELETED, new)  # fmt: skip
            if made is None:
                between += 1
            row, new = next_legacy(), next_new()
        elif new is None or (row is not None and row.message_id < new.message_id):
            assert row is not None
            if row.problems:
                yield from unreadable(room_id, row)
            made = candidate(row.message_id, row.message, DELETED, None)
            row = next_legacy()
        else:
            made = candidate(new.message_id, None, ABSENT, new)
            new = next_new()
        if made is not None:
            yield made


def compare_cursor(
    room_id: int, legacy: ReadCursor, new: ReadCursor | None
) -> CursorCandidate | None:
    """The candidate for one monolith cursor, or None when the read model agrees."""
    found = compare_cursors(room_id, legacy.account_id, legacy, new)
    return CursorCandidate(room_id, legacy.account_id, legacy, tuple(found)) if found else None


# -- re-checking a candidate at a later frontier --------------------------------------------------


@dataclass(frozen=True, slots=True)
class Settled:
    """The same on both sides now: the scan saw lag, not a difference."""


@dataclass(frozen=True, slots=True)
class Confirmed:
    """Still different, the monolith's state unchanged since it was read before the frontier
    the read model has reached: a difference."""

    differences: tuple[Difference, ...]


@dataclass(frozen=True, slots=True)
class Changed:
    """The monolith's state changed since it was read: written during the check. Re-checked
    again, from the state just read (`next`), at a later frontier."""

    next: MessageCandidate | CursorCandidate


Outcome = Settled | Confirmed | Changed


def state_digest(state: Message | ReadCursor | None) -> bytes:
    """A short digest of a row's state (None: not live), to remember which states the
    monolith showed while a frontier was awaited without holding their bodies."""
    if state is None:
        return b"-"
    if isinstance(state, Message):
        fields: tuple[object, ...] = (
            "m",
            state.account_id,
            state.body,
            state.send_time,
            state.update_time,
        )
    else:
        fields = ("c", state.last_read_message_id, state.last_fetched_message_id)
    return hashlib.blake2b(repr(fields).encode("utf-8", "surrogatepass"), digest_size=16).digest()


def recheck_message(
    candidate: MessageCandidate,
    legacy_now: Message | None,
    new_now: Message | None,
    seen_since: Collection[bytes] = (),
) -> Outcome:
    """The candidate read again once the read model reached a frontier marked after
    `candidate.legacy` was read: the read model's state (`new_now`) first, then the
    monolith's (`legacy_now`). `seen_since`: digests (`state_digest`) of the states the
    monolith showed between that frontier's mark and now, when they were sampled.

    - the same on both sides now, or the read model holding a state the monolith showed after
      the frontier: **settled** (a row changing faster than the pipeline's lag is caught up
      with, even if never at the moment of a read);
    - else, the monolith's state unchanged from before the frontier to now (and in every
      sample): **confirmed** (the state held all along, so the read model, past the frontier,
      had to show it);
    - else **changed**: re-checked again from `legacy_now`, never reported."""
    found = compare_messages(
        candidate.room_id, candidate.message_id, legacy_now, new_now, candidate.gone_as
    )
    if not found or state_digest(new_now) in seen_since:
        return Settled()
    before = state_digest(candidate.legacy)
    if legacy_now == candidate.legacy and all(seen == before for seen in seen_since):
        return Confirmed(tuple(found))  # None == None: gone all along
    found = compare_messages(candidate.room_id, candidate.message_id, legacy_now, new_now, GONE)
    return Changed(replace(candidate, legacy=legacy_now, gone_as=GONE, differences=tuple(found),
                           between=None))  # fmt: skip


def recheck_cursor(
    candidate: CursorCandidate,
    legacy_now: ReadCursor | None,
    new_now: ReadCursor | None,
    seen_since: Collection[bytes] = (),
) -> Outcome:
    """As `recheck_message`. A cursor gone from the monolith has nothing to compare: settled."""
    found = compare_cursors(candidate.room_id, candidate.account_id, legacy_now, new_now)
    if not found or state_digest(new_now) in seen_since:
        return Settled()
    before = state_digest(candidate.legacy)
    if legacy_now == candidate.legacy and all(seen == before for seen in seen_since):
        return Confirmed(tuple(found))
    assert legacy_now is not None
    return Changed(replace(candidate, legacy=legacy_now, differences=tuple(found)))


# -- a room's outcome ---------------------------------------------------------------------------


class Verdict(StrEnum):
    CLEAN = "clean"  # every message and cursor the same at a frontier the read model reached
    DIFFERENT = "different"  # at least one blocking difference confirmed
    LATE = (
        "late"  # not decided: the pipeline did not reach a frontier in time, or rows kept changing
    )


def zero_counts() -> dict[Kind, int]:
    return dict.fromkeys(Kind, 0)


@dataclass(slots=True)
class RoomResult:
    """One room's outcome. `compared_at`: the frontier the scan ran after; `settled_at`: the
    last frontier its candidates were re-checked at (None when none was needed)."""

    room_id: int
    verdict: Verdict
    reason: str | None = None
    compared_at: Frontier | None = None
    settled_at: Frontier | None = None
    legacy_rows: int = 0  # monolith rows read (soft-deleted ones included)
    new_messages: int = 0  # live read-model messages read
    cursors: int = 0  # monolith cursors compared
    counts: dict[Kind, int] = field(default_factory=zero_counts)
    rechecked: int = 0  # candidates re-read (every round)
    unsettled: int = 0  # candidates still changing after the last round
    marked_clean: bool = False
    seconds: float = 0.0

    @property
    def differences(self) -> int:
        return sum(self.counts.values())

    @property
    def blocking(self) -> int:
        return sum(n for kind, n in self.counts.items() if kind in BLOCKING)

    def positions(self) -> str:
        """The text a clean mark records (`PhaseStore.mark_parity_clean`): what was compared
        against which frontier."""

        def text(frontier: Frontier) -> str:
            return f"binlog {frontier.binlog} at {_iso(frontier.at_unix)}"

        said = [f"compared at {text(self.compared_at)}"] if self.compared_at else []
        if self.settled_at is not None:
            said.append(f"re-checked at {text(self.settled_at)}")
        said.append(f"{self.legacy_rows} rows, {self.cursors} cursors")
        return "; ".join(said)


def verdict_of(
    blocking: int, unsettled: int, late_reason: str | None
) -> tuple[Verdict, str | None]:
    """A room with a confirmed blocking difference is different (whatever else); one with
    rows still changing or a frontier not reached is late; else clean. The reason says what
    kept it from a decision."""
    notes = [late_reason] if late_reason else []
    if unsettled:
        notes.append(
            f"{unsettled} row(s) kept changing through every re-check: a busy room, run again"
        )
    reason = "; ".join(notes) or None
    if blocking:
        return Verdict.DIFFERENT, reason
    if reason:
        return Verdict.LATE, reason
    return Verdict.CLEAN, None


def _iso(unix: float) -> str:
    moment = datetime.datetime.fromtimestamp(unix, tz=datetime.UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


# -- the result document ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Header:
    run: str
    started_at: float
    selection: str
    who: str
    frontier: Frontier | None
    settings: Mapping[str, object] = field(default_factory=dict)
    rules: Mapping[str, Mapping[str, str]] = field(
        default_factory=lambda: {"compared": dict(COMPARED), "ignored": dict(IGNORED)}
    )


@dataclass(frozen=True, slots=True)
class Summary:
    finished_at: float
    seconds: float
    rooms: Mapping[Verdict, int]
    differences: Mapping[Kind, int]
    legacy_rows: int
    marked_clean: int


class Tally:
    """A Summary built room by room, holding counts only (never the rooms)."""

    def __init__(self) -> None:
        self.rooms = dict.fromkeys(Verdict, 0)
        self.kinds = zero_counts()
        self.legacy_rows = 0
        self.marked = 0

    def add(self, result: RoomResult) -> None:
        self.rooms[result.verdict] += 1
        for kind, n in result.counts.items():
            self.kinds[kind] += n
        self.legacy_rows += result.legacy_rows
        self.marked += result.marked_clean

    def summary(self, finished_at: float, seconds: float) -> Summary:
        return Summary(
            finished_at, seconds, dict(self.rooms), dict(self.kinds), self.legacy_rows,
            self.marked,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class RoomReport:
    result: RoomResult
    differences: list[Difference]


@dataclass(frozen=True, slots=True)
class ParityResult:
    """A whole parity result in memory: for tests and small runs (`read_document` streams)."""

    header: Header
    rooms: list[RoomReport]
    summary: Summary


Item = Header | Difference | RoomResult | Summary


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(", ", ": "))


def _frontier_json(frontier: Frontier | None) -> object:
    return None if frontier is None else {"binlog": frontier.binlog, "at_unix": frontier.at_unix}


def difference_json(d: Difference) -> dict[str, object]:
    return {
        "room_id": d.room_id,
        "kind": d.kind.value,
        "message_id": None if d.message_id is None else str(d.message_id),
        "account_id": d.account_id,
        "field": d.field,
        "legacy": d.legacy,
        "new": d.new,
    }


def difference_from_json(data: object) -> Difference:
    """A difference as `difference_json` wrote it (WrongReportVersion if it is not one)."""
    return _difference(data)


def _room_tail_json(result: RoomResult) -> dict[str, object]:
    return {
        "verdict": result.verdict.value,
        "reason": result.reason,
        "compared_at": _frontier_json(result.compared_at),
        "settled_at": _frontier_json(result.settled_at),
        "legacy_rows": result.legacy_rows,
        "new_messages": result.new_messages,
        "cursors": result.cursors,
        "counts": {kind.value: result.counts.get(kind, 0) for kind in Kind},
        "rechecked": result.rechecked,
        "unsettled": result.unsettled,
        "marked_clean": result.marked_clean,
        "seconds": round(result.seconds, 3),
    }


class DocumentWriter:
    """Writes the result document as a stream through `write` (text pieces): the header now,
    then each room (`start_room`, its `difference`s, `end_room`), then `close(summary)`. One
    difference per line; nothing held. Misuse (a difference outside its room, a room left
    open) raises RuntimeError: a bug, never an operator's."""

    def __init__(self, write: Callable[[str], object], header: Header) -> None:
        self._write = write
        self._rooms = 0
        self._room: int | None = None
        self._in_room = 0
        self._closed = False
        head = {
            "schema": SCHEMA,
            "version": VERSION,
            "run": header.run,
            "started_at": header.started_at,
            "selection": header.selection,
            "who": header.who,
            "frontier": _frontier_json(header.frontier),
            "settings": dict(header.settings),
            "rules": {k: dict(v) for k, v in header.rules.items()},
        }
        write(_dumps(head)[:-1] + ',\n"rooms": [')

    def start_room(self, room_id: int) -> None:
        if self._room is not None or self._closed:
            raise RuntimeError(f"room {room_id} started while room {self._room} is open")
        self._room = room_id
        self._in_room = 0
        self._write(
            ("," if self._rooms else "") + f'\n{{"room_id": {int(room_id)}, "differences": ['
        )

    def difference(self, d: Difference) -> None:
        if self._room != d.room_id:
            raise RuntimeError(f"a difference of room {d.room_id} while room {self._room} is open")
        self._write(("," if self._in_room else "") + "\n  " + _dumps(difference_json(d)))
        self._in_room += 1

    def end_room(self, result: RoomResult) -> None:
        if self._room != result.room_id:
            raise RuntimeError(f"room {result.room_id} ended while room {self._room} is open")
        self._write("], " + _dumps(_room_tail_json(result))[1:])
        self._room = None
        self._rooms += 1

    def close(self, summary: Summary) -> None:
        if self._room is not None:
            raise RuntimeError(f"closed while room {self._room} is open")
        tail = {
            "finished_at": summary.finished_at,
            "seconds": round(summary.seconds, 3),
            "rooms": {v.value: summary.rooms.get(v, 0) for v in Verdict},
            "differences": {k.value: summary.differences.get(k, 0) for k in Kind},
            "legacy_rows": summary.legacy_rows,
            "marked_clean": summary.marked_clean,
        }
        self._write('\n],\n"summary": ' + _dumps(tail) + "}\n")
        self._closed = True


def encode(result: ParityResult) -> str:
    pieces: list[str] = []
    writer = DocumentWriter(pieces.append, result.header)
    for room in result.rooms:
        writer.start_room(room.result.room_id)
        for d in room.differences:
            writer.difference(d)
        writer.end_room(room.result)
    writer.close(result.summary)
    return "".join(pieces)


def decode(text: str | bytes) -> ParityResult:
    """A whole document (WrongReportVersion if it is not a parity result of this version)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _not_a_result(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    offset = 0
    source = text

    def read(size: int) -> str:
        nonlocal offset
        piece = source[offset : offset + size]
        offset += len(piece)
        return piece

    header: Header | None = None
    rooms: list[RoomReport] = []
    pending: list[Difference] = []
    summary: Summary | None = None
    for item in read_document(read):
        if isinstance(item, Header):
            header = item
        elif isinstance(item, Difference):
            pending.append(item)
        elif isinstance(item, RoomResult):
            rooms.append(RoomReport(item, pending))
            pending = []
        else:
            summary = item
    assert header is not None and summary is not None  # read_document guarantees both
    return ParityResult(header, rooms, summary)


# -- reading the document as a stream -------------------------------------------------------------

_WHAT_TO_DO = (
    "give a result written by `chat-migrate parity` of this version (run it again to get one)"
)


def _not_a_result(found: str) -> WrongReportVersion:
    return WrongReportVersion(
        f"not a parity result ({SCHEMA} version {VERSION}): {found}; {_WHAT_TO_DO}"
    )


_LOOKAHEAD = 32  # characters after a value before it is taken (longer than a number's tail)


class _Text:
    """A text read piece by piece, parsed a JSON value at a time (json's raw_decode), so
    that a document of any size is read in bounded memory."""

    CHUNK = 1 << 16

    def __init__(self, read: Callable[[int], str]) -> None:
        self._read = read
        self._buffer = ""
        self._at = 0
        self._ended = False
        self._decoder = json.JSONDecoder()

    def _more(self) -> bool:
        if self._ended:
            return False
        piece = self._read(self.CHUNK)
        if not piece:
            self._ended = True
            return False
        if self._at > self.CHUNK:
            self._buffer, self._at = self._buffer[self._at :], 0
        self._buffer += piece
        return True

    def peek(self) -> str:
        """The next character that is not white space ('' at the end)."""
        while True:
            while self._at < len(self._buffer) and self._buffer[self._at] in " \t\r\n":
                self._at += 1
            if self._at < len(self._buffer):
                return self._buffer[self._at]
            if not self._more():
                return ""

    def expect(self, char: str, where: str) -> None:
        found = self.peek()
        if found != char:
            shown = repr(found) if found else "the end of the text"
            raise _not_a_result(f"expected {char!r} {where}, found {shown}")
        self._at += 1

    def value(self, where: str) -> Any:
        self.peek()
        while True:
            try:
                value, end = self._decoder.raw_decode(self._buffer, self._at)
            except json.JSONDecodeError as exc:
                if self._more():
                    continue
                raise _not_a_result(f"bad JSON {where}: {exc.msg}") from None
            except RecursionError:
                raise _not_a_result(f"JSON nested too deep {where}") from None
            # A number that ends near the buffer's end may go on in the next piece ("12" of
            # "12.5e3"): a value is taken only with some text after it, or at the text's end.
            if end + _LOOKAHEAD > len(self._buffer) and self._more():
                continue
            self._at = end
            return value

    def key(self, where: str) -> str:
        if self.peek() != '"':
            raise _not_a_result(f"expected a key {where}")
        key = self.value(where)
        self.expect(":", f"after the key {key!r}")
        return str(key)

    def comma_or(self, close: str, where: str) -> bool:
        """True after a comma, False at `close` (consumed)."""
        found = self.peek()
        if found == ",":
            self._at += 1
            return True
        if found == close:
            self._at += 1
            return False
        raise _not_a_result(f"expected ',' or {close!r} {where}, found {found!r}")

    def end(self) -> None:
        if self.peek() != "":
            raise _not_a_result("text after the document's end")


def read_document(read: Callable[[int], str]) -> Iterator[Item]:
    """The document read through `read(size)` (a text file's read), as a stream: a `Header`,
    then for each room its `Difference`s then its `RoomResult`, then a `Summary`. Refuses
    (WrongReportVersion, naming what it found) another schema or version before reading on,
    and anything that is not a whole parity result (bad JSON, a missing or wrong field, no
    summary: a run that did not finish)."""
    text = _Text(read)
    text.expect("{", "at the start (a parity result is a JSON object)")
    found: dict[str, Any] = {}
    for name in ("schema", "version"):
        if text.peek() == "}":
            break
        key = text.key("at the start")
        if key != name:
            raise _not_a_result(
                f"its first keys are not schema and version (found {key!r} at the start)"
            )
        found[key] = text.value(f"of {key!r}")
        text.comma_or("}", f"after {key!r}")
    schema, version = found.get("schema"), found.get("version")
    if schema != SCHEMA or version != VERSION:
        raise WrongReportVersion(
            f"a document with schema {schema!r} version {version!r}, not a {SCHEMA} result of "
            f"version {VERSION}: it was written by another version of chat-migrate (or is not "
            f"a parity result); run `chat-migrate parity` again with this version and use its "
            "result"
        )
    header_fields: dict[str, Any] = {}
    summary: Summary | None = None
    saw_rooms = False
    more = True
    while more:
        key = text.key("in the document")
        if key == "rooms":
            if saw_rooms:
                raise _not_a_result("two rooms arrays")
            saw_rooms = True
            yield _header(header_fields)
            yield from _rooms(text)
        elif key == "summary":
            summary = _summary(text.value("of the summary"))
        elif saw_rooms:
            text.value(f"of {key!r}")  # a later version's extra key after the rooms: ignored
        else:
            header_fields[key] = text.value(f"of {key!r}")
        more = text.comma_or("}", "in the document")
    text.end()
    if not saw_rooms:
        raise _not_a_result("no rooms array")
    if summary is None:
        raise _not_a_result("no summary: the run that wrote it did not finish")
    yield summary


def _rooms(text: _Text) -> Iterator[Difference | RoomResult]:
    text.expect("[", "opening the rooms")
    if text.peek() == "]":
        text.expect("]", "closing the rooms")
        return
    while True:
        yield from _room(text)
        if not text.comma_or("]", "between rooms"):
            return


def _room(text: _Text) -> Iterator[Difference | RoomResult]:
    text.expect("{", "opening a room")
    fields: dict[str, Any] = {}
    room_id: int | None = None
    more = text.peek() != "}"
    if not more:
        text.expect("}", "closing a room")
    while more:
        key = text.key("in a room")
        if key == "differences":
            text.expect("[", "opening a room's differences")
            if text.peek() == "]":
                text.expect("]", "closing a room's differences")
            else:
                while True:
                    d = _difference(text.value("of a difference"))
                    if room_id is not None and d.room_id != room_id:
                        raise _not_a_result(f"a difference of room {d.room_id} in room {room_id}")
                    yield d
                    if not text.comma_or("]", "between differences"):
                        break
        else:
            fields[key] = text.value(f"of a room's {key!r}")
            if key == "room_id":
                room_id = _int(fields[key], "room_id")
        more = text.comma_or("}", "in a room")
    yield _room_result(fields)


def _field(data: Any, name: str, where: str) -> Any:
    if not isinstance(data, dict):
        raise _not_a_result(f"{where} is not an object")
    if name not in data:
        raise _not_a_result(f"{where} has no {name!r}")
    return data[name]


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _not_a_result(f"{what} is not a non-negative integer: {value!r}")
    return value


def _id(value: Any, what: str) -> int:
    if not isinstance(value, str) or not value.isdecimal() or not value.isascii():
        raise _not_a_result(f"{what} is not an id as a digit string: {value!r}")
    return int(value)


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _not_a_result(f"{what} is not a number: {value!r}")
    return float(value)


def _text(value: Any, what: str, nullable: bool = False) -> Any:
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        raise _not_a_result(f"{what} is not text: {value!r}")
    return value


def _frontier(value: Any, what: str) -> Frontier | None:
    if value is None:
        return None
    return Frontier(
        _text(_field(value, "binlog", what), f"{what}.binlog"),
        _number(_field(value, "at_unix", what), f"{what}.at_unix"),
    )


def _header(fields: dict[str, Any]) -> Header:
    where = "the header"
    settings = fields.get("settings", {})
    rules = fields.get("rules", {})
    if not isinstance(settings, dict) or not isinstance(rules, dict):
        raise _not_a_result("settings and rules are objects")
    return Header(
        run=_text(_field(fields, "run", where), "run"),
        started_at=_number(_field(fields, "started_at", where), "started_at"),
        selection=_text(_field(fields, "selection", where), "selection"),
        who=_text(_field(fields, "who", where), "who"),
        frontier=_frontier(_field(fields, "frontier", where), "frontier"),
        settings=settings,
        rules=rules,
    )


def _kind(value: Any) -> Kind:
    try:
        return Kind(value)
    except ValueError:
        raise _not_a_result(f"unknown kind of difference {value!r}") from None


def _difference(data: Any) -> Difference:
    where = "a difference"
    kind = _kind(_field(data, "kind", where))
    message = _field(data, "message_id", where)
    account = _field(data, "account_id", where)
    message_id = None if message is None else _id(message, "message_id")
    account_id = None if account is None else _int(account, "account_id")
    if (message_id is None) == (account_id is None) or (
        (kind in CURSOR_KINDS) != (account_id is not None)
    ):
        raise _not_a_result(f"a {kind.value} difference names {message!r} and {account!r}")
    return Difference(
        room_id=_int(_field(data, "room_id", where), "room_id"),
        kind=kind,
        message_id=message_id,
        account_id=account_id,
        field=_text(_field(data, "field", where), "field"),
        legacy=_field(data, "legacy", where),
        new=_field(data, "new", where),
    )


def _room_result(data: dict[str, Any]) -> RoomResult:
    where = "a room"
    try:
        verdict = Verdict(_field(data, "verdict", where))
    except ValueError:
        raise _not_a_result(f"unknown verdict {data.get('verdict')!r}") from None
    counts_data = _field(data, "counts", where)
    if not isinstance(counts_data, dict):
        raise _not_a_result("a room's counts is not an object")
    counts = zero_counts()
    for name, n in counts_data.items():
        counts[_kind(name)] = _int(n, f"the count of {name}")
    marked = _field(data, "marked_clean", where)
    if not isinstance(marked, bool):
        raise _not_a_result(f"marked_clean is not true or false: {marked!r}")
    return RoomResult(
        room_id=_int(_field(data, "room_id", where), "room_id"),
        verdict=verdict,
        reason=_text(_field(data, "reason", where), "reason", nullable=True),
        compared_at=_frontier(_field(data, "compared_at", where), "compared_at"),
        settled_at=_frontier(_field(data, "settled_at", where), "settled_at"),
        legacy_rows=_int(_field(data, "legacy_rows", where), "legacy_rows"),
        new_messages=_int(_field(data, "new_messages", where), "new_messages"),
        cursors=_int(_field(data, "cursors", where), "cursors"),
        counts=counts,
        rechecked=_int(_field(data, "rechecked", where), "rechecked"),
        unsettled=_int(_field(data, "unsettled", where), "unsettled"),
        marked_clean=marked,
        seconds=_number(_field(data, "seconds", where), "seconds"),
    )


def _summary(data: Any) -> Summary:
    where = "the summary"
    rooms_data = _field(data, "rooms", where)
    kinds_data = _field(data, "differences", where)
    if not isinstance(rooms_data, dict) or not isinstance(kinds_data, dict):
        raise _not_a_result("the summary's rooms and differences are objects")
    rooms: dict[Verdict, int] = dict.fromkeys(Verdict, 0)
    for name, n in rooms_data.items():
        try:
            rooms[Verdict(name)] = _int(n, f"rooms {name}")
        except ValueError:
            raise _not_a_result(f"unknown verdict {name!r} in the summary") from None
    kinds = zero_counts()
    for name, n in kinds_data.items():
        kinds[_kind(name)] = _int(n, f"differences {name}")
    return Summary(
        finished_at=_number(_field(data, "finished_at", where), "finished_at"),
        seconds=_number(_field(data, "seconds", where), "seconds"),
        rooms=rooms,
        differences=kinds,
        legacy_rows=_int(_field(data, "legacy_rows", where), "legacy_rows"),
        marked_clean=_int(_field(data, "marked_clean", where), "marked_clean"),
    )


# -- frontiers: binlog positions in order -----------------------------------------------------------


def binlog_order(position: str) -> tuple[int, int]:
    """A binlog position "file:pos" as (file sequence number, offset), in the server's order:
    the number after the file name's last dot (mariadb-bin.000012 -> 12, so .1000000 comes
    after .999999, which text order gets wrong), then the offset. ValueError names what is
    wrong."""
    file, sep, pos = position.rpartition(":")
    sequence = file.rpartition(".")[2]
    if not sep or not file or not sequence.isdecimal() or not pos.isdecimal():
        raise ValueError(f"not a binlog position (file.NNNNNN:offset): {position!r}")
    return int(sequence), int(pos)
