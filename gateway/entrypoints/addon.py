"""The gateway's mitmproxy addons: small classes, options parsed once in `configure`, a guard
at the top of each hook, nothing on the request path but dictionary look-ups and hand-offs.

Order matters and is the order `gateway/bootstrap.py` adds them in:
1. `UpstreamOnly` - every request goes to the configured monolith and nowhere else.
2. `Inspector` - which route and phase a flow is (stored in `flow.metadata`), and the metrics.
3. `Shadow` - in `shadow_read`, hands the monolith's answer to a background comparison.
4. `Capture` - in `dual_write` and `shadow_read`, a hint per successful write, spooled after
   the hook returns (`loop.call_soon`): the answer is forwarded first.

The client's request and answer are never changed: no addon here writes to `flow.request`
(except `UpstreamOnly` undoing a change to the destination) or to `flow.response` (except a
stopping gateway's `Connection: close`, a hop-by-hop header the front door does not pass on).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from mitmproxy import ctx, exceptions, http
from mitmproxy.addonmanager import Loader

from gateway.domain.capture import hints_after
from gateway.domain.phases import Phase
from gateway.domain.routing import OTHER, Route, RouteKind, classify
from gateway.service.accounts import AccountCache, token_digest
from gateway.service.metrics import (
    ADDED_SECONDS,
    HINTS,
    REQUESTS,
    UPSTREAM_ERRORS,
    UPSTREAM_SECONDS,
)
from gateway.service.shadow import ShadowJob, ShadowReads
from gateway.settings import http_origin
from newcore.domain.hints import CursorHint, Hint
from newcore.errors import Unavailable

ROUTE = "chat.route"
COUNTED = "chat.counted"  # the flow is in Inspector.in_flight
PHASE = "chat.phase"
CAPTURED = frozenset({Phase.DUAL_WRITE, Phase.SHADOW_READ})
SHADOWED = frozenset({RouteKind.LIST, RouteKind.ONE})
CURSOR_KINDS = frozenset({RouteKind.LIST, RouteKind.READ, RouteKind.UNREAD})
TOKEN = "X-ChatWorkToken"  # noqa: S105 (a header name, not a secret)


class UpstreamOnly:
    """The gateway forwards to its configured upstream only (option `chat_upstream`,
    `http://host:port`). Reverse mode already sends every request there; this guard holds it
    whatever another addon or a crafted request did to the destination."""

    def __init__(self) -> None:
        self.host = ""
        self.port = 0

    def load(self, loader: Loader) -> None:
        loader.add_option("chat_upstream", str, "", "The monolith: http://host:port")

    def configure(self, updated: set[str]) -> None:
        if "chat_upstream" in updated:
            try:
                origin = http_origin(ctx.options.chat_upstream)
            except ValueError as exc:
                raise exceptions.OptionsError(f"chat_upstream: {exc}") from exc  # type: ignore[no-untyped-call]
            host, port = origin.removeprefix("http://").rsplit(":", 1)
            self.host, self.port = host, int(port)

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        if (
            flow.request.host != self.host
            or flow.request.port != self.port
            or flow.request.scheme != "http"
        ):
            flow.request.data.host, flow.request.data.port = self.host, self.port
            flow.request.scheme = "http"
            flow.server_conn.address = (self.host, self.port)


class Inspector:
    """Classifies each flow once (route, room, phase) and counts it per phase and route; knows
    how many requests are under way, so that a stopping gateway lets them finish (`drain`)."""

    def __init__(self, phase_of: Callable[[int], Phase]) -> None:
        self._phase_of = phase_of
        self.in_flight = 0
        self.draining = False

    def drain(self) -> None:
        """From now on every answer closes its connection (`Connection: close`, a hop-by-hop
        header the front door does not pass on): the front door sends nothing more on it."""
        self.draining = True

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        """Counted from its headers on (before its body is read): a stopping gateway waits for
        it too. Every flow counted here ends in `response` or `error`."""
        if not flow.live or COUNTED in flow.metadata:
            return
        self.in_flight += 1
        flow.metadata[COUNTED] = True

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        request = flow.request
        raw = request.data.path
        path, _, query = raw.partition(b"?")
        try:
            route = classify(
                request.method, path.decode("latin-1"), query,
                request.headers.get("content-type"), request.raw_content or b"",
            )  # fmt: skip
        except Exception:  # a classifier bug must never cost a request: pass it through
            logging.getLogger("gateway").exception("classify failed")
            route = OTHER
        flow.metadata[ROUTE] = route
        flow.metadata[PHASE] = self._phase_of(route.room_id) if route.room_id else Phase.LEGACY

    def _done(self, flow: http.HTTPFlow) -> None:
        if flow.metadata.pop(COUNTED, False):
            self.in_flight -= 1

    def response(self, flow: http.HTTPFlow) -> None:
        self._done(flow)
        response = flow.response
        if response is None or ROUTE not in flow.metadata:
            return
        if self.draining:
            response.headers["connection"] = "close"
        route: Route = flow.metadata[ROUTE]
        phase: Phase = flow.metadata[PHASE]
        labels = (phase.value, route.kind.value)
        REQUESTS.labels(*labels, f"{response.status_code // 100}xx").inc()
        request = flow.request
        if request.timestamp_end and response.timestamp_end:
            upstream = max(0.0, response.timestamp_end - request.timestamp_end)
            UPSTREAM_SECONDS.labels(*labels).observe(upstream)
            total = time.time() - request.timestamp_start
            ADDED_SECONDS.labels(*labels).observe(max(0.0, total - upstream))

    def error(self, flow: http.HTTPFlow) -> None:
        self._done(flow)
        if ROUTE not in flow.metadata:
            return
        route: Route = flow.metadata[ROUTE]
        UPSTREAM_ERRORS.labels(flow.metadata[PHASE].value, route.kind.value).inc()


class Shadow:
    """In `shadow_read`, a successful or failed read (the monolith's answer, whatever it is)
    is handed to `ShadowReads` with the room's frontier: the sequence of the last hint this
    gateway spooled for the room before the answer."""

    def __init__(self, reads: ShadowReads, last_seq_for: Callable[[int], int | None]) -> None:
        self._reads = reads
        self._last_seq_for = last_seq_for

    def response(self, flow: http.HTTPFlow) -> None:
        response = flow.response
        if response is None or flow.metadata.get(PHASE) is not Phase.SHADOW_READ:
            return
        route: Route = flow.metadata[ROUTE]
        if route.kind not in SHADOWED or route.room_id is None:
            return
        token = flow.request.headers.get(TOKEN, "")
        self._reads.offer(
            ShadowJob(
                route=route, method=flow.request.method,
                path=flow.request.data.path.decode("latin-1"), token=token,
                status=response.status_code, body=response.raw_content or b"",
                answered_at=time.monotonic(), answered_at_s=int(flow.request.timestamp_start),
                frontier_seq=self._last_seq_for(route.room_id),
            )
        )  # fmt: skip


class Capture:
    """In `dual_write` and `shadow_read`, the hints a successful write gives, spooled after
    the hook returns. A cursor hint whose account is not yet known is spooled once the token
    is looked up: one look-up per token at a time, at most `max_lookups` tokens at once (beyond
    that the hint is dropped and counted: the binlog source still captures the cursor, and a
    slow directory cannot pile up work in the gateway)."""

    def __init__(
        self,
        spool_put: Callable[[Hint], int | None],
        accounts: AccountCache,
        max_lookups: int = 256,
    ) -> None:
        self._put = spool_put
        self._accounts = accounts
        self._max_lookups = max_lookups
        self._waiting: dict[bytes, set[int]] = {}  # token digest -> rooms whose cursor moved
        self._lookups: set[asyncio.Task[None]] = set()

    def response(self, flow: http.HTTPFlow) -> None:
        response = flow.response
        if response is None or flow.metadata.get(PHASE) not in CAPTURED:
            return
        if not 200 <= response.status_code < 300:
            return
        route: Route = flow.metadata[ROUTE]
        token = flow.request.headers.get(TOKEN, "")
        # The account matters to a cursor hint only: no token digest for the other writes.
        account = self._accounts.known(token) if route.kind in CURSOR_KINDS else None
        after = hints_after(route, response.status_code, response.raw_content or b"", account)
        if after.malformed is not None:
            HINTS.labels("unreadable").inc()
        loop = asyncio.get_running_loop()
        for hint in after.hints:
            loop.call_soon(self._spool, hint)
        if after.cursor_needs_account and route.room_id is not None:
            self._look_up(loop, token, route.room_id)

    def _look_up(self, loop: asyncio.AbstractEventLoop, token: str, room_id: int) -> None:
        digest = token_digest(token)
        rooms = self._waiting.get(digest)
        if rooms is not None:  # a look-up of this token is under way: it takes this room too
            rooms.add(room_id)
            return
        if len(self._waiting) >= self._max_lookups:
            HINTS.labels("dropped").inc()
            return
        self._waiting[digest] = {room_id}
        task = loop.create_task(self._cursors_later(digest, token))
        self._lookups.add(task)
        task.add_done_callback(self._lookups.discard)

    def _spool(self, hint: Hint) -> None:
        HINTS.labels("spooled" if self._put(hint) is not None else "dropped").inc()

    async def _cursors_later(self, digest: bytes, token: str) -> None:
        try:
            account = await self._accounts.resolve(token)
        except Unavailable:
            account = None
        rooms = self._waiting.pop(digest, set())
        if account is None:
            HINTS.labels("dropped").inc(len(rooms))
            return
        for room_id in sorted(rooms):
            self._spool(CursorHint(room_id=room_id, account_id=account))

    def health(self) -> dict[str, Any]:
        return {"account_lookups": len(self._waiting)}
