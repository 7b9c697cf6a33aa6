"""Readiness probes for the JVM services, polled by deploy/kafka.sh and deploy/hbase.sh.

    probe.py kafka HOST:PORT   create topic `_probe` if missing, produce one record, read it back
    probe.py hbase HOST PORT   open a happybase (Thrift 1) connection and list the tables

Exit 0 when the service did the real work; otherwise exit 1 with a one-line reason on stderr.
Every step has a short timeout so that a caller can poll once a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import uuid

PROBE_TOPIC = "_probe"
KAFKA_DEADLINE_S = 20.0
HBASE_TIMEOUT_MS = 5000


async def _kafka_round_trip(bootstrap: str) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    await admin.start()
    try:
        if PROBE_TOPIC not in await admin.list_topics():
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [NewTopic(PROBE_TOPIC, num_partitions=1, replication_factor=1)]
                )
    finally:
        await admin.close()

    marker = uuid.uuid4().hex.encode()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=5000, acks="all")
    await producer.start()
    try:
        meta = await producer.send_and_wait(PROBE_TOPIC, marker, partition=0)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        request_timeout_ms=5000,
    )
    await consumer.start()
    try:
        tp = TopicPartition(PROBE_TOPIC, 0)
        consumer.assign([tp])
        consumer.seek(tp, meta.offset)
        record = await consumer.getone(tp)
        if record.value != marker:
            raise RuntimeError(
                f"read back {record.value!r} at offset {meta.offset}, not {marker!r}"
            )
    finally:
        await consumer.stop()


def probe_kafka(bootstrap: str) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(_kafka_round_trip(bootstrap), KAFKA_DEADLINE_S)

    asyncio.run(bounded())


def probe_hbase(host: str, port: int) -> None:
    import happybase

    conn = happybase.Connection(host=host, port=port, timeout=HBASE_TIMEOUT_MS, autoconnect=False)
    try:
        conn.open()
        tables = conn.tables()
        if not isinstance(tables, list):
            raise RuntimeError(f"tables() returned {type(tables).__name__}, not a list")
    finally:
        conn.close()


def main(argv: list[str]) -> int:
    # The clients log their retries; the probe's own one-line verdict is what callers read.
    logging.basicConfig(level=logging.CRITICAL)
    usage = "usage: probe.py kafka HOST:PORT | probe.py hbase HOST PORT"
    try:
        if len(argv) == 2 and argv[0] == "kafka":
            probe_kafka(argv[1])
        elif len(argv) == 3 and argv[0] == "hbase":
            probe_hbase(argv[1], int(argv[2]))
        else:
            print(usage, file=sys.stderr)
            return 2
    except Exception as exc:  # a probe reports any failure as one line
        reason = " ".join(str(exc).split()) or "(no message)"
        if not reason.startswith(type(exc).__name__):
            reason = f"{type(exc).__name__}: {reason}"
        print(f"{argv[0]} probe failed: {reason}"[:400], file=sys.stderr)
        return 1
    print(f"{argv[0]} ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
