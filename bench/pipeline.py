"""Capture pipeline figures on the real stack (issue 4), each beside its baseline, same run.

1. baseline: happybase alone batch-puts the seeded messages' rows (the same packed cell per
   message the read model holds) into the same HBase. Only the puts are timed.
2. end to end: range hints covering every seeded message go into a fresh hints topic; the real
   `chat-capturer` and `chat-updater` processes turn them into the read model. Timed from the
   first hint to the last event applied (the updater's own counter), then a sample of rooms is
   compared with the monolith. Resident memory of both processes is sampled as the data grows.
3. latency: a writer commits messages into a scratch copy of the monolith at a steady rate and
   sends a hint for each (as the gateway will); an observer polls HBase for each message. The
   same again with no hints from the writer and `chat-binlog-source` reading the binlog.

Run it with `make bench` (or `.venv/bin/python -m bench.pipeline --help`). It uses the data
set `make demo` seeds, and cleans up its topics and tables.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import happybase
import pymysql
import pymysql.cursors
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import text
from tqdm import tqdm

from legacy_adapters.adapters.mariadb.engine import make_engine
from legacy_adapters.adapters.mariadb.monolith_reader import RANGE_SQL, MariaDbMonolithReader
from legacy_adapters.settings import LegacyDatabaseSettings
from newcore.adapters.hbase import schema
from newcore.adapters.hbase.read_store import (
    HBaseReadStore,
    drop_tables,
    ensure_tables,
    message_cells,
    tombstone_cells,
)
from newcore.adapters.kafka.event_log import KafkaEventLog, ensure_topic
from newcore.domain.hints import MessageHint, RangeHint
from newcore.domain.model import MAX_ID
from newcore.domain.partitioning import partition_for
from newcore.settings import HBaseSettings, KafkaSettings
from newcore.wire.hints import encode_hint
from tests.support.processes import free_port
from tests.support.scratch_db import scratch_database
from tests.support.stack import Stack

ROOT = Path(__file__).resolve().parents[1]
PARTITIONS = 16
RANGE_ROWS = 1000


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def service_pids() -> dict[str, int]:
    """The stack's own processes, from their pid files under .state/."""
    state = Path(os.environ.get("MIG_STATE_DIR", ROOT / ".state"))
    found = {}
    for name, path in (("MariaDB", "mariadb/mysqld.pid"), ("Kafka", "kafka/kafka.pid"),
                       ("HBase", "hbase/master.pid"), ("HBase Thrift", "hbase/thrift.pid")):  # fmt: skip
        with contextlib.suppress(OSError, ValueError):
            found[name] = int((state / path).read_text().split()[0])
    return found


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        for line in answer.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def unhealthy_because(port: int) -> str | None:
    """None when /healthz says ok; else what it said (or that it did not answer in 2 s)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
            return None if json.loads(answer.read()).get("ok") else "?"
    except urllib.error.HTTPError as error:
        return str(error.read().decode(errors="replace"))
    except OSError as exc:
        return f"no answer: {exc!r}"


def healthy(port: int) -> bool:
    return unhealthy_because(port) is None


@dataclass
class Process:
    name: str
    ops_port: int
    popen: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(60)
            except subprocess.TimeoutExpired:
                self.popen.kill()


def start(
    module: str, env: dict[str, str], ops_var: str, logs: Path, label: str, nice: int = 0
) -> Process:
    """`python -m module`, healthy on its ops port. `nice`: run it below the serving path's CPU
    priority, as deploy/pipeline.sh runs the new side (`nice` execs it: the pid is Python's)."""
    port = free_port()
    name = module.rsplit(".", 1)[-1]
    log = logs / f"{label}-{name}.log"
    niced = ["nice", "-n", str(nice)] if nice else []
    with log.open("wb") as out:
        popen = subprocess.Popen(  # noqa: S603 (our own module, with sys.executable)
            [*niced, sys.executable, "-m", module], env={**env, ops_var: str(port)}, cwd=ROOT,
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    process = Process(name, port, popen, log)
    deadline = time.monotonic() + 120
    while not healthy(port):
        if popen.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{name} did not become healthy:\n{log.read_text()[-2000:]}")
        time.sleep(0.2)
    return process


@dataclass
class Run:
    stack: Stack
    kafka: KafkaSettings
    database: LegacyDatabaseSettings
    logs: Path
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    topics: list[str] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)

    def hbase(self, label: str) -> HBaseSettings:
        prefix = f"bench_{label}_{self.run}"
        self.prefixes.append(prefix)
        settings = HBaseSettings(host=self.stack.host, thrift_port=self.stack.hbase_thrift_port,
                                 table_prefix=prefix)  # fmt: skip
        ensure_tables(settings)
        return settings

    def topic_names(self, label: str) -> dict[str, str]:
        names = {k: f"bench-{self.run}-{label}.{k}" for k in ("hints", "events", "dead")}
        self.topics += names.values()
        return names

    def pipeline_env(
        self, names: dict[str, str], hbase: HBaseSettings, database: LegacyDatabaseSettings
    ) -> dict[str, str]:
        return {
            **os.environ,
            "MIG_KAFKA_BOOTSTRAP": self.kafka.bootstrap,
            "MIG_MARIADB_PORT": str(database.mariadb_port),
            "MIG_DB_NAME": database.db_name,
            "MIG_HBASE_THRIFT_PORT": str(hbase.thrift_port),
            "MIG_HBASE_TABLE_PREFIX": hbase.table_prefix,
            "MIG_TOPIC_HINTS": names["hints"],
            "MIG_TOPIC_EVENTS": names["events"],
            "MIG_TOPIC_DEAD_LETTERS": names["dead"],
            "MIG_TOPIC_PARTITIONS": str(PARTITIONS),
            "MIG_CAPTURER_GROUP": f"bench-{self.run}-{names['hints']}",
            "MIG_CAPTURER_TRANSACTIONAL_ID_PREFIX": f"bench-{self.run}",
            "MIG_UPDATER_GROUP": f"bench-{self.run}-{names['events']}",
            "MIG_BINLOG_CHECKPOINT_TOPIC": f"bench-{self.run}.checkpoints",
            "MIG_BINLOG_TRANSACTIONAL_ID": f"bench-{self.run}-binlog",
            "MIG_BINLOG_SERVER_ID": str(random.randrange(10_000, 4_000_000_000)),
        }

    def cleanup(self) -> None:
        for prefix in self.prefixes:
            with contextlib.suppress(Exception):
                drop_tables(HBaseSettings(host=self.stack.host,
                                          thrift_port=self.stack.hbase_thrift_port,
                                          table_prefix=prefix))  # fmt: skip

        async def delete() -> None:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.kafka.bootstrap)
            await admin.start()
            try:
                existing = set(await admin.list_topics())
                doomed = [t for t in [*self.topics, f"bench-{self.run}.checkpoints"]
                          if t in existing]  # fmt: skip
                if doomed:
                    await admin.delete_topics(doomed)
            finally:
                await admin.close()

        with contextlib.suppress(Exception):
            asyncio.run(delete())


