"""MonolithHealth on the monolith's MariaDB: what an operator looks at before letting a copy
job run harder (migrator/README.md, "Throttling").

- The probe is the monolith's hottest read, as its own code runs it (deploy/monolith/src/
  store.php, `latest_messages`): the latest 100 live messages of a room with their author's
  name and avatar, the same columns, the same join, the same plan. Its wall time (sent to last
  row received) is what a user of the monolith waits for at this moment, whatever makes the
  server slow (CPU, I/O, locks, the buffer pool evicted by a scan). The room probed is the room
  of the newest message (a room people use now, whose pages are the ones that must stay in
  memory), chosen again every `reprobe_s`.
- `Threads_running` (SHOW GLOBAL STATUS): statements executing at this moment. It climbs
  before latency does when the server saturates, and it is what a DBA's dashboard shows. The
  probe's own session counts as one.

Driver errors become MonolithUnavailable.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from migrator.ports import HealthSample
from newcore.errors import MonolithUnavailable

PROBE_SQL = (
    "SELECT m.message_id, m.account_id, m.body, m.body_v1, m.body_raw, m.send_time,"
    " m.update_time, CASE WHEN m.created_at IS NULL OR m.created_at = '0000-00-00 00:00:00'"
    " THEN 0 ELSE UNIX_TIMESTAMP(m.created_at) END AS created_unix,"
    " a.name AS account_name, a.avatar_image_url"
    " FROM messages m LEFT JOIN accounts a ON a.account_id = m.account_id"
    " WHERE m.room_id = %s AND m.deleted = 0 ORDER BY m.message_id DESC LIMIT 100"
)
NEWEST_ROOM_SQL = "SELECT room_id FROM messages ORDER BY message_id DESC LIMIT 1"
THREADS_SQL = "SHOW GLOBAL STATUS LIKE 'Threads_running'"
REPROBE_S = 300.0


class MariaDbMonolithHealth:
    """MonolithHealth over `engine` (the monolith's; its owner disposes of it)."""

    def __init__(
        self,
        engine: Engine,
        *,
        reprobe_s: float = REPROBE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._reprobe_s = reprobe_s
        self._clock = clock
        self._room: int | None = None
        self._chosen_at: float | None = None

    @property
    def probe_room(self) -> int | None:
        """The room the last probe read (None: the monolith has no message yet)."""
        return self._room

    def sample(self) -> HealthSample:
        try:
            with self._engine.connect() as conn:
                now = self._clock()
                if self._chosen_at is None or now - self._chosen_at >= self._reprobe_s:
                    room = conn.exec_driver_sql(NEWEST_ROOM_SQL).scalar()
                    self._room = None if room is None else int(room)
                    self._chosen_at = now
                probe_ms = 0.0
                if self._room is not None:
                    started = time.perf_counter()
                    conn.exec_driver_sql(PROBE_SQL, (self._room,)).all()
                    probe_ms = (time.perf_counter() - started) * 1000
                row = conn.exec_driver_sql(THREADS_SQL).one_or_none()
        except SQLAlchemyError as exc:
            orig = getattr(exc, "orig", None)
            raise MonolithUnavailable(
                f"monolith database, health probe: {exc.__class__.__name__}: "
                f"{orig if orig is not None else exc}"
            ) from exc
        threads = int(row[1]) if row is not None else 0
        return HealthSample(probe_ms=probe_ms, threads_running=threads)
