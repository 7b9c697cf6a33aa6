"""`make pipeline ENGINE=embedded` (deploy/stack.sh pipeline with MIG_ENGINE=embedded): the
pipeline's programs under supervisord on the embedded files, with no Kafka and no HBase (their
ports point where nothing listens, so a program that needed one could not get healthy).

Writes made in the monolith's database (a scratch database of this test, through MariaDB, as
the monolith makes them) reach the read model: the binlog source appends hints and its
checkpoint to the embedded topics, the capturer reads the rows and appends events, the updater
applies them to the SQLite read model, and the Read API answers them, each a process of its own
on one directory. A capturer and an updater killed -9 are started again by supervisord and the
next writes converge too.

Runs beside the shared stack: its own supervisord (MIG_PIPELINE_DIR), ops ports, embedded
directory, binlog replica id and scratch database. MariaDB and the monolith must be up.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pymysql
import pytest

from tests.support.monolith_world import Member, MonolithWorld
from tests.support.processes import free_port
from tests.support.scratch_db import scratch_database
from tests.support.stack import REPO, Stack, require_port

pytestmark = pytest.mark.services

DEPLOY = REPO / "deploy"
HOST = "127.0.0.1"
PROGRAMS = ("binlog-source", "capturer", "updater", "read-api", "gateway")


@dataclass
class Embedded:
    env: dict[str, str]
    directory: Path
    embedded_dir: Path
    ops_ports: dict[str, int]
    db: pymysql.connections.Connection[pymysql.cursors.Cursor]
    world: MonolithWorld

    def script(
        self, name: str, *args: str, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(DEPLOY / name), *args], env=self.env, capture_output=True, text=True,
            timeout=timeout, check=False,
        )  # fmt: skip

    def pid(self, program: str) -> int:
        answer = subprocess.run(
            ["supervisorctl", "-c", str(self.directory / "supervisord.conf"), "pid", program],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        out = answer.stdout.strip()
        return int(out) if out.isdigit() else 0

    def log(self, program: str) -> str:
        path = self.directory / f"{program}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else "(no log)"

    def read_api(self, room: int, member: Member) -> list[tuple[int, str]]:
        """The room's latest messages as the Read API answers them (force=1)."""
        request = urllib.request.Request(
            f"http://{HOST}:{self.ops_ports['read-api']}/v2/rooms/{room}/messages?force=1",
            headers={"X-ChatWorkToken": member.token},
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                body = answer.read()
        except urllib.error.HTTPError as error:
            if error.code == 204:
                return []
            raise
        return [(int(m["message_id"]), m["body"]) for m in json.loads(body or b"[]")]

    def monolith(self, room: int) -> list[tuple[int, str]]:
        """The room's live messages in the monolith, oldest first (at most the latest 100)."""
        with self.db.cursor() as cursor:
            cursor.execute(
                "SELECT message_id, body FROM messages WHERE room_id = %s AND deleted = 0"
                " ORDER BY message_id DESC LIMIT 100",
                (room,),
            )
            return [(int(r[0]), str(r[1])) for r in reversed(cursor.fetchall())]

    def converges(self, room: int, member: Member, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while True:
            try:
                seen = self.read_api(room, member)
            except OSError as exc:  # a program being restarted
                seen = [(-1, repr(exc))]
            if seen == self.monolith(room):
                return
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {p}\n{self.log(p)}" for p in PROGRAMS[:3])
                pytest.fail(
                    f"the Read API answers {seen[-3:]}, the monolith {self.monolith(room)[-3:]}\n{logs}"
                )
            time.sleep(0.2)


@pytest.fixture
def embedded(stack: Stack) -> Iterator[Embedded]:
    require_port("MariaDB", stack.host, stack.mariadb_port)
    require_port("the monolith (nginx)", stack.host, stack.monolith_port)
    run = uuid.uuid4().hex[:8]
    # Short: supervisord's unix socket lives here, and a socket path holds at most 107 bytes.
    directory = Path(tempfile.mkdtemp(prefix=f"emb-{run}-"))
    ops_ports = {program: free_port() for program in PROGRAMS}
    nowhere = free_port()  # Kafka and HBase "are" here: nothing listens
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, directory, ignore_errors=True)
        database, _ = cleanup.enter_context(scratch_database(stack))
        connection = pymysql.connect(
            host=stack.host, port=stack.mariadb_port, user=stack.db_user,
            password=stack.db_password, database=database.db_name, charset="utf8mb4",
            autocommit=True,
        )  # fmt: skip
        cleanup.callback(connection.close)
        env = {
            **os.environ,
            "MIG_ENGINE": "embedded",
            "MIG_EMBEDDED_DIR": str(directory / "embedded"),
            "MIG_PIPELINE_DIR": str(directory),
            "MIG_DB_NAME": database.db_name,
            "MIG_KAFKA_PORT": str(nowhere),
            "MIG_KAFKA_BOOTSTRAP": f"{HOST}:{nowhere}",
            "MIG_HBASE_THRIFT_PORT": str(nowhere),
            "MIG_BINLOG_OPS_PORT": str(ops_ports["binlog-source"]),
            "MIG_CAPTURER_OPS_PORT": str(ops_ports["capturer"]),
            "MIG_UPDATER_OPS_PORT": str(ops_ports["updater"]),
            "MIG_READ_API_PORT": str(ops_ports["read-api"]),
            "MIG_GATEWAY_ADMIN_PORT": str(ops_ports["gateway"]),
            "MIG_GATEWAY_PORT": str(free_port()),
            "MIG_GATEWAY_PORTS": "",
            "MIG_SPOOL_DIR": str(directory / "spool"),
            "MIG_GATEWAY_ROOM_MAP": str(directory / "room_map.conf"),
            "MIG_GATEWAY_FRONTDOOR_PID": str(directory / "no-front-door.pid"),
            "MIG_TOPIC_PARTITIONS": "2",
            "MIG_BINLOG_SERVER_ID": str(random.randint(100_000, 2**31)),
            "MIG_BINLOG_BACKOFF_MS": "100",
            "MIG_BINLOG_MAX_BACKOFF_MS": "500",
        }
        embedded = Embedded(
            env, directory, directory / "embedded", ops_ports, connection,
            MonolithWorld(connection),
        )  # fmt: skip
        cleanup.callback(embedded.script, "stack.sh", "pipeline-stop", timeout=90)
        yield embedded


def test_make_pipeline_engine_embedded_runs_the_pipeline_without_kafka_or_hbase(
    embedded: Embedded,
) -> None:
    started = embedded.script("stack.sh", "pipeline")
    assert started.returncode == 0, started.stderr[-3000:]
    assert "engine: embedded" in started.stderr
    status = embedded.script("stack.sh", "status", timeout=60)
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith("engine    embedded"), status.stdout
    assert f"engine embedded {embedded.embedded_dir} " in status.stdout, status.stdout
    assert "kafka " not in status.stdout and "hbase " not in status.stdout, status.stdout
    for program in PROGRAMS:
        line = next(ln for ln in status.stdout.splitlines() if ln.split()[:1] == [program])
        assert "RUNNING" in line and "health ok" in line, line

    world = embedded.world
    member = world.account("埋め込み テスト")
    room = world.room(member)
    ids = world.messages(room, member.account_id, [f"本文 {i} 😀 [To:1]" for i in range(12)])
    world.execute(
        "UPDATE messages SET body = 'edited', update_time = 1700000100 WHERE message_id = %s",
        (ids[3],),
    )
    world.execute("UPDATE messages SET deleted = 1 WHERE message_id = %s", (ids[5],))
    embedded.converges(room, member)
    assert (embedded.embedded_dir / "read-model.sqlite").exists()
    assert (embedded.embedded_dir / "log" / "topics.json").exists()

    # A capturer and an updater killed -9: supervisord starts them again (each takes its
    # group's membership over), and what is written next converges too.
    pids = {p: embedded.pid(p) for p in ("capturer", "updater")}
    for pid in pids.values():
        os.kill(pid, signal.SIGKILL)
    more = world.messages(room, member.account_id, [f"after the kill {i}" for i in range(5)])
    world.execute(
        "UPDATE messages SET body = 'edited again', update_time = 1700000200 WHERE message_id = %s",
        (more[0],),
    )
    embedded.converges(room, member, seconds=45)
    assert all(embedded.pid(p) not in (0, pid) for p, pid in pids.items())

    stopped = embedded.script("stack.sh", "pipeline-stop", timeout=90)
    assert stopped.returncode == 0, stopped.stderr


@pytest.mark.parametrize("command", ["up", "pipeline", "status"])
def test_a_bad_engine_is_refused_before_anything_starts(tmp_path: Path, command: str) -> None:
    """`make up ENGINE=kafka` (a typo): refused naming the setting and the two engines, exit
    non-zero, nothing installed or started (the state dir stays empty)."""
    env = {**os.environ, "MIG_ENGINE": "kafka", "MIG_STATE_DIR": str(tmp_path / "state")}
    done = subprocess.run(
        ["bash", str(DEPLOY / "stack.sh"), command], env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert "MIG_ENGINE=kafka must be kafka-hbase" in done.stderr and "embedded" in done.stderr
    assert not (tmp_path / "state").exists()
