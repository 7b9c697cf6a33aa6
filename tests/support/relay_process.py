"""A `Relay` (tests/support/processes.py) in a process of its own, with the same methods.

A test that measures latency must not carry the relayed traffic on its own interpreter: a relay
thread pumping Kafka's or HBase's bytes holds the GIL the test's client threads need to send
and time their requests, and the figures then show the test, not the system. Commands go to the
child on its stdin, one per line; it answers "ok" once done.
"""

from __future__ import annotations

import subprocess
import sys

from tests.support.processes import Relay, free_port
from tests.support.stack import REPO

COMMANDS = ("start", "cut", "stall", "flow")


class RelayProcess:
    def __init__(self, target_port: int, port: int | None = None) -> None:
        self.port = port or free_port()
        self._child = subprocess.Popen(
            [sys.executable, "-m", "tests.support.relay_process", str(target_port), str(self.port)],
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        self._expect("ready")

    def _expect(self, word: str) -> None:
        assert self._child.stdout is not None
        line = self._child.stdout.readline().strip()
        assert line == word, f"relay process said {line!r}, not {word!r}"

    def _say(self, command: str) -> None:
        assert self._child.stdin is not None
        self._child.stdin.write(command + "\n")
        self._child.stdin.flush()
        self._expect("ok")

    def start(self) -> None:
        self._say("start")

    def cut(self) -> None:
        self._say("cut")

    def stall(self) -> None:
        self._say("stall")

    def flow(self) -> None:
        self._say("flow")

    def close(self) -> None:
        if self._child.poll() is None:
            self._child.kill()
        self._child.wait(10)


def main() -> None:
    target, port = int(sys.argv[1]), int(sys.argv[2])
    relay = Relay(target, port=port)
    print("ready", flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command in COMMANDS:
            getattr(relay, command)()
        print("ok", flush=True)


if __name__ == "__main__":
    main()
