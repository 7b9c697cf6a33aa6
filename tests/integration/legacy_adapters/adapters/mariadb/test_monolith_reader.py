"""The MariaDB reader holds the MonolithReader contract, and its mappings match the schema."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, inspect

from legacy_adapters.adapters.mariadb.monolith_reader import MariaDbMonolithReader
from legacy_adapters.adapters.mariadb.schema import Legacy
from legacy_adapters.settings import LegacyDatabaseSettings
from newcore.ports import MonolithUnavailable
from tests.contracts.monolith_reader import Monolith, MonolithReaderContract
from tests.support.arranger import SqlArranger


class TestMariaDbMonolithReader(MonolithReaderContract):
    @pytest.fixture
    def monolith(self, scratch: tuple[LegacyDatabaseSettings, Engine]) -> Iterator[Monolith]:
        _, engine = scratch
        yield MariaDbMonolithReader(engine), SqlArranger(engine)


def test_the_typed_mappings_match_the_live_schema(
    scratch: tuple[LegacyDatabaseSettings, Engine],
) -> None:
    _, engine = scratch
    live = inspect(engine)
    for table in Legacy.metadata.sorted_tables:
        columns = {c["name"]: c["nullable"] for c in live.get_columns(table.name)}
        mapped = {c.name: c.nullable for c in table.columns if not c.primary_key}
        assert {name: columns[name] for name in mapped} == mapped, table.name
        assert set(mapped) | {c.name for c in table.primary_key} <= set(columns), table.name


def test_a_missing_database_is_monolith_unavailable(
    scratch: tuple[LegacyDatabaseSettings, Engine],
) -> None:
    from legacy_adapters.adapters.mariadb.engine import make_engine

    settings, _ = scratch
    reader = MariaDbMonolithReader(make_engine(settings.model_copy(update={"mariadb_port": 1})))
    with pytest.raises(MonolithUnavailable, match="monolith database: OperationalError"):
        reader.read_messages([(1, 1)])
