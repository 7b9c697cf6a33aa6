"""The room map the front door routes by (deploy/frontdoor.sh): the rooms whose message
endpoints go through the gateway, one line per room, `"<room_id>" 1;`, included by an nginx
`map`. An empty map sends every request straight to the monolith: the kill switch.

Publishing writes the file only when its content changes (temp file, fsync, rename: nginx never
reads half a file) and asks the nginx master for a graceful reload (SIGHUP): new workers route
by the new map, old ones finish the requests they hold. A file nginx refuses would leave the
running map in place (its error log says why); this module writes nothing but digits, so such a
file never comes from here.

One caller at a time (the control follower publishes from one task).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import tempfile
from collections.abc import Iterable
from pathlib import Path

from gateway.errors import RoomMapMisconfigured, RoomMapUnavailable

HEADER = (
    b"# The rooms whose message endpoints go through the gateway; written by the gateway\n"
    b"# (gateway/adapters/nginx_room_map.py). Empty: every request goes to the monolith.\n"
)
ROOM_LINE = re.compile(rb'"([1-9][0-9]*)" 1;')
MASTER_TITLE = b"nginx: master process"


def render(room_ids: Iterable[int]) -> bytes:
    """The map file for these rooms: sorted, each once. Raises ValueError on anything but a
    positive int (bool included), so the file can hold nothing but digits."""
    rooms: set[int] = set()
    for room in room_ids:
        if type(room) is not int or room <= 0:
            raise ValueError(f"a room id is a positive int, not {room!r}")
        rooms.add(room)
    return HEADER + "".join(f'"{room}" 1;\n' for room in sorted(rooms)).encode("ascii")


class NginxRoomMap:
    """The room map file at `map_path` and the front door's nginx master named by `pid_path`."""

    def __init__(self, map_path: Path, pid_path: Path) -> None:
        self._map_path = map_path
        self._pid_path = pid_path
        # What this instance last had the master load. None at first, so the first publish
        # always signals: a process that wrote the file and died before its signal leaves a
        # file the master has not loaded, with the same content the next one would write.
        self._signalled: bytes | None = None

    def publish(self, room_ids: Iterable[int]) -> bool:
        """Makes these rooms, and only these, go through the gateway. Returns True when it
        signalled a reload, False when the file already held this map and this instance had
        the master load it.

        Raises ValueError for an id that is not a positive int (nothing written),
        RoomMapUnavailable when the file cannot be written or the master cannot be found (the
        file may then be ahead of the master: publishing again signals), RoomMapMisconfigured
        when this process may not signal the master."""
        content = render(room_ids)
        if self._read() != content:
            # Written by us or not (a hand edit, a front door that set a refused map aside),
            # the file the master last loaded was another one: signal whatever we knew.
            self._write(content)
        elif content == self._signalled:
            return False
        self._signal()
        self._signalled = content
        return True

    def published(self) -> set[int]:
        """The rooms the file holds now (what the master routes by once reloaded); empty when
        there is no file. Raises RoomMapMisconfigured on a line this module never writes."""
        content = self._read()
        rooms: set[int] = set()
        for number, line in enumerate((content or b"").splitlines(), 1):
            if not line.strip() or line.startswith(b"#"):
                continue
            found = ROOM_LINE.fullmatch(line)
            if found is None:
                raise RoomMapMisconfigured(
                    f"{self._map_path}:{number}: {line[:80]!r} is not a room line"
                )
            rooms.add(int(found[1]))
        return rooms

    def _read(self) -> bytes | None:
        try:
            return self._map_path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise RoomMapUnavailable(f"cannot read the room map {self._map_path}: {exc}") from exc

    def _write(self, content: bytes) -> None:
        directory = self._map_path.parent
        try:
            fd, temp = tempfile.mkstemp(
                prefix=f".{self._map_path.name}.", suffix=".tmp", dir=directory
            )
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(content)
                    out.flush()
                    os.fchmod(out.fileno(), 0o644)
                    os.fsync(out.fileno())
                os.replace(temp, self._map_path)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp)
                raise
            directory_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(directory_fd)
            finally:
                os.close(directory_fd)
        except OSError as exc:
            raise RoomMapUnavailable(f"cannot write the room map {self._map_path}: {exc}") from exc

    def _master(self) -> int:
        """The master's pid, checked to be an nginx master: a pid file outlives its process,
        and a recycled pid must never get our signal."""
        try:
            text = self._pid_path.read_text().strip()
        except OSError as exc:
            raise RoomMapUnavailable(
                f"no front door pid in {self._pid_path} ({exc}): is it running?"
            ) from exc
        if not text.isdigit():
            raise RoomMapUnavailable(f"{self._pid_path} holds {text[:40]!r}, not a pid")
        try:
            title = Path(f"/proc/{text}/cmdline").read_bytes()
        except OSError as exc:
            raise RoomMapUnavailable(
                f"pid {text} of {self._pid_path} is not running: the front door is down"
            ) from exc
        if not title.startswith(MASTER_TITLE):
            raise RoomMapUnavailable(
                f"pid {text} of {self._pid_path} is not an nginx master (a stale pid file)"
            )
        return int(text)

    def _signal(self) -> None:
        pid = self._master()
        try:
            os.kill(pid, signal.SIGHUP)
        except ProcessLookupError as exc:
            raise RoomMapUnavailable(f"the front door's master {pid} is gone") from exc
        except PermissionError as exc:
            raise RoomMapMisconfigured(
                f"may not signal the front door's master {pid}: run the gateway as its user"
            ) from exc
