"""Accounts, rooms and memberships of a seeded world."""

from __future__ import annotations

import re

import pytest

from legacy_adapters.service.seeding.world import SeedPlan, build_world, token_for


def test_sizes_follow_the_number_of_messages_unless_given() -> None:
    assert SeedPlan.sized(1_000_000, seed=1) == SeedPlan(1_000_000, 1, rooms=5000, accounts=4000)
    assert SeedPlan.sized(10, seed=1) == SeedPlan(10, 1, rooms=3, accounts=10)
    assert SeedPlan.sized(10, seed=1, rooms=2, accounts=3).rooms == 2


def test_nonsense_plans_are_refused() -> None:
    with pytest.raises(ValueError, match="0 or more"):
        SeedPlan.sized(-1, seed=1)
    with pytest.raises(ValueError, match="at least 1 room"):
        SeedPlan.sized(10, seed=1, rooms=0)


def test_tokens_are_stable_unique_and_look_like_api_tokens() -> None:
    world = build_world(SeedPlan.sized(50_000, seed=9))
    tokens = [a.token for a in world.accounts]
    assert len(set(tokens)) == len(tokens)
    assert all(re.fullmatch("[0-9a-f]{32}", t) for t in tokens)
    assert world.account(1).token == token_for(9, 1)


def test_walkthrough_account_is_present_and_in_room_1() -> None:
    world = build_world(SeedPlan.sized(50_000, seed=9))
    assert not world.account(1).withdrawn
    assert 1 in world.rooms[0].members


def test_accounts_belong_to_several_rooms_and_some_to_many() -> None:
    world = build_world(SeedPlan.sized(200_000, seed=2))
    rooms_of: dict[int, int] = {}
    for room in world.rooms:
        assert len(room.members) == len(set(room.members)) == len(room.roles)
        assert room.roles[0] == "admin"
        for member in room.members:
            rooms_of[member] = rooms_of.get(member, 0) + 1
    counts = sorted(rooms_of.values())
    assert counts[len(counts) // 2] >= 2
    assert counts[-1] >= 10 * counts[len(counts) // 2]
    assert any(room.type == "direct" and len(room.members) == 2 for room in world.rooms)


def test_some_accounts_have_withdrawn_and_some_lack_avatars() -> None:
    world = build_world(SeedPlan.sized(200_000, seed=2))
    assert any(a.withdrawn for a in world.accounts)
    assert any(a.avatar_image_url is None for a in world.accounts)
