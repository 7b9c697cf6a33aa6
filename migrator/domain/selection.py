"""Which rooms a command works on, as an operator writes it: one argument, `ROOMS`.

- `12` or `12,34,56`: rooms by id;
- `@rooms.txt`: a list, one id per line (blank lines and `#` comments allowed);
- `10%`: the sticky percentage of the gateway (`gateway.domain.phases.bucket`): a room in 1 %
  stays in 10 %, so a cutover goes 1 % -> 10 % -> 100 % one command at a time;
- `all`: every room of the monolith.

Parsing is pure; resolving a selection to room ids needs the monolith's room list
(`gateway.ports.RoomCatalog`), and refuses ids that are not rooms (`UnknownRooms`) before
anything is changed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from gateway.domain.phases import check_room_id, percentage_threshold, select_percentage
from gateway.ports import RoomCatalog
from migrator.errors import OperatorError, UnknownRooms

MAX_LISTED = 1_000_000


@dataclass(frozen=True, slots=True)
class Selection:
    """Rooms by id (`ids`, in the order given, duplicates dropped), by percentage (`percent`),
    or every room (`everything`): exactly one of the three."""

    ids: tuple[int, ...] = ()
    percent: float | None = None
    everything: bool = False

    def describe(self) -> str:
        if self.everything:
            return "all"
        if self.percent is not None:
            return f"{self.percent:g}%"
        if len(self.ids) <= 10:
            return ",".join(str(r) for r in self.ids)
        return f"{len(self.ids)} rooms ({self.ids[0]}..)"


def parse_rooms(text: str) -> Selection:
    """The selection an operator wrote, or OperatorError saying what is wrong with it."""
    value = text.strip()
    if not value:
        raise OperatorError("ROOMS is empty: give ids (12,34), @file, a percentage (10%) or all")
    if value.lower() == "all":
        return Selection(everything=True)
    if value.endswith("%"):
        try:
            percent = float(value[:-1])
            percentage_threshold(percent)
        except ValueError:
            raise OperatorError(
                f"{text!r} is not a percentage: a number above 0 and at most 100, then % (10%)"
            ) from None
        return Selection(percent=percent)
    if value.startswith("@"):
        return Selection(ids=_ids(_read_list(Path(value[1:])), f"the list {value[1:]}"))
    return Selection(ids=_ids(value.split(","), "ROOMS"))


def _read_list(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise OperatorError(f"cannot read the room list {path}: {exc}") from None
    words = [line.split("#", 1)[0].strip() for line in lines]
    return [word for word in words if word]


def _ids(words: Iterable[str], where: str) -> tuple[int, ...]:
    ids: dict[int, None] = {}
    for word in words:
        word = word.strip()
        try:
            if not word.isdigit():
                raise ValueError
            ids[check_room_id(int(word))] = None
        except ValueError:
            raise OperatorError(
                f"{word!r} in {where} is not a room id (digits, 1..4294967295); ROOMS is ids "
                "(12,34), @file, a percentage (10%) or all"
            ) from None
        if len(ids) > MAX_LISTED:
            raise OperatorError(f"{where} lists more than {MAX_LISTED} rooms: use a percentage")
    if not ids:
        raise OperatorError(f"{where} names no room")
    return tuple(ids)


def resolve(selection: Selection, catalog: RoomCatalog) -> list[int]:
    """The room ids of the selection: ids as given (UnknownRooms if any is not a room of the
    monolith), or the monolith's rooms in the percentage or all of them, ascending."""
    if selection.ids:
        known = catalog.exists(selection.ids)
        unknown = [room for room in selection.ids if room not in known]
        if unknown:
            raise UnknownRooms(unknown)
        return list(selection.ids)
    if selection.everything:
        return list(catalog.room_ids())
    assert selection.percent is not None
    return select_percentage(catalog.room_ids(), selection.percent)
