"""The gateway process: a lean mitmproxy master (only the core, the proxy server and the
next-layer addons, plus ours) in reverse mode on uvloop, with the control follower, the hint
shipper and the admin API in the same event loop.

Why lean: mitmproxy's default addon set (about thirty addons, each called on every hook) costs
a large share of its per-request time (DESIGN.md, "Performance reality": 1,430 against 780
requests/s for the same static answer). We add only what a reverse proxy needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

import uvicorn
from mitmproxy import options
from mitmproxy.addons import core, errorcheck, next_layer, proxyserver
from mitmproxy.master import Master

from newcore.adapters.ops import InLoopServer
from newcore.errors import Unavailable

Starter = Callable[[], Awaitable[None]]
GRACE_S = 0.5


def lean_master(upstream: str, listen_host: str, port: int, ours: Sequence[Any]) -> Master:
    """A master that forwards to `upstream` only, listening on listen_host:port. Must be
    called inside the running event loop."""
    # mitmproxy says "client connect" and "server disconnect" at INFO for every connection:
    # a line per request at our rates, and nothing an operator acts on.
    logging.getLogger("mitmproxy").setLevel(logging.WARNING)
    # httpx says every shadow request at INFO: a line per comparison.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    opts = options.Options()
    master = Master(opts, with_termlog=False)
    # mitmproxy's own functions are untyped.
    add: Callable[..., None] = master.addons.add
    add(core.Core(), proxyserver.Proxyserver(), next_layer.NextLayer(), errorcheck.ErrorCheck())  # type: ignore[no-untyped-call]
    add(*ours)
    update: Callable[..., None] = opts.update
    update(
        mode=[f"reverse:{upstream}@{port}"],
        listen_host=listen_host,
        # Transparent: the monolith sees the Host the client sent, not ours.
        keep_host_header=True,
        # No HTTP/2 towards the monolith's nginx, no connection before the first request.
        http2=False,
        connection_strategy="lazy",
        # No body size limit of ours: the front door holds the monolith's own bound (2 MB), and
        # a limit here would answer 413 where the monolith answers.
    )
    if "chat_upstream" in opts:  # declared by our UpstreamOnly (absent from a bare baseline)
        update(chat_upstream=upstream)
    return master


async def serve_admin(app: Any, host: str, port: int) -> tuple[InLoopServer, asyncio.Task[None]]:
    """The admin API in this event loop (no access log: a header is never logged)."""
    config = uvicorn.Config(
        app, host=host, port=port, http="h11", ws="none", lifespan="off", log_config=None,
        access_log=False, timeout_graceful_shutdown=2,
    )  # fmt: skip
    server = InLoopServer(config)
    task = asyncio.create_task(server.serve(), name=f"admin {host}:{port}")
    listening = asyncio.create_task(server.listening.wait())
    await asyncio.wait({task, listening}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    listening.cancel()
    if task.done() or not server.started:
        with contextlib.suppress(BaseException):
            await task
        raise OSError(f"admin API cannot listen on {host}:{port}")
    return server, task


class GatewayProcess:
    """Runs until `stop()`: first what must be right before traffic is taken (the control
    store's first snapshot or its absence, the spool), then the proxy, the admin API and the
    background loops; on stop, the proxy first (no new request), then the loops, the spool
    last (what was spooled stays for the next start)."""

    def __init__(
        self,
        log: logging.Logger,
        prepare: Starter,
        make_master: Callable[[], Master],
        admin: tuple[Any, str, int],
        loops: Sequence[tuple[str, Callable[[], Coroutine[Any, Any, None]], Callable[[], None]]],
        finish: Starter,
        drain: tuple[Callable[[], None], Callable[[], int], float] | None = None,
    ) -> None:
        self._log = log
        self._prepare = prepare
        self._make_master = make_master
        self._admin = admin
        self._loops = loops
        self._finish = finish
        self._drain = drain
        self._master: Master | None = None
        self._stopping = asyncio.Event()
        self._draining: asyncio.Task[None] | None = None
        self.failure: BaseException | None = None

    def stop(self) -> None:
        """Stops taking connections at once (the front door then sends the gateway's rooms
        straight to the monolith), lets the requests under way finish (up to the drain bound:
        the monolith has acted on them, an answer cut here would be a 502 the client cannot
        safely retry), then stops."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        if self._master is not None:
            self._draining = asyncio.get_running_loop().create_task(self._drain_then_stop())

    async def _drain_then_stop(self) -> None:
        master = self._master
        assert master is not None
        if self._drain is not None:
            drain, in_flight, bound_s = self._drain
            update: Callable[..., None] = master.options.update
            update(server=False)  # the listener closes; connections under way go on
            drain()
            deadline = time.monotonic() + bound_s
            # A connection accepted just before the listener closed may not have sent its
            # headers yet (nothing counted): a moment for it before counting.
            await asyncio.sleep(min(GRACE_S, bound_s))
            while in_flight() > 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            self._log.info("gateway drained", extra={"left_in_flight": in_flight()})
        master.shutdown()  # type: ignore[no-untyped-call]

    def _watch(self, task: asyncio.Task[None]) -> None:
        """A background loop that ends by itself (a bug, an error it does not handle) stops
        the process: a gateway whose phases or spool no longer move must not go on serving
        (the front door sends its rooms to the monolith while it is restarted)."""
        if self._stopping.is_set() or task.cancelled():
            return
        self.failure = task.exception() or RuntimeError(f"{task.get_name()} ended")
        self._log.error(
            "background loop ended, stopping", extra={"loop": task.get_name(),
            "reason": self.failure.__class__.__name__},
        )  # fmt: skip
        self.stop()

    async def run(self) -> None:
        await self._prepare()
        tasks: list[asyncio.Task[None]] = [
            asyncio.create_task(run(), name=name) for name, run, _ in self._loops
        ]
        for task in tasks:
            task.add_done_callback(self._watch)
        server, serving = await serve_admin(*self._admin)
        try:
            self._master = self._make_master()
            if self._stopping.is_set():
                return
            self._log.info("gateway listening")
            await self._master.run()
        finally:
            for _, _, stop in self._loops:
                stop()
            server.should_exit = True
            await asyncio.gather(*tasks, serving, return_exceptions=True)
            await self._finish()
        if self.failure is not None:
            raise Unavailable(f"a background loop of the gateway ended: {self.failure!r}")
