"""LostRooms on a gateway's hint spool directory (`MIG_SPOOL_DIR`, gateway/adapters/spool.py):
the rooms whose hints the gateway dropped past its bound, for `chat-migrate repair
--lost-rooms`.

How it is read and forgotten, and why this way:

- **Read: the `lost-rooms` file, without the spool's lock.** A running gateway holds the
  directory's lock (flock) for as long as it runs, so taking the lock to read would mean
  stopping the gateway. It is not needed: the spool never rewrites that file in place (a
  rewrite is a temp file, fsynced, renamed over it, so a reader opens the old file or the new
  one, whole) and adds a room with one `os.write` of one whole line in append mode. So one
  read of the file gives its header and whole lines, and at worst a last line an append is
  writing at that moment, without its newline: it is skipped (the room is there at the next
  read). The file may lag the gateway's memory by the spool's flush interval (a second): a
  count or time that moved meanwhile only makes the room be kept at `forget` (below).
- **Forget: whoever holds the spool.** The gateway keeps the list in memory and rewrites the
  file from memory, so an edit of the file by another process would be undone. So:
  - no process holds the spool (no gateway runs on it): the spool is opened here
    (`open_spool`, the gateway's own code: it takes the lock, so no gateway can start on it
    meanwhile: one that tries fails and is restarted by its supervisor), the rooms forgotten
    and the spool closed;
  - a gateway holds it: through that gateway's admin API (`POST
    /admin/spool/lost-rooms/forget`, the Bearer token MIG_GATEWAY_ADMIN_TOKEN), which forgets
    in the process that holds the list;
  - a gateway holds it and no admin token is set: nothing is forgotten, and `Forgotten.how`
    says so (the hints were sent; the rooms stay listed and a later repair sends them again,
    harmless).
  In each case a room is forgotten only if it lost no hint since it was read
  (`domain.repair.lost_rooms_to_forget`): a newer loss may postdate the hints sent.
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx

from migrator.domain.repair import lost_rooms_to_forget
from migrator.ports import Forgotten, LostRoom
from newcore.errors import Misconfigured, Unavailable

LOST_FILE = "lost-rooms"  # gateway/adapters/spool.py, "Layout of the directory"
LOST_HEADER = "chat-hint-spool lost-rooms"
LOST_FORMAT_VERSION = 1
LOCK_FILE = "lock"


class SpoolHandle(Protocol):
    """The gateway's spool opened by this process (gateway.adapters.spool.HintSpool)."""

    def lost_rooms(self) -> dict[int, Any]: ...

    def forget_lost(self, room_ids: Iterable[int]) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class GatewayAdmin:
    """Where the admin API of the gateway that holds the spool answers."""

    url: str  # http://host:port
    token: str


def parse_lost_rooms(text: str, where: str) -> tuple[list[LostRoom], int]:
    """The rooms of a lost-rooms file's text, by room id, and how many lines could not be read
    (a torn last line included). Misconfigured when the header is not this format's."""
    lines = text.splitlines(keepends=True)
    if not lines:
        return [], 0
    name, _, version = lines[0].strip().rpartition(" ")
    if name != LOST_HEADER or not version.isdigit():
        raise Misconfigured(f"{where} is not a hint spool's lost-rooms file (its header)")
    if int(version) != LOST_FORMAT_VERSION:
        raise Misconfigured(
            f"{where} has format version {version}; this version reads {LOST_FORMAT_VERSION}"
        )
    rooms: dict[int, LostRoom] = {}
    skipped = 0
    for line in lines[1:]:
        words = line.split()
        try:
            if not line.endswith("\n") or len(words) != 4:
                raise ValueError(line)
            room = LostRoom(int(words[0]), int(words[1]), float(words[2]), float(words[3]))
            if not 1 <= room.room_id <= 2**32 - 1 or room.count < 1:
                raise ValueError(line)
        except ValueError:
            skipped += 1
            continue
        before = rooms.get(room.room_id)
        if before is not None:  # never written so; kept whole if it is, as the spool does
            room = LostRoom(
                room.room_id, before.count + room.count,
                min(before.first_lost_at, room.first_lost_at),
                max(before.last_lost_at, room.last_lost_at),
            )  # fmt: skip
        rooms[room.room_id] = room
    return [rooms[r] for r in sorted(rooms)], skipped


