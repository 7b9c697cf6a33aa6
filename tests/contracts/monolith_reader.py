"""The MonolithReader contract: one suite for the in-memory monolith and the MariaDB reader.

A subclass provides the `monolith` fixture: (reader, arranger), where the arranger writes
legacy rows as the monolith would store them.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Protocol

import pytest

from legacy_adapters.domain.translation import LegacyMessageRow
from newcore.domain.model import Message, ReadCursor
from newcore.ports import MonolithReader


class Arranger(Protocol):
    def add_room(self, room_id: int) -> None: ...
    def put(self, row: LegacyMessageRow) -> None: ...
    def purge(self, message_id: int) -> None: ...
    def move_cursor(
        self, room_id: int, account_id: int, last_read: int, last_fetched: int
    ) -> None: ...


Monolith = tuple[MonolithReader, Arranger]


def fresh_room() -> int:
    return random.randrange(3_000_000_000, 4_000_000_000)


def fresh_id() -> int:
    return random.randrange(10**17, 9 * 10**17)


def row(room: int, mid: int, **fields: object) -> LegacyMessageRow:
    values: dict[str, object] = dict(
        message_id=mid, room_id=room, account_id=5, body="本文😀", body_v1=None, body_raw=None,
        send_time=1_700_000_000, update_time=0, created_at="2023-11-15 07:13:20", deleted=0,
    )  # fmt: skip
    values.update(fields)
    return LegacyMessageRow(**values)  # type: ignore[arg-type]


class MonolithReaderContract:
    @pytest.fixture
    def monolith(self) -> Iterator[Monolith]:
        raise NotImplementedError

    def test_live_gone_and_other_rooms(self, monolith: Monolith) -> None:
        reader, arrange = monolith
        room, other = fresh_room(), fresh_room()
        a, b, c, d = (fresh_id() for _ in range(4))
        arrange.put(row(room, a))
        arrange.put(row(room, b, deleted=1))
        arrange.put(row(other, c))
        read = reader.read_messages([(room, a), (room, b), (room, c), (room, d), (room, a)])
        assert read.live == {(room, a): Message(room, a, 5, "本文😀", 1_700_000_000, 0)}
        assert read.gone == {(room, b), (room, c), (room, d)}
        assert read.problems == []
        arrange.purge(a)
        assert reader.read_messages([(room, a)]).gone == {(room, a)}
        empty = reader.read_messages([])
        assert (empty.live, empty.gone, empty.problems) == ({}, set(), [])

    def test_each_legacy_era_reads_as_the_monolith_shows_it(self, monolith: Monolith) -> None:
        reader, arrange = monolith
        room = fresh_room()
        v1, raw, bad_raw, zero, jst = (fresh_id() for _ in range(5))
        arrange.put(row(room, v1, body=None, body_v1="旧い本文?", send_time=None, update_time=None,
                        created_at="2014-04-01 09:00:00"))  # fmt: skip
        arrange.put(
            row(
                room, raw, body=None, body_raw="取り込み".encode(), send_time=None, update_time=None
            )
        )
        arrange.put(
            row(room, bad_raw, body=None, body_raw=b"ok\xe3\x81", send_time=None, update_time=None)
        )
        arrange.put(
            row(room, zero, send_time=None, created_at="0000-00-00 00:00:00", update_time=None)
        )
        arrange.put(row(room, jst, send_time=None, created_at="2011-06-01 09:00:00"))
        read = reader.read_messages([(room, mid) for mid in (v1, raw, bad_raw, zero, jst)])
        assert read.live[(room, v1)] == Message(room, v1, 5, "旧い本文?", 1396310400, 0)
        assert read.live[(room, raw)].body == "取り込み"
        assert read.live[(room, bad_raw)].body == "ok\ufffd"
        assert read.live[(room, zero)].send_time == 0
        assert read.live[(room, jst)].send_time == 1306886400  # 09:00 JST is 00:00 UTC
        reasons = sorted((p.key, p.reason) for p in read.problems)
        assert reasons == sorted([
            (bad_raw, "body_raw is not UTF-8 (4 bytes): invalid sequences shown as U+FFFD"),
            (zero, "send_time is NULL and created_at is 0000-00-00 00:00:00: send time shown as 0"),
        ])  # fmt: skip
        assert all(p.table == "messages" and p.room_id == room for p in read.problems)

    def test_a_range_pages_in_id_order_and_shows_soft_deletes(self, monolith: Monolith) -> None:
        reader, arrange = monolith
        room = fresh_room()
        ids = sorted(fresh_id() for _ in range(7))
        for mid in ids:
            arrange.put(row(room, mid, deleted=1 if mid in (ids[1], ids[4]) else 0))
        arrange.put(row(fresh_room(), ids[0] + 1))  # another room inside the id range
        first = reader.read_range(room, ids[0], ids[-1], 3)
        assert [m.message_id for m in first.live] == [ids[0], ids[2]]
        assert first.deleted == [ids[1]]
        assert first.last_seen == ids[2]
        second = reader.read_range(room, ids[2] + 1, ids[-1], 10)
        assert [m.message_id for m in second.live] == [ids[3], ids[5], ids[6]]
        assert second.deleted == [ids[4]]
        assert second.last_seen == ids[6]
        done = reader.read_range(room, ids[6] + 1, ids[-1] + 10, 10)
        assert (done.live, done.deleted, done.last_seen) == ([], [], None)

    def test_cursors_and_rooms(self, monolith: Monolith) -> None:
        reader, arrange = monolith
        room, missing = fresh_room(), fresh_room()
        arrange.add_room(room)
        arrange.move_cursor(room, 5, 100, 200)
        assert reader.read_cursors([(room, 5), (room, 6), (room, 5)]) == {
            (room, 5): ReadCursor(room, 5, 100, 200)
        }
        assert reader.existing_rooms([room, missing, room]) == {room}
        assert reader.read_cursors([]) == {}
        assert reader.existing_rooms([]) == set()
