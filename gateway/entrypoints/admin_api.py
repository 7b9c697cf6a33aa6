"""The gateway's admin API (FastAPI): rooms by phase, guarded moves (by id, list or sticky
percentage), the kill switch, the spool, a room's timeline, recent shadow differences, the
operator controls of the migrator's jobs (`/admin/jobs`: rate, pause / resume, panic, the same
board `chat-migrate job ...` writes); and, without a token, `/healthz` and `/metrics`.

Every `/admin` route needs `Authorization: Bearer <MIG_GATEWAY_ADMIN_TOKEN>` (401 without a
token, 403 with another one; compared in constant time). The token is never logged: uvicorn's
access log is off and no handler logs a header.

Moves go through the control store's guarded transitions, the same ones `chat-migrate` uses:
a refused room is answered with the guard that failed and nothing changes for it.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from typing import Annotated, Any, Protocol, runtime_checkable

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.domain.jobs import RATE_MAX, JobControl, JobState, check_job_name
from gateway.domain.lost_rooms import may_forget
from gateway.domain.phases import Phase, select_percentage
from gateway.errors import ControlStoreMisconfigured, ControlStoreUnavailable, SpoolUnavailable
from gateway.ports import JobBoard, PhaseStore, RoomCatalog
from gateway.service.shadow import ShadowLedger


class SpoolView(Protocol):
    def state(self) -> Any: ...


@runtime_checkable
class LostRoomsSpool(Protocol):
    """A spool whose lost-rooms list a repair may clear (gateway.adapters.spool.HintSpool)."""

    def lost_rooms(self) -> dict[int, Any]: ...

    def forget_lost(self, room_ids: list[int]) -> None: ...


class SeenLostRoom(BaseModel):
    model_config = ConfigDict(extra="forbid")

    room_id: int = Field(ge=1, le=4_294_967_295)
    count: int = Field(ge=1)
    last_lost_at: float


class ForgetLostRequest(BaseModel):
    """The rooms a repair sent hints for, as it read them from the lost-rooms list."""

    model_config = ConfigDict(extra="forbid")

    rooms: list[SeenLostRoom] = Field(min_length=1, max_length=1_000_000)
    who: str = Field(min_length=1, max_length=100)
    why: str = Field(min_length=1, max_length=1000)


class AdminParts:
    """What the admin API reads and changes; built by `gateway/bootstrap.py`."""

    def __init__(
        self,
        token: str,
        store: PhaseStore,
        catalog: RoomCatalog,
        spool: SpoolView,
        ledger: ShadowLedger,
        health: Callable[[], dict[str, Any]],
        jobs: JobBoard | None = None,
    ) -> None:
        self.token = token.encode()
        self.jobs = jobs  # None: this gateway has no job board (its routes answer 503)
        self.store = store
        self.catalog = catalog
        self.spool = spool
        self.ledger = ledger
        self.health = health


class MoveRequest(BaseModel):
    """Exactly one of `room`, `rooms`, `percent` selects the rooms."""

    model_config = ConfigDict(extra="forbid")

    to: Phase
    who: str = Field(min_length=1, max_length=100)
    why: str = Field(min_length=1, max_length=1000)
    room: int | None = Field(default=None, ge=1, le=4_294_967_295)
    rooms: list[Annotated[int, Field(ge=1, le=4_294_967_295)]] | None = Field(
        default=None, min_length=1, max_length=100_000
    )
    percent: float | None = Field(default=None, gt=0, le=100)
    dry_run: bool = False

    @model_validator(mode="after")
    def _one_selection(self) -> MoveRequest:
        chosen = [x for x in (self.room, self.rooms, self.percent) if x is not None]
        if len(chosen) != 1:
            raise ValueError("give exactly one of room, rooms, percent")
        return self


class KillSwitchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    on: bool
    who: str = Field(min_length=1, max_length=100)
    why: str = Field(min_length=1, max_length=1000)


class JobRequest(BaseModel):
    """A change of a job's control: `state` and/or `rate` (a number of messages per second, or
    null: back to the job's own rate); at least one of them."""

    model_config = ConfigDict(extra="forbid")

    state: JobState | None = None
    rate: float | None = Field(default=None, gt=0, le=RATE_MAX, strict=True, allow_inf_nan=False)
    who: str = Field(min_length=1, max_length=100)
    why: str = Field(min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _something_to_change(self) -> JobRequest:
        if self.state is None and "rate" not in self.model_fields_set:
            raise ValueError("give state, rate (null: the job's own), or both")
        if "state" in self.model_fields_set and self.state is None:
            raise ValueError("state is run, pause or panic (leave it out to keep it)")
        return self


def plain(value: Any) -> Any:
    """Dataclasses, enums and datetimes as JSON-ready values."""
    if is_dataclass(value) and not isinstance(value, type):
        value = asdict(value)
    return json.loads(json.dumps(value, default=str))


def admin_app(parts: AdminParts) -> FastAPI:
    def authorized(request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given:
            raise HTTPException(401, "an admin token is needed: Authorization: Bearer <token>")
        if not hmac.compare_digest(given.strip().encode(), parts.token):
            raise HTTPException(403, "wrong admin token")

    async def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except ControlStoreUnavailable as exc:
            raise HTTPException(503, f"control store unavailable: {exc}") from exc
        except ControlStoreMisconfigured as exc:
            raise HTTPException(500, f"control store misconfigured: {exc}") from exc
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from exc

    admin = APIRouter(prefix="/admin", dependencies=[Depends(authorized)])

    @admin.get("/rooms")
    async def rooms(phase: Phase | None = None) -> Any:
        records = await call(parts.store.rooms, phase)
        by_phase: dict[str, int] = {}
        for record in records:
            by_phase[record.phase.value] = by_phase.get(record.phase.value, 0) + 1
        return {"by_phase": by_phase, "rooms": plain([asdict(r) for r in records])}

    @admin.post("/moves")
    async def move(body: MoveRequest) -> Any:
        if body.percent is not None:
            universe = await call(lambda: list(parts.catalog.room_ids()))
            selected = select_percentage(universe, body.percent)
        else:
            wanted = [body.room] if body.room is not None else list(body.rooms or [])
            known = await call(parts.catalog.exists, wanted)
            unknown = sorted(set(wanted) - known)
            if unknown:
                raise HTTPException(
                    404, f"unknown rooms (not in the monolith): {unknown[:20]}"
                    + (f" and {len(unknown) - 20} more" if len(unknown) > 20 else ""),
                )  # fmt: skip
            selected = wanted
        report = await call(
            parts.store.move, selected, body.to, body.who, body.why, dry_run=body.dry_run
        )
        answer = plain(report) | {"selected": len(selected), "dry_run": body.dry_run}
        status = 409 if report.refused and not report.moved and not report.unchanged else 200
        return JSONResponse(answer, status)

    @admin.get("/kill-switch")
    async def kill_switch() -> Any:
        return plain(await call(parts.store.kill_switch))

    @admin.put("/kill-switch")
    async def set_kill_switch(body: KillSwitchRequest) -> Any:
        return plain(await call(parts.store.set_kill_switch, body.on, body.who, body.why))

    @admin.get("/spool")
    async def spool() -> Any:
        return plain(parts.spool.state())

    @admin.post("/spool/lost-rooms/forget")
    async def forget_lost(body: ForgetLostRequest) -> Any:
        """`chat-migrate repair --lost-rooms` sent range hints for these rooms: they leave
        the lost-rooms list, except a room that lost hints again since the repair read it
        (`gateway.domain.lost_rooms.may_forget`; kept for the next repair). The check and the
        forget run in one worker thread; a hint lost between the two (microseconds) is
        forgotten with its room, and its write is still captured by the binlog source."""
        spool = parts.spool
        if not isinstance(spool, LostRoomsSpool):
            raise HTTPException(501, "this gateway's spool keeps no lost-rooms list")

        def forget() -> tuple[list[int], list[int]]:
            lost = spool.lost_rooms()
            chosen: list[int] = []
            kept: list[int] = []
            for seen in body.rooms:
                now = lost.get(seen.room_id)
                if now is None:
                    continue
                if may_forget(seen.count, seen.last_lost_at, now.count, now.last_lost_at):
                    chosen.append(seen.room_id)
                else:
                    kept.append(seen.room_id)
            spool.forget_lost(chosen)
            return chosen, kept

        try:
            chosen, kept = await asyncio.to_thread(forget)
        except SpoolUnavailable as exc:
            raise HTTPException(503, f"spool unavailable: {exc}") from exc
        logging.getLogger("gateway").info(
            "lost rooms forgotten", extra={"forgotten": len(chosen), "kept": len(kept),
                                           "who": body.who, "why": body.why},
        )  # fmt: skip
        return {"forgotten": chosen, "kept": kept}

    @admin.get("/rooms/{room_id}/timeline")
    async def timeline(
        room_id: Annotated[int, Field(ge=1, le=4_294_967_295)],
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> Any:
        record = await call(parts.store.room, room_id)
        entries = await call(parts.store.timeline, room_id, limit)
        return {"room": plain(record), "timeline": plain([asdict(t) for t in entries]),
                "shadow": parts.ledger.by_room.get(room_id, {})}  # fmt: skip

    @admin.get("/shadow/differences")
    async def differences(
        room: Annotated[int | None, Query(ge=1)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> Any:
        return {"differences": parts.ledger.differences(room, limit)}

    def job_board() -> JobBoard:
        if parts.jobs is None:
            raise HTTPException(503, "this gateway has no job board")
        return parts.jobs

    def job_name(job: str) -> str:
        try:
            return check_job_name(job)
        except ValueError as exc:
            raise HTTPException(400, f"job: {exc}") from None

    def job_view(control: Any, report: Any) -> dict[str, Any]:
        """A job's control and last report; the report's detail as the JSON it is (text if a
        hand-written row is not JSON)."""
        shown = None
        if report is not None:
            try:
                detail = json.loads(report.detail)
            except ValueError:
                detail = report.detail
            shown = {"kind": report.kind, "at": plain(report.at), "detail": detail}
        return {"job": control.job, "control": plain(control), "report": shown}

    @admin.get("/jobs")
    async def jobs() -> Any:
        board = job_board()
        controls = {c.job: c for c in await call(board.controls)}
        reports = {r.job: r for r in await call(board.reports)}
        names = sorted(controls.keys() | reports.keys())
        views = [
            job_view(controls.get(name) or JobControl.default(name), reports.get(name))
            for name in names
        ]
        return {"jobs": views}

    @admin.get("/jobs/{job}")
    async def job(job: str) -> Any:
        board, name = job_board(), job_name(job)
        control = await call(board.control, name)
        reports = await call(board.reports)
        return job_view(control, next((r for r in reports if r.job == name), None))

    @admin.put("/jobs/{job}")
    async def set_job(job: str, body: JobRequest) -> Any:
        board, name = job_board(), job_name(job)
        rate_given = "rate" in body.model_fields_set
        control = await call(
            board.set_control, name, body.who, body.why, state=body.state,
            rate=body.rate, clear_rate=rate_given and body.rate is None,
        )  # fmt: skip
        return {"job": name, "control": plain(control)}

    # No schema page: it would answer without the token.
    app = FastAPI(title="chat gateway admin", openapi_url=None, docs_url=None, redoc_url=None)
    app.include_router(admin)

    @app.exception_handler(StarletteHTTPException)
    async def refused(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"errors": [str(exc.detail)]}, exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        reasons = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        return JSONResponse({"errors": reasons}, 400)

    @app.get("/healthz")
    async def healthz() -> Response:
        state = parts.health() | {"checked_at": round(time.time(), 3)}
        body = json.dumps(state, ensure_ascii=False, default=str)
        return Response(body, 200 if state.get("ok") else 503, media_type="application/json")

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
