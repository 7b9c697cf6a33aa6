"""`chat-migrate` commands of this part (see migrator/README.md). Placeholder: filled in by
its owner."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Adds this part's commands to `app`."""
