"""The shipper on the real Kafka: hints spooled while Kafka answers reach the hints topic, at
the positions the shipper reported (a shadow read waits for exactly those)."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

from gateway.adapters.spool import HintSpool
from gateway.service.shipping import HintShipper
from newcore.adapters.kafka.event_log import KafkaEventLog, ensure_topic
from newcore.domain.hints import CursorHint, Hint, MessageHint
from newcore.domain.partitioning import partition_for
from newcore.settings import KafkaSettings
from newcore.wire.hints import decode_hint
from tests.support.stack import Stack, require_port
from tests.support.topics import read_all

PARTITIONS = 4


def test_spooled_hints_reach_the_hints_topic_at_the_positions_reported(
    stack: Stack, tmp_path: Path
) -> None:
    require_port("Kafka", stack.host, stack.kafka_port)
    kafka = KafkaSettings(bootstrap=stack.kafka_bootstrap)
    topic = f"test-shipping-{uuid.uuid4().hex[:10]}"
    given: list[Hint] = [
        CursorHint(room, 77) if i % 5 == 4 else MessageHint(room, 900_000 + i)
        for i in range(600)
        for room in [i % 11 + 1]
    ]

    async def scenario() -> dict[int, int]:
        await ensure_topic(kafka, topic, PARTITIONS)
        log = KafkaEventLog(kafka, topic, PARTITIONS)
        spool = HintSpool(tmp_path, 1 << 24, segment_bytes=8192, fsync_interval_s=0.1)
        shipper = HintShipper(spool, log, batch=64, backoff_ms=100, max_backoff_ms=1000)
        task = asyncio.create_task(shipper.run())
        try:
            seqs = []
            for i, hint in enumerate(given):
                seq = spool.put(hint)
                assert seq is not None
                seqs.append(seq)
                shipper.notify()
                if i % 100 == 99:
                    await asyncio.sleep(0.01)  # puts arrive over time, not all at once
            positions = {}
            for seq in seqs:
                position = await shipper.position_of(seq, 30)
                assert position is not None, seq
                positions[seq] = position
            deadline = time.monotonic() + 10
            while spool.state().pending_records and time.monotonic() < deadline:
                await asyncio.sleep(0.05)  # the cursor moves right after the positions
            state = spool.state()
            assert (state.pending_records, state.shipped_seq) == (0, len(given))
            assert shipper.stats.shipped == len(given)
            assert shipper.stats.ship_failures == 0
            return positions
        finally:
            shipper.stop()
            await task
            await log.close()
            spool.close()

    positions = asyncio.run(scenario())
    records = asyncio.run(read_all(kafka, topic, PARTITIONS))
    at = {(r.partition, r.position): r for r in records}
    assert len(records) == len(given)  # Kafka answered throughout: each hint once
    for seq, hint in enumerate(given, start=1):
        record = at[(partition_for(hint.room_id, PARTITIONS), positions[seq])]
        assert record.room_id == hint.room_id
        assert decode_hint(record.value) == hint
