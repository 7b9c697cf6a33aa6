"""`chat-capturer`: hints in, the monolith's current state out, as full-state events.

Thin: reads the settings, builds the worker from the composition root, runs it until a signal.
What the worker does and promises: `newcore/service/capture_worker.py` (the loop) and `newcore/adapters/kafka/subscription.py`
(Kafka's side of it).
"""

from __future__ import annotations

import argparse
import sys

from newcore import bootstrap
from newcore.service.worker import run_until_signalled
from newcore.settings import NewCoreSettings, SettingsError


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(
        prog="chat-capturer",
        description="Capture hints into full-state events: read the monolith's rows the hints "
        "name and produce events, follow-up hints, dead letters and the consumed offsets in one "
        "Kafka transaction per batch. Settings: MIG_CAPTURER_* (group, transactional id prefix, "
        "batch bounds, ops host and port, backoff), MIG_TOPIC_* (topics and their partition "
        "count), MIG_KAFKA_*, MIG_MARIADB_*, MIG_DB_*. Ops: GET /metrics and /healthz on "
        "MIG_CAPTURER_OPS_PORT (default 9312). Kafka or MariaDB unreachable, at start too: it "
        "waits, unhealthy, and retries. Exit 2: a bad setting; 3: a topic has another "
        "partition count.",
    ).parse_args(argv)
    try:
        settings = NewCoreSettings.from_env()
    except SettingsError as exc:
        print(f"chat-capturer: {exc}", file=sys.stderr)
        return 2
    with bootstrap.capturer(settings) as worker:
        return run_until_signalled("chat-capturer", worker, f"Kafka at {settings.kafka.bootstrap}")


if __name__ == "__main__":
    sys.exit(main())
