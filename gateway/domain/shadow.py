"""Shadow reads: what "the new core answered the same" means, and when to stop asking.

The client always gets the monolith's answer; the same read asked of the Read API is compared
with it (gateway/README.md, "Shadow reads"). A rule below compares what a client can see and
rely on; each field it ignores says why (DESIGN.md, "Parity noise").

| what | rule | field of the Difference |
|---|---|---|
| status | compared always | `status` |
| one side an error (not 2xx), the other not | its `errors` array against `<absent>` (its body text when it has no `errors` array) | `errors` |
| both errors | the `errors` arrays, exactly and in order; a side without one: the bodies as bytes | `errors`, `body_bytes` |
| LIST, both 2xx | a 204 is "no messages", compared as `[]` (so 204 against `[]` is only a `status` difference) | |
| LIST: which messages | the lists of `message_id`s: a message on one side only is one Difference | `presence` (`present`, `absent`, `present N times`) |
| LIST: the new side ahead | the new side is asked after the monolith answered, so it may show later writes: its messages with ids above the monolith's newest (any id, when the monolith had nothing new: a `force=0` 204) *and* a `send_time` at or after the second the monolith answered in are not compared (a 204 against a page of only such messages is the same) (posted after the monolith's read; an older one there is a difference: a lost delete, a foreign row), and on a full page (100) as many of the monolith's oldest are not expected on the new side (they slid out of its window). A deletion after the monolith's read still shows as `presence` (the read model keeps no history to tell it from a lost message) | |
| LIST and ONE: a later edit | a message whose `update_time` on the new side is later than the monolith's *and* at or after the second the monolith answered in is not compared: it was edited after the monolith's read (an older or wrong `update_time` is compared). The monolith's clock and the gateway's must agree to the second (one host here; NTP elsewhere) | |
| LIST: their order | the messages on both sides, in the order each side gave them (oldest first in the contract): a reordered list is different. Shown from the first position that differs, 10 ids at most | `order` |
| ONE, both 2xx | the message object | as below |
| every message on both sides | `message_id`, `body`, `send_time`, `update_time`, `account.account_id`: same JSON type and value (`1` is not `1.0`, `"1"` is not `1`, `true` is not `1`); a missing one is `<absent>` | that name |
| `account.name`, `account.avatar_image_url` | values ignored: the monolith renders them at read time from its account table, which does not migrate, and the Read API asks that same directory at its own read time; a rename or a new avatar between the two reads is not a migration fault. The `account_id` that links a message to them is compared | |
| the other keys of a message and of its account | present on both sides: the sorted key lists beyond the compared fields (so a missing `name` or an extra key is seen, whatever its value) | `keys`, `account.keys` |
| POST, EDIT, DELETE, READ, UNREAD, OTHER, both 2xx | a JSON object: each top-level key, as above; any other JSON: the whole value | that key, `json` |
| a LIST or ONE answer without the contract's shape | the whole JSON value | `json` |
| a body that is not JSON where JSON is compared | the bodies as bytes: one Difference | `body_bytes` |

Values in a Difference stay small, for logs and reports: a string beyond 200 characters is
cut there and says its length (`… (N chars)`), bytes are shown as UTF-8 text (invalid bytes as
U+FFFD) cut the same way with their length in bytes, a list beyond 20 items keeps 20 and says
its length, any other JSON value whose text is beyond 200 characters becomes that text cut.

When to stop asking (gateway/README.md; DESIGN.md, "Lag is not a difference"): the same answer
at any attempt is SAME. A different answer is asked again until the timeout; at the timeout it
is LATE when the read model had not applied the room's frontier (the position of the room's
last hint spooled before the monolith answered), DIFFERENT when it had: then lag explains
nothing, and what remains is a difference (writes the gateway did not see, caught by the
binlog source, have no frontier here; the timeout is their allowance).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any, Final

from gateway.domain.routing import Route, RouteKind

SMALL_TEXT: Final = 200  # characters kept of a long string in a Difference
SMALL_LIST: Final = 20  # items kept of a long list in a Difference
ORDER_WINDOW: Final = 10  # ids shown from the first position where the orders part
PAGE: Final = 100  # the contract's page: at most 100 messages per list
ABSENT: Final = "<absent>"  # how a Difference shows a field one side does not have

MESSAGE_FIELDS: Final = ("body", "send_time", "update_time")
ACCOUNT_FIELDS: Final = ("account_id",)
IGNORED_ACCOUNT_FIELDS: Final = ("name", "avatar_image_url")  # values only; see the table


class Outcome(StrEnum):
    SAME = "same"
    DIFFERENT = "different"
    LATE = "late"


class AskAgain(Enum):
    """`should_retry`'s answer when no outcome is decided yet."""

    ASK_AGAIN = "ask_again"


