"""`chat-seed` refuses nonsense arguments with a usage message, before touching any database."""

from __future__ import annotations

import pytest

from legacy_adapters.entrypoints.seed_cli import main


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        ([], "the following arguments are required: --messages"),
        (["--messages", "many"], "'many' is not a whole number"),
        (["--messages", "0"], "0 is outside 1..5000000000"),
        (["--messages", "-5"], "-5 is outside 1..5000000000"),
        (["--messages", "10", "--rooms", "0"], "0 is outside 1..100000000"),
        (["--messages", "10", "--accounts", "1"], "1 is outside 2..100000000"),
        (["--messages", "10", "--seed", "1.5"], "'1.5' is not a whole number"),
        (["--messages", "10", "--frobnicate"], "unrecognized arguments: --frobnicate"),
    ],
)
def test_nonsense_is_refused_with_usage(
    argv: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "usage: chat-seed" in err
    assert complaint in err


def test_bad_setting_is_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MIG_MARIADB_PORT", "seventy")
    assert main(["--messages", "10"]) == 2
    assert "bad setting: MIG_MARIADB_PORT:" in capsys.readouterr().err


def test_unreachable_database_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MIG_MARIADB_PORT", "1")  # nothing listens on port 1
    assert main(["--messages", "10", "--quiet"]) == 4
    err = capsys.readouterr().err
    assert "cannot use the database at chat@127.0.0.1:1/chat" in err
    assert "Is MariaDB up?" in err
