"""LostRooms on a real gateway hint spool in a temporary directory: the lost-rooms file is read
while a gateway (here: a HintSpool of this process) holds the spool; rooms are forgotten in the
spool when nobody holds it, through the gateway's admin API when one does, and not at all
(saying so) when one does and no admin token is set; a room that lost hints again is kept."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from gateway.adapters.embedded.memory_phase_store import MemoryPhaseStore, MemoryRoomCatalog
from gateway.adapters.spool import HintSpool
from gateway.entrypoints.admin_api import AdminParts, admin_app
from gateway.service.shadow import ShadowLedger
from migrator.adapters.gateway_spool import GatewayAdmin, SpoolLostRooms, parse_lost_rooms
from newcore.domain.hints import MessageHint
from newcore.errors import Misconfigured

TOKEN = "admin-token-0123456789"
BOUND = 5000  # bytes: about fifty hints, then every put is lost


def open_spool(directory: Path) -> HintSpool:
    return HintSpool(directory, BOUND, fsync_interval_s=0)


def lose(spool: HintSpool, room: int, times: int) -> None:
    lost = 0
    while lost < times:
        if spool.put(MessageHint(room, 1000 + lost)) is None:
            lost += 1


@pytest.fixture
def held(tmp_path: Path) -> Iterator[HintSpool]:
    """A spool held (as a running gateway holds it) that lost hints of rooms 1 and 2."""
    spool = open_spool(tmp_path)
    lose(spool, 1, 1)
    lose(spool, 2, 2)
    spool.flush()
    yield spool
    spool.close()


def lost_rooms(directory: Path, admin: GatewayAdmin | None = None) -> SpoolLostRooms:
    return SpoolLostRooms(directory, lambda: open_spool(directory), admin)


def test_the_list_is_read_while_a_gateway_holds_the_spool(tmp_path: Path, held: HintSpool) -> None:
    rooms = lost_rooms(tmp_path).read()
    assert [(r.room_id, r.count) for r in rooms] == [(1, 1), (2, 2)]
    in_memory = held.lost_rooms()[2]
    assert rooms[1].first_lost_at == pytest.approx(in_memory.first_lost_at, abs=0.001)
    assert rooms[1].last_lost_at == pytest.approx(in_memory.last_lost_at, abs=0.001)


def test_held_without_an_admin_token_nothing_is_forgotten_and_it_says_so(
    tmp_path: Path, held: HintSpool
) -> None:
    source = lost_rooms(tmp_path)
    done = source.forget(source.read(), "ops", "repair")
    assert done.forgotten == [] and done.kept == [1, 2]
    assert "a gateway holds the spool" in done.how and "MIG_GATEWAY_ADMIN_TOKEN" in done.how
    assert set(held.lost_rooms()) == {1, 2}


@pytest.fixture
def admin(held: HintSpool, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    """The admin API of the gateway holding `held`, reached by the adapter's httpx.post."""
    parts = AdminParts(
        TOKEN, MemoryPhaseStore(), MemoryRoomCatalog([1, 2]), held, ShadowLedger(keep=1),
        lambda: {"ok": True},
    )  # fmt: skip
    client = TestClient(admin_app(parts))

    def post(url: str, **kwargs: Any) -> httpx.Response:
        assert url.startswith("http://gateway:8091/")
        kwargs.pop("timeout", None)
        answer: httpx.Response = client.post(url.removeprefix("http://gateway:8091"), **kwargs)
        return answer

    monkeypatch.setattr(httpx, "post", post)
    return client


def test_held_the_rooms_are_forgotten_through_the_gateway_but_not_one_lost_again(
    tmp_path: Path, held: HintSpool, admin: TestClient
) -> None:
    source = lost_rooms(tmp_path, GatewayAdmin("http://gateway:8091", TOKEN))
    seen = source.read()
    lose(held, 2, 1)  # room 2 loses a hint after the repair read the list
    done = source.forget(seen, "ops:alice", "repair of lost rooms")
    assert (done.forgotten, done.kept) == ([1], [2])
    assert "through the gateway's admin API" in done.how
    assert set(held.lost_rooms()) == {2}
    held.flush()
    assert [r.room_id for r in source.read()] == [2]
    # A wrong token is an operator's to fix.
    wrong = lost_rooms(tmp_path, GatewayAdmin("http://gateway:8091", "x" * 20))
    with pytest.raises(Misconfigured, match="refused the admin token"):
        wrong.forget(wrong.read(), "ops", "why")


def test_the_admin_api_refuses_a_bad_request_and_changes_nothing(
    held: HintSpool, admin: TestClient
) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for body in (
        {"rooms": [], "who": "ops", "why": "x"},
        {"rooms": [{"room_id": 0, "count": 1, "last_lost_at": 1.0}], "who": "ops", "why": "x"},
        {"rooms": [{"room_id": 1, "count": 1, "last_lost_at": 1e12}], "who": "", "why": "x"},
    ):
        assert (
            admin.post("/admin/spool/lost-rooms/forget", json=body, headers=auth).status_code == 400
        )
    assert admin.post("/admin/spool/lost-rooms/forget", json={}).status_code == 401
    assert set(held.lost_rooms()) == {1, 2}


def test_not_held_the_spool_is_opened_here_and_the_rooms_forgotten(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    lose(spool, 1, 1)
    lose(spool, 2, 1)
    spool.close()
    source = lost_rooms(tmp_path)
    seen = source.read()
    done = source.forget(seen[:1], "ops", "repair")
    assert (done.forgotten, done.kept) == ([1], [])
    assert "no gateway holds it" in done.how
    assert [r.room_id for r in source.read()] == [2]
    again = open_spool(tmp_path)  # released: a gateway can take the spool again
    assert set(again.lost_rooms()) == {2}
    again.close()


def test_the_file_format_is_checked_and_a_torn_line_skipped(tmp_path: Path) -> None:
    text = "chat-hint-spool lost-rooms 1\n7 2 10.000 20.500\nx y\n9 1 30.000 30.0"
    rooms, skipped = parse_lost_rooms(text, "f")
    assert [(r.room_id, r.count, r.last_lost_at) for r in rooms] == [(7, 2, 20.5)]
    assert skipped == 2
    with pytest.raises(Misconfigured, match="format version 2"):
        parse_lost_rooms("chat-hint-spool lost-rooms 2\n", "f")
    with pytest.raises(Misconfigured, match="not a hint spool's lost-rooms file"):
        parse_lost_rooms("hello\n", "f")
    assert parse_lost_rooms("", "f") == ([], 0)


def test_a_directory_that_is_no_spool_is_misconfigured(tmp_path: Path) -> None:
    with pytest.raises(Misconfigured, match=r"no hint spool at .* set MIG_SPOOL_DIR"):
        lost_rooms(tmp_path / "missing").read()
    with pytest.raises(Misconfigured, match="holds no lost-rooms file"):
        lost_rooms(tmp_path).read()
