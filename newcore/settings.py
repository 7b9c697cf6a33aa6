"""Where the new core's real stores answer: typed settings read from MIG_* variables.

The same variables configure deploy/ (deploy/lib.sh), so a process and the stack agree.
"""

from __future__ import annotations

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


class HBaseSettings(BaseSettings):
    """The HBase Thrift 1 server (the one happybase speaks) and our tables' name prefix."""

    model_config = SettingsConfigDict(env_prefix="MIG_HBASE_", extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    thrift_port: int = Field(default=9090, ge=1, le=65535)
    table_prefix: str = Field(default="chat", pattern=r"^[A-Za-z0-9_]{1,64}$")
    pool_size: int = Field(default=4, ge=1, le=64)
    timeout_ms: int = Field(default=30_000, ge=100)


class KafkaSettings(BaseSettings):
    """The Kafka cluster (one KRaft node locally)."""

    model_config = SettingsConfigDict(env_prefix="MIG_KAFKA_", extra="ignore", frozen=True)

    bootstrap: str = Field(default="127.0.0.1:9092", pattern=r"^[A-Za-z0-9_.:,\[\]-]+$")
    request_timeout_ms: int = Field(default=30_000, ge=1000)
    # A consumer whose partitions got no fetch answer for this long reports Kafka unreachable
    # in its health, even with nothing to produce (fetches answer at least every
    # fetch_max_wait_ms, at most 5 s, while Kafka is reachable).
    silence_ms: int = Field(default=15_000, ge=6000)


def setting_error(exc: ValidationError) -> str:
    """A bad setting named for a person: the field and what is wrong (never its value: it may
    be a secret)."""
    error = exc.errors()[0]
    return f"bad setting: {error['loc'][0]}: {error['msg']}"
