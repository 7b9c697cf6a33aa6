"""The embedded topics' transactions are all or nothing across a kill -9 (the redo journal)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from newcore.adapters.embedded.file_event_log import FileEventLog
from newcore.adapters.embedded.file_topics import FileTopics
from newcore.errors import EventLogUnavailable
from newcore.ports import Append
from tests.contracts.event_log import read_all
from tests.contracts.subscription import PARTITIONS
from tests.support.stack import REPO

WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from newcore.adapters.embedded.file_topics import FileTopics
    from newcore.ports import Append

    async def main() -> None:
        topics = FileTopics(Path(sys.argv[1]), 4)
        start = await topics.log("in").committed("g", 0)
        print("ready", flush=True)
        for i in range(start, start + 1_000_000):
            appends = [Append("out", room, f"{i}".encode()) for room in (1, 2, 3, 4, 5)]
            await topics.transact(appends, commit=("in", "g", 0, i + 1))

    asyncio.run(main())
    """
)


def test_a_transaction_is_all_or_nothing_across_kill_9(tmp_path: Path) -> None:
    """Five appends over several partitions and the consumed position: after a kill -9 at a
    random moment and a reopen, every committed transaction's five records are there exactly
    once, and nothing of a transaction that was not committed."""
    for round_ in range(5):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE
        )
        assert writer.stdout is not None and writer.stdout.readline() == b"ready\n"
        time.sleep(0.2 + round_ * 0.07)
        writer.send_signal(signal.SIGKILL)
        writer.wait(10)

        async def check() -> None:
            topics = FileTopics(tmp_path, PARTITIONS)  # redoes a committed journal
            committed = await topics.log("in").committed("g", 0)
            assert committed > 0
            counts: dict[int, int] = {}
            for partition in range(PARTITIONS):
                for record in await read_all(topics.log("out"), partition):
                    number = int(record.value)
                    counts[number] = counts.get(number, 0) + 1
            assert counts == dict.fromkeys(range(committed), 5)

        asyncio.run(check())


def test_a_failure_after_the_commit_point_refuses_everything_until_reopened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk while applying a committed journal: the transaction is not "none of it"
    any more, so the instance refuses every call (a retry would write a second journal over
    the first); opening the topics again completes it, once."""

    def full(self: FileEventLog, group: str, positions: object) -> None:
        raise OSError(28, "No space left on device")

    async def scenario() -> None:
        topics = FileTopics(tmp_path, PARTITIONS)
        with monkeypatch.context() as patch:
            patch.setattr(FileEventLog, "commit_now", full)
            with pytest.raises(EventLogUnavailable, match="No space left"):
                await topics.transact([Append("out", 1, b"first")], commit=("in", "g", 0, 1))
        with pytest.raises(EventLogUnavailable, match="open it again"):
            await topics.transact([Append("out", 1, b"second")], commit=("in", "g", 0, 1))
        again = FileTopics(tmp_path, PARTITIONS)
        found = [r.value for p in range(PARTITIONS) for r in await read_all(again.log("out"), p)]
        assert found == [b"first"]
        assert await again.log("in").committed("g", 0) == 1

    asyncio.run(scenario())
