"""Writes a seeded world into the monolith's MariaDB, fast and resumably.

Messages go in as one multi-row INSERT per chunk, one transaction per chunk. Worker processes
generate the chunks and escape their values with PyMySQL's own escaping (the same client-side
interpolation PyMySQL's executemany performs; the values are our generated rows, escaped by the
driver, never pasted raw), while this process sends finished statements to MariaDB: so both
cores work, one on Python, one on InnoDB.

A run is recorded in `seed_runs` (the seeder's own bookkeeping, not part of the monolith): a
run that was interrupted resumes where the committed chunks end; a finished run is not
repeated; a database holding anything else is refused unless the caller asks for a reset.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass

from pymysql.converters import escape_item
from sqlalchemy import Connection, Engine, text

from legacy_adapters.service.seeding.history import HISTORY_START, History, RoomProgress, jst
from legacy_adapters.service.seeding.world import SeedPlan, World, build_world

SEEDED_TABLES = (
    "messages",
    "room_cursors",
    "room_members",
    "rooms",
    "api_tokens",
    "accounts",
    "rate_limits",
)

INSERT_MESSAGES = (
    "INSERT INTO messages (message_id, room_id, account_id, body, body_v1, body_raw, send_time,"
    " update_time, created_at, deleted) VALUES "
)


class SeedRefused(Exception):
    """The database holds data this run must not touch or mix with; the message says why."""


@dataclass(frozen=True)
class SeedOutcome:
    inserted: int  # message rows written by this run
    skipped: int  # message rows already there from an interrupted run of the same plan
    already_done: bool


Progress = Callable[[int], object]  # told how many more messages are done


def ensure_bookkeeping(conn: Connection) -> None:
    conn.execute(
        text(
            "CREATE TABLE IF NOT EXISTS seed_runs ("
            " seed BIGINT NOT NULL, messages BIGINT UNSIGNED NOT NULL, rooms INT UNSIGNED NOT NULL,"
            " accounts INT UNSIGNED NOT NULL, finished TINYINT(1) NOT NULL DEFAULT 0,"
            " started_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,"
            " PRIMARY KEY (seed, messages, rooms, accounts))"
        )
    )


def reset(engine: Engine) -> None:
    """Empties every table the seeder fills. Destroys data: only on the caller's explicit ask."""
    with engine.begin() as conn:
        ensure_bookkeeping(conn)
        for table in (*SEEDED_TABLES, "seed_runs"):
            conn.execute(text(f"TRUNCATE TABLE {table}"))


def _claim(engine: Engine, plan: SeedPlan) -> bool:
    """Records the run; returns True if this plan was already seeded to the end."""
    with engine.begin() as conn:
        ensure_bookkeeping(conn)
        runs = conn.execute(
            text("SELECT seed, messages, rooms, accounts, finished FROM seed_runs")
        ).all()
        mine = [
            r
            for r in runs
            if (r.seed, r.messages, r.rooms, r.accounts)
            == (plan.seed, plan.messages, plan.rooms, plan.accounts)
        ]
        if mine:
            return bool(mine[0].finished)
        if runs:
            r = runs[0]
            raise SeedRefused(
                f"the database holds another seeded data set (seed {r.seed}, {r.messages} messages);"
                " pass --reset to replace it"
            )
        if conn.execute(text("SELECT EXISTS (SELECT 1 FROM messages)")).scalar():
            raise SeedRefused(
                "the messages table holds data the seeder did not write; pass --reset to replace it"
            )
        conn.execute(
            text("INSERT INTO seed_runs (seed, messages, rooms, accounts) VALUES (:s, :m, :r, :a)"),
            {"s": plan.seed, "m": plan.messages, "r": plan.rooms, "a": plan.accounts},
        )
        return False


def _write_world(engine: Engine, world: World) -> None:
    """Accounts, tokens, rooms and memberships. Idempotent (INSERT IGNORE) for resumed runs."""
    present = [a for a in world.accounts if not a.withdrawn]
    with engine.begin() as conn:
        cursor = conn.connection.cursor()
        cursor.executemany(
            "INSERT IGNORE INTO accounts (account_id, name, chatwork_id, avatar_image_url,"
            " organization_name, my_room_id) VALUES (%s, %s, %s, %s, %s, %s)",
            [
                (
                    a.account_id,
                    a.name,
                    a.chatwork_id or None,
                    a.avatar_image_url,
                    a.organization_name,
                    a.my_room_id,
                )
                for a in present
            ],
        )
        cursor.executemany(
            "INSERT IGNORE INTO api_tokens (token, account_id, created_at) VALUES (%s, %s, %s)",
            [(a.token, a.account_id, jst(HISTORY_START + a.account_id * 3600)) for a in present],
        )
        all_rooms = (
            *world.rooms,
            *(r for r in world.my_rooms if not world.account(r.members[0]).withdrawn),
        )
        cursor.executemany(
            "INSERT IGNORE INTO rooms (room_id, name, type) VALUES (%s, %s, %s)",
            [(r.room_id, r.name, r.type) for r in all_rooms],
        )
        withdrawn = {a.account_id for a in world.accounts if a.withdrawn}
        cursor.executemany(
            "INSERT IGNORE INTO room_members (room_id, account_id, role) VALUES (%s, %s, %s)",
            [
                (r.room_id, member, role)
                for r in all_rooms
                for member, role in zip(r.members, r.roles, strict=True)
                if member not in withdrawn
            ],
        )


