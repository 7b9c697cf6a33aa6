"""The new core's settings: one typed object (`NewCoreSettings`), read once from MIG_*
variables by the composition root (`newcore/bootstrap.py`) and passed in; nothing reads the
environment anywhere else.

Each value is declared once. The topics and their partition count are shared by every process
that writes or reads them (the binlog source, the capturer, the updater, later the gateway and
the jobs): they live in `TopicSettings` only, so a room cannot land in another partition because
two processes were configured apart. The same variables configure deploy/ (deploy/lib.sh), so
a process and the stack agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from newcore.errors import Misconfigured

_TOPIC = r"^[A-Za-z0-9._-]{1,200}$"


class SettingsError(Misconfigured):
    """A bad setting, named by its variable; never its value (it may be a secret)."""


class EngineSettings(BaseSettings):
    """Which engine the new core runs on (DESIGN.md, "Two ways to run the new core"), read by
    every composition root, so that one setting moves every process at once:

    - `MIG_ENGINE=kafka-hbase` (the default): the event log on Kafka, the read model on HBase.
    - `MIG_ENGINE=embedded`: no JVM. The topics are files under `MIG_EMBEDDED_DIR/log`
      (`newcore/adapters/embedded/file_topics.py`: transactions by a redo journal, shared by
      the processes through a file lock), the read model one SQLite file,
      `MIG_EMBEDDED_DIR/read-model.sqlite`. For a first look and small installs on one machine:
      the same programs, the same contract suites, one disk.

    `MIG_EMBEDDED_DIR` defaults to `embedded/` in the state dir (`MIG_STATE_DIR`, `.state`),
    where deploy/ puts it too. The topics' names and partition count (`TopicSettings`) and the
    groups are the same settings on both engines."""

    model_config = SettingsConfigDict(env_prefix="MIG_", extra="ignore", frozen=True)

    engine: Literal["kafka-hbase", "embedded"] = "kafka-hbase"
    embedded_dir: Path | None = None
    state_dir: Path = Path(".state")

    @classmethod
    def default(cls) -> EngineSettings:
        """The default engine, without reading the environment (a settings object built in
        code, e.g. by a test, runs on Kafka and HBase unless told otherwise)."""
        return cls.model_construct()

    @property
    def embedded(self) -> bool:
        return self.engine == "embedded"

    @property
    def directory(self) -> Path:
        """Where the embedded engine keeps everything."""
        return self.embedded_dir if self.embedded_dir is not None else self.state_dir / "embedded"

    @property
    def log_dir(self) -> Path:
        """The embedded topics' root (hints, events, dead letters, sources' checkpoints)."""
        return self.directory / "log"

    @property
    def read_model(self) -> Path:
        """The embedded read model's SQLite file."""
        return self.directory / "read-model.sqlite"


class KafkaSettings(BaseSettings):
    """The Kafka cluster (one KRaft node locally)."""

    model_config = SettingsConfigDict(env_prefix="MIG_KAFKA_", extra="ignore", frozen=True)

    bootstrap: str = Field(default="127.0.0.1:9092", pattern=r"^[A-Za-z0-9_.:,\[\]-]+$")
    request_timeout_ms: int = Field(default=30_000, ge=1000)
    # A consumer whose partitions got no fetch answer for this long reports Kafka unreachable
    # in its health, even with nothing to produce (fetches answer at least every
    # fetch_max_wait_ms, at most 5 s, while Kafka is reachable).
    silence_ms: int = Field(default=15_000, ge=6000)


class TopicSettings(BaseSettings):
    """The topics every process shares, and their one partition count (a room's partition is
    `partition_for(room, partitions)` on every topic: changing it moves rooms)."""

    model_config = SettingsConfigDict(env_prefix="MIG_TOPIC_", extra="ignore", frozen=True)

    hints: str = Field(default="chat.hints", pattern=_TOPIC)
    events: str = Field(default="chat.events", pattern=_TOPIC)
    dead_letters: str = Field(default="chat.dead-letters", pattern=_TOPIC)
    partitions: int = Field(default=16, ge=1, le=1024)


