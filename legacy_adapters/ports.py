"""The legacy side's ports: what its services need of the monolith's MariaDB, as
`typing.Protocol`s with each method's contract. (What the new core needs of the monolith, the
`MonolithReader` and the `AccountDirectory`, are the new core's ports: `newcore/ports.py`.)"""

from __future__ import annotations

from typing import Protocol

from legacy_adapters.domain.binlog_rows import BinlogBatch, BinlogPosition


class BinlogStream(Protocol):
    """The binlog read as a replica from a position, on a thread of its own (blocking)."""

    def read(self, max_hints: int, max_wait: float) -> BinlogBatch:
        """The hints of whole committed transactions from where the last read ended, and the
        position after them (None when no transaction completed): returns once `max_hints`
        are collected or `max_wait` seconds passed with something to say, or after an idle
        heartbeat. Raises BinlogUnavailable (read again from the last durable position) or
        BinlogMisconfigured (the position is no longer on the server)."""
        ...

    def close(self) -> None:
        """Ends the replication connection."""
        ...


class Binlog(Protocol):
    """The monolith's binlog."""

    def check(self) -> None:
        """Refuses a server whose binlog cannot give a hint for every change
        (BinlogMisconfigured, saying which setting); BinlogUnavailable when unreachable."""
        ...

    def end(self) -> BinlogPosition:
        """Where the binlog ends now: where a first start begins (history is the backfill's)."""
        ...

    def stream(self, start: BinlogPosition) -> BinlogStream:
        """A stream from `start`, a position at the end of a committed transaction."""
        ...
