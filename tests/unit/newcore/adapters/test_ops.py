"""Log lines: a library's repeats are thinned, ours never."""

from __future__ import annotations

import logging

from newcore.adapters.ops import Repeats


def record(name: str, msg: str, at: float) -> logging.LogRecord:
    line = logging.LogRecord(name, logging.ERROR, __file__, 1, msg, (), None)
    line.created = at
    return line


def test_a_library_repeat_passes_once_per_window_and_ours_always() -> None:
    repeats = Repeats("capturer", seconds=30)
    passed = [
        repeats.filter(record("aiokafka", "Unable connect to node", t / 10)) for t in range(100)
    ]
    assert passed.count(True) == 1  # 10 s of retries: one line
    assert repeats.filter(record("aiokafka", "Unable connect to node", 31.0))  # the next window
    assert repeats.filter(record("aiokafka", "another message", 31.0))
    assert all(repeats.filter(record("capturer", "dead letter", t / 10)) for t in range(50))
