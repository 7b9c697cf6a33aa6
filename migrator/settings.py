"""The migrator's settings: one typed object (`MigratorSettings`), read once from MIG_*
variables by the composition root (`migrator/bootstrap.py`) and passed in. What it shares with
other processes is declared where it belongs: the monolith's database
(`legacy_adapters/settings.py`), Kafka, the topics and HBase (`newcore/settings.py`), the
control store (`gateway/settings.py`). The CLI's options override a job's settings per run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.settings import ControlSettings, ProxySettings, SpoolSettings
from legacy_adapters.settings import BinlogSourceSettings, LegacyDatabaseSettings
from newcore.settings import (
    CapturerSettings,
    EngineSettings,
    HBaseSettings,
    KafkaSettings,
    TopicSettings,
    UpdaterSettings,
    read,
)


class BackfillSettings(BaseSettings):
    """The backfill (migrator/README.md, "Backfill")."""

    model_config = SettingsConfigDict(env_prefix="MIG_BACKFILL_", extra="ignore", frozen=True)

    # Rows per range hint. At most the capturer's range page (MIG_CAPTURER_RANGE_PAGE), so that
    # one hint is captured in one page (no follow-up the backfill cannot see the position of).
    chunk_rows: int = Field(default=1000, ge=1, le=100_000)
    # Rooms worked on at once (their chunks interleave in each append).
    rooms_in_parallel: int = Field(default=8, ge=1, le=1024)
    # Messages per second sent (as range hints); the operator changes it while it runs.
    rate: float = Field(default=20_000, gt=0, le=10_000_000)
    # Throttle: beyond any of these the backfill slows down (halves its rate) or waits.
    max_probe_ms: float = Field(default=50.0, gt=0)
    max_threads_running: int = Field(default=16, ge=1)
    max_capture_lag: int = Field(default=20_000, ge=1)
    # How long a room's last range may take to be visible in the read model.
    visible_timeout_s: float = Field(default=600.0, gt=0)
    # Hotness: messages sent in the last this-many days decide the default order.
    hot_days: int = Field(default=7, ge=1, le=3650)


class ParitySettings(BaseSettings):
    """The parity check (migrator/README.md, "Parity")."""

    model_config = SettingsConfigDict(env_prefix="MIG_PARITY_", extra="ignore", frozen=True)

    page: int = Field(default=1000, ge=1, le=100_000)
    # How long to wait for the pipeline to reach a frontier before a room is "late".
    frontier_timeout_s: float = Field(default=120.0, gt=0)
    # Rounds of re-checking a row that changed after the frontier before it is reported.
    recheck_rounds: int = Field(default=3, ge=1, le=100)
    # Where reports are written (JSON and HTML), one directory per run.
    reports_dir: Path = Path(".state/migrator/reports")
    # A clean parity older than this does not let a room go past shadow_read.
    max_age_s: float = Field(default=24 * 3600.0, gt=0)
    # Rooms scanned at once, each by a process of its own: reading, translating and comparing
    # both sides is Python's work, one core per process (1: in the command's own process).
    workers: int = Field(default=2, ge=1, le=64)


class MigratorOpsSettings(BaseSettings):
    """Metrics of a running job (Prometheus text on /metrics) and its logs."""

    model_config = SettingsConfigDict(env_prefix="MIG_MIGRATOR_", extra="ignore", frozen=True)

    metrics_host: str = "127.0.0.1"
    # 0: no metrics endpoint. Jobs run one at a time per port; a second job on the same port
    # runs without one and says so.
    metrics_port: int = Field(default=9108, ge=0, le=65535)
    # Structured logs (JSON lines): all of them, appended, to this file; on the terminal only
    # this level and above (the operator watches the progress bar and the summary).
    log_file: Path = Path(".state/migrator/chat-migrate.log")
    terminal_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"
    # Who a change is recorded as when --who is not given.
    who: str = "chat-migrate"


class MigratorSettings(BaseModel):
    """Every setting of `chat-migrate`, one object."""

    model_config = ConfigDict(frozen=True)

    backfill: BackfillSettings
    parity: ParitySettings
    ops: MigratorOpsSettings
    control: ControlSettings
    spool: SpoolSettings
    # The gateway that holds the spool (MIG_GATEWAY_ADMIN_HOST/PORT/TOKEN): `repair --lost-rooms`
    # asks its admin API to forget the rooms it repaired.
    gateway: ProxySettings
    database: LegacyDatabaseSettings
    binlog: BinlogSourceSettings
    kafka: KafkaSettings
    topics: TopicSettings
    hbase: HBaseSettings
    # Their groups (MIG_CAPTURER_GROUP, MIG_UPDATER_GROUP) say how far the pipeline is; the
    # capturer's range page bounds the backfill's chunk.
    capturer: CapturerSettings
    updater: UpdaterSettings
    # Kafka and HBase, or the embedded files (MIG_ENGINE, MIG_EMBEDDED_DIR): the jobs' hints
    # log, read store and pipeline positions (migrator/bootstrap.py picks them).
    engine: EngineSettings = Field(default_factory=EngineSettings.default)

    @classmethod
    def from_env(cls) -> MigratorSettings:
        """Reads the MIG_* variables; SettingsError names the first bad one (never its value)."""
        return cls(
            backfill=read(BackfillSettings),
            parity=read(ParitySettings),
            ops=read(MigratorOpsSettings),
            control=read(ControlSettings),
            spool=read(SpoolSettings),
            gateway=read(ProxySettings),
            database=read(LegacyDatabaseSettings),
            binlog=read(BinlogSourceSettings),
            kafka=read(KafkaSettings),
            topics=read(TopicSettings),
            hbase=read(HBaseSettings),
            capturer=read(CapturerSettings),
            updater=read(UpdaterSettings),
            engine=read(EngineSettings),
        )
