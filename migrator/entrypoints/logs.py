"""Where `chat-migrate`'s structured logs go. Every line is JSON (newcore's `JsonLines`) and
goes to the job log file at info (`MIG_MIGRATOR_LOG_FILE`, appended: one file for every run,
what log shippers read); the terminal gets only warnings and errors, so that the operator
watches the progress bar and the summary, not a stream of lines per room."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from tqdm.contrib.logging import logging_redirect_tqdm

from migrator.settings import MigratorOpsSettings
from newcore.adapters.ops import JsonLines, Repeats

SERVICE = "chat-migrate"


def job_logging(ops: MigratorOpsSettings) -> logging.Logger:
    """Configures the process's logging as above and returns its logger. A log file that
    cannot be opened is said once on the terminal and the logs stay on the terminal."""
    terminal = logging.StreamHandler(sys.stderr)
    terminal.setFormatter(JsonLines(SERVICE))
    terminal.addFilter(Repeats(SERVICE))
    handlers: list[logging.Handler] = [terminal]
    try:
        ops.log_file.parent.mkdir(parents=True, exist_ok=True)
        file = logging.FileHandler(ops.log_file, encoding="utf-8")
    except OSError as exc:
        print(f"chat-migrate: cannot write the log file {ops.log_file} ({exc}): logging to the "
              "terminal only", file=sys.stderr)  # fmt: skip
    else:
        file.setFormatter(JsonLines(SERVICE))
        handlers.append(file)
        terminal.setLevel(ops.terminal_log_level)
    root = logging.getLogger()
    root.handlers[:] = handlers
    root.setLevel("INFO")
    logging.getLogger("aiokafka").setLevel("WARNING")
    return logging.getLogger(SERVICE)


@contextmanager
def beside_progress(ops: MigratorOpsSettings) -> Iterator[None]:
    """While a progress bar is shown: terminal lines are written through tqdm (above the bar,
    not through it), at the same level and with the same filter as `job_logging` set (tqdm's
    own redirection copies only the formatter); the log file is left as it is."""
    root = logging.getLogger()
    before = set(map(id, root.handlers))
    with logging_redirect_tqdm():
        # Only the handlers tqdm put in place of ours: others (a test harness's) are not ours.
        for handler in root.handlers:
            if id(handler) not in before:
                handler.setLevel(ops.terminal_log_level)
                handler.addFilter(Repeats(SERVICE))
        yield