class SpoolLostRooms:
    """LostRooms on the spool directory `directory` (module docstring)."""

    def __init__(
        self,
        directory: Path,
        open_spool: Callable[[], SpoolHandle],
        admin: GatewayAdmin | None,
        *,
        timeout_s: float = 30.0,
    ) -> None:
        self._dir = directory
        self._open_spool = open_spool
        self._admin = admin
        self._timeout_s = timeout_s
        self.skipped_lines = 0  # lines of the last read that could not be read

    def read(self) -> list[LostRoom]:
        path = self._dir / LOST_FILE
        if not self._dir.is_dir():
            raise Misconfigured(
                f"no hint spool at {self._dir} (not a directory): set MIG_SPOOL_DIR to the "
                "gateway's spool directory"
            )
        try:
            text = path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            raise Misconfigured(
                f"{self._dir} holds no {LOST_FILE} file: not a gateway's hint spool (a spool "
                "makes it when it opens); set MIG_SPOOL_DIR to the gateway's spool directory"
            ) from None
        except OSError as exc:
            raise Unavailable(f"hint spool lost-rooms file {path}: {exc}") from exc
        rooms, self.skipped_lines = parse_lost_rooms(text, str(path))
        return rooms

    def forget(self, seen: Sequence[LostRoom], who: str, why: str) -> Forgotten:
        if not seen:
            return Forgotten([], [], "nothing to forget")
        if not self._held():
            handle = self._try_open()
            if handle is not None:
                try:
                    now = [
                        LostRoom(room, x.count, x.first_lost_at, x.last_lost_at)
                        for room, x in handle.lost_rooms().items()
                    ]
                    forget, keep = lost_rooms_to_forget(seen, now)
                    handle.forget_lost(forget)
                finally:
                    handle.close()
                return Forgotten(forget, keep, f"in the spool at {self._dir} (no gateway holds it)")
        if self._admin is None:
            return Forgotten(
                [], [room.room_id for room in seen],
                f"not forgotten: a gateway holds the spool at {self._dir} and no admin token is "
                "set to ask it (MIG_GATEWAY_ADMIN_TOKEN, and MIG_GATEWAY_ADMIN_HOST/PORT of that "
                "gateway); the rooms stay listed, a later repair sends their hints again",
            )  # fmt: skip
        return self._forget_through(self._admin, seen, who, why)

    def _held(self) -> bool:
        """Whether a process holds the spool's lock now (a gateway runs on it)."""
        try:
            fd = os.open(self._dir / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise Unavailable(f"hint spool lock at {self._dir}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return True
            raise Unavailable(f"hint spool lock at {self._dir}: {exc}") from exc
        finally:
            os.close(fd)  # releases the lock if it was taken
        return False

    def _try_open(self) -> SpoolHandle | None:
        """The spool opened here; None when a gateway took it since `_held` looked."""
        try:
            return self._open_spool()
        except Misconfigured as exc:
            if "in use by another process" in str(exc):
                return None
            raise

    def _forget_through(
        self, admin: GatewayAdmin, seen: Sequence[LostRoom], who: str, why: str
    ) -> Forgotten:
        body = {
            "rooms": [
                {"room_id": r.room_id, "count": r.count, "last_lost_at": r.last_lost_at}
                for r in seen
            ],
            "who": who,
            "why": why,
        }
        where = f"the gateway's admin API at {admin.url}"
        try:
            answer = httpx.post(
                f"{admin.url}/admin/spool/lost-rooms/forget", json=body,
                headers={"Authorization": f"Bearer {admin.token}"}, timeout=self._timeout_s,
            )  # fmt: skip
        except httpx.HTTPError as exc:
            raise Unavailable(f"{where}: {exc.__class__.__name__}: {exc}") from exc
        if answer.status_code in (401, 403):
            raise Misconfigured(f"{where} refused the admin token ({answer.status_code})")
        if answer.status_code != 200:
            raise Unavailable(f"{where} answered {answer.status_code}: {answer.text[:300]}")
        try:
            data = answer.json()
            forgotten = [int(r) for r in data["forgotten"]]
            kept = [int(r) for r in data["kept"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise Misconfigured(f"{where} answered what this version cannot read: {exc}") from exc
        return Forgotten(forgotten, kept, f"through {where} (the gateway holds the spool)")
