"""`chat-gateway` as a process: a stop lets the requests under way finish (the monolith has
acted on them; a cut answer would be a 502 the client cannot safely retry) while new
connections are refused at once (the front door then sends them to the monolith); a bad
setting is refused at start, naming the variable and never the secret."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support.control_db import scratch_control_database
from tests.support.processes import Service, free_port
from tests.support.stack import Stack

pytestmark = pytest.mark.services
TOKEN = "gateway-test-admin-token-0123"
SLOW_S = 2.0


RECEIVED = threading.Event()


class SlowMonolith(BaseHTTPRequestHandler):
    """Answers every request after SLOW_S, as a monolith busy with a heavy page would."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        RECEIVED.set()
        time.sleep(SLOW_S)
        body = b'{"message_id": "7"}'
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def slow_monolith() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowMonolith)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def gateway_env(
    stack: Stack, server: object, control_db: str, upstream: int, tmp: Path
) -> dict[str, str]:
    return {
        **os.environ,
        "MIG_GATEWAY_PORT": str(free_port()),
        "MIG_GATEWAY_ADMIN_PORT": str(free_port()),
        "MIG_GATEWAY_ADMIN_TOKEN": TOKEN,
        "MIG_GATEWAY_UPSTREAM": f"http://127.0.0.1:{upstream}",
        "MIG_GATEWAY_DRAIN_S": "10",
        "MIG_CONTROL_DB_NAME": control_db,
        "MIG_SPOOL_DIR": str(tmp / "spool"),
        "MIG_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",  # nothing there: the spool holds
        "MIG_MARIADB_PORT": str(stack.mariadb_port),
    }


def test_a_stop_lets_the_requests_under_way_finish_and_refuses_new_ones(
    stack: Stack, slow_monolith: int, tmp_path: Path
) -> None:
    with scratch_control_database(stack) as (server, name):
        env = gateway_env(stack, server, name, slow_monolith, tmp_path)
        gateway = Service(
            "gateway.entrypoints.gateway", env, tmp_path, int(env["MIG_GATEWAY_ADMIN_PORT"])
        )
        gateway.start()
        try:
            gateway.eventually(lambda: gateway.ops("/healthz")[0] == 200, "healthy")
            port = int(env["MIG_GATEWAY_PORT"])
            answers: list[tuple[int, bytes] | Exception] = []

            def post() -> None:
                try:
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                    connection.request("POST", "/v2/rooms/1/messages", body=b"body=slow",
                                       headers={"content-type": "application/x-www-form-urlencoded"})  # fmt: skip
                    answer = connection.getresponse()
                    answers.append((answer.status, answer.read()))
                except Exception as exc:
                    answers.append(exc)

            RECEIVED.clear()
            client = threading.Thread(target=post)
            client.start()
            assert RECEIVED.wait(30), f"the request never reached the monolith: {answers}"
            assert gateway.process is not None
            gateway.process.terminate()
            deadline = time.monotonic() + 10
            while True:  # the listener closes at once: a new connection is refused
                with socket.socket() as probe:
                    if probe.connect_ex(("127.0.0.1", port)) != 0:
                        break
                assert time.monotonic() < deadline, "still taking connections while stopping"
                time.sleep(0.05)
            client.join(30)
            assert answers == [(200, b'{"message_id": "7"}')]
            assert gateway.process.wait(30) == 0
            assert "gateway drained" in gateway.log()
        finally:
            gateway.ensure_gone()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MIG_GATEWAY_ADMIN_TOKEN", "short"),
        ("MIG_GATEWAY_UPSTREAM", "https://monolith.example:443/v2"),
        ("MIG_GATEWAY_PORT", "http"),
        ("MIG_SHADOW_SAMPLE", "0"),
        ("MIG_SPOOL_MAX_BYTES", "12"),
    ],
)
def test_a_bad_setting_is_refused_at_start_naming_it(variable: str, value: str) -> None:
    env = {**os.environ, "MIG_GATEWAY_ADMIN_TOKEN": TOKEN, variable: value}
    done = subprocess.run(
        [sys.executable, "-m", "gateway.entrypoints.gateway"], env=env, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert variable in done.stderr
    assert value not in done.stderr or value in ("0", "12", "http")


def test_no_admin_token_no_gateway() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MIG_GATEWAY_ADMIN_TOKEN"}
    done = subprocess.run(
        [sys.executable, "-m", "gateway.entrypoints.gateway"], env=env, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert "MIG_GATEWAY_ADMIN_TOKEN" in done.stderr
