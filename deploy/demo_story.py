"""The README's main job, told as a person would watch it: a migration of the seeded data set,
room by room, with live traffic through the front door the whole time (`make demo`).

Every step runs the operator's own command (`chat-migrate ...`, shown with its output, progress
bars included), then says what it proved. Nothing here is a shortcut the operator would not
have: the traffic is real clients' requests through the front door, the moves go through the
control store's guards, the backfill and the parity check are the jobs of `chat-migrate`.

Run by deploy/demo.sh after the stack and the pipeline are up and the data set is seeded:

    .venv/bin/python deploy/demo_story.py --steps 1,10

`--steps`: the sticky percentages the story moves through the phases, one after the other (a
room in 1 % is also in 10 %): each step is cutover to dual_write, backfill, parity, cutover to
shadow_read.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shlex
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from gateway.domain.phases import in_percentage
from legacy_adapters.adapters.mariadb.engine import make_engine
from legacy_adapters.settings import LegacyDatabaseSettings
from migrator import bootstrap
from migrator.settings import MigratorSettings

PROJECT = Path(__file__).resolve().parent.parent
CLI = str(PROJECT / ".venv" / "bin" / "chat-migrate")
BOLD, DIM, GREEN, RED, RESET = "\033[1m", "\033[2m", "\033[32m", "\033[31m", "\033[0m"


def say(line: str = "") -> None:
    print(line, flush=True)


def step(number: int, title: str) -> None:
    say()
    say(f"{BOLD}== {number}. {title}{RESET}")


def proved(line: str) -> None:
    say(f"{GREEN}   proved:{RESET} {line}")


def failed(line: str) -> None:
    say(f"{RED}   not as expected:{RESET} {line}")


def chat_migrate(*args: str, capture: bool = False) -> subprocess.CompletedProcess[str]:
    """Runs `chat-migrate` as the operator would, showing the command; its output goes to the
    terminal (progress bars included) unless `capture`."""
    say(f"{DIM}   $ chat-migrate {shlex.join(args)}{RESET}")
    return subprocess.run(  # noqa: S603 (our own console script, arguments from this script)
        [CLI, *args], text=True, capture_output=capture, check=False
    )


# -- live traffic through the front door ---------------------------------------------------


@dataclass
class Client:
    room_id: int
    token: str
    own: list[int] = field(default_factory=list)  # messages it posted (it edits them)


@dataclass
class Traffic:
    """Clients posting, reading and editing through the front door, as users would, while the
    migration runs. Counts every answer; an error of ours (a 5xx, a refused connection) is
    remembered with its request."""

    base_url: str
    clients: list[Client]
    pace_s: float = 0.2
    answers: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for number, client in enumerate(self.clients):
            thread = threading.Thread(target=self._run, args=(client, number), daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def total(self) -> int:
        return sum(self.answers.values())

    def _run(self, client: Client, number: int) -> None:
        rng = random.Random(number)
        with httpx.Client(
            base_url=self.base_url, headers={"X-ChatWorkToken": client.token}, timeout=10
        ) as http:
            while not self._stop.is_set():
                path = f"/v2/rooms/{client.room_id}/messages"
                roll = rng.random()
                try:
                    if roll < 0.15:
                        body = f"demo {number}: こんにちは 👋 {time.time():.3f}"
                        answer = http.post(path, data={"body": body})
                        if answer.status_code == 200:
                            client.own.append(int(answer.json()["message_id"]))
                    elif roll < 0.2 and client.own:
                        message = rng.choice(client.own)
                        answer = http.put(f"{path}/{message}", data={"body": f"edited {message}"})
                    elif roll < 0.35:
                        answer = http.get(path)  # force=0: moves this client's cursor
                    else:
                        answer = http.get(path, params={"force": 1})
                    self.answers[f"{answer.request.method} {answer.status_code}"] += 1
                    if answer.status_code >= 500:
                        self.errors.append(f"{answer.request.method} {answer.request.url.path}"
                                           f" -> {answer.status_code}")  # fmt: skip
                except httpx.HTTPError as exc:
                    self.answers["no answer"] += 1
                    self.errors.append(f"{path}: {exc!r}")
                time.sleep(self.pace_s)


def pick_clients(database: LegacyDatabaseSettings, percent: float, count: int) -> list[Client]:
    """`count` rooms of the first step's percentage that have a member who may post, each with
    that member's token (from the monolith's own tables)."""
    engine = make_engine(database, pool_size=1)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT rm.room_id, MIN(t.token) FROM room_members rm "
                "JOIN api_tokens t USING (account_id) WHERE rm.role <> 'readonly' "
                "GROUP BY rm.room_id ORDER BY rm.room_id"))  # fmt: skip
            chosen = [Client(int(r), str(t)) for r, t in rows if in_percentage(int(r), percent)]
    finally:
        engine.dispose()
    random.Random(7).shuffle(chosen)
    return chosen[:count]


# -- what the gateway saw -----------------------------------------------------------------


class Gateway:
    def __init__(self, admin_url: str, token: str) -> None:
        self._http = httpx.Client(
            base_url=admin_url, headers={"Authorization": f"Bearer {token}"}, timeout=10
        )

    def comparisons(self) -> Counter[str]:
        """The shadow comparisons so far, by outcome (the gateway's metrics)."""
        outcomes: Counter[str] = Counter()
        for line in self._http.get("/metrics").text.splitlines():
            if line.startswith("chat_gateway_shadow_comparisons_total{"):
                labels, value = line.rsplit(" ", 1)
                outcome = labels.split('outcome="', 1)[1].split('"', 1)[0]
                outcomes[outcome] += int(float(value))
        return outcomes

    def differences(self) -> list[dict[str, Any]]:
        answer = self._http.get("/admin/shadow/differences").json()
        return list(answer.get("differences", answer) if isinstance(answer, dict) else answer)


async def pipeline_catches_up(timeout_s: float) -> float | None:
    """Waits until the capture pipeline has carried into the read model everything the
    monolith had committed now (the migrator's frontier); the seconds it took, or None."""
    pipeline = bootstrap.pipeline(MigratorSettings.from_env())
    started = time.monotonic()
    try:
        frontier = await pipeline.mark()
        while not await pipeline.reached(frontier):
            if time.monotonic() - started > timeout_s:
                return None
            await asyncio.sleep(1)
        return time.monotonic() - started
    finally:
        await pipeline.close()


# -- the story ------------------------------------------------------------------------------


def story(args: argparse.Namespace) -> int:
    state = Path(os.environ.get("MIG_STATE_DIR", PROJECT / ".state"))
    database = LegacyDatabaseSettings()
    front_door = f"http://127.0.0.1:{os.environ.get('MIG_FRONTDOOR_PORT', '8000')}"
    admin = f"http://127.0.0.1:{os.environ.get('MIG_GATEWAY_ADMIN_PORT', '8091')}"
    token = (state / "gateway" / "admin-token").read_text().strip()
    gateway = Gateway(admin, token)
    steps = [float(s) for s in args.steps.split(",")]
    problems: list[str] = []

    say(f"{BOLD}A live migration of the seeded chat data set, room by room{RESET} "
        f"(engine: {args.engine}).")  # fmt: skip
    say("Clients talk to the front door; rooms move legacy -> dual_write -> shadow_read in "
        f"sticky steps of {', '.join(f'{s:g} %' for s in steps)} of the rooms.")  # fmt: skip

    step(1, "The capture pipeline is caught up with the monolith")
    say("   (a pipeline that was down has the monolith's binlog to read through first)")
    took = asyncio.run(pipeline_catches_up(args.catch_up_s))
    if took is None:
        failed(f"the pipeline did not catch up within {args.catch_up_s:g} s: `make status`")
        return 1
    proved(f"everything the monolith had committed is in the read model ({took:.1f} s): the "
           "binlog source, the capturer and the updater run and keep up")  # fmt: skip
    recorded = chat_migrate("status", "--json", capture=True)
    if recorded.returncode == 0 and any(
        phase != "legacy" and count
        for phase, count in json.loads(recorded.stdout).get("rooms_by_phase", {}).items()
    ):
        say("   a previous run left rooms out of legacy: the story starts again from the start")
        chat_migrate("rollback", "all", "--to", "legacy", "--why", "demo: tell the story again")
        proved("a rollback is one command, whatever phase each room was in")

    step(2, "Live traffic through the front door, from now to the end")
    clients = pick_clients(database, steps[0], args.clients)
    if not clients:
        failed(f"no room of {steps[0]:g} % has a member who may post: is the data set seeded?")
        return 1
    traffic = Traffic(front_door, clients)
    traffic.start()
    time.sleep(3)
    say(f"   {len(clients)} clients post, read (force=0 and force=1) and edit in rooms "
        f"{', '.join(str(c.room_id) for c in clients)} through {front_door}: "
        f"{traffic.total()} answers so far")  # fmt: skip
    chat_migrate("status", "--rooms", "5")

    number = 3
    report_dir: str | None = None
    try:
        for percent in steps:
            rooms = f"{percent:g}%"
            why = f"demo: step {rooms}"
            step(number, f"{rooms} of the rooms enter dual_write: writes are captured from now on")
            done = chat_migrate("cutover", rooms, "--to", "dual_write", "--why", why)
            if done.returncode == 0:
                proved(f"every room of {rooms} goes through the gateway, which spools a hint for "
                       "each write it sees; the monolith still answers every request")  # fmt: skip
            else:
                problems.append(f"cutover {rooms} to dual_write exited {done.returncode}")
            number += 1

            step(number, f"Backfill of {rooms}, hottest rooms first, while the clients write")
            job = f"demo-backfill-{rooms[:-1]}"
            done = chat_migrate("backfill", rooms, "--job", job, "--restart")
            if done.returncode == 0:
                proved("the history of every room is in the read model, through the same "
                       "capture path as live writes, and each room is marked backfilled only "
                       "once its last range is visible there")  # fmt: skip
            else:
                problems.append(f"backfill {rooms} exited {done.returncode}")
            number += 1

            step(number, f"Parity of {rooms}: the monolith and the read model, message by message")
            out = state / "migrator" / "demo-reports" / f"step-{rooms[:-1]}"
            done = chat_migrate("parity", rooms, "--out", str(out))
            runs = sorted(out.glob("*/parity.html"), key=lambda path: path.stat().st_mtime)
            report_dir = str(runs[-1].parent) if runs else report_dir
            if done.returncode == 0:
                proved("every message and cursor of these rooms is the same on both sides at a "
                       "frontier the read model reached; rows written meanwhile were re-checked, "
                       "not reported; each room is marked parity-clean")  # fmt: skip
            else:
                problems.append(f"parity {rooms} exited {done.returncode}")
            number += 1

            step(number, f"{rooms} enter shadow_read: the new core answers too, in shadow")
            before = gateway.comparisons()
            done = chat_migrate("cutover", rooms, "--to", "shadow_read", "--why", why)
            if done.returncode != 0:
                problems.append(f"cutover {rooms} to shadow_read exited {done.returncode}")
            time.sleep(args.shadow_s)
            after = gateway.comparisons()
            seen = {k: after[k] - before[k] for k in after if after[k] - before[k]}
            say(f"   shadow comparisons in {args.shadow_s:g} s of live traffic: {seen or 'none'}")
            if seen.get("same", 0) > 0 and not seen.get("different"):
                proved("reads of these rooms are answered by the monolith as always, and the "
                       "Read API's answers, compared after the read model caught up with the "
                       "monolith, were the same")  # fmt: skip
            else:
                problems.append(f"shadow comparisons of {rooms}: {seen}")
            number += 1
    finally:
        traffic.stop()

    step(number, "What the clients saw")
    say(f"   {traffic.total()} requests through the front door: {dict(traffic.answers)}")
    if traffic.errors:
        problems.append(f"{len(traffic.errors)} errors: {traffic.errors[:5]}")
    else:
        proved("no request failed while rooms moved, the backfill ran and parity compared")
    number += 1

    step(number, "Where things stand")
    chat_migrate("status", "--rooms", "10")
    say()
    if report_dir is not None:
        say(f"The parity report: {report_dir}/ (parity.html: open it in a browser, e.g. "
            f"`python3 -m http.server -d {report_dir} 8765` then http://127.0.0.1:8765/parity.html;"
            " parity.json for machines)")  # fmt: skip
    say("Go on by hand (chat-migrate --help; every command has --help and --dry-run):")
    say("  chat-migrate cutover 50% --to dual_write --why 'next step'    # more rooms")
    say("  chat-migrate backfill 50% && chat-migrate parity 50%")
    say("  chat-migrate cutover 50% --to shadow_read --why 'next step'")
    say("  chat-migrate rollback 10% --to legacy --why 'back out'          # one command back")
    say(
        "  chat-migrate kill-switch on --why 'stop everything'             # every room to the monolith"
    )
    say("  chat-migrate job pause demo-backfill-50 --why 'peak hour'      # a running job")
    say(f"Admin API: {admin}/admin/rooms (Bearer token in {state}/gateway/admin-token)")
    if problems:
        say()
        for problem in problems:
            failed(problem)
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", default="1,10", help="sticky percentages, in order")
    parser.add_argument("--clients", type=int, default=6, help="live clients (one room each)")
    parser.add_argument("--shadow-s", type=float, default=15.0, help="shadow reads watched")
    parser.add_argument("--catch-up-s", type=float, default=900.0, help="pipeline catch-up bound")
    parser.add_argument("--engine", default=os.environ.get("MIG_ENGINE", "kafka-hbase"))
    args = parser.parse_args()
    try:
        return story(args)
    except KeyboardInterrupt:
        say("\ninterrupted: the stack keeps running; `make demo` tells the story again")
        return 130


if __name__ == "__main__":
    sys.exit(main())
