"""The in-memory monolith holds the AccountDirectory contract."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from legacy_adapters.adapters.embedded.memory_monolith import InMemoryMonolith
from tests.contracts.account_directory import AccountDirectoryContract, Directory


class TestInMemoryDirectory(AccountDirectoryContract):
    @pytest.fixture
    def directory(self) -> Iterator[Directory]:
        memory = InMemoryMonolith()
        yield memory, memory
