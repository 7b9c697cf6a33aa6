"""The in-memory monolith holds the MonolithReader contract."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from legacy_adapters.adapters.embedded.memory_monolith import InMemoryMonolith
from tests.contracts.monolith_reader import Monolith, MonolithReaderContract


class TestInMemoryMonolith(MonolithReaderContract):
    @pytest.fixture
    def monolith(self) -> Iterator[Monolith]:
        memory = InMemoryMonolith()
        yield memory, memory
