"""The pipeline's commands: --help, and bad settings or arguments refused with a clear message
that names the setting and never echoes its value."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from legacy_adapters.entrypoints import binlog_source
from newcore.entrypoints import capturer, updater

COMMANDS: list[tuple[str, Callable[[list[str] | None], int], str]] = [
    ("chat-capturer", capturer.main, "MIG_CAPTURER_"),
    ("chat-updater", updater.main, "MIG_UPDATER_"),
    ("chat-binlog-source", binlog_source.main, "MIG_BINLOG_"),
]


@pytest.mark.parametrize(("name", "main", "prefix"), COMMANDS)
def test_help_names_the_settings(
    name: str, main: Callable[[list[str] | None], int], prefix: str,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: {name}") and prefix in out and "/healthz" in out


@pytest.mark.parametrize(("name", "main", "prefix"), COMMANDS)
def test_a_bad_setting_is_refused_by_name_without_its_value(
    name: str, main: Callable[[list[str] | None], int], prefix: str,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv(f"{prefix}BACKOFF_MS", "-7777")
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{name}: bad setting: {prefix}BACKOFF_MS:") and "-7777" not in err


@pytest.mark.parametrize(("name", "main", "prefix"), COMMANDS)
def test_the_shared_partition_count_is_one_setting_for_every_command(
    name: str, main: Callable[[list[str] | None], int], prefix: str,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Issue 11: the partition count is declared once (MIG_TOPIC_PARTITIONS), so the
    processes that write and read a topic cannot be configured apart."""
    monkeypatch.setenv("MIG_TOPIC_PARTITIONS", "0")
    assert main([]) == 2
    assert f"{name}: bad setting: MIG_TOPIC_PARTITIONS:" in capsys.readouterr().err


@pytest.mark.parametrize(("name", "main", "prefix"), COMMANDS)
def test_an_unknown_argument_is_refused(
    name: str, main: Callable[[list[str] | None], int], prefix: str,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    with pytest.raises(SystemExit) as exit_:
        main(["--frobnicate"])
    assert exit_.value.code == 2
    assert "unrecognized arguments: --frobnicate" in capsys.readouterr().err


def test_a_bad_topic_name_is_refused(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MIG_TOPIC_HINTS", "hints; rm -rf /")
    assert capturer.main([]) == 2
    assert "bad setting: MIG_TOPIC_HINTS:" in capsys.readouterr().err