@dataclass(frozen=True, slots=True)
class Difference:
    """One thing a client would see differently. `message_id` is None for what concerns the
    whole answer (status, errors, order, bytes)."""

    message_id: str | None
    field: str
    monolith: object
    new: object


@dataclass(slots=True)
class ShadowVerdict:
    """The end of one shadow read, filled by the service."""

    outcome: Outcome
    differences: list[Difference] = field(default_factory=list)
    attempts: int = 0
    waited_ms: float = 0.0


def frontier_reached(applied_position: int | None, frontier: int) -> bool:
    """Has the read model applied everything the monolith had when it answered?

    `applied_position`: the room's applied position the Read API reported (None: nothing of
    the room applied yet, or not reported). `frontier`: the position of the room's last hint
    spooled before the monolith's answer, 0 when there was none (gateway/README.md), so that
    nothing is awaited. ReadStore.room_position is inclusive: at the frontier is reached.
    """
    if frontier <= 0:
        return True
    return applied_position is not None and applied_position >= frontier


def should_retry(
    *, differs: bool, frontier_reached: bool, elapsed_ms: float, timeout_ms: float
) -> Outcome | AskAgain:
    """After one attempt: ask again, or the outcome (see the module's last paragraph)."""
    if not differs:
        return Outcome.SAME
    if elapsed_ms < timeout_ms:
        return AskAgain.ASK_AGAIN
    return Outcome.DIFFERENT if frontier_reached else Outcome.LATE


def compare(
    route: Route,
    monolith_status: int,
    monolith_body: bytes,
    new_status: int,
    new_body: bytes,
    answered_at_s: int | None = None,
) -> list[Difference]:
    """What differs between the two answers to one read, by the module's rules; [] is the
    same. `answered_at_s`: the unix second the monolith answered in; a message or an edit on
    the new side stamped at or after it may be ahead (None: nothing is excused). Never
    raises, whatever the bytes."""
    try:
        return _compare(route, monolith_status, monolith_body, new_status, new_body, answered_at_s)
    except RecursionError:  # JSON nested about as deep as the parser allows, then walked
        differences: list[Difference] = []
        if monolith_status != new_status:
            differences.append(Difference(None, "status", monolith_status, new_status))
        _compare_bytes(monolith_body, new_body, differences)
        return differences


def _compare(
    route: Route,
    monolith_status: int,
    monolith_body: bytes,
    new_status: int,
    new_body: bytes,
    answered_at_s: int | None,
) -> list[Difference]:
    differences: list[Difference] = []
    if monolith_status != new_status:
        differences.append(Difference(None, "status", monolith_status, new_status))
    monolith_ok = 200 <= monolith_status < 300
    new_ok = 200 <= new_status < 300
    if monolith_ok != new_ok:
        _compare_one_error(monolith_ok, monolith_body, new_body, differences)
        return differences
    if not monolith_ok:
        _compare_both_errors(monolith_body, new_body, differences)
        return differences
    kind = route.kind
    if kind is RouteKind.LIST:
        monolith_list = _json_or_bytes(monolith_body, monolith_status == 204)
        new_list = _json_or_bytes(new_body, new_status == 204)
        if isinstance(monolith_list, _Bytes) or isinstance(new_list, _Bytes):
            _compare_bytes(monolith_body, new_body, differences)
        else:
            ahead = _compare_lists(monolith_list.value, new_list.value, differences, answered_at_s)
            status_only = differences == [Difference(None, "status", 204, 200)]
            if monolith_status == 204 and ahead and status_only:
                # Only later posts on the new side (every message of it passed as ahead): the
                # 204 was right when the monolith gave it.
                differences.clear()
        return differences
    monolith_value = _json_or_bytes(monolith_body, False)
    new_value = _json_or_bytes(new_body, False)
    if isinstance(monolith_value, _Bytes) or isinstance(new_value, _Bytes):
        _compare_bytes(monolith_body, new_body, differences)
    elif kind is RouteKind.ONE:
        _compare_one(route, monolith_value.value, new_value.value, differences, answered_at_s)
    else:
        _compare_objects(monolith_value.value, new_value.value, differences)
    return differences


