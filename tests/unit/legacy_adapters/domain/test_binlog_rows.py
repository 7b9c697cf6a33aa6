"""Binlog row images to hints: the keys or the reason there can be none."""

from __future__ import annotations

import pytest

from legacy_adapters.domain.binlog_rows import (
    BinlogPosition,
    hints_from_row,
    logging_refusal,
)
from newcore.domain.hints import CursorHint, MessageHint
from newcore.domain.model import MAX_ID


def test_a_message_row_is_a_message_hint_and_a_cursor_row_a_cursor_hint() -> None:
    row = {"message_id": 10**17 + 5, "room_id": 42, "account_id": 7, "body": None}
    assert hints_from_row("messages", row) == MessageHint(42, 10**17 + 5)
    cursor = {"room_id": 42, "account_id": 7, "last_read_message_id": 3}
    assert hints_from_row("room_cursors", cursor) == CursorHint(42, 7)
    assert hints_from_row("messages", {"room_id": 1, "message_id": MAX_ID}) == MessageHint(
        1, MAX_ID
    )


@pytest.mark.parametrize(
    ("table", "row", "reason"),
    [
        (
            "messages",
            {"message_id": 5},
            "messages row image lacks room_id (is binlog_row_image FULL",
        ),
        ("messages", {"UNKNOWN_COL0": 5, "UNKNOWN_COL1": 4}, "lacks room_id, message_id"),
        ("room_cursors", {"room_id": 3}, "room_cursors row image lacks account_id"),
        ("messages", {"room_id": "42", "message_id": 5}, "non-integer keys room_id='42'"),
        ("messages", {"room_id": True, "message_id": 5}, "non-integer keys room_id=True"),
        ("messages", {"room_id": 0, "message_id": 5}, "keys out of range: room_id=0"),
        ("messages", {"room_id": 1, "message_id": MAX_ID + 1}, "keys out of range"),
    ],
)
def test_a_row_without_usable_keys_gives_the_reason(
    table: str, row: dict[str, object], reason: str
) -> None:
    found = hints_from_row(table, row)
    assert isinstance(found, str) and reason in found


def test_a_position_round_trips_and_a_bad_one_is_refused() -> None:
    position = BinlogPosition("mariadb-bin.000012", 4567)
    assert BinlogPosition.decode(position.encode()) == position
    assert str(position) == "mariadb-bin.000012:4567"
    assert BinlogPosition("mariadb-bin.000002", 9) < BinlogPosition("mariadb-bin.000010", 4)
    for bad in (b'{"v": 2, "file": "f", "pos": 4}', b'{"v": 1, "file": "f", "pos": 3}',
                b'{"v": 1, "file": 7, "pos": 4}', b'{"v": 1, "file": "f", "pos": "4"}',
                b"", b"\xff", b"[1]", b'"f"', b"[" * 5000):  # fmt: skip
        with pytest.raises(ValueError, match="binlog"):
            BinlogPosition.decode(bad)


@pytest.mark.parametrize(
    ("row", "refusal"),
    [
        ((1, "ROW", "FULL", "FULL", 0), None),
        ((1, "row", "full", "full", 0), None),
        ((0, "ROW", "FULL", "FULL", 0), "binary logging is off"),
        ((1, "MIXED", "FULL", "FULL", 0), "must log binlog_format=ROW (found binlog_format=MIXED)"),
        ((1, "ROW", "MINIMAL", "NO_LOG", 0), "binlog_row_image=FULL, binlog_row_metadata=FULL"),
        ((1, "ROW", "FULL", "FULL", 1), "log_bin_compress=ON"),
    ],
)
def test_a_binlog_that_cannot_give_every_hint_is_refused(
    row: tuple[object, ...], refusal: str | None
) -> None:
    found = logging_refusal(row)
    if refusal is None:
        assert found is None
    else:
        assert found is not None and refusal in found
