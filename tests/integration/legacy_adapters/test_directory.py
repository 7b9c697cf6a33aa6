"""The MariaDB account directory holds the AccountDirectory contract."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, insert

from legacy_adapters.directory import MariaDbAccountDirectory
from legacy_adapters.schema import Account, ApiToken, Room, RoomMember
from legacy_adapters.settings import LegacyDatabaseSettings
from tests.contracts.account_directory import AccountDirectoryContract, Directory


class SqlDirectoryArranger:
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


class TestMariaDbDirectory(AccountDirectoryContract):
    @pytest.fixture
    def directory(self, scratch: tuple[LegacyDatabaseSettings, Engine]) -> Iterator[Directory]:
        _, engine = scratch
        yield MariaDbAccountDirectory(engine), SqlDirectoryArranger(engine)
