"""A front door of a test's own (deploy/frontdoor.sh with its own state dir and ports, in front
of the running monolith), and a stand-in gateway: a small HTTP server in a process of its own
that records every request it receives and answers with a marker header, or dies without
answering. The real gateway is not needed to test the front door's routing.

Run as `python -m tests.support.frontdoor PORT MODE RECORD_FILE` it is the stand-in.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from gateway.adapters.nginx_room_map import NginxRoomMap
from tests.support.processes import free_port
from tests.support.stack import REPO, Stack

STAND_IN_HEADER = "X-Stand-In-Gateway"


class FrontDoor:
    """deploy/frontdoor.sh on its own ports and state dir; the running monolith behind it."""

    def __init__(self, stack: Stack, state_dir: Path, gateway_ports: list[int]) -> None:
        self.stack = stack
        self.state_dir = state_dir
        self.port = free_port()
        self.gateway_ports = gateway_ports
        self.dir = state_dir / "frontdoor"
        self.map_path = self.dir / "room_map.conf"
        self.pid_path = self.dir / "nginx.pid"
        self.room_map = NginxRoomMap(self.map_path, self.pid_path)

    @property
    def url(self) -> str:
        return f"http://{self.stack.host}:{self.port}"

    def script(self, command: str) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "MIG_STATE_DIR": str(self.state_dir),
            "MIG_FRONTDOOR_PORT": str(self.port),
            "MIG_GATEWAY_PORTS": ",".join(str(port) for port in self.gateway_ports),
            "MIG_MONOLITH_PORT": str(self.stack.monolith_port),
        }
        return subprocess.run(
            ["bash", str(REPO / "deploy" / "frontdoor.sh"), command],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    def start(self) -> FrontDoor:
        result = self.script("start")
        assert result.returncode == 0, result.stderr
        return self

    def stop(self) -> None:
        result = self.script("stop")
        assert result.returncode == 0, result.stderr

    def master_pid(self) -> int:
        return int(self.pid_path.read_text())

    def reloads_seen(self) -> int:
        """SIGHUPs the master has acted on so far (its error log, level notice)."""
        log = (self.dir / "logs" / "error.log").read_text(errors="replace")
        return log.count("signal 1 (SIGHUP) received")

    def request(
        self,
        method: str,
        target: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """One request on a new connection: status, headers (lower-case names), body."""
        return send(self.port, method, target, body=body, headers=headers)

    def through_gateway(self, target: str, token: str = "no-token") -> bool:
        """Whether a GET of `target` is answered by the stand-in gateway now."""
        _, headers, _ = self.request("GET", target, headers={"X-ChatWorkToken": token})
        return STAND_IN_HEADER.lower() in headers

    def until_routed(
        self, target: str, *, to_gateway: bool, streak: int = 20, seconds: float = 10
    ) -> float:
        """Seconds until GETs of `target` go where they should and keep doing so: `streak`
        answers in a row, each on a new connection (for a moment after a reload the old
        workers still accept connections, with the old map). Fails after `seconds`."""
        began = time.monotonic()
        stable_since: float | None = None
        run = 0
        while run < streak:
            if time.monotonic() - began > seconds:
                raise AssertionError(f"{target} not routed to_gateway={to_gateway} in {seconds} s")
            if self.through_gateway(target) == to_gateway:
                if run == 0:
                    stable_since = time.monotonic()
                run += 1
            else:
                run = 0
        assert stable_since is not None
        return stable_since - began


def send(
    port: int,
    method: str,
    target: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.putrequest(method, target, skip_host="Host" in (headers or {}))
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        answer = connection.getresponse()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
    finally:
        connection.close()


class StandInGateway:
    """The stand-in in a process of its own, so that killing it closes every connection the
    front door holds to it, as the death of a real gateway would."""

    def __init__(self, port: int, record: Path) -> None:
        self.port = port
        self.record = record
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, mode: str = "answer") -> StandInGateway:
        """mode `answer`: 200 with the marker header; `die`: reads the request, records it,
        and exits without answering."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.frontdoor", str(self.port), mode, str(self.record)],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError as exc:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise AssertionError(f"no stand-in gateway on {self.port}") from exc
                time.sleep(0.02)

    def kill(self) -> None:
        """kill -9 and wait: the kernel has closed its sockets when this returns."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(10)

    def wait_exit(self, seconds: float = 10) -> int:
        assert self.process is not None
        return self.process.wait(seconds)

    def received(self) -> list[dict[str, Any]]:
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines()]


# -- the stand-in itself --------------------------------------------------------------------


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        parts = []
        while size := int(handler.rfile.readline().split(b";")[0], 16):
            parts.append(handler.rfile.read(size))
            handler.rfile.readline()
        while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass
        return b"".join(parts)
    return handler.rfile.read(int(handler.headers.get("Content-Length") or 0))


def _handler(mode: str, record: Path) -> type[BaseHTTPRequestHandler]:
    class StandIn(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "stand-in-gateway/1"
        sys_version = ""

        def _any(self) -> None:
            body = _read_body(self)
            seen = {
                "method": self.command,
                "target": self.path,
                "headers": list(self.headers.items()),
                "body_len": len(body),
                "body_sha256": hashlib.sha256(body).hexdigest(),
                "body": body[:300].decode(errors="replace"),
            }
            with record.open("a") as out:
                out.write(json.dumps(seen) + "\n")
            if mode == "die":
                os._exit(0)
            answer = json.dumps({"stand_in": True, "method": self.command}).encode()
            self.send_response(200)
            self.send_header(STAND_IN_HEADER, "1")
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(answer)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _any

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return StandIn


def serve(port: int, mode: str, record: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(mode, record))
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    serve(int(sys.argv[1]), sys.argv[2], Path(sys.argv[3]))
