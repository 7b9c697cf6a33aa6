"""migrator/domain/parity.py: the rules, the streaming merge, re-checks, verdicts, and the
parity result document (its encoding, its stream reader, and its refusals)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest

from migrator.domain import parity
from migrator.domain.parity import (
    ABSENT,
    DELETED,
    GONE,
    MAX_TEXT,
    Changed,
    Confirmed,
    CursorCandidate,
    Difference,
    DocumentWriter,
    Header,
    Kind,
    LegacyRow,
    MessageCandidate,
    ParityResult,
    RoomReport,
    RoomResult,
    Settled,
    Summary,
    Tally,
    Verdict,
    binlog_order,
    compare_cursor,
    decode,
    encode,
    merge,
    read_document,
    recheck_cursor,
    recheck_message,
    state_digest,
    verdict_of,
)
from migrator.errors import WrongReportVersion
from migrator.ports import Frontier
from newcore.domain.model import Message, ReadCursor

ROOM = 7


def msg(mid: int, body: str = "hi", update: int = 0, account: int = 1, send: int = 100) -> Message:
    return Message(ROOM, mid, account, body, send, update)


def live(m: Message, *problems: str) -> LegacyRow:
    return LegacyRow(m.message_id, m, problems)


def deleted(mid: int) -> LegacyRow:
    return LegacyRow(mid, None)


def candidates(legacy: list[LegacyRow], new: list[Message]) -> list[MessageCandidate]:
    return [c for c in merge(ROOM, legacy, new) if isinstance(c, MessageCandidate)]


# -- the merge ---------------------------------------------------------------------------------


def test_the_same_room_on_both_sides_gives_nothing() -> None:
    rows = [msg(1), msg(5, "[To:12] こんにちは 😀"), msg(9, update=300)]
    assert list(merge(ROOM, [live(m) for m in rows] + [deleted(12)], rows)) == []
    assert list(merge(ROOM, [], [])) == []


def test_a_soft_deleted_or_purged_row_absent_from_the_read_model_is_the_same() -> None:
    assert list(merge(ROOM, [deleted(3), deleted(4)], [])) == []


def test_missing_and_extra_are_told_apart_and_say_what_the_monolith_has() -> None:
    found = candidates(
        [live(msg(1)), live(msg(2, "only in the monolith")), deleted(3)],
        [msg(1), msg(3, "soft-deleted in the monolith"), msg(4, "purged in the monolith")],
    )
    shown = [(c.message_id, d.kind, d.field, d.legacy, d.new) for c in found for d in c.differences]
    assert shown == [
        (2, Kind.MISSING_IN_NEW, "message",
         {"account_id": 1, "body": "only in the monolith", "send_time": 100, "update_time": 0},
         ABSENT),
        (3, Kind.EXTRA_IN_NEW, "message", DELETED,
         {"account_id": 1, "body": "soft-deleted in the monolith", "send_time": 100,
          "update_time": 0}),
        (4, Kind.EXTRA_IN_NEW, "message", ABSENT,
         {"account_id": 1, "body": "purged in the monolith", "send_time": 100, "update_time": 0}),
    ]  # fmt: skip


def test_an_older_state_in_the_read_model_is_stale_in_every_field_that_differs() -> None:
    (found,) = candidates([live(msg(8, "edited", update=200))], [msg(8, "original", update=150)])
    assert [(d.kind, d.field, d.legacy, d.new) for d in found.differences] == [
        (Kind.STALE, "body", "edited", "original"),
        (Kind.STALE, "update_time", 200, 150),
    ]


def test_the_same_update_time_with_another_value_is_field_differs() -> None:
    (found,) = candidates(
        [live(msg(8, "<b>x</b>", update=200, account=3, send=10))],
        [msg(8, "<b>y</b>", update=200, account=4, send=11)],
    )
    assert [(d.kind, d.field, d.legacy, d.new) for d in found.differences] == [
        (Kind.FIELD_DIFFERS, "account_id", 3, 4),
        (Kind.FIELD_DIFFERS, "body", "<b>x</b>", "<b>y</b>"),
        (Kind.FIELD_DIFFERS, "send_time", 10, 11),
    ]
    # A newer update_time in the read model than in the monolith is not "stale" either.
    (ahead,) = candidates([live(msg(8, update=100))], [msg(8, update=200)])
    assert [d.kind for d in ahead.differences] == [Kind.FIELD_DIFFERS]


def test_unreadable_rows_are_reported_with_why_and_the_value_migrated() -> None:
    bad = msg(4, "\ufffd\ufffd", send=0)
    found = list(
        merge(
            ROOM,
            [live(bad, "body_raw is not UTF-8 (2 bytes): invalid sequences shown as U+FFFD",
                  "send_time is NULL and created_at is NULL: send time shown as 0")],
            [bad],
        )
    )  # fmt: skip
    assert found == [
        Difference(ROOM, Kind.UNREADABLE_LEGACY, 4, None, "body",
                   "body_raw is not UTF-8 (2 bytes): invalid sequences shown as U+FFFD",
                   "\ufffd\ufffd"),
        Difference(ROOM, Kind.UNREADABLE_LEGACY, 4, None, "send_time",
                   "send_time is NULL and created_at is NULL: send time shown as 0", 0),
    ]  # fmt: skip
    assert not any(isinstance(d, Difference) and d.blocking for d in found)


def test_between_counts_read_model_rows_that_agreed_since_the_previous_candidate() -> None:
    rows = [msg(i) for i in range(1, 8)]
    legacy = [live(m) for m in rows]
    new = [m for m in rows if m.message_id not in (2, 6)]
    assert [(c.message_id, c.between) for c in candidates(legacy, new)] == [(2, 1), (6, 3)]


@pytest.mark.parametrize(
    ("legacy", "new"),
    [
        ([live(msg(2)), live(msg(1))], []),
        ([], [msg(3), msg(3)]),
        ([live(Message(ROOM + 1, 1, 1, "x", 1, 0))], []),
        ([], [Message(ROOM + 1, 1, 1, "x", 1, 0)]),
    ],
)
def test_a_side_out_of_order_or_of_another_room_is_refused(
    legacy: list[LegacyRow], new: list[Message]
) -> None:
    with pytest.raises(ValueError, match=f"room {ROOM}"):
        list(merge(ROOM, legacy, new))


def test_the_merge_holds_one_row_of_each_side_at_a_time() -> None:
    """Both sides are consumed as the merge goes: a room of any size streams."""
    pulled = {"legacy": 0, "new": 0}

    def legacy_side() -> Iterator[LegacyRow]:
        for i in range(1, 100_001):
            pulled["legacy"] += 1
            yield live(msg(i))

    def new_side() -> Iterator[Message]:
        for i in range(1, 100_001):
            pulled["new"] += 1
            yield msg(i, "other" if i == 50_000 else "hi")

    walk = merge(ROOM, legacy_side(), new_side())
    first = next(walk)
    assert isinstance(first, MessageCandidate) and first.message_id == 50_000
    assert pulled["legacy"] <= 50_001 and pulled["new"] <= 50_001
    assert list(walk) == []


def test_long_bodies_are_cut_at_the_same_place_around_where_they_part() -> None:
    common = "あ" * 30_000
    (found,) = candidates(
        [live(msg(1, common + "[info]新しい[/info]" + "x" * 9000))],
        [msg(1, common + "[info]古い[/info]" + "x" * 9000)],
    )
    (body,) = found.differences
    assert isinstance(body.legacy, str) and isinstance(body.new, str)
    assert "[info]新しい" in body.legacy and "[info]古い" in body.new
    assert body.legacy.startswith("… (29806 chars as on the other side) ")
    assert len(body.legacy) < MAX_TEXT + 100 and body.legacy.endswith("(39016 chars)")
    assert body.new.endswith("(39015 chars)")


# -- cursors -----------------------------------------------------------------------------------


def test_cursors_missing_and_differing() -> None:
    mine = ReadCursor(ROOM, 42, 10, 12)
    assert compare_cursor(ROOM, mine, mine) is None
    missing = compare_cursor(ROOM, mine, None)
    assert missing is not None
    assert [(d.kind, d.account_id, d.field, d.legacy, d.new) for d in missing.differences] == [
        (Kind.CURSOR_MISSING, 42, "cursor",
         {"last_read_message_id": "10", "last_fetched_message_id": "12"}, ABSENT),
    ]  # fmt: skip
    differs = compare_cursor(ROOM, mine, ReadCursor(ROOM, 42, 9, 12))
    assert differs is not None
    assert [(d.kind, d.field, d.legacy, d.new) for d in differs.differences] == [
        (Kind.CURSOR_DIFFERS, "last_read_message_id", "10", "9")
    ]
    assert differs.differences[0].key == ("cursor", 42)


# -- re-checks ---------------------------------------------------------------------------------


def test_a_recheck_settles_lag_confirms_a_held_difference_and_follows_a_change() -> None:
    (seen,) = candidates([live(msg(5, "v2", update=20))], [msg(5, "v1", update=10)])
    assert recheck_message(seen, msg(5, "v2", update=20), msg(5, "v2", update=20)) == Settled()
    held = recheck_message(seen, msg(5, "v2", update=20), msg(5, "v1", update=10))
    assert isinstance(held, Confirmed)
    assert [(d.kind, d.field) for d in held.differences] == [
        (Kind.STALE, "body"), (Kind.STALE, "update_time")
    ]  # fmt: skip
    moved = recheck_message(seen, msg(5, "v3", update=30), msg(5, "v2", update=20))
    assert isinstance(moved, Changed) and isinstance(moved.next, MessageCandidate)
    assert moved.next.legacy == msg(5, "v3", update=30)
    # Then, at the next frontier, from the state just read:
    assert isinstance(recheck_message(moved.next, msg(5, "v3", update=30), None), Confirmed)


def test_a_recheck_keeps_how_the_row_was_gone_only_while_it_stays_gone() -> None:
    (extra,) = candidates([deleted(6)], [msg(6)])
    held = recheck_message(extra, None, msg(6))
    assert isinstance(held, Confirmed) and held.differences[0].legacy == DELETED
    (missing,) = candidates([live(msg(6))], [])
    gone = recheck_message(missing, None, msg(6))
    assert isinstance(gone, Changed) and gone.next.differences[0].legacy == GONE
    assert recheck_message(missing, None, None) == Settled()  # deleted meanwhile, both agree


def test_a_recheck_settles_on_a_state_the_monolith_showed_after_the_frontier() -> None:
    (seen,) = candidates([live(msg(5, "v2", update=20))], [msg(5, "v1", update=10)])
    v3, v4 = msg(5, "v3", update=30), msg(5, "v4", update=40)
    # The read model holds v3, which the monolith showed after the frontier; it shows v4 now.
    assert recheck_message(seen, v4, v3, {state_digest(v3), state_digest(v4)}) == Settled()
    # Not seen after the frontier: the row changed, re-checked again.
    assert isinstance(recheck_message(seen, v4, v3, {state_digest(v4)}), Changed)
    # The same now as before the frontier, but another state in between: changed, not held.
    back = recheck_message(seen, msg(5, "v2", update=20), msg(5, "v1", update=10),
                           {state_digest(v3)})  # fmt: skip
    assert isinstance(back, Changed)
    held = recheck_message(seen, msg(5, "v2", update=20), msg(5, "v1", update=10),
                           {state_digest(msg(5, "v2", update=20))})  # fmt: skip
    assert isinstance(held, Confirmed)
    assert state_digest(None) != state_digest(msg(5, "", update=0))
    cursor = CursorCandidate(ROOM, 3, ReadCursor(ROOM, 3, 10, 10), ())
    later = ReadCursor(ROOM, 3, 12, 12)
    assert recheck_cursor(cursor, ReadCursor(ROOM, 3, 14, 14), later, {state_digest(later)}) == (
        Settled()
    )


def test_a_cursor_recheck() -> None:
    seen = CursorCandidate(ROOM, 3, ReadCursor(ROOM, 3, 10, 10), ())
    assert recheck_cursor(seen, ReadCursor(ROOM, 3, 10, 10), ReadCursor(ROOM, 3, 10, 10)) == (
        Settled()
    )
    assert isinstance(recheck_cursor(seen, ReadCursor(ROOM, 3, 10, 10), None), Confirmed)
    assert isinstance(
        recheck_cursor(seen, ReadCursor(ROOM, 3, 11, 11), ReadCursor(ROOM, 3, 10, 10)), Changed
    )
    assert recheck_cursor(seen, None, ReadCursor(ROOM, 3, 10, 10)) == Settled()


# -- verdicts ----------------------------------------------------------------------------------


def test_verdicts() -> None:
    assert verdict_of(0, 0, None) == (Verdict.CLEAN, None)
    assert verdict_of(2, 0, None) == (Verdict.DIFFERENT, None)
    verdict, why = verdict_of(1, 3, None)
    assert verdict is Verdict.DIFFERENT and why is not None and "3 row(s) kept changing" in why
    assert verdict_of(0, 0, "the pipeline did not reach it") == (
        Verdict.LATE, "the pipeline did not reach it"
    )  # fmt: skip
    assert verdict_of(0, 1, None)[0] is Verdict.LATE


def test_positions_say_against_which_frontiers() -> None:
    result = RoomResult(
        ROOM, Verdict.CLEAN, compared_at=Frontier("mariadb-bin.000005:1234", 1_700_000_000.0),
        settled_at=Frontier("mariadb-bin.000005:9999", 1_700_000_010.0), legacy_rows=12, cursors=3,
    )  # fmt: skip
    assert result.positions() == (
        "compared at binlog mariadb-bin.000005:1234 at 2023-11-14T22:13:20Z; re-checked at "
        "binlog mariadb-bin.000005:9999 at 2023-11-14T22:13:30Z; 12 rows, 3 cursors"
    )


def test_binlog_order_uses_the_file_number() -> None:
    assert binlog_order("mariadb-bin.999999:50") < binlog_order("mariadb-bin.1000000:4")
    assert binlog_order("mariadb-bin.000005:4") < binlog_order("mariadb-bin.000005:400")
    for bad in ("", "mariadb-bin.000005", "mariadb-bin:4", "mariadb-bin.x:4", "a.1:-4"):
        with pytest.raises(ValueError, match="not a binlog position"):
            binlog_order(bad)


# -- the document ------------------------------------------------------------------------------


def sample() -> ParityResult:
    header = Header(
        run="20240501T000000Z-abc", started_at=1_714_521_600.5, selection="7,8", who="ops",
        frontier=Frontier("mariadb-bin.000005:4096", 1_714_521_600.25),
        settings={"page": 1000, "recheck_rounds": 3},
    )  # fmt: skip
    differences = [
        Difference(ROOM, Kind.STALE, 2**63 + 5, None, "body",
                   '[qt]<script>alert("x")</script>[/qt] 日本語 😀', "old & <b>"),
        Difference(ROOM, Kind.MISSING_IN_NEW, 9, None, "message", {"body": "x"}, ABSENT),
        Difference(ROOM, Kind.CURSOR_DIFFERS, None, 42, "last_read_message_id", "10", "9"),
    ]  # fmt: skip
    counts = parity.zero_counts()
    counts[Kind.STALE] = counts[Kind.MISSING_IN_NEW] = counts[Kind.CURSOR_DIFFERS] = 1
    rooms = [
        RoomReport(
            RoomResult(
                ROOM,
                Verdict.DIFFERENT,
                compared_at=header.frontier,
                legacy_rows=10,
                new_messages=9,
                cursors=2,
                counts=counts,
                rechecked=4,
                seconds=0.5,
            ),
            differences,
        ),
        RoomReport(RoomResult(8, Verdict.CLEAN, marked_clean=True, legacy_rows=3), []),
        RoomReport(RoomResult(9, Verdict.LATE, reason="not reached in 120 s"), []),
    ]
    tally = Tally()
    for room in rooms:
        tally.add(room.result)
    return ParityResult(header, rooms, tally.summary(1_714_521_700.0, 99.5))


def test_a_result_survives_encode_and_decode() -> None:
    result = sample()
    text = encode(result)
    head = json.loads(text)
    assert list(head)[:2] == ["schema", "version"]
    assert head["schema"] == "chat-migration/parity" and head["version"] == 1
    assert head["rooms"][0]["differences"][0]["message_id"] == str(2**63 + 5)
    assert "日本語 😀" in text  # readable, not \\u-escaped
    again = decode(text)
    assert again.header == result.header
    assert again.summary == result.summary
    assert [(r.result, r.differences) for r in again.rooms] == [
        (r.result, r.differences) for r in result.rooms
    ]
    assert decode(text.encode()) == again
    assert result.summary.rooms[Verdict.DIFFERENT] == 1
    assert result.summary.marked_clean == 1 and result.summary.legacy_rows == 13


def test_the_stream_reader_reads_any_layout_in_small_pieces(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = encode(sample())
    pretty = json.dumps(json.loads(text), indent=3, ensure_ascii=True)  # same keys, same order
    monkeypatch.setattr(parity._Text, "CHUNK", 7)  # values and numbers cut across pieces
    for layout in (text, pretty):
        items = list(read_document(io.StringIO(layout).read))
        assert [type(i).__name__ for i in items] == [
            "Header", "Difference", "Difference", "Difference", "RoomResult", "RoomResult",
            "RoomResult", "Summary",
        ]  # fmt: skip
        assert items[-1] == sample().summary


def test_the_writer_streams_and_refuses_misuse() -> None:
    pieces: list[str] = []
    writer = DocumentWriter(pieces.append, sample().header)
    writer.start_room(1)
    with pytest.raises(RuntimeError):
        writer.difference(Difference(2, Kind.STALE, 1, None, "body", "a", "b"))
    with pytest.raises(RuntimeError):
        writer.start_room(2)
    with pytest.raises(RuntimeError):
        writer.close(sample().summary)
    writer.end_room(RoomResult(1, Verdict.CLEAN))
    writer.close(sample().summary)
    assert decode("".join(pieces)).rooms[0].result.room_id == 1


@pytest.mark.parametrize(
    ("document", "said"),
    [
        ('{"schema": "chat-migration/parity", "version": 2, "rooms": []}',
         "schema 'chat-migration/parity' version 2"),
        ('{"schema": "chat-migration/backfill", "version": 1}', "schema 'chat-migration/backfill'"),
        ('{"version": 1, "schema": "chat-migration/parity"}', "first keys are not schema"),
        ("[1, 2]", "a parity result is a JSON object"),
        ("", "the end of the text"),
        ("{}", "schema None version None"),
    ],
)  # fmt: skip
def test_another_schema_or_version_is_refused_saying_what_was_found_and_what_to_do(
    document: str, said: str
) -> None:
    with pytest.raises(WrongReportVersion) as refused:
        decode(document)
    assert said in str(refused.value)
    assert "chat-migrate parity" in str(refused.value)


def test_a_damaged_or_unfinished_result_is_refused() -> None:
    text = encode(sample())
    unfinished = text[: text.index('"summary"')]
    with pytest.raises(WrongReportVersion, match="not a parity result"):
        decode(unfinished)
    no_summary = text[: text.index(',\n"summary"')] + "}"
    with pytest.raises(WrongReportVersion, match="no summary: the run that wrote it did not"):
        decode(no_summary)
    for old, new, said in (
        ('"kind": "stale"', '"kind": "weird"', "unknown kind"),
        (f'"message_id": "{2**63 + 5}"', '"message_id": 5', "digit string"),
        ('"verdict": "late"', '"verdict": "maybe"', "unknown verdict"),
        ('"legacy_rows": 10', '"legacy_rows": -1', "non-negative"),
        ('"account_id": 42', '"account_id": null', "names"),
    ):
        assert old in text, old
        with pytest.raises(WrongReportVersion, match=said):
            decode(text.replace(old, new, 1))
    with pytest.raises(WrongReportVersion, match="not UTF-8"):
        decode(b'{"schema": "\xff"}')
    with pytest.raises(WrongReportVersion, match="after the document's end"):
        decode(text + "{}")


def test_summary_counts_every_kind_and_verdict() -> None:
    summary: Summary = sample().summary
    assert set(summary.differences) == set(Kind) and set(summary.rooms) == set(Verdict)