# -- the seeded rows -------------------------------------------------------------------------


def connect(
    database: LegacyDatabaseSettings, cursorclass: type[pymysql.cursors.Cursor]
) -> pymysql.Connection[pymysql.cursors.Cursor]:
    """A bare PyMySQL connection, no pool, no ORM."""
    return pymysql.connect(
        host=database.mariadb_host, port=database.mariadb_port, user=database.db_user,
        password=database.db_password.get_secret_value(), database=database.db_name,
        cursorclass=cursorclass, autocommit=True,
    )  # fmt: skip


def seeded_rows(database: LegacyDatabaseSettings) -> Iterator[tuple[int, int]]:
    """(room_id, message_id) of every seeded message, in key order, streamed."""
    connection = connect(database, pymysql.cursors.SSCursor)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT room_id, message_id FROM messages ORDER BY room_id, message_id")
            yield from cursor
    finally:
        connection.close()


def range_hints(database: LegacyDatabaseSettings) -> tuple[list[RangeHint], int]:
    """Range hints of up to RANGE_ROWS rows each (the backfill's way to cover history), and
    the row count they cover."""
    rooms: dict[int, list[int]] = {}
    for room_id, message_id in seeded_rows(database):
        rooms.setdefault(room_id, []).append(message_id)
    hints = [
        RangeHint(room, ids[start], ids[min(start + RANGE_ROWS, len(ids)) - 1])
        for room, ids in rooms.items()
        for start in range(0, len(ids), RANGE_ROWS)
    ]
    return hints, sum(len(ids) for ids in rooms.values())


