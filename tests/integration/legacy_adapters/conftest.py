"""Fixtures of the legacy-side integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from legacy_adapters.settings import LegacyDatabaseSettings
from tests.integration.conftest import Stack
from tests.integration.legacy_adapters.scratch_db import scratch_database


@pytest.fixture
def scratch(stack: Stack) -> Iterator[tuple[LegacyDatabaseSettings, Engine]]:
    with scratch_database(stack) as database:
        yield database
