"""migrator/adapters/report/: the JSON result file (written whole or left partial, read back as
a stream, refusals), the HTML report (parsed: both values of each difference side by side,
escaped, anchors that resolve), the terminal summary (a screen, whatever the size)."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest

from migrator.adapters.report import html as html_report
from migrator.adapters.report.html import write_html
from migrator.adapters.report.json_report import JsonResultFile, read_result
from migrator.adapters.report.terminal import summary_lines
from migrator.domain.parity import (
    ABSENT,
    DELETED,
    Difference,
    Header,
    Kind,
    RoomResult,
    Tally,
    Verdict,
    decode,
    zero_counts,
)
from migrator.errors import OperatorError, WrongReportVersion
from migrator.ports import Frontier

HEADER = Header(
    run="20240501T000000Z-abc123", started_at=1_714_521_600.0, selection="7,8,9", who="ops <team>",
    frontier=Frontier("mariadb-bin.000005:4096", 1_714_521_601.0),
)  # fmt: skip
TRICKY = '[info][title]予定[/title]<script>alert("x")</script> & <b>bold</b> 😀[/info]'
DIFFERENCES = [
    Difference(7, Kind.STALE, 123456789012345678, None, "body", TRICKY, "古い本文 &amp;"),
    Difference(7, Kind.STALE, 123456789012345678, None, "update_time", 1_714_000_100, 1_714_000_000),
    Difference(7, Kind.EXTRA_IN_NEW, 42, None, "message", DELETED,
               {"account_id": 1, "body": "<i>still here</i>", "send_time": 1, "update_time": 0}),
    Difference(7, Kind.CURSOR_DIFFERS, None, 99, "last_read_message_id", "10", "9"),
    Difference(7, Kind.UNREADABLE_LEGACY, 5, None, "body", "body_raw is not UTF-8", "caf\ufffd"),
]  # fmt: skip


def write_result(directory: Path, differences: list[Difference] = DIFFERENCES) -> Path:
    out = JsonResultFile(directory, HEADER)
    tally = Tally()
    counts = zero_counts()
    out.start_room(7)
    for d in differences:
        out.difference(d)
        counts[d.kind] += 1
    results = [
        RoomResult(7, Verdict.DIFFERENT, compared_at=HEADER.frontier, legacy_rows=50,
                   counts=counts, rechecked=4),
        RoomResult(8, Verdict.CLEAN, compared_at=HEADER.frontier, marked_clean=True, legacy_rows=3),
        RoomResult(9, Verdict.LATE, reason="the pipeline did not reach binlog x within 120 s"),
    ]  # fmt: skip
    out.end_room(results[0])
    for result in results[1:]:
        out.start_room(result.room_id)
        out.end_room(result)
    for result in results:
        tally.add(result)
    assert out.partial.exists() and not out.path.exists()
    return out.close(tally.summary(1_714_521_700.0, 100.0))


def test_the_json_result_is_renamed_whole_and_read_back_as_written(tmp_path: Path) -> None:
    path = write_result(tmp_path / "run")
    assert path.name == "parity.json" and not (tmp_path / "run" / "parity.json.partial").exists()
    result = decode(path.read_bytes())
    assert result.rooms[0].differences == DIFFERENCES
    assert [r.result.verdict for r in result.rooms] == [
        Verdict.DIFFERENT,
        Verdict.CLEAN,
        Verdict.LATE,
    ]
    assert list(read_result(path))[1:6] == DIFFERENCES
    assert '[info][title]予定[/title]<script>alert(\\"x\\")' in path.read_text(encoding="utf-8")


def test_an_abandoned_run_leaves_only_a_partial_file(tmp_path: Path) -> None:
    out = JsonResultFile(tmp_path, HEADER)
    out.start_room(7)
    out.difference(DIFFERENCES[0])
    partial = out.abandon()
    assert partial.name == "parity.json.partial" and not (tmp_path / "parity.json").exists()
    with pytest.raises(WrongReportVersion, match="not a parity result"):
        list(read_result(partial))


def test_reading_a_missing_foreign_or_undecodable_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(OperatorError, match="no parity result at"):
        list(read_result(tmp_path / "nothing.json"))
    other = tmp_path / "other.json"
    other.write_text('{"schema": "chat-migration/parity", "version": 7, "rooms": []}')
    with pytest.raises(WrongReportVersion, match="version 7"):
        list(read_result(other))
    binary = tmp_path / "binary.json"
    binary.write_bytes(b'{"schema": "\xff\xfe"}')
    with pytest.raises(WrongReportVersion, match="not UTF-8"):
        list(read_result(binary))


class Page(HTMLParser):
    """What a browser would make of the page: the tags, the ids, the links, and the text of
    each table row's cells."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        found = dict(attrs)
        if found.get("id"):
            self.ids.add(str(found["id"]))
        if tag == "a" and found.get("href"):
            self.links.append(str(found["href"]))
        if tag == "tr":
            self.rows.append([])
        if tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def parsed(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


def test_the_html_report_shows_both_values_side_by_side_escaped(tmp_path: Path) -> None:
    result = write_result(tmp_path)
    path = write_html(read_result(result), tmp_path)
    page = parsed(path)
    assert "script" not in page.tags and "b" not in page.tags and "i" not in page.tags
    rows = {tuple(row[:2]): row[2:] for row in page.rows if len(row) == 4}
    assert rows[("123456789012345678", "body")] == [TRICKY, "古い本文 &amp;"]
    assert rows[("123456789012345678", "update_time")] == ["1714000100", "1714000000"]
    legacy, new = rows[("42", "message")]
    assert legacy == DELETED and '"body": "<i>still here</i>"' in new
    assert rows[("99", "last_read_message_id")] == ["10", "9"]
    assert rows[("5", "body")] == ["body_raw is not UTF-8", "caf\ufffd"]
    assert ("account", "field") in rows and ("message", "field") in rows  # the columns named


def test_the_html_report_is_navigable(tmp_path: Path) -> None:
    page = parsed(write_html(read_result(write_result(tmp_path)), tmp_path))
    internal = [link[1:] for link in page.links if link.startswith("#")]
    assert internal and all(target in page.ids for target in internal), (internal, page.ids)
    for anchor in ("room-7", "room-7-stale", "room-7-extra_in_new", "room-7-cursor_differs",
                   "room-9", "index", "rules"):  # fmt: skip
        assert anchor in page.ids
    assert "room-8" not in page.ids  # a clean room is in the index, without a section
    assert any(row[:2] == ["8", "clean"] for row in page.rows)
    assert "parity.json" in page.links
    text = (tmp_path / "parity.html").read_text(encoding="utf-8")
    assert "ops &lt;team&gt;" in text and "<script" not in text


def test_the_html_report_caps_what_it_shows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(html_report, "MAX_PER_KIND", 3)
    many = [Difference(7, Kind.MISSING_IN_NEW, i, None, "message", {"body": "x"}, ABSENT)
            for i in range(1, 11)]  # fmt: skip
    page = parsed(write_html(read_result(write_result(tmp_path, many)), tmp_path))
    assert sum(1 for row in page.rows if row[-1:] == [ABSENT]) == 3
    assert "7 more of this kind in the JSON result." in (tmp_path / "parity.html").read_text()


def test_the_terminal_summary_is_a_screen(tmp_path: Path) -> None:
    path = write_result(tmp_path)
    lines = summary_lines(read_result(path), path, tmp_path / "parity.html")
    text = "\n".join(lines)
    assert "rooms: 1 clean, 1 different, 1 late (1 marked clean)" in text
    assert (
        "differences: 1 stale" not in text and "2 stale" in text and "1 unreadable_legacy" in text
    )
    assert "room 7: different" in text and "room 9: late" in text and "room 8" not in text
    assert "stale message 123456789012345678 body: monolith [info][title]予定" in text
    assert "… 2 more in the reports" in text
    assert f"JSON result: {path}" in text and "HTML report:" in text
    assert all(len(line) < 400 for line in lines)
    few = summary_lines(read_result(path), max_rooms=1)
    assert any("1 more room(s) not clean" in line for line in few)
