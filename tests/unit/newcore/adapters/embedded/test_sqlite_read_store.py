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


def test_an_unusable_path_is_a_clear_error_on_first_use(tmp_path: Path) -> None:
    """Nothing is opened at construction (a composition root builds it before anything runs);
    the first use names the path. A missing folder is made; a file in the way is not."""
    (tmp_path / "a-file").write_text("not a folder")
    store = SqliteReadStore(tmp_path / "a-file" / "x.sqlite")
    with pytest.raises(
        ReadStoreUnavailable, match=r"cannot open the embedded read store at .*a-file"
    ):
        store.message(1, 1)
    with pytest.raises(ReadStoreUnavailable, match="cannot open the embedded read store"):
        store.open()
    made = SqliteReadStore(tmp_path / "missing-dir" / "x.sqlite")
    made.open()
    assert made.message(1, 1) is None
    made.close()
