"""The embedded topics shared by real processes, as the embedded pipeline runs them (binlog
source, capturer, updater, gateway and jobs each a process on one directory): concurrent
writers lose nothing and keep each room's order, a reader in another process sees what they
append and never part of a transaction, and a writer killed -9 in the middle of a transaction
is finished by whoever comes next (another writer, or a reader), never while it is alive."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from newcore.adapters.embedded.file_topics import FileTopics
from newcore.domain.partitioning import partition_for
from newcore.errors import EventLogMisconfigured
from newcore.ports import LogRecord
from tests.contracts.event_log import read_all
from tests.support.stack import REPO

PARTITIONS = 4

# The programs each process runs (`python -c`); argv[1] is the topics' root.
PRELUDE = """
import asyncio, json, os, signal, sys, time
from pathlib import Path
from newcore.adapters.embedded.file_event_log import FileEventLog
from newcore.adapters.embedded.file_topics import FileTopics
from newcore.ports import Append
ROOT = Path(sys.argv[1])
"""

# Appends `batches` batches over rooms 1..8 (each record "writer:room:seq"), plainly or in
# transactions, and prints every record's position as `append` returned it.
WRITER = PRELUDE + textwrap.dedent(
    """
    WRITER, BATCHES, MODE = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]

    async def main() -> None:
        topics = FileTopics(ROOT, 4)
        log = topics.log("t")
        seq = {}
        placed = {}
        for batch in range(BATCHES):
            records = []
            for room in range(1, 9):
                if (room + batch + WRITER) % 3 == 0:
                    continue
                seq[room] = seq.get(room, 0) + 1
                records.append((room, f"{WRITER}:{room}:{seq[room]}".encode()))
            if MODE == "plain":
                for (room, value), at in zip(records, await log.append(records)):
                    placed[value.decode()] = at
            else:
                await topics.transact(
                    [Append("t", room, value) for room, value in records],
                    commit=("t", f"writer-{WRITER}", 0, batch + 1),
                )
        print(json.dumps(placed), flush=True)

    asyncio.run(main())
    """
)

# Reads topic `t` as it grows until `total` records came (or 60 s), then prints per partition
# the values in log order.
READER = PRELUDE + textwrap.dedent(
    """
    TOTAL = int(sys.argv[2])

    async def main() -> None:
        log = FileTopics(ROOT, 4).log("t")
        seen = {p: [] for p in range(4)}
        deadline = time.monotonic() + 60
        print("ready", flush=True)
        while sum(map(len, seen.values())) < TOTAL and time.monotonic() < deadline:
            for p in range(4):
                for record in await log.read(p, len(seen[p]), 500, timeout_ms=20):
                    assert record.position == len(seen[p]), (record.position, len(seen[p]))
                    seen[p].append(record.value.decode())
        print(json.dumps(seen), flush=True)

    asyncio.run(main())
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


def everything(root: Path, topic: str) -> dict[int, list[LogRecord]]:
    async def read() -> dict[int, list[LogRecord]]:
        log = FileTopics(root, PARTITIONS).log(topic)
        return {p: await read_all(log, p) for p in range(PARTITIONS)}

    return asyncio.run(read())


def test_concurrent_writers_lose_nothing_keep_each_rooms_order_and_a_reader_sees_it_all(
    tmp_path: Path,
) -> None:
    """Four writer processes (two appending plainly, two in transactions) on the same rooms,
    and a reader process following the topic while they write: every record is there exactly
    once, each writer's records of a room in the order it appended them, at the positions
    `append` returned; the reader saw exactly the final log, position by position."""
    writers, batches = 4, 60
    per_batch = {w: [sum(1 for room in range(1, 9) if (room + b + w) % 3) for b in range(batches)]
                 for w in range(writers)}  # fmt: skip
    total = sum(sum(counts) for counts in per_batch.values())
    reader = spawn(READER, tmp_path, total)
    assert reader.stdout is not None and reader.stdout.readline() == "ready\n"
    running = [
        spawn(WRITER, tmp_path, w, batches, "plain" if w % 2 == 0 else "transactions")
        for w in range(writers)
    ]
    placed = [json.loads(finished(process)) for process in running]
    seen = json.loads(finished(reader))

    final = everything(tmp_path, "t")
    values = [r.value.decode() for records in final.values() for r in records]
    assert len(values) == total
    assert Counter(values).most_common(1)[0][1] == 1  # nothing twice
    for partition, records in final.items():
        assert [r.position for r in records] == list(range(len(records)))
        assert seen[str(partition)] == [r.value.decode() for r in records], partition
        order: dict[tuple[str, str], int] = {}
        for record in records:
            writer, room, seq = record.value.decode().split(":")
            assert partition_for(int(room), PARTITIONS) == partition == record.partition
            assert int(seq) == order.get((writer, room), 0) + 1, (writer, room, seq)
            order[(writer, room)] = int(seq)
    where = {r.value.decode(): (r.partition, r.position) for rs in final.values() for r in rs}
    for mine in placed:
        for value, position in mine.items():
            assert where[value][1] == position, value
    topics = FileTopics(tmp_path, PARTITIONS)
    for w in range(1, writers, 2):
        assert asyncio.run(topics.log("t").committed(f"writer-{w}", 0)) == batches


