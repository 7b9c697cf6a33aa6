"""The migrator's figures (issue 13), each beside its baseline measured in the same run.

1. backfill: `chat-migrate backfill all`, the real command as an operator runs it, fills a fresh
   read model (HBase tables, topics, control database and capture pipeline of the bench's own:
   chat-binlog-source, chat-capturer, chat-updater) with every seeded message: messages/s from
   its start until every room is marked backfilled (the control store's own clock), its CPU
   and memory (its process tree, sampled, and ru_maxrss), and what its own metrics say held it
   back. Beside it: a plain full scan of the same rows from MariaDB (bare PyMySQL, paged by
   (room_id, message_id), the columns the capturer reads), and the ceiling the capture
   pipeline's floor leaves on this machine's cores (bench/pipeline.py's `baseline` and
   `ceiling`). Goal: >= 0.7 of the ceiling.
2. parity: `chat-migrate parity all --no-mark` over the read model the backfill made: seconds
   and messages/s, beside the slower of two raw scans of the same rows (MariaDB as above; a
   plain happybase scan of the read model's messages table). Goal: >= 0.5 of that scan's rate;
   its memory (its process tree: parity runs worker processes) flat at 10, 50 and 100 % of the
   messages and at most 500 MB.
3. monolith: its p99 under a steady background load at a fixed request rate (a process of its
   own paces requests wrk2-like and measures each from when it was due, so a stall is not
   hidden: 45 % GET .../messages?force=1, 45 % GET .../messages/{id}, 10 % posts, a member's
   token each, over seeded rooms as bench/gateway.py picks them), without the backfill, while
   `chat-migrate backfill all` (into another fresh read model, the pipeline niced as
   deploy/pipeline.sh runs it) plans and while it sends, and after it was stopped (the noise).
   Goal: within +25 %.

Every window also measures the CPU of each process and of the rest of the machine (/proc):
a window where other processes took more than a fifth of a core is marked NOISY. When a goal
is missed, what limits it is printed: CPU per process (share of a core, and per message),
the job's own metrics, and with `--profile` py-spy's frames of each job. A full run takes
about 15 to 20 minutes on 2 cores.

Run: `.venv/bin/python -m bench.migrator [--only backfill|parity|monolith]` (`--help`), or
`make bench-migrator ARGS=...`. Figures go to .state/bench/migrator.json, logs to
.state/bench/migrator-<time>/. Everything it made is removed at the end (topics, tables,
control databases), also after Ctrl-C, TERM or HUP; the messages the background load posted
stay in the monolith.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import random
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import happybase
import pymysql
import pymysql.cursors
from sqlalchemy import text
from tqdm import tqdm

from bench.gateway import Samples, pick_rooms, scrape, total, write_rooms_file
from bench.pipeline import (
    Process,
    Run,
    baseline,
    ceiling,
    connect,
    make_topics,
    metric,
    print_ceiling,
    produce,
    range_hints,
    service_pids,
    start,
)
from gateway.adapters.mariadb.control_schema import control_engine, ensure_schema
from legacy_adapters.adapters.mariadb.engine import make_engine
from legacy_adapters.adapters.mariadb.monolith_reader import RANGE_SQL
from legacy_adapters.settings import LegacyDatabaseSettings
from newcore.adapters.hbase import schema
from newcore.adapters.hbase.read_store import drop_tables
from newcore.domain.hints import CursorHint
from newcore.settings import HBaseSettings, KafkaSettings
from newcore.wire.hints import encode_hint
from tests.support.processes import free_port
from tests.support.stack import REPO, Stack

BENCH_STATE = REPO / ".state" / "bench"
CHAT_MIGRATE = Path(sys.executable).with_name("chat-migrate")
PY_SPY = Path(sys.executable).with_name("py-spy")
NEW_SIDE_NICE = 10  # deploy/pipeline.sh's: the new side yields the cores to the serving path
PAGE = 1000  # rows per page of the raw scans

# The goals of issue 13.
BACKFILL_SHARE_OF_CEILING = 0.7
P99_GROWTH = 0.25
PARITY_SHARE_OF_SCAN = 0.5
PARITY_RSS_MB = 500.0
# "Flat": RSS at 100 % of the messages at most this much above RSS at 10 % (a streaming
# comparison holds a page per side whatever the data; 25 % leaves room for the allocator's
# arenas and the report's per-room lines).
FLAT_GROWTH = 0.25

# The scan of every row, the columns and their order exactly those of the capturer's range
# read, paged by the (room_id, message_id) index: MariaDB reads it as one index range.
_SELECT, _FROM, _ = RANGE_SQL.partition("\nFROM messages")
if not _FROM or not _SELECT.startswith("SELECT "):
    raise RuntimeError("monolith_reader.RANGE_SQL changed shape: update bench/migrator.py's scan")
SCAN_SQL = (
    _SELECT + "\nFROM messages WHERE messages.room_id > %(room)s OR "
    "(messages.room_id = %(room)s AND messages.message_id > %(after)s) "
    "ORDER BY messages.room_id, messages.message_id LIMIT %(limit)s"
)


# -- CPU and memory, from /proc ----------------------------------------------------------------


def _proc_table() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds: its own and its reaped children's) of every process."""
    tick = os.sysconf("SC_CLK_TCK")
    table: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            table[int(entry)] = (int(fields[1]), sum(int(f) for f in fields[11:15]) / tick)
    return table


