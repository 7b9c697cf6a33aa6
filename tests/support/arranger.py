"""Writes rows into a scratch monolith database as the PHP app stores them, through the typed
mappings: the arranging half of the MonolithReader and AccountDirectory contract suites."""

from __future__ import annotations

from sqlalchemy import Engine, delete, insert, update
from sqlalchemy.dialects.mysql import insert as mysql_insert

from legacy_adapters.adapters.mariadb.schema import (
    Account,
    ApiToken,
    LegacyCursor,
    LegacyMessage,
    Room,
    RoomMember,
)
from legacy_adapters.domain.translation import LegacyMessageRow


class SqlArranger:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def add_room(self, room_id: int) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                insert(Room).values(room_id=room_id, name="r", type="group", last_update_time=0)
            )

    def add_account(self, account_id: int, name: str, avatar: str | None, token: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                insert(Account).values(
                    account_id=account_id, name=name, avatar_image_url=avatar, organization_name=""
                )
            )
            conn.execute(insert(ApiToken).values(token=token, account_id=account_id))

    def add_member(self, room_id: int, account_id: int, role: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                insert(RoomMember).values(room_id=room_id, account_id=account_id, role=role)
            )

    def put(self, row: LegacyMessageRow) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                insert(LegacyMessage).values(**{f: getattr(row, f) for f in row.__slots__})
            )

    def put_many(self, rows: list[LegacyMessageRow]) -> None:
        """Many rows in one statement and one transaction."""
        with self._engine.begin() as conn:
            conn.execute(
                insert(LegacyMessage), [{f: getattr(r, f) for f in r.__slots__} for r in rows]
            )

    def update(self, message_id: int, **values: object) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                update(LegacyMessage).where(LegacyMessage.message_id == message_id).values(**values)
            )

    def save(self, row: LegacyMessageRow) -> None:
        """Insert or overwrite the row (an edit or a soft delete as the app writes it)."""
        values = {f: getattr(row, f) for f in row.__slots__}
        with self._engine.begin() as conn:
            conn.execute(mysql_insert(LegacyMessage).values(**values).on_duplicate_key_update(
                **{k: v for k, v in values.items() if k != "message_id"}))  # fmt: skip

    def save_cursor(self, room_id: int, account_id: int, last_read: int, last_fetched: int) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                mysql_insert(LegacyCursor).values(
                    room_id=room_id, account_id=account_id,
                    last_read_message_id=last_read, last_fetched_message_id=last_fetched,
                ).on_duplicate_key_update(
                    last_read_message_id=last_read, last_fetched_message_id=last_fetched
                )
            )  # fmt: skip

    def purge(self, message_id: int) -> None:
        with self._engine.begin() as conn:
            conn.execute(delete(LegacyMessage).where(LegacyMessage.message_id == message_id))

    def move_cursor(self, room_id: int, account_id: int, last_read: int, last_fetched: int) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                insert(LegacyCursor).values(
                    room_id=room_id, account_id=account_id,
                    last_read_message_id=last_read, last_fetched_message_id=last_fetched,
                )
            )  # fmt: skip
