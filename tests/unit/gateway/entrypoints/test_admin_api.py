"""The admin API: no token, no access; moves go through the guards; bad requests get a 4xx
with a reason and change nothing."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.adapters.embedded.memory_phase_store import MemoryPhaseStore, MemoryRoomCatalog
from gateway.domain.phases import Phase, select_percentage
from gateway.entrypoints.admin_api import AdminParts, admin_app
from gateway.service.shadow import ShadowLedger, ShadowRecord

TOKEN = "admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ROOMS = list(range(1, 201))


@dataclass
class SpoolState:
    pending_records: int = 3
    lost_rooms: dict[int, int] = field(default_factory=lambda: {7: 2})


class Spool:
    def state(self) -> SpoolState:
        return SpoolState()


@pytest.fixture
def store() -> MemoryPhaseStore:
    return MemoryPhaseStore()


@pytest.fixture
def ledger() -> ShadowLedger:
    return ShadowLedger(keep=10)


@pytest.fixture
def client(store: MemoryPhaseStore, ledger: ShadowLedger) -> TestClient:
    parts = AdminParts(
        TOKEN, store, MemoryRoomCatalog(ROOMS), Spool(), ledger, lambda: {"ok": True}
    )
    return TestClient(admin_app(parts))


def move(client: TestClient, **body: Any) -> Any:
    return client.post("/admin/moves", json={"who": "ops", "why": "test", **body}, headers=AUTH)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token-xxxxxxxxx"},
                                     {"Authorization": TOKEN}, {"Authorization": "Bearer "}])  # fmt: skip
def test_every_admin_route_needs_the_token(client: TestClient, headers: dict[str, str]) -> None:
    for method, path in [("GET", "/admin/rooms"), ("GET", "/admin/spool"),
                         ("GET", "/admin/kill-switch"), ("GET", "/admin/rooms/1/timeline"),
                         ("GET", "/admin/shadow/differences"), ("POST", "/admin/moves"),
                         ("PUT", "/admin/kill-switch")]:  # fmt: skip
        answer = client.request(method, path, headers=headers, json={})
        assert answer.status_code in (401, 403), (method, path, answer.status_code)


def test_health_and_metrics_need_no_token(client: TestClient) -> None:
    assert client.get("/healthz").json()["ok"] is True
    assert "chat_gateway_requests_total" in client.get("/metrics").text


def test_the_token_never_reaches_a_log(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client.get("/admin/rooms", headers=AUTH)
    client.get("/admin/rooms", headers={"Authorization": "Bearer wrong-token-xxxxxxxxx"})
    assert TOKEN not in caplog.text


def test_a_move_by_id_is_guarded_and_recorded(client: TestClient, store: MemoryPhaseStore) -> None:
    refused = move(client, room=5, to="shadow_read")
    assert refused.status_code == 409
    assert "5" in refused.json()["refused"]
    assert store.room(5).phase is Phase.LEGACY

    moved = move(client, room=5, to="dual_write")
    assert moved.status_code == 200
    assert [t["room_id"] for t in moved.json()["moved"]] == [5]
    timeline = client.get("/admin/rooms/5/timeline", headers=AUTH).json()["timeline"]
    assert timeline[0]["to_phase"] == "dual_write" and timeline[0]["who"] == "ops"
    assert client.get("/admin/rooms?phase=dual_write", headers=AUTH).json()["by_phase"] == {
        "dual_write": 1
    }


def test_a_dry_run_changes_nothing(client: TestClient, store: MemoryPhaseStore) -> None:
    before = store.revision()
    answer = move(client, rooms=[1, 2, 3], to="dual_write", dry_run=True)
    assert answer.status_code == 200 and len(answer.json()["moved"]) == 3
    assert store.revision() == before and store.room(1).phase is Phase.LEGACY


def test_a_percentage_selects_the_sticky_share_of_the_monolith_rooms(
    client: TestClient, store: MemoryPhaseStore
) -> None:
    answer = move(client, percent=10, to="dual_write")
    assert answer.status_code == 200
    moved = sorted(t["room_id"] for t in answer.json()["moved"])
    assert moved == sorted(select_percentage(ROOMS, 10))
    assert {r.room_id for r in store.rooms(Phase.DUAL_WRITE)} == set(moved)


@pytest.mark.parametrize(
    "body",
    [
        {"room": 1, "to": "sideways"},
        {"room": 0, "to": "dual_write"},
        {"room": "abc", "to": "dual_write"},
        {"to": "dual_write"},
        {"room": 1, "rooms": [2], "to": "dual_write"},
        {"percent": 0, "to": "dual_write"},
        {"percent": 101, "to": "dual_write"},
        {"room": 1, "to": "dual_write", "surprise": True},
    ],
)
def test_a_bad_move_is_a_400_with_a_reason_and_changes_nothing(
    client: TestClient, store: MemoryPhaseStore, body: dict[str, Any]
) -> None:
    before = store.revision()
    answer = move(client, **body)
    assert answer.status_code == 400
    assert answer.json()["errors"]
    assert store.revision() == before


def test_an_unknown_room_is_a_404_naming_it(client: TestClient, store: MemoryPhaseStore) -> None:
    before = store.revision()
    answer = move(client, rooms=[1, 999], to="dual_write")
    assert answer.status_code == 404 and "999" in answer.text
    assert store.revision() == before


def test_the_kill_switch(client: TestClient, store: MemoryPhaseStore) -> None:
    move(client, room=9, to="dual_write")
    on = client.put("/admin/kill-switch", json={"on": True, "who": "ops", "why": "incident"},
                    headers=AUTH)  # fmt: skip
    assert on.status_code == 200 and on.json()["on"] is True
    assert store.snapshot().phase_of(9) is Phase.LEGACY
    assert client.get("/admin/kill-switch", headers=AUTH).json()["why"] == "incident"
    client.put("/admin/kill-switch", json={"on": False, "who": "ops", "why": "over"}, headers=AUTH)
    assert store.snapshot().phase_of(9) is Phase.DUAL_WRITE


def test_spool_and_differences_are_shown(client: TestClient, ledger: ShadowLedger) -> None:
    assert client.get("/admin/spool", headers=AUTH).json()["lost_rooms"] == {"7": 2}
    ledger.record(ShadowRecord(at=1.0, room_id=4, route="list", request="GET /v2/rooms/4/messages",
                               outcome="different", attempts=3, waited_ms=10, frontier=5, applied=5,
                               differences=[{"message_id": "9", "field": "body",
                                             "monolith": "a", "new": "b"}]))  # fmt: skip
    shown = client.get("/admin/shadow/differences?room=4", headers=AUTH).json()["differences"]
    assert shown[0]["differences"][0]["field"] == "body"
    assert client.get("/admin/shadow/differences?room=5", headers=AUTH).json()["differences"] == []
