"""Promise 1 (DESIGN.md): the monolith never breaks because of us. Promise 2 alongside it:
nothing committed is lost.

Four rooms, two in dual_write and two in shadow_read, each with a client of its own posting,
reading and editing through the front door without pause, while the parts of the new side fail
one after another: Kafka cut off from the gateway, HBase cut off from the Read API, the Read
API stopped, the gateway killed with -9 (and started again). Every answer a client gets is the
monolith's (a read is compared byte for byte with the same read made straight at the monolith
right after; a post answers 200 with an id the monolith holds), no 5xx comes from us, and the
latency stays within the budget below. When each part is back the spool drains and every
message written meanwhile is in the read model.

The budget, measured on the client's side:
- added latency: per read, the time through the front door less the time of the same read made
  straight at the monolith right after it (the pair shares the machine's load of that moment).
  Over every phase where a part is down or coming back, pooled (hundreds of pairs), its p99 may
  exceed the p99 of the steady phase (everything up, at least 200 pairs) by at most 50 ms; and
  in each such phase (at least 60 pairs) its median may exceed the steady median by at most
  50 ms: a failure does not slow the clients. A p99 is judged over hundreds of pairs only: over
  sixty it is one read, and one read on two shared cores is whatever the JVMs beside it did in
  that millisecond (CI failed on it once, with the steady phase's own p99 at 138 ms). Phases in
  which the test starts a Python process again (the binlog source, the Read API, the gateway)
  share this machine's two cores with that start and are held to the max bound only;
- max <= 1 s: any request through the front door, in every phase, the gateway's kill -9
  included.
What the gateway adds when all is well is reported, not asserted here (bench/ measures it
against its baselines).

The one exception is structural, stated and bounded: a request the gateway had taken when it
was killed gets the front door's 502, whatever its method (deploy/frontdoor.sh: nginx passes
nothing on by itself, since a GET force=0 or a PUT .../read sent twice is not harmless). That
is a request under way at the kill, or sent before the killed process was gone (until then the
kernel still accepts connections on its socket). The test reports such requests and requires
that each lies in that window; after it, the front door's connection is refused and the
monolith answers.
"""

from __future__ import annotations

import itertools
import json
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.client import Answer, Operator, Person
from tests.support.gateway_world import GatewayWorld, gateway_world
from tests.support.processes import Service
from tests.support.stack import Stack

pytestmark = pytest.mark.services

ADDED_BUDGET_S = 0.050
MAX_BUDGET_S = 1.0
OUTAGE_S = 5.0
# Paired reads each judged phase lasts for (its p99 is then not just its slowest read).
MEASURED_READS = 60
# Paired reads of the steady phase, the reference (a p99 over fewer is a maximum).
STEADY_READS = 200
# Phases in which the rig starts a Python process on the same two cores as the gateway (in
# production it runs elsewhere): CPU the gateway does not get. Held to the max bound only.
STARTING = ("binlog source restarting", "read api restarting", "read api warming", "gateway back")
OUTAGES = (
    "steady",
    "kafka cut off from the gateway",
    "hbase cut off from the read api",
    "read api stopped",
    "gateway killed",
)


@dataclass
class Exchange:
    """One request through the front door, and for a read the same read made straight at the
    monolith right after."""

    phase: str
    room: int
    through: Answer
    direct: Answer | None = None

    def failure(self) -> str | None:
        a = self.through
        if a.status >= 500 or a.status == 0:
            return f"{a} (a 5xx or no answer)"
        if self.direct is not None and not a.same_as(self.direct):
            return f"{a}\n  but the monolith answers {self.direct}"
        if a.method in ("POST", "PUT") and (
            a.status != 200 or not a.json()["message_id"].isdigit()
        ):
            return f"{a} (the monolith's write did not succeed)"
        return None


