"""The gateway's figures (issue 12), each beside its baseline measured in the same run.

Load: wrk on this machine, one thread, at 1 and 10 connections, for a fixed time after a short
warm-up, with bench/gateway.lua: over many seeded rooms (a member's token each), 45 % GET
/v2/rooms/{room}/messages?force=1, 45 % GET /v2/rooms/{room}/messages/{id}, 10 % POST
/v2/rooms/{room}/messages (a form body). Scenarios, in this order:

1. direct: the monolith (nginx + PHP-FPM + MariaDB) itself.
2. bare mitmproxy: the gateway's lean master (`lean_master`: core, proxyserver, next_layer,
   errorcheck, reverse mode, uvloop) with no addon of ours, in a process of its own; asked
   directly, then through a front door of the bench's own that sends the rooms to it.
3. legacy: the rooms through the front door (not in its room map): straight to the monolith.
4. dual_write through the front door and one `chat-gateway` process.
5. shadow_read through the front door and one gateway (the rooms backfilled first).
6. shadow_read and dual_write with two gateway processes behind the front door.
7. shadow comparisons (from the gateways' /metrics): outcomes, and the lag to the verdict.
8. the gateways' resident memory, sampled during load: peak and at the end of each run.

The bench starts everything it measures on ports and state of its own (.state/bench/gateway-*):
a front door (deploy/frontdoor.sh), a control store database (`migration_control_test_bench_*`),
topics, HBase tables, and the capture pipeline the shadow reads need (chat-binlog-source,
chat-capturer, chat-updater, chat-read-api); it removes them at the end. The rooms' messages
written during the run stay in the monolith (about 10 % of the requests are posts).

Run: `.venv/bin/python -m bench.gateway` (`--help`). Figures go to .state/bench/gateway.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, text

from bench.pipeline import Process, Run, make_topics, produce, start
from legacy_adapters.adapters.mariadb.engine import make_engine
from legacy_adapters.adapters.mariadb.monolith_reader import MariaDbMonolithReader
from legacy_adapters.settings import LegacyDatabaseSettings
from newcore.adapters.hbase.read_store import HBaseReadStore
from newcore.domain.hints import RangeHint
from newcore.domain.model import MAX_ID
from newcore.settings import HBaseSettings, KafkaSettings
from newcore.wire.hints import encode_hint
from tests.support.frontdoor import FrontDoor
from tests.support.processes import free_port
from tests.support.stack import REPO, Stack

LUA = REPO / "bench" / "gateway.lua"
BENCH_STATE = REPO / ".state" / "bench"
RANGE_ROWS = 1000
# Goals of issue 12: the front door in legacy passes >= 0.95 of direct and adds <= 0.2 ms at
# p50, <= 1 ms at p99; the gateway in dual_write and shadow_read passes >= 0.90 of a bare
# mitmproxy.
FRONTDOOR_RATIO, FRONTDOOR_P50_MS, FRONTDOOR_P99_MS = 0.95, 0.2, 1.0
GATEWAY_RATIO = 0.90


# -- the rooms -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchRoom:
    room_id: int
    token: str  # of a member who may post
    message_ids: tuple[int, ...]  # live messages, for GET .../messages/{id}


def pick_rooms(engine: Engine, count: int, seed: int) -> list[BenchRoom]:
    """`count` seeded rooms of 200 to 3,000 messages (full pages, a cheap backfill), each
    with the token of a member who may post and 20 of its latest live messages."""
    with engine.connect() as conn:
        sized = [r for (r,) in conn.execute(text(
            "SELECT room_id FROM messages GROUP BY room_id "
            "HAVING COUNT(*) BETWEEN 200 AND 3000 ORDER BY room_id"))]  # fmt: skip
        rng = random.Random(seed)
        rng.shuffle(sized)
        picked: list[BenchRoom] = []
        for room in sized:
            token = conn.execute(text(
                "SELECT t.token FROM room_members rm JOIN api_tokens t USING (account_id) "
                "WHERE rm.room_id = :r AND rm.role <> 'readonly' ORDER BY t.token LIMIT 1"),
                {"r": room}).scalar()  # fmt: skip
            if token is None:
                continue
            ids = [i for (i,) in conn.execute(text(
                "SELECT message_id FROM messages WHERE room_id = :r AND deleted = 0 "
                "ORDER BY message_id DESC LIMIT 100"), {"r": room})]  # fmt: skip
            picked.append(BenchRoom(room, str(token), tuple(rng.sample(ids, min(20, len(ids))))))
            if len(picked) == count:
                break
    if len(picked) < count:
        raise SystemExit(f"only {len(picked)} rooms fit (of {count}): is the data set seeded?")
    return picked


def write_rooms_file(rooms: list[BenchRoom], path: Path) -> None:
    path.write_text("".join(
        f"{r.room_id} {r.token} {' '.join(map(str, r.message_ids))}\n" for r in rooms))  # fmt: skip


# -- wrk and what is sampled beside it -------------------------------------------------------


@dataclass
class Figures:
    connections: int
    requests: int
    seconds: float
    rps: float
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: dict[str, int]  # wrk's: connect, read, write, status (>= 400), timeout
    rss_mib: dict[str, dict[str, float]] = field(default_factory=dict)  # process: peak, end
    load_before: float = 0.0  # the machine's 1-minute load average when the run began


@dataclass(frozen=True)
class Load:
    seconds: int
    warmup: int
    connections: tuple[int, ...]
    write_share: float
    seed: int
    rooms_file: Path


def rss_mib(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class RssSampler:
    """VmRSS of some processes every 0.2 s while a run lasts: the peak and the last sample."""

    def __init__(self, pids: dict[str, int]) -> None:
        self._pids = pids
        self._stop = threading.Event()
        self.peak = dict.fromkeys(pids, 0.0)
        self.last = dict.fromkeys(pids, 0.0)
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            for name, pid in self._pids.items():
                self.last[name] = rss_mib(pid)
                self.peak[name] = max(self.peak[name], self.last[name])
            if self._stop.wait(0.2):
                return

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def figures(self) -> dict[str, dict[str, float]]:
        return {n: {"peak": round(self.peak[n], 1), "end": round(self.last[n], 1)}
                for n in self._pids}  # fmt: skip


def wrk(url: str, connections: int, seconds: int, load: Load) -> dict[str, Any]:
    """One wrk run with the mix; the figures bench/gateway.lua's done() prints."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s",
               "-s", str(LUA), url, "--", str(load.rooms_file), str(load.write_share),
               str(load.seed)]  # fmt: skip
    done = subprocess.run(  # noqa: S603 (wrk, with our arguments)
        command, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    for line in done.stdout.splitlines():
        if line.startswith("WRK_JSON "):
            figures: dict[str, Any] = json.loads(line.removeprefix("WRK_JSON "))
            return figures
    raise SystemExit(f"wrk gave no figures (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")


def measure(
    label: str,
    url: str,
    load: Load,
    watch: dict[str, int] | None = None,
    warmed: Callable[[], None] | None = None,
) -> dict[int, Figures]:
    """A warm-up, then the timed run, at each number of connections. `warmed` is called
    between the two (to take a snapshot of metrics that excludes the warm-up)."""
    out: dict[int, Figures] = {}
    for c in load.connections:
        wrk(url, c, load.warmup, load)
        if warmed is not None:
            warmed()
        before = os.getloadavg()[0]
        with RssSampler(watch or {}) as rss:
            raw = wrk(url, c, load.seconds, load)
        lat = raw["latency_us"]
        seconds = raw["duration_us"] / 1e6
        out[c] = Figures(
            connections=c, requests=raw["requests"], seconds=round(seconds, 2),
            rps=round(raw["requests"] / seconds, 1), mean_ms=round(lat["mean"] / 1000, 3),
            p50_ms=lat["p50"] / 1000, p90_ms=lat["p90"] / 1000, p99_ms=lat["p99"] / 1000,
            max_ms=lat["max"] / 1000, errors=raw["errors"], rss_mib=rss.figures(),
            load_before=round(before, 2),
        )  # fmt: skip
        f = out[c]
        bad = {k: v for k, v in f.errors.items() if v}
        print(f"  {label:<40} c={c:<3} {f.rps:>9,.0f} req/s  p50 {f.p50_ms:6.2f} ms  "
              f"p99 {f.p99_ms:7.2f} ms  load {before:.1f}"
              + (f"  ERRORS {bad}" if bad else ""), flush=True)  # fmt: skip
    return out


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]  # (name, labels) -> value


