"""Low-level pieces of our Kafka clients, shared by the subscriptions and the binlog source.

`PartitionBackoff`: when a downstream store (MariaDB for the capturer, HBase for the updater) is
unavailable, the partition's batch is put back: the partition is paused, sought back to the
batch's first offset, and resumed after a backoff that doubles up to a ceiling. The poll loop
itself never sleeps, so the consumer keeps its group membership (a consumer blocked in a retry
loop is thrown out of its group and its partitions move for nothing). `within` bounds every
call in time (aiokafka retries an unreachable broker without end); `transact` runs one
transaction that a dropped producer leaves for the next one to abort.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, KafkaTimeoutError

from newcore.settings import KafkaSettings


class PartitionBackoff:
    def __init__(self, consumer: AIOKafkaConsumer, backoff_ms: int, max_backoff_ms: int) -> None:
        self._consumer = consumer
        self._backoff_ms = backoff_ms
        self._max_backoff_ms = max_backoff_ms
        self._paused: dict[TopicPartition, int] = {}  # partition -> current backoff (ms)

    @property
    def paused(self) -> list[int]:
        return sorted(tp.partition for tp in self._paused)

    def put_back(self, tp: TopicPartition, offset: int) -> int:
        """Pauses the partition at `offset` and schedules its resumption; returns the backoff
        (ms). Nothing of the batch was committed, so nothing is lost. A partition no longer
        assigned is left alone (0): its next owner reads it from the committed offset."""
        if tp not in self._consumer.assignment():
            return 0
        backoff = min(self._paused.get(tp, self._backoff_ms // 2) * 2, self._max_backoff_ms)
        self._paused[tp] = backoff
        self._consumer.pause(tp)
        self._consumer.seek(tp, offset)
        asyncio.get_running_loop().call_later(backoff / 1000, self._resume, tp)
        return backoff

    def succeeded(self, tp: TopicPartition) -> None:
        """A batch of the partition went through: its next failure starts the backoff anew."""
        self._paused.pop(tp, None)

    def forget(self, revoked: set[TopicPartition] | list[TopicPartition]) -> None:
        """Revoked partitions are no longer ours to pause or resume."""
        for tp in revoked:
            self._paused.pop(tp, None)

    def _resume(self, tp: TopicPartition) -> None:
        if tp in self._consumer.assignment():
            self._consumer.resume(tp)


def fetch_silence_s(consumer: AIOKafkaConsumer | None, idle: bool) -> float | None:
    """Seconds since the freshest fetch answer for the partitions the consumer fetches
    (assigned, not paused), judged only when `idle` (its last poll returned nothing); None
    when there is nothing to judge by.

    Why: a health that only hears of failed transactions calls an idle process cut off from
    Kafka healthy, while the records it should read pile up. When idle, nothing waits in the
    consumer's buffer, so it fetches every partition and Kafka answers within
    fetch_max_wait_ms even with nothing new: a long silence means Kafka cannot be reached.
    Under load the silence tells nothing: aiokafka does not fetch from a broker while records
    of one of its partitions wait in the buffer (measured: 15 s silences in the bench)."""
    if consumer is None or not idle:
        return None
    fetched = consumer.assignment() - consumer.paused()
    stamps = [stamp for tp in fetched if (stamp := consumer.last_poll_timestamp(tp)) is not None]
    return max(0.0, time.time() - max(stamps) / 1000) if stamps else None


def kafka_up(
    answered: bool, consumer: AIOKafkaConsumer | None, idle: bool, kafka: KafkaSettings
) -> tuple[bool, float | None]:
    """Whether Kafka counts as reachable, and the fetch silence (s): its last calls
    `answered`, and an idle consumer's fetches have not been silent for `kafka.silence_ms`."""
    silence = fetch_silence_s(consumer, idle)
    return answered and (silence is None or silence * 1000 < kafka.silence_ms), silence


T = TypeVar("T")


def group_consumer(
    kafka: KafkaSettings, group: str, max_records: int, fetch_max_wait_ms: int
) -> AIOKafkaConsumer:
    """A consumer-group member as our workers use it: offsets committed by hand (after the
    effect), read_committed, from the earliest record when the group never committed."""
    return AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap, group_id=group, enable_auto_commit=False,
        auto_offset_reset="earliest", isolation_level="read_committed",
        max_poll_records=max_records, fetch_max_wait_ms=fetch_max_wait_ms,
        request_timeout_ms=kafka.request_timeout_ms,
    )  # fmt: skip


async def stop_quietly(client: AIOKafkaProducer | AIOKafkaConsumer) -> None:
    """Stops a client without letting a dead broker hold us for long (its state is dropped:
    a producer's open transaction is aborted by the next producer of the same id).

    A consumer stopped while Kafka is cut off raises the CancelledError of its own fetch task
    (aiokafka 0.14 `Fetcher.close` awaits the tasks it cancels; aio-libs/aiokafka#647): that
    one is swallowed, a cancellation of the caller is not."""
    try:
        await asyncio.wait_for(client.stop(), timeout=5)
    except (KafkaError, TimeoutError, OSError):
        pass
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise


async def within(seconds: float, work: Awaitable[T], what: str) -> T:
    """`work`, or KafkaTimeoutError after `seconds`. aiokafka retries an unreachable broker
    without end: a bound turns an outage into an error our backoff handles (and our health
    shows)."""
    try:
        return await asyncio.wait_for(work, seconds)
    except TimeoutError as exc:
        raise KafkaTimeoutError(f"{what}: no answer from Kafka within {seconds:g} s") from exc


async def transact(
    producer: AIOKafkaProducer, body: Callable[[], Awaitable[None]], seconds: float
) -> None:
    """One Kafka transaction: begin, `body`, commit, within `seconds`. On any error it is left
    open on purpose: the caller drops the producer, and the next one (same transactional id)
    aborts it when it starts. (aiokafka's `transaction()` context aborts on error, and that
    abort waits without end when the broker is gone.)"""

    async def run() -> None:
        await producer.begin_transaction()
        await body()
        await producer.commit_transaction()

    await within(seconds, run(), "transaction")
