"""The addons, driven the way mitmproxy drives them (its `tflow` flows in a `taddons`
context): hints only after a successful write in a captured phase, spooled after the hook
returns; shadow jobs only in shadow_read; the client's request and answer never changed; the
destination always the configured upstream."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest
from mitmproxy import exceptions, http
from mitmproxy.test import taddons, tflow, tutils

from gateway.domain.phases import Phase
from gateway.domain.routing import RouteKind
from gateway.entrypoints.addon import Capture, Inspector, Shadow, UpstreamOnly
from gateway.service.accounts import AccountCache, token_digest
from gateway.service.shadow import ShadowJob
from newcore.domain.hints import CursorHint, Hint, MessageHint

TOKEN = "a" * 40


class Directory:
    """The account directory as far as the gateway asks it: tokens (it never asks membership
    or profiles: those are the Read API's)."""

    def __init__(self, accounts: dict[str, int]) -> None:
        self.accounts = accounts
        self.asked = 0

    def account_for_token(self, token: str) -> int | None:
        self.asked += 1
        return self.accounts.get(token)

    def access(self, room_id: int, account_id: int) -> str:
        return "member"

    def profiles(self, account_ids: Any) -> dict[int, Any]:
        return {}


class Reads:
    def __init__(self) -> None:
        self.jobs: list[ShadowJob] = []

    def offer(self, job: ShadowJob) -> bool:
        self.jobs.append(job)
        return True


def flow(method: str, path: str, status: int, answer: bytes, body: bytes = b"") -> http.HTTPFlow:
    request = tutils.treq(method=method.encode(), path=path.encode(), content=body,
                          host="127.0.0.1", port=8080)  # fmt: skip
    request.headers["X-ChatWorkToken"] = TOKEN
    f = tflow.tflow(req=request)
    f.metadata["test.answer"] = tutils.tresp(status_code=status, content=answer)
    return f


def answered(f: http.HTTPFlow) -> http.HTTPFlow:
    """The monolith's answer arrives (the request hooks ran before it, as in the proxy)."""
    f.response = f.metadata.pop("test.answer")
    return f


def phases(mapping: dict[int, Phase]) -> Callable[[int], Phase]:
    return lambda room: mapping.get(room, Phase.LEGACY)


async def through(addons: list[Any], f: http.HTTPFlow) -> None:
    """The request hook, then the response hook, as the proxy calls them; then one turn of the
    loop, where the capture spools."""
    for addon in addons:
        if hasattr(addon, "request"):
            addon.request(f)
    answered(f)
    for addon in addons:
        if hasattr(addon, "response"):
            addon.response(f)
    await asyncio.sleep(0)
    await asyncio.sleep(0)


def capture_rig(
    room_phases: dict[int, Phase], known: bool = True
) -> tuple[list[Any], list[Hint], Directory]:
    spooled: list[Hint] = []
    directory = Directory({TOKEN: 77})
    accounts = AccountCache(directory)
    if known:
        accounts._known[token_digest(TOKEN)] = 77

    def spool(hint: Hint) -> int:
        spooled.append(hint)
        return len(spooled)

    addons = [Inspector(phases(room_phases)), Capture(spool, accounts)]
    return addons, spooled, directory


@pytest.mark.parametrize(
    ("method", "path", "status", "answer", "hint"),
    [
        ("POST", "/v2/rooms/5/messages", 200, b'{"message_id": "901"}', MessageHint(5, 901)),
        ("PUT", "/v2/rooms/5/messages/44", 200, b'{"message_id": "44"}', MessageHint(5, 44)),
        ("DELETE", "/v2/rooms/5/messages/44", 200, b'{"message_id": "44"}', MessageHint(5, 44)),
        (
            "PUT",
            "/v2/rooms/5/messages/read",
            200,
            b'{"unread_num": 0, "mention_num": 0}',
            CursorHint(5, 77),
        ),
        ("GET", "/v2/rooms/5/messages?force=0", 200, b'[{"message_id": "3"}]', CursorHint(5, 77)),
    ],
)
@pytest.mark.parametrize("phase", [Phase.DUAL_WRITE, Phase.SHADOW_READ])
def test_a_successful_write_is_hinted_after_the_hook(
    method: str, path: str, status: int, answer: bytes, hint: Hint, phase: Phase
) -> None:
    async def go() -> None:
        addons, spooled, _ = capture_rig({5: phase})
        f = flow(method, path, status, answer, b"body=hi" if method == "POST" else b"")
        addons[0].request(f)
        answered(f)
        before = (f.request.get_state(), f.response.get_state() if f.response else None)
        addons[1].response(f)
        assert spooled == []  # not on the request path: after the hook returns
        await asyncio.sleep(0)
        assert spooled == [hint]
        assert (f.request.get_state(), f.response.get_state() if f.response else None) == before

    with taddons.context():
        asyncio.run(go())


@pytest.mark.parametrize(
    ("room_phases", "status", "path"),
    [
        ({5: Phase.LEGACY}, 200, "/v2/rooms/5/messages"),
        ({}, 200, "/v2/rooms/5/messages"),
        ({5: Phase.DUAL_WRITE}, 400, "/v2/rooms/5/messages"),
        ({5: Phase.DUAL_WRITE}, 429, "/v2/rooms/5/messages"),
        ({5: Phase.DUAL_WRITE}, 200, "/v2/rooms/5/tasks"),
        ({5: Phase.DUAL_WRITE}, 200, "/v2/rooms/abc/messages"),
    ],
)
def test_nothing_is_hinted_outside_a_captured_phase_or_after_a_refusal(
    room_phases: dict[int, Phase], status: int, path: str
) -> None:
    async def go() -> None:
        addons, spooled, _ = capture_rig(room_phases)
        await through(addons, flow("POST", path, status, b'{"message_id": "901"}', b"body=x"))
        assert spooled == []

    with taddons.context():
        asyncio.run(go())


def test_a_cursor_hint_waits_for_the_account_off_the_request_path() -> None:
    async def go() -> None:
        addons, spooled, directory = capture_rig({5: Phase.DUAL_WRITE}, known=False)
        f = flow("PUT", "/v2/rooms/5/messages/read", 200, b'{"unread_num": 0, "mention_num": 0}')
        addons[0].request(f)
        addons[1].response(answered(f))
        assert directory.asked == 0  # the hook did not ask
        for _ in range(50):
            await asyncio.sleep(0.01)
            if spooled:
                break
        assert spooled == [CursorHint(5, 77)] and directory.asked == 1
        # The next request of the same client costs no look-up.
        await through(addons, flow("PUT", "/v2/rooms/5/messages/read", 200, b"{}"))
        assert directory.asked == 1 and len(spooled) == 2

    with taddons.context():
        asyncio.run(go())


def test_shadow_reads_only_in_shadow_read_with_the_frontier() -> None:
    async def go() -> None:
        reads = Reads()
        room_phases = {5: Phase.SHADOW_READ, 6: Phase.DUAL_WRITE}
        addons = [Inspector(phases(room_phases)), Shadow(reads, lambda room: {5: 41}.get(room))]  # type: ignore[arg-type]
        await through(addons, flow("GET", "/v2/rooms/5/messages?force=1", 200, b"[]"))
        await through(addons, flow("GET", "/v2/rooms/5/messages/9", 404, b'{"errors": ["x"]}'))
        await through(addons, flow("GET", "/v2/rooms/6/messages?force=1", 200, b"[]"))
        await through(addons, flow("POST", "/v2/rooms/5/messages", 200, b"{}", b"body=x"))
        assert [(j.route.kind, j.status, j.frontier_seq) for j in reads.jobs] == [
            (RouteKind.LIST, 200, 41),
            (RouteKind.ONE, 404, 41),
        ]
        assert reads.jobs[0].token == TOKEN

    with taddons.context():
        asyncio.run(go())


def test_the_destination_is_always_the_configured_upstream() -> None:
    guard = UpstreamOnly()
    with taddons.context(guard) as tctx:
        tctx.configure(guard, chat_upstream="http://127.0.0.1:8080")
        f = flow("GET", "/v2/me", 200, b"{}")
        f.request.host, f.request.port = "evil.example", 80
        guard.request(f)
        assert (f.request.host, f.request.port, f.request.scheme) == ("127.0.0.1", 8080, "http")
        assert f.server_conn.address == ("127.0.0.1", 8080)


@pytest.mark.parametrize(
    "bad",
    ["https://127.0.0.1:8080", "http://127.0.0.1", "http://h:1/path", "http://u:p@h:1", "nonsense"],
)
def test_a_bad_upstream_option_is_an_options_error_naming_it(bad: str) -> None:
    guard = UpstreamOnly()
    with (
        taddons.context(guard) as tctx,
        pytest.raises(exceptions.OptionsError, match="chat_upstream"),
    ):
        tctx.configure(guard, chat_upstream=bad)


def test_account_look_ups_are_one_per_token_and_bounded() -> None:
    class SlowDirectory(Directory):
        """Answers only once the test lets it: the look-ups are under way meanwhile."""

        def __init__(self) -> None:
            super().__init__({TOKEN: 77, "b" * 40: 78})
            self.gate = threading.Event()

        def account_for_token(self, token: str) -> int | None:
            self.gate.wait(10)
            return super().account_for_token(token)

    async def go() -> None:
        spooled: list[Hint] = []

        def spool(hint: Hint) -> int:
            spooled.append(hint)
            return len(spooled)

        directory = SlowDirectory()
        capture = Capture(spool, AccountCache(directory), max_lookups=1)
        inspector = Inspector(phases({5: Phase.DUAL_WRITE, 6: Phase.DUAL_WRITE}))
        for room in (5, 6, 5):
            await through(
                [inspector, capture], flow("PUT", f"/v2/rooms/{room}/messages/read", 200, b"{}")
            )
        other = flow("PUT", "/v2/rooms/5/messages/read", 200, b"{}")
        other.request.headers["X-ChatWorkToken"] = "b" * 40  # a second token: over the bound
        await through([inspector, capture], other)
        directory.gate.set()
        for _ in range(100):
            await asyncio.sleep(0.01)
            if spooled:
                break
        assert directory.asked == 1
        assert sorted(spooled, key=lambda h: h.room_id) == [CursorHint(5, 77), CursorHint(6, 77)]

    with taddons.context():
        asyncio.run(go())


def test_requests_under_way_are_counted_from_their_headers_to_their_end() -> None:
    """What a stopping gateway waits for."""
    inspector = Inspector(phases({}))
    answered_flow = flow("GET", "/v2/me", 200, b"{}")
    failed_flow = flow("GET", "/v2/me", 200, b"{}")
    for f in (answered_flow, failed_flow):
        inspector.requestheaders(f)
        inspector.requestheaders(f)  # a hook seen twice counts once
        inspector.request(f)
    assert inspector.in_flight == 2
    inspector.response(answered(answered_flow))
    inspector.error(failed_flow)
    assert inspector.in_flight == 0
    inspector.drain()
    drained = flow("GET", "/v2/me", 200, b"{}")
    inspector.requestheaders(drained)
    inspector.request(drained)
    inspector.response(answered(drained))
    assert drained.response is not None and drained.response.headers["connection"] == "close"
