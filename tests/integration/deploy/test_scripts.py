"""The deploy scripts refuse bad settings and taken ports with a clear message, never a hang.

Each run uses its own state dir, so the running stack is never touched.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.stack import Stack, require_port

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"


def run(
    script: str, *args: str, env: dict[str, str], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(DEPLOY / script), *args],
        env={**os.environ, "MIG_STATE_DIR": str(tmp_path / "state"), **env},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("script", "env", "message"),
    [
        ("mariadb.sh", {"MIG_MARIADB_PORT": "abc"}, "MIG_MARIADB_PORT=abc is not a TCP port"),
        ("mariadb.sh", {"MIG_MARIADB_PORT": "70000"}, "MIG_MARIADB_PORT=70000 is not a TCP port"),
        ("mariadb.sh", {"MIG_DB_NAME": "chat; DROP"}, "MIG_DB_NAME='chat; DROP' must be letters"),
        (
            "mariadb.sh",
            {"MIG_DB_PASSWORD": "it's"},
            "MIG_DB_PASSWORD must be non-empty and hold no quote",
        ),
        (
            "web.sh",
            {"MIG_MONOLITH_RATE_LIMIT": "maybe"},
            "MIG_MONOLITH_RATE_LIMIT='maybe' must be on or off",
        ),
        (
            "web.sh",
            {"MIG_MONOLITH_FPM_CHILDREN": "0"},
            "MIG_MONOLITH_FPM_CHILDREN='0' must be 1..99",
        ),
        ("stack.sh", {"MIG_KAFKA_PORT": "9o92"}, "MIG_KAFKA_PORT=9o92 is not a TCP port"),
    ],
)
def test_bad_settings_are_named(
    script: str, env: dict[str, str], message: str, tmp_path: Path
) -> None:
    result = run(script, "start" if script != "stack.sh" else "up", env=env, tmp_path=tmp_path)
    assert result.returncode != 0
    assert f"error: {message}" in result.stderr


def test_unknown_subcommand_prints_usage(tmp_path: Path) -> None:
    result = run("mariadb.sh", "frobnicate", env={}, tmp_path=tmp_path)
    assert result.returncode != 0
    assert "usage:" in result.stderr


def test_a_taken_port_is_refused_naming_its_holder(stack: Stack, tmp_path: Path) -> None:
    """MariaDB asked to start on the monolith's port (held by nginx) refuses, naming nginx."""
    require_port("the monolith (nginx)", stack.host, stack.monolith_port)
    result = run(
        "mariadb.sh", "start", env={"MIG_MARIADB_PORT": str(stack.monolith_port)}, tmp_path=tmp_path
    )
    assert result.returncode != 0
    assert (
        f'error: port {stack.monolith_port} for mariadb is already taken by "nginx"'
        in result.stderr
    )