# Transactions of five records (rooms 1..5) and the consumed position, numbered from the
# committed position on, until killed. With a third argument "crash-at-commit", the process
# kills itself after the records of its first transaction are applied and before its commit is:
# after the commit point, in the middle of the transaction.
TRANSACTIONS = PRELUDE + textwrap.dedent(
    """
    async def main() -> None:
        topics = FileTopics(ROOT, 4)
        if sys.argv[2:] == ["crash-at-commit"]:
            def crash(self, group, positions):
                os.kill(os.getpid(), signal.SIGKILL)
            FileEventLog.commit_now = crash
        start = await topics.log("in").committed("g", 0)
        print("ready", flush=True)
        for i in range(start, start + 1_000_000):
            appends = [Append("out", room, f"tx:{i}".encode()) for room in (1, 2, 3, 4, 5)]
            await topics.transact(appends, commit=("in", "g", 0, i + 1))

    asyncio.run(main())
    """
)

# Plain appends of numbered records to rooms 1 and 6, `count` of them, then "done".
PLAIN = PRELUDE + textwrap.dedent(
    """
    async def main() -> None:
        log = FileTopics(ROOT, 4).log("out")
        for n in range(int(sys.argv[2])):
            await log.append([(1, f"plain:{n}".encode()), (6, f"plain:{n}".encode())])
            time.sleep(0.002)
        print("done", flush=True)

    asyncio.run(main())
    """
)

# Follows topic "out" until the file `stop` exists, then prints what it saw per partition.
# Each record of a transaction it sees must come with that transaction's commit: the consumed
# position it reads right after is past the transaction's number.
FOLLOWER = PRELUDE + textwrap.dedent(
    """
    async def main() -> None:
        topics = FileTopics(ROOT, 4)
        log = topics.log("out")
        seen = {p: [] for p in range(4)}
        print("ready", flush=True)
        while not Path(sys.argv[2]).exists():
            for p in range(4):
                newest = -1
                for record in await log.read(p, len(seen[p]), 500, timeout_ms=5):
                    value = record.value.decode()
                    seen[p].append(value)
                    if value.startswith("tx:"):
                        newest = max(newest, int(value[3:]))
                committed = await topics.log("in").committed("g", 0)
                assert newest < committed, f"saw tx:{newest} before its commit ({committed})"
        print(json.dumps(seen), flush=True)

    asyncio.run(main())
    """
)


def test_writers_killed_9_mid_transaction_leave_the_log_readable_and_consistent(
    tmp_path: Path,
) -> None:
    """A transactional writer killed -9 at random moments (three times, restarted each time),
    while another process appends plainly to the same partitions and a third follows the
    topic: every committed transaction's five records are there once, nothing of one that was
    not committed, every plain record once and in order, and the follower never saw part of a
    transaction, a record before its transaction's commit, nor anything that later changed (its
    view is a prefix of the final log)."""
    stop = tmp_path / "stop"
    follower = spawn(FOLLOWER, tmp_path / "log", stop)
    assert follower.stdout is not None and follower.stdout.readline() == "ready\n"
    plain = spawn(PLAIN, tmp_path / "log", 400)
    for round_ in range(3):
        writer = spawn(TRANSACTIONS, tmp_path / "log")
        assert writer.stdout is not None and writer.stdout.readline() == "ready\n"
        time.sleep(0.25 + round_ * 0.11)
        writer.send_signal(signal.SIGKILL)
        writer.wait(10)
    assert finished(plain) == "done\n"
    stop.touch()
    seen = json.loads(finished(follower))

    final = everything(tmp_path / "log", "out")
    committed = asyncio.run(FileTopics(tmp_path / "log", PARTITIONS).log("in").committed("g", 0))
    assert committed > 0
    values = Counter(r.value.decode() for rs in final.values() for r in rs)
    assert {v: n for v, n in values.items() if v.startswith("tx:")} == {
        f"tx:{i}": 5 for i in range(committed)
    }
    assert {v: n for v, n in values.items() if v.startswith("plain:")} == {
        f"plain:{n}": 2 for n in range(400)
    }
    for partition, records in final.items():
        final_values = [r.value.decode() for r in records]
        plains = [int(v.split(":")[1]) for v in final_values if v.startswith("plain:")]
        assert plains == sorted(plains), partition  # a room's order kept
        view = seen[str(partition)]
        assert view == final_values[: len(view)], partition  # nothing it saw changed
        in_view, in_final = Counter(view), Counter(final_values)
        for value, count in in_view.items():
            assert count == in_final[value], (partition, value)  # never part of a transaction


