"""The embedded read store holds the ReadStore contract."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from newcore.adapters.embedded.sqlite_read_store import SqliteReadStore
from newcore.ports import ReadStore, ReadStoreUnavailable
from tests.contracts.read_store import ReadStoreContract


class TestSqliteReadStore(ReadStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[ReadStore]:
        self._path = tmp_path / "read-model.sqlite"
        store = SqliteReadStore(self._path)
        yield store
        store.close()

    def reopen(self, store: ReadStore) -> ReadStore:
        store.close()
        return SqliteReadStore(self._path)


def test_an_unusable_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ReadStoreUnavailable, match="cannot open the embedded read store"):
        SqliteReadStore(tmp_path / "missing-dir" / "x.sqlite")
