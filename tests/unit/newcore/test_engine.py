"""One setting picks the new core's engine (DESIGN.md, "Two ways to run the new core"):
MIG_ENGINE, read into every process's settings from the one declaration in newcore/settings.py,
and every composition root builds its parts from it. Nothing is opened while building."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.settings import GatewaySettings
from legacy_adapters.entrypoints import binlog_source
from legacy_adapters.settings import LegacySettings
from migrator import bootstrap as migrator_bootstrap
from migrator.adapters.embedded.file_pipeline import FilePipeline
from migrator.adapters.kafka.pipeline import KafkaPipeline
from migrator.settings import MigratorSettings
from newcore import bootstrap
from newcore.adapters.embedded.file_event_log import FileEventLog
from newcore.adapters.embedded.sqlite_read_store import SqliteReadStore
from newcore.adapters.hbase.read_store import HBaseReadStore
from newcore.adapters.kafka.event_log import KafkaEventLog
from newcore.entrypoints import capturer, updater
from newcore.settings import EngineSettings, NewCoreSettings, SettingsError, read


def test_the_default_is_kafka_and_hbase(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MIG_ENGINE", "MIG_EMBEDDED_DIR", "MIG_STATE_DIR"):
        monkeypatch.delenv(name, raising=False)
    engine = read(EngineSettings)
    assert engine.engine == "kafka-hbase" and not engine.embedded
    assert engine.directory == Path(".state/embedded")
    assert EngineSettings.default() == engine  # a settings object built in code: the same


def test_the_embedded_dir_follows_the_state_dir_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIG_ENGINE", "embedded")
    monkeypatch.setenv("MIG_STATE_DIR", "/srv/chat-state")
    monkeypatch.delenv("MIG_EMBEDDED_DIR", raising=False)
    engine = read(EngineSettings)
    assert engine.log_dir == Path("/srv/chat-state/embedded/log")
    assert engine.read_model == Path("/srv/chat-state/embedded/read-model.sqlite")
    monkeypatch.setenv("MIG_EMBEDDED_DIR", "/data/first-look")
    assert read(EngineSettings).log_dir == Path("/data/first-look/log")


def test_every_process_reads_the_same_one_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIG_ENGINE", "embedded")
    monkeypatch.setenv("MIG_EMBEDDED_DIR", "/data/first-look")
    monkeypatch.setenv("MIG_GATEWAY_ADMIN_TOKEN", "x" * 16)
    engines = {
        NewCoreSettings.from_env().engine,
        LegacySettings.from_env().engine,
        GatewaySettings.from_env().engine,
        MigratorSettings.from_env().engine,
    }
    assert engines == {read(EngineSettings)}


def test_a_bad_engine_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIG_ENGINE", "kafka")
    with pytest.raises(
        SettingsError, match="bad setting: MIG_ENGINE: Input should be 'kafka-hbase' or 'embedded'"
    ):
        read(EngineSettings)


@pytest.mark.parametrize(
    ("name", "main"),
    [("chat-capturer", capturer.main), ("chat-updater", updater.main),
     ("chat-binlog-source", binlog_source.main)],
)  # fmt: skip
def test_the_commands_refuse_a_bad_engine(
    name: str, main: object, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MIG_ENGINE", "hbase-only")
    assert main([]) == 2  # type: ignore[operator]
    err = capsys.readouterr().err
    assert err.startswith(f"{name}: bad setting: MIG_ENGINE:") and "hbase-only" not in err


def test_the_composition_roots_build_the_embedded_parts_without_opening_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MIG_ENGINE", "embedded")
    monkeypatch.setenv("MIG_EMBEDDED_DIR", str(tmp_path / "embedded"))
    settings = MigratorSettings.from_env()
    hints = migrator_bootstrap.hints_log(settings)
    store = migrator_bootstrap.read_store(settings)
    pipeline = migrator_bootstrap.pipeline(settings)
    assert isinstance(hints, FileEventLog) and isinstance(store, SqliteReadStore)
    assert isinstance(pipeline, FilePipeline)
    core = NewCoreSettings.from_env()
    bootstrap.updater(core)
    with bootstrap.capturer(core):
        pass
    assert not (tmp_path / "embedded").exists()  # nothing opened yet
    assert asyncio.run(hints.append([(7, b"hint")])) == [0]
    assert (tmp_path / "embedded" / "log" / settings.topics.hints).is_dir()
    store.close()


def test_the_default_composition_roots_build_kafka_and_hbase(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MIG_ENGINE", raising=False)
    settings = MigratorSettings.from_env()
    assert isinstance(migrator_bootstrap.hints_log(settings), KafkaEventLog)
    assert isinstance(migrator_bootstrap.read_store(settings), HBaseReadStore)
    assert isinstance(migrator_bootstrap.pipeline(settings), KafkaPipeline)
