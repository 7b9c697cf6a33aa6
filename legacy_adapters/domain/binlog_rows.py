"""The monolith's binlog in the migration's words: positions, the hints a row image gives, and
which server settings can be trusted to give a hint for every change. Pure: the reader that
talks to MariaDB is `legacy_adapters/adapters/mariadb/binlog_reader.py`."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from newcore.domain.hints import CursorHint, Hint, MessageHint
from newcore.domain.model import MAX_ID

MESSAGES, CURSORS = "messages", "room_cursors"
KEYS = {MESSAGES: ("room_id", "message_id"), CURSORS: ("room_id", "account_id")}
WATCHED = re.compile(rf"\b`?({MESSAGES}|{CURSORS})`?\b", re.IGNORECASE)
DDL = ("ALTER", "CREATE", "DROP", "TRUNCATE", "RENAME")
REQUIRED = {"binlog_format": "ROW", "binlog_row_image": "FULL", "binlog_row_metadata": "FULL"}


@dataclass(frozen=True, slots=True, order=True)
class BinlogPosition:
    file: str
    pos: int

    def encode(self) -> bytes:
        return json.dumps({"v": 1, "file": self.file, "pos": self.pos}).encode()

    @classmethod
    def decode(cls, raw: bytes) -> BinlogPosition:
        """The position in `raw`, or ValueError saying why it is not one (never another
        error: a checkpoint is read from a topic, which anyone with access can write to)."""
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
            raise ValueError(f"not a binlog position (not JSON: {exc}): {raw[:200]!r}") from None
        if not isinstance(data, dict):
            raise ValueError(f"not a binlog position (not a JSON object): {raw[:200]!r}")
        if data.get("v") != 1 or not isinstance(data.get("file"), str):
            raise ValueError(f"not a binlog position of version 1: {raw[:200]!r}")
        if not isinstance(data.get("pos"), int) or data["pos"] < 4:
            raise ValueError(f"bad binlog offset in {raw[:200]!r}")
        return cls(data["file"], data["pos"])

    def __str__(self) -> str:
        return f"{self.file}:{self.pos}"


@dataclass(frozen=True, slots=True)
class BinlogProblem:
    table: str
    position: str
    reason: str


def hints_from_row(table: str, row: Mapping[str, Any]) -> Hint | str:
    """The hint for one row image of a watched table, or why there cannot be one."""
    first, second = KEYS[table]
    values = [row.get(first), row.get(second)]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        missing = [name for name, v in zip((first, second), values, strict=True) if v is None]
        return (
            f"{table} row image lacks {', '.join(missing)} (is binlog_row_image FULL for every writer?)"
            if missing
            else f"{table} row has non-integer keys {first}={values[0]!r}, {second}={values[1]!r}"
        )
    a, b = int(values[0]), int(values[1])  # type: ignore[arg-type]
    if not (0 < a <= MAX_ID and 0 < b <= MAX_ID):
        return f"{table} row keys out of range: {first}={a}, {second}={b}"
    return MessageHint(a, b) if table == MESSAGES else CursorHint(a, b)


@dataclass
class BinlogBatch:
    """Hints of whole committed transactions, deduplicated in order, and the position after the
    last of them (None: no transaction completed)."""

    hints: list[Hint] = field(default_factory=list)
    problems: list[BinlogProblem] = field(default_factory=list)
    position: BinlogPosition | None = None
    rows: int = 0
    last_event_at: int = 0  # the server's timestamp of the last event read (unix seconds)


def logging_refusal(row: tuple[Any, ...]) -> str | None:
    """Why a server with these settings (log_bin, binlog_format, binlog_row_image,
    binlog_row_metadata, log_bin_compress) cannot be trusted for hints, or None.

    Compression is refused because mysql-replication reads compressed row and query events
    as events it does not know, which are skipped while the position moves on: every
    compressed change (rows over log_bin_compress_min_len bytes, TRUNCATE included) would
    be lost without a dead letter."""
    if not row[0]:
        return "binary logging is off on the monolith's MariaDB (log_bin)"
    found = dict(zip(REQUIRED, (str(v).upper() for v in row[1:4]), strict=True))
    wrong = {k: v for k, v in found.items() if v != REQUIRED[k]}
    if wrong:
        return (
            "the monolith's MariaDB must log "
            + ", ".join(f"{k}={REQUIRED[k]}" for k in wrong)
            + " (found "
            + ", ".join(f"{k}={v}" for k, v in wrong.items())
            + ")"
        )
    if row[4]:
        return (
            "the monolith's MariaDB compresses its binlog (log_bin_compress=ON), which the"
            " binlog reader cannot read: compressed changes would be skipped"
        )
    return None
