"""Fixtures for tests that talk to the real stack.

Every service is checked once per session. A missing service is a failure that names the
service and how to start it, never a skip: in CI a green run must mean the real parts answered.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.support.processes import Relay
from tests.support.stack import Stack

pytestmark = pytest.mark.services


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    yield Stack.from_env()


@pytest.fixture
def kafka_relay(stack: Stack) -> Iterator[Relay]:
    """A relay in front of Kafka's relayed listener, on the port that listener advertises: a
    client bootstrapped at `stack.kafka_relay_bootstrap` is cut off from Kafka by `cut()`."""
    try:
        with socket.create_connection((stack.host, stack.kafka_relayed_port), timeout=2):
            pass
    except OSError as exc:
        pytest.fail(
            f"Kafka's relayed listener does not answer on {stack.host}:{stack.kafka_relayed_port} "
            f"({exc}). A Kafka started before deploy/kafka.sh had it must be restarted: "
            "`deploy/kafka.sh stop && make up`.",
            pytrace=False,
        )
    relay = Relay(stack.kafka_relayed_port, port=stack.kafka_relay_port)
    relay.start()
    try:
        yield relay
    finally:
        relay.cut()
