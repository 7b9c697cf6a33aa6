"""`chat-seed`: fills the monolith with a realistic, deterministic data set of any size.

Examples: `chat-seed --messages 1000000`, `chat-seed --messages 20000 --seed 7 --reset`.
Interrupt it at any time; the same command resumes.
"""

from __future__ import annotations

import argparse
import sys
import time

from sqlalchemy.exc import OperationalError
from tqdm import tqdm

from legacy_adapters import bootstrap
from legacy_adapters.service.seeding.loader import SeedRefused, reset, seed
from legacy_adapters.service.seeding.world import SeedPlan, build_world, token_for
from legacy_adapters.settings import LegacyDatabaseSettings
from newcore.settings import SettingsError, read

MAX_MESSAGES = 5_000_000_000


def _count(low: int, high: int) -> type[int]:
    def parse(value: str) -> int:
        try:
            number = int(value.replace("_", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{value}' is not a whole number") from None
        if not low <= number <= high:
            raise argparse.ArgumentTypeError(f"{number} is outside {low}..{high}")
        return number

    return parse  # type: ignore[return-value]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="chat-seed",
        description="Fill the monolith's MariaDB with a realistic chat history (deterministic per seed). "
        "Connection from MIG_MARIADB_HOST, MIG_MARIADB_PORT, MIG_DB_NAME, MIG_DB_USER, MIG_DB_PASSWORD.",
    )
    p.add_argument(
        "--messages", type=_count(1, MAX_MESSAGES), required=True, help="message rows to create"
    )
    p.add_argument("--seed", type=_count(0, 2**62), default=42, help="random seed (default 42)")
    p.add_argument(
        "--rooms", type=_count(1, 100_000_000), help="group and direct rooms (default messages/200)"
    )
    p.add_argument(
        "--accounts", type=_count(2, 100_000_000), help="accounts (default messages/250)"
    )
    p.add_argument(
        "--reset", action="store_true", help="empty the monolith's tables first (destroys data)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = read(LegacyDatabaseSettings)
    except SettingsError as exc:
        print(f"chat-seed: {exc}", file=sys.stderr)
        return 2
    plan = SeedPlan.sized(args.messages, args.seed, rooms=args.rooms, accounts=args.accounts)
    engine = bootstrap.seed_engine(settings)
    started = time.monotonic()
    try:
        if args.reset:
            reset(engine)
        world = build_world(plan)
        with tqdm(total=plan.messages, unit="msg", unit_scale=True, disable=args.quiet,
                  desc="seeding messages", smoothing=0.1) as bar:  # fmt: skip
            outcome = seed(engine, world, bar.update)
    except SeedRefused as exc:
        print(f"chat-seed: refused: {exc}", file=sys.stderr)
        return 3
    except OperationalError as exc:
        print(f"chat-seed: cannot use the database at {settings.describe()}: {exc.orig}. "
              "Is MariaDB up? (`make status`, `deploy/mariadb.sh start`)", file=sys.stderr)  # fmt: skip
        return 4
    except KeyboardInterrupt:
        print("\nchat-seed: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    finally:
        engine.dispose()
    elapsed = time.monotonic() - started
    if outcome.already_done:
        print(
            f"chat-seed: this data set (seed {plan.seed}, {plan.messages} messages) is already loaded"
        )
    else:
        rate = outcome.inserted / elapsed if elapsed > 0 else 0.0
        print(
            f"chat-seed: {outcome.inserted} messages inserted ({outcome.skipped} already there) in "
            f"{elapsed:.1f} s ({rate:,.0f} messages/s); {plan.rooms} rooms, {plan.accounts} accounts"
        )
    print(
        f"chat-seed: walk-through account 1 has token {token_for(plan.seed, 1)}; room 1 is one of its rooms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