# --- parsing --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Json:
    value: Any


@dataclass(frozen=True, slots=True)
class _Bytes:
    """A body that is not JSON."""


def _json_or_bytes(body: bytes, no_content: bool) -> _Json | _Bytes:
    if no_content:
        return _Json([])  # a 204 is "no messages", whatever bytes came with it
    try:
        return _Json(json.loads(body))
    except (ValueError, RecursionError):  # not UTF-8 or not JSON; nested beyond the stack
        return _Bytes()


def _errors_of(body: bytes) -> list[Any] | None:
    parsed = _json_or_bytes(body, False)
    if isinstance(parsed, _Json) and isinstance(parsed.value, dict):
        errors = parsed.value.get("errors")
        if isinstance(errors, list):
            return errors
    return None


# --- the rules ------------------------------------------------------------------------------


def _compare_one_error(
    monolith_ok: bool, monolith_body: bytes, new_body: bytes, out: list[Difference]
) -> None:
    """One side answered an error, the other did not: what the error said."""
    failed_body = new_body if monolith_ok else monolith_body
    errors = _errors_of(failed_body)
    said: object = small(errors) if errors is not None else small(failed_body)
    if monolith_ok:
        out.append(Difference(None, "errors", ABSENT, said))
    else:
        out.append(Difference(None, "errors", said, ABSENT))


def _compare_both_errors(monolith_body: bytes, new_body: bytes, out: list[Difference]) -> None:
    monolith_errors = _errors_of(monolith_body)
    new_errors = _errors_of(new_body)
    if monolith_errors is None or new_errors is None:
        _compare_bytes(monolith_body, new_body, out)
    elif not _same(monolith_errors, new_errors):
        out.append(Difference(None, "errors", small(monolith_errors), small(new_errors)))


def _compare_bytes(monolith_body: bytes, new_body: bytes, out: list[Difference]) -> None:
    if monolith_body != new_body:
        out.append(Difference(None, "body_bytes", small(monolith_body), small(new_body)))


def _message_ids(value: Any) -> list[str] | None:
    """The ids of a message array, or None when it is not one (not a list, an element not an
    object, an id neither a string nor an integer)."""
    if not isinstance(value, list):
        return None
    ids = []
    for message in value:
        if not isinstance(message, dict):
            return None
        message_id = message.get("message_id")
        if isinstance(message_id, bool) or not isinstance(message_id, str | int):
            return None
        ids.append(str(message_id))  # "1" and 1 are one message; the field rule tells them apart
    return ids


def _newest(ids: list[str]) -> int | None:
    numbers = [int(i) for i in ids if i.isdecimal()]
    return max(numbers) if numbers else None


def _stamped_since(message: Any, field: str, second: int | None) -> bool:
    """The message's `field` (send_time, update_time) is an integer at or after `second`."""
    value = message.get(field) if isinstance(message, dict) else None
    return second is not None and type(value) is int and value >= second


