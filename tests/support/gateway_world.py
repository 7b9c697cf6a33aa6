"""A whole live migration of a test's own on the real stack: the monolith stand-in on a scratch
database, the front door, `chat-gateway`, `chat-read-api`, `chat-binlog-source`,
`chat-capturer` and `chat-updater`, each a real process on free ports, with fresh topics, fresh
HBase tables and a scratch control store. Nothing here touches the shared stack's data: the
shared servers (MariaDB, Kafka, HBase) only host our scratch copies.

Used by tests/e2e and meant for the bench and later issues: `gateway_world(stack, logs)` builds
it, starts everything and tears it all down.

- The monolith is deploy/web.sh with a state dir, ports and database of its own (the script
  applies the schema; `mariadb.sh sql` finds the server through the shared state dir's
  `mariadb/`, linked into ours). Its nginx workers run as www-data: the state dir lives in a
  world-readable /tmp directory, not in pytest's (mode 0700).
- The binlog source reads the shared server's binlog filtered to the scratch database
  (`only_schemas`), so it sees our writes only.
- The gateway can reach Kafka through the shared relay port (`kafka_relay`: cut it and the
  gateway alone loses Kafka); the Read API always reaches HBase through a relay of its own
  (`hbase_relay`: cut it and the Read API alone loses HBase).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import random
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pymysql
import pymysql.cursors
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from gateway.adapters.mariadb.control_schema import control_engine, ensure_schema
from gateway.adapters.mariadb.phase_store import MariaDbPhaseStore
from legacy_adapters.adapters.mariadb.engine import make_engine
from legacy_adapters.settings import LegacyDatabaseSettings
from newcore.adapters.hbase.read_store import HBaseReadStore, drop_tables, ensure_tables
from newcore.domain.hints import RangeHint
from newcore.domain.model import MAX_ID
from newcore.settings import HBaseSettings, KafkaSettings
from newcore.wire.hints import encode_hint
from tests.support import topics
from tests.support.frontdoor import FrontDoor
from tests.support.monolith_world import MonolithWorld
from tests.support.processes import Service, free_port
from tests.support.relay_process import RelayProcess
from tests.support.scratch_db import scratch_database
from tests.support.stack import REPO, Stack, require_port

PARTITIONS = 4
ADMIN_TOKEN = "e2e-admin-token-" + "0123456789abcdef"
# deploy/pipeline.sh's NEW_SIDE_NICE.
NEW_SIDE_NICE = 10
CONTROL_DB_BASE = os.environ.get("MIG_CONTROL_DB_NAME", "migration_control")


def shared_state_dir() -> Path:
    return Path(os.environ.get("MIG_STATE_DIR", str(REPO / ".state")))


class PrivateMonolith:
    """The monolith stand-in (deploy/web.sh: nginx + PHP-FPM) on ports and a database of its
    own."""

    def __init__(
        self, state_dir: Path, db_name: str, stack: Stack, *, rate_limited: bool = False
    ) -> None:
        self.state_dir = state_dir
        self.db_name = db_name
        self.rate_limited = rate_limited
        self.port = free_port()
        self.limited_port = free_port()
        self._stack = stack

    @property
    def url(self) -> str:
        return f"http://{self._stack.host}:{self.port}"

    def script(self, command: str) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "MIG_STATE_DIR": str(self.state_dir),
            "MIG_MONOLITH_PORT": str(self.port),
            "MIG_MONOLITH_LIMITED_PORT": str(self.limited_port),
            "MIG_MARIADB_PORT": str(self._stack.mariadb_port),
            "MIG_DB_NAME": self.db_name,
            "MIG_MONOLITH_FPM_CHILDREN": "6",
            "MIG_MONOLITH_RATE_LIMIT": "on" if self.rate_limited else "off",
        }
        return subprocess.run(
            ["bash", str(REPO / "deploy" / "web.sh"), command],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    def start(self) -> PrivateMonolith:
        (self.state_dir / "mariadb").symlink_to(shared_state_dir() / "mariadb")
        done = self.script("start")
        assert done.returncode == 0, f"deploy/web.sh start: {done.stderr}"
        return self

    def stop(self) -> None:
        self.script("stop")


@dataclasses.dataclass(frozen=True)
class Metric:
    """One sample of a Prometheus metric."""

    name: str
    labels: dict[str, str]
    value: float


def metrics_of(text_format: str) -> list[Metric]:
    return [
        Metric(sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text_format)
        for sample in family.samples
    ]


class GatewayWorld:
    """Everything one e2e test runs, with handles to look at it and to break it."""

    def __init__(
        self,
        *,
        stack: Stack,
        run: str,
        dir: Path,
        logs: Path,
        database: LegacyDatabaseSettings,
        control_db: str,
        hbase: HBaseSettings,
        monolith: PrivateMonolith,
        kafka_relay: RelayProcess | None,
    ) -> None:
        self.stack = stack
        self.run = run
        self.dir = dir
        self.logs = logs
        self.database = database
        self.control_db = control_db
        self.hbase = hbase
        self.monolith = monolith
        self.kafka = KafkaSettings(bootstrap=stack.kafka_bootstrap)
        self.kafka_relay = kafka_relay
        self.hbase_relay = RelayProcess(stack.hbase_thrift_port)
        self.hbase_relay.start()
        self.topic_hints = f"e2e-{run}.hints"
        self.topic_events = f"e2e-{run}.events"
        self.topic_dead_letters = f"e2e-{run}.dead"
        self.gateway_port = free_port()
        self.admin_port = free_port()
        self.read_api_port = free_port()
        # The front door sends to our gateway, and falls back on our monolith.
        self.front_door = FrontDoor(
            dataclasses.replace(stack, monolith_port=monolith.port), dir, [self.gateway_port]
        )
        self.read_model = HBaseReadStore(hbase)
        self.control = MariaDbPhaseStore(control_engine(self._server(), control_db, pool_size=2))
        env = {
            **os.environ,
            "MIG_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
            "MIG_MARIADB_HOST": stack.host,
            "MIG_MARIADB_PORT": str(stack.mariadb_port),
            "MIG_DB_NAME": database.db_name,
            "MIG_DB_USER": stack.db_user,
            "MIG_DB_PASSWORD": stack.db_password,
            "MIG_HBASE_HOST": stack.host,
            "MIG_HBASE_THRIFT_PORT": str(stack.hbase_thrift_port),
            "MIG_HBASE_TABLE_PREFIX": hbase.table_prefix,
            "MIG_HBASE_TIMEOUT_MS": "3000",
            "MIG_TOPIC_HINTS": self.topic_hints,
            "MIG_TOPIC_EVENTS": self.topic_events,
            "MIG_TOPIC_DEAD_LETTERS": self.topic_dead_letters,
            "MIG_TOPIC_PARTITIONS": str(PARTITIONS),
            "MIG_BINLOG_CHECKPOINT_TOPIC": f"e2e-{run}.checkpoints",
            "MIG_BINLOG_TRANSACTIONAL_ID": f"e2e-{run}-binlog",
            "MIG_BINLOG_SERVER_ID": str(random.randrange(10_000, 4_000_000_000)),
            "MIG_BINLOG_BACKOFF_MS": "200",
            "MIG_BINLOG_MAX_BACKOFF_MS": "1000",
            "MIG_CAPTURER_TRANSACTIONAL_ID_PREFIX": f"e2e-{run}",
            "MIG_CAPTURER_GROUP": f"e2e-{run}-capturer",
            "MIG_UPDATER_GROUP": f"e2e-{run}-updater",
            "MIG_CONTROL_DB_NAME": control_db,
            "MIG_GATEWAY_PORT": str(self.gateway_port),
            "MIG_GATEWAY_ADMIN_PORT": str(self.admin_port),
            "MIG_GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN,
            "MIG_GATEWAY_UPSTREAM": monolith.url,
            "MIG_GATEWAY_ROOM_MAP": str(self.front_door.map_path),
            "MIG_GATEWAY_FRONTDOOR_PID": str(self.front_door.pid_path),
            "MIG_GATEWAY_CONTROL_POLL_S": "0.2",
            "MIG_SPOOL_DIR": str(dir / "spool"),
            "MIG_SPOOL_BACKOFF_MS": "100",
            "MIG_SPOOL_MAX_BACKOFF_MS": "1000",
            "MIG_SHADOW_READ_API": f"http://{stack.host}:{self.read_api_port}",
            "MIG_SHADOW_TIMEOUT_S": "2",
            "MIG_READ_API_PORT": str(self.read_api_port),
            "MIG_READ_API_SETTLE_S": "1",
        }
        self._env = env
        gateway_env = dict(env)
        if kafka_relay is not None:
            gateway_env["MIG_KAFKA_BOOTSTRAP"] = stack.kafka_relay_bootstrap
        read_api_env = {**env, "MIG_HBASE_THRIFT_PORT": str(self.hbase_relay.port)}

        def service(module: str, service_env: dict[str, str], ops_variable: str | None) -> Service:
            port = self.admin_port if ops_variable is None else free_port()
            if ops_variable is not None:
                service_env = {**service_env, ops_variable: str(port)}
            # The serving path (the gateway) at the normal priority, the new side below it, as
            # deploy/pipeline.sh runs them: its catch-up after an outage yields the cores.
            nice = 0 if ops_variable is None else NEW_SIDE_NICE
            return Service(module, service_env, logs, port, nice=nice)

        self.gateway = service("gateway.entrypoints.gateway", gateway_env, None)
        self.read_api = Service(
            "newcore.entrypoints.read_api", read_api_env, logs, self.read_api_port,
            nice=NEW_SIDE_NICE,
        )  # fmt: skip
        self.binlog = service(
            "legacy_adapters.entrypoints.binlog_source", env, "MIG_BINLOG_OPS_PORT"
        )
        self.capturer = service("newcore.entrypoints.capturer", env, "MIG_CAPTURER_OPS_PORT")
        self.updater = service("newcore.entrypoints.updater", env, "MIG_UPDATER_OPS_PORT")
        self.admin = httpx.Client(
            base_url=f"http://{stack.host}:{self.admin_port}", timeout=10.0,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )  # fmt: skip
        self._db = pymysql.connect(
            host=stack.host, port=stack.mariadb_port, user=stack.db_user,
            password=stack.db_password, database=database.db_name, charset="utf8mb4",
            autocommit=True,
            sql_mode="STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION",
        )  # fmt: skip
        # Rows written straight into the monolith's (scratch) database: its history.
        self.seed = MonolithWorld(self._db)

    @property
    def env(self) -> dict[str, str]:
        """The MIG_* environment of this world's processes (a copy): its scratch databases,
        topics, tables, control database and admin token, what `chat-migrate` needs to run
        against this world."""
        return dict(self._env)

    @contextlib.contextmanager
    def unlogged(self) -> Iterator[pymysql.connections.Connection[pymysql.cursors.Cursor]]:
        """A session on the monolith's scratch database whose writes never reach the binlog
        (`SET SESSION sql_log_bin = 0`), so nothing captures them: history written before
        capture began, or a row changed behind the pipeline's back. That needs a privilege the
        application's user lacks: the server's root over its socket, as `deploy/mariadb.sh
        sql` (which applies the monolith's schema) connects."""
        connection = pymysql.connect(
            unix_socket=str(shared_state_dir() / "mariadb" / "mysqld.sock"), user="root",
            database=self.database.db_name, charset="utf8mb4", autocommit=True,
            sql_mode="STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION",
        )  # fmt: skip
        try:
            with connection.cursor() as cursor:
                cursor.execute("SET SESSION sql_log_bin = 0")
            yield connection
        finally:
            connection.close()

    def _server(self) -> LegacyDatabaseSettings:
        return self.database.model_copy(update={"db_name": self.stack.db_name})

    @property
    def services(self) -> list[Service]:
        return [self.read_api, self.binlog, self.capturer, self.updater, self.gateway]

    # -- running -----------------------------------------------------------------------------

    def start(self) -> None:
        """The front door, then every process; returns when each answers healthy. The
        processes that do not use HBase start while the read model's tables are created (a
        JVM tool: seconds), the others after."""
        self.front_door.start()
        for process in (self.gateway, self.binlog, self.capturer):
            process.start()
        ensure_tables(self.hbase)
        for process in (self.read_api, self.updater):
            process.start()
        for process in self.services:
            self.until_healthy(process)

    def until_healthy(self, process: Service, seconds: float = 60) -> None:
        process.eventually(lambda: process.ops("/healthz")[0] == 200, "healthy", seconds)

    def close(self) -> None:
        for process in self.services:
            process.ensure_gone()
        self.admin.close()
        self.read_model.close()
        self.control.close()
        self.hbase_relay.cut()
        self.hbase_relay.close()
        with contextlib.suppress(AssertionError, subprocess.SubprocessError):
            self.front_door.stop()
        self._db.close()
        # The nginx logs (front door, monolith) outlive the world's folder, beside the others.
        for name, folder in (("frontdoor", self.dir / "frontdoor" / "logs"),
                             ("monolith", self.dir / "web" / "logs")):  # fmt: skip
            with contextlib.suppress(OSError):
                shutil.copytree(folder, self.logs / name, dirs_exist_ok=True)

    # -- looking -----------------------------------------------------------------------------

    def gateway_metrics(self) -> list[Metric]:
        status, body = self.gateway.ops("/metrics")
        assert status == 200, f"gateway /metrics answered {status}"
        return metrics_of(body.decode())

    def gateway_count(self, name: str, **labels: str) -> float:
        """The sum of a gateway counter's samples whose labels include `labels`."""
        return sum(
            m.value
            for m in self.gateway_metrics()
            if m.name == name and all(m.labels.get(k) == v for k, v in labels.items())
        )

    def spool(self) -> dict[str, Any]:
        answer = self.admin.get("/admin/spool")
        assert answer.status_code == 200, answer.text
        found: dict[str, Any] = answer.json()
        return found

    def monolith_rows(self, room_id: int) -> dict[int, tuple[str, int]]:
        """The room's live messages in the monolith: id -> (body, update_time)."""
        with self._db.cursor() as cursor:
            cursor.execute(
                "SELECT message_id, body, update_time FROM messages"
                " WHERE room_id = %s AND deleted = 0",
                (room_id,),
            )
            return {int(r[0]): (str(r[1]), int(r[2] or 0)) for r in cursor.fetchall()}

    def read_model_rows(self, room_id: int) -> dict[int, tuple[str, int]]:
        return {
            m.message_id: (m.body, m.update_time)
            for m in self.read_model.after(room_id, 0, 100_000)
        }

    def until(self, check: Callable[[], bool], what: str, seconds: float = 30) -> None:
        """Polls `check` until true; fails naming `what` and any process that died."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                if check():
                    return
            except Exception as exc:  # a service still coming back: ask again
                last: Exception | None = exc
            else:
                last = None
            for process in self.services:
                # Stopped on purpose exits 0 or by a signal; a positive code is a crash.
                if process.process is not None and (process.process.poll() or 0) > 0:
                    raise AssertionError(
                        f"{process.module} exited ({process.process.returncode}) before "
                        f"{what}:\n{process.log()[-3000:]}"
                    )
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {seconds} s: {what} (last error: {last!r})")
            time.sleep(0.1)

    def until_read_model_matches(self, rooms: Iterable[int], seconds: float = 30) -> None:
        """The read model holds exactly the monolith's live messages of each room."""
        for room in rooms:
            self.until(
                lambda room=room: self.read_model_rows(room) == self.monolith_rows(room),  # type: ignore[misc]
                f"the read model of room {room} matches the monolith",
                seconds,
            )

    # -- the migration's own jobs ------------------------------------------------------------

    def backfill(self, rooms: Iterable[int], who: str = "e2e backfill") -> None:
        """What the backfill job does for a room (range hints through the same pipe), then its
        mark in the control store once the read model holds the room's history."""
        chosen = list(rooms)
        records = [(room, encode_hint(RangeHint(room, 1, MAX_ID))) for room in chosen]
        asyncio.run(topics.append(self.kafka, self.topic_hints, PARTITIONS, records))
        self.until_read_model_matches(chosen)
        for room in chosen:
            self.control.mark_backfilled(room, who)


@contextlib.contextmanager
def gateway_world(
    stack: Stack, logs: Path, *, gateway_kafka_relayed: bool = False, rate_limited: bool = False
) -> Iterator[GatewayWorld]:
    """Builds the world (scratch databases, tables, private monolith), starts every process,
    yields it, and removes all of it. `gateway_kafka_relayed`: the gateway reaches Kafka
    through the shared relay port (one such world at a time). `rate_limited`: the monolith
    answers with the public API's rate limits on (its headers and 429)."""
    require_port("MariaDB", stack.host, stack.mariadb_port)
    require_port("Kafka", stack.host, stack.kafka_port)
    require_port("HBase Thrift", stack.host, stack.hbase_thrift_port)
    run = uuid.uuid4().hex[:10]
    folder = Path(tempfile.mkdtemp(prefix=f"chat-e2e-{run}-"))
    folder.chmod(0o755)
    logs.mkdir(parents=True, exist_ok=True)
    hbase = HBaseSettings(
        host=stack.host, thrift_port=stack.hbase_thrift_port, table_prefix=f"e2e_{run}"
    )
    kafka_relay: RelayProcess | None = None
    exits = contextlib.ExitStack()
    try:
        database, _ = exits.enter_context(scratch_database(stack))
        server = database.model_copy(update={"db_name": stack.db_name})
        control_db = f"{CONTROL_DB_BASE}_test_{run}"
        admin = make_engine(server, pool_size=1)
        exits.callback(admin.dispose)
        with admin.begin() as conn:
            conn.execute(text(f"CREATE DATABASE `{control_db}` CHARACTER SET utf8mb4"))

        def drop_control() -> None:
            with admin.begin() as conn:
                conn.execute(text(f"DROP DATABASE IF EXISTS `{control_db}`"))

        exits.callback(drop_control)
        control = control_engine(server, control_db, pool_size=1)
        ensure_schema(control)
        control.dispose()
        exits.callback(drop_tables, hbase)  # made by world.start()
        monolith = PrivateMonolith(
            folder, database.db_name, stack, rate_limited=rate_limited
        ).start()
        exits.callback(monolith.stop)
        if gateway_kafka_relayed:
            require_port("Kafka's relayed listener", stack.host, stack.kafka_relayed_port)
            kafka_relay = RelayProcess(stack.kafka_relayed_port, port=stack.kafka_relay_port)
            exits.callback(kafka_relay.close)
            kafka_relay.start()
            exits.callback(kafka_relay.cut)
        world = GatewayWorld(
            stack=stack, run=run, dir=folder, logs=logs, database=database,
            control_db=control_db, hbase=hbase, monolith=monolith, kafka_relay=kafka_relay,
        )  # fmt: skip
        exits.callback(world.close)
        world.start()
        yield world
    finally:
        exits.close()
        shutil.rmtree(folder, ignore_errors=True)
