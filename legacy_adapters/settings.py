"""The legacy side's settings: one typed object (`LegacySettings`), read once from MIG_*
variables by the composition root (`legacy_adapters/bootstrap.py`) and passed in.

The same variables configure the deploy scripts (deploy/lib.sh, deploy/mariadb.sh), so a
process and the stack it talks to cannot disagree about a port. What the binlog source shares
with the new core (Kafka, the topics and their partition count) is the new core's section,
declared there once (`newcore/settings.py`), not a copy.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from newcore.settings import EngineSettings, KafkaSettings, TopicSettings, read


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


class BinlogSourceSettings(BaseSettings):
    """`chat-binlog-source`: the monolith's binlog, read as a replica, to hints."""

    model_config = SettingsConfigDict(env_prefix="MIG_BINLOG_", extra="ignore", frozen=True)

    checkpoint_topic: str = Field(
        default="chat.binlog-checkpoints", pattern=r"^[A-Za-z0-9._-]{1,200}$"
    )
    transactional_id: str = Field(default="chat-binlog-source", pattern=r"^[A-Za-z0-9._-]{1,200}$")
    server_id: int = Field(default=4242, ge=2, le=4_294_967_295)
    max_hints: int = Field(default=5000, ge=1, le=100_000)
    max_wait_ms: int = Field(default=50, ge=0, le=10_000)
    transaction_timeout_ms: int = Field(default=15_000, ge=1000, le=900_000)
    # 0.0.0.0 lets a probe from another host reach /healthz.
    ops_host: str = "127.0.0.1"
    ops_port: int = Field(default=9313, ge=0, le=65535)
    backoff_ms: int = Field(default=500, ge=10)
    # The longest wait between two tries while MariaDB or Kafka is down: recovery follows the
    # end of an outage within this bound (plus jitter).
    max_backoff_ms: int = Field(default=2000, ge=10)


class LegacySettings(BaseModel):
    """Every setting of the legacy side's processes, one object."""

    model_config = ConfigDict(frozen=True)

    database: LegacyDatabaseSettings
    binlog: BinlogSourceSettings
    kafka: KafkaSettings
    topics: TopicSettings
    engine: EngineSettings = Field(default_factory=EngineSettings.default)

    @classmethod
    def from_env(cls) -> LegacySettings:
        """Reads the MIG_* variables; SettingsError names the first bad one."""
        return cls(
            database=read(LegacyDatabaseSettings),
            binlog=read(BinlogSourceSettings),
            kafka=read(KafkaSettings),
            topics=read(TopicSettings),
            engine=read(EngineSettings),
        )