def _compare_lists(
    monolith: Any, new: Any, out: list[Difference], answered_at_s: int | None = None
) -> int:
    """Appends the lists' differences to `out`; returns how many of the new side's messages
    were passed as posted after the monolith's read."""
    monolith_ids = _message_ids(monolith)
    new_ids = _message_ids(new)
    if monolith_ids is None or new_ids is None:
        _compare_whole(monolith, new, out)
        return 0
    # The new side may be ahead (its read came later): what was posted after the monolith's
    # newest message is not compared, and on a full page as many of the monolith's oldest may
    # have slid out of the new side's window.
    newest = _newest(monolith_ids)
    pushed_out: set[str] = set()
    ahead = 0
    if newest is None and monolith_ids == []:
        # Nothing new for the monolith (a 204, or []): every message on the new side sent at or
        # after the second it answered in was posted after its read.
        kept = [
            (i, m)
            for i, m in zip(new_ids, new, strict=True)
            if not _stamped_since(m, "send_time", answered_at_s)
        ]
        ahead = len(new_ids) - len(kept)
        new_ids, new = [i for i, _ in kept], [m for _, m in kept]
    elif newest is not None:
        kept = [
            (i, m)
            for i, m in zip(new_ids, new, strict=True)
            if not (
                i.isdecimal() and int(i) > newest and _stamped_since(m, "send_time", answered_at_s)
            )
        ]
        ahead = len(new_ids) - len(kept)
        if ahead:
            new_ids, new = [i for i, _ in kept], [m for _, m in kept]
            if len(monolith_ids) >= PAGE:
                pushed_out = set(monolith_ids[:ahead])
    monolith_count = Counter(monolith_ids)
    new_count = Counter(new_ids)
    for message_id in _in_order_once(monolith_ids + new_ids):
        if message_id in pushed_out and new_count[message_id] == 0:
            continue
        if monolith_count[message_id] != new_count[message_id]:
            out.append(
                Difference(
                    message_id,
                    "presence",
                    _presence(monolith_count[message_id]),
                    _presence(new_count[message_id]),
                )
            )
    monolith_common = [i for i in _in_order_once(monolith_ids) if i in new_count]
    new_common = [i for i in _in_order_once(new_ids) if i in monolith_count]
    if monolith_common != new_common:
        start = next(
            at for at, (a, b) in enumerate(zip(monolith_common, new_common, strict=True)) if a != b
        )
        out.append(
            Difference(None, "order", _window(monolith_common, start), _window(new_common, start))
        )
    monolith_by_id = _first_by_id(monolith, monolith_ids)
    new_by_id = _first_by_id(new, new_ids)
    for message_id in monolith_common:
        _compare_message(
            message_id, monolith_by_id[message_id], new_by_id[message_id], out, answered_at_s
        )
    return ahead


def _compare_one(
    route: Route, monolith: Any, new: Any, out: list[Difference], answered_at_s: int | None
) -> None:
    if not isinstance(monolith, dict) or not isinstance(new, dict):
        _compare_whole(monolith, new, out)
        return
    message_id = str(route.message_id) if route.message_id is not None else None
    _compare_message(message_id, monolith, new, out, answered_at_s)


def _edited_later(monolith: dict[str, Any], new: dict[str, Any], answered_at_s: int | None) -> bool:
    """The new side shows an edit made at or after the second the monolith answered in, later
    than the monolith's: it is ahead, not apart."""
    before, after = monolith.get("update_time"), new.get("update_time")
    return (
        type(before) is int
        and type(after) is int
        and after > before
        and _stamped_since(new, "update_time", answered_at_s)
    )


def _compare_message(
    message_id: str | None,
    monolith: dict[str, Any],
    new: dict[str, Any],
    out: list[Difference],
    answered_at_s: int | None = None,
) -> None:
    if _edited_later(monolith, new, answered_at_s):
        return
    for name in ("message_id", *MESSAGE_FIELDS):
        _compare_field(message_id, name, monolith, new, name, out)
    _compare_keys(
        message_id, "keys", monolith, new, ("message_id", "account", *MESSAGE_FIELDS), out
    )
    monolith_account = monolith.get("account", _MISSING)
    new_account = new.get("account", _MISSING)
    if isinstance(monolith_account, dict) and isinstance(new_account, dict):
        for name in ACCOUNT_FIELDS:
            _compare_field(message_id, f"account.{name}", monolith_account, new_account, name, out)
        _compare_keys(
            message_id, "account.keys", monolith_account, new_account, ACCOUNT_FIELDS, out
        )
    elif not _same(monolith_account, new_account):
        out.append(Difference(message_id, "account", _shown(monolith_account), _shown(new_account)))


