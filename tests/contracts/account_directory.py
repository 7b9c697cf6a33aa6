"""The AccountDirectory contract: one suite for the in-memory monolith and MariaDB."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from typing import Protocol

import pytest

from newcore.ports import DEFAULT_AVATAR, AccountDirectory, AccountProfile


class DirectoryArranger(Protocol):
    def add_room(self, room_id: int) -> None: ...
    def add_account(self, account_id: int, name: str, avatar: str | None, token: str) -> None: ...
    def add_member(self, room_id: int, account_id: int, role: str) -> None: ...


Directory = tuple[AccountDirectory, DirectoryArranger]


def fresh() -> int:
    return random.randrange(3_000_000_000, 4_000_000_000)


class AccountDirectoryContract:
    @pytest.fixture
    def directory(self) -> Iterator[Directory]:
        raise NotImplementedError

    def test_tokens_name_their_account(self, directory: Directory) -> None:
        lookup, arrange = directory
        account, token = fresh(), uuid.uuid4().hex
        arrange.add_account(account, "佐藤 花子", None, token)
        assert lookup.account_for_token(token) == account
        assert lookup.account_for_token(uuid.uuid4().hex) is None
        for malformed in ("", "é" * 10, "x" * 65, "tab\there"):
            assert lookup.account_for_token(malformed) is None

    def test_access_tells_missing_room_outsider_and_role(self, directory: Directory) -> None:
        lookup, arrange = directory
        room, admin, reader, outsider = fresh(), fresh(), fresh(), fresh()
        arrange.add_room(room)
        for account in (admin, reader, outsider):
            arrange.add_account(account, "n", None, uuid.uuid4().hex)
        arrange.add_member(room, admin, "admin")
        arrange.add_member(room, reader, "readonly")
        assert lookup.access(room, admin) == "admin"
        assert lookup.access(room, reader) == "readonly"
        assert lookup.access(room, outsider) == "not_member"
        assert lookup.access(fresh(), admin) == "no_room"

    def test_profiles_render_as_the_monolith_does(self, directory: Directory) -> None:
        lookup, arrange = directory
        named, no_avatar, gone = fresh(), fresh(), fresh()
        arrange.add_account(named, "山田 太郎", "https://example.invalid/a.png", uuid.uuid4().hex)
        arrange.add_account(no_avatar, "Ken", None, uuid.uuid4().hex)
        assert lookup.profiles([named, no_avatar, gone, named]) == {
            named: AccountProfile(named, "山田 太郎", "https://example.invalid/a.png"),
            no_avatar: AccountProfile(no_avatar, "Ken", DEFAULT_AVATAR),
            gone: AccountProfile(gone, "", DEFAULT_AVATAR),
        }
        assert lookup.profiles([]) == {}
