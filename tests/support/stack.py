"""Where each real service of the stack answers, and a check that fails (never skips) when one
does not: shared by the tests and bench/."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]  # the checkout: deploy/, the scripts, the schema


@dataclass(frozen=True)
class Stack:
    """Where each real service answers; the same MIG_* variables the deploy scripts read."""

    host: str
    mariadb_port: int
    monolith_port: int
    kafka_port: int
    kafka_relayed_port: int  # Kafka's listener meant to sit behind a test's relay...
    kafka_relay_port: int  # ...which it tells clients to reach at this port (deploy/kafka.sh)
    hbase_thrift_port: int
    db_user: str
    db_password: str
    db_name: str

    @classmethod
    def from_env(cls) -> Stack:
        env = os.environ
        return cls(
            host="127.0.0.1",
            mariadb_port=int(env.get("MIG_MARIADB_PORT", "3306")),
            monolith_port=int(env.get("MIG_MONOLITH_PORT", "8080")),
            kafka_port=int(env.get("MIG_KAFKA_PORT", "9092")),
            kafka_relayed_port=int(env.get("MIG_KAFKA_RELAYED_PORT", "9094")),
            kafka_relay_port=int(env.get("MIG_KAFKA_RELAY_PORT", "9095")),
            hbase_thrift_port=int(env.get("MIG_HBASE_THRIFT_PORT", "9090")),
            db_user=env.get("MIG_DB_USER", "chat"),
            db_password=env.get("MIG_DB_PASSWORD", "chat"),
            db_name=env.get("MIG_DB_NAME", "chat"),
        )

    @property
    def monolith_url(self) -> str:
        return f"http://{self.host}:{self.monolith_port}"

    @property
    def kafka_bootstrap(self) -> str:
        return f"{self.host}:{self.kafka_port}"

    @property
    def kafka_relay_bootstrap(self) -> str:
        """Kafka reached through the `kafka_relay` fixture: cutting it cuts off only the
        clients that bootstrapped here."""
        return f"{self.host}:{self.kafka_relay_port}"


def require_port(service: str, host: str, port: int) -> None:
    """Fail (not skip) with the service's name and the command that starts it."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return
    except OSError as exc:
        pytest.fail(
            f"{service} does not answer on {host}:{port} ({exc}). "
            f"Start the stack with `make up` (or run the tests with `make test`, which starts it).",
            pytrace=False,
        )