# -- processes -------------------------------------------------------------------------------


def serve_bare_mitmproxy(upstream: str, port: int) -> None:
    """The baseline proxy: the gateway's own lean master, on uvloop, with no addon of ours.
    `lean_master` sets the option `chat_upstream`, which only our UpstreamOnly addon declares;
    with no addon of ours mitmproxy refuses it, so an addon that declares that option and has
    no hook (nothing runs per request) stands in when needed."""
    import uvloop
    from mitmproxy.addonmanager import Loader

    from gateway.entrypoints.master import lean_master

    class DeclaresUpstreamOption:
        def load(self, loader: Loader) -> None:
            loader.add_option("chat_upstream", str, "", "unused by the bare baseline")

    async def run() -> None:
        try:
            master = lean_master(upstream, "127.0.0.1", port, [])
        except KeyError:
            master = lean_master(upstream, "127.0.0.1", port, [DeclaresUpstreamOption()])
        await master.run()

    uvloop.install()
    asyncio.run(run())


@dataclass
class Child:
    """A process of the bench's own that listens on `port` (no ops endpoint)."""

    name: str
    popen: subprocess.Popen[bytes]
    port: int

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)


def answers(port: int) -> bool:
    """Whether something answers HTTP on the port (the monolith's 401 for /v2/me counts)."""
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/me", timeout=2).close()
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True


