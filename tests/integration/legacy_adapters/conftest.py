"""Fixtures of the legacy-side integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from legacy_adapters.settings import LegacyDatabaseSettings
from tests.support.scratch_db import scratch_database
from tests.support.stack import Stack


@pytest.fixture
def scratch(stack: Stack) -> Iterator[tuple[LegacyDatabaseSettings, Engine]]:
    with scratch_database(stack) as database:
        yield database