class HBaseSettings(BaseSettings):
    """The HBase Thrift 1 server (the one happybase speaks) and our tables' name prefix."""

    model_config = SettingsConfigDict(env_prefix="MIG_HBASE_", extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    thrift_port: int = Field(default=9090, ge=1, le=65535)
    table_prefix: str = Field(default="chat", pattern=r"^[A-Za-z0-9_]{1,64}$")
    pool_size: int = Field(default=4, ge=1, le=64)
    timeout_ms: int = Field(default=30_000, ge=100)


class WorkerSettings(BaseSettings):
    """What every consumer-group worker has: its group, batch bound, ops endpoint and backoff."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    max_records: int = Field(default=2000, ge=1, le=100_000)
    # 0.0.0.0 lets a probe from another host (a kubelet, a load balancer) reach /healthz.
    ops_host: str = "127.0.0.1"
    backoff_ms: int = Field(default=500, ge=10)
    # The longest wait between two tries of a dependency that is down: recovery follows the
    # outage's end within this bound (plus jitter), so it stays short.
    max_backoff_ms: int = Field(default=2000, ge=10)
    # How long the broker may hold a fetch with nothing new: a bound on latency when records
    # trickle in (read_committed fetches wait for the transaction markers, not only the data).
    fetch_max_wait_ms: int = Field(default=100, ge=0, le=5000)


class CapturerSettings(WorkerSettings):
    """`chat-capturer`: hints to full-state events, one Kafka transaction per batch."""

    model_config = SettingsConfigDict(env_prefix="MIG_CAPTURER_", extra="ignore", frozen=True)

    group: str = Field(default="chat-capturer", pattern=_TOPIC)
    transactional_id_prefix: str = Field(
        default="chat-capturer", pattern=r"^[A-Za-z0-9._-]{1,150}$"
    )
    range_page: int = Field(default=1000, ge=1, le=100_000)
    max_ranges_per_transaction: int = Field(default=8, ge=1, le=1000)
    # The largest event sent; larger ones become dead letters. At most what Kafka takes by
    # default (max.message.bytes 1,048,588; aiokafka's max_request_size 1 MiB), less the
    # record batch's framing.
    max_event_bytes: int = Field(default=1_000_000, ge=1024, le=1_000_000)
    transaction_timeout_ms: int = Field(default=60_000, ge=1000, le=900_000)
    db_pool_size: int = Field(default=4, ge=1, le=64)
    ops_port: int = Field(default=9312, ge=0, le=65535)


class UpdaterSettings(WorkerSettings):
    """`chat-updater`: events to the HBase read model."""

    model_config = SettingsConfigDict(env_prefix="MIG_UPDATER_", extra="ignore", frozen=True)

    group: str = Field(default="chat-updater", pattern=_TOPIC)
    ops_port: int = Field(default=9311, ge=0, le=65535)


class ReadApiSettings(BaseSettings):
    """`chat-read-api`: the contract's message reads, answered from the read model. The account
    directory it asks for tokens, memberships and names is the monolith's database
    (MIG_MARIADB_*, MIG_DB_*: `legacy_adapters.settings.LegacyDatabaseSettings`)."""

    model_config = SettingsConfigDict(env_prefix="MIG_READ_API_", extra="ignore", frozen=True)

    # 0.0.0.0 lets the gateway (or a probe) on another host reach it.
    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=8070, ge=0, le=65535)
    # How old a message must be before a force=0 read serves it (not for shadow reads): longer
    # than a second (send_time's resolution) plus twice the monolith's longest message
    # transaction plus the capture pipeline's lag plus the clocks' skew
    # (newcore/service/reads.py, "The applied frontier").
    settle_s: float = Field(default=3.0, ge=0, le=3600, allow_inf_nan=False)
    # Connections to the monolith's database (the directory: tokens, memberships, names).
    db_pool_size: int = Field(default=8, ge=1, le=64)


class NewCoreSettings(BaseModel):
    """Every setting of the new core's processes, one object."""

    model_config = ConfigDict(frozen=True)

    kafka: KafkaSettings
    topics: TopicSettings
    hbase: HBaseSettings
    capturer: CapturerSettings
    updater: UpdaterSettings
    read_api: ReadApiSettings
    engine: EngineSettings = Field(default_factory=EngineSettings.default)

    @classmethod
    def from_env(cls) -> NewCoreSettings:
        """Reads the MIG_* variables; SettingsError names the first bad one."""
        return cls(
            kafka=read(KafkaSettings),
            topics=read(TopicSettings),
            hbase=read(HBaseSettings),
            capturer=read(CapturerSettings),
            updater=read(UpdaterSettings),
            read_api=read(ReadApiSettings),
            engine=read(EngineSettings),
        )


S = TypeVar("S", bound=BaseSettings)


def read(section: type[S]) -> S:
    """One section from the environment, or SettingsError naming the variable and what is
    wrong with it (never its value: it may be a secret)."""
    try:
        return section()
    except ValidationError as exc:
        error = exc.errors()[0]
        prefix = section.model_config.get("env_prefix", "")
        raise SettingsError(
            f"bad setting: {prefix}{str(error['loc'][0]).upper()}: {error['msg']}"
        ) from None
