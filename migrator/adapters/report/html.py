"""The parity result as one HTML file a person opens from disk: no script, no fetch, its style
inline.

- At the top: the run (selection, who, the frontier, when), the rooms per verdict and the
  differences per kind, then an **index** of rooms (each with its verdict and its counts per
  kind, linked to `#room-<id>` and `#room-<id>-<kind>`), rooms with findings first.
- Then a **section per room** with findings (a difference, an unreadable row, or late): its
  verdict and why, the frontiers it was compared at, and per kind of difference a table of
  message (or account), field, and **both values side by side** (the monolith's, the read
  model's).
- At the end: the rules (compared fields, ignored fields and why) as the run wrote them.

Every value is escaped (`html.escape`, quotes included): bodies hold ChatWork notation
(`[To:1]`, `[info]...[/info]`), HTML-like text, Japanese and emoji, shown as written in
`<pre>` blocks that keep white space. Built from the JSON result as a stream in bounded memory:
at most MAX_PER_KIND differences per kind of each room and MAX_SECTIONS room sections are shown
(a note says how many more the JSON holds), the index lists at most MAX_INDEX rooms.
"""

from __future__ import annotations

import datetime
import json
import os
import tempfile
from collections.abc import Iterable
from html import escape
from pathlib import Path
from typing import TextIO

from migrator.domain.parity import (
    ABSENT,
    Difference,
    Header,
    Item,
    Kind,
    RoomResult,
    Summary,
    Verdict,
)

REPORT_NAME = "parity.html"
MAX_PER_KIND = 500
MAX_SECTIONS = 2000
MAX_INDEX = 20_000

