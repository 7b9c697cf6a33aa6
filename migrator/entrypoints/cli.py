"""`chat-migrate`: the migration team's one command (Typer). Each subcommand lives in
`entrypoints/commands/` and is thin: it parses its arguments, asks `migrator/bootstrap.py` for
its service, runs it, prints. Errors become a message that says what is wrong and what to do,
and an exit code (`migrator/errors.py`): nothing is changed by a refused command.
"""

from __future__ import annotations

import sys

import typer

from migrator.entrypoints.commands import backfill, cutover, jobs, parity, repair
from migrator.entrypoints.failures import run_guarded

app = typer.Typer(
    name="chat-migrate",
    help=(
        "Move a chat monolith's rooms to the new core: backfill, parity, repair, cutover and "
        "rollback, one command each. ROOMS is ids (12,34), @file (one id per line), a sticky "
        "percentage (10%) or all."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)


@app.callback()
def chat_migrate() -> None:
    """Move a chat monolith's rooms to the new core, room by room, with zero downtime."""


for module in (backfill, parity, repair, cutover, jobs):
    module.register(app)


def main() -> None:
    sys.exit(run_guarded(app))


if __name__ == "__main__":
    main()
