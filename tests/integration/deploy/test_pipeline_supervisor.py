"""`make pipeline` (deploy/stack.sh pipeline): the capture pipeline under supervisord, started
again when a program dies, shown with its health by `deploy/stack.sh status` (issue 11, 8c).

The pipeline started here runs beside any the demo runs: its own supervisord (MIG_PIPELINE_DIR),
ops ports, topics, consumer groups, transactional ids, replica server id and HBase tables. A
demo pipeline is neither stopped nor fenced, and the demo's topics and tables are not touched.
The services must be up (`make up`); one that does not answer fails the test.
"""

from __future__ import annotations

import asyncio
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

import happybase
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from tests.support.processes import free_port
from tests.support.stack import REPO, require_port

pytestmark = pytest.mark.services

DEPLOY = REPO / "deploy"
HOST = "127.0.0.1"
PROGRAMS = ("binlog-source", "capturer", "updater", "read-api", "gateway")
SERVICES = {  # the parts `stack.sh pipeline` would otherwise start itself, and their ports
    "MariaDB": ("MIG_MARIADB_PORT", 3306),
    "the monolith (nginx)": ("MIG_MONOLITH_PORT", 8080),
    "Kafka": ("MIG_KAFKA_PORT", 9092),
    "HBase Thrift": ("MIG_HBASE_THRIFT_PORT", 9090),
}


def port_of(name: str, default: int) -> int:
    return int(os.environ.get(name, str(default)))


def require_services() -> None:
    """Fail (not skip) naming the service: `stack.sh pipeline` would start a missing one, and
    the test would then pass without the stack having been up."""
    for service, (variable, default) in SERVICES.items():
        require_port(service, HOST, port_of(variable, default))


def alive(pid: int) -> bool:
    """A process that exists and is no zombie (one that exited, not yet reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@dataclass
class Pipeline:
    env: dict[str, str]
    directory: Path
    ops_ports: dict[str, int]
    topic_prefix: str
    table_prefix: str

    def script(
        self, name: str, *args: str, timeout: float = 120, **env: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(DEPLOY / name), *args], env={**self.env, **env},
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip

    def pid(self, program: str) -> int:
        """The program's pid as supervisord knows it (0: not running)."""
        answer = subprocess.run(
            ["supervisorctl", "-c", str(self.directory / "supervisord.conf"), "pid", program],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        out = answer.stdout.strip()
        return int(out) if out.isdigit() else 0

    def health(self, program: str) -> tuple[int, bytes]:
        url = f"http://{HOST}:{self.ops_ports[program]}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=3) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()
        except OSError:
            return 0, b""

    def log(self, program: str) -> str:
        path = self.directory / f"{program}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else "(no log)"


@pytest.fixture
def pipeline() -> Iterator[Pipeline]:
    require_services()
    run = uuid.uuid4().hex[:8]
    # Short: supervisord's unix socket lives here, and a socket path holds at most 107 bytes.
    directory = Path(tempfile.mkdtemp(prefix=f"pipeline-{run}-"))
    ops_ports = {program: free_port() for program in PROGRAMS}
    topic, table = f"test-{run}", f"test_{run}"
    env = {
        **os.environ,
        "MIG_PIPELINE_DIR": str(directory),
        "MIG_BINLOG_OPS_PORT": str(ops_ports["binlog-source"]),
        "MIG_CAPTURER_OPS_PORT": str(ops_ports["capturer"]),
        "MIG_UPDATER_OPS_PORT": str(ops_ports["updater"]),
        # The Read API answers its /healthz on its own port, the gateway on its admin port.
        "MIG_READ_API_PORT": str(ops_ports["read-api"]),
        "MIG_GATEWAY_ADMIN_PORT": str(ops_ports["gateway"]),
        "MIG_GATEWAY_PORT": str(free_port()),
        "MIG_GATEWAY_PORTS": "",
        "MIG_SPOOL_DIR": str(directory / "spool"),
        # A room map of its own, and no front door to tell (the shared one is not ours).
        "MIG_GATEWAY_ROOM_MAP": str(directory / "room_map.conf"),
        "MIG_GATEWAY_FRONTDOOR_PID": str(directory / "no-front-door.pid"),
        "MIG_TOPIC_HINTS": f"{topic}.hints",
        "MIG_TOPIC_EVENTS": f"{topic}.events",
        "MIG_TOPIC_DEAD_LETTERS": f"{topic}.dead",
        "MIG_TOPIC_PARTITIONS": "2",
        "MIG_BINLOG_CHECKPOINT_TOPIC": f"{topic}.checkpoints",
        "MIG_BINLOG_TRANSACTIONAL_ID": topic,
        "MIG_BINLOG_SERVER_ID": str(random.randint(100_000, 2**31)),
        "MIG_CAPTURER_TRANSACTIONAL_ID_PREFIX": topic,
        "MIG_CAPTURER_GROUP": f"{topic}-capturer",
        "MIG_UPDATER_GROUP": f"{topic}-updater",
        "MIG_HBASE_TABLE_PREFIX": table,
    }
    pipeline = Pipeline(env, directory, ops_ports, topic, table)
    with contextlib.ExitStack() as cleanup:  # every step runs, last registered first
        cleanup.callback(shutil.rmtree, directory, ignore_errors=True)
        cleanup.callback(drop_tables, table)
        cleanup.callback(lambda: asyncio.run(delete_topics(topic)))
        cleanup.callback(pipeline.script, "stack.sh", "pipeline-stop", timeout=90)
        yield pipeline


def kafka_bootstrap() -> str:
    return f"{HOST}:{port_of('MIG_KAFKA_PORT', 9092)}"


async def topics_named(prefix: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap())
    await admin.start()
    try:
        return {name for name in await admin.list_topics() if name.startswith(f"{prefix}.")}
    finally:
        await admin.close()


async def delete_topics(prefix: str) -> None:
    names = await topics_named(prefix)
    if names:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap())
        await admin.start()
        try:
            await admin.delete_topics(sorted(names))
        finally:
            await admin.close()


