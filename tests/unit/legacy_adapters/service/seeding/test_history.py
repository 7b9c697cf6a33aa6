"""The seeded history has the shape and the quirks that later issues must cope with."""

from __future__ import annotations

import itertools
import re
from collections import Counter

import pytest

from legacy_adapters.service.seeding.history import (
    CHUNK_SIZE,
    RAW_ERA_END,
    V1_ERA_END,
    WIDE_ID_BASE,
    ZERO_DATE,
    History,
    MessageRow,
)
from legacy_adapters.service.seeding.world import SeedPlan, build_world

ASTRAL = re.compile("[\U00010000-\U0010ffff]")


@pytest.fixture(scope="module")
def rows() -> list[MessageRow]:
    history = History(build_world(SeedPlan.sized(120_000, seed=7)))
    return [row for index in range(history.chunk_count) for row in history.chunk(index).rows]


def body_of(row: MessageRow) -> str:
    return row[3] or row[4] or (row[5] or b"").decode("utf-8", "replace")


def test_exactly_the_asked_number_of_rows(rows: list[MessageRow]) -> None:
    assert len(rows) == 120_000


def test_same_seed_same_rows_and_other_seed_other_rows() -> None:
    plan = SeedPlan.sized(30_000, seed=3)
    first = History(build_world(plan)).chunk(1).rows
    again = History(build_world(plan)).chunk(1).rows
    other = History(build_world(SeedPlan.sized(30_000, seed=4))).chunk(1).rows
    assert first == again
    assert first != other


def test_chunks_do_not_depend_on_earlier_chunks() -> None:
    """A resumed run generates a later chunk without the earlier ones: it must be identical."""
    plan = SeedPlan.sized(3 * CHUNK_SIZE, seed=11)
    in_order = History(build_world(plan))
    for index in range(3):
        expected = in_order.chunk(index).rows
    alone = History(build_world(plan)).chunk(2).rows
    assert alone == expected


def test_ids_only_increase_and_turn_into_18_digits_with_gaps(rows: list[MessageRow]) -> None:
    ids = [row[0] for row in rows]
    assert all(a < b for a, b in itertools.pairwise(ids))
    narrow = [i for i in ids if i < 2**31]
    wide = [i for i in ids if i >= WIDE_ID_BASE]
    assert narrow and wide and len(narrow) + len(wide) == len(ids)
    assert all(len(str(i)) == 18 for i in wide)
    gaps = sum(1 for a, b in itertools.pairwise(narrow) if b - a > 1)
    assert 0.005 * len(narrow) < gaps < 0.02 * len(narrow)  # hard deletes: about 1%


def test_each_era_stores_its_body_in_its_own_column(rows: list[MessageRow]) -> None:
    for row in rows:
        created_era = row[6] if row[6] is not None else None
        columns = [row[3] is not None, row[4] is not None, row[5] is not None]
        assert columns.count(True) == 1, row
        if row[5] is not None:  # raw era: no send_time, no update_time
            assert row[6] is None and row[7] is None
        if row[4] is not None:  # v1 era: 3-byte utf8 only
            assert row[6] is None and row[7] is None
            assert not ASTRAL.search(row[4])
        if row[3] is not None:
            assert created_era is not None and created_era >= V1_ERA_END


def test_the_odd_rows_are_there(rows: list[MessageRow]) -> None:
    raw = [row[5] for row in rows if row[5] is not None]
    invalid = 0
    for data in raw:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            invalid += 1
    assert raw and invalid >= 1
    assert any(row[8] == ZERO_DATE for row in rows)
    assert any(row[9] == 1 for row in rows)  # soft deletes
    edited = [row for row in rows if row[3] is not None and row[7]]
    assert any(row[7] == row[6] for row in edited)  # edited within the second it was sent
    assert any(row[7] > row[6] for row in edited if row[7] is not None and row[6] is not None)
    assert any(ASTRAL.search(row[3]) for row in rows if row[3])  # emoji in the utf8mb4 era


def test_raw_era_is_before_2012(rows: list[MessageRow]) -> None:
    from legacy_adapters.service.seeding.history import jst

    last_raw = max(row[8] for row in rows if row[5] is not None)
    assert last_raw < jst(RAW_ERA_END)


def test_bodies_carry_chatwork_notation_and_japanese(rows: list[MessageRow]) -> None:
    bodies = [body_of(row) for row in rows]
    for marker in ("[To:", "[rp aid=", "[qt][qtmeta aid=", "[/qt]", "[info][title]", "[/info]"):
        assert any(marker in body for body in bodies), marker
    assert sum(1 for body in bodies if re.search("[\u3040-\u30ff]", body)) > len(bodies) // 2


def test_room_sizes_are_heavy_tailed(rows: list[MessageRow]) -> None:
    per_room = sorted(Counter(row[1] for row in rows).values(), reverse=True)
    top = per_room[: max(1, len(per_room) // 100)]
    assert sum(top) > 0.15 * len(rows)  # the busiest 1% of rooms hold a large share
    assert per_room[len(per_room) // 2] < len(rows) / len(per_room)  # the median room is quiet


def test_senders_are_members_of_the_room() -> None:
    world = build_world(SeedPlan.sized(20_000, seed=5))
    members = {room.room_id: set(room.members) for room in world.rooms}
    for row in History(world).chunk(0).rows:
        assert row[2] in members[row[1]]
