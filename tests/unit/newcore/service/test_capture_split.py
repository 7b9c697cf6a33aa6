"""Batches are cut so that one capture reads a bounded number of rows."""

from __future__ import annotations

import pytest

from newcore.domain.hints import Hint, MessageHint, RangeHint
from newcore.ports import LogRecord
from newcore.service.capture import split_by_ranges
from newcore.wire.hints import encode_hint


def records(*hints: Hint | bytes) -> list[LogRecord]:
    return [
        LogRecord(0, n, 1, h if isinstance(h, bytes) else encode_hint(h))
        for n, h in enumerate(hints)
    ]


def test_pieces_keep_log_order_and_hold_at_most_max_ranges_range_hints() -> None:
    batch = records(
        MessageHint(1, 1), RangeHint(1, 1, 9), b"junk", RangeHint(1, 10, 19),
        MessageHint(1, 2), RangeHint(1, 20, 29), MessageHint(1, 3),
    )  # fmt: skip
    pieces = split_by_ranges(batch, 2)
    assert [[r.position for r in piece] for piece in pieces] == [[0, 1, 2, 3, 4], [5, 6]]
    assert [r for piece in pieces for r in piece] == batch


def test_a_batch_without_ranges_stays_whole_and_an_empty_one_has_no_pieces() -> None:
    batch = records(*(MessageHint(1, m) for m in range(1, 500)))
    assert split_by_ranges(batch, 1) == [batch]
    assert split_by_ranges([], 3) == []
    with pytest.raises(ValueError, match="at least 1"):
        split_by_ranges(batch, 0)
