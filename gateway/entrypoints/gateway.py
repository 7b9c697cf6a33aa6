"""`chat-gateway`: the mitmproxy gateway in front of the monolith (reverse mode), with its
admin API. Thin: reads the settings, builds the process from the composition root, runs it on
uvloop until a signal.
"""

from __future__ import annotations

import argparse
import sys

import uvloop

from gateway import bootstrap
from gateway.settings import GatewaySettings
from newcore.service.worker import run_until_signalled
from newcore.settings import SettingsError


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(
        prog="chat-gateway",
        description="The gateway in front of the PHP monolith: rooms in dual_write and "
        "shadow_read pass through it (the front door sends it those), their writes are hinted "
        "to the new core through a durable local spool, their reads compared with the Read API. "
        "Settings: MIG_GATEWAY_* (listen host and port, upstream, admin host, port and token, "
        "control poll, room map and front-door pid), MIG_SPOOL_*, MIG_SHADOW_*, MIG_CONTROL_DB_NAME, "
        "MIG_MARIADB_*/MIG_DB_*, MIG_KAFKA_*, MIG_TOPIC_*. Admin API and /metrics, /healthz on "
        "MIG_GATEWAY_ADMIN_PORT (default 8091). Exit 2: a bad setting; 3: the control store or "
        "the spool holds what this version cannot read.",
    ).parse_args(argv)
    try:
        settings = GatewaySettings.from_env()
        uvloop.install()
        with bootstrap.gateway(settings) as process:
            return run_until_signalled(
                "chat-gateway", process, f"MariaDB at {settings.database.describe()}"
            )
    except SettingsError as exc:
        print(f"chat-gateway: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
