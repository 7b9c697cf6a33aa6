"""Where the legacy database answers: one typed settings object, read from MIG_* variables.

The same variables configure the deploy scripts (deploy/lib.sh, deploy/mariadb.sh), so a
process and the stack it talks to cannot disagree about a port.
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class LegacyDatabaseSettings(BaseSettings):
    """Connection to the monolith's MariaDB. The password never appears in a repr or a log."""

    model_config = SettingsConfigDict(env_prefix="MIG_", extra="ignore", frozen=True)

    mariadb_host: str = "127.0.0.1"
    mariadb_port: int = Field(default=3306, ge=1, le=65535)
    db_name: str = Field(default="chat", pattern=r"^[A-Za-z0-9_]+$")
    db_user: str = "chat"
    db_password: SecretStr = SecretStr("chat")

    def describe(self) -> str:
        """Where we connect, for messages: never the password."""
        return f"{self.db_user}@{self.mariadb_host}:{self.mariadb_port}/{self.db_name}"