def start_bare_mitmproxy(upstream: str, logs: Path) -> Child:
    port = free_port()
    log = (logs / "bare-mitmproxy.log").open("wb")
    popen = subprocess.Popen(  # noqa: S603 (this module, with sys.executable)
        [sys.executable, "-m", "bench.gateway", "--serve-bare-mitmproxy", str(port),
         "--upstream", upstream], cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    log.close()
    deadline = time.monotonic() + 30
    while not answers(port):
        if popen.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(
                f"bare mitmproxy did not answer on {port}: see {logs}/bare-mitmproxy.log"
            )
        time.sleep(0.2)
    return Child("bare mitmproxy", popen, port)


def scrape(port: int) -> Samples:
    """Every sample of a /metrics page: (name, sorted labels) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        page = answer.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(page) for s in family.samples}  # fmt: skip


def total(samples: Samples, name: str,
          **labels: str) -> float:  # fmt: skip
    return sum(v for (n, ls), v in samples.items()
               if n == name and all((k, want) in ls for k, want in labels.items()))  # fmt: skip


def quantile(buckets: dict[float, float], q: float) -> float | None:
    """Prometheus's histogram_quantile over cumulative bucket counts (upper bound -> count):
    linear within the bucket; None with no observation; the last finite bound if it lies in
    +Inf."""
    bounds = sorted(buckets)
    count = buckets[bounds[-1]] if bounds else 0.0
    if count <= 0:
        return None
    rank, lower, below = q * count, 0.0, 0.0
    for bound in bounds:
        if buckets[bound] >= rank:
            if bound == float("inf"):
                return lower
            inside = buckets[bound] - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 0.0)
        lower, below = bound, buckets[bound]
    return lower


@dataclass
class Gateway:
    process: Process
    port: int
    admin_port: int


class Bench:
    """What the run started, so that everything is stopped and removed at the end."""

    def __init__(self, stack: Stack, load: Load, state: Path, token: str, *,
                 binlog: bool) -> None:  # fmt: skip
        self.stack = stack
        self.load = load
        self.state = state
        self.token = token
        self.binlog = binlog
        self.database = LegacyDatabaseSettings()
        self.run = Run(stack, KafkaSettings(bootstrap=stack.kafka_bootstrap), self.database, state)
        self.control_db = f"migration_control_test_bench_{self.run.run}"
        self.children: list[Child] = []
        self.processes: list[Process] = []
        self.frontdoors: list[FrontDoor] = []
        self.env: dict[str, str] = {}
        self.hbase: HBaseSettings | None = None
        self.read_api_port = 0
        self.gateways: list[Gateway] = []

    # -- the capture pipeline and the control store --

    def start_pipeline(self) -> None:
        self.hbase = self.run.hbase("gw")
        names = self.run.topic_names("gw")
        asyncio.run(make_topics(self.run.kafka, names))
        self.env = self.run.pipeline_env(names, self.hbase, self.database)
        self.env["MIG_CONTROL_DB_NAME"] = self.control_db
        for module, ops in (("newcore.entrypoints.capturer", "MIG_CAPTURER_OPS_PORT"),
                            ("newcore.entrypoints.updater", "MIG_UPDATER_OPS_PORT"),
                            ("newcore.entrypoints.read_api", "MIG_READ_API_PORT")):  # fmt: skip
            self.processes.append(start(module, self.env, ops, self.state, "pipeline"))
        if self.binlog:
            self.processes.append(start("legacy_adapters.entrypoints.binlog_source", self.env,
                                        "MIG_BINLOG_OPS_PORT", self.state, "pipeline"))  # fmt: skip
        self.read_api_port = self.processes[2].ops_port
        with make_engine(self.database).begin() as conn:
            conn.execute(text(f"CREATE DATABASE `{self.control_db}` CHARACTER SET utf8mb4"))

    def start_gateway(self, frontdoor: FrontDoor | None) -> Gateway:
        """A `chat-gateway` process; `frontdoor`: this one publishes that front door's map."""
        n = len(self.gateways) + 1
        port = frontdoor.gateway_ports[n - 1] if frontdoor else free_port()
        env = {
            **self.env,
            "MIG_GATEWAY_PORT": str(port),
            "MIG_GATEWAY_ADMIN_TOKEN": self.token,
            "MIG_GATEWAY_UPSTREAM": self.stack.monolith_url,
            "MIG_SPOOL_DIR": str(self.state / f"gateway-{n}" / "spool"),
            "MIG_SHADOW_READ_API": f"http://127.0.0.1:{self.read_api_port}",
        }
        for name in ("MIG_GATEWAY_ROOM_MAP", "MIG_GATEWAY_FRONTDOOR_PID"):
            env.pop(name, None)
        if frontdoor is not None and n == 1:
            env["MIG_GATEWAY_ROOM_MAP"] = str(frontdoor.map_path)
            env["MIG_GATEWAY_FRONTDOOR_PID"] = str(frontdoor.pid_path)
        process = start("gateway.entrypoints.gateway", env, "MIG_GATEWAY_ADMIN_PORT", self.state,
                        f"gateway-{n}")  # fmt: skip
        self.processes.append(process)
        gateway = Gateway(process, port, process.ops_port)
        self.gateways.append(gateway)
        return gateway

    def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.gateways[0].admin_port}{path}", method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.token}",
                     "Content-Type": "application/json"},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
                return json.loads(answer.read())
        except urllib.error.HTTPError as error:
            raise RuntimeError(
                f"admin {method} {path}: {error.code} {error.read()[:500]!r}"
            ) from None

    def move(self, rooms: list[BenchRoom], to: str, frontdoor: FrontDoor) -> None:
        """Moves the rooms and waits until every gateway follows the new revision and the
        front door sends the rooms' requests to a gateway."""
        report = self.admin("POST", "/admin/moves", {
            "rooms": [r.room_id for r in rooms], "to": to, "who": "bench",
            "why": f"bench/gateway.py run {self.run.run}"})  # fmt: skip
        refused = report.get("refused") or []
        if refused:
            raise RuntimeError(f"move to {to} refused for {len(refused)} rooms: {refused[:3]}")
        deadline = time.monotonic() + 20
        room = rooms[0]
        while True:
            before = sum(total(scrape(g.admin_port), "chat_gateway_requests_total", phase=to)
                         for g in self.gateways)  # fmt: skip
            for _ in range(4):
                frontdoor.request("GET", f"/v2/rooms/{room.room_id}/messages/{room.message_ids[0]}",
                                  headers={"X-ChatWorkToken": room.token})  # fmt: skip
            after = sum(total(scrape(g.admin_port), "chat_gateway_requests_total", phase=to)
                        for g in self.gateways)  # fmt: skip
            if after - before >= 4:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"rooms moved to {to} do not reach the gateway in 20 s")
            time.sleep(0.3)

    def backfill(self, rooms: list[BenchRoom]) -> float:
        """Range hints for every message of the rooms into the bench's hints topic; waits until
        the read model holds each room's latest 200 messages as the monolith does, then marks
        the rooms backfilled in the control store (who: bench). Returns the seconds it took."""
        from gateway.adapters.mariadb.control_schema import control_engine
        from gateway.adapters.mariadb.phase_store import MariaDbPhaseStore

        assert self.hbase is not None
        began = time.monotonic()
        engine = make_engine(self.database)
        ids: dict[int, list[int]] = {}
        with engine.connect() as conn:
            for room in rooms:
                ids[room.room_id] = [i for (i,) in conn.execute(text(
                    "SELECT message_id FROM messages WHERE room_id = :r ORDER BY message_id"),
                    {"r": room.room_id})]  # fmt: skip
        hints = [RangeHint(room, got[s], got[min(s + RANGE_ROWS, len(got)) - 1])
                 for room, got in ids.items() for s in range(0, len(got), RANGE_ROWS)]  # fmt: skip
        asyncio.run(produce(self.run.kafka, self.env["MIG_TOPIC_HINTS"],
                            [(h.room_id, encode_hint(h)) for h in hints]))  # fmt: skip
        reader = MariaDbMonolithReader(engine)
        store = HBaseReadStore(self.hbase)
        waiting = {r.room_id for r in rooms}
        deadline = time.monotonic() + 180
        try:
            while waiting:
                for room_id in sorted(waiting):
                    expected = reader.read_range(room_id, 1, MAX_ID, 10_000_000).live[-200:]
                    if store.latest(room_id, 200) == expected:
                        waiting.discard(room_id)
                if waiting and time.monotonic() > deadline:
                    raise RuntimeError(f"{len(waiting)} rooms not in the read model after 180 s")
                if waiting:
                    time.sleep(0.5)
        finally:
            store.close()
            engine.dispose()
        phases = MariaDbPhaseStore(control_engine(self.database, self.control_db))
        try:
            for room in rooms:
                phases.mark_backfilled(room.room_id, "bench")
        finally:
            phases.close()
        return time.monotonic() - began

    def shadow_metrics(self) -> Samples:
        merged: Samples = {}
        for g in self.gateways:
            for key, value in scrape(g.admin_port).items():
                if key[0].startswith("chat_gateway_shadow_"):
                    merged[key] = merged.get(key, 0.0) + value
        return merged

    def drain_shadow(self, timeout_s: float = 15) -> None:
        """Waits until no comparison is under way in any gateway (each ends within the
        shadow timeout)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            busy = 0
            for g in self.gateways:
                url = f"http://127.0.0.1:{g.admin_port}/healthz"
                with (
                    contextlib.suppress(OSError, ValueError),
                    urllib.request.urlopen(url, timeout=2) as answer,
                ):
                    busy += int(json.loads(answer.read()).get("shadow_in_flight", 0))
            if busy == 0:
                return
            time.sleep(0.25)

    def close(self) -> None:
        for gateway in self.gateways:
            gateway.process.stop()
        for process in self.processes:
            process.stop()
        for child in self.children:
            child.stop()
        for frontdoor in self.frontdoors:
            with contextlib.suppress(Exception):
                frontdoor.stop()
        self.run.cleanup()
        with contextlib.suppress(Exception), make_engine(self.database).begin() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{self.control_db}`"))


def shadow_figures(
    before: Samples,
    after: Samples,
) -> dict[str, Any]:
    """Comparisons by outcome during a run, the share that ended late, and the lag from the
    monolith's answer to the verdict (p50, p99), from the deltas of the gateways' metrics."""

    def delta(key: tuple[str, tuple[tuple[str, str], ...]]) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    outcomes: dict[str, int] = {}
    buckets: dict[float, float] = {}
    for key in after:
        name, labels = key
        got = dict(labels)
        if name == "chat_gateway_shadow_comparisons_total":
            outcomes[got["outcome"]] = outcomes.get(got["outcome"], 0) + int(delta(key))
        elif name == "chat_gateway_shadow_lag_seconds_bucket":
            bound = float(got["le"])
            buckets[bound] = buckets.get(bound, 0.0) + delta(key)
    compared = sum(outcomes.values())
    p50, p99 = quantile(buckets, 0.5), quantile(buckets, 0.99)
    return {
        "outcomes": outcomes,
        "late_share": round(outcomes.get("late", 0) / compared, 4) if compared else None,
        "lag_p50_ms": None if p50 is None else round(p50 * 1000, 1),
        "lag_p99_ms": None if p99 is None else round(p99 * 1000, 1),
    }


# -- the run ---------------------------------------------------------------------------------


def run_scenarios(bench: Bench, rooms: list[BenchRoom], only: set[str]) -> dict[str, Any]:
    load, stack = bench.load, bench.stack
    results: dict[str, Any] = {"scenarios": {}, "shadow": {}, "skipped": {}}
    scenarios: dict[str, dict[int, Figures]] = {}

    def record(name: str, figures: dict[int, Figures]) -> None:
        scenarios[name] = figures
        results["scenarios"][name] = {str(c): asdict(f) for c, f in figures.items()}

    def skip(name: str, why: BaseException) -> None:
        results["skipped"][name] = f"{type(why).__name__}: {why}"
        print(f"  {name}: SKIPPED ({type(why).__name__}: {why})", flush=True)

    gateways_wanted = bool(only & {"dual_write", "shadow_read", "two_gateways"})
    pipeline_up = False
    if gateways_wanted:
        # Up before the first baseline, so that every scenario runs beside the same background
        # processes (the binlog source reads every write of every scenario, as in production).
        try:
            bench.start_pipeline()
            pipeline_up = True
        except (RuntimeError, OSError, SystemExit) as exc:
            skip("pipeline", exc)
    results["pipeline_running_in_every_scenario"] = pipeline_up
    record("direct", measure("monolith, direct", stack.monolith_url, load))

    bare: Child | None = None
    try:
        bare = start_bare_mitmproxy(stack.monolith_url, bench.state)
        bench.children.append(bare)
        watch = {"bare mitmproxy": bare.popen.pid}
        record("bare_mitmproxy", measure("bare mitmproxy, direct", f"http://127.0.0.1:{bare.port}",
                                         load, watch))  # fmt: skip
        door = FrontDoor(stack, bench.state / "frontdoor-bare", [bare.port]).start()
        bench.frontdoors.append(door)
        reloads = door.reloads_seen()
        door.room_map.publish(r.room_id for r in rooms)
        deadline = time.monotonic() + 10
        while door.reloads_seen() <= reloads and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # the old workers' connections close; wrk opens new ones anyway
        record("frontdoor_bare_mitmproxy",
               measure("front door -> bare mitmproxy", door.url, load, watch))  # fmt: skip
        door.stop()
        bench.frontdoors.remove(door)
    except (RuntimeError, OSError, AssertionError) as exc:
        skip("bare_mitmproxy", exc)
    finally:
        if bare is not None:
            bare.stop()

    gateway_ports = [free_port(), free_port()]
    door = FrontDoor(stack, bench.state / "frontdoor", gateway_ports[:1]).start()
    bench.frontdoors.append(door)
    record("legacy_frontdoor", measure("legacy, front door", door.url, load))

    if not pipeline_up:
        return results
    try:
        bench.start_gateway(door)
    except (RuntimeError, OSError, SystemExit) as exc:
        skip("gateway", exc)
        return results

    def gateway_watch() -> dict[str, int]:
        return {f"gateway {i + 1}": g.process.popen.pid for i, g in enumerate(bench.gateways)}

    def shadow_run(name: str, label: str) -> None:
        figures: dict[int, Figures] = {}
        results["shadow"][name] = {}
        for c in load.connections:
            before: list[Samples] = []

            def snapshot(into: list[Samples] = before) -> None:
                bench.drain_shadow()  # the warm-up's comparisons end before the run's count
                into.append(bench.shadow_metrics())

            one = measure(label, door.url, Load(**{**asdict(load), "connections": (c,)}),
                          gateway_watch(), snapshot)  # fmt: skip
            bench.drain_shadow()
            results["shadow"][name][str(c)] = shadow_figures(before[0], bench.shadow_metrics())
            print(f"    shadow comparisons: {results['shadow'][name][str(c)]}", flush=True)
            figures |= one
        record(name, figures)

    try:
        bench.move(rooms, "dual_write", door)
        record("dual_write_1", measure("dual_write, front door + 1 gateway", door.url, load,
                                       gateway_watch()))  # fmt: skip
    except RuntimeError as exc:
        skip("dual_write_1", exc)
        return results
    if not only & {"shadow_read", "two_gateways"}:
        return results
    try:
        print("  backfilling the rooms (range hints) ...", flush=True)
        seconds = bench.backfill(rooms)
        results["backfill_seconds"] = round(seconds, 1)
        print(f"  backfilled {len(rooms)} rooms in {seconds:.1f} s", flush=True)
        bench.move(rooms, "shadow_read", door)
        shadow_run("shadow_read_1", "shadow_read, front door + 1 gateway")
    except RuntimeError as exc:
        skip("shadow_read_1", exc)
        return results
    if "two_gateways" not in only:
        return results
    try:
        door.stop()
        bench.frontdoors.remove(door)
        door = FrontDoor(stack, bench.state / "frontdoor", gateway_ports).start()
        bench.frontdoors.append(door)
        bench.start_gateway(door)
        bench.move(rooms, "dual_write", door)
        bench.move(rooms, "shadow_read", door)
        shadow_run("shadow_read_2", "shadow_read, front door + 2 gateways")
        bench.move(rooms, "dual_write", door)
        record("dual_write_2", measure("dual_write, front door + 2 gateways", door.url, load,
                                       gateway_watch()))  # fmt: skip
    except RuntimeError as exc:
        skip("two_gateways", exc)
    return results


# -- the table -------------------------------------------------------------------------------


def ratio_row(
    name: str, label: str, base_name: str, results: dict[str, Any], goal: str,
    check: Callable[[float, float, float], bool] | None,
) -> list[str]:  # fmt: skip
    lines: list[str] = []
    got, base = results["scenarios"].get(name), results["scenarios"].get(base_name)
    if got is None:
        return [f"{label:<38} (not measured: {results['skipped'].get(name, 'see above')})"]
    for c, f in got.items():
        line = f"{label:<38} c={c:<3} {f['rps']:>8,.0f} {f['p50_ms']:>7.2f} {f['p99_ms']:>7.2f}"
        if base is not None and c in base:
            b = base[c]
            ratio = f["rps"] / b["rps"]
            d50, d99 = f["p50_ms"] - b["p50_ms"], f["p99_ms"] - b["p99_ms"]
            verdict = ""
            if check is not None:
                verdict = "  met" if check(ratio, d50, d99) else "  MISSED"
            line += (f"   {base_name:<24} {b['rps']:>8,.0f} {b['p50_ms']:>6.2f} {b['p99_ms']:>7.2f}"
                     f"   {ratio:5.2f} {d50:+6.2f} {d99:+7.2f}   {goal}{verdict}")  # fmt: skip
        lines.append(f"{line}   [load {f['load_before']:.1f}]")
    return lines


def print_table(results: dict[str, Any]) -> None:
    print()
    print(f"{'path':<38} {'c':<5} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7}   "
          f"{'baseline (same run)':<24} {'req/s':>8} {'p50':>6} {'p99':>7}   "
          f"{'ratio':>5} {'+p50':>6} {'+p99':>7}   goal")  # fmt: skip
    rows = [
        ("direct", "monolith, direct", "", "", None),
        ("bare_mitmproxy", "bare mitmproxy (lean master)", "direct", "(baseline)", None),
        ("frontdoor_bare_mitmproxy", "front door -> bare mitmproxy", "direct", "(baseline)", None),
        ("legacy_frontdoor", "legacy via front door", "direct",
         f">= {FRONTDOOR_RATIO}, +p50 <= {FRONTDOOR_P50_MS}, +p99 <= {FRONTDOOR_P99_MS}",
         lambda r, d50, d99: r >= FRONTDOOR_RATIO and d50 <= FRONTDOOR_P50_MS
         and d99 <= FRONTDOOR_P99_MS),
    ]  # fmt: skip
    for name, label in (("dual_write_1", "dual_write, 1 gateway"),
                        ("shadow_read_1", "shadow_read, 1 gateway"),
                        ("dual_write_2", "dual_write, 2 gateways"),
                        ("shadow_read_2", "shadow_read, 2 gateways")):  # fmt: skip
        base = (
            "frontdoor_bare_mitmproxy"
            if "frontdoor_bare_mitmproxy" in results["scenarios"]
            else "bare_mitmproxy"
        )
        rows.append((name, label, base, f">= {GATEWAY_RATIO}",
                     lambda r, _d50, _d99: r >= GATEWAY_RATIO))  # fmt: skip
    for name, label, base, goal, check in rows:
        for line in ratio_row(name, label, base, results, goal, check):
            print(line)
    print()
    for name, label, base, goal, check in (
        ("dual_write_1", "dual_write, 1 gateway, vs direct", "direct", "", None),
        ("shadow_read_1", "shadow_read, 1 gateway, vs direct", "direct", "", None),
    ):  # fmt: skip
        for line in ratio_row(name, label, base, results, goal, check):
            print(line)
    scen = results["scenarios"]
    for kind in ("dual_write", "shadow_read"):
        one, two = scen.get(f"{kind}_1"), scen.get(f"{kind}_2")
        if one and two:
            growth = ", ".join(f"c={c}: {two[c]['rps'] / one[c]['rps']:.2f}x "
                               f"({one[c]['rps']:,.0f} -> {two[c]['rps']:,.0f} req/s)"
                               for c in one if c in two)  # fmt: skip
            print(f"{kind}: two gateway processes against one: {growth}")
    print()
    for name, per_c in results["shadow"].items():
        for c, s in per_c.items():
            print(f"shadow comparisons, {name}, c={c}: {s['outcomes']}; late share "
                  f"{s['late_share']}; lag to verdict p50 {s['lag_p50_ms']} ms, p99 "
                  f"{s['lag_p99_ms']} ms")  # fmt: skip
    print()
    bare = scen.get("bare_mitmproxy", {})
    for name, per_c in scen.items():
        for c, f in per_c.items():
            for process, rss in f["rss_mib"].items():
                beside = ""
                if not process.startswith("bare") and c in bare:
                    b = bare[c]["rss_mib"].get("bare mitmproxy")
                    if b:
                        beside = f"   (bare mitmproxy, same load: peak {b['peak']:.0f} MiB)"
                print(f"RSS {name:<26} c={c:<3} {process:<15} peak {rss['peak']:6.0f} MiB, "
                      f"end {rss['end']:6.0f} MiB{beside}")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="length of each timed run")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up before each run (s)")
    parser.add_argument("--connections", default="1,10", help="wrk connections, comma list")
    parser.add_argument("--rooms", type=int, default=64, help="seeded rooms the load covers")
    parser.add_argument("--write-share", type=float, default=0.10, help="share of POSTs")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--no-binlog", action="store_true",
                        help="run the pipeline without chat-binlog-source (less CPU taken)")  # fmt: skip
    parser.add_argument("--only", default="all",
                        help="stop after: legacy, dual_write, shadow_read, two_gateways (all)")  # fmt: skip
    parser.add_argument("--keep-state", action="store_true", help="keep the run's state dir")
    parser.add_argument("--serve-bare-mitmproxy", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--upstream", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare_mitmproxy:
        serve_bare_mitmproxy(args.upstream, args.serve_bare_mitmproxy)
        return 0
    if args.seconds < 1 or args.warmup < 1 or args.rooms < 1 or not 0 <= args.write_share <= 1:
        parser.error("--seconds, --warmup, --rooms must be positive, --write-share in 0..1")
    levels = ["legacy", "dual_write", "shadow_read", "two_gateways"]
    if args.only != "all" and args.only not in levels:
        parser.error(f"--only: one of {', '.join(levels)}")
    only = set(levels if args.only == "all" else levels[: levels.index(args.only) + 1])
    if shutil.which("wrk") is None:
        raise SystemExit("wrk missing: run deploy/install-system.sh")
    stack = Stack.from_env()
    BENCH_STATE.mkdir(parents=True, exist_ok=True)
    state = BENCH_STATE / f"gateway-{time.strftime('%Y%m%dT%H%M%S')}"
    state.mkdir()
    database = LegacyDatabaseSettings()
    engine = make_engine(database)
    rooms = pick_rooms(engine, args.rooms, args.seed)
    engine.dispose()
    rooms_file = state / "rooms.txt"
    write_rooms_file(rooms, rooms_file)
    load = Load(args.seconds, args.warmup, tuple(int(c) for c in args.connections.split(",")),
                args.write_share, args.seed, rooms_file)  # fmt: skip
    bench = Bench(stack, load, state, secrets.token_hex(16), binlog=not args.no_binlog)
    print(f"bench/gateway.py run {bench.run.run}: {len(rooms)} rooms, {args.seconds} s per run "
          f"after {args.warmup} s warm-up, connections {load.connections}, "
          f"{args.write_share:.0%} posts; {os.cpu_count()} cores; state and logs in {state}",
          flush=True)  # fmt: skip
    try:
        results = run_scenarios(bench, rooms, only)
    finally:
        bench.close()
    results |= {
        "run": bench.run.run, "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cores": os.cpu_count(), "rooms": len(rooms), "seconds": args.seconds,
        "warmup": args.warmup, "write_share": args.write_share,
        "bare_mitmproxy": "gateway.entrypoints.master.lean_master with no addon of ours "
                          "(core, proxyserver, next_layer, errorcheck), reverse mode, uvloop, "
                          "a process of its own",
        "goals": {"frontdoor_ratio": FRONTDOOR_RATIO, "frontdoor_added_p50_ms": FRONTDOOR_P50_MS,
                  "frontdoor_added_p99_ms": FRONTDOOR_P99_MS, "gateway_ratio": GATEWAY_RATIO},
    }  # fmt: skip
    print_table(results)
    out = BENCH_STATE / "gateway.json"
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nfigures written to {out}")
    if not args.keep_state:
        shutil.rmtree(state / "frontdoor", ignore_errors=True)
        shutil.rmtree(state / "frontdoor-bare", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