@dataclass(frozen=True)
class PreparedChunk:
    index: int
    rows: int
    last_id: int
    statement: str
    rooms: dict[int, RoomProgress]


_worker_history: History | None = None


def _start_worker(plan: SeedPlan) -> None:
    global _worker_history
    _worker_history = History(build_world(plan))


def _prepare_chunk(index: int) -> PreparedChunk:
    """Runs in a worker process: one chunk as a finished multi-row INSERT."""
    assert _worker_history is not None, "worker not initialised"
    chunk = _worker_history.chunk(index)
    values = ",".join(
        "(" + ",".join([escape_item(v, "utf8mb4") for v in row]) + ")" for row in chunk.rows
    )
    return PreparedChunk(
        index, len(chunk.rows), chunk.rows[-1][0], INSERT_MESSAGES + values, chunk.rooms
    )


def _prepared_chunks(plan: SeedPlan, chunk_count: int) -> Iterator[PreparedChunk]:
    """Chunks in order, prepared ahead by worker processes (bounded read-ahead)."""
    workers = max(1, min(2, os.cpu_count() or 1))
    with ProcessPoolExecutor(workers, initializer=_start_worker, initargs=(plan,)) as pool:
        ahead: list[Future[PreparedChunk]] = []
        next_index = 0
        try:
            while next_index < chunk_count or ahead:
                while next_index < chunk_count and len(ahead) < workers * 2:
                    ahead.append(pool.submit(_prepare_chunk, next_index))
                    next_index += 1
                yield ahead.pop(0).result()
        finally:
            for future in ahead:
                future.cancel()


def _write_cursors(engine: Engine, world: World, progress: dict[int, RoomProgress]) -> None:
    """Read and fetch cursors of every member, and each room's last update time.

    Nothing here reads the clock: the same plan gives the same tables, byte for byte.

    Most members have read everything, some lag at a point in the room's past, some never
    opened the room (no cursor row): so force=0, unread counts and mentions all have work.
    """
    withdrawn = {a.account_id for a in world.accounts if a.withdrawn}
    rows = []
    for room in world.rooms:
        seen = progress.get(room.room_id)
        if seen is None:
            continue
        for member in room.members:
            if member in withdrawn:
                continue
            roll = (member * 7919 + room.room_id * 104729 + world.plan.seed) % 100
            if roll < 70:
                rows.append((room.room_id, member, seen.last_id, seen.last_id, seen.last_time))
            elif roll < 90:
                rows.append(
                    (room.room_id, member, seen.lagging_id, seen.lagging_id, seen.last_time)
                )
    with engine.begin() as conn:
        cursor = conn.connection.cursor()
        cursor.executemany(
            "INSERT INTO room_cursors (room_id, account_id, last_read_message_id,"
            " last_fetched_message_id, updated_at) VALUES (%s, %s, %s, %s, FROM_UNIXTIME(%s))"
            " ON DUPLICATE KEY UPDATE last_read_message_id = VALUES(last_read_message_id),"
            " last_fetched_message_id = VALUES(last_fetched_message_id), updated_at = VALUES(updated_at)",
            rows,
        )
        cursor.executemany(
            "UPDATE rooms SET last_update_time = %s WHERE room_id = %s",
            [(p.last_time, room_id) for room_id, p in progress.items()],
        )


def seed(engine: Engine, world: World, on_progress: Progress) -> SeedOutcome:
    """Seeds `world`, resuming an interrupted run of the same plan; safe to interrupt anywhere."""
    if _claim(engine, world.plan):
        return SeedOutcome(inserted=0, skipped=0, already_done=True)
    _write_world(engine, world)
    with engine.connect() as conn:
        committed = int(
            conn.execute(text("SELECT COALESCE(MAX(message_id), 0) FROM messages")).scalar_one()
        )
    chunk_count = History(world).chunk_count
    inserted = skipped = 0
    rooms: dict[int, RoomProgress] = {}
    for chunk in _prepared_chunks(world.plan, chunk_count):
        for room_id, later in chunk.rooms.items():
            rooms.setdefault(room_id, RoomProgress()).follow(later)
        # Chunks commit whole and in id order: a chunk at or below the highest committed id is
        # already there (an interrupted run of the same deterministic plan).
        if chunk.last_id <= committed:
            skipped += chunk.rows
        else:
            with engine.begin() as conn:
                conn.connection.cursor().execute(chunk.statement)
            inserted += chunk.rows
        on_progress(chunk.rows)
    _write_cursors(engine, world, rooms)
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE seed_runs SET finished = 1 WHERE seed = :s AND messages = :m AND rooms = :r AND accounts = :a"
            ),
            {
                "s": world.plan.seed,
                "m": world.plan.messages,
                "r": world.plan.rooms,
                "a": world.plan.accounts,
            },
        )
    return SeedOutcome(inserted=inserted, skipped=skipped, already_done=False)
