"""`chat-updater`: the read-model updater, Kafka events -> HBase read model.

Thin: reads the settings, builds the worker from the composition root, runs it until a signal.
What the worker does and promises: `newcore/service/update_worker.py` (the loop) and `newcore/adapters/kafka/subscription.py`
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
        prog="chat-updater",
        description="Apply the events topic to the HBase read model (a consumer group member). "
        "Settings: MIG_UPDATER_* (group, batch bound, ops host and port, backoff), MIG_TOPIC_* "
        "(topics and their partition count), MIG_KAFKA_*, MIG_HBASE_*. Ops: GET /metrics and "
        "/healthz on MIG_UPDATER_OPS_PORT (default 9311). Kafka or HBase unreachable, at start "
        "too: it waits, unhealthy, and retries. Exit 2: a bad setting; 3: a topic has another "
        "partition count.",
    ).parse_args(argv)
    try:
        settings = NewCoreSettings.from_env()
    except SettingsError as exc:
        print(f"chat-updater: {exc}", file=sys.stderr)
        return 2
    return run_until_signalled(
        "chat-updater", bootstrap.updater(settings), f"Kafka at {settings.kafka.bootstrap}"
    )


if __name__ == "__main__":
    sys.exit(main())
