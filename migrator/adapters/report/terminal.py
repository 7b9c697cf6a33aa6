"""The parity result as a person reads it in a terminal: what was compared, rooms per verdict,
differences per kind, the rooms that are not clean (at most MAX_ROOMS, each with at most
MAX_EACH of its differences, values cut to a line), and where the whole reports are. Built from
the JSON result's items as a stream: whatever the number of differences, the terminal shows a
screen of them."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from migrator.domain.parity import Difference, Header, Item, Kind, RoomResult, Summary, Verdict

MAX_ROOMS = 20
MAX_EACH = 3
WIDTH = 60  # characters of a value shown


def _short(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = " ".join(text.split())  # one line
    return text if len(text) <= WIDTH else text[: WIDTH - 1] + "…"


def summary_lines(
    items: Iterable[Item],
    json_path: Path | None = None,
    html_path: Path | None = None,
    *,
    max_rooms: int = MAX_ROOMS,
) -> list[str]:
    header: Header | None = None
    summary: Summary | None = None
    shown: list[str] = []
    pending: list[Difference] = []
    rooms_shown = rooms_not_shown = 0
    for item in items:
        if isinstance(item, Header):
            header = item
        elif isinstance(item, Difference):
            if len(pending) < MAX_EACH:
                pending.append(item)
        elif isinstance(item, RoomResult):
            if item.verdict is not Verdict.CLEAN:
                if rooms_shown < max_rooms:
                    shown += _room_lines(item, pending)
                    rooms_shown += 1
                else:
                    rooms_not_shown += 1
            pending = []
        elif isinstance(item, Summary):
            summary = item
    if header is None or summary is None:
        raise ValueError("a parity result without its header or summary")
    frontier = header.frontier.binlog if header.frontier else "none"
    lines = [
        f"parity {header.run}: rooms {header.selection}, against binlog {frontier}, "
        f"{summary.legacy_rows} monolith rows in {summary.seconds:.1f} s",
        "rooms: "
        + ", ".join(f"{summary.rooms.get(v, 0)} {v.value}" for v in Verdict)
        + f" ({summary.marked_clean} marked clean)",
    ]
    counted = [f"{n} {kind.value}" for kind in Kind if (n := summary.differences.get(kind, 0))]
    lines.append("differences: " + (", ".join(counted) if counted else "none"))
    lines += shown
    if rooms_not_shown:
        lines.append(f"… and {rooms_not_shown} more room(s) not clean: see the reports")
    if json_path is not None:
        lines.append(f"JSON result: {json_path}")
    if html_path is not None:
        lines.append(f"HTML report: {html_path} (open it in a browser: file://{html_path})")
    return lines


def _room_lines(result: RoomResult, first: list[Difference]) -> list[str]:
    counts = ", ".join(f"{n} {kind.value}" for kind, n in result.counts.items() if n)
    lines = [
        f"  room {result.room_id}: {result.verdict.value}" + (f" ({counts})" if counts else "")
    ]
    if result.reason:
        lines.append(f"    {result.reason}")
    for d in first:
        what = f"message {d.message_id}" if d.message_id is not None else f"account {d.account_id}"
        lines.append(
            f"    {d.kind.value} {what} {d.field}: monolith {_short(d.legacy)} | "
            f"read model {_short(d.new)}"
        )
    if result.differences > len(first):
        lines.append(f"    … {result.differences - len(first)} more in the reports")
    return lines
