"""The phases of a room, told end to end on the real stack (DESIGN.md: the phases, promises 1,
2 and 7; gateway/README.md).

Two rooms travel legacy -> dual_write -> shadow_read while a third stays legacy; clients only
ever talk to the front door. In legacy the gateway sees nothing and every answer is the
monolith's; in dual_write writes and cursor moves reach the read model; shadow_read needs the
backfill, then reads are compared with the Read API and found the same, without moving a cursor
on the new side; the kill switch sends everything straight to the monolith, and switching it off
brings the recorded phases back.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest

from tests.e2e.client import (
    REQUESTS,
    Answer,
    Operator,
    Person,
    same_answers,
    the_read_model_has,
    the_read_model_lacks,
    the_read_model_matches_the_monolith,
    the_read_models_cursor,
)
from tests.support.gateway_world import GatewayWorld

pytestmark = pytest.mark.services

SHADOWED_ROUTES = ("list", "one")


def until_routed(
    world: GatewayWorld, ops: Operator, probe: Callable[[], Answer], *, to_gateway: bool
) -> None:
    """Until ten requests in a row go where they should: the gateway's request counter moves
    for each (to_gateway) or not at all. Right after a reload old front-door workers may still
    hold the old room map for a moment."""
    streak = 0

    def settled() -> bool:
        nonlocal streak
        before = ops.requests_seen()
        answer = probe()
        assert answer.status < 500, answer
        moved = ops.requests_seen() > before
        streak = streak + 1 if moved == to_gateway else 0
        return streak >= 10

    world.until(settled, f"requests routed {'to' if to_gateway else 'around'} the gateway")


def comparisons_done(world: GatewayWorld, ops: Operator) -> None:
    """Every shadow read the gateway answered has its verdict."""

    def done() -> bool:
        asked = sum(
            world.gateway_count(REQUESTS, phase="shadow_read", route=route)
            for route in SHADOWED_ROUTES
        )
        _, health = world.gateway.ops("/healthz")
        return ops.comparisons() == asked and json.loads(health)["shadow_in_flight"] == 0

    world.until(done, "a verdict for every shadow read")


@pytest.fixture
def people(world: GatewayWorld) -> Iterator[tuple[Person, Person, Person]]:
    seed = world.seed
    members = [seed.account(name) for name in ("アリス", "ボブ", "キャロル")]
    built = tuple(Person(m, world.front_door.url, world.monolith.url) for m in members)
    yield built  # type: ignore[misc]
    for person in built:
        person.close()


def test_rooms_go_through_the_phases_and_back_with_the_kill_switch(
    world: GatewayWorld, people: tuple[Person, Person, Person]
) -> None:
    alice, bob, carol = people
    ops = Operator(world)
    members = [p.member for p in people]
    moving = [world.seed.room(*members, name=f"移行 {n}") for n in (1, 2)]
    staying = world.seed.room(*members, name="そのまま")
    history = {
        room: world.seed.messages(
            room,
            alice.account_id,
            [
                f"[To:{bob.account_id}]ボブさん 過去 {n} 🎉 [info][title]t[/title]i[/info]"
                for n in range(5)
            ],
        )
        for room in [*moving, staying]
    }
    room, other = moving

    # -- legacy: the front door answers exactly as the monolith, the gateway sees nothing ------
    for each in [*moving, staying]:
        same_answers(alice.reads(each), alice.directly().reads(each))
        same_answers(
            alice.opens(each, history[each][0]), alice.directly().opens(each, history[each][0])
        )
        same_answers(alice.opens(each, 99_999_999), alice.directly().opens(each, 99_999_999))
        same_answers(
            alice.reads_with_token(each, "nope"), alice.directly().reads_with_token(each, "nope")
        )
    posted = alice.posts(room, "legacy のまま")
    assert posted.status == 200, posted
    assert world.monolith_rows(room)[posted.message_id][0] == "legacy のまま"
    assert alice.edits(room, posted.message_id, "legacy 編集").json() == posted.json()
    assert alice.deletes(room, posted.message_id).json() == posted.json()
    assert posted.message_id not in world.monolith_rows(room)
    assert ops.requests_seen() == 0, "the gateway saw a request of a room in legacy"

    # -- dual_write: the monolith answers, every write reaches the read model ------------------
    moved = ops.moves(moving, to="dual_write")
    assert moved.status_code == 200, moved.text
    assert {t["room_id"] for t in moved.json()["moved"]} == set(moving)
    until_routed(world, ops, lambda: carol.reads(room), to_gateway=True)

    first = alice.posts(room, f"[To:{bob.account_id}] 二重書き込み 1")
    second = alice.posts(room, "消されるメッセージ")
    third = alice.posts(other, "隣の部屋 [qt]引用[/qt]")
    assert [a.status for a in (first, second, third)] == [200, 200, 200]
    edited = alice.edits(room, first.message_id, "二重書き込み 1 (編集済み) ✏️")
    assert edited.status == 200 and edited.json() == first.json(), edited
    deleted = alice.deletes(room, second.message_id)
    assert deleted.status == 200 and deleted.json() == second.json(), deleted
    fetched = bob.reads_new(room)  # force=0: bob's fetch cursor moves in the monolith
    assert fetched.status == 200, fetched
    assert fetched.json()[-1]["message_id"] == str(first.message_id)
    marked = bob.marks_read(room, first.message_id)
    assert marked.status == 200, marked
    assert world.gateway_count(REQUESTS, phase="dual_write", route="post") >= 3
    assert world.gateway_count(REQUESTS, phase="dual_write", route="edit") >= 1
    assert world.gateway_count(REQUESTS, phase="dual_write", route="delete") >= 1

    the_read_model_has(world, room, first.message_id, "二重書き込み 1 (編集済み) ✏️")
    the_read_model_has(world, other, third.message_id, "隣の部屋 [qt]引用[/qt]")
    the_read_model_lacks(world, room, second.message_id)
    world.until(
        lambda: the_read_models_cursor(world, room, bob) == world.seed.cursor_of(room, bob.member),
        "bob's cursors in the read model as in the monolith",
    )
    world.until(lambda: ops.spool_pending() == 0, "the spool shipped")
    assert world.spool()["spooled"] >= 5  # 3 posts, an edit, a delete (and the cursor moves)

    # -- shadow_read: needs the backfill; then reads are compared and found the same -----------
    refused = ops.moves(moving, to="shadow_read")
    assert refused.status_code == 409, refused.text
    assert set(refused.json()["refused"]) == {str(r) for r in moving}
    world.backfill(moving)
    moved = ops.moves(moving, to="shadow_read")
    assert moved.status_code == 200, moved.text
    assert {t["room_id"] for t in moved.json()["moved"]} == set(moving)
    world.until(
        lambda: (carol.reads(room), world.gateway_count(REQUESTS, phase="shadow_read"))[1] > 0,
        "a read of the room in shadow_read",
    )

    bob_before = world.seed.cursor_of(room, bob.member)
    for each in moving:
        same_answers(carol.reads(each), carol.directly().reads(each))
        for message in world.monolith_rows(each):
            same_answers(carol.opens(each, message), carol.directly().opens(each, message))
    news = alice.posts(room, "シャドー中の新着")
    assert news.status == 200, news
    fresh = bob.reads_new(room)  # compared with the Read API's shadow force=0: `after` given
    assert fresh.status == 200 and [m["message_id"] for m in fresh.json()] == [
        str(news.message_id)
    ], fresh
    nothing = bob.reads_new(room)
    assert nothing.status == 204 and nothing.body == b"", nothing
    comparisons_done(world, ops)

    assert ops.comparisons(outcome="same") > 0
    assert ops.comparisons(outcome="same") == ops.comparisons(), {
        outcome: ops.comparisons(outcome=outcome)
        for outcome in ("same", "different", "late", "skipped", "error")
    }
    assert ops.comparisons(outcome="same", route="list") >= 3
    assert ops.comparisons(outcome="same", route="one") >= 5
    assert ops.differences() == []
    # Promise 7: the new side's cursors moved only with the monolith's own moves. Bob's is
    # where his two force=0 reads put it in the monolith; carol only read force=1 and opened
    # messages: she has no cursor on either side.
    bob_after = world.seed.cursor_of(room, bob.member)
    assert bob_before is not None and bob_after is not None
    assert bob_after[1] == news.message_id
    world.until(
        lambda: the_read_models_cursor(world, room, bob) == bob_after,
        "bob's cursor in the read model where the monolith's is",
    )
    assert world.seed.cursor_of(room, carol.member) is None
    assert the_read_models_cursor(world, room, carol) is None

    # -- the kill switch: everything straight to the monolith, phases kept ---------------------
    switched = ops.switches_kill_switch(on=True)
    assert switched.status_code == 200, switched.text
    until_routed(world, ops, lambda: carol.reads(room), to_gateway=False)
    seen = ops.requests_seen()
    compared = ops.comparisons()
    for each in moving:
        same_answers(carol.reads(each), carol.directly().reads(each))
    during = alice.posts(room, "キルスイッチ中")
    assert during.status == 200, during
    assert ops.requests_seen() == seen, "the gateway saw requests with the kill switch on"
    assert ops.comparisons() == compared
    assert ops.phases() == {r: "shadow_read" for r in moving}
    the_read_model_has(world, room, during.message_id, "キルスイッチ中")  # the binlog source's

    switched = ops.switches_kill_switch(on=False)
    assert switched.status_code == 200, switched.text
    until_routed(world, ops, lambda: carol.reads(room), to_gateway=True)
    same_answers(carol.reads(room), carol.directly().reads(room))
    comparisons_done(world, ops)
    assert ops.comparisons(outcome="same") == ops.comparisons()
    assert ops.differences() == []
    the_read_model_matches_the_monolith(world, moving)