_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI","Hiragino Sans","Noto Sans JP",sans-serif;
margin:2em auto;max-width:1400px;padding:0 1em;color:#1d2125}
h1{font-size:1.5em}h2{border-bottom:1px solid #ccd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;width:100%;margin:.5em 0 1em}
th,td{border:1px solid #d5d9e0;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#f2f4f7}td.n{text-align:right;font-variant-numeric:tabular-nums}
pre{margin:0;white-space:pre-wrap;word-break:break-word;font:13px/1.4 ui-monospace,Menlo,Consolas,monospace}
.clean{color:#1a7f37}.different{color:#c0392b;font-weight:600}.late{color:#9a6700;font-weight:600}
.legacy{background:#fff8f6}.new{background:#f5fbff}.note{color:#57606a}
nav a{margin-right:.6em}code{font:13px ui-monospace,Menlo,Consolas,monospace}
"""
_KIND_TITLES = {
    Kind.MISSING_IN_NEW: "missing in the read model",
    Kind.EXTRA_IN_NEW: "extra in the read model",
    Kind.STALE: "stale (the read model holds an older state)",
    Kind.FIELD_DIFFERS: "a field differs",
    Kind.UNREADABLE_LEGACY: "unreadable legacy rows (reported, not counted against clean)",
    Kind.CURSOR_MISSING: "cursor missing in the read model",
    Kind.CURSOR_DIFFERS: "cursor differs",
}


def _when(unix: float) -> str:
    moment = datetime.datetime.fromtimestamp(unix, tz=datetime.UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _value(value: object) -> str:
    """A value as the report shows it: text as written, anything else as JSON, escaped."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=1)
    return f"<pre>{escape(text, quote=True)}</pre>"


def _anchor(room_id: int, kind: Kind | None = None) -> str:
    return f"room-{room_id}" if kind is None else f"room-{room_id}-{kind.value}"


def _has_findings(result: RoomResult) -> bool:
    return result.verdict is not Verdict.CLEAN or result.differences > 0


class _Room:
    """A room being read: its shown differences per kind (capped), until its result comes."""

    def __init__(self) -> None:
        self.shown: dict[Kind, list[Difference]] = {}

    def add(self, difference: Difference) -> None:
        bucket = self.shown.setdefault(difference.kind, [])
        if len(bucket) < MAX_PER_KIND:
            bucket.append(difference)


def write_html(items: Iterable[Item], directory: Path, json_name: str = "parity.json") -> Path:
    """Writes `directory/parity.html` from the result's items (`read_result`); returns it."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / REPORT_NAME
    header: Header | None = None
    summary: Summary | None = None
    index: list[RoomResult] = []  # rooms with findings first, then clean ones (capped)
    clean_index: list[RoomResult] = []
    more_index = sections = more_sections = 0
    room = _Room()
    with tempfile.TemporaryFile("w+", encoding="utf-8", dir=directory) as body:
        for item in items:
            if isinstance(item, Header):
                header = item
            elif isinstance(item, Difference):
                room.add(item)
            elif isinstance(item, RoomResult):
                findings = _has_findings(item)
                target = index if findings else clean_index
                if len(index) + len(clean_index) < MAX_INDEX:
                    target.append(item)
                else:
                    more_index += 1
                if findings:
                    if sections < MAX_SECTIONS:
                        _section(body, item, room)
                        sections += 1
                    else:
                        more_sections += 1
                room = _Room()
            elif isinstance(item, Summary):
                summary = item
        if header is None or summary is None:
            raise ValueError("a parity result without its header or summary")
        partial = path.with_name(path.name + ".partial")
        with partial.open("w", encoding="utf-8", newline="\n") as out:
            _head(out, header, summary, json_name)
            _index(out, index + clean_index, more_index)
            if more_sections:
                out.write(
                    f'<p class="note">{more_sections} more room(s) with findings are not shown '
                    f"here: the JSON result ({escape(json_name)}) has every one.</p>\n"
                )
            body.seek(0)
            while chunk := body.read(1 << 16):
                out.write(chunk)
            _rules(out, header)
            out.write("</body>\n</html>\n")
        os.replace(partial, path)
    return path


def _head(out: TextIO, header: Header, summary: Summary, json_name: str) -> None:
    frontier = (
        f"binlog <code>{escape(header.frontier.binlog)}</code> at {_when(header.frontier.at_unix)}"
        if header.frontier
        else "none"
    )
    rooms = ", ".join(
        f'<span class="{v.value}">{summary.rooms.get(v, 0)} {v.value}</span>' for v in Verdict
    )
    out.write(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>Parity {escape(header.run)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        f"<h1>Parity: the monolith against the read model</h1>\n"
        f"<p>Run <code>{escape(header.run)}</code>, started {_when(header.started_at)} by "
        f"{escape(header.who)}, rooms <code>{escape(header.selection)}</code>; compared after "
        f"the read model reached {frontier}; {summary.seconds:.1f} s, "
        f"{summary.legacy_rows} monolith rows. Machine-readable: "
        f"<a href=\"{escape(json_name, quote=True)}\">{escape(json_name)}</a>.</p>\n"
        f"<p>Rooms: {rooms}; marked clean in the control store: {summary.marked_clean}.</p>\n"
        "<table><tr><th>kind of difference</th><th>count</th></tr>\n"
    )  # fmt: skip
    for kind in Kind:
        out.write(
            f"<tr><td>{escape(_KIND_TITLES[kind])} (<code>{kind.value}</code>)</td>"
            f'<td class="n">{summary.differences.get(kind, 0)}</td></tr>\n'
        )
    out.write("</table>\n")


def _index(out: TextIO, rooms: list[RoomResult], more: int) -> None:
    out.write(
        '<h2 id="index">Rooms</h2>\n<table><tr><th>room</th><th>verdict</th><th>rows</th>'
        "<th>cursors</th><th>differences by kind</th><th>why not clean</th></tr>\n"
    )
    for result in rooms:
        room = result.room_id
        name = f'<a href="#{_anchor(room)}">{room}</a>' if _has_findings(result) else str(room)
        kinds = " ".join(
            f'<a href="#{_anchor(room, kind)}">{kind.value}: {n}</a>'
            for kind, n in result.counts.items()
            if n
        )
        out.write(
            f'<tr><td>{name}</td><td class="{result.verdict.value}">{result.verdict.value}'
            f'</td><td class="n">{result.legacy_rows}</td><td class="n">{result.cursors}</td>'
            f"<td>{kinds}</td><td>{escape(result.reason or '')}</td></tr>\n"
        )
    out.write("</table>\n")
    if more:
        out.write(f'<p class="note">{more} more room(s): see the JSON result.</p>\n')


def _section(out: TextIO, result: RoomResult, room: _Room) -> None:
    rid = result.room_id
    at = [
        f"{label} binlog <code>{escape(f.binlog)}</code> at {_when(f.at_unix)}"
        for label, f in (("compared at", result.compared_at), ("re-checked at", result.settled_at))
        if f is not None
    ]
    out.write(
        f'<h2 id="{_anchor(rid)}">Room {rid}: <span class="{result.verdict.value}">'
        f"{result.verdict.value}</span></h2>\n"
        f"<p>{escape(result.reason or '')}</p>\n"
        f"<p>{'; '.join(at) or 'not compared'}. {result.legacy_rows} monolith rows, "
        f"{result.new_messages} read-model messages, {result.cursors} cursors; "
        f"{result.rechecked} re-read at a later frontier, {result.unsettled} still changing; "
        f"{result.seconds:.2f} s. <a href=\"#index\">index</a></p>\n"
    )  # fmt: skip
    for kind in Kind:
        count = result.counts.get(kind, 0)
        if not count:
            continue
        shown = room.shown.get(kind, [])
        cursor = kind in (Kind.CURSOR_MISSING, Kind.CURSOR_DIFFERS)
        out.write(
            f'<h3 id="{_anchor(rid, kind)}">{escape(_KIND_TITLES[kind])}: {count}</h3>\n'
            f"<table><tr><th>{'account' if cursor else 'message'}</th><th>field</th>"
            "<th>the monolith</th><th>the read model</th></tr>\n"
        )
        for d in shown:
            key = d.account_id if cursor else d.message_id
            out.write(
                f"<tr><td><code>{key}</code></td><td><code>{escape(d.field)}</code></td>"
                f'<td class="legacy">{_value(d.legacy)}</td><td class="new">{_value(d.new)}</td>'
                "</tr>\n"
            )
        out.write("</table>\n")
        if count > len(shown):
            out.write(
                f'<p class="note">{count - len(shown)} more of this kind in the JSON result.</p>\n'
            )


def _rules(out: TextIO, header: Header) -> None:
    out.write('<h2 id="rules">The rules</h2>\n<table><tr><th>compared</th><th>how</th></tr>\n')
    for name, why in header.rules.get("compared", {}).items():
        out.write(f"<tr><td><code>{escape(name)}</code></td><td>{escape(str(why))}</td></tr>\n")
    out.write("</table>\n<table><tr><th>not compared</th><th>why</th></tr>\n")
    for name, why in header.rules.get("ignored", {}).items():
        out.write(f"<tr><td><code>{escape(name)}</code></td><td>{escape(str(why))}</td></tr>\n")
    out.write(
        f'</table>\n<p class="note">A side without the row shows <code>{escape(ABSENT)}</code>'
        " (or how it is gone). Full rules: migrator/domain/parity.py.</p>\n"
    )
