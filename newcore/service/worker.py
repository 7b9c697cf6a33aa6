"""How a worker process lives: it waits for what is down, and exits only for what an operator
must fix. The error policy of every long-running process of ours is written here, on the
taxonomy of `newcore/errors.py` (adapters never let a driver's exception out):

- `Unavailable` at start (Kafka, HBase, MariaDB not up yet): wait and try again, with a jittered
  backoff bounded so that recovery follows the end of an outage within seconds; the ops
  endpoint stays up and unhealthy meanwhile. Never an exit: a supervisor restarting a process
  that only waits gains nothing.
- `Misconfigured`: exit 3 with what to fix. `Unavailable` escaping a running worker: exit 4.
- SIGTERM / SIGINT: a clean stop, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    RetryError,
    retry_if_exception_type,
    wait_random_exponential,
)

from newcore.errors import Misconfigured, Unavailable
from newcore.settings import WorkerSettings

T = TypeVar("T")

EXIT_MISCONFIGURED, EXIT_UNAVAILABLE = 3, 4


def retrying(
    backoff_ms: int,
    max_backoff_ms: int,
    stopping: asyncio.Event,
    waiting: Callable[[BaseException, int], None],
    retry_on: tuple[type[BaseException], ...] = (Unavailable,),
) -> AsyncRetrying:
    """Tries again, on `retry_on` errors only, until the call succeeds or `stopping` is set.

    The wait doubles from `backoff_ms` up to `max_backoff_ms`, with full jitter (a random part
    of it, at least half of `backoff_ms`): copies of a process restarted together do not hit a
    recovering broker in step, and the end of an outage is followed within `max_backoff_ms`.
    `waiting(error, wait_ms)` is told before each wait. A wait ends at once when `stopping` is
    set; tenacity decides to stop only after a failure, so each attempt begins by checking
    `stopping` (a stop told during the wait starts nothing more). The retrying stops with
    tenacity's RetryError, which callers take for "told to stop"."""

    async def sleep(seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), seconds)

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        wait_ms = round((state.next_action.sleep if state.next_action else 0) * 1000)
        if error is not None:
            waiting(error, wait_ms)

    return AsyncRetrying(
        retry=retry_if_exception_type(retry_on),
        wait=wait_random_exponential(
            multiplier=backoff_ms / 1000, max=max_backoff_ms / 1000, min=backoff_ms / 2000
        ),
        stop=lambda _state: stopping.is_set(),
        sleep=sleep,
        before_sleep=before_sleep,
    )


async def start_when_up(
    start: Callable[[], Awaitable[T]],
    stopping: asyncio.Event,
    backoff_ms: int,
    max_backoff_ms: int,
    waiting: Callable[[BaseException, int], None],
) -> T | None:
    """`start()`'s result once it succeeds; None if the worker is told to stop first. What
    cannot be reached yet is waited for (`retrying`); a misconfiguration is raised."""
    try:
        async for attempt in retrying(backoff_ms, max_backoff_ms, stopping, waiting):
            with attempt:
                if stopping.is_set():  # told during the wait: no other attempt
                    return None
                return await start()
    except RetryError:
        return None
    return None


class Worker(Protocol):
    def stop(self) -> None: ...
    async def run(self) -> None: ...


def run_until_signalled(command: str, worker: Worker, where: str) -> int:
    """Runs the worker until SIGTERM or SIGINT (a clean stop: exit 0). A dependency set up
    against our settings: exit 3, saying which. A dependency the worker could not wait out:
    exit 4. `where` names the dependencies for the message (never a secret)."""

    async def run() -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, worker.stop)
        await worker.run()

    try:
        asyncio.run(run())
    except Misconfigured as exc:
        print(f"{command}: {exc}. Fix the setting or the topic, then start again.", file=sys.stderr)
        return EXIT_MISCONFIGURED
    except Unavailable as exc:
        print(f"{command}: {where}: {exc}. Is it up? (`make status`)", file=sys.stderr)
        return EXIT_UNAVAILABLE
    return 0


class SteppingWorker(ABC):
    """A consumer-group worker's life: it joins (waiting for what is down, `start_when_up`),
    then takes one poll after another (`step`) until told to stop, then leaves (`finish`).
    Subclasses say what joining and a step are."""

    def __init__(
        self, name: str, topic: str, settings: WorkerSettings, group: str, log: logging.Logger
    ) -> None:
        self._name = name
        self._topic = topic
        self._settings = settings
        self._group = group
        self._log = log
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        s = self._settings
        try:
            joined = await start_when_up(
                self.start, self._stopping, s.backoff_ms, s.max_backoff_ms, self._waiting
            )
            if joined is None:
                return
            self._log.info(
                f"{self._name} started", extra={"topic": self._topic, "group": self._group}
            )
            while not self._stopping.is_set():
                await self.step()
        finally:
            await self.finish()
            self._log.info(f"{self._name} stopped")

    @abstractmethod
    async def start(self) -> bool:
        """Joins; raises Unavailable while what it needs is down, Misconfigured for good."""

    @abstractmethod
    async def step(self, max_records: int | None = None, timeout_ms: int = 500) -> int:
        """One poll worked and committed; how many records it polled."""

    @abstractmethod
    async def finish(self) -> None:
        """Leaves the group and releases what it holds."""

    def _waiting(self, error: BaseException, backoff_ms: int) -> None:
        self._log.warning(
            "waiting for Kafka", extra={"reason": repr(error), "backoff_ms": backoff_ms}
        )
