"""An in-memory monolith: legacy rows in dictionaries, read through the same translation.

The embedded MonolithReader, for unit and property tests of the capture pipeline. It holds
the MonolithReader contract like the MariaDB reader, and offers the writes the PHP app makes
(post, edit, soft delete, purge, cursor moves) so tests can play the monolith's part. It is
also the embedded AccountDirectory, held to that port's contract.
"""

from __future__ import annotations

from collections.abc import Sequence

from legacy_adapters.domain.accounts import profile, token_is_well_formed
from legacy_adapters.domain.translation import LegacyMessageRow, translate_message
from newcore.domain.model import Message, ReadCursor
from newcore.domain.row_problems import RowProblem
from newcore.ports import AccountProfile, MessageRead, RangeRead


class InMemoryMonolith:
    def __init__(self) -> None:
        self.rooms: set[int] = set()
        self.messages: dict[int, LegacyMessageRow] = {}  # by message id, as the table's key
        self.cursors: dict[tuple[int, int], tuple[int, int]] = {}
        self.accounts: dict[int, tuple[str, str | None]] = {}  # id -> (name, avatar url)
        self.tokens: dict[str, int] = {}
        self.members: dict[tuple[int, int], str] = {}  # (room, account) -> role

    # -- the monolith's own writes ---------------------------------------------------------

    def add_room(self, room_id: int) -> None:
        self.rooms.add(room_id)

    def add_account(self, account_id: int, name: str, avatar: str | None, token: str) -> None:
        self.accounts[account_id] = (name, avatar)
        self.tokens[token] = account_id

    def add_member(self, room_id: int, account_id: int, role: str) -> None:
        self.members[(room_id, account_id)] = role

    def put(self, row: LegacyMessageRow) -> None:
        self.messages[row.message_id] = row

    def purge(self, message_id: int) -> None:
        self.messages.pop(message_id, None)

    def move_cursor(self, room_id: int, account_id: int, last_read: int, last_fetched: int) -> None:
        self.cursors[(room_id, account_id)] = (last_read, last_fetched)

    # -- MonolithReader ------------------------------------------------------------------

    def read_messages(self, keys: Sequence[tuple[int, int]]) -> MessageRead:
        live: dict[tuple[int, int], Message] = {}
        problems: list[RowProblem] = []
        wanted = list(dict.fromkeys(keys))
        for room_id, message_id in wanted:
            row = self.messages.get(message_id)
            if row is None or row.room_id != room_id:
                continue
            message, found = translate_message(row)
            problems += found
            if message is not None:
                live[(room_id, message_id)] = message
        return MessageRead(
            live=live, gone={key for key in wanted if key not in live}, problems=problems
        )

    def read_range(self, room_id: int, first: int, last: int, limit: int) -> RangeRead:
        ids = sorted(
            mid
            for mid, row in self.messages.items()
            if row.room_id == room_id and first <= mid <= last
        )
        page = ids[:limit]
        live: list[Message] = []
        deleted: list[int] = []
        problems: list[RowProblem] = []
        for message_id in page:
            message, found = translate_message(self.messages[message_id])
            problems += found
            if message is None:
                deleted.append(message_id)
            else:
                live.append(message)
        return RangeRead(live, deleted, problems, page[-1] if page else None)

    def read_cursors(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], ReadCursor]:
        return {
            key: ReadCursor(key[0], key[1], *self.cursors[key])
            for key in dict.fromkeys(keys)
            if key in self.cursors
        }

    def existing_rooms(self, room_ids: Sequence[int]) -> set[int]:
        return {room for room in room_ids if room in self.rooms}

    # -- AccountDirectory ----------------------------------------------------------------

    def account_for_token(self, token: str) -> int | None:
        account = self.tokens.get(token) if token_is_well_formed(token) else None
        return account if account in self.accounts else None

    def access(self, room_id: int, account_id: int) -> str:
        if room_id not in self.rooms:
            return "no_room"
        return self.members.get((room_id, account_id), "not_member")

    def profiles(self, account_ids: Sequence[int]) -> dict[int, AccountProfile]:
        return {aid: profile(aid, *self.accounts.get(aid, (None, None))) for aid in account_ids}
