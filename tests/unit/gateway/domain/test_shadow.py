"""Shadow comparison rules, one test per rule of gateway/domain/shadow.py's table, and the
policy that tells late from different."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.domain.routing import Route, RouteKind
from gateway.domain.shadow import (
    ABSENT,
    SMALL_LIST,
    SMALL_TEXT,
    AskAgain,
    Difference,
    Outcome,
    ShadowVerdict,
    compare,
    frontier_reached,
    should_retry,
    small,
)

LIST = Route(RouteKind.LIST, 7, None, True)
ONE = Route(RouteKind.ONE, 7, 5)


def message(message_id: str = "5", **changes: Any) -> dict[str, Any]:
    account = {"account_id": 42, "name": "佐藤", "avatar_image_url": "https://a/1.png"}
    account.update(changes.pop("account", {}))
    value: dict[str, Any] = {
        "message_id": message_id,
        "account": account,
        "body": "[To:123] こんにちは 👋",
        "send_time": 1700000000,
        "update_time": 0,
    }
    value.update(changes)
    return value


def body(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def compare_lists(monolith: list[Any], new: list[Any]) -> list[Difference]:
    return compare(LIST, 200, body(monolith), 200, body(new))


# --- same ------------------------------------------------------------------------------------


def test_the_same_answer_is_the_same_whatever_the_key_order_and_spacing() -> None:
    monolith = [message("5"), message("6")]
    new = json.dumps([dict(reversed(m.items())) for m in monolith], indent=2).encode()
    assert compare(LIST, 200, body(monolith), 200, new) == []
    assert compare(ONE, 200, body(message()), 200, body(message())) == []


# --- status and errors -------------------------------------------------------------------------


def test_the_status_is_always_compared() -> None:
    errors = body({"errors": ["Room not found"]})
    assert compare(LIST, 404, errors, 403, errors) == [Difference(None, "status", 404, 403)]


def test_error_bodies_are_compared_by_their_errors_array() -> None:
    monolith = body({"errors": ["The messages are already read"]})
    same_errors = b'{ "errors" : ["The messages are already read"], "extra": 1 }'
    assert compare(LIST, 400, monolith, 400, same_errors) == []
    other = body({"errors": ["Invalid value for parameter 'force'"]})
    assert compare(LIST, 400, monolith, 400, other) == [
        Difference(
            None,
            "errors",
            ["The messages are already read"],
            ["Invalid value for parameter 'force'"],
        )
    ]


def test_errors_without_an_errors_array_are_compared_as_bytes() -> None:
    assert compare(ONE, 502, b"<html>bad gateway</html>", 502, b"<html>bad gateway</html>") == []
    assert compare(ONE, 500, b"oops", 500, body({"errors": ["x"]})) == [
        Difference(None, "body_bytes", "oops", '{"errors": ["x"]}')
    ]


def test_an_error_on_one_side_only_says_what_the_error_said() -> None:
    failed = body({"errors": ["Internal server error"]})
    assert compare(ONE, 200, body(message()), 500, failed) == [
        Difference(None, "status", 200, 500),
        Difference(None, "errors", ABSENT, ["Internal server error"]),
    ]
    assert compare(LIST, 404, body({"errors": ["Room not found"]}), 204, b"") == [
        Difference(None, "status", 404, 204),
        Difference(None, "errors", ["Room not found"], ABSENT),
    ]
    assert compare(ONE, 200, body(message()), 502, b"<html>") == [
        Difference(None, "status", 200, 502),
        Difference(None, "errors", ABSENT, "<html>"),
    ]


# --- message lists -----------------------------------------------------------------------------


def test_a_204_is_no_messages() -> None:
    assert compare(LIST, 204, b"", 204, b"") == []
    # a 204 against a 200 [] differs by its status only
    assert compare(LIST, 204, b"", 200, b"[]") == [Difference(None, "status", 204, 200)]
    # against messages: the status, and each message the 204 did not have
    assert compare(LIST, 200, body([message("5")]), 204, b"") == [
        Difference(None, "status", 200, 204),
        Difference("5", "presence", "present", "absent"),
    ]


def test_a_missing_or_extra_message_is_one_presence_difference() -> None:
    monolith = [message("5"), message("7"), message("9")]
    new = [message("5"), message("6"), message("9")]
    assert compare_lists(monolith, new) == [
        Difference("7", "presence", "present", "absent"),
        Difference("6", "presence", "absent", "present"),
    ]


def test_a_duplicated_message_is_a_presence_difference() -> None:
    assert compare_lists([message("5")], [message("5"), message("5")]) == [
        Difference("5", "presence", "present", "present 2 times")
    ]


def test_a_reordered_list_is_different() -> None:
    monolith = [message(str(i)) for i in range(1, 5)]
    new = [monolith[0], monolith[2], monolith[1], monolith[3]]
    assert compare_lists(monolith, new) == [
        Difference(None, "order", ["… 1 in the same order", "2", "3", "4"],
                   ["… 1 in the same order", "3", "2", "4"]),
    ]  # fmt: skip


def test_the_order_is_shown_from_where_it_parts_in_a_small_window() -> None:
    ids = [str(i) for i in range(100, 200)]
    new_ids = [*ids[:50], ids[51], ids[50], *ids[52:]]
    differences = compare_lists([message(i) for i in ids], [message(i) for i in new_ids])
    assert [d.field for d in differences] == ["order"]
    shown = differences[0].monolith
    assert isinstance(shown, list)
    assert shown[0] == "… 50 in the same order"
    assert shown[1:3] == ["150", "151"]
    assert shown[-1] == "… (100 ids)"
    assert len(shown) == 12


def test_presence_and_order_are_told_apart() -> None:
    # 6 missing, the others in the same order: presence only, no order difference
    assert [d.field for d in compare_lists([message("5"), message("6"), message("7")],
                                           [message("5"), message("7")])] == ["presence"]  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "field", "monolith", "new"),
    [
        ({"body": "edited"}, "body", "[To:123] こんにちは 👋", "edited"),
        ({"send_time": 1700000001}, "send_time", 1700000000, 1700000001),
        ({"update_time": -1}, "update_time", 0, -1),  # older on the new side (a later one is ahead)
        ({"account": {"account_id": 43}}, "account.account_id", 42, 43),
        ({"send_time": 1700000000.0}, "send_time", 1700000000, 1700000000.0),
        ({"update_time": False}, "update_time", 0, False),
        ({"account": {"account_id": "42"}}, "account.account_id", 42, "42"),
        ({"body": None}, "body", "[To:123] こんにちは 👋", None),
    ],
)
def test_each_compared_field_of_a_message_by_type_and_value(
    changes: dict[str, Any], field: str, monolith: object, new: object
) -> None:
    expected = [Difference("5", field, monolith, new)]
    assert compare_lists([message("5")], [message("5", **changes)]) == expected
    assert compare(ONE, 200, body(message("5")), 200, body(message("5", **changes))) == expected


def test_a_missing_compared_field_is_absent() -> None:
    new = message("5")
    del new["update_time"]
    assert compare_lists([message("5")], [new]) == [Difference("5", "update_time", 0, ABSENT)]


def test_an_id_as_a_number_is_the_same_message_with_a_different_id() -> None:
    new = message("5")
    new["message_id"] = 5
    assert compare_lists([message("5")], [new]) == [Difference("5", "message_id", "5", 5)]


def test_account_name_and_avatar_values_are_ignored() -> None:
    renamed = message("5", account={"name": "鈴木", "avatar_image_url": "https://a/2.png"})
    assert compare_lists([message("5")], [renamed]) == []
    assert compare(ONE, 200, body(message("5")), 200, body(renamed)) == []
    withdrawn = message("5", account={"name": "", "avatar_image_url": "https://default"})
    assert compare_lists([message("5")], [withdrawn]) == []


def test_the_keys_of_a_message_and_its_account_are_compared() -> None:
    no_avatar = message("5")
    del no_avatar["account"]["avatar_image_url"]
    assert compare_lists([message("5")], [no_avatar]) == [
        Difference("5", "account.keys", ["avatar_image_url", "name"], ["name"])
    ]
    extra = message("5", room_id=7)
    assert compare_lists([message("5")], [extra]) == [Difference("5", "keys", [], ["room_id"])]


def test_an_account_that_is_not_an_object_is_compared_whole() -> None:
    assert compare_lists([message("5")], [message("5") | {"account": None}]) == [
        Difference("5", "account", message("5")["account"], None)
    ]


def test_a_list_without_the_contracts_shape_is_compared_whole() -> None:
    assert compare(LIST, 200, body([message("5")]), 200, b'{"messages": []}') == [
        Difference(None, "json", [message("5")], {"messages": []})
    ]
    assert compare(LIST, 200, b"[1, 2]", 200, b"[1, 2]") == []
    assert compare(LIST, 200, b'[{"no_id": 1}]', 200, b"[]") == [
        Difference(None, "json", [{"no_id": 1}], [])
    ]


def test_a_one_message_answer_names_the_message_of_the_path() -> None:
    assert compare(ONE, 200, body(message("5")), 200, body(message("5", body="x"))) == [
        Difference("5", "body", "[To:123] こんにちは 👋", "x")
    ]
    assert compare(ONE, 200, body(message("5")), 200, b"[]") == [
        Difference(None, "json", message("5"), [])
    ]


def test_other_answers_are_compared_key_by_key() -> None:
    read = Route(RouteKind.READ, 7)
    assert compare(read, 200, b'{"unread_num":1,"mention_num":0}',
                   200, b'{"mention_num":0,"unread_num":2}') == [
        Difference(None, "unread_num", 1, 2)
    ]  # fmt: skip
    post = Route(RouteKind.POST, 7)
    assert compare(post, 200, b'{"message_id":"5"}', 200, b"{}") == [
        Difference(None, "message_id", "5", ABSENT)
    ]
    assert compare(post, 200, b'"5"', 200, b"5") == [Difference(None, "json", "5", 5)]


# --- bytes and small values -------------------------------------------------------------------


def test_bodies_that_are_not_json_are_compared_as_bytes() -> None:
    assert compare(LIST, 200, b"<html>", 200, b"<html>") == []
    assert compare(LIST, 200, b"<html>", 200, body([])) == [
        Difference(None, "body_bytes", "<html>", "[]")
    ]
    assert compare(ONE, 200, body(message()), 200, b"\xff\xfe") == [
        Difference(None, "body_bytes", body(message()).decode(), "\ufffd\ufffd")
    ]


def test_json_nested_as_deep_as_the_parser_allows_is_compared_as_bytes() -> None:
    deep = b"[" * 990 + b"1" + b"]" * 990
    other = b"[" * 990 + b"2" + b"]" * 990
    assert compare(LIST, 200, deep, 200, deep) == []
    differences = compare(Route(RouteKind.READ, 7), 200, deep, 200, other)
    assert [d.field for d in differences] in (["body_bytes"], ["json"])


def test_values_in_differences_stay_small() -> None:
    long_body = "あ" * 65535
    differences = compare_lists([message("5", body=long_body)], [message("5", body="x")])
    assert differences == [Difference("5", "body", "あ" * SMALL_TEXT + "… (65535 chars)", "x")]
    raw = b"\xe3\x81\x82" * 1000
    assert small(raw) == "あ" * SMALL_TEXT + "… (3000 bytes)"
    listed = small(list(range(100)))
    assert listed == [*range(SMALL_LIST), "… (100 items)"]
    big = {"k": "v" * 500}
    shown = small(big)
    assert isinstance(shown, str) and shown.endswith("chars)") and len(shown) < 250


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(list(RouteKind)),
    statuses=st.tuples(
        st.sampled_from([200, 204, 400, 404, 500]), st.sampled_from([200, 204, 400, 404, 500])
    ),
    monolith=st.binary(max_size=60) | st.just(b'[{"message_id":"5"}]'),
    new=st.binary(max_size=60) | st.just(b'[{"message_id":5,"account":1}]'),
)
def test_compare_never_raises_and_the_same_bytes_are_the_same(
    kind: RouteKind, statuses: tuple[int, int], monolith: bytes, new: bytes
) -> None:
    route = Route(kind, 7, 5 if kind is RouteKind.ONE else None, True)
    compare(route, statuses[0], monolith, statuses[1], new)
    assert compare(route, statuses[0], monolith, statuses[0], monolith) == []


# --- when to stop asking -------------------------------------------------------------------------


def test_the_frontier_is_reached_at_or_after_it() -> None:
    assert frontier_reached(10, 10)
    assert frontier_reached(11, 10)
    assert not frontier_reached(9, 10)
    assert not frontier_reached(None, 10)
    assert frontier_reached(None, 0)  # no hint before the answer: nothing to wait for
    assert frontier_reached(3, 0)


@pytest.mark.parametrize("reached", [True, False])
@pytest.mark.parametrize("elapsed_ms", [0.0, 500.0, 5000.0])
def test_the_same_answer_at_any_attempt_is_same(reached: bool, elapsed_ms: float) -> None:
    decision = should_retry(
        differs=False, frontier_reached=reached, elapsed_ms=elapsed_ms, timeout_ms=1000.0
    )
    assert decision is Outcome.SAME


@pytest.mark.parametrize("reached", [True, False])
def test_a_different_answer_is_asked_again_before_the_timeout(reached: bool) -> None:
    decision = should_retry(
        differs=True, frontier_reached=reached, elapsed_ms=999.0, timeout_ms=1000.0
    )
    assert decision is AskAgain.ASK_AGAIN


def test_below_the_frontier_at_the_timeout_is_late() -> None:
    decision = should_retry(
        differs=True, frontier_reached=False, elapsed_ms=1000.0, timeout_ms=1000.0
    )
    assert decision is Outcome.LATE


def test_at_the_frontier_and_still_different_at_the_timeout_is_different() -> None:
    decision = should_retry(
        differs=True, frontier_reached=True, elapsed_ms=1500.0, timeout_ms=1000.0
    )
    assert decision is Outcome.DIFFERENT


def test_a_verdict_is_a_plain_record_for_the_service_to_fill() -> None:
    verdict = ShadowVerdict(Outcome.LATE)
    verdict.attempts += 1
    verdict.waited_ms = 12.5
    verdict.differences.append(Difference(None, "status", 200, 500))
    assert verdict == ShadowVerdict(
        Outcome.LATE, [Difference(None, "status", 200, 500)], attempts=1, waited_ms=12.5
    )


# --- the new side ahead (its read came after the monolith's) -------------------------------


def _page(ids: range | list[int], edited: dict[int, int] | None = None) -> bytes:
    edited = edited or {}
    return json.dumps(
        [
            {"message_id": str(i), "account": {"account_id": 1, "name": "a", "avatar_image_url": "u"},
             "body": f"m{i}", "send_time": 10 if i <= 100 else ANSWERED, "update_time": edited.get(i, 0)}
            for i in ids
        ]
    ).encode()  # fmt: skip


FORCE1 = Route(RouteKind.LIST, room_id=1, force=True)
ANSWERED = 1000  # the second the monolith answered in; messages above id 100 are sent then


def test_messages_posted_after_the_monolith_read_are_not_differences() -> None:
    new = _page([*range(1, 51), 101, 102])
    assert compare(FORCE1, 200, _page(range(1, 51)), 200, new, ANSWERED) == []


FORCE0 = Route(RouteKind.LIST, room_id=1, force=False)


def test_a_204_against_only_messages_posted_after_it_is_the_same() -> None:
    # Seen in the demo: force=0 answered 204 (nothing new), the client posted, and the Read API
    # asked a few seconds later showed the new posts.
    assert compare(FORCE0, 204, b"", 200, _page([101, 102]), ANSWERED) == []


def test_a_204_against_a_message_sent_before_the_answer_is_a_difference() -> None:
    found = compare(FORCE0, 204, b"", 200, _page([50, 101]), ANSWERED)
    assert [(d.message_id, d.field) for d in found] == [(None, "status"), ("50", "presence")]
    found = compare(FORCE0, 204, b"", 200, _page([101]))  # no answer time: nothing excused
    assert [(d.message_id, d.field) for d in found] == [(None, "status"), ("101", "presence")]


def test_a_newer_message_sent_before_the_answer_is_a_difference_a_lost_delete() -> None:
    found = compare(FORCE1, 200, _page(range(1, 50)), 200, _page(range(1, 51)), ANSWERED)
    assert [(d.message_id, d.field) for d in found] == [("50", "presence")]


def test_without_the_answer_time_nothing_is_excused() -> None:
    found = compare(FORCE1, 200, _page(range(1, 51)), 200, _page([*range(1, 51), 101]))
    assert [(d.message_id, d.field) for d in found] == [("101", "presence")]


def test_a_full_page_may_slide_by_what_was_posted_since() -> None:
    new = _page([*range(3, 101), 101, 102])
    assert compare(FORCE1, 200, _page(range(1, 101)), 200, new, ANSWERED) == []


def test_a_page_that_slid_further_than_what_was_posted_is_a_difference() -> None:
    new = _page([*[i for i in range(3, 101) if i != 50], 101, 102])
    found = compare(FORCE1, 200, _page(range(1, 101)), 200, new, ANSWERED)
    assert [(d.message_id, d.field) for d in found] == [("50", "presence")]


def test_a_missing_old_message_on_a_short_page_is_still_a_difference() -> None:
    found = compare(FORCE1, 200, _page(range(1, 51)), 200, _page([*range(2, 51), 101]), ANSWERED)
    assert [(d.message_id, d.field) for d in found] == [("1", "presence")]


def test_a_later_edit_on_the_new_side_is_ahead_but_an_older_or_early_one_is_not() -> None:
    later = _page([1, 2], {2: ANSWERED + 1})
    assert compare(FORCE1, 200, _page([1, 2]), 200, later, ANSWERED) == []
    for new_time in (ANSWERED - 5, 1):  # before the answer: the monolith would have shown it
        found = compare(FORCE1, 200, _page([1, 2]), 200, _page([1, 2], {2: new_time}), ANSWERED)
        assert [(d.message_id, d.field) for d in found] == [("2", "update_time")]
