"""Pass-through that is really transparent (issue 12, item 2; DESIGN.md: the contract, promise
1 and 8): the same requests, straight at the monolith and through the front door, with a room
in each phase up to shadow_read, get the same answers: status, the headers a client reads
(content type, length, the rate-limit headers) and the bytes of the body.

The monolith here answers with the public API's rate limits on, so their headers and the 429
are part of what must pass untouched. Each request is sent through the front door on one
kept-alive connection, then the same request straight at the monolith; a write is compared with
its twin (the same write on a twin message) so that both sides act on the same state.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e.client import Operator
from tests.support.gateway_world import GatewayWorld, gateway_world
from tests.support.monolith_world import Member
from tests.support.stack import Stack

pytestmark = pytest.mark.services

FORM = "application/x-www-form-urlencoded"
# What a client reads besides the body. x-ratelimit-remaining counts the pair's own requests
# (one apart), so it is compared as "both there, one apart"; reset is a time, within a second.
COMPARED_HEADERS = ("content-type", "content-length", "x-ratelimit-limit")


@dataclass(frozen=True)
class Call:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes = b""


@pytest.fixture
def world(stack: Stack, tmp_path: Path) -> Iterator[GatewayWorld]:
    with gateway_world(stack, tmp_path / "logs", rate_limited=True) as built:
        yield built


def send(client: httpx.Client, call: Call) -> httpx.Response:
    return client.request(call.method, call.target, headers=call.headers, content=call.body)


def the_same(
    through: httpx.Response,
    direct: httpx.Response,
    call: Call,
    twin: Call | None = None,
    ids: tuple[int, int] | None = None,
) -> None:
    """`twin`: the direct side's call when it is not `call` itself; `ids`: (ours, the twin's)
    message ids, which the two answers may name (read as the same)."""
    what = f"{call.method} {call.target[:120]}"
    direct_body = direct.content
    if ids is not None:
        direct_body = direct_body.replace(f'"{ids[1]}"'.encode(), f'"{ids[0]}"'.encode())
    token = call.headers.get("X-ChatWorkToken")
    one_counter = twin is None or twin.headers.get("X-ChatWorkToken") == token
    assert through.status_code == direct.status_code, (
        what,
        through.content[:300],
        direct.content[:300],
    )
    assert through.content == direct_body, (what, through.content[:300], direct.content[:300])
    for name in COMPARED_HEADERS:
        assert through.headers.get(name) == direct.headers.get(name), (what, name)
    remaining = [r.headers.get("x-ratelimit-remaining") for r in (through, direct)]
    if remaining[0] is None or remaining[1] is None:
        assert remaining == [None, None], (what, remaining)
    elif one_counter:  # the direct request came right after and counted one more
        assert int(remaining[0]) - int(remaining[1]) in (0, 1), (what, remaining)


def reads(room: int, message: int, token: str) -> list[Call]:
    """Reads and refusals: asking twice changes nothing, so the pair can be the same call."""
    me = {"X-ChatWorkToken": token}
    base = f"/v2/rooms/{room}/messages"
    return [
        Call("GET", "/v2/me", me),
        Call("GET", "/v2/rooms", me),
        Call("GET", f"/v2/rooms/{room}", me),
        Call("GET", f"/v2/rooms/{room}/members", me),
        Call("GET", f"{base}?force=1", me),
        Call("GET", f"{base}?force=1&unknown=param&x[]=1", me),
        Call("GET", f"{base}/{message}", me),
        Call("GET", f"{base}/99999999999", me),  # no such message
        Call("GET", f"{base}/abc", me),  # not a number
        Call("GET", f"{base}/0{message}", me),  # a leading zero
        Call("GET", f"{base}/", me),  # a trailing slash
        Call("GET", f"{base}?force=2", me),  # a value the monolith refuses
        Call("GET", f"{base}?force=%FF%FE", me),  # not UTF-8
        Call("GET", base, {**me, "Content-Type": FORM}, b"force=1"),  # a form body on a GET
        Call("GET", f"{base}?force=1", {"X-ChatWorkToken": "not-a-token"}),
        Call("GET", f"{base}?force=1", {}),  # no token
        Call("GET", "/v2/rooms/4294967295/messages?force=1", me),  # no such room
        Call("GET", "/v2/rooms/99999999999/messages?force=1", me),  # beyond the id range
        Call("GET", "/v2/rooms/abc/messages?force=1", me),
        Call("PATCH", f"{base}/{message}", me),  # a method the monolith does not route
        Call("OPTIONS", base, me),
        Call("PUT", f"{base}/read", {**me, "Content-Type": FORM}, b"message_id=abc"),  # refused
        Call("POST", base, {**me, "Content-Type": FORM}, b""),  # no body: refused
        Call("POST", base, {**me, "Content-Type": FORM}, b"body=%FF%FEbytes"),  # not UTF-8
        Call("POST", base, {**me, "Content-Type": FORM}, b"body=" + b"x" * 65_536),  # too long
        Call("POST", base, {**me, "Content-Type": FORM}, b"body=" + b"x" * (3 << 20)),  # > 2 MB
    ]


def twin_writes(
    room: int, twins: tuple[int, int], token: str, other: str
) -> list[tuple[Call, Call]]:
    """Writes, each with its twin for the direct side: the same change on the twin message,
    or (read, unread: per account) by the twin account."""
    me = {"X-ChatWorkToken": token, "Content-Type": FORM}
    they = {"X-ChatWorkToken": other, "Content-Type": FORM}
    base = f"/v2/rooms/{room}/messages"
    first, second = twins
    return [
        (Call("PUT", f"{base}/{first}", me, b"body=%E7%B7%A8%E9%9B%86+%F0%9F%8E%89"),
         Call("PUT", f"{base}/{second}", me, b"body=%E7%B7%A8%E9%9B%86+%F0%9F%8E%89")),
        (Call("PUT", f"{base}/read", me, f"message_id={first}".encode()),
         Call("PUT", f"{base}/read", they, f"message_id={first}".encode())),
        (Call("PUT", f"{base}/read", me, f"message_id={first}".encode()),  # read already: 400
         Call("PUT", f"{base}/read", they, f"message_id={first}".encode())),
        (Call("PUT", f"{base}/unread", me, f"message_id={first}".encode()),
         Call("PUT", f"{base}/unread", they, f"message_id={first}".encode())),
        (Call("DELETE", f"{base}/{first}", {"X-ChatWorkToken": token}),
         Call("DELETE", f"{base}/{second}", {"X-ChatWorkToken": token})),
        (Call("DELETE", f"{base}/{first}", {"X-ChatWorkToken": token}),  # already gone
         Call("DELETE", f"{base}/{second}", {"X-ChatWorkToken": token})),
    ]  # fmt: skip


def posts(room: int, token: str) -> list[Call]:
    """Posts: their answers differ by the new id only. Two pairs: with the refused posts of
    `reads` (three reach the monolith, twice) the room's limit of 10 posts per 10 s is just
    met."""
    me = {"X-ChatWorkToken": token}
    base = f"/v2/rooms/{room}/messages"
    return [
        Call("POST", f"{base}?body=%E3%81%93%E3%82%93%E3%81%AB%E3%81%A1%E3%81%AF", me),  # in the query
        Call("POST", base, {**me, "Content-Type": FORM}, b"body=%5BTo%3A1%5D+%F0%9F%91%8B&self_unread=1"),
    ]  # fmt: skip


def test_every_phase_answers_exactly_as_the_monolith(world: GatewayWorld) -> None:
    ops = Operator(world)
    seed = world.seed
    people: dict[str, tuple[Member, Member]] = {
        phase: (seed.account(f"{phase} a"), seed.account(f"{phase} b"))
        for phase in ("legacy", "dual_write", "shadow_read")
    }
    everyone = [m for pair in people.values() for m in pair]
    rooms = {phase: seed.room(*everyone, name=f"部屋 {phase}") for phase in people}
    history = {
        phase: seed.messages(
            room, people[phase][0].account_id, [f"過去 {n} 🎉" for n in range(120)]
        )
        for phase, room in rooms.items()
    }
    assert (
        ops.moves([rooms["dual_write"], rooms["shadow_read"]], to="dual_write").status_code == 200
    )
    world.backfill([rooms["shadow_read"]])
    assert ops.moves([rooms["shadow_read"]], to="shadow_read").status_code == 200
    assert ops.phases() == {rooms["dual_write"]: "dual_write", rooms["shadow_read"]: "shadow_read"}

    through = httpx.Client(base_url=world.front_door.url, timeout=30.0)  # one kept-alive connection
    direct = httpx.Client(base_url=world.monolith.url, timeout=30.0)
    seen_before = ops.requests_seen()
    try:
        for phase, room in rooms.items():
            a, b = people[phase]
            first, second, *_ = history[phase]
            for call in reads(room, history[phase][-1], a.token):
                the_same(send(through, call), send(direct, call), call)
            # force=0: each side with an account that never fetched, then again (204, empty)
            for _ in range(2):
                fetch = Call(
                    "GET", f"/v2/rooms/{room}/messages?force=0", {"X-ChatWorkToken": a.token}
                )
                twin = Call(
                    "GET", f"/v2/rooms/{room}/messages?force=0", {"X-ChatWorkToken": b.token}
                )
                the_same(send(through, fetch), send(direct, twin), fetch, twin)
            for mine, theirs in twin_writes(room, (first, second), a.token, b.token):
                the_same(send(through, mine), send(direct, theirs), mine, theirs, (first, second))
            for call in posts(room, a.token):
                posted, twin_posted = send(through, call), send(direct, call)
                statuses = (posted.status_code, twin_posted.status_code)
                assert statuses == (200, 200), (posted.content, twin_posted.content)
                assert posted.json().keys() == twin_posted.json().keys() == {"message_id"}
                assert int(twin_posted.json()["message_id"]) > int(posted.json()["message_id"])
                assert posted.headers.get("content-type") == twin_posted.headers.get("content-type")
            # The room's post limit (10 per 10 s): the 429 passes untouched.
            limited = [send(through, Call("POST", f"/v2/rooms/{room}/messages",
                                          {"X-ChatWorkToken": b.token, "Content-Type": FORM},
                                          b"body=burst")) for _ in range(11)]  # fmt: skip
            assert limited[-1].status_code == 429, limited[-1].content
            again = Call("POST", f"/v2/rooms/{room}/messages",
                         {"X-ChatWorkToken": b.token, "Content-Type": FORM}, b"body=burst")  # fmt: skip
            the_same(limited[-1], send(direct, again), again)
    finally:
        through.close()
        direct.close()
    # The gateway saw the inspected rooms' traffic (and only theirs: legacy went around it).
    assert ops.requests_seen() > seen_before