def _compare_field(
    message_id: str | None,
    label: str,
    monolith: dict[str, Any],
    new: dict[str, Any],
    name: str,
    out: list[Difference],
) -> None:
    monolith_value = monolith.get(name, _MISSING)
    new_value = new.get(name, _MISSING)
    if not _same(monolith_value, new_value):
        out.append(Difference(message_id, label, _shown(monolith_value), _shown(new_value)))


def _compare_keys(
    message_id: str | None,
    label: str,
    monolith: dict[str, Any],
    new: dict[str, Any],
    compared: tuple[str, ...],
    out: list[Difference],
) -> None:
    monolith_keys = sorted(k for k in monolith if k not in compared)
    new_keys = sorted(k for k in new if k not in compared)
    if monolith_keys != new_keys:
        out.append(Difference(message_id, label, small(monolith_keys), small(new_keys)))


def _compare_objects(monolith: Any, new: Any, out: list[Difference]) -> None:
    if not isinstance(monolith, dict) or not isinstance(new, dict):
        _compare_whole(monolith, new, out)
        return
    for name in _in_order_once([*monolith, *new]):
        _compare_field(None, name, monolith, new, name, out)


def _compare_whole(monolith: Any, new: Any, out: list[Difference]) -> None:
    if not _same(monolith, new):
        out.append(Difference(None, "json", small(monolith), small(new)))


# --- equality and small values ----------------------------------------------------------------


class _Missing(Enum):
    MISSING = "missing"


_MISSING: Final = _Missing.MISSING


def _same(a: Any, b: Any) -> bool:
    """JSON equality that a client would also see: types count (Python's `True == 1` and
    `1 == 1.0` do not hold here), object keys in any order."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and a != a and b != b:
        return True  # NaN, which Python's json accepts, is the same NaN on both sides
    return bool(a == b)


def _presence(count: int) -> str:
    if count == 0:
        return "absent"
    return "present" if count == 1 else f"present {count} times"


def _in_order_once(ids: list[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def _first_by_id(messages: list[dict[str, Any]], ids: list[str]) -> dict[str, dict[str, Any]]:
    by_id: dict[str, dict[str, Any]] = {}
    for message_id, message in zip(ids, messages, strict=True):
        by_id.setdefault(message_id, message)
    return by_id


def _window(ids: list[str], start: int) -> list[str]:
    shown = ids[start : start + ORDER_WINDOW]
    if start > 0:
        shown.insert(0, f"… {start} in the same order")
    if start + ORDER_WINDOW < len(ids):
        shown.append(f"… ({len(ids)} ids)")
    return shown


def _shown(value: Any) -> object:
    return ABSENT if value is _MISSING else small(value)


def small(value: object) -> object:
    """`value` as a Difference shows it: small enough for a log line (the module's rules)."""
    if isinstance(value, str):
        return value if len(value) <= SMALL_TEXT else f"{value[:SMALL_TEXT]}… ({len(value)} chars)"
    if isinstance(value, bytes):
        text = value.decode("utf-8", "replace")
        if len(text) <= SMALL_TEXT:
            return text
        return f"{text[:SMALL_TEXT]}… ({len(value)} bytes)"
    if isinstance(value, list):
        shown = [small(item) for item in value[:SMALL_LIST]]
        if len(value) > SMALL_LIST:
            shown.append(f"… ({len(value)} items)")
        return shown
    if isinstance(value, dict):
        text = json.dumps(value, ensure_ascii=False, default=repr)
        return value if len(text) <= SMALL_TEXT else small(text)
    return value