def test_a_reader_finishes_a_transaction_whose_writer_died_after_the_commit_point(
    tmp_path: Path,
) -> None:
    """The writer kills itself after its transaction's records are applied and before its
    commit is; no writer comes after it. A reader in another process (which holds the lock
    alone once the writer is dead) completes the transaction: the records once, the commit
    moved."""
    writer = spawn(TRANSACTIONS, tmp_path, "crash-at-commit")
    writer.wait(30)
    assert writer.returncode == -signal.SIGKILL
    assert (tmp_path / "transaction.journal").exists()  # left for the next holder of the lock
    reader = spawn(
        PRELUDE
        + textwrap.dedent(
            """
            async def main() -> None:
                topics = FileTopics(ROOT, 4)
                out = {p: [r.value.decode() for r in await topics.log("out").read(p, 0, 100, 0)]
                       for p in range(4)}
                print(json.dumps([out, await topics.log("in").committed("g", 0)]))

            asyncio.run(main())
            """
        ),
        tmp_path,
    )
    out, committed = json.loads(finished(reader))
    assert committed == 1
    assert Counter(v for values in out.values() for v in values) == {"tx:0": 5}
    assert not (tmp_path / "transaction.journal").exists()


def test_a_slow_live_writer_is_waited_for_never_redone_under_its_feet(tmp_path: Path) -> None:
    """A writer that stalls for a second in the middle of its transaction (its journal
    committed, its records half written) is alive: a reader and a plain writer in other
    processes wait for it instead of redoing its journal, and the result holds its records once,
    then the plain writer's."""
    slow = spawn(
        PRELUDE
        + textwrap.dedent(
            """
            original = FileEventLog.commit_now
            def slow_commit(self, group, positions):
                print(json.dumps(time.time()), flush=True)
                time.sleep(1.0)
                original(self, group, positions)
            FileEventLog.commit_now = slow_commit

            async def main() -> None:
                topics = FileTopics(ROOT, 4)
                await topics.transact([Append("out", r, b"slow") for r in (1, 2, 3, 4, 5)],
                                      commit=("in", "g", 0, 1))
                print("committed", flush=True)

            asyncio.run(main())
            """
        ),
        tmp_path,
    )
    assert slow.stdout is not None
    stalled_at = json.loads(slow.stdout.readline())
    others = spawn(
        PRELUDE
        + textwrap.dedent(
            """
            async def main() -> None:
                topics = FileTopics(ROOT, 4)
                committed = await topics.log("in").committed("g", 0)
                at = time.time()
                await topics.log("out").append([(1, b"after")])
                print(json.dumps([committed, at]))

            asyncio.run(main())
            """
        ),
        tmp_path,
    )
    committed, read_at = json.loads(finished(others))
    assert committed == 1  # the slow writer's commit, made by the slow writer:
    assert read_at - stalled_at >= 0.95  # read only once it was done
    assert finished(slow) == "committed\n"
    home = partition_for(1, PARTITIONS)
    assert [r.value for r in everything(tmp_path, "out")[home]][-1] == b"after"
    assert Counter(r.value for rs in everything(tmp_path, "out").values() for r in rs) == {
        b"slow": 5,
        b"after": 1,
    }


def test_a_process_with_another_partition_count_is_refused(tmp_path: Path) -> None:
    """The count is recorded by the first user of the directory: a process configured with
    another one would put rooms in other partitions, and is refused, saying what to do."""

    async def scenario() -> None:
        await FileTopics(tmp_path, PARTITIONS).log("t").append([(1, b"x")])
        other = FileTopics(tmp_path, PARTITIONS * 2)
        with pytest.raises(EventLogMisconfigured, match="have 4 partitions, the settings say 8"):
            await other.log("t").append([(1, b"y")])
        with pytest.raises(EventLogMisconfigured, match="MIG_TOPIC_PARTITIONS"):
            await other.log("t").read(0, 0, 10, 0)

    asyncio.run(scenario())


def test_a_topic_of_topics_cannot_be_opened_as_a_log_of_its_own(tmp_path: Path) -> None:
    """A plain log on a topic's folder would not share the topics' lock (a transaction and its
    appends could interleave): refused, naming what to use."""
    from newcore.adapters.embedded.file_event_log import FileEventLog

    asyncio.run(FileTopics(tmp_path, PARTITIONS).log("t").append([(1, b"x")]))
    with pytest.raises(ValueError, match=r"open it through FileTopics"):
        FileEventLog(tmp_path / "t", PARTITIONS)
    with pytest.raises(ValueError, match=r"topic '\.\.'"):
        FileTopics(tmp_path, PARTITIONS).log("..")
