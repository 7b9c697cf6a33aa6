"""The legacy side's errors, in the new core's taxonomy (`newcore/errors.py`): an adapter of
the monolith raises these, never its driver's (PyMySQL, mysql-replication, SQLAlchemy)."""

from __future__ import annotations

from newcore.errors import Misconfigured, Unavailable


class BinlogUnavailable(Unavailable):
    """The binlog cannot be read now (MariaDB down, connection lost): retry from the last
    durable position."""


class BinlogMisconfigured(Misconfigured):
    """The server's logging cannot give faithful hints, or the position to resume from is no
    longer on the server: a person must act (nothing is skipped in silence)."""
