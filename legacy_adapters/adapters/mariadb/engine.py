"""The SQLAlchemy 2.0 engine towards the legacy MariaDB, over PyMySQL.

Built on demand from settings (never at import time). Sessions are READ COMMITTED: a reader of
the monolith must see the latest committed row, never an old REPEATABLE READ snapshot
(DESIGN.md, "Stale snapshots").
"""

from __future__ import annotations

from sqlalchemy import URL, Engine, create_engine

from legacy_adapters.settings import LegacyDatabaseSettings


def legacy_url(settings: LegacyDatabaseSettings) -> URL:
    return URL.create(
        "mysql+pymysql",
        username=settings.db_user,
        password=settings.db_password.get_secret_value(),
        host=settings.mariadb_host,
        port=settings.mariadb_port,
        database=settings.db_name,
        query={"charset": "utf8mb4"},
    )


def make_engine(settings: LegacyDatabaseSettings, *, pool_size: int = 5) -> Engine:
    """An engine whose connections speak utf8mb4 and read at READ COMMITTED."""
    return create_engine(
        legacy_url(settings),
        pool_size=pool_size,
        pool_pre_ping=True,
        pool_recycle=3600,
        isolation_level="READ COMMITTED",
        connect_args={"connect_timeout": 5, "read_timeout": 120, "write_timeout": 120},
    )
