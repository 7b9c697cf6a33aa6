"""The admin API's job controls (issue 13 item 1): an operator pauses, resumes, panics a
migrator job and changes its rate over HTTP; the job board holds what was asked, with who and
why; no token, no access; a bad request is a 400 naming the field and changes nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.adapters.embedded.memory_job_board import MemoryJobBoard
from gateway.adapters.embedded.memory_phase_store import MemoryPhaseStore, MemoryRoomCatalog
from gateway.domain.jobs import JobControl, JobState
from gateway.entrypoints.admin_api import AdminParts, admin_app
from gateway.errors import ControlStoreMisconfigured, ControlStoreUnavailable
from gateway.service.shadow import ShadowLedger

TOKEN = "admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Spool:
    def state(self) -> dict[str, int]:
        return {}


def app(jobs: Any) -> TestClient:
    parts = AdminParts(
        TOKEN, MemoryPhaseStore(), MemoryRoomCatalog([1]), Spool(), ShadowLedger(keep=1),
        lambda: {"ok": True}, jobs,
    )  # fmt: skip
    return TestClient(admin_app(parts))


@pytest.fixture
def board() -> MemoryJobBoard:
    return MemoryJobBoard()


@pytest.fixture
def client(board: MemoryJobBoard) -> TestClient:
    return app(board)


def put(client: TestClient, job: str, **body: Any) -> Any:
    return client.put(f"/admin/jobs/{job}", json={"who": "ops:alice", "why": "test", **body},
                      headers=AUTH)  # fmt: skip


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token-xxxxxxxxx"},
                                     {"Authorization": TOKEN}])  # fmt: skip
def test_every_job_route_needs_the_token(
    client: TestClient, board: MemoryJobBoard, headers: dict[str, str]
) -> None:
    for method, path in [("GET", "/admin/jobs"), ("GET", "/admin/jobs/backfill"),
                         ("PUT", "/admin/jobs/backfill")]:  # fmt: skip
        body = {"state": "panic", "who": "x", "why": "y"}
        answer = client.request(method, path, headers=headers, json=body)
        assert answer.status_code in (401, 403), (method, path, answer.status_code)
        assert "errors" in answer.json()
    assert board.controls() == []


def test_pause_rate_resume_and_panic(client: TestClient, board: MemoryJobBoard) -> None:
    paused = put(client, "backfill", state="pause", why="monolith slow")
    assert paused.status_code == 200
    control = paused.json()["control"]
    assert (control["job"], control["state"], control["rate"]) == ("backfill", "pause", None)
    assert (control["who"], control["why"]) == ("ops:alice", "monolith slow")
    assert control["at"]
    assert board.control("backfill").state is JobState.PAUSE

    rated = put(client, "backfill", rate=250).json()["control"]
    assert (rated["state"], rated["rate"]) == ("pause", 250.0)  # the state is kept
    both = put(client, "backfill", state="run", rate=1000.5).json()["control"]
    assert (both["state"], both["rate"]) == ("run", 1000.5)
    cleared = put(client, "backfill", rate=None, why="own rate").json()["control"]
    assert (cleared["state"], cleared["rate"]) == ("run", None)
    assert board.control("backfill").rate is None

    panic = put(client, "backfill", state="panic", who="ops:bob", why="lag").json()["control"]
    assert (panic["state"], panic["who"]) == ("panic", "ops:bob")
    assert board.control("backfill").state is JobState.PANIC


def test_a_job_never_controlled_runs_at_its_own_rate(client: TestClient) -> None:
    answer = client.get("/admin/jobs/backfill", headers=AUTH)
    assert answer.status_code == 200
    assert answer.json() == {
        "job": "backfill",
        "control": {"job": "backfill", "state": "run", "rate": None, "who": None,
                    "why": None, "at": None},
        "report": None,
    }  # fmt: skip
    assert client.get("/admin/jobs", headers=AUTH).json() == {"jobs": []}


def test_every_job_is_listed_with_its_control_and_last_report(
    client: TestClient, board: MemoryJobBoard
) -> None:
    board.set_control("repair", "ops", "hold", state=JobState.PAUSE)
    board.report("backfill", "backfill", json.dumps({"sent": 120, "room": "部屋"}))
    board.report("repair", "repair", "{}")
    listed = client.get("/admin/jobs", headers=AUTH).json()["jobs"]
    assert [j["job"] for j in listed] == ["backfill", "repair"]
    backfill, repair = listed
    assert backfill["control"]["state"] == "run" and backfill["control"]["who"] is None
    assert backfill["report"]["kind"] == "backfill"
    assert backfill["report"]["detail"] == {"sent": 120, "room": "部屋"}
    assert backfill["report"]["at"]
    assert repair["control"]["state"] == "pause" and repair["report"]["detail"] == {}
    one = client.get("/admin/jobs/backfill", headers=AUTH).json()
    assert one == backfill


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"state": "stop"}, "state"),
        ({"state": "PAUSE"}, "state"),
        ({"state": None}, "state"),
        ({"rate": 0}, "rate"),
        ({"rate": -1}, "rate"),
        ({"rate": "abc"}, "rate"),
        ({"rate": "10"}, "rate"),
        ({"rate": True}, "rate"),
        ({"rate": 10_000_001}, "rate"),
        ({}, "give state, rate"),
        ({"state": "pause", "who": ""}, "who"),
        ({"state": "pause", "who": "a\nb"}, "who"),
        ({"state": "pause", "why": ""}, "why"),
        ({"state": "pause", "why": "x" * 1001}, "why"),
        ({"state": "pause", "surprise": 1}, "surprise"),
    ],
)
def test_a_bad_change_is_a_400_naming_the_field_and_changes_nothing(
    client: TestClient, board: MemoryJobBoard, body: dict[str, Any], field: str
) -> None:
    before = board.set_control("backfill", "ops", "before", state=JobState.PAUSE, rate=5)
    answer = put(client, "backfill", **body)
    assert answer.status_code == 400, answer.text
    errors = answer.json()["errors"]
    assert errors and any(field in e for e in errors), errors
    assert board.control("backfill") == before


@pytest.mark.parametrize("job", ["Backfill", "-x", "a b", "x" * 65, "b%C3%A9"])
def test_a_bad_job_name_is_a_400_naming_it(
    client: TestClient, board: MemoryJobBoard, job: str
) -> None:
    for answer in (put(client, job, state="pause"), client.get(f"/admin/jobs/{job}", headers=AUTH)):
        assert answer.status_code == 400, (job, answer.text)
        assert answer.json()["errors"][0].startswith("job: a job name is")
    assert board.controls() == []


def test_a_body_that_is_not_json_is_a_400(client: TestClient, board: MemoryJobBoard) -> None:
    answer = client.put("/admin/jobs/backfill", content=b"state=pause", headers=AUTH)
    assert answer.status_code == 400 and answer.json()["errors"]
    assert board.controls() == []


class DownBoard(MemoryJobBoard):
    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def control(self, job: str) -> JobControl:
        raise self.error

    def controls(self) -> list[JobControl]:
        raise self.error


def test_a_control_store_down_is_a_503_misconfigured_a_500() -> None:
    down = app(DownBoard(ControlStoreUnavailable("control store, job control: refused")))
    answer = down.get("/admin/jobs/backfill", headers=AUTH)
    assert answer.status_code == 503 and "control store unavailable" in answer.json()["errors"][0]
    broken = app(DownBoard(ControlStoreMisconfigured("table job_controls, job='x': unknown")))
    answer = broken.get("/admin/jobs", headers=AUTH)
    assert answer.status_code == 500 and "job_controls" in answer.json()["errors"][0]


def test_a_gateway_without_a_job_board_says_so() -> None:
    answer = app(None).get("/admin/jobs", headers=AUTH)
    assert answer.status_code == 503 and answer.json() == {
        "errors": ["this gateway has no job board"]
    }
