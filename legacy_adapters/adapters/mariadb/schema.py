"""SQLAlchemy 2.0 typed mappings of the monolith's schema (deploy/monolith/schema.sql).

The types say what the rows really hold, quirks included: three nullable body columns by era,
NULL times on old rows, and `created_at` as text, because a DATETIME of '0000-00-00 00:00:00'
is not a datetime (PyMySQL hands it over as a string). tests/integration checks these mappings
against the live schema.
"""

from __future__ import annotations

import datetime
from typing import Any

from sqlalchemy import LargeBinary, String, Text
from sqlalchemy.dialects.mysql import BIGINT, DATETIME, INTEGER, MEDIUMTEXT, TINYINT
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class LegacyDateTime(TypeDecorator[str]):
    """A legacy DATETIME read as its text ('YYYY-MM-DD HH:MM:SS'), zero dates included."""

    impl = DATETIME
    cache_ok = True

    def process_result_value(self, value: Any, dialect: Any) -> str | None:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, datetime.datetime):
            return value.strftime("%Y-%m-%d %H:%M:%S")
        return str(value)


U32 = INTEGER(unsigned=True)
U64 = BIGINT(unsigned=True)


class Legacy(DeclarativeBase):
    pass


class Account(Legacy):
    __tablename__ = "accounts"
    account_id: Mapped[int] = mapped_column(U32, primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    chatwork_id: Mapped[str | None] = mapped_column(String(64))
    avatar_image_url: Mapped[str | None] = mapped_column(String(255))  # NULL: the default avatar
    organization_name: Mapped[str] = mapped_column(String(255))
    my_room_id: Mapped[int | None] = mapped_column(U32)


class ApiToken(Legacy):
    __tablename__ = "api_tokens"
    token: Mapped[str] = mapped_column(String(32), primary_key=True)
    account_id: Mapped[int] = mapped_column(U32)
    created_at: Mapped[str | None] = mapped_column(LegacyDateTime)


class Room(Legacy):
    __tablename__ = "rooms"
    room_id: Mapped[int] = mapped_column(U32, primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(8))
    icon_path: Mapped[str | None] = mapped_column(String(255))
    last_update_time: Mapped[int] = mapped_column(U32)


class RoomMember(Legacy):
    __tablename__ = "room_members"
    room_id: Mapped[int] = mapped_column(U32, primary_key=True)
    account_id: Mapped[int] = mapped_column(U32, primary_key=True)
    role: Mapped[str] = mapped_column(String(8))


class LegacyMessage(Legacy):
    __tablename__ = "messages"
    message_id: Mapped[int] = mapped_column(U64, primary_key=True)
    room_id: Mapped[int] = mapped_column(U32)
    account_id: Mapped[int] = mapped_column(U32)
    body: Mapped[str | None] = mapped_column(MEDIUMTEXT)  # since 2016, utf8mb4
    body_v1: Mapped[str | None] = mapped_column(Text)  # 2012-2016, utf8mb3: emoji became '?'
    body_raw: Mapped[bytes | None] = mapped_column(LargeBinary)  # 2011-2012 import: any bytes
    send_time: Mapped[int | None] = mapped_column(U32)  # NULL before 2016
    update_time: Mapped[int | None] = mapped_column(U32)  # NULL before 2016
    created_at: Mapped[str | None] = mapped_column(LegacyDateTime)  # JST wall time; zero dates
    deleted: Mapped[int] = mapped_column(TINYINT)  # 1: soft-deleted


class LegacyCursor(Legacy):
    __tablename__ = "room_cursors"
    room_id: Mapped[int] = mapped_column(U32, primary_key=True)
    account_id: Mapped[int] = mapped_column(U32, primary_key=True)
    last_read_message_id: Mapped[int] = mapped_column(U64)
    last_fetched_message_id: Mapped[int] = mapped_column(U64)