# -- 1. the baseline -------------------------------------------------------------------------


@dataclass
class Baseline:
    """What the baseline measured: its rate, and the CPU the two steps every pipeline on these
    parts must take cost per row, client and servers together (the floor)."""

    rate: float
    read_us: float  # bare PyMySQL fetching the rows + MariaDB answering
    put_us: float  # happybase putting the cells + HBase and its Thrift server storing them

    @property
    def floor_us(self) -> float:
        return self.read_us + self.put_us


class CpuMeter:
    """CPU seconds spent by this process and some of the stack's, summed over the windows
    measured with it (so that work done between windows is not counted)."""

    def __init__(self, servers: dict[str, int]) -> None:
        self.servers = servers
        self.seconds = 0.0

    @contextlib.contextmanager
    def window(self) -> Iterator[None]:
        own, theirs = time.process_time(), self._servers()
        try:
            yield
        finally:
            self.seconds += time.process_time() - own + self._servers() - theirs

    def _servers(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.servers.values())


def baseline(run: Run, limit: int) -> Baseline:
    """Rows per second happybase alone batch-puts, with the read model's cells; and the CPU
    per row of reading the rows with bare PyMySQL and of putting them (the floor)."""
    hbase = run.hbase("baseline")
    reader = MariaDbMonolithReader(make_engine(run.database))
    raw = connect(run.database, pymysql.cursors.Cursor)
    pids = service_pids()
    reading = CpuMeter({k: v for k, v in pids.items() if k == "MariaDB"})
    putting = CpuMeter({k: v for k, v in pids.items() if k.startswith("HBase")})
    if len(reading.servers) + len(putting.servers) != 3:
        raise SystemExit(f"the stack's pid files name only {sorted(pids)}; is it up?")
    connection = happybase.Connection(host=hbase.host, port=hbase.thrift_port,
                                      table_prefix=hbase.table_prefix,
                                      table_prefix_separator="_")  # fmt: skip
    table = connection.table(schema.MESSAGES)
    put_seconds, done = 0.0, 0
    rooms: dict[int, list[int]] = {}
    for room_id, message_id in seeded_rows(run.database):
        rooms.setdefault(room_id, []).append(message_id)
    with tqdm(total=limit, desc="baseline puts", unit="row", smoothing=0.1) as bar:
        for room_id, ids in rooms.items():
            for start in range(0, len(ids), 10_000):
                if done >= limit:
                    break
                chunk = ids[start : start + 10_000]
                bounds = {"room_id": room_id, "first": chunk[0], "last": chunk[-1],
                          "limit": len(chunk)}  # fmt: skip
                with reading.window(), raw.cursor() as cursor:
                    cursor.execute(RANGE_SQL, bounds)
                    cursor.fetchall()
                page = reader.read_range(room_id, chunk[0], chunk[-1], len(chunk))
                cells = [(schema.message_key(m.room_id, m.message_id), message_cells(m))
                         for m in page.live]  # fmt: skip
                cells += [(schema.message_key(room_id, mid), tombstone_cells())
                          for mid in page.deleted]  # fmt: skip
                began = time.perf_counter()
                with putting.window(), table.batch(timestamp=1, batch_size=1000) as batch:
                    for key, row in cells:
                        batch.put(key, row)
                put_seconds += time.perf_counter() - began
                done += len(cells)
                bar.update(len(cells))
    connection.close()
    raw.close()
    measured = Baseline(done / put_seconds, reading.seconds / done * 1e6,
                        putting.seconds / done * 1e6)  # fmt: skip
    print(f"baseline: happybase batch puts of {done:,} rows: {put_seconds:.1f} s of puts = "
          f"{measured.rate:,.0f} rows/s")  # fmt: skip
    print(f"  floor, CPU per row of the two steps any pipeline on these parts takes: read the "
          f"rows {measured.read_us:.0f} µs (bare PyMySQL + MariaDB), put the cells "
          f"{measured.put_us:.0f} µs (happybase + HBase + Thrift server) = "
          f"{measured.floor_us:.0f} µs")  # fmt: skip
    return measured


# -- 2. end to end ---------------------------------------------------------------------------


