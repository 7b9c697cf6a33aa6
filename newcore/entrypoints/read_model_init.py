"""`chat-read-model-init`: creates the read model's HBase tables that are missing. Idempotent.

Settings from MIG_HBASE_HOST, MIG_HBASE_THRIFT_PORT, MIG_HBASE_TABLE_PREFIX.
"""

from __future__ import annotations

import argparse
import sys

from newcore.adapters.hbase.read_store import ensure_tables
from newcore.adapters.hbase.schema import FAMILIES
from newcore.errors import Misconfigured, ReadStoreUnavailable
from newcore.settings import HBaseSettings, SettingsError, read


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(
        prog="chat-read-model-init",
        description="Create the read model's HBase tables (messages, cursors) if missing. "
        "Layout: newcore/README.md. Settings: MIG_HBASE_HOST, MIG_HBASE_THRIFT_PORT, "
        "MIG_HBASE_TABLE_PREFIX. Exit 3: a table exists but is not laid out as ours (not "
        "pre-split, an older format): rebuild the read model; 4: HBase unreachable.",
    ).parse_args(argv)
    try:
        settings = read(HBaseSettings)
    except SettingsError as exc:
        print(f"chat-read-model-init: {exc}", file=sys.stderr)
        return 2
    try:
        created = ensure_tables(settings)
    except ReadStoreUnavailable as exc:
        print(f"chat-read-model-init: {exc}. Is HBase up? (`make status`)", file=sys.stderr)
        return 4
    except Misconfigured as exc:
        print(f"chat-read-model-init: {exc}", file=sys.stderr)
        return 3
    names = ", ".join(f"{settings.table_prefix}_{table}" for table in FAMILIES)
    print(
        f"chat-read-model-init: created {', '.join(created)}"
        if created
        else f"chat-read-model-init: {names} already there"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