def tree_cpu(roots: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each named process with all its descendants (PHP-FPM's and
    nginx's workers are children of their master). A process gone counts 0."""
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    out: dict[str, float] = {}
    for name, root in roots.items():
        seconds, todo = 0.0, [root] if root in table else []
        while todo:
            pid = todo.pop()
            seconds += table[pid][1]
            todo += children.get(pid, [])
        out[name] = seconds
    return out


def rss_mb(pid: int) -> float:
    """VmRSS in MB (10^6 bytes, the unit of the goal); 0 when the process is gone."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / 1e6
    return 0.0


def process_tree(pid: int) -> list[int]:
    """The process and all its descendants (/proc/<pid>/task/<tid>/children); gone: none."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        with contextlib.suppress(OSError, ValueError):
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
    return found


def tree_rss_mb(pid: int) -> tuple[float, float]:
    """RSS of the process with all its descendants (a job's worker processes are its memory
    too), and of the process alone, in MB."""
    own = rss_mb(pid)
    return own + sum(rss_mb(child) for child in process_tree(pid)[1:]), own


def stack_pids() -> dict[str, int]:
    """The stack's servers (bench/pipeline.py's list) and the monolith's PHP-FPM and nginx."""
    pids = service_pids()
    state = Path(os.environ.get("MIG_STATE_DIR", REPO / ".state"))
    for name, path in (("PHP-FPM", "web/php-fpm.pid"), ("monolith nginx", "web/nginx.pid")):
        with contextlib.suppress(OSError, ValueError):
            pids[name] = int((state / path).read_text().split()[0])
    return pids


def machine_busy_s() -> float:
    """CPU seconds the whole machine has been busy (all cores; /proc/stat, idle and iowait
    left out)."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


@dataclass
class CpuWindow:
    """CPU of named processes over a window: seconds each, the window's length, the messages
    it moved (for the cost per message), and the whole machine's busy CPU seconds: what the
    named processes do not account for is other work on the machine (noise)."""

    seconds: float
    cpu: dict[str, float]
    messages: int = 0
    machine: float = 0.0

    @property
    def others(self) -> float:
        """Core share of every process not named (another helper's tests, say)."""
        return (
            max(0.0, self.machine - sum(self.cpu.values())) / self.seconds if self.seconds else 0.0
        )

    def figures(self) -> dict[str, dict[str, float]]:
        out = {
            name: {
                "core_share": round(used / self.seconds, 3) if self.seconds else 0.0,
                "us_per_message": round(used / self.messages * 1e6, 1) if self.messages else 0.0,
            }
            for name, used in sorted(self.cpu.items(), key=lambda kv: -kv[1])
        }
        out["(other processes)"] = {"core_share": round(self.others, 3), "us_per_message": 0.0}
        return out


class CpuMeter:
    """Takes `tree_cpu` of some processes at the start and end of a window; this process's own
    CPU (time.process_time) is counted as "bench" when `own` is set."""

    def __init__(self, pids: dict[str, int], *, own: bool = False) -> None:
        self.pids = pids
        self.own = own
        self._began = 0.0
        self._machine = 0.0
        self._before: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        now = tree_cpu(self.pids)
        if self.own:
            now["bench"] = time.process_time()
        return now

    def begin(self) -> None:
        self._began = time.monotonic()
        self._machine = machine_busy_s()
        self._before = self._now()

    def end(self, messages: int = 0, extra: dict[str, float] | None = None) -> CpuWindow:
        after = self._now()
        used = {n: max(0.0, after.get(n, 0.0) - self._before.get(n, 0.0)) for n in self._before}
        return CpuWindow(time.monotonic() - self._began, used | (extra or {}), messages,
                         machine_busy_s() - self._machine)  # fmt: skip


def print_profile(window: CpuWindow, indent: str = "    ") -> None:
    cores = os.cpu_count() or 1
    busy = sum(window.cpu.values()) / window.seconds if window.seconds else 0.0
    print(f"{indent}CPU over {window.seconds:.0f} s: {busy:.0%} of one core by the processes "
          f"below ({cores} cores: {busy / cores:.0%} of the machine); other processes "
          f"{window.others:.0%} of a core{'  <- NOISY' if window.others > 0.2 else ''}")  # fmt: skip
    for name, f in window.figures().items():
        if f["core_share"] < 0.005 or name.startswith("("):
            continue
        per = f", {f['us_per_message']:.0f} µs per message" if window.messages else ""
        print(f"{indent}  {name:<22} {f['core_share']:>5.0%} of a core{per}")


# -- a chat-migrate command, as an operator runs it ------------------------------------------


class Job:
    """`chat-migrate ARGS` in a process of its own, output to a log. Its RSS is sampled every
    0.2 s, its /metrics (MIG_MIGRATOR_METRICS_PORT) every second: every page is kept (the
    throttle's gauges over time), and `progress_metric` beside each RSS sample. When it ends,
    wait4 gives its CPU and ru_maxrss (never waited on through Popen: wait4 reaps it)."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path,
                 progress_metric: str | None = None, *, profile: bool = False) -> None:  # fmt: skip
        self.args = args
        self.log = log
        self.began = time.monotonic()
        with log.open("wb") as out:
            self.popen = subprocess.Popen(  # noqa: S603 (our own console script)
                [str(CHAT_MIGRATE), *args], env=env, cwd=REPO, stdout=out,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.pid = self.popen.pid
        # py-spy samples its threads on CPU (idle ones left out), its worker processes too,
        # until it exits; the stacks go to `profile` (collapsed: "frame;frame;... count").
        self.profile: Path | None = None
        self._spy: subprocess.Popen[bytes] | None = None
        if profile:
            self.profile = log.with_suffix(".pyspy.txt")
            self._spy = subprocess.Popen(  # noqa: S603 (py-spy of our venv, our job's pid)
                [str(PY_SPY), "record", "--pid", str(self.pid), "--subprocesses", "--rate",
                 "25", "--format", "raw", "--nonblocking", "--output", str(self.profile)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        self.exit_code: int | None = None
        self.usage: resource.struct_rusage | None = None
        self.ended = 0.0
        # (s since start, RSS MB of its process tree, of its own process, progress)
        self.samples: list[tuple[float, float, float, float | None]] = []
        self.pages: list[tuple[float, Samples]] = []  # (s since start, /metrics)
        self._metrics_port = int(env.get("MIG_MIGRATOR_METRICS_PORT", "0"))
        self._progress_metric = progress_metric
        self._most_processes = 0
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        scraped = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if self._metrics_port and now - scraped >= 1.0:
                scraped = now
                with contextlib.suppress(OSError, ValueError, http.client.HTTPException):
                    self.pages.append((now - self.began, scrape(self._metrics_port)))
            mb, own = tree_rss_mb(self.pid)
            self._most_processes = max(self._most_processes, len(process_tree(self.pid)))
            done: float | None = None
            if self._progress_metric and self.pages:
                done = total(self.pages[-1][1], self._progress_metric)
            if mb > 0:
                self.samples.append((now - self.began, mb, own, done))
            self._stop.wait(0.2)

    def series(self, name: str, **labels: str) -> list[float]:
        """A metric's value on every page scraped (summed over other labels)."""
        return [total(page, name, **labels) for _, page in self.pages
                if any(key[0] == name for key in page)]  # fmt: skip

    def last(self, name: str, **labels: str) -> float | None:
        got = self.series(name, **labels)
        return got[-1] if got else None

    def poll(self) -> int | None:
        if self.exit_code is None:
            pid, status, usage = os.wait4(self.pid, os.WNOHANG)
            if pid:
                self._ended(status, usage)
        return self.exit_code

    def _ended(self, status: int, usage: resource.struct_rusage) -> None:
        self.ended = time.monotonic()
        self.exit_code = os.waitstatus_to_exitcode(status)
        self.popen.returncode = self.exit_code
        self.usage = usage
        self._stop.set()
        if self._spy is not None:
            try:
                self._spy.wait(60)  # it writes its file when the job is gone
            except subprocess.TimeoutExpired:
                self._spy.kill()
                self._spy.wait()

    def wait(self) -> int:
        if self.exit_code is None:
            _, status, usage = os.wait4(self.pid, 0)
            self._ended(status, usage)
        assert self.exit_code is not None
        return self.exit_code

    def stop(self) -> int:
        """SIGTERM, then SIGKILL after 30 s."""
        if self.poll() is None:
            self.popen.terminate()
            deadline = time.monotonic() + 30
            while self.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            if self.exit_code is None:
                self.popen.kill()
        return self.wait()

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    @property
    def cpu_s(self) -> float:
        return 0.0 if self.usage is None else self.usage.ru_utime + self.usage.ru_stime

    @property
    def maxrss_mb(self) -> float:
        return 0.0 if self.usage is None else self.usage.ru_maxrss * 1024 / 1e6  # KiB on Linux

    @property
    def peak_mb(self) -> float:
        """The largest RSS sampled of its process tree (itself and any worker process)."""
        return max((mb for _, mb, _, _ in self.samples), default=0.0)

    @property
    def peak_own_mb(self) -> float:
        return max((own for _, _, own, _ in self.samples), default=0.0)

    @property
    def processes(self) -> int:
        """The most processes its tree had at once (sampled)."""
        return self._most_processes


def throttle_summary(job: Job) -> dict[str, Any]:
    """What the backfill's own metrics say held it back (migrator/service/backfill.py): the
    rate it sent at against the rate asked, the looks over a bound by reason, the time it sent
    nothing, and the health figures it throttles on."""
    if not job.pages:
        return {}
    last = job.pages[-1][1]
    reasons = sorted({dict(labels).get("reason", "") for name, labels in last
                      if name == "migrator_backfill_throttled_total"} - {""})  # fmt: skip

    def spread(values: list[float], scale: float = 1.0) -> dict[str, float] | None:
        if not values:
            return None
        ordered = sorted(values)
        return {"min": round(ordered[0] * scale, 1),
                "median": round(ordered[len(ordered) // 2] * scale, 1),
                "max": round(ordered[-1] * scale, 1)}  # fmt: skip

    appends = total(last, "migrator_backfill_append_seconds_count")
    return {
        "target_rate": job.last("migrator_backfill_target_rate_messages_per_second"),
        "rate_sent": spread(job.series("migrator_backfill_rate_messages_per_second")),
        "throttled": {r: total(last, "migrator_backfill_throttled_total", reason=r)
                      for r in reasons},
        "throttle_wait_s": job.last("migrator_backfill_throttle_wait_seconds_total"),
        "capture_lag_hints": spread(job.series("migrator_capture_lag_hints")),
        "probe_ms": spread(job.series("migrator_monolith_probe_seconds"), 1000),
        "threads_running": spread(job.series("migrator_monolith_threads_running")),
        "rooms_sending": spread(job.series("migrator_backfill_rooms", state="sending")),
        "rooms_waiting": spread(job.series("migrator_backfill_rooms", state="waiting")),
        "appends": int(appends),
        "append_mean_ms": round(total(last, "migrator_backfill_append_seconds_sum") / appends
                                * 1000, 1) if appends else None,
    }  # fmt: skip


# Frames every stack starts with, which say nothing about where the time goes.
_GENERIC = ("Thread._bootstrap", "Thread.run", "_worker (concurrent", "_WorkItem.run",
            "BaseEventLoop.", "Runner.run", "run (asyncio", "Handle._run", "<module>",
            "main (", "run_guarded", "Typer", "Command.", "Context.invoke", "_main (typer",
            "get_callback", "_process_worker", "BaseProcess.", "_bootstrap (multiprocessing",
            "spawn_main", "_main (multiprocessing")  # fmt: skip


def profile_summary(path: Path | None, top: int = 12) -> dict[str, Any]:
    """From py-spy's collapsed stacks: the frames where the CPU went, inclusive (a share of
    every sample on CPU whose stack holds the frame) and self (the frame on top)."""
    if path is None or not path.exists():
        return {}
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    by_process: dict[str, int] = {}
    samples = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        process = "main"
        while stack.startswith("process "):  # --subprocesses: 'process PID:"CMDLINE";' per
            label, _, stack = stack.partition('";')  # level (a command line may hold a ';')
            if "multiprocessing" in label:
                process = "worker " + label.split(":", 1)[0].removeprefix("process ")
        by_process[process] = by_process.get(process, 0) + int(count)

        frames = [f for f in stack.split(";") if not f.startswith(_GENERIC)]
        samples += int(count)
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + int(count)
        if frames:
            own[frames[-1]] = own.get(frames[-1], 0) + int(count)

    def best(counts: dict[str, int]) -> list[list[Any]]:
        ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
        return [[round(n / samples, 3), frame] for frame, n in ranked]

    return {"file": str(path), "samples": samples,
            "processes": {name: share for share, name in best(by_process)},
            "inclusive": best(inclusive), "self": best(own)} if samples else {}  # fmt: skip


def print_profile_summary(summary: dict[str, Any], indent: str = "    ") -> None:
    if not summary:
        return
    print(f"{indent}py-spy, {summary['samples']:,} samples of threads not idle (without pausing "
          f"the job, py-spy takes some waits for work; {summary['file']}):")  # fmt: skip
    if len(summary["processes"]) > 1:
        print(f"{indent}  by process: " + ", ".join(
            f"{name} {share:.0%}" for name, share in summary["processes"].items()))  # fmt: skip
    print(f"{indent}  inclusive (the frame or what it calls):")
    for share, frame in summary["inclusive"]:
        print(f"{indent}    {share:6.1%}  {frame}")
    print(f"{indent}  self (the frame itself):")
    for share, frame in summary["self"][:6]:
        print(f"{indent}    {share:6.1%}  {frame}")


# -- a read model of the bench's own --------------------------------------------------------


class ReadModel:
    """Fresh HBase tables, topics, a control database and the capture pipeline on them
    (binlog source, capturer, updater), and the environment that points `chat-migrate` at all
    of it. Tables and topics are removed by `Run.cleanup`, the control database by `close`.
    `nice`: the pipeline's CPU priority. deploy/pipeline.sh runs it at NEW_SIDE_NICE, below
    the serving path: the monolith's figures are measured so; the backfill's and parity's
    rates at 0, as bench/pipeline.py measures the pipeline (the same on an idle machine, and
    a fairer share when someone else's work shares the cores)."""

    def __init__(self, run: Run, label: str, state: Path, nice: int = 0) -> None:
        self.run = run
        self.label = label
        self.hbase: HBaseSettings = run.hbase(label)
        names = run.topic_names(label)
        asyncio.run(make_topics(run.kafka, names))
        self.control_db = f"migration_control_test_bench_{run.run}_{label}"
        checkpoints = f"bench-{run.run}-{label}.checkpoints"
        run.topics.append(checkpoints)
        self.metrics_port = free_port()
        self.env = run.pipeline_env(names, self.hbase, run.database) | {
            "MIG_BINLOG_CHECKPOINT_TOPIC": checkpoints,
            "MIG_BINLOG_TRANSACTIONAL_ID": f"bench-{run.run}-{label}-binlog",
            "MIG_CAPTURER_TRANSACTIONAL_ID_PREFIX": f"bench-{run.run}-{label}",
            "MIG_CONTROL_DB_NAME": self.control_db,
            "MIG_MIGRATOR_METRICS_PORT": str(self.metrics_port),
            "MIG_PARITY_REPORTS_DIR": str(state / f"{label}-reports"),
            "MIG_MIGRATOR_LOG_FILE": str(state / f"{label}-chat-migrate.jsonl"),
            "MIG_SPOOL_DIR": str(state / f"{label}-spool"),
        }
        self.engine = make_engine(run.database, pool_size=2)
        self.processes: list[Process] = []
        with self.engine.begin() as conn:
            conn.execute(text(f"CREATE DATABASE `{self.control_db}` CHARACTER SET utf8mb4"))
        try:
            control = control_engine(run.database, self.control_db)
            try:
                ensure_schema(control)
            finally:
                control.dispose()
            for module, ops in (
                ("legacy_adapters.entrypoints.binlog_source", "MIG_BINLOG_OPS_PORT"),
                ("newcore.entrypoints.capturer", "MIG_CAPTURER_OPS_PORT"),
                ("newcore.entrypoints.updater", "MIG_UPDATER_OPS_PORT"),
            ):
                self.processes.append(start(module, self.env, ops, state, label, nice=nice))
        except BaseException:
            self.close()
            raise
        self.updater_port = self.processes[2].ops_port

    def pids(self) -> dict[str, int]:
        return {p.name: p.popen.pid for p in self.processes if p.popen.poll() is None}

    def applied(self) -> float:
        """Events the updater applied so far (backfill and live capture)."""
        return metric(self.updater_port, "chat_updater_events_applied_total")

    def marked(self) -> tuple[int, Any]:
        """Rooms marked backfilled, and the latest mark's time (UTC, the server's clock)."""
        with self.engine.connect() as conn:
            row = conn.execute(text(
                f"SELECT COUNT(*), MAX(backfilled_at) FROM `{self.control_db}`.room_phases "  # noqa: S608 (our own database's name)
                "WHERE backfilled_at IS NOT NULL")).one()  # fmt: skip
        return int(row[0]), row[1]

    def stop_pipeline(self) -> None:
        for process in self.processes:
            process.stop()

    def close(self) -> None:
        self.stop_pipeline()
        with contextlib.suppress(Exception), self.engine.begin() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{self.control_db}`"))
        self.engine.dispose()


# -- the raw scans -----------------------------------------------------------------------------


@dataclass
class Scan:
    what: str
    rows: int
    seconds: float
    cpu: CpuWindow

    @property
    def rate(self) -> float:
        return self.rows / self.seconds

    def figures(self) -> dict[str, Any]:
        return {"what": self.what, "rows": self.rows, "seconds": round(self.seconds, 2),
                "rate": round(self.rate, 1), "cpu": self.cpu.figures()}  # fmt: skip


def scan_mariadb(database: LegacyDatabaseSettings) -> Scan:
    """Every message row, the capturer's columns, bare PyMySQL, pages of PAGE rows by the
    (room_id, message_id) index; each page its own statement (autocommit)."""
    servers = {k: v for k, v in stack_pids().items() if k == "MariaDB"}
    meter = CpuMeter(servers, own=True)
    connection = connect(database, pymysql.cursors.Cursor)
    rows, room, after = 0, 0, 0
    try:
        with tqdm(desc="MariaDB scan", unit="row", smoothing=0.1) as bar:
            began = time.perf_counter()
            meter.begin()
            with connection.cursor() as cursor:
                while True:
                    cursor.execute(SCAN_SQL, {"room": room, "after": after, "limit": PAGE})
                    page = cursor.fetchall()
                    if not page:
                        break
                    rows += len(page)
                    after, room = page[-1][0], page[-1][1]  # message_id, room_id
                    bar.update(len(page))
            seconds = time.perf_counter() - began
            cpu = meter.end(rows)
    finally:
        connection.close()
    cpu.cpu["PyMySQL (bench)"] = cpu.cpu.pop("bench")
    scan = Scan("MariaDB: bare PyMySQL, pages of 1,000 by (room_id, message_id)", rows, seconds,
                cpu)  # fmt: skip
    print(f"  MariaDB scan: {rows:,} rows in {seconds:.1f} s = {scan.rate:,.0f} rows/s")
    return scan


def scan_hbase(hbase: HBaseSettings) -> Scan:
    """Every row of the read model's messages table, happybase, 1,000 rows per Thrift call."""
    servers = {k: v for k, v in stack_pids().items() if k.startswith("HBase")}
    meter = CpuMeter(servers, own=True)
    connection = happybase.Connection(host=hbase.host, port=hbase.thrift_port,
                                      table_prefix=hbase.table_prefix,
                                      table_prefix_separator="_")  # fmt: skip
    rows = 0
    try:
        table = connection.table(schema.MESSAGES)
        with tqdm(desc="HBase scan", unit="row", smoothing=0.1) as bar:
            began = time.perf_counter()
            meter.begin()
            for _ in table.scan(batch_size=PAGE):
                rows += 1
                if rows % PAGE == 0:
                    bar.update(PAGE)
            seconds = time.perf_counter() - began
            cpu = meter.end(rows)
    finally:
        connection.close()
    cpu.cpu["happybase (bench)"] = cpu.cpu.pop("bench")
    scan = Scan("HBase: happybase scan of the read model's messages table, 1,000 rows a call",
                rows, seconds, cpu)  # fmt: skip
    print(f"  HBase scan: {rows:,} rows in {seconds:.1f} s = {scan.rate:,.0f} rows/s")
    return scan


# -- 1. the backfill -------------------------------------------------------------------------


_COUNTS = {"rooms": "SELECT COUNT(*) FROM rooms", "messages": "SELECT COUNT(*) FROM messages"}


def count(database: LegacyDatabaseSettings, table: str) -> int:
    connection = connect(database, pymysql.cursors.Cursor)
    try:
        with connection.cursor() as cursor:
            cursor.execute(_COUNTS[table])
            got = cursor.fetchone()
    finally:
        connection.close()
    return int(got[0]) if got else 0


def server_utc(model: ReadModel) -> Any:
    with model.engine.connect() as conn:
        return conn.execute(text("SELECT UTC_TIMESTAMP(6)")).scalar_one()


@dataclass
class Backfill:
    """One backfill of every room: what it moved, how long, and at what cost."""

    how: str  # the command, or "range hints" (no chat-migrate: the pipeline's own rate)
    messages: int  # the monolith's message rows when it began
    rooms: int  # the monolith's rooms (every one is marked, with messages or not)
    seconds: float  # from its start to the last room marked backfilled (the server's clock)
    job: Job | None
    cpu: CpuWindow

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0

    def figures(self) -> dict[str, Any]:
        job = self.job
        return {
            "how": self.how, "messages": self.messages, "rooms": self.rooms,
            "seconds": round(self.seconds, 2), "rate": round(self.rate, 1),
            "exit_code": None if job is None else job.exit_code,
            "job_cpu_s": None if job is None else round(job.cpu_s, 2),
            "job_rss_mb": None if job is None else {
                "peak_sampled": round(job.peak_mb, 1), "peak_main_process": round(job.peak_own_mb, 1),
                "ru_maxrss": round(job.maxrss_mb, 1), "processes": job.processes},
            "throttle": None if job is None else throttle_summary(job),
            "profile": None if job is None else profile_summary(job.profile),
            "cpu": self.cpu.figures(),
        }  # fmt: skip


def run_backfill(model: ReadModel, run: Run, state: Path, *, via_hints: bool,
                 extra: list[str], profile: bool = False) -> Backfill:  # fmt: skip
    """Every room into the read model, until every room is marked backfilled: by
    `chat-migrate backfill all` (timed on the control store's clock, from just before its start
    to the last mark), or, `via_hints`, by range hints of 1,000 rows for every message put on
    the hints topic as bench/pipeline.py does (no marks: timed until the updater applied as
    many events as there are messages)."""
    rooms = count(run.database, "rooms")
    meter = CpuMeter(stack_pids() | model.pids())
    applied_before = model.applied()
    began_utc = server_utc(model)
    began = time.monotonic()
    meter.begin()
    job: Job | None = None
    if via_hints:
        hints, messages = range_hints(run.database)
        asyncio.run(produce(run.kafka, model.env["MIG_TOPIC_HINTS"],
                            [(h.room_id, encode_hint(h)) for h in hints]))  # fmt: skip
        how = f"{len(hints):,} range hints onto the hints topic (no chat-migrate)"
    else:
        messages = count(run.database, "messages")
        job = Job(["backfill", "all", *extra], model.env, state / f"{model.label}-backfill.log",
                  profile=profile)  # fmt: skip
        how = "chat-migrate " + " ".join(job.args)
    marked, last_mark, applied = 0, None, 0.0
    try:
        with tqdm(total=messages if via_hints else rooms, unit="msg" if via_hints else "room",
                  desc="range hints: applied" if via_hints else "backfill: rooms marked",
                  ) as bar:  # fmt: skip
            while True:
                time.sleep(0.5)
                applied = model.applied() - applied_before
                if via_hints:
                    bar.update(int(applied) - bar.n)
                    if applied >= messages:
                        break
                    continue
                assert job is not None
                now, last_mark = model.marked()
                bar.update(now - marked)
                bar.set_postfix_str(f"{applied:,.0f} events applied")
                marked = now
                code = job.poll()
                if marked >= rooms:
                    break
                if code is not None:
                    raise SystemExit(f"chat-migrate backfill ended ({code}) with {marked} of "
                                     f"{rooms} rooms marked:\n{job.tail()}")  # fmt: skip
        seconds = time.monotonic() - began
        cpu = meter.end(messages)
        if job is not None:
            job.wait()
            cpu.cpu["chat-migrate"] = job.cpu_s
            if last_mark is not None:
                seconds = (last_mark - began_utc).total_seconds()
    finally:
        if job is not None and job.exit_code is None:
            job.stop()
    return Backfill(how, messages, rooms, seconds, job, cpu)


def backfill_part(run: Run, state: Path, args: argparse.Namespace,
                  results: dict[str, Any]) -> ReadModel:  # fmt: skip
    """The floor and the MariaDB scan (the baselines), then the backfill into a fresh read
    model, which is returned for the parity part."""
    print("\n== backfill ==", flush=True)
    floor = baseline(run, args.baseline_rows)
    for prefix in list(run.prefixes):  # the baseline's table: not needed any more
        drop_tables(HBaseSettings(host=run.stack.host, thrift_port=run.stack.hbase_thrift_port,
                                  table_prefix=prefix))  # fmt: skip
        run.prefixes.remove(prefix)
    scan = mariadb_scan(run, results)
    model = ReadModel(run, "backfill", state)
    print("  range hints (no chat-migrate) ..." if args.via_hints
          else "  chat-migrate backfill all ...", flush=True)  # fmt: skip
    try:
        done = run_backfill(model, run, state, via_hints=args.via_hints,
                            extra=args.backfill_args.split(), profile=args.profile)  # fmt: skip
    except BaseException:
        model.close()
        raise
    kafka_us = done.cpu.cpu.get("Kafka", 0.0) / done.messages * 1e6
    figures = done.figures() | {
        "floor": {"rate": round(floor.rate, 1), "read_us": round(floor.read_us, 1),
                  "put_us": round(floor.put_us, 1), "floor_us": round(floor.floor_us, 1),
                  "rows": args.baseline_rows},
        "ceiling": round(ceiling(floor), 1),
        "ceiling_with_kafka": round(ceiling(floor, kafka_us), 1),
        "kafka_us": round(kafka_us, 1),
        "share_of_ceiling": round(done.rate / ceiling(floor), 3),
        "share_of_mariadb_scan": round(done.rate / scan.rate, 3),
    }  # fmt: skip
    results["backfill"] = figures
    print(f"  backfill ({done.how}): {done.messages:,} messages in {done.seconds:.1f} s = "
          f"{done.rate:,.0f} messages/s"
          + ("" if done.job is None else
             f"; {done.rooms:,} rooms marked; chat-migrate {done.job.cpu_s:.0f} s of CPU, RSS "
             f"peak {done.job.peak_mb:.0f} MB (ru_maxrss {done.job.maxrss_mb:.0f} MB)"))  # fmt: skip
    print_ceiling(floor, kafka_us)
    print_throttle(figures["throttle"])
    print_profile(done.cpu)
    return model


def print_throttle(seen: dict[str, Any] | None, indent: str = "  ") -> None:
    if not seen:
        return
    rate = seen["rate_sent"] or {}
    print(f"{indent}the backfill's own metrics: asked {seen['target_rate'] or 0:,.0f} msg/s, sent "
          f"at median {rate.get('median', 0):,.0f} (min {rate.get('min', 0):,.0f}); throttled "
          f"{seen['throttled'] or 'never'}, {seen['throttle_wait_s'] or 0:.0f} s sending nothing; "
          f"capture lag {seen['capture_lag_hints']} hints, probe {seen['probe_ms']} ms, "
          f"Threads_running {seen['threads_running']}; rooms sending {seen['rooms_sending']}, "
          f"waiting to be visible {seen['rooms_waiting']}; {seen['appends']:,} appends, mean "
          f"{seen['append_mean_ms']} ms")  # fmt: skip


def mariadb_scan(run: Run, results: dict[str, Any]) -> Scan:
    """The MariaDB scan, once per run (the backfill's and the parity's baseline)."""
    if "mariadb_scan" not in results:
        scan = scan_mariadb(run.database)
        results["mariadb_scan"] = scan.figures()
        results["_mariadb_scan"] = scan
    got: Scan = results["_mariadb_scan"]
    return got


# -- 2. parity -------------------------------------------------------------------------------


# Messages compared so far, on parity's /metrics (migrator/service/parity.py).
PARITY_PROGRESS = "migrator_parity_messages_total"


def parity_summary(job: Job) -> dict[str, Any]:
    """What parity's own metrics say at its last scrape: rooms by verdict, differences by kind,
    candidates re-checked, the frontier waits (a parity that compares nothing because the
    pipeline never reached its frontier is fast and worthless)."""
    if not job.pages:
        return {}
    last = job.pages[-1][1]

    def by(name: str, label: str) -> dict[str, float]:
        values = {dict(labels).get(label, "") for n, labels in last if n == name}
        return {v: total(last, name, **{label: v}) for v in sorted(values - {""})}

    waits = total(last, "migrator_parity_frontier_wait_seconds_count")
    return {
        "messages": total(last, PARITY_PROGRESS),
        "new_messages": total(last, "migrator_parity_new_messages_total"),
        "cursors": total(last, "migrator_parity_cursors_total"),
        "rooms": by("migrator_parity_rooms_total", "verdict"),
        "differences": by("migrator_parity_differences_total", "kind"),
        "candidates": total(last, "migrator_parity_candidates_total"),
        "rechecks": by("migrator_parity_rechecks_total", "outcome"),
        "frontier_waits": int(waits),
        "frontier_wait_s": round(total(last, "migrator_parity_frontier_wait_seconds_sum"), 2),
        "scraped_at_s": round(job.pages[-1][0], 1),
    }  # fmt: skip


def fill_for_parity(run: Run, state: Path, args: argparse.Namespace,
                    results: dict[str, Any]) -> ReadModel:  # fmt: skip
    """A read model for parity when the backfill part did not run: backfilled the same way
    (its figures kept, not judged)."""
    model = ReadModel(run, "parity", state)
    print("\n== parity: filling the read model first ==", flush=True)
    try:
        done = run_backfill(model, run, state, via_hints=args.via_hints,
                            extra=args.backfill_args.split())  # fmt: skip
    except BaseException:
        model.close()
        raise
    results["backfill_before_parity"] = done.figures()
    print(f"  backfilled {done.messages:,} messages in {done.seconds:.1f} s")
    return model


def send_cursors(run: Run, model: ReadModel, timeout_s: float = 600) -> int:
    """A CursorHint for every read cursor of the monolith, then waits until the updater has
    applied as many events: after a fill by raw range hints (`--via-hints`), which carry
    messages only (`chat-migrate backfill` replays cursors too), parity would compare the
    monolith's cursors with none. Returns the cursors sent."""
    connection = connect(run.database, pymysql.cursors.SSCursor)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT room_id, account_id FROM room_cursors")
            hints = [CursorHint(room, account) for room, account in cursor]
    finally:
        connection.close()
    before = model.applied()
    asyncio.run(produce(run.kafka, model.env["MIG_TOPIC_HINTS"],
                        [(h.room_id, encode_hint(h)) for h in hints]))  # fmt: skip
    deadline = time.monotonic() + timeout_s
    while model.applied() - before < len(hints):
        if time.monotonic() > deadline:
            raise SystemExit(f"{len(hints):,} cursor hints not applied in {timeout_s:.0f} s")
        time.sleep(0.5)
    return len(hints)


def parity_part(run: Run, state: Path, model: ReadModel, args: argparse.Namespace,
                results: dict[str, Any]) -> None:  # fmt: skip
    print("\n== parity ==", flush=True)
    cursors = 0
    if args.via_hints:
        began = time.monotonic()
        cursors = send_cursors(run, model)
        print(f"  {cursors:,} cursor hints sent and applied in {time.monotonic() - began:.1f} s "
              "(range hints carry messages only)", flush=True)  # fmt: skip
    sql = mariadb_scan(run, results)
    hbase = scan_hbase(model.hbase)
    results["hbase_scan"] = hbase.figures()
    slower = min(sql, hbase, key=lambda s: s.rate)
    meter = CpuMeter(stack_pids() | model.pids())
    meter.begin()
    print("  chat-migrate parity all --no-mark ...", flush=True)
    job = Job(["parity", "all", "--no-mark"], model.env, state / "parity.log", PARITY_PROGRESS,
              profile=args.profile)  # fmt: skip
    try:
        while job.poll() is None and time.monotonic() - job.began < args.parity_timeout:
            time.sleep(0.2)
    finally:
        code = job.stop()  # at once when it ended by itself
    finished = time.monotonic() - job.began < args.parity_timeout
    seconds = job.ended - job.began
    compared = sql.rows
    if not finished:
        compared = int(parity_summary(job).get("messages", 0))
        print(f"  chat-migrate parity stopped after {seconds:.0f} s (--parity-timeout) with "
              f"{compared:,} of {sql.rows:,} messages compared")  # fmt: skip
    cpu = meter.end(compared, {"chat-migrate": job.cpu_s})
    if code not in (0, 1):  # 1: differences found, reported (the seed has unreadable rows)
        print(f"  chat-migrate parity exited {code}:\n{job.tail()}")
    rate = compared / seconds
    at = rss_at_progress(job, compared)
    flat = bool(at) and at["100%"] <= at["10%"] * (1 + FLAT_GROWTH)
    results["parity"] = {
        "command": "chat-migrate " + " ".join(job.args), "exit_code": code,
        "finished": finished, "cursor_hints_sent_before": cursors,
        "messages": compared, "seconds": round(seconds, 2), "rate": round(rate, 1),
        "slower_scan": slower.what, "slower_scan_rate": round(slower.rate, 1),
        "share_of_slower_scan": round(rate / slower.rate, 3),
        "rss_mb": {"peak_sampled": round(job.peak_mb, 1),
                   "peak_main_process": round(job.peak_own_mb, 1),
                   "ru_maxrss": round(job.maxrss_mb, 1), "processes": job.processes,
                   "at_progress": at, "flat": flat,
                   "progress_from": "metric" if any(p for *_, p in job.samples) else "time"},
        "job_cpu_s": round(job.cpu_s, 2), "cpu": cpu.figures(), "log": str(job.log),
        "seen": parity_summary(job), "profile": profile_summary(job.profile),
    }  # fmt: skip
    print(f"  parity: {compared:,} messages in {seconds:.1f} s = {rate:,.0f} messages/s "
          f"(exit {code}); slower raw scan: {slower.what.split(':')[0]} {slower.rate:,.0f} rows/s; "
          f"RSS peak {job.peak_mb:.0f} MB over its {job.processes} processes (main process "
          f"{job.peak_own_mb:.0f} MB; ru_maxrss, the largest one process reached: "
          f"{job.maxrss_mb:.0f} MB), "
          + ", ".join(f"{k} {v:.0f} MB" for k, v in at.items()))  # fmt: skip
    print(f"  parity's own metrics (last scrape): {results['parity']['seen']}")
    print_profile(cpu)


def rss_at_progress(job: Job, total: int) -> dict[str, float]:
    """The RSS sample at 10, 50 and 100 % of the messages compared (by the job's metric when it
    has one, else by elapsed time)."""
    if not job.samples:
        return {}
    by_metric = [(p / total, mb) for _, mb, _, p in job.samples if p is not None]
    if not by_metric or by_metric[-1][0] < 0.5:
        length = job.samples[-1][0] or 1.0
        by_metric = [(t / length, mb) for t, mb, _, _ in job.samples]
    out: dict[str, float] = {}
    for label, share in (("10%", 0.1), ("50%", 0.5), ("100%", 1.0)):
        got = next((mb for done, mb in by_metric if done >= share), by_metric[-1][1])
        out[label] = round(got, 1)
    return out


# -- 3. the monolith under a steady load -------------------------------------------------------


def serve_load(url: str, rooms_file: Path, rate: float, seed: int, write_share: float,
               out: Path) -> None:  # fmt: skip
    """The background load (a process of its own): request i is due at start + i / rate,
    whatever the answers before it; 32 threads take the next due request in turn, so a slow
    answer does not delay the schedule (up to 32 at once), and each latency is measured from
    when the request was due (a stall shows as the latency it caused). Until SIGTERM; then
    every (due offset, latency, status) goes to `out` as JSON."""
    host, _, port = url.removeprefix("http://").partition(":")
    rooms = []
    for line in rooms_file.read_text().splitlines():
        room, token, *ids = line.split()
        rooms.append((room, token, ids))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    lock = threading.Lock()
    sequence = iter(range(10**12))
    records: list[tuple[float, float, int]] = []
    began_epoch, began = time.time(), time.monotonic()

    def worker(n: int) -> None:
        rng = random.Random(seed * 1000 + n)
        connection: http.client.HTTPConnection | None = None
        while not stop.is_set():
            with lock:
                i = next(sequence)
            due = began + i / rate
            if stop.wait(max(0.0, due - time.monotonic())):
                return
            room, token, ids = rooms[rng.randrange(len(rooms))]
            headers = {"X-ChatWorkToken": token}
            dice, body = rng.random(), None
            if dice < write_share:
                method, path = "POST", f"/v2/rooms/{room}/messages"
                headers["Content-Type"] = "application/x-www-form-urlencoded"
                body = f"body=bench+migrator+{n}-{i}"
            elif dice < write_share + (1 - write_share) / 2:
                method, path = "GET", f"/v2/rooms/{room}/messages?force=1"
            else:
                method, path = "GET", f"/v2/rooms/{room}/messages/{rng.choice(ids)}"
            try:
                if connection is None:
                    connection = http.client.HTTPConnection(host, int(port or 80), timeout=10)
                connection.request(method, path, body, headers)
                answer = connection.getresponse()
                answer.read()
                status = answer.status
            except (OSError, http.client.HTTPException):
                status = 0
                if connection is not None:
                    connection.close()
                connection = None
            records.append((i / rate, time.monotonic() - due, status))

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(32)]
    for thread in threads:
        thread.start()
    stop.wait()
    for thread in threads:
        thread.join(15)
    out.write_text(json.dumps({"began_epoch": began_epoch, "rate": rate,
                               "records": sorted(records)}))  # fmt: skip


class Load:
    """The background load's process (`--serve-load`): started, stopped, its records read."""

    def __init__(self, url: str, rooms_file: Path, rate: float, seed: int, write_share: float,
                 state: Path) -> None:  # fmt: skip
        self.out = state / "load.json"
        self.log = state / "load.log"
        with self.log.open("wb") as log:
            self.popen = subprocess.Popen(  # noqa: S603 (this module, with sys.executable)
                [sys.executable, "-m", "bench.migrator", "--serve-load", url,
                 "--rooms-file", str(rooms_file), "--load-rate", str(rate), "--seed", str(seed),
                 "--write-share", str(write_share), "--out", str(self.out)],
                cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.records: list[tuple[float, float, int]] = []
        self.began_epoch = 0.0

    def stop(self) -> None:
        self.popen.terminate()
        try:
            self.popen.wait(60)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            raise SystemExit(f"the load process did not stop; see {self.log}") from None
        try:
            got = json.loads(self.out.read_text())
        except (OSError, ValueError) as exc:
            raise SystemExit(f"the load process left no figures ({exc}); see {self.log}") from None
        self.began_epoch = got["began_epoch"]
        self.records = [(r[0], r[1], r[2]) for r in got["records"]]

    def window(self, began: float, ended: float) -> dict[str, Any]:
        """Latency figures of the requests due in [began, ended) (epoch seconds)."""
        chosen = [(lat, st) for due, lat, st in self.records
                  if began <= self.began_epoch + due < ended]  # fmt: skip
        latencies = sorted(lat for lat, _ in chosen)
        if not latencies:
            return {"requests": 0}

        def at(q: float) -> float:
            return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000, 2)

        return {
            "requests": len(latencies), "seconds": round(ended - began, 1),
            "rate": round(len(latencies) / (ended - began), 1),
            "p50_ms": at(0.50), "p90_ms": at(0.90), "p99_ms": at(0.99),
            "max_ms": round(latencies[-1] * 1000, 2),
            "errors": sum(1 for _, st in chosen if st == 0 or st >= 400),
        }  # fmt: skip


@contextlib.contextmanager
def timed_window(windows: dict[str, tuple[float, float]], name: str) -> Iterator[None]:
    began = time.time()
    try:
        yield
    finally:
        windows[name] = (began, time.time())


def monolith_part(run: Run, state: Path, args: argparse.Namespace,
                  results: dict[str, Any]) -> None:  # fmt: skip
    print("\n== the monolith under a steady load ==", flush=True)
    engine = make_engine(run.database)
    rooms = pick_rooms(engine, args.rooms, args.seed)
    engine.dispose()
    rooms_file = state / "rooms.txt"
    write_rooms_file(rooms, rooms_file)
    model = ReadModel(run, "monolith", state, nice=NEW_SIDE_NICE)
    load = Load(run.stack.monolith_url, rooms_file, args.load_rate, args.seed, args.write_share,
                state)  # fmt: skip
    windows: dict[str, tuple[float, float]] = {}
    cpu: dict[str, CpuWindow] = {}
    pids = stack_pids() | model.pids() | {"load (bench)": load.popen.pid}
    job: Job | None = None
    backfilled = 0.0
    try:
        print(f"  {args.load_rate:g} requests/s over {len(rooms)} rooms; warm-up "
              f"{args.warmup} s, then {args.seconds} s without the backfill", flush=True)  # fmt: skip
        time.sleep(args.warmup)
        meter = CpuMeter(pids)
        meter.begin()
        with timed_window(windows, "without"):
            time.sleep(args.seconds)
        cpu["without"] = meter.end()
        how = (
            "range hints"
            if args.via_hints
            else " ".join(["chat-migrate backfill all", args.backfill_args]).strip()
        )
        print(f"  {how}, {args.ramp} s to ramp up, then {args.seconds} s", flush=True)
        if args.via_hints:
            hints, _ = range_hints(run.database)
            asyncio.run(produce(run.kafka, model.env["MIG_TOPIC_HINTS"],
                                [(h.room_id, encode_hint(h)) for h in hints]))  # fmt: skip
        else:
            job = Job(["backfill", "all", *args.backfill_args.split()], model.env,
                      state / "monolith-backfill.log", profile=args.profile)  # fmt: skip
            pids |= {"chat-migrate": job.pid}
            # Its plan first (every room measured on the monolith), a window of its own; the
            # sending window begins once hints flow.
            meter = CpuMeter(pids)
            meter.begin()
            with timed_window(windows, "backfill_planning"):
                deadline = time.monotonic() + 600
                while (not job.last("migrator_backfill_messages_total")
                       and job.poll() is None and time.monotonic() < deadline):  # fmt: skip
                    time.sleep(0.2)
            cpu["backfill_planning"] = meter.end()
            print(f"  its plan took {cpu['backfill_planning'].seconds:.0f} s; sending",
                  flush=True)  # fmt: skip
        time.sleep(args.ramp)
        meter = CpuMeter(pids)
        applied_at = model.applied()
        meter.begin()
        with timed_window(windows, "with_backfill"):
            deadline = time.monotonic() + args.seconds
            while time.monotonic() < deadline and (job is None or job.poll() is None):
                time.sleep(0.2)
        backfilled = model.applied() - applied_at
        cpu["with_backfill"] = meter.end(int(backfilled))
        ended_early = job is not None and job.poll() is not None
        if job is not None:
            job.stop()
        model.stop_pipeline()
        print(f"  backfill stopped and the pipeline too; {args.seconds} s after", flush=True)
        meter = CpuMeter(stack_pids() | {"load (bench)": load.popen.pid})
        meter.begin()
        with timed_window(windows, "after"):
            time.sleep(args.seconds)
        cpu["after"] = meter.end()
    finally:
        if job is not None and job.exit_code is None:
            job.stop()
        load.stop()
        model.close()
    figures = {name: load.window(*span) for name, span in windows.items()}
    results["monolith"] = {
        "rate_asked": args.load_rate, "rooms": len(rooms), "write_share": args.write_share,
        "windows": figures, "cpu": {k: v.figures() for k, v in cpu.items()},
        "backfill_during_window": {
            "events_applied": int(backfilled),
            "rate": round(backfilled / cpu["with_backfill"].seconds, 1),
            "how": how, "ended_before_window_end": ended_early,
            "throttle": None if job is None else throttle_summary(job),
            "profile": None if job is None else profile_summary(job.profile),
        },
        "load_process_log": str(load.log),
    }  # fmt: skip
    for name, f in figures.items():
        if not f.get("requests"):
            print(f"  {name}: no request measured")
            continue
        print(f"  {name:<14} {f['requests']:>6,} requests at {f['rate']:,.0f}/s: p50 "
              f"{f['p50_ms']:.1f} ms, p90 {f['p90_ms']:.1f} ms, p99 {f['p99_ms']:.1f} ms, max "
              f"{f['max_ms']:.0f} ms, errors {f['errors']}")  # fmt: skip
    print(f"  the backfill applied {backfilled:,.0f} events in the window "
          f"({backfilled / cpu['with_backfill'].seconds:,.0f}/s)")  # fmt: skip
    if job is not None:
        print_throttle(throttle_summary(job))
    for name, window in cpu.items():
        print(f"  {name}:")
        print_profile(window, indent="    ")


# -- the table -------------------------------------------------------------------------------


def table_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    if (b := results.get("backfill")) is not None:
        rows.append({
            "figure": f"backfill {b['rate']:,.0f} msg/s ({b['messages']:,} in {b['seconds']:.0f} s)",
            "baseline": f"ceiling {b['ceiling']:,.0f} msg/s (floor {b['floor']['floor_us']:.0f} µs)",
            "ratio": b["share_of_ceiling"], "goal": f">= {BACKFILL_SHARE_OF_CEILING}",
            "met": b["share_of_ceiling"] >= BACKFILL_SHARE_OF_CEILING,
        })  # fmt: skip
        scan = results["mariadb_scan"]
        rows.append({
            "figure": "backfill, against the MariaDB scan",
            "baseline": f"MariaDB scan {scan['rate']:,.0f} rows/s",
            "ratio": b["share_of_mariadb_scan"], "goal": "", "met": None,
        })  # fmt: skip
    if (m := results.get("monolith")) is not None:
        without, during = m["windows"].get("without", {}), m["windows"].get("with_backfill", {})
        for name, label in (("backfill_planning", "backfill planning"),
                            ("with_backfill", "backfill sending")):  # fmt: skip
            during = m["windows"].get(name, {})
            if not (without.get("requests") and during.get("requests")):
                continue
            growth = during["p99_ms"] / without["p99_ms"] - 1
            rows.append({
                "figure": f"monolith p99 {during['p99_ms']:.1f} ms, {label}",
                "baseline": f"p99 {without['p99_ms']:.1f} ms without it",
                "ratio": round(1 + growth, 3), "goal": f"<= +{P99_GROWTH:.0%}",
                "met": growth <= P99_GROWTH and during["errors"] == 0,
            })  # fmt: skip
        if (after := m["windows"].get("after", {})).get("requests"):
            rows.append({
                "figure": f"monolith p99 {after['p99_ms']:.1f} ms, backfill stopped (noise)",
                "baseline": f"p99 {without.get('p99_ms', 0):.1f} ms before",
                "ratio": round(after["p99_ms"] / without["p99_ms"], 3)
                if without.get("p99_ms") else None, "goal": "", "met": None,
            })  # fmt: skip
    if (p := results.get("parity")) is not None:
        found = {k: int(v) for k, v in p["seen"].get("differences", {}).items() if v}
        rows.append({
            "figure": f"parity {p['seconds']:.0f} s ({p['rate']:,.0f} msg/s, exit {p['exit_code']}"
                      + (f": {found}" if found else "") + ")",
            "baseline": f"slower scan {p['slower_scan'].split(':')[0]} "
                        f"{p['slower_scan_rate']:,.0f} rows/s",
            "ratio": p["share_of_slower_scan"], "goal": f">= {PARITY_SHARE_OF_SCAN}",
            "met": p["finished"] and p["exit_code"] in (0, 1)
            and p["share_of_slower_scan"] >= PARITY_SHARE_OF_SCAN,
        })  # fmt: skip
        rss = p["rss_mb"]
        peak = max(rss["peak_sampled"], rss["ru_maxrss"])
        at = rss["at_progress"]
        rows.append({
            "figure": f"parity peak RSS {peak:.0f} MB "
                      f"(10/50/100 %: {'/'.join(f'{v:.0f}' for v in at.values())})",
            "baseline": f"{PARITY_RSS_MB:.0f} MB", "ratio": round(peak / PARITY_RSS_MB, 3),
            "goal": f"<= {PARITY_RSS_MB:.0f} MB, flat (+{FLAT_GROWTH:.0%})",
            "met": peak <= PARITY_RSS_MB and rss["flat"],
        })  # fmt: skip
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    print()
    print(f"{'figure':<58} {'baseline (same run)':<44} {'ratio':>6}  {'goal':<28} met?")
    for r in rows:
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f}"
        met = "" if r["met"] is None else ("yes" if r["met"] else "NO")
        print(f"{r['figure']:<58} {r['baseline']:<44} {ratio:>6}  {r['goal']:<28} {met}")


def print_limits(results: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """For each missed goal: where the CPU went (a share of a core per process, and µs per
    message), from /proc over the measured window."""
    missed = {r["figure"].split(" ")[0] + ("" if "RSS" not in r["figure"] else " RSS")
              for r in rows if r["met"] is False}  # fmt: skip
    if not missed:
        return
    print("\nwhat limits the missed goals (CPU per process, from /proc; "
          f"{os.cpu_count()} cores):")  # fmt: skip
    if "backfill" in missed:
        b = results["backfill"]
        print(f"  backfill: {b['rate']:,.0f} msg/s; the floor alone would allow "
              f"{b['ceiling']:,.0f}, the floor plus Kafka {b['ceiling_with_kafka']:,.0f}")  # fmt: skip
        print_cpu(b["cpu"], per_message=True)
        print_throttle(b.get("throttle"), indent="    ")
        print_profile_summary(b.get("profile") or {})
    if "monolith" in missed:
        m = results["monolith"]
        for name in ("without", "backfill_planning", "with_backfill"):
            if name in m["cpu"]:
                print(f"  monolith, {name}:")
                print_cpu(m["cpu"][name], per_message=False)
        print_profile_summary(m["backfill_during_window"].get("profile") or {})
    if "parity" in missed:
        p = results["parity"]
        print(f"  parity: {p['rate']:,.0f} msg/s against {p['slower_scan_rate']:,.0f}")
        print_cpu(p["cpu"], per_message=True)
        for scan in ("mariadb_scan", "hbase_scan"):
            if scan in results:
                cost = ", ".join(f"{name} {f['us_per_message']:.0f} µs"
                                 for name, f in results[scan]["cpu"].items()
                                 if not name.startswith("("))  # fmt: skip
                print(f"    beside it, the raw {scan.split('_')[0]} scan's CPU per row: {cost}")
        print_profile_summary(p.get("profile") or {})
    if "parity RSS" in missed:
        print(f"  parity memory: {results['parity']['rss_mb']}")


def print_cpu(figures: dict[str, dict[str, float]], *, per_message: bool) -> None:
    ours = {n: f for n, f in figures.items() if not n.startswith("(")}
    total = sum(f["core_share"] for f in ours.values())
    others = figures.get("(other processes)", {}).get("core_share", 0.0)
    print(f"    the processes below: {total:.0%} of one core ({os.cpu_count()} cores); "
          f"other processes on the machine: {others:.0%} of a core")  # fmt: skip
    for name, f in ours.items():
        if f["core_share"] >= 0.005:
            per = f", {f['us_per_message']:.0f} µs per message" if per_message else ""
            print(f"    {name:<22} {f['core_share']:>5.0%} of a core{per}")


# -- main ------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--only", choices=["backfill", "parity", "monolith"],
                        help="one part (parity alone backfills first, untimed as a figure)")  # fmt: skip
    parser.add_argument("--baseline-rows", type=int, default=500_000,
                        help="rows bench/pipeline.py's baseline puts to measure the floor")  # fmt: skip
    parser.add_argument("--load-rate", type=float, default=100.0,
                        help="background requests/s against the monolith (fixed rate)")  # fmt: skip
    parser.add_argument("--seconds", type=int, default=60,
                        help="length of each measured window of the monolith's load")  # fmt: skip
    parser.add_argument("--warmup", type=int, default=10, help="load before the first window (s)")
    parser.add_argument("--ramp", type=int, default=5,
                        help="seconds between the backfill's start and its window")  # fmt: skip
    parser.add_argument("--rooms", type=int, default=64, help="seeded rooms the load covers")
    parser.add_argument("--write-share", type=float, default=0.10, help="share of posts")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--backfill-args", default="",
                        help="more options for chat-migrate backfill all, e.g. "
                             "'--rooms-in-parallel 4' (default: none, the settings' values)")  # fmt: skip
    parser.add_argument("--parity-timeout", type=float, default=900,
                        help="stop parity after this many seconds; its rate is then taken "
                             "over the messages it compared")  # fmt: skip
    parser.add_argument("--profile", action="store_true",
                        help="py-spy each chat-migrate job (its worker processes too) and print "
                             "where its CPU went")  # fmt: skip
    parser.add_argument("--via-hints", action="store_true",
                        help="backfill with raw range hints instead of chat-migrate (the "
                             "pipeline's own rate, for comparison; no marks)")  # fmt: skip
    parser.add_argument("--serve-load", help=argparse.SUPPRESS)
    parser.add_argument("--rooms-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_load:
        serve_load(args.serve_load, args.rooms_file, args.load_rate, args.seed, args.write_share,
                   args.out)  # fmt: skip
        return 0
    if (args.baseline_rows < 1 or args.load_rate <= 0 or args.seconds < 1 or args.warmup < 0
            or args.ramp < 0 or args.rooms < 1 or not 0 <= args.write_share <= 1):  # fmt: skip
        parser.error("--baseline-rows, --load-rate, --seconds, --rooms must be positive, "
                     "--warmup and --ramp not negative, --write-share in 0..1")  # fmt: skip
    if args.profile and not PY_SPY.exists():
        raise SystemExit(f"--profile needs {PY_SPY}: .venv/bin/pip install py-spy")
    if not CHAT_MIGRATE.exists():
        raise SystemExit(f"{CHAT_MIGRATE} missing: install the project (pip install -e .)")

    # A TERM or HUP stops the run the way Ctrl-C does: through every `finally` below, so its
    # processes are stopped and its topics, tables and databases removed (Python's default
    # for TERM exits at once and leaves them).
    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)
    wanted = {"MariaDB", "Kafka", "HBase", "HBase Thrift", "PHP-FPM", "monolith nginx"}
    found = {name for name, pid in stack_pids().items() if Path(f"/proc/{pid}").exists()}
    if missing := sorted(wanted - found):
        raise SystemExit(f"no live process for {', '.join(missing)} in {REPO}/.state's pid files: "
                         "start this checkout's stack (make up); the CPU figures are read there")  # fmt: skip
    stack = Stack.from_env()
    BENCH_STATE.mkdir(parents=True, exist_ok=True)
    state = BENCH_STATE / f"migrator-{time.strftime('%Y%m%dT%H%M%S')}"
    state.mkdir()
    run = Run(stack, KafkaSettings(bootstrap=stack.kafka_bootstrap), LegacyDatabaseSettings(),
              state)  # fmt: skip
    load_before = os.getloadavg()
    print(f"bench/migrator.py run {run.run}: {os.cpu_count()} cores, load average "
          f"{load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}; "
          f"logs in {state}", flush=True)  # fmt: skip
    results: dict[str, Any] = {}
    model: ReadModel | None = None
    try:
        if args.only in (None, "backfill"):
            model = backfill_part(run, state, args, results)
            if args.only == "backfill":
                model.close()
                model = None
        if args.only in (None, "parity"):
            if model is None:
                model = fill_for_parity(run, state, args, results)
            parity_part(run, state, model, args, results)
        if model is not None:
            model.close()
            model = None
        run.cleanup()  # the backfill's tables and topics go before the monolith's part
        if args.only in (None, "monolith"):
            monolith_part(run, state, args, results)
    finally:
        if model is not None:
            model.close()
        run.cleanup()
    results.pop("_mariadb_scan", None)
    rows = table_rows(results)
    results |= {
        "run": run.run, "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cores": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "goals": {"backfill_share_of_ceiling": BACKFILL_SHARE_OF_CEILING,
                  "monolith_p99_growth": P99_GROWTH,
                  "parity_share_of_slower_scan": PARITY_SHARE_OF_SCAN,
                  "parity_rss_mb": PARITY_RSS_MB, "parity_rss_flat_growth": FLAT_GROWTH},
        "table": rows, "args": {k: v for k, v in vars(args).items()
                                if k not in ("serve_load", "rooms_file", "out")},
    }  # fmt: skip
    print_table(rows)
    print_limits(results, rows)
    out = BENCH_STATE / "migrator.json"
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nfigures written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
