"""End-to-end stories on the real stack: each test builds a whole migration of its own
(tests/support/gateway_world.py). A missing service fails the test, never skips it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.gateway_world import GatewayWorld, gateway_world
from tests.support.stack import Stack


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "e2e" in item.path.parts:
            item.add_marker(pytest.mark.services)


@pytest.fixture(scope="session")
def stack() -> Stack:
    return Stack.from_env()


@pytest.fixture
def world(stack: Stack, tmp_path: Path) -> Iterator[GatewayWorld]:
    with gateway_world(stack, tmp_path / "logs") as built:
        yield built