async def produce(kafka: KafkaSettings, topic: str, records: list[tuple[int, bytes]]) -> None:
    log = KafkaEventLog(kafka, topic, PARTITIONS)
    try:
        await log.append(records)
    finally:
        await log.close()


async def make_topics(kafka: KafkaSettings, names: dict[str, str]) -> None:
    for name in names.values():
        await ensure_topic(kafka, name, PARTITIONS)


def end_to_end(run: Run, measured: Baseline | None) -> None:
    hbase = run.hbase("e2e")
    names = run.topic_names("e2e")
    asyncio.run(make_topics(run.kafka, names))
    env = run.pipeline_env(names, hbase, run.database)
    print("end to end: listing the seeded rows into range hints ...", flush=True)
    hints, rows = range_hints(run.database)
    capturer = start("newcore.entrypoints.capturer", env, "MIG_CAPTURER_OPS_PORT", run.logs, "e2e")
    updater = start("newcore.entrypoints.updater", env, "MIG_UPDATER_OPS_PORT", run.logs, "e2e")
    memory: list[tuple[float, float, float]] = []  # (fraction done, capturer MiB, updater MiB)
    unhealthy: dict[str, list[str]] = {capturer.name: [], updater.name: []}  # /healthz not ok
    samples = 0
    pids = service_pids() | {"capturer": capturer.popen.pid, "updater": updater.popen.pid}
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    try:
        began = time.perf_counter()
        asyncio.run(produce(run.kafka, names["hints"],
                            [(h.room_id, encode_hint(h)) for h in hints]))  # fmt: skip
        applied = 0.0
        with tqdm(total=rows, desc="end to end", unit="msg", smoothing=0.1) as bar:
            while applied < rows:
                time.sleep(0.5)
                now = metric(updater.ops_port, "chat_updater_events_applied_total")
                bar.update(int(now - applied))
                applied = now
                memory.append((applied / rows, rss_mib(capturer.popen.pid),
                               rss_mib(updater.popen.pid)))  # fmt: skip
                samples += 1
                for process in (capturer, updater):
                    if (why := unhealthy_because(process.ops_port)) is not None:
                        unhealthy[process.name].append(why)
                    if process.popen.poll() is not None:
                        raise SystemExit(f"{process.name} died:\n{process.log.read_text()[-2000:]}")
        elapsed = time.perf_counter() - began
        cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
    finally:
        capturer.stop()
        updater.stop()
    rate = rows / elapsed
    beside = (f" ({rate / measured.rate:.0%} of the baseline {measured.rate:,.0f} rows/s)"
              if measured else "")  # fmt: skip
    print(f"end to end: {len(hints):,} range hints for {rows:,} messages -> read model complete "
          f"in {elapsed:.1f} s = {rate:,.0f} messages/s{beside}")  # fmt: skip
    for label, at in (("10%", 0.1), ("50%", 0.5), ("100%", 1.0)):
        sample = next((m for m in memory if m[0] >= at), memory[-1])
        print(f"  RSS at {label:>4} of the data: capturer {sample[1]:.0f} MiB, "
              f"updater {sample[2]:.0f} MiB")  # fmt: skip
    print("  CPU while it ran (share of one core; the machine has "
          f"{os.cpu_count()}): " + ", ".join(f"{name} {seconds / elapsed:.0%}"
                                             for name, seconds in cpu.items()))  # fmt: skip
    print(f"  CPU per message: {sum(cpu.values()) / rows * 1e6:.0f} µs in all, of which "
          f"capturer {cpu['capturer'] / rows * 1e6:.0f} µs, updater "
          f"{cpu['updater'] / rows * 1e6:.0f} µs")  # fmt: skip
    print("  health under load (a sample every 0.5 s; a healthy pipeline must not look down): "
          + ", ".join(f"{name} unhealthy in {len(answers)} of {samples}"
                      for name, answers in unhealthy.items()))  # fmt: skip
    for name, answers in unhealthy.items():
        for answer in answers[:3]:
            print(f"    {name}: {answer}")
    if measured:
        print_ceiling(measured, cpu["Kafka"] / rows * 1e6)
    check_sample(run.database, hbase)


def ceiling(measured: Baseline, extra_us: float = 0.0) -> float:
    """The most messages/s this machine's cores allow a pipeline that does no work of its own
    beyond the floor the baseline measured (plus `extra_us` of CPU per message: Kafka as a run
    used it)."""
    return (os.cpu_count() or 1) * 1e6 / (measured.floor_us + extra_us)  # CPU µs per second


