"""The MariaDB account directory holds the AccountDirectory contract."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from legacy_adapters.adapters.mariadb.directory import MariaDbAccountDirectory
from legacy_adapters.settings import LegacyDatabaseSettings
from tests.contracts.account_directory import AccountDirectoryContract, Directory
from tests.support.arranger import SqlArranger


class TestMariaDbDirectory(AccountDirectoryContract):
    @pytest.fixture
    def directory(self, scratch: tuple[LegacyDatabaseSettings, Engine]) -> Iterator[Directory]:
        _, engine = scratch
        yield MariaDbAccountDirectory(engine), SqlArranger(engine)
