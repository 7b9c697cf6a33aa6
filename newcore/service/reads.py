"""The Read API's use cases: the contract's message reads, answered from the read model.

`GET /v2/rooms/{room}/messages` (`force=1`: the latest 100; `force=0`: what the account has not
fetched yet) and `GET /v2/rooms/{room}/messages/{message}`, over two ports: the `ReadStore`
(messages, cursors, the room's applied position) and the `AccountDirectory` (tokens,
memberships, names and avatars, which stay in the monolith: a name is rendered when it is read,
never copied, so a rename shows at once). Every answer is the one the PHP monolith gives
(deploy/monolith/src): the same checks in the same order (token 401, unknown path 404, bad
parameter 400, unknown room 404, not a member 403, unknown message 404), the same status and the
same error strings, ids as strings.

**No cursor moves here.** A `force=0` read of the monolith moves the account's fetch cursor; a
cursor move is a write, and the new core takes writes only in `new_primary` (a later issue). So
this version answers what a `force=0` read would answer and moves nothing: asked twice, it
answers the same twice.

**The shadow variant** (`shadow=True`: the gateway's `X-Migration-Shadow: 1`) has no side effect
either (promise 7), is not held back at the frontier (the gateway compares at a frontier of its
own: gateway/README.md, "Shadow reads"), and for `force=0` may be told `after`: "answer as if the
account's fetch cursor were at this id" (`X-Migration-After`), so that the comparison needs
neither side's cursor.

**The room's position.** Every answer carries the room's applied position
(`ReadStore.room_position`, -1 when none is known), read *before* anything else of the read
model: the data of the answer is at least that new, so the gateway knows the answer covers
every hint of the room up to that position.

## The applied frontier (DESIGN.md, "Order within a room")

Two messages of one room can become visible in the read model out of id order: message 200's
transaction commits after 201's, so 201 is captured and applied first. A `force=0` reader whose
cursor moved past 201 would never get 200. So a (non-shadow) `force=0` read serves a room only
up to its *applied frontier*: it serves the page oldest first, only messages whose `send_time`
is at least `settle_s` before now, and stops at the first younger one (never skipping over it:
a message left out below one served would be skipped for good once the cursor moves). Nothing
new that is old enough: 204, as for "nothing new". For an account that never fetched, the page
is the latest 100 and the young ones at its top are left out (fewer than 100 then): below the
latest 100 the contract itself skips, held back or not.

Why that is enough. The monolith allocates a message's id at its INSERT, in the order of the
inserts, and takes `send_time = time()` inside the same transaction, before the INSERT
(deploy/monolith/src/messages.php, `post_message`). Let `m` be a served message and `x < m` a
message of the room. x's INSERT came before m's, and m's INSERT came at most `T` (the longest
message transaction) after m's `time()`, which is before `send_time(m) + 1` (whole seconds).
x committed at most `T` after its INSERT, and is applied at most `L` (the capture lag: commit
to applied in the read model, whichever of the binlog source or the gateway hinted it) after
its commit. So x is in the read model by `send_time(m) + 1 + 2T + L` (+ the skew between the
monolith's clock and ours). With `send_time(m) <= now - settle_s` and `now` taken *before* the
read model is read, x is in what we read as soon as

    settle_s >= 1 s + 2T + L + clock skew.

The default, 3 s, assumes monolith message transactions and the capture lag well under a
second each. What breaks it, and is not guarded here: a capture pipeline held up for longer
(Kafka, HBase or the updater down while a room is written: the lag is then unbounded, and this
rule alone is not enough for serving `force=0` in `new_primary`: that issue needs the
pipeline's own frontier), and rows whose `send_time` is not their INSERT time (imports, rows
written with explicit times, such as the forwarder of a later issue). `force=1` and the
one-message read have no cursor and are not held back.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from newcore.domain.model import MAX_ID, Message
from newcore.errors import MonolithUnavailable, ReadStoreUnavailable
from newcore.ports import AccountDirectory, AccountProfile, ReadStore

PAGE_SIZE = 100  # the contract's page: at most 100 messages per list answer
NO_POSITION = -1

# The monolith's error strings, exactly (deploy/monolith/public/index.php, src/*.php).
INVALID_TOKEN = "Invalid API token"  # noqa: S105 (an error text)
RESOURCE_NOT_FOUND = "Resource not found"
METHOD_NOT_ALLOWED = "Method not allowed"
ROOM_NOT_FOUND = "Room not found"
NOT_A_MEMBER = "You don't have permission to access this room"
MESSAGE_NOT_FOUND = "Message not found"
# Ours: the read model or the directory cannot be reached (the monolith would answer 500).
UNAVAILABLE = "Service temporarily unavailable; retry later"
BAD_AFTER = "Invalid value for header 'X-Migration-After'"

# The monolith's route patterns for ids (public/index.php): digits, no leading zero.
ROOM_ID = re.compile(r"[1-9][0-9]{0,9}")
MESSAGE_ID = re.compile(r"[1-9][0-9]{0,18}")
_DIGITS = re.compile(r"[0-9]{1,20}")

log = logging.getLogger("read-api")


@dataclass(frozen=True, slots=True)
class ArrayParam:
    """A parameter sent as an array (`force[]=1`, as PHP's `$_REQUEST` reads it): never a valid
    value; the monolith answers 400 for it."""


Param = str | ArrayParam | None  # absent: None


@dataclass(frozen=True, slots=True)
class Answer:
    """What the Read API answers: a status, a JSON payload (None: no content, for 204) and the
    room's applied position (-1 when none is known)."""

    status: int
    payload: list[dict[str, Any]] | dict[str, Any] | None
    room_position: int


@dataclass(frozen=True, slots=True)
class ListRequest:
    """`GET /v2/rooms/{room}/messages`. `room` is the path's room segment as sent (it may be no
    id at all); `force` the parameter as PHP would read it; `after` the `X-Migration-After`
    header, used only by a shadow `force=0` read."""

    token: str | None
    room: str
    force: Param = None
    shadow: bool = False
    after: str | None = None


@dataclass(frozen=True, slots=True)
class MessageRequest:
    """`GET /v2/rooms/{room}/messages/{message}`, segments as sent."""

    token: str | None
    room: str
    message: str


class Refused(Exception):
    """An answer of the contract's errors: `{"errors": [message]}` with `status`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def flag(value: Param, name: str, default: bool) -> bool:
    """A 0/1 parameter as the monolith reads it (src/http.php, `flag_param`)."""
    if isinstance(value, ArrayParam):
        raise Refused(400, f"Invalid value for parameter '{name}'")
    if value is None or value == "":
        return default
    if value not in ("0", "1"):
        raise Refused(400, f"Invalid value for parameter '{name}': use 0 or 1")
    return value == "1"


def room_id_of(segment: str) -> int | None:
    """The room id a path segment names, by the monolith's route pattern; None if none."""
    return int(segment) if ROOM_ID.fullmatch(segment) else None


def message_id_of(segment: str) -> int | None:
    """The message id a path segment names, by the monolith's route pattern; None if none."""
    return int(segment) if MESSAGE_ID.fullmatch(segment) else None


def frontier_cut(page: Sequence[Message], now: float, settle_s: float) -> list[Message]:
    """The page (oldest first) up to its first message younger than `settle_s` at `now`,
    that message and every later one left out (see "The applied frontier" above)."""
    cutoff = now - settle_s
    served: list[Message] = []
    for message in page:
        if message.send_time > cutoff:
            break
        served.append(message)
    return served


def message_object(message: Message, account: AccountProfile) -> dict[str, Any]:
    """A message as the contract's message object, keys in the monolith's order
    (src/store.php, `message_object`)."""
    return {
        "message_id": str(message.message_id),
        "account": {
            "account_id": message.account_id,
            "name": account.name,
            "avatar_image_url": account.avatar_image_url,
        },
        "body": message.body,
        "send_time": message.send_time,
        "update_time": message.update_time,
    }


def errors(status: int, message: str, position: int) -> Answer:
    return Answer(status, {"errors": [message]}, position)


class Reads:
    """The read use cases. `clock` is wall time in seconds (send times are the monolith's unix
    seconds); a test passes its own."""

    def __init__(
        self,
        store: ReadStore,
        directory: AccountDirectory,
        *,
        settle_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if settle_s < 0:
            raise ValueError("settle_s must be at least 0")
        self._store = store
        self._directory = directory
        self._settle_s = settle_s
        self._clock = clock

    # -- the use cases --------------------------------------------------------------------

    def list_messages(self, request: ListRequest) -> Answer:
        """`force=1`: the latest 100 live messages, oldest first. `force=0` (the default):
        the next 100 after the account's fetch cursor in the read model (the latest 100 when
        it never fetched), oldest first, held back at the applied frontier unless shadow;
        204 when there is none. Moves no cursor (see the module docstring)."""
        room_id = room_id_of(request.room)
        position = NO_POSITION
        try:
            position = self._position(room_id)
            account_id = self._authenticate(request.token)
            if room_id is None:
                raise Refused(404, RESOURCE_NOT_FOUND)
            force = flag(request.force, "force", default=False)
            after = self._after(request) if request.shadow and not force else None
            self._require_member(room_id, account_id)
            if force:
                return Answer(200, self._render(self._store.latest(room_id, PAGE_SIZE)), position)
            now = self._clock()  # before the read model is read: see "The applied frontier"
            if after is None:
                cursor = self._store.cursor(room_id, account_id)
                after = 0 if cursor is None else cursor.last_fetched_message_id
            page = (
                self._store.latest(room_id, PAGE_SIZE)
                if after == 0
                else self._store.after(room_id, after, PAGE_SIZE)
            )
            if not request.shadow:
                page = frontier_cut(page, now, self._settle_s)
            if not page:
                return Answer(204, None, position)
            return Answer(200, self._render(page), position)
        except Refused as refused:
            return errors(refused.status, refused.message, position)
        except (ReadStoreUnavailable, MonolithUnavailable) as exc:
            return self._unavailable(exc, position)

    def message(self, request: MessageRequest) -> Answer:
        """One live message of the room, or the contract's 404 "Message not found"."""
        room_id = room_id_of(request.room)
        message_id = message_id_of(request.message)
        position = NO_POSITION
        try:
            position = self._position(room_id)
            account_id = self._authenticate(request.token)
            if room_id is None or message_id is None:
                if room_id is not None and request.message in ("read", "unread"):
                    # The monolith's PUT routes: a known path, another method.
                    raise Refused(405, METHOD_NOT_ALLOWED)
                raise Refused(404, RESOURCE_NOT_FOUND)
            self._require_member(room_id, account_id)
            message = self._store.message(room_id, message_id)
            if message is None:
                raise Refused(404, MESSAGE_NOT_FOUND)
            return Answer(200, self._render([message])[0], position)
        except Refused as refused:
            return errors(refused.status, refused.message, position)
        except (ReadStoreUnavailable, MonolithUnavailable) as exc:
            return self._unavailable(exc, position)

    def unrouted(self, token: str | None, *, known_path: bool, room: str | None = None) -> Answer:
        """Any other request under /v2/: 401 without a valid token (the monolith checks the
        token before it routes), then 405 for a path the monolith serves with another method
        (writes, which the new core does not take in this version) and 404 for any other.
        `room`: the path's room segment, if it has one (its position goes on the answer)."""
        room_id = None if room is None else room_id_of(room)
        position = NO_POSITION
        try:
            position = self._position(room_id)
            self._authenticate(token)
        except Refused as refused:
            return errors(refused.status, refused.message, position)
        except (ReadStoreUnavailable, MonolithUnavailable) as exc:
            return self._unavailable(exc, position)
        if known_path:
            return errors(405, METHOD_NOT_ALLOWED, position)
        return errors(404, RESOURCE_NOT_FOUND, position)

    def health(self) -> dict[str, Any]:
        """Whether the read model and the directory answer: `ok`, and what failed."""
        state: dict[str, Any] = {}
        try:
            self._store.room_position(0)
            state["read_store"] = "ok"
        except ReadStoreUnavailable as exc:
            state["read_store"] = str(exc)
        try:
            self._directory.access(0, 0)
            state["directory"] = "ok"
        except MonolithUnavailable as exc:
            state["directory"] = str(exc)
        return {"ok": all(value == "ok" for value in state.values()), **state}

    # -- the steps ------------------------------------------------------------------------

    def _position(self, room_id: int | None) -> int:
        if room_id is None:
            return NO_POSITION
        position = self._store.room_position(room_id)
        return NO_POSITION if position is None else position

    def _authenticate(self, token: str | None) -> int:
        account_id = self._directory.account_for_token(token or "")
        if account_id is None:
            raise Refused(401, INVALID_TOKEN)
        return account_id

    def _require_member(self, room_id: int, account_id: int) -> None:
        access = self._directory.access(room_id, account_id)
        if access == "no_room":
            raise Refused(404, ROOM_NOT_FOUND)
        if access == "not_member":
            raise Refused(403, NOT_A_MEMBER)

    @staticmethod
    def _after(request: ListRequest) -> int | None:
        """The shadow read's "as if the fetch cursor were at" id; None when not given."""
        if request.after is None:
            return None
        if not _DIGITS.fullmatch(request.after) or int(request.after) > MAX_ID:
            raise Refused(400, BAD_AFTER)
        return int(request.after)

    def _render(self, page: Sequence[Message]) -> list[dict[str, Any]]:
        if not page:
            return []
        profiles = self._directory.profiles(sorted({m.account_id for m in page}))
        return [message_object(m, profiles[m.account_id]) for m in page]

    @staticmethod
    def _unavailable(exc: Exception, position: int) -> Answer:
        log.warning("read failed: a dependency is unavailable", extra={"reason": str(exc)})
        return errors(503, UNAVAILABLE, position)
