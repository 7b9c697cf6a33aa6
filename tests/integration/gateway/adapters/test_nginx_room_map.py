"""NginxRoomMap against a real front door (deploy/frontdoor.sh on its own ports and state dir):
what it writes, when it writes and signals, and what it refuses.

The routing that follows a publish is tested in tests/integration/deploy/test_frontdoor.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.adapters.nginx_room_map import NginxRoomMap, render
from gateway.errors import RoomMapMisconfigured, RoomMapUnavailable
from newcore.errors import Unavailable
from tests.support.frontdoor import FrontDoor
from tests.support.processes import free_port
from tests.support.stack import Stack, require_port

pytestmark = pytest.mark.services

HEADER_LINES = 2


@pytest.fixture
def front_door(stack: Stack, tmp_path: Path) -> Iterator[FrontDoor]:
    require_port("the monolith (nginx + PHP-FPM)", stack.host, stack.monolith_port)
    door = FrontDoor(stack, tmp_path / "state", [free_port()]).start()
    try:
        yield door
    finally:
        door.stop()


def until_reloads(door: FrontDoor, count: int) -> None:
    deadline = time.monotonic() + 5
    while door.reloads_seen() < count:
        assert time.monotonic() < deadline, f"{count} reloads expected, {door.reloads_seen()} seen"
        time.sleep(0.01)


def room_lines(path: Path) -> list[str]:
    return path.read_text().splitlines()[HEADER_LINES:]


def test_publish_writes_sorted_unique_rooms_and_signals_only_on_a_change(
    front_door: FrontDoor,
) -> None:
    room_map = front_door.room_map
    assert room_map.publish([30, 4_294_967_295, 7, 30])
    assert room_lines(front_door.map_path) == ['"7" 1;', '"30" 1;', '"4294967295" 1;']
    assert room_map.published() == {7, 30, 4_294_967_295}
    until_reloads(front_door, 1)

    inode = front_door.map_path.stat().st_ino
    assert not room_map.publish([7, 4_294_967_295, 30])  # the same map: no write, no signal
    assert front_door.map_path.stat().st_ino == inode
    assert room_map.publish([7])
    assert front_door.map_path.stat().st_ino != inode  # a new file renamed over the old one
    until_reloads(front_door, 2)
    assert room_map.publish([])  # the kill switch: an empty map, still a valid file
    until_reloads(front_door, 3)
    assert room_map.published() == set()
    assert front_door.script("reload").returncode == 0  # nginx -t takes what we write
    assert [p.name for p in front_door.dir.iterdir() if p.name.endswith(".tmp")] == []


def test_a_new_instance_signals_once_even_when_the_file_holds_its_map(
    front_door: FrontDoor,
) -> None:
    """A gateway that wrote the file and died before its signal leaves a file the master has
    not loaded: the next gateway's first publish signals even though the content is equal."""
    front_door.map_path.write_bytes(render([5, 6]))
    fresh = NginxRoomMap(front_door.map_path, front_door.pid_path)
    inode = front_door.map_path.stat().st_ino
    assert fresh.publish([6, 5])
    assert front_door.map_path.stat().st_ino == inode  # not rewritten
    until_reloads(front_door, 1)
    assert not fresh.publish([5, 6])


def test_a_file_changed_behind_its_back_is_rewritten_and_signalled(
    front_door: FrontDoor,
) -> None:
    room_map = front_door.room_map
    assert room_map.publish([1, 2])
    until_reloads(front_door, 1)
    front_door.map_path.write_text("")  # a hand edit, or a start that set a bad map aside
    assert room_map.publish([1, 2])
    until_reloads(front_door, 2)
    assert room_map.published() == {1, 2}


@pytest.mark.parametrize("bad", [0, -3, True, "12", 1.0, None])
def test_only_positive_ints_reach_the_file(bad: object, front_door: FrontDoor) -> None:
    front_door.room_map.publish([9])
    before = front_door.map_path.read_bytes()
    with pytest.raises(ValueError, match="positive int"):
        front_door.room_map.publish([1, bad])  # type: ignore[list-item]
    assert front_door.map_path.read_bytes() == before


def test_no_pid_file_is_unavailable_and_the_next_publish_signals(
    front_door: FrontDoor,
) -> None:
    """The front door is down (no pid file): the map is written anyway (a front door that
    starts reads it) and the caller hears RoomMapUnavailable, an Unavailable it retries; once
    the front door is back, publishing the same rooms signals."""
    front_door.stop()
    room_map = front_door.room_map
    with pytest.raises(RoomMapUnavailable, match="is it running"):
        room_map.publish([11])
    assert room_map.published() == {11}
    assert issubclass(RoomMapUnavailable, Unavailable)
    front_door.start()  # reads the file as it is
    assert room_map.publish([11])  # same content, but this instance never had it loaded


def test_a_stale_pid_file_never_signals_whoever_has_that_pid_now(
    front_door: FrontDoor, tmp_path: Path
) -> None:
    """A pid file naming a process that is not an nginx master (the pid was recycled) is
    refused: SIGHUP would end most processes."""
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale = tmp_path / "stale.pid"
        stale.write_text(f"{bystander.pid}\n")
        room_map = NginxRoomMap(front_door.map_path, stale)
        with pytest.raises(RoomMapUnavailable, match="not an nginx master"):
            room_map.publish([3])
        assert bystander.poll() is None  # alive: it got no signal
        stale.write_text("99999999\n")
        with pytest.raises(RoomMapUnavailable, match="not running"):
            room_map.publish([3])
        stale.write_text("nginx\n")
        with pytest.raises(RoomMapUnavailable, match="not a pid"):
            room_map.publish([3])
    finally:
        bystander.kill()
        bystander.wait()


def test_a_map_it_cannot_write_is_unavailable(front_door: FrontDoor, tmp_path: Path) -> None:
    room_map = NginxRoomMap(tmp_path / "no-such-dir" / "room_map.conf", front_door.pid_path)
    with pytest.raises(RoomMapUnavailable, match="cannot write"):
        room_map.publish([1])


def test_published_refuses_lines_it_never_writes(front_door: FrontDoor) -> None:
    assert NginxRoomMap(front_door.dir / "absent.conf", front_door.pid_path).published() == set()
    for content in ['"12" 0;\n', '"012" 1;\n', "12 1;\n", '"12" 1; "13" 1;\n', "garbage {\n"]:
        front_door.map_path.write_text(content)
        with pytest.raises(RoomMapMisconfigured):
            front_door.room_map.published()
    front_door.map_path.write_text('# a comment\n\n"12" 1;\n')
    assert front_door.room_map.published() == {12}


def test_a_master_of_another_user_is_misconfigured(front_door: FrontDoor) -> None:
    """A gateway not allowed to signal the master (another user) cannot fix that by retrying."""
    if os.geteuid() != 0:
        pytest.fail("needs root to act as another user; the stack's scripts run as root")
    readable = Path(tempfile.mkdtemp())
    readable.chmod(0o755)
    pid_copy = readable / "nginx.pid"
    pid_copy.write_text(front_door.pid_path.read_text())
    pid_copy.chmod(0o644)
    child = os.fork()
    if child == 0:  # the child answers with its exit code only
        code = 1
        try:
            os.setuid(65534)  # nobody
            NginxRoomMap(front_door.map_path, pid_copy)._signal()
        except RoomMapMisconfigured:
            code = 0
        except BaseException:
            code = 2
        os._exit(code)
    _, status = os.waitpid(child, 0)
    shutil.rmtree(readable)
    assert os.waitstatus_to_exitcode(status) == 0
