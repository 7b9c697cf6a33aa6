"""The gateway's Prometheus metrics, per phase and route (DESIGN.md, "Observability").

Labels stay few and bounded: `phase` (five values), `route` (the contract's kinds and
"other"), `outcome`. Never a room id or a token as a label.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

# Upstream answers of this machine's stand-in take 0.5-10 ms; the buckets resolve that range.
_LATENCY = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

REQUESTS = Counter(
    "chat_gateway_requests_total", "Requests answered, by phase, route and status class",
    ["phase", "route", "status"],
)  # fmt: skip
UPSTREAM_SECONDS = Histogram(
    "chat_gateway_upstream_seconds",
    "From the request's last byte sent on to the monolith's answer's last byte",
    ["phase", "route"],
    buckets=_LATENCY,
)
ADDED_SECONDS = Histogram(
    "chat_gateway_added_seconds",
    "Time in the gateway besides the monolith's: request received to answer received, less "
    "the upstream time, plus our response hooks",
    ["phase", "route"],
    buckets=_LATENCY,
)
UPSTREAM_ERRORS = Counter(
    "chat_gateway_upstream_errors_total", "Requests the monolith did not answer (connection errors)",
    ["phase", "route"],
)  # fmt: skip
HINTS = Counter(
    "chat_gateway_hints_total",
    "Hints by what happened to them: spooled, shipped, dropped (spool full or unwritable), "
    "unreadable (an answer we could not take a hint from)",
    ["outcome"],
)
COMPARISONS = Counter(
    "chat_gateway_shadow_comparisons_total",
    "Shadow comparisons by outcome: same, different, late, skipped (over the concurrency "
    "bound), not_sampled (outside MIG_SHADOW_SAMPLE), error (the Read API did not answer)",
    ["route", "outcome"],
)
COMPARISON_LAG = Histogram(
    "chat_gateway_shadow_lag_seconds",
    "From the monolith's answer to the comparison's verdict",
    ["outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
DIFFERENCES = Counter(
    "chat_gateway_shadow_differences_total", "Field differences found by shadow reads", ["field"]
)
CONTROL_AGE = Gauge(
    "chat_gateway_control_snapshot_age_seconds",
    "Seconds since the control store last answered (the phases in use are this old at most)",
)
CONTROL_REVISION = Gauge("chat_gateway_control_revision", "The control store's revision in use")


class SpoolCollector:
    """The spool's and the shipper's own counts, read at scrape time (they live in the spool
    and the shipper, which know nothing of Prometheus)."""

    def __init__(self, state: Callable[[], Any], stats: Callable[[], Any]) -> None:
        self._state = state
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        state, stats = self._state(), self._stats()
        shipped = CounterMetricFamily(
            "chat_gateway_hints_shipped", "Hints shipped from the spool to the hints topic"
        )
        shipped.add_metric([], stats.shipped)
        failures = CounterMetricFamily(
            "chat_gateway_ship_failures", "Tries to ship that failed (the hints topic unavailable)"
        )
        failures.add_metric([], stats.ship_failures)
        pending = GaugeMetricFamily(
            "chat_gateway_spool_pending_records", "Hints spooled, not shipped"
        )
        pending.add_metric([], state.pending_records)
        pending_bytes = GaugeMetricFamily("chat_gateway_spool_pending_bytes", "Bytes not shipped")
        pending_bytes.add_metric([], state.pending_bytes)
        age = GaugeMetricFamily(
            "chat_gateway_spool_oldest_pending_seconds", "Age of the oldest hint not shipped"
        )
        age.add_metric([], state.oldest_pending_age_s or 0.0)
        lost = GaugeMetricFamily("chat_gateway_spool_lost_rooms", "Rooms that lost hints (repair)")
        lost.add_metric([], len(state.lost_rooms))
        yield from (shipped, failures, pending, pending_bytes, age, lost)

    def describe(self) -> Iterator[Metric]:
        return iter(())
