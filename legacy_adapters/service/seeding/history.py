"""Fifteen years of messages, era by era, with the quirks real history has.

Pure and deterministic. Messages are generated in send order and in chunks; each chunk draws
from its own random stream, so the same plan always yields the same rows. The eras (see
deploy/monolith/README.md):

- until 2012-03: rows imported from the "Talk" product, body in `body_raw` (bytes; some are
  Shift_JIS, some UTF-8 cut in the middle of a character), times only in `created_at`;
- until 2016-06: body in `body_v1` (3-byte utf8: emoji were stored as '?'), `send_time` and
  `update_time` NULL, `created_at` in JST; in spring 2013 an import bug wrote zero dates;
- since 2016-06: body in `body` (utf8mb4), `send_time`, `update_time` (0 or the edit time,
  sometimes the same second as the send time), `created_at` still written;
- until 2019 ids were consecutive 32-bit numbers; since then 18-digit ids that only increase,
  with gaps (never a dense counter).

Soft deletes are rows with deleted=1; hard deletes are gaps: ids given out, then purged.
"""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass

from legacy_adapters.service.seeding.bodies import BodyWriter
from legacy_adapters.service.seeding.world import World

HISTORY_START = 1306886400  # 2011-06-01
RAW_ERA_END = 1330560000  # 2012-03-01
V1_ERA_END = 1464739200  # 2016-06-01
ZERO_DATE_FROM, ZERO_DATE_TO = 1364774400, 1372636800  # 2013-04-01 .. 2013-07-01
WIDE_ID_FROM = 1546300800  # 2019-01-01: ids become 64-bit
HISTORY_END = 1793491200  # 2026-11-01
WIDE_ID_BASE = 100_000_000_000_000_000  # the first 18-digit id
ZERO_DATE = "0000-00-00 00:00:00"
JST = 9 * 3600

CHUNK_SIZE = 20_000
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")

# (message_id, room_id, account_id, body, body_v1, body_raw, send_time, update_time,
#  created_at, deleted): the column order of MessageRows.
MessageRow = tuple[
    int, int, int, str | None, str | None, bytes | None, int | None, int | None, str, int
]


@dataclass
class RoomProgress:
    """What a chunk tells of a room: its newest message and a point some readers lag at."""

    last_id: int = 0
    last_time: int = 0
    lagging_id: int = 0

    def follow(self, later: RoomProgress) -> None:
        """Folds in the progress of a later chunk."""
        self.last_id, self.last_time = later.last_id, later.last_time
        self.lagging_id = later.lagging_id or self.lagging_id


@dataclass(frozen=True)
class Chunk:
    index: int
    rows: list[MessageRow]
    rooms: dict[int, RoomProgress]


class History:
    """The message rows of a world, chunk by chunk.

    Chunks are independent of each other (ids and times follow from the position of a message,
    not from earlier chunks), so chunks can be generated in parallel and a resumed run can skip
    any of them.
    """

    def __init__(self, world: World) -> None:
        self.world = world
        names = {a.account_id: a.name for a in world.accounts}
        self._member_names = {r.room_id: [names[m] for m in r.members] for r in world.rooms}
        self._cum_weights = _cumulative([room.weight for room in world.rooms])

    @property
    def chunk_count(self) -> int:
        return -(-self.world.plan.messages // CHUNK_SIZE)

    def chunk(self, index: int) -> Chunk:
        plan = self.world.plan
        rng = random.Random(f"history:{plan.seed}:{index}")
        writer = BodyWriter(rng)
        rooms = self.world.rooms
        first = index * CHUNK_SIZE
        count = min(CHUNK_SIZE, plan.messages - first)
        picks = rng.choices(range(len(rooms)), cum_weights=self._cum_weights, k=count)
        # Hard deletes: 1% of the ids given out in this chunk were purged later (gaps).
        purged_before = first // 100
        purged_here = sorted(rng.sample(range(count), count // 100)) if count >= 100 else []
        rows: list[MessageRow] = []
        progress: dict[int, RoomProgress] = {}
        for offset, pick in enumerate(picks):
            position = first + offset
            while purged_here and purged_here[0] <= offset:
                purged_here.pop(0)
                purged_before += 1
            room = rooms[pick]
            # Volume grows over the years: more messages per day in recent history.
            fraction = ((position + 0.5) / plan.messages) ** 0.5
            send_time = HISTORY_START + int((HISTORY_END - HISTORY_START) * fraction)
            if send_time < WIDE_ID_FROM:
                message_id = position + 1 + purged_before
            else:
                message_id = WIDE_ID_BASE + position * 1000 + rng.randrange(1000)
            seen = progress.setdefault(room.room_id, RoomProgress())
            text = writer.body(
                room_id=room.room_id,
                members=room.members,
                names=self._member_names[room.room_id],
                recent_message_id=seen.last_id,
                now=send_time,
            )
            sender = room.members[int(rng.random() * len(room.members))]
            rows.append(_row(rng, writer, message_id, room.room_id, sender, text, send_time))
            seen.last_id, seen.last_time = message_id, send_time
            if seen.lagging_id == 0 or rng.random() < 0.05:
                seen.lagging_id = message_id
        return Chunk(index, rows, progress)


def _cumulative(weights: list[float]) -> list[float]:
    total, out = 0.0, []
    for w in weights:
        total += w
        out.append(total)
    return out


def jst(unix_seconds: int) -> str:
    """created_at as the legacy app wrote it: JST wall time."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(unix_seconds + JST))


def _row(
    rng: random.Random,
    writer: BodyWriter,
    message_id: int,
    room_id: int,
    account_id: int,
    text: str,
    send_time: int,
) -> MessageRow:
    deleted = 1 if rng.random() < 0.02 else 0
    if send_time < RAW_ERA_END:
        return (message_id, room_id, account_id, None, None, _raw_bytes(rng, text), None, None,
                jst(send_time), deleted)  # fmt: skip
    if send_time < V1_ERA_END:
        zero = ZERO_DATE_FROM <= send_time < ZERO_DATE_TO and rng.random() < 0.3
        created = ZERO_DATE if zero else jst(send_time)
        return (message_id, room_id, account_id, None, _ASTRAL.sub("?", text), None, None, None,
                created, deleted)  # fmt: skip
    update_time = 0
    roll = rng.random()
    if roll < 0.005:
        update_time = send_time  # edited within the second it was sent: update_time cannot tell
        text = writer.edited(text)
    elif roll < 0.05:
        update_time = min(HISTORY_END, send_time + rng.randrange(1, 3 * 86_400))
        text = writer.edited(text)
    if deleted:
        update_time = min(HISTORY_END, send_time + rng.randrange(1, 30 * 86_400))
    return (message_id, room_id, account_id, text, None, None, send_time, update_time,
            jst(send_time), deleted)  # fmt: skip


def _raw_bytes(rng: random.Random, text: str) -> bytes:
    """An imported body: mostly UTF-8, some Shift_JIS, some cut inside a character."""
    text = _ASTRAL.sub("", text)  # the Talk product predates emoji
    roll = rng.random()
    if roll < 0.05:
        return text.encode("shift_jis", errors="replace")
    data = text.encode("utf-8")
    if roll < 0.10:
        multibyte = [i for i, b in enumerate(data) if b >= 0xC0]
        if multibyte:
            return data[: rng.choice(multibyte) + 1]  # a lead byte with its tail cut off
    return data
