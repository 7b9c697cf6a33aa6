"""A successful write gives its hints; a refused one, a read, or an unreadable answer none."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.domain.capture import NO_HINTS, HintsAfter, Malformed, hints_after
from gateway.domain.routing import OTHER, Route, RouteKind
from newcore.domain.hints import CursorHint, MessageHint

ROOM = 7
ACCOUNT = 42
LIST_UNFORCED = Route(RouteKind.LIST, ROOM, None, False)
LIST_FORCED = Route(RouteKind.LIST, ROOM, None, True)
LIST_REFUSED = Route(RouteKind.LIST, ROOM, None, None)  # force=2: the monolith answers 400
POST = Route(RouteKind.POST, ROOM)
EDIT = Route(RouteKind.EDIT, ROOM, 123456789012345678)
DELETE = Route(RouteKind.DELETE, ROOM, 5)
READ = Route(RouteKind.READ, ROOM)
UNREAD = Route(RouteKind.UNREAD, ROOM)
ONE = Route(RouteKind.ONE, ROOM, 5)
MESSAGES = b'[{"message_id":"5","account":{"account_id":42,"name":"a","avatar_image_url":"u"},"body":"hi","send_time":1,"update_time":0}]'


def test_a_post_hints_the_id_the_monolith_gave() -> None:
    after = hints_after(POST, 200, b'{"message_id":"123456789012345678"}', ACCOUNT)
    assert after == HintsAfter((MessageHint(ROOM, 123456789012345678),))


def test_an_edit_or_delete_hints_the_id_of_its_path_without_reading_the_answer() -> None:
    assert hints_after(EDIT, 200, b"not even json", None).hints == (
        MessageHint(ROOM, 123456789012345678),
    )
    assert hints_after(DELETE, 200, b'{"message_id":"5"}', None).hints == (MessageHint(ROOM, 5),)


@pytest.mark.parametrize("route", [READ, UNREAD])
def test_read_and_unread_hint_the_accounts_cursor(route: Route) -> None:
    answer = b'{"unread_num":0,"mention_num":0}'
    assert hints_after(route, 200, answer, ACCOUNT) == HintsAfter((CursorHint(ROOM, ACCOUNT),))


def test_an_unforced_list_with_messages_moved_the_cursor() -> None:
    assert hints_after(LIST_UNFORCED, 200, MESSAGES, ACCOUNT).hints == (CursorHint(ROOM, ACCOUNT),)
    # whitespace JSON allows before and inside the array
    assert hints_after(LIST_UNFORCED, 200, b' \n[ {"message_id":"5"}]', ACCOUNT).hints == (
        CursorHint(ROOM, ACCOUNT),
    )


def test_an_unforced_list_answered_204_moved_nothing() -> None:
    assert hints_after(LIST_UNFORCED, 204, b"", ACCOUNT) == NO_HINTS


@pytest.mark.parametrize("answer", [b"[]", b"[ ]", b"{}", b"", b"null", b"<html>", b"\xff["])
def test_an_unforced_list_answered_200_without_messages_is_counted_not_hinted(
    answer: bytes,
) -> None:
    # The monolith moves the cursor only when it returns messages, and answers 204 otherwise.
    assert hints_after(LIST_UNFORCED, 200, answer, ACCOUNT) == HintsAfter(
        malformed=Malformed.NOT_A_MESSAGE_ARRAY
    )


@pytest.mark.parametrize(
    "route", [LIST_FORCED, LIST_REFUSED, ONE, OTHER, Route(RouteKind.OTHER, ROOM)]
)
def test_reads_and_other_endpoints_give_no_hint(route: Route) -> None:
    assert hints_after(route, 200, MESSAGES, ACCOUNT) == NO_HINTS


@pytest.mark.parametrize("route", [POST, EDIT, DELETE, READ, UNREAD, LIST_UNFORCED])
@pytest.mark.parametrize("status", [100, 199, 301, 304, 400, 401, 403, 404, 405, 429, 500, 503])
def test_no_hint_follows_an_answer_that_is_not_2xx(route: Route, status: int) -> None:
    # e.g. PUT .../read on a room already read answers 400: nothing moved.
    answer = b'{"errors":["The messages are already read"]}'
    assert hints_after(route, status, answer, ACCOUNT) == NO_HINTS
    assert hints_after(route, status, b'{"message_id":"5"}', ACCOUNT) == NO_HINTS


@pytest.mark.parametrize("route", [EDIT, DELETE, READ, UNREAD])
def test_a_write_answered_with_another_2xx_still_committed(route: Route) -> None:
    assert hints_after(route, 204, b"", ACCOUNT).hints != ()


@pytest.mark.parametrize("route", [READ, UNREAD, LIST_UNFORCED])
def test_a_cursor_hint_without_a_known_account_asks_the_caller_to_resolve_it(
    route: Route,
) -> None:
    answer = MESSAGES if route is LIST_UNFORCED else b'{"unread_num":0,"mention_num":0}'
    assert hints_after(route, 200, answer, None) == HintsAfter(cursor_needs_account=True)


def test_message_hints_never_need_the_account() -> None:
    assert hints_after(POST, 200, b'{"message_id":"9"}', None) == HintsAfter(
        (MessageHint(ROOM, 9),)
    )


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (b"", Malformed.NOT_JSON),
        (b"<html>502</html>", Malformed.NOT_JSON),
        (b'{"message_id":"5"', Malformed.NOT_JSON),
        (b'{"message_id":"\xff"}', Malformed.NOT_JSON),  # not UTF-8
        (b"[" * 100_000, Malformed.NOT_JSON),  # deeper than the stack
        (b"[]", Malformed.NO_MESSAGE_ID),
        (b'"5"', Malformed.NO_MESSAGE_ID),
        (b"{}", Malformed.NO_MESSAGE_ID),
        (b'{"id":"5"}', Malformed.NO_MESSAGE_ID),
        (b'{"message_id":5}', Malformed.MESSAGE_ID_NOT_DIGITS),  # the contract's ids are strings
        (b'{"message_id":null}', Malformed.MESSAGE_ID_NOT_DIGITS),
        (b'{"message_id":""}', Malformed.MESSAGE_ID_NOT_DIGITS),
        (b'{"message_id":"0"}', Malformed.MESSAGE_ID_NOT_DIGITS),
        (b'{"message_id":"05"}', Malformed.MESSAGE_ID_NOT_DIGITS),
        (b'{"message_id":"-5"}', Malformed.MESSAGE_ID_NOT_DIGITS),
        (b'{"message_id":" 5"}', Malformed.MESSAGE_ID_NOT_DIGITS),
        (b'{"message_id":"5\\n"}', Malformed.MESSAGE_ID_NOT_DIGITS),
        (b'{"message_id":"\\u0665"}', Malformed.MESSAGE_ID_NOT_DIGITS),  # an Arabic-Indic 5
        (b'{"message_id":"18446744073709551616"}', Malformed.MESSAGE_ID_NOT_DIGITS),  # 2^64
        (b'{"message_id":"123456789012345678901"}', Malformed.MESSAGE_ID_NOT_DIGITS),
    ],
)
def test_an_unreadable_post_answer_gives_a_reason_not_a_hint(
    answer: bytes, reason: Malformed
) -> None:
    assert hints_after(POST, 200, answer, ACCOUNT) == HintsAfter(malformed=reason)


def test_the_largest_id_fits_a_hint() -> None:
    after = hints_after(POST, 200, b'{"message_id":"18446744073709551615"}', ACCOUNT)
    assert after.hints == (MessageHint(ROOM, 2**64 - 1),)


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(list(RouteKind)),
    force=st.sampled_from([True, False, None]),
    status=st.integers(min_value=0, max_value=999),
    answer=st.binary(max_size=60) | st.just(b'{"message_id":"1"}'),
    account=st.none() | st.integers(min_value=1, max_value=2**32),
)
def test_hints_after_never_raises_and_hints_only_after_a_2xx(
    kind: RouteKind, force: bool | None, status: int, answer: bytes, account: int | None
) -> None:
    route = Route(kind, ROOM, 5 if kind in (RouteKind.EDIT, RouteKind.DELETE) else None, force)
    after = hints_after(route, status, answer, account)
    if not 200 <= status < 300:
        assert after == NO_HINTS
    assert not (after.hints and after.malformed)
    assert not (after.cursor_needs_account and account is not None)
