"""The capture worker's policy, on the embedded subscription: what a failure of the monolith
does to a partition's batch, and what a poison hint becomes. (Its convergence under crashes is
the property, tests/unit/newcore/service/test_convergence.py.)"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from pathlib import Path

from legacy_adapters.adapters.embedded.memory_monolith import InMemoryMonolith
from legacy_adapters.domain.translation import LegacyMessageRow
from newcore.adapters.embedded.file_subscription import FileSubscription
from newcore.adapters.embedded.file_topics import FileTopics
from newcore.domain.hints import MessageHint
from newcore.domain.partitioning import partition_for
from newcore.errors import MonolithUnavailable
from newcore.ports import MessageRead
from newcore.service.capture import Capturer
from newcore.service.capture_worker import CaptureWorker
from newcore.settings import CapturerSettings, TopicSettings
from newcore.wire.events import decode
from newcore.wire.hints import encode_hint
from tests.contracts.event_log import read_all

TOPICS = TopicSettings(hints="hints", events="events", dead_letters="dead", partitions=4)
ROOM = 5


class Flaky(InMemoryMonolith):
    """The embedded monolith, cut off while `down` (a fault, as the relay is in process tests)."""

    down = False

    def read_messages(self, keys: Sequence[tuple[int, int]]) -> MessageRead:
        if self.down:
            raise MonolithUnavailable("cut off by the test")
        return super().read_messages(keys)


def worker(root: Path, monolith: InMemoryMonolith) -> tuple[CaptureWorker, FileTopics]:
    topics = FileTopics(root, TOPICS.partitions)
    subscription = FileSubscription(
        topics, TOPICS.hints, "capturer", backoff_ms=100, max_backoff_ms=200
    )
    capturer = Capturer(monolith, partitions=TOPICS.partitions)
    settings = CapturerSettings(backoff_ms=100, max_backoff_ms=200)
    return CaptureWorker(
        subscription, capturer, TOPICS, settings, logging.getLogger("test")
    ), topics


def test_a_monolith_outage_puts_the_batch_back_and_it_is_captured_once_when_back(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        monolith = Flaky()
        monolith.add_room(ROOM)
        monolith.put(LegacyMessageRow(1, ROOM, 2, "やあ", None, None, 1_700_000_000, 0,
                                      "2023-11-15 07:13:20", 0))  # fmt: skip
        capture, topics = worker(tmp_path, monolith)
        await capture.start()
        await topics.log(TOPICS.hints).append([(ROOM, encode_hint(MessageHint(ROOM, 1)))])
        monolith.down = True
        assert await capture.step(timeout_ms=0) == 1
        health = capture.health()
        assert health["ok"] is False and health["monolith"] == "unavailable"
        assert health["paused_partitions"] == [partition_for(ROOM, TOPICS.partitions)]
        assert await capture.step(timeout_ms=0) == 0  # paused: not read again at once
        events = topics.log(TOPICS.events)
        assert await read_all(events, partition_for(ROOM, TOPICS.partitions)) == []
        monolith.down = False
        await asyncio.sleep(0.25)  # the backoff passes
        assert await capture.step(timeout_ms=0) == 1
        assert await capture.step(timeout_ms=0) == 0  # committed: not again
        found = await read_all(events, partition_for(ROOM, TOPICS.partitions))
        assert [decode(r.value).room_id for r in found] == [ROOM]
        assert capture.health()["ok"] is True

    asyncio.run(scenario())


def test_a_poison_hint_is_a_dead_letter_committed_with_the_batch(tmp_path: Path) -> None:
    async def scenario() -> None:
        monolith = Flaky()
        monolith.add_room(ROOM)
        capture, topics = worker(tmp_path, monolith)
        await capture.start()
        await topics.log(TOPICS.hints).append([(ROOM, b'{"v": 1, "type": "nonsense"}')])
        assert await capture.step(timeout_ms=0) == 1
        assert await capture.step(timeout_ms=0) == 0
        dead = await read_all(topics.log(TOPICS.dead_letters), partition_for(ROOM, 4))
        assert [json.loads(r.value)["reason"] for r in dead] == ["unknown hint type 'nonsense'"]
        assert await topics.log(TOPICS.hints).committed("capturer", partition_for(ROOM, 4)) == 1

    asyncio.run(scenario())
