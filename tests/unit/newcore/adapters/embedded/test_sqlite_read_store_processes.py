"""The embedded read store shared by real processes, as the embedded pipeline runs it (the
updater writes it, the Read API and the migrator's jobs read it): readers in other processes
see every `apply` whole and never wait long or fail while writers write, two writers take
turns, and a writer killed -9 in the middle of an `apply` leaves whole applies only."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from newcore.adapters.embedded.sqlite_read_store import SqliteReadStore
from tests.support.stack import REPO

PRELUDE = """
import json, sys, time
from newcore.adapters.embedded.sqlite_read_store import SqliteReadStore
from newcore.domain.events import MessageUpserted, MessageDeleted
from newcore.domain.model import Message
PATH = sys.argv[1]
"""

# Room R's messages 1..N, message i at capture position i, in applies of `batch` events; every
# tenth message is deleted again in the next apply (a tombstone at a higher position).
WRITER = PRELUDE + textwrap.dedent(
    """
    ROOM, N, BATCH = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    store = SqliteReadStore(PATH)
    print("ready", flush=True)
    for first in range(1, N + 1, BATCH):
        events = []
        for i in range(first, min(first + BATCH, N + 1)):
            events.append(MessageUpserted(Message(ROOM, i, 7, "本文" * 50, 1_700_000_000 + i, 0), 2 * i, 1))
            if i % 10 == 1 and i > 1:
                events.append(MessageDeleted(ROOM, i - 1, 2 * i, 1))
        store.apply(events)
    store.close()
    print("done", flush=True)
    """
)

# Reads rooms until each one's position reaches its last, checking on every look that what it
# reads is whole applies: the room's position read first, then its live messages, which must
# be exactly the messages applied up to a position at least that one (a prefix of the room's
# history, every tenth one deleted once its deletion came).
READER = PRELUDE + textwrap.dedent(
    """
    ROOMS, N = [int(r) for r in sys.argv[2].split(",")], int(sys.argv[3])
    store = SqliteReadStore(PATH)
    looks, slowest = 0, 0.0
    done = set()
    deadline = time.monotonic() + 60
    while len(done) < len(ROOMS) and time.monotonic() < deadline:
        for room in ROOMS:
            started = time.monotonic()
            position = store.room_position(room) or 0
            ids = [m.message_id for m in store.after(room, 0, 100_000)]
            slowest = max(slowest, time.monotonic() - started)
            looks += 1
            top = max(ids, default=0)
            assert 2 * top >= position, (room, position, top)  # data at least as new
            expected = [i for i in range(1, top + 1) if i % 10 or i == top]
            assert ids == expected, (room, position, ids[-12:], expected[-12:])
            if position == 2 * N:
                done.add(room)
    print(json.dumps({"looks": looks, "slowest_s": slowest, "done": sorted(done)}), flush=True)
    """
)


def spawn(program: str, *args: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", program, *map(str, args)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def finished(process: subprocess.Popen[str], seconds: float = 90) -> str:
    out, err = process.communicate(timeout=seconds)
    assert process.returncode == 0, err[-3000:]
    return out


def test_two_writers_and_two_readers_in_other_processes(tmp_path: Path) -> None:
    """Two writer processes (two rooms) and two reader processes at once on one file: no
    writer fails on the other's lock (they take turns), every reader sees whole applies only on
    every look (never a message without the ones before it, never a position ahead of its data)
    and ends at the final state."""
    path = tmp_path / "read-model.sqlite"
    SqliteReadStore(path).open()  # the file and its tables, as the updater makes them first
    n = 400
    readers = [spawn(READER, path, "101,202", n) for _ in range(2)]
    writers = [spawn(WRITER, path, room, n, 7) for room in (101, 202)]
    for writer in writers:
        assert finished(writer) == "ready\ndone\n"
    for reader in readers:
        result = json.loads(finished(reader))
        assert result["done"] == [101, 202]
        assert result["looks"] > 10
    store = SqliteReadStore(path)
    for room in (101, 202):
        assert store.room_position(room) == 2 * n
        assert [m.message_id for m in store.after(room, 0, 10_000)] == [
            i for i in range(1, n + 1) if i % 10 or i == n
        ]
    store.close()


def test_a_writer_killed_9_mid_apply_leaves_whole_applies_only(tmp_path: Path) -> None:
    """Large applies, the writer killed -9 at three moments (restarted each time from
    nothing: the applies are idempotent): each time the store opens in another process, and
    holds exactly the applies that completed, never a part of one."""
    path = tmp_path / "read-model.sqlite"
    for round_ in range(3):
        writer = spawn(WRITER, path, 303, 3000, 500)
        assert writer.stdout is not None and writer.stdout.readline() == "ready\n"
        time.sleep(0.15 + 0.1 * round_)
        writer.send_signal(signal.SIGKILL)
        writer.wait(10)
        reader = spawn(
            READER.replace("time.monotonic() + 60", "time.monotonic() + 0.3"), path, "303", 3000
        )
        assert json.loads(finished(reader))["looks"] > 0  # every look was whole applies
        store = SqliteReadStore(path)
        position = store.room_position(303) or 0
        ids = [m.message_id for m in store.after(303, 0, 10_000)]
        store.close()
        assert position % 1000 == 0, position  # applies of 500 messages: whole ones
        top = position // 2
        assert ids == [i for i in range(1, top + 1) if i % 10 or i == top]