def print_ceiling(measured: Baseline, kafka_us: float) -> None:
    """The ceiling with only the floor and with Kafka as this run used it: the bound that any
    goal on this machine must be weighed against."""
    print(f"  ceiling on {os.cpu_count()} cores for a pipeline that costs nothing itself: "
          f"{ceiling(measured):,.0f} msg/s with only the floor "
          f"({measured.floor_us:.0f} µs), {ceiling(measured, kafka_us):,.0f} msg/s "
          f"with Kafka as this run used it ({kafka_us:.0f} µs more)")  # fmt: skip


def check_sample(database: LegacyDatabaseSettings, hbase: HBaseSettings) -> None:
    reader = MariaDbMonolithReader(make_engine(database))
    store = HBaseReadStore(hbase)
    engine = make_engine(database)
    with engine.connect() as conn:
        rooms = [r for (r,) in conn.execute(text("SELECT DISTINCT room_id FROM messages"))]
    picked = random.Random(7).sample(rooms, min(25, len(rooms)))
    compared = 0
    for room in picked:
        expected = reader.read_range(room, 1, MAX_ID, 10_000_000).live[-200:]  # oldest first
        got = store.latest(room, 200)
        if got != expected:
            diff = next((i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b),
                        min(len(got), len(expected)))  # fmt: skip
            raise SystemExit(
                f"room {room}: the read model differs from the monolith at {diff} of "
                f"{len(got)}/{len(expected)}:\n  read model {got[diff] if diff < len(got) else None}"
                f"\n  monolith   {expected[diff] if diff < len(expected) else None}"
            )
        compared += len(got)
    store.close()
    print(
        f"  checked: the latest 200 messages of {len(picked)} random rooms ({compared:,} "
        "messages) equal the monolith's"
    )


# -- 3. latency ------------------------------------------------------------------------------


def latency(run: Run, rate: int, seconds: int, via_binlog: bool) -> None:
    label = "binlog" if via_binlog else "hinted"
    hbase = run.hbase(f"lat_{label}")
    names = run.topic_names(f"lat-{label}")
    asyncio.run(make_topics(run.kafka, names))
    with scratch_database(run.stack) as (database, engine):
        rooms = [9_000_001 + i for i in range(4)]
        with engine.begin() as conn:
            for room in rooms:
                conn.execute(text("INSERT INTO rooms (room_id, name, type, last_update_time) "
                                  "VALUES (:r, 'bench', 'group', 0)"), {"r": room})  # fmt: skip
        env = run.pipeline_env(names, hbase, database)
        env["MIG_CAPTURER_MAX_RECORDS"] = "500"
        env["MIG_UPDATER_MAX_RECORDS"] = "500"
        processes = [
            start("newcore.entrypoints.capturer", env, "MIG_CAPTURER_OPS_PORT", run.logs, label),
            start("newcore.entrypoints.updater", env, "MIG_UPDATER_OPS_PORT", run.logs, label),
        ]
        if via_binlog:
            binlog_module = "legacy_adapters.entrypoints.binlog_source"
            processes.append(start(binlog_module, env, "MIG_BINLOG_OPS_PORT", run.logs, label))
        try:
            committed, seen = measure(run, database, names["hints"], hbase, rooms, rate, seconds,
                                      send_hints=not via_binlog)  # fmt: skip
        finally:
            for process in processes:
                process.stop()
    delays = sorted(seen[k] - committed[k] for k in committed if k in seen)
    missing = len(committed) - len(delays)
    if missing:
        store = HBaseReadStore(hbase)
        unseen = sorted(k for k in committed if k not in seen)
        late = sum(1 for k in unseen if any(store.message(r, k) for r in rooms))
        store.close()
        print(f"  not seen by the observer: {missing} (ids {unseen[:5]}...), of which {late} are "
              "in HBase now")  # fmt: skip
    achieved = len(committed) / (max(committed.values()) - min(committed.values()) or 1)
    if not delays:
        raise SystemExit(f"latency ({label}): nothing became visible")
    q = statistics.quantiles(delays, n=100)
    path = "binlog source" if via_binlog else "writer's hints"
    print(
        f"latency via the {path}: {len(committed):,} writes at {achieved:,.0f}/s (asked "
        f"{rate}/s): p50 {q[49] * 1000:.0f} ms, p95 {q[94] * 1000:.0f} ms, "
        f"p99 {q[98] * 1000:.0f} ms, max {delays[-1] * 1000:.0f} ms; not visible: {missing}"
    )