@dataclass
class Traffic:
    """One client per room, posting, reading and editing through the front door without
    pause; `phase` names what is failing now."""

    people: list[tuple[Person, int]]
    phase: str = "before"
    exchanges: list[Exchange] = field(default_factory=list)
    posted: dict[int, list[tuple[str, int]]] = field(default_factory=dict)  # room -> (phase, id)
    cpu: list[tuple[str, float, float | None]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for person, room in self.people:
            self.posted[room] = []
            thread = threading.Thread(target=self._client, args=(person, room), daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def _record(self, room: int, through: Answer, direct: Answer | None = None) -> Exchange:
        exchange = Exchange(self.phase, room, through, direct)
        self.exchanges.append(exchange)
        return exchange

    def _client(self, person: Person, room: int) -> None:
        monolith = person.directly()
        n = 0
        while not self._stop.is_set():
            n += 1
            phase = self.phase
            posted = self._record(room, person.posts(room, f"{phase} の投稿 {n} 🚦"))
            if posted.through.status == 200:
                message = posted.through.message_id
                self.posted[room].append((phase, message))
                self._record(room, person.reads(room), monolith.reads(room))
                self._record(room, person.opens(room, message), monolith.opens(room, message))
                if n % 4 == 0:
                    self._record(room, person.edits(room, message, f"{phase} で編集 {n} ✏️"))
            time.sleep(0.05)
        monolith.close()

    def during(self, phase: str) -> list[Exchange]:
        return [e for e in self.exchanges if e.phase == phase]

    def enter(self, phase: str, gateway: Service) -> None:
        """A new phase; the gateway's CPU time so far is noted (its share per phase is in the
        report: a gateway starved of CPU explains added latency)."""
        self.cpu.append((phase, time.monotonic(), gateway.cpu_seconds() if gateway.alive else None))
        self.phase = phase

    def added(self, phase: str) -> list[float]:
        """Per paired read of the phase: seconds through the front door less seconds direct."""
        return [
            e.through.seconds - e.direct.seconds for e in self.during(phase) if e.direct is not None
        ]

    def hold(self, seconds: float, reads: int = 20) -> None:
        """The current phase lasts `seconds`, and until `reads` reads were compared in it (a
        loaded machine serves fewer), at most a minute."""
        time.sleep(seconds)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if sum(1 for e in self.during(self.phase) if e.direct is not None) >= reads:
                return
            time.sleep(0.2)


def p99(values: list[float]) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def cpu_share(marks: list[tuple[str, float, float | None]], phase: str) -> float | None:
    """The gateway's CPU seconds per wall second during the phase (None: it was not running
    throughout)."""
    for (name, began, cpu), (_, ended, cpu_after) in itertools.pairwise(marks):
        if name == phase and cpu is not None and cpu_after is not None and cpu_after >= cpu:
            return round((cpu_after - cpu) / (ended - began), 2)
    return None


@pytest.fixture
def relayed_world(stack: Stack, tmp_path: Path) -> Iterator[GatewayWorld]:
    with gateway_world(stack, tmp_path / "logs", gateway_kafka_relayed=True) as built:
        yield built


def test_no_failure_of_the_new_side_reaches_a_client_and_no_write_is_lost(
    relayed_world: GatewayWorld, tmp_path: Path
) -> None:
    world = relayed_world
    assert world.kafka_relay is not None
    ops = Operator(world)
    seed = world.seed
    members = [seed.account(f"利用者 {n}") for n in range(4)]
    rooms = [seed.room(member, name=f"部屋 {n}") for n, member in enumerate(members)]
    for room, member in zip(rooms, members, strict=True):
        seed.messages(room, member.account_id, [f"過去 {n}" for n in range(3)])
    shadow_read = rooms[2:]  # the first two stay in dual_write
    assert ops.moves(rooms, to="dual_write").status_code == 200
    world.backfill(shadow_read)
    assert ops.moves(shadow_read, to="shadow_read").status_code == 200
    people = [
        (Person(m, world.front_door.url, world.monolith.url), r)
        for m, r in zip(members, rooms, strict=True)
    ]
    probe = people[0][0]
    world.until(
        lambda: (probe.reads(rooms[0]), ops.requests_seen())[1] > 0, "the gateway inspecting"
    )
    traffic = Traffic(people)
    traffic.start()
    kill_window: tuple[float, float] = (0.0, 0.0)
    try:
        traffic.enter("steady", world.gateway)
        traffic.hold(OUTAGE_S, reads=STEADY_READS)

        # Kafka cut off from the gateway. The binlog source is stopped too, so that what the
        # read model gets of these writes it gets through the gateway's spool alone.
        traffic.enter("kafka cut off from the gateway", world.gateway)
        world.binlog.stop()
        world.kafka_relay.cut()
        traffic.hold(OUTAGE_S, reads=MEASURED_READS)
        assert ops.spool_pending() > 0, "the gateway's hints did not wait in its spool"
        traffic.enter("kafka back", world.gateway)
        world.kafka_relay.start()
        world.until(lambda: ops.spool_pending() == 0, "the spool drained", seconds=30)
        for room in rooms:
            for phase, message in traffic.posted[room]:
                if phase == "kafka cut off from the gateway":
                    world.until(
                        lambda room=room, message=message: (
                            world.read_model.message(room, message)  # type: ignore[misc]
                            is not None
                        ),
                        f"message {message} posted while Kafka was cut off, from the spool",
                    )
        traffic.hold(0, reads=MEASURED_READS)
        traffic.enter("binlog source restarting", world.gateway)
        world.binlog.start()
        world.until_healthy(world.binlog)

        traffic.enter("hbase cut off from the read api", world.gateway)
        world.hbase_relay.cut()
        traffic.hold(OUTAGE_S, reads=MEASURED_READS)
        traffic.enter("hbase back", world.gateway)
        world.hbase_relay.start()
        same = ops.comparisons(outcome="same")
        world.until(lambda: ops.comparisons(outcome="same") > same + 2, "comparisons same again")
        traffic.hold(0, reads=MEASURED_READS)

        traffic.enter("read api stopped", world.gateway)
        world.read_api.stop()
        traffic.hold(OUTAGE_S, reads=MEASURED_READS)
        traffic.enter("read api restarting", world.gateway)
        world.read_api.start()
        world.until_healthy(world.read_api)
        # Its first seconds (connection pools, first requests through cold code) still share
        # the two cores with the clients; then it is measured as back.
        traffic.enter("read api warming", world.gateway)
        traffic.hold(2)
        traffic.enter("read api back", world.gateway)
        traffic.hold(2, reads=MEASURED_READS)

        traffic.enter("gateway killed", world.gateway)
        killed_at = time.monotonic()
        world.gateway.kill9()
        kill_window = (killed_at, time.monotonic())
        traffic.hold(OUTAGE_S, reads=MEASURED_READS)
        traffic.enter("gateway back", world.gateway)
        world.gateway.start()
        world.until_healthy(world.gateway)
        seen = ops.requests_seen()
        world.until(lambda: ops.requests_seen() > seen + 10, "the restarted gateway inspecting")
        traffic.enter("all back", world.gateway)
        traffic.hold(2, reads=MEASURED_READS)
    finally:
        traffic.enter("end", world.gateway)
        traffic.stop()
        for person, _ in people:
            person.close()

    # What each client got, phase by phase.
    report: dict[str, dict[str, Any]] = {}
    failures: list[str] = []
    tolerated: list[str] = []
    phases = list(dict.fromkeys(e.phase for e in traffic.exchanges))
    for phase in phases:
        exchanges = traffic.during(phase)
        reads = [e for e in exchanges if e.direct is not None]
        through = [e.through.seconds for e in reads]
        direct = [e.direct.seconds for e in reads if e.direct is not None]
        added = [e.through.seconds - e.direct.seconds for e in reads if e.direct is not None]
        report[phase] = {
            "requests": len(exchanges),
            "reads compared": len(reads),
            "p50 ms": ms(statistics.median(through)) if through else None,
            "direct p50 ms": ms(statistics.median(direct)) if direct else None,
            "p99 ms": ms(p99(through)),
            "direct p99 ms": ms(p99(direct)),
            "added p99 ms": ms(p99(added)),
            "max ms (any request)": ms(max((e.through.seconds for e in exchanges), default=0)),
            "gateway cpu share": cpu_share(traffic.cpu, phase),
            "answers": dict(Counter(f"{e.through.method} {e.through.status}" for e in exchanges)),
        }
        for exchange in exchanges:
            problem = exchange.failure()
            if problem is None:
                continue
            answer = exchange.through
            in_flight = (
                answer.started <= kill_window[1]
                and answer.started + answer.seconds >= kill_window[0]
            )
            problem += f" (sent {answer.started - kill_window[0]:+.3f} s from the kill)"
            if phase == "gateway killed" and answer.status == 502 and in_flight:
                tolerated.append(problem)
            else:
                failures.append(f"[{phase}] {problem}")
    (tmp_path / "latency.json").write_text(json.dumps(report, indent=1, ensure_ascii=False))
    (tmp_path / "failures.txt").write_text("\n".join(failures))
    print(json.dumps(report, indent=1, ensure_ascii=False))
    print(f"tolerated (inside the gateway when it was killed): {tolerated}")

    assert failures == [], "\n".join(failures[:20])
    # Nothing committed is lost: the spool drains and the read model holds what the monolith
    # holds, every write made while a part was down included.
    world.until(lambda: ops.spool_pending() == 0, "the spool drained at the end")
    world.until_read_model_matches(rooms)
    posted_during = sum(len(ids) for ids in traffic.posted.values())
    assert posted_during >= 100, posted_during

    # The latency budget, last: every other promise is checked whatever the machine's load.
    steady = traffic.added("steady")
    over: list[str] = []
    judged: list[float] = []
    for phase, figures in report.items():
        if phase in OUTAGES and figures["reads compared"] < 20:
            over.append(f"{phase}: only {figures['reads compared']} reads compared")
        if figures["max ms (any request)"] > MAX_BUDGET_S * 1000:
            over.append(f"{phase}: a request took {figures['max ms (any request)']} ms > 1 s")
        if phase == "steady" or phase in STARTING or phase == "end":
            continue
        added = traffic.added(phase)
        if len(added) < MEASURED_READS:
            continue
        judged += added
        if statistics.median(added) > statistics.median(steady) + ADDED_BUDGET_S:
            over.append(
                f"{phase}: added median {ms(statistics.median(added))} ms > steady "
                f"{ms(statistics.median(steady))} ms + 50 ms"
            )
    assert len(steady) >= STEADY_READS, len(steady)
    assert len(judged) >= 5 * MEASURED_READS, len(judged)
    if p99(judged) > p99(steady) + ADDED_BUDGET_S:
        over.append(
            f"phases with a part down or back ({len(judged)} reads): added p99 "
            f"{ms(p99(judged))} ms > steady {ms(p99(steady))} ms + 50 ms"
        )
    assert over == [], "over the latency budget:\n" + "\n".join(over)
