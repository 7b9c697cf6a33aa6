"""Which hints the monolith's answer to a request gives (gateway/README.md, "Hints from the
gateway").

A hint only says "look here" (newcore/domain/hints.py), so the rule errs towards hinting: a
hint too many costs the capturer one read, a hint too few is covered by the binlog source,
which captures every committed write whoever made it. What must never happen is a hint for a
request the monolith refused: hints follow a 2xx answer only.

| route | answer | hints |
|---|---|---|
| POST | 2xx `{"message_id": "<digits>"}` | `MessageHint(room, that id)` |
| POST | 2xx, another body | none; `malformed` says why |
| EDIT, DELETE | 2xx | `MessageHint(room, id from the path)` (the body is not read) |
| READ, UNREAD | 2xx | `CursorHint(room, account)` |
| LIST, force=0 | 200 with a non-empty array | `CursorHint(room, account)`: the fetch cursor moved |
| LIST, force=0 | 200 with anything else | none; `malformed` says why (the monolith answers 204, not `[]`, when nothing is new, and moves the cursor only when it returns messages) |
| LIST, force=0 | 204 | none: nothing new, the cursor did not move |
| LIST force=1 or refused, ONE, OTHER | any | none: nothing changed |
| any | not 2xx | none: the monolith refused, nothing changed |

A write answered with another 2xx than the monolith's 200 (a 204 from a future version) still
committed, so EDIT, DELETE, READ and UNREAD hint on any 2xx; a POST then has no id to hint
and says so.

The account of a cursor hint comes from the gateway's token -> account cache, filled off the
request path: when the caller does not know it yet, `cursor_needs_account` asks it to spool
`CursorHint(route.room_id, account)` once the look-up returns.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from gateway.domain.routing import Route, RouteKind
from newcore.domain.hints import CursorHint, MessageHint
from newcore.domain.model import MAX_ID


class Malformed(StrEnum):
    """Why a successful answer that should have given a hint gave none; the caller counts it
    (a monolith answering outside its contract is worth an alert, never an exception)."""

    NOT_JSON = "answer_not_json"
    NO_MESSAGE_ID = "answer_without_message_id"
    MESSAGE_ID_NOT_DIGITS = "message_id_not_digits"
    NOT_A_MESSAGE_ARRAY = "list_answer_not_a_non_empty_array"


@dataclass(frozen=True, slots=True)
class HintsAfter:
    """The hints one answer gives.

    `hints` are ready to spool. `cursor_needs_account`: a `CursorHint` of the route's room is
    due for the requesting account, which the caller did not know. `malformed`: the answer
    should have given a hint and did not, and why.
    """

    hints: tuple[MessageHint | CursorHint, ...] = ()
    cursor_needs_account: bool = False
    malformed: Malformed | None = None


NO_HINTS: Final = HintsAfter()
_CURSOR_NEEDS_ACCOUNT: Final = HintsAfter(cursor_needs_account=True)
_MALFORMED: Final = {reason: HintsAfter(malformed=reason) for reason in Malformed}

# Enum attributes cost a lookup through their class on Python 3.11: bound once here.
_POST, _EDIT, _DELETE = RouteKind.POST, RouteKind.EDIT, RouteKind.DELETE
_READ, _UNREAD, _LIST = RouteKind.READ, RouteKind.UNREAD, RouteKind.LIST

# An array with at least one element: its first bytes decide it, the rest is never scanned.
_NON_EMPTY_ARRAY: Final = re.compile(rb"[ \t\n\r]*\[[ \t\n\r]*[^\] \t\n\r]")
_DIGIT_ID: Final = re.compile(r"[1-9][0-9]{0,19}")


def hints_after(route: Route, status: int, answer: bytes, account_id: int | None) -> HintsAfter:
    """The hints the monolith's `status` and `answer` to a request of `route` give; never
    raises. `account_id` is the requesting account when the caller knows it."""
    if not 200 <= status < 300 or route.room_id is None:
        return NO_HINTS
    kind = route.kind
    room_id = route.room_id
    if kind is _POST:
        return _posted(room_id, answer)
    if kind is _EDIT or kind is _DELETE:
        if route.message_id is None:  # classify never builds one; a hand-made Route might
            return NO_HINTS
        return HintsAfter((MessageHint(room_id, route.message_id),))
    if kind is _READ or kind is _UNREAD:
        return _cursor(room_id, account_id)
    if kind is _LIST and route.force is False and status == 200:
        if _NON_EMPTY_ARRAY.match(answer) is None:
            return _MALFORMED[Malformed.NOT_A_MESSAGE_ARRAY]
        return _cursor(room_id, account_id)
    return NO_HINTS


def _cursor(room_id: int, account_id: int | None) -> HintsAfter:
    if account_id is None:
        return _CURSOR_NEEDS_ACCOUNT
    return HintsAfter((CursorHint(room_id, account_id),))


def _posted(room_id: int, answer: bytes) -> HintsAfter:
    try:
        decoded = json.loads(answer)
    except (ValueError, RecursionError):  # not UTF-8 or not JSON; nested beyond the stack
        return _MALFORMED[Malformed.NOT_JSON]
    if not isinstance(decoded, dict) or "message_id" not in decoded:
        return _MALFORMED[Malformed.NO_MESSAGE_ID]
    message_id = decoded["message_id"]
    # The contract's ids are digit strings; the monolith renders a BIGINT UNSIGNED, so never
    # a leading zero, a sign, 0, or more than 2^64-1. Anything else is not an id we understand.
    if not isinstance(message_id, str) or _DIGIT_ID.fullmatch(message_id) is None:
        return _MALFORMED[Malformed.MESSAGE_ID_NOT_DIGITS]
    number = int(message_id)
    if number > MAX_ID:
        return _MALFORMED[Malformed.MESSAGE_ID_NOT_DIGITS]
    return HintsAfter((MessageHint(room_id, number),))
