"""The anti-corruption layer: legacy rows become domain state, as the monolith renders them.

The read model must answer exactly what the monolith answers (parity), so each quirk is read
the monolith's way (deploy/monolith/README.md):

- body: `body ?? body_v1 ?? body_raw`, invalid bytes rendered as PHP renders them (U+FFFD);
- send_time: `send_time ?? created_at` read as JST; a zero or missing date renders as 0;
- update_time: NULL renders as 0; a soft-deleted row is a deletion.

Migrating what is there is not enough: whatever could not be read faithfully (bytes that were
not UTF-8, a send time the monolith itself does not know) comes back as a RowProblem with the
reason, for the dead-letter place. The state is still migrated as the monolith shows it, so
parity holds and nothing is fixed silently.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass

from legacy_adapters.domain.php_text import php_json_text
from newcore.domain.model import Message
from newcore.domain.row_problems import RowProblem

JST = datetime.timezone(datetime.timedelta(hours=9))
ZERO_DATE = "0000-00-00 00:00:00"
_DATETIME = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2}) (\d{1,2}):(\d{1,2}):(\d{1,2})", re.ASCII)


@dataclass(frozen=True, slots=True)
class LegacyMessageRow:
    """One row of `messages`, as stored (see legacy_adapters.adapters.mariadb.schema.LegacyMessage)."""

    message_id: int
    room_id: int
    account_id: int
    body: str | None
    body_v1: str | None
    body_raw: bytes | None
    send_time: int | None
    update_time: int | None
    created_at: str | None
    deleted: int


def created_unix(created_at: str | None) -> tuple[int, str | None]:
    """The monolith's reading of created_at (JST wall time) as unix seconds, and the problem
    if there is one. The monolith renders zero, missing and unreadable dates as 0."""
    if created_at is None:
        return 0, "created_at is NULL"
    if created_at == ZERO_DATE:
        return 0, "created_at is 0000-00-00 00:00:00"
    # What strptime("%Y-%m-%d %H:%M:%S") accepts, parsed ten times faster (a backfill reads
    # millions of these).
    match = _DATETIME.fullmatch(created_at)
    try:
        if match is None:
            raise ValueError(created_at)
        year, month, day, hour, minute, second = map(int, match.groups())
        moment = datetime.datetime(year, month, day, hour, minute, second, tzinfo=JST)
    except ValueError:
        return 0, f"created_at {created_at!r} is not a date"
    seconds = int(moment.timestamp())
    return (seconds, None) if seconds >= 0 else (0, f"created_at {created_at!r} is before 1970")


def translate_message(row: LegacyMessageRow) -> tuple[Message | None, list[RowProblem]]:
    """The message as the monolith shows it (None: soft-deleted), and what was not faithful."""
    problems: list[RowProblem] = []

    def problem(reason: str) -> None:
        problems.append(RowProblem("messages", row.room_id, row.message_id, reason))

    if row.deleted:
        return None, problems
    if row.body is not None:
        body = row.body
    elif row.body_v1 is not None:
        body = row.body_v1
    elif row.body_raw is not None:
        body, faithful = php_json_text(row.body_raw)
        if not faithful:
            problem(
                f"body_raw is not UTF-8 ({len(row.body_raw)} bytes): invalid sequences shown as U+FFFD"
            )
    else:
        body = ""
        problem("no body in body, body_v1 or body_raw: shown as empty")
    if row.send_time is not None:
        send_time = row.send_time
    else:
        send_time, reason = created_unix(row.created_at)
        if reason is not None:
            problem(f"send_time is NULL and {reason}: send time shown as 0")
    message = Message(
        room_id=row.room_id,
        message_id=row.message_id,
        account_id=row.account_id,
        body=body,
        send_time=send_time,
        update_time=row.update_time or 0,
    )
    return message, problems
