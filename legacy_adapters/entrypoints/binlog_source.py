"""`chat-binlog-source`: the monolith's binlog as hints, the guarantee behind the gateway's.

Thin: reads the settings, builds the source from the composition root, runs it until a signal.
What the source does and promises: `legacy_adapters/service/binlog_source.py`.
"""

from __future__ import annotations

import argparse
import sys

from legacy_adapters import bootstrap
from legacy_adapters.settings import LegacySettings
from newcore.service.worker import run_until_signalled
from newcore.settings import SettingsError


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(
        prog="chat-binlog-source",
        description="Read the monolith's MariaDB binlog as a replica and append a hint per "
        "changed message or cursor row to the hints topic, with the binlog position as a "
        "checkpoint in the same Kafka transaction. Needs log_bin with binlog_format=ROW, "
        "binlog_row_image=FULL, binlog_row_metadata=FULL and a user with REPLICATION SLAVE and "
        "REPLICATION CLIENT. Settings: MIG_BINLOG_* (checkpoint topic, transactional id, server "
        "id, batch bounds, ops host and port, backoff), MIG_TOPIC_* (topics and their partition "
        "count), MIG_KAFKA_*, MIG_MARIADB_*, MIG_DB_*. Ops: GET /metrics and /healthz on "
        "MIG_BINLOG_OPS_PORT (default 9313). Kafka or MariaDB unreachable, at start too: it "
        "waits, unhealthy, and retries. Exit 2: a bad setting; 3: the binlog cannot give every "
        "change (settings, purged position) or a topic has another partition count; 5: another "
        "copy took over.",
    ).parse_args(argv)
    try:
        settings = LegacySettings.from_env()
    except SettingsError as exc:
        print(f"chat-binlog-source: {exc}", file=sys.stderr)
        return 2
    served, source = bootstrap.binlog_source(settings)
    code = run_until_signalled("chat-binlog-source", served, f"Kafka at {settings.kafka.bootstrap}")
    return code or source.exit_code


if __name__ == "__main__":
    sys.exit(main())
