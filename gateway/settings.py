"""The gateway's settings: one typed object (`GatewaySettings`), read once from MIG_* variables
by the composition root (`gateway/bootstrap.py`) and passed in; nothing reads the environment
anywhere else.

What the gateway shares with other processes is declared where it belongs, not copied: the
monolith's database (`legacy_adapters/settings.py`), Kafka and the topics
(`newcore/settings.py`). The same variables configure deploy/ (deploy/lib.sh), so the front
door, the gateway and the stack agree on ports and paths.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from legacy_adapters.settings import LegacyDatabaseSettings
from newcore.settings import EngineSettings, KafkaSettings, TopicSettings, read

_ORIGIN_HINT = "http://host:port, nothing else (no path, no query, no user)"


def http_origin(value: str) -> str:
    """An http origin (`http://host:port`): where a request may be forwarded. Anything more (a
    path, a query, credentials) is refused, so the gateway cannot be pointed at a URL that
    rewrites what clients asked for."""
    parts = urlsplit(value)
    if (
        parts.scheme != "http"
        or not parts.hostname
        or parts.port is None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username
        or parts.password
    ):
        raise ValueError(f"must be {_ORIGIN_HINT}")
    return f"http://{parts.hostname}:{parts.port}"


class ProxySettings(BaseSettings):
    """The mitmproxy gateway: where it listens and the one upstream it forwards to."""

    model_config = SettingsConfigDict(env_prefix="MIG_GATEWAY_", extra="ignore", frozen=True)

    listen_host: str = "127.0.0.1"
    port: int = Field(default=8090, ge=1, le=65535)
    # The monolith: the only place a request is ever forwarded to.
    upstream: str = "http://127.0.0.1:8080"
    # The token of the admin API (`Authorization: Bearer ...`). No token, no admin API: the
    # gateway refuses to start without one (16 characters at least).
    admin_token: SecretStr | None = None
    admin_host: str = "127.0.0.1"
    admin_port: int = Field(default=8091, ge=0, le=65535)
    # How often the control store's revision is read: a phase change reaches this gateway
    # within this bound (plus one snapshot read).
    control_poll_s: float = Field(default=0.5, ge=0.05, le=30)
    # On stop, how long requests under way may take to finish (the monolith's own timeout is
    # 60 s): an answer cut by a stopping gateway is a 502 for a request the monolith acted on.
    drain_s: float = Field(default=65.0, ge=0, le=600)
    # The room map the front door includes, and its nginx master's pid file; unset: this
    # gateway does not publish the map (another instance does, or there is no front door).
    room_map: Path | None = None
    frontdoor_pid: Path | None = None

    @field_validator("upstream")
    @classmethod
    def _origin(cls, value: str) -> str:
        return http_origin(value)

    @field_validator("admin_token")
    @classmethod
    def _token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return value


class SpoolSettings(BaseSettings):
    """The durable local spool of hints (one per gateway process: its own directory)."""

    model_config = SettingsConfigDict(env_prefix="MIG_SPOOL_", extra="ignore", frozen=True)

    dir: Path = Path(".state/gateway/spool")
    # The bound: beyond it a hint is not kept, its room is recorded as having lost hints.
    max_bytes: int = Field(default=256 * 1024 * 1024, ge=64 * 1024)
    fsync_interval_s: float = Field(default=1.0, ge=0.0, le=60)
    ship_batch: int = Field(default=500, ge=1, le=100_000)
    backoff_ms: int = Field(default=200, ge=10)
    max_backoff_ms: int = Field(default=2000, ge=10)


class ShadowSettings(BaseSettings):
    """Shadow reads: the Read API asked after the client has its answer, compared."""

    model_config = SettingsConfigDict(env_prefix="MIG_SHADOW_", extra="ignore", frozen=True)

    read_api: str = "http://127.0.0.1:8070"
    # How long a comparison may wait for the read model to reach the room's frontier (and,
    # past it, for a difference to go away) before it ends "late" (or "different").
    timeout_s: float = Field(default=5.0, gt=0, le=120)
    # Comparisons under way at once; beyond it a read is not compared ("skipped", counted):
    # the gateway never queues unbounded work behind the monolith's answers.
    concurrency: int = Field(default=64, ge=1, le=10_000)
    # The share of shadow_read reads compared (0 < share <= 1). A comparison costs the gateway
    # about as much CPU as proxying the read (bench/README.md): at full load an operator
    # compares a sample; every read is compared by default.
    sample: float = Field(default=1.0, gt=0, le=1)
    # The recent differences the admin API shows.
    keep_differences: int = Field(default=500, ge=1, le=100_000)
    # How often the verdicts' counts per room are added to the control store's shadow
    # records (the guard of the phases after shadow_read reads them), in one batch.
    record_s: float = Field(default=5.0, gt=0, le=3600)

    @field_validator("read_api")
    @classmethod
    def _origin(cls, value: str) -> str:
        return http_origin(value)


class ControlSettings(BaseSettings):
    """The control store: a database of its own on the monolith's MariaDB server."""

    model_config = SettingsConfigDict(env_prefix="MIG_CONTROL_", extra="ignore", frozen=True)

    db_name: str = Field(default="migration_control", pattern=r"^[A-Za-z0-9_]{1,64}$")


class GatewaySettings(BaseModel):
    """Every setting of a gateway process, one object."""

    model_config = ConfigDict(frozen=True)

    proxy: ProxySettings
    spool: SpoolSettings
    shadow: ShadowSettings
    control: ControlSettings
    database: LegacyDatabaseSettings
    kafka: KafkaSettings
    topics: TopicSettings
    # Kafka, or the embedded topics (MIG_ENGINE): where the shipper appends the spool's hints.
    engine: EngineSettings = Field(default_factory=EngineSettings.default)

    @classmethod
    def from_env(cls) -> GatewaySettings:
        """Reads the MIG_* variables; SettingsError names the first bad one (never its value)."""
        return cls(
            proxy=read(ProxySettings),
            spool=read(SpoolSettings),
            shadow=read(ShadowSettings),
            control=read(ControlSettings),
            database=read(LegacyDatabaseSettings),
            kafka=read(KafkaSettings),
            topics=read(TopicSettings),
            engine=read(EngineSettings),
        )
