"""Scratch databases with the monolith's schema, one per test, dropped afterwards: tests of
the legacy side never touch the demo data in `chat`."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

from pydantic import SecretStr
from sqlalchemy import Engine, text

from legacy_adapters.adapters.mariadb.engine import make_engine
from legacy_adapters.settings import LegacyDatabaseSettings
from tests.support.stack import REPO, Stack, require_port

SCHEMA = REPO / "deploy" / "monolith" / "schema.sql"


def scratch_settings(stack: Stack) -> LegacyDatabaseSettings:
    name = f"{stack.db_name}_test_{uuid.uuid4().hex[:10]}"
    return LegacyDatabaseSettings(
        mariadb_host=stack.host, mariadb_port=stack.mariadb_port, db_name=name,
        db_user=stack.db_user, db_password=SecretStr(stack.db_password),
    )  # fmt: skip


@contextlib.contextmanager
def scratch_database(stack: Stack) -> Iterator[tuple[LegacyDatabaseSettings, Engine]]:
    """An empty database with the monolith's schema, dropped afterwards."""
    require_port("MariaDB", stack.host, stack.mariadb_port)
    settings = scratch_settings(stack)
    server = make_engine(settings.model_copy(update={"db_name": stack.db_name}))
    with server.begin() as conn:
        conn.execute(text(f"CREATE DATABASE `{settings.db_name}` CHARACTER SET utf8mb4"))
    engine = make_engine(settings)
    schema = "\n".join(
        line for line in SCHEMA.read_text().splitlines() if not line.startswith("--")
    )
    with engine.begin() as conn:
        for statement in schema.split(";"):
            if statement.strip():
                conn.exec_driver_sql(statement)
    try:
        yield settings, engine
    finally:
        engine.dispose()
        with server.begin() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{settings.db_name}`"))
        server.dispose()