def tables_named(prefix: str) -> set[str]:
    connection = happybase.Connection(HOST, port_of("MIG_HBASE_THRIFT_PORT", 9090))
    try:
        names = {name.decode() for name in connection.tables()}
    finally:
        connection.close()
    return {name for name in names if name.startswith(f"{prefix}_")}


def drop_tables(prefix: str) -> None:
    connection = happybase.Connection(HOST, port_of("MIG_HBASE_THRIFT_PORT", 9090))
    try:
        for name in tables_named(prefix):
            connection.delete_table(name, disable=True)
    finally:
        connection.close()


def wait_healthy(pipeline: Pipeline, programs: tuple[str, ...], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not all(pipeline.health(p)[0] == 200 for p in programs):
        if time.monotonic() > deadline:
            report = "\n".join(
                f"{p}: {pipeline.health(p)}\n{pipeline.log(p)}" for p in programs
            )  # fmt: skip
            pytest.fail(f"not healthy within {seconds} s:\n{report}")
        time.sleep(0.2)


def status_lines(pipeline: Pipeline, script: str = "stack.sh") -> dict[str, str]:
    """The status line of each pipeline program (`make status` runs `stack.sh status`, which
    runs `pipeline.sh status` after the services')."""
    status = pipeline.script(script, "status", timeout=60)
    assert status.returncode == 0, status.stderr
    lines = {
        p: [ln for ln in status.stdout.splitlines() if ln.split()[:1] == [p]] for p in PROGRAMS
    }
    assert all(len(found) == 1 for found in lines.values()), status.stdout
    return {p: found[0] for p, found in lines.items()}


def test_pipeline_runs_supervised_restarts_a_killed_program_and_reports_health(
    pipeline: Pipeline,
) -> None:
    started = pipeline.script("stack.sh", "pipeline")
    assert started.returncode == 0, started.stderr[-3000:]
    wait_healthy(pipeline, PROGRAMS, 30)
    # Its own topics and tables, not the demo's: the settings reached the programs.
    assert asyncio.run(topics_named(pipeline.topic_prefix)) >= {
        f"{pipeline.topic_prefix}.{name}" for name in ("hints", "events", "dead", "checkpoints")
    }
    assert tables_named(pipeline.table_prefix)
    pids = {p: pipeline.pid(p) for p in PROGRAMS}
    assert all(pids.values()), pids

    again = pipeline.script("pipeline.sh", "start")  # a second start starts nothing new
    assert again.returncode == 0, again.stderr[-3000:]
    assert {p: pipeline.pid(p) for p in PROGRAMS} == pids

    killed, others = "binlog-source", ("capturer", "updater")
    os.kill(pids[killed], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while pipeline.pid(killed) in (0, pids[killed]):
        assert time.monotonic() < deadline, f"supervisord did not start the {killed} again"
        time.sleep(0.2)
    wait_healthy(pipeline, PROGRAMS, 45)
    restarted = {p: pipeline.pid(p) for p in PROGRAMS}
    assert restarted[killed] not in (0, pids[killed])
    assert {p: restarted[p] for p in others} == {p: pids[p] for p in others}

    lines = status_lines(pipeline)
    for program, line in lines.items():
        assert "RUNNING" in line, line
        assert f"pid {restarted[program]} " in line, line
        assert f":{pipeline.ops_ports[program]} " in line, line
        assert "health ok" in line, line
        assert str(pipeline.directory / f"{program}.log") in line, line

    stopped = pipeline.script("stack.sh", "pipeline-stop", timeout=90)
    assert stopped.returncode == 0, stopped.stderr
    assert not [pid for pid in restarted.values() if alive(pid)]
    assert all(pipeline.health(p)[0] == 0 for p in PROGRAMS)
    status = pipeline.script("stack.sh", "status", timeout=60)
    assert "pipeline  not started (make pipeline)" in status.stdout, status.stdout


def test_status_shows_what_an_unhealthy_program_answers(pipeline: Pipeline) -> None:
    """The programs told to find Kafka where nothing listens stay up and answer 503 (they wait
    for Kafka); `start` gives up after MIG_PIPELINE_READY_TIMEOUT naming them, and status
    shows each 503's body. The gateway and the Read API need no Kafka to serve (the gateway's
    spool holds its hints): they stay healthy."""
    nowhere = f"{HOST}:{free_port()}"
    started = pipeline.script(
        "pipeline.sh", "start", MIG_KAFKA_BOOTSTRAP=nowhere, MIG_PIPELINE_READY_TIMEOUT="1"
    )
    assert started.returncode != 0
    assert "not healthy within 1s" in started.stderr, started.stderr
    deadline = (
        time.monotonic() + 60
    )  # each opens its ops endpoint once its imports are done (five programs on two cores)
    waiting = ("binlog-source", "capturer", "updater")
    lines = status_lines(pipeline, "pipeline.sh")
    while not all(" health 503 {" in lines[p] for p in waiting) or not all(
        " health ok " in lines[p] for p in ("read-api", "gateway")
    ):
        assert time.monotonic() < deadline, "\n".join(lines.values())
        time.sleep(0.5)
        lines = status_lines(pipeline, "pipeline.sh")
    for program in waiting:
        line = lines[program]
        assert "RUNNING" in line, line
        body = line.split(" health 503 ", 1)[1].rsplit("  log ", 1)[0]
        assert json.loads(body)["ok"] is False, line
        assert f"pid {pipeline.pid(program)} " in line, line
    stopped = pipeline.script("stack.sh", "pipeline-stop", timeout=90)
    assert stopped.returncode == 0, stopped.stderr
