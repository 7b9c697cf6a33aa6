"""A scratch control database (`<control db>_test_<hex>`, a name deploy/mariadb.sh grants the
`chat` user) with the control store's schema, dropped afterwards. MariaDB missing is a
failure, never a skip."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from pydantic import SecretStr
from sqlalchemy import text

from gateway.adapters.mariadb.control_schema import DEFAULT_DB_NAME, control_engine, ensure_schema
from legacy_adapters.adapters.mariadb.engine import make_engine
from legacy_adapters.settings import LegacyDatabaseSettings
from tests.support.stack import Stack, require_port


def server_settings(stack: Stack) -> LegacyDatabaseSettings:
    return LegacyDatabaseSettings(
        mariadb_host=stack.host, mariadb_port=stack.mariadb_port, db_name=stack.db_name,
        db_user=stack.db_user, db_password=SecretStr(stack.db_password),
    )  # fmt: skip


@contextmanager
def scratch_control_database(stack: Stack) -> Iterator[tuple[LegacyDatabaseSettings, str]]:
    """The monolith's server settings and the name of a fresh control database with the
    schema."""
    require_port("MariaDB", stack.host, stack.mariadb_port)
    server = server_settings(stack)
    base = os.environ.get("MIG_CONTROL_DB_NAME", DEFAULT_DB_NAME)
    name = f"{base}_test_{uuid.uuid4().hex[:10]}"
    admin = make_engine(server)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    engine = control_engine(server, name)
    try:
        ensure_schema(engine)
        yield server, name
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()
