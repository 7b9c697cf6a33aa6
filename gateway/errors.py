"""The gateway's error taxonomy (after newcore/errors.py): every adapter translates its
driver's exceptions into these at its boundary, and the policy (retry, refuse, fail at start)
is written where it is decided."""

from __future__ import annotations

from newcore.errors import Misconfigured, Unavailable


class ControlStoreUnavailable(Unavailable):
    """The control store cannot be reached now: keep the last snapshot, try again later."""


class ControlStoreMisconfigured(Misconfigured):
    """The control store holds what this version cannot read (an unknown phase, a schema of
    another version): an operator must act. Reported at start, with the row and the reason."""


class SpoolUnavailable(Unavailable):
    """The local spool cannot be written (disk full, permissions): hints are lost and counted,
    requests go on."""


class SpoolMisconfigured(Misconfigured):
    """The spool directory holds what this version cannot read, or is not a directory."""


class RoomMapUnavailable(Unavailable):
    """The front door cannot be told about the room map now: its pid file is missing or names
    no running nginx master (stopped, restarting), or the map file cannot be written. The front
    door goes on routing by the map it has; publish again later (the next publish signals)."""


class RoomMapMisconfigured(Misconfigured):
    """The room map file holds a line this version never writes (edited by hand), or this
    process may not signal the front door's master (another user): an operator must act."""
