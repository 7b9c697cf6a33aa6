"""Our commands as real processes in tests: start, kill -9, wait for an effect, ask the ops
endpoint; and a TCP relay to cut a real server off from them."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Service:
    """`python -m <module>` with the given environment; its output goes to a file (a pipe
    nobody reads would block a chatty process)."""

    def __init__(
        self, module: str, env: dict[str, str], log_dir: Path, ops_port: int, nice: int = 0
    ) -> None:
        self.module = module
        self.nice = nice
        self.ops_port = ops_port
        self._env = env
        self._log_dir = log_dir
        self._runs = 0
        self._log_path = log_dir / "none.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, **overrides: str) -> Service:
        self._runs += 1
        self._log_path = self._log_dir / f"{self.module.rsplit('.', 1)[-1]}-{self._runs}.log"
        with self._log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [*self._niced(), sys.executable, "-m", self.module],
                env={**self._env, **overrides},
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        return self

    def _niced(self) -> list[str]:
        """`nice` execs the program: the pid is still the Python process's."""
        return ["nice", "-n", str(self.nice)] if self.nice else []

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self._log_path.read_text(errors="replace")

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> int:
        """SIGTERM and the exit code."""
        assert self.process is not None
        self.process.terminate()
        return self.process.wait(60)

    def ensure_gone(self) -> None:
        if self.alive:
            assert self.process is not None
            self.process.kill()
            self.process.wait(10)

    def eventually(self, check: Callable[[], bool], what: str, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while not check():
            if not self.alive:
                code = self.process.returncode if self.process else None
                pytest.fail(f"{self.module} exited ({code}) before {what}:\n{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"not within {seconds} s: {what}\n{self.log()[-3000:]}")
            time.sleep(0.1)

    def cpu_seconds(self) -> float:
        """User + system CPU the process has used so far (from /proc)."""
        assert self.process is not None
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def ops(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.ops_port}{path}", timeout=5
            ) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()
        except OSError:
            return 0, b""


class Relay:
    """A TCP relay to a real server that can be cut and restored, or stalled (connections
    stay open, nothing gets through: a server that hangs), in a thread of its own. `port`:
    where it listens (a free one if not given; Kafka's relayed listener advertises a fixed
    one)."""

    def __init__(self, target_port: int, port: int | None = None) -> None:
        self.port = port or free_port()
        self._target = target_port
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        threading.Thread(target=self._loop.run_forever, daemon=True).start()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    def _call(self, coroutine: Callable[[], object]) -> None:
        asyncio.run_coroutine_threadsafe(coroutine(), self._loop).result(10)  # type: ignore[arg-type]

    def start(self) -> None:
        async def start() -> None:
            self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

        self._call(start)

    def stall(self) -> None:
        async def stall() -> None:
            self._flowing.clear()

        self._call(stall)

    def flow(self) -> None:
        """Ends a stall: what was held back goes through."""

        async def flow() -> None:
            self._flowing.set()

        self._call(flow)

    def cut(self) -> None:
        async def cut() -> None:
            if self._server is not None:
                self._server.close()
            for writer in self._writers:
                writer.transport.abort()
            self._writers.clear()

        self._call(cut)