def measure(
    run: Run, database: LegacyDatabaseSettings, hints_topic: str, hbase: HBaseSettings,
    rooms: list[int], rate: int, seconds: int, *, send_hints: bool,
) -> tuple[dict[int, float], dict[int, float]]:  # fmt: skip
    committed: dict[int, float] = {}
    seen: dict[int, float] = {}
    stop = threading.Event()

    def observe() -> None:
        store = HBaseReadStore(hbase)
        last = dict.fromkeys(rooms, 0)
        while not stop.is_set() or len(seen) < len(committed):
            for room in rooms:
                for message in store.after(room, last[room], 1000):
                    seen.setdefault(message.message_id, time.monotonic())
                    last[room] = max(last[room], message.message_id)
            time.sleep(0.005)
            if stop.is_set() and time.monotonic() > deadline:
                break
        store.close()

    async def write() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=run.kafka.bootstrap, acks="all",
                                    enable_idempotence=True, linger_ms=1)  # fmt: skip
        await producer.start()
        connection = pymysql.connect(
            host=database.mariadb_host, port=database.mariadb_port, user=database.db_user,
            password=database.db_password.get_secret_value(), database=database.db_name,
            autocommit=True, charset="utf8mb4",
        )  # fmt: skip
        cursor = connection.cursor()
        began = time.monotonic()
        n = 0
        try:
            with tqdm(total=rate * seconds, desc=f"writes at {rate}/s", unit="msg") as bar:
                while n < rate * seconds:
                    due = began + n / rate
                    if (wait := due - time.monotonic()) > 0:
                        await asyncio.sleep(wait)
                    room = rooms[n % len(rooms)]
                    cursor.execute(
                        "INSERT INTO messages (room_id, account_id, body, send_time, update_time, "
                        "created_at, deleted) VALUES (%s, 1, %s, UNIX_TIMESTAMP(), 0, NOW(), 0)",
                        (room, f"bench message {n} 😀"),
                    )
                    message_id = cursor.lastrowid
                    committed[message_id] = time.monotonic()
                    if send_hints:
                        await producer.send(
                            hints_topic, encode_hint(MessageHint(room, message_id)),
                            key=room.to_bytes(8, "big"), partition=partition_for(room, PARTITIONS),
                        )  # fmt: skip
                    n += 1
                    bar.update(1)
            await producer.flush()
        finally:
            await producer.stop()
            connection.close()

    deadline = float("inf")
    observer = threading.Thread(target=observe, daemon=True)
    observer.start()
    asyncio.run(write())
    deadline = time.monotonic() + 30
    stop.set()
    observer.join()
    return committed, seen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-rows", type=int, default=1_000_000,
                        help="rows the baseline puts (default: 1,000,000)")  # fmt: skip
    parser.add_argument("--rate", type=int, default=1000, help="writes/s of the latency phase")
    parser.add_argument("--seconds", type=int, default=30, help="length of each latency phase")
    parser.add_argument("--only", choices=["e2e", "latency"], help="run one part")
    args = parser.parse_args()
    if args.baseline_rows < 0 or args.rate < 1 or args.seconds < 1:
        parser.error("--rate and --seconds must be positive, --baseline-rows not negative")
    stack = Stack.from_env()
    logs = ROOT / ".state" / "bench"
    logs.mkdir(parents=True, exist_ok=True)
    run = Run(stack, KafkaSettings(bootstrap=stack.kafka_bootstrap), LegacyDatabaseSettings(), logs)
    print(f"bench run {run.run}; process logs in {logs}", flush=True)
    try:
        if args.only in (None, "e2e"):
            measured = baseline(run, args.baseline_rows) if args.baseline_rows else None
            run.cleanup()
            end_to_end(run, measured)
            run.cleanup()
        if args.only in (None, "latency"):
            latency(run, args.rate, args.seconds, via_binlog=False)
            latency(run, args.rate, args.seconds, via_binlog=True)
    finally:
        run.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
