"""The update worker's policy, on the embedded subscription: a read store outage puts the poll
back, a poison event becomes a dead letter, and offsets move only after the effect. (Its
convergence under crashes is the property, tests/unit/newcore/service/test_convergence.py.)"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from pathlib import Path

from newcore.adapters.embedded.file_subscription import FileSubscription
from newcore.adapters.embedded.file_topics import FileTopics
from newcore.adapters.embedded.sqlite_read_store import SqliteReadStore
from newcore.domain.events import Event, MessageUpserted
from newcore.domain.model import Message
from newcore.domain.partitioning import partition_for
from newcore.errors import ReadStoreUnavailable
from newcore.service.update_worker import UpdateWorker
from newcore.settings import TopicSettings, UpdaterSettings
from newcore.wire.events import encode
from tests.contracts.event_log import read_all

TOPICS = TopicSettings(hints="hints", events="events", dead_letters="dead", partitions=4)
ROOM = 9
HOME = partition_for(ROOM, TOPICS.partitions)


class Flaky(SqliteReadStore):
    """The embedded read store, cut off while `down`."""

    down = False

    def apply(self, events: Sequence[Event]) -> None:
        if self.down:
            raise ReadStoreUnavailable("cut off by the test")
        super().apply(events)


def test_a_store_outage_puts_the_poll_back_and_a_poison_event_is_a_dead_letter(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        topics = FileTopics(tmp_path, TOPICS.partitions)
        store = Flaky(":memory:")
        update = UpdateWorker(
            FileSubscription(topics, TOPICS.events, "updater", backoff_ms=100, max_backoff_ms=200),
            store, topics.log(TOPICS.dead_letters), lambda: None, TOPICS,
            UpdaterSettings(backoff_ms=100, max_backoff_ms=200), logging.getLogger("test"),
        )  # fmt: skip
        await update.start()
        message = Message(ROOM, 1, 2, "本文", 1_700_000_000, 0)
        await topics.log(TOPICS.events).append(
            [(ROOM, encode(MessageUpserted(message, 3, 1))), (ROOM, b'{"v": 99}')]
        )
        store.down = True
        assert await update.step(timeout_ms=0) == 2
        assert update.health()["read_store"] == "unavailable"
        assert await topics.log(TOPICS.events).committed("updater", HOME) == 0
        store.down = False
        await asyncio.sleep(0.25)
        assert await update.step(timeout_ms=0) == 2
        assert store.message(ROOM, 1) == message
        assert await topics.log(TOPICS.events).committed("updater", HOME) == 2
        dead = await read_all(topics.log(TOPICS.dead_letters), 0)
        dead += [r for p in range(1, 4) for r in await read_all(topics.log("dead"), p)]
        assert [json.loads(r.value)["reason"] for r in dead] == [
            "unknown event version 99 (this reader knows 1)"
        ]
        assert update.health()["ok"] is True
        store.close()

    asyncio.run(scenario())
