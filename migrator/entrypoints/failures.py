"""How `chat-migrate` ends: every known failure is one line on stderr that says what is wrong
and what to do, and an exit code (migrator/errors.py); never a traceback for an operator's
mistake or a service that is down."""

from __future__ import annotations

import sys

import typer

from migrator.errors import OperatorError, PanicStop
from newcore.errors import Misconfigured, Unavailable

EXIT_OPERATOR = 2
EXIT_MISCONFIGURED = 3
EXIT_UNAVAILABLE = 4
EXIT_PANIC = 5
EXIT_INTERRUPTED = 130


def run_guarded(app: typer.Typer) -> int:
    """Runs the app; returns the exit code. A bad argument or option is Typer's own message
    with the usage (exit 2, like an OperatorError)."""
    try:
        app()  # standalone: usage errors are shown and exit 2, --help exits 0
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    except KeyboardInterrupt:
        print("chat-migrate: interrupted; a job resumes from its checkpoint", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OperatorError as exc:
        print(f"chat-migrate: {exc}", file=sys.stderr)
        return EXIT_OPERATOR
    except ValueError as exc:  # a domain check refused an argument before anything changed
        print(f"chat-migrate: {exc}", file=sys.stderr)
        return EXIT_OPERATOR
    except PanicStop as exc:
        print(f"chat-migrate: panic stop: {exc}", file=sys.stderr)
        return EXIT_PANIC
    except Misconfigured as exc:
        print(f"chat-migrate: misconfigured: {exc}", file=sys.stderr)
        return EXIT_MISCONFIGURED
    except Unavailable as exc:
        print(
            f"chat-migrate: unavailable: {exc}; start it (make pipeline) and run the command "
            "again (a job resumes from its checkpoint)",
            file=sys.stderr,
        )
        return EXIT_UNAVAILABLE
    return 0
