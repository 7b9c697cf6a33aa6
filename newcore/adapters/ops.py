"""What every long-running process of ours shows: JSON log lines, Prometheus metrics, health.

The ops endpoint is a small Starlette app served by uvicorn inside the worker's own event loop:
GET /metrics is prometheus-client's ASGI app, GET /healthz answers 200 with the health as JSON,
or 503 when not healthy. Log lines are python-json-logger's, with our fields on top.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import uvicorn
from prometheus_client import make_asgi_app
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

# Fields every line starts with; a caller's field of the same name is kept as `extra_<name>`.
OURS = ("ts", "level", "service", "msg", "error", "stack")


class JsonLines(JsonFormatter):
    """One JSON object per line: ts (unix seconds), level, service, msg, then the caller's
    `extra=` fields, then `error` with the traceback when there is one (`stack` with
    stack_info=True). A caller's field never overwrites ours: `extra={"ts": 1}` comes out as
    `"extra_ts": 1` (stdlib logging itself refuses `msg` and `message` with a KeyError).
    Never pass secrets as fields."""

    def __init__(self, service: str) -> None:
        # `color_message` is uvicorn's copy of its message with terminal colours.
        super().__init__(
            reserved_attrs=[*RESERVED_ATTRS, "color_message"],
            json_ensure_ascii=False,  # Japanese text stays readable
        )
        self.service = service

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        ours: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "service": self.service,
            "msg": record.message,
        }
        traces = {
            "error": message_dict.pop("exc_info", None),
            "stack": message_dict.pop("stack_info", None),
        }
        # The library lets `extra=` fields overwrite its own: ours are set apart first.
        theirs: dict[str, Any] = {}
        super().add_fields(theirs, record, message_dict)
        log_data.update(ours)
        for key, value in theirs.items():
            log_data[f"extra_{key}" if key in OURS else key] = value
        log_data.update({key: value for key, value in traces.items() if value})


class Repeats(logging.Filter):
    """Lets a library's identical message through once per `seconds` (our own logger's lines
    all pass): a client retrying a broker that is down says so ten times a second, and one
    line per half minute tells as much."""

    def __init__(self, own: str, seconds: float = 30.0) -> None:
        super().__init__()
        self._own = own
        self._seconds = seconds
        self._last: dict[tuple[str, str], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == self._own:
            return True
        key = (record.name, record.getMessage())
        if record.created - self._last.get(key, -self._seconds) < self._seconds:
            return False
        if len(self._last) > 10_000:
            self._last.clear()
        self._last[key] = record.created
        return True


def configure_logging(service: str, level: str = "INFO") -> logging.Logger:
    """Sends every logger's lines to stderr as JSON and returns the process's own logger,
    named `service`: call `log.info("what happened", extra={...})` on it."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines(service))
    handler.addFilter(Repeats(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiokafka").setLevel("WARNING")
    # Its start and stop lines; the process says itself where its ops endpoint listens.
    logging.getLogger("uvicorn").setLevel("WARNING")
    return logging.getLogger(service)


Health = Callable[[], dict[str, Any]]

START_TIMEOUT_S = 10.0


class AsgiEndpoint:
    """An ASGI app as a route's endpoint, served as it is: a bare function would be taken for
    a `request -> response` handler, and a Mount would redirect /metrics to /metrics/."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def ops_app(health: Health) -> Starlette:
    async def healthz(request: Request) -> Response:
        state = health() | {"checked_at": round(time.time(), 3)}
        # Not JSONResponse: a NaN or an odd type in the health must not turn a 200 into a 500.
        body = json.dumps(state, ensure_ascii=False, default=str)
        return Response(body, 200 if state.get("ok") else 503, media_type="application/json")

    return Starlette(
        routes=[
            Route("/metrics", AsgiEndpoint(make_asgi_app()), methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )


class InLoopServer(uvicorn.Server):
    """uvicorn inside a worker's event loop: the worker owns SIGTERM and SIGINT (it installs
    its handlers with `loop.add_signal_handler` and stops in order), so the server does not
    capture them, and it tells when it listens."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.listening.set()


class OpsEndpoint:
    """A running ops endpoint. `close()` stops accepting at once and lets the server finish in
    the background (for a `finally` that cannot await); `await stop()` returns once it has
    stopped and its port is free."""

    def __init__(self, server: InLoopServer, serving: asyncio.Task[None], host: str) -> None:
        self._server = server
        self._serving = serving
        self.host = host

    @property
    def port(self) -> int:
        """The port it listens on, the one the system chose when asked for port 0 (the first
        socket's, when a host name resolved to several addresses)."""
        port: int = self._server.servers[0].sockets[0].getsockname()[1]
        return port

    def close(self) -> None:
        self._server.should_exit = True
        for listener in self._server.servers:
            listener.close()

    async def stop(self) -> None:
        self.close()
        await self._serving


async def serve_ops(host: str, port: int, health: Health) -> OpsEndpoint:
    """Serves GET /metrics and GET /healthz on host:port until stopped; `health()` returns a
    dict with a boolean "ok" (/healthz adds "checked_at"). Returns once it listens. Host
    0.0.0.0 lets a probe from another host reach it; 127.0.0.1 only this one. A port already
    in use, or a host it cannot bind, raises OSError naming host:port (errno kept)."""
    config = uvicorn.Config(
        ops_app(health),
        host=host,
        port=port,
        http="h11",
        ws="none",
        lifespan="off",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=2,
    )
    server = InLoopServer(config)
    serving = asyncio.create_task(_serve(server, f"{host}:{port}"), name=f"ops {host}:{port}")
    listening = asyncio.create_task(server.listening.wait())
    try:
        await asyncio.wait(
            {serving, listening}, timeout=START_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        listening.cancel()
    if serving.done():
        await serving  # raises what stopped it
        raise OSError(f"ops endpoint on {host}:{port} stopped as it started")
    if not server.started:
        serving.cancel()
        raise OSError(f"ops endpoint on {host}:{port} not listening after {START_TIMEOUT_S} s")
    return OpsEndpoint(server, serving, host)


async def _serve(server: InLoopServer, where: str) -> None:
    """uvicorn says it cannot listen by logging the error and calling sys.exit, which inside a
    task would end the whole event loop: it becomes the OSError it was."""
    try:
        await server.serve()
    except SystemExit as exit_:
        cause = exit_.__context__
        if isinstance(cause, OSError):
            raise OSError(
                cause.errno, f"ops endpoint cannot listen on {where}: {cause.strerror}"
            ) from cause
        raise OSError(f"ops endpoint on {where} failed to start") from exit_


class Runnable(Protocol):
    def stop(self) -> None: ...
    async def run(self) -> None: ...
    def health(self) -> dict[str, Any]: ...


class WithOps:
    """A worker with its ops endpoint (/metrics, /healthz) up for as long as it runs: up and
    unhealthy while the worker waits for what is down."""

    def __init__(self, worker: Runnable, host: str, port: int) -> None:
        self._worker = worker
        self._host = host
        self._port = port

    def stop(self) -> None:
        self._worker.stop()

    async def run(self) -> None:
        ops = await serve_ops(self._host, self._port, self._worker.health)
        try:
            await self._worker.run()
        finally:
            await ops.stop()
