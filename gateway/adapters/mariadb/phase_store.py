"""PhaseStore on MariaDB: the control store shared by every gateway and the migrator
(tables in control_schema.py; SQLAlchemy Core, every value a bound parameter).

How a change is made safe against concurrent writers: every writer (a move, a mark, the kill
switch) first locks the one control_meta row (SELECT ... FOR UPDATE), then locks the rows of
the rooms it reads (SELECT ... FOR UPDATE), judges them, writes, bumps the revision and commits,
all in one transaction. A second writer waits on the meta row and then reads the first one's
result, so no update is lost; with one lock order for all writers they cannot deadlock on each
other. Readers take no lock: `snapshot` reads the meta row and the rooms in one REPEATABLE READ
transaction, so the phases it returns are exactly those of its revision.

Times are the server's (UTC_TIMESTAMP(6), one clock for every gateway and job), read once per
change, so the transitions of one move share one time. Driver errors become
ControlStoreUnavailable or ControlStoreMisconfigured (control_schema.translate); a row this
version cannot read becomes ControlStoreMisconfigured naming its table and row.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Row, func, literal_column, select, update
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql.expression import ColumnClause

from gateway.adapters.mariadb.control_schema import (
    META_ID,
    check_meta,
    control_meta,
    kill_switch_history,
    phase_transitions,
    room_marks,
    room_phases,
    shadow_records,
    translate,
)
from gateway.domain.phases import (
    PARITY_MAX_AGE_S,
    ControlSnapshot,
    Direction,
    KillSwitch,
    MarkKind,
    MoveReport,
    Phase,
    RoomMark,
    RoomRecord,
    Transition,
    check_direction,
    check_limit,
    check_max_age,
    check_positions,
    check_room_id,
    check_room_ids,
    check_shadow_batch,
    check_who,
    check_why,
    parse_phase,
    plan_move,
)
from gateway.domain.shadow_record import ShadowCounts, ShadowTally
from gateway.errors import ControlStoreMisconfigured

CHUNK = 1000  # room ids per IN (...) list
_NOW: ColumnClause[Any] = literal_column("UTC_TIMESTAMP(6)")


@dataclass(frozen=True, slots=True)
class _Meta:
    revision: int
    kill_switch_on: bool
    now: datetime  # the server's clock, aware UTC


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.replace(tzinfo=UTC)


def _naive(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None)


def _phase(value: str, table: str, row: str) -> Phase:
    try:
        return Phase(value)
    except ValueError:
        known = ", ".join(Phase)
        raise ControlStoreMisconfigured(
            f"control store table {table}, {row}: unknown phase {value!r} "
            f"(this version knows {known})"
        ) from None


def _record(row: Row[Any]) -> RoomRecord:
    return RoomRecord(
        room_id=row.room_id,
        phase=_phase(row.phase, "room_phases", f"room_id={row.room_id}"),
        backfilled_at=_utc(row.backfilled_at),
        parity_clean_at=_utc(row.parity_clean_at),
        parity_positions=row.parity_positions,
        changed_at=_utc(row.changed_at),
    )


def _transition(row: Row[Any]) -> Transition:
    table = phase_transitions.name
    return Transition(
        row.room_id,
        _phase(row.from_phase, table, f"id={row.id}"),
        _phase(row.to_phase, table, f"id={row.id}"),
        row.who,
        row.why,
        row.at.replace(tzinfo=UTC),
    )


def _chunks(ids: Sequence[int]) -> Iterator[Sequence[int]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start : start + CHUNK]


class MariaDbPhaseStore:
    """PhaseStore on the control store's database. Owns `engine` (built by
    control_schema.control_engine): `close` disposes of it. Expects `ensure_schema` to have
    run; without it every call raises ControlStoreMisconfigured."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    # -- reads ---------------------------------------------------------------------------

    def revision(self) -> int:
        with self._transaction("revision") as conn:
            return self._meta(conn, lock=False).revision

    def snapshot(self) -> ControlSnapshot:
        with self._transaction("snapshot", consistent=True) as conn:
            meta = self._meta(conn, lock=False)
            rows = conn.execute(
                select(room_phases.c.room_id, room_phases.c.phase).where(
                    room_phases.c.phase != Phase.LEGACY.value
                )
            ).all()
        phases = {
            row.room_id: _phase(row.phase, "room_phases", f"room_id={row.room_id}") for row in rows
        }
        return ControlSnapshot(meta.revision, meta.kill_switch_on, phases)

    def room(self, room_id: int) -> RoomRecord:
        check_room_id(room_id)
        with self._transaction("room") as conn:
            found = self._records(conn, [room_id], lock=False)
        return found.get(room_id) or RoomRecord.absent(room_id)

    def rooms(self, phase: Phase | None = None) -> list[RoomRecord]:
        query = select(room_phases).order_by(room_phases.c.room_id)
        if phase is not None:
            query = query.where(room_phases.c.phase == parse_phase(phase).value)
        with self._transaction("rooms") as conn:
            rows = conn.execute(query).all()
        return [_record(row) for row in rows]

    def kill_switch(self) -> KillSwitch:
        with self._transaction("kill_switch") as conn:
            return self._switch_now(conn, self._meta(conn, lock=False).kill_switch_on)

    def switch_history(self, limit: int) -> list[KillSwitch]:
        limit = check_limit(limit)
        with self._transaction("switch_history") as conn:
            rows = conn.execute(
                select(kill_switch_history).order_by(kill_switch_history.c.id.desc()).limit(limit)
            ).all()
        return [KillSwitch(bool(r.switched_on), r.who, r.why, _utc(r.at)) for r in rows]

    def timeline(self, room_id: int, limit: int) -> list[Transition]:
        check_room_id(room_id)
        limit = check_limit(limit)
        table = phase_transitions
        with self._transaction("timeline") as conn:
            rows = conn.execute(
                select(table)
                .where(table.c.room_id == room_id)
                .order_by(table.c.id.desc())
                .limit(limit)
            ).all()
        return [_transition(row) for row in rows]

    def recent_transitions(self, limit: int) -> list[Transition]:
        limit = check_limit(limit)
        table = phase_transitions
        with self._transaction("recent_transitions") as conn:
            rows = conn.execute(select(table).order_by(table.c.id.desc()).limit(limit)).all()
        return [_transition(row) for row in rows]

    def shadow_records(self, room_ids: Iterable[int]) -> dict[int, ShadowTally]:
        ids = check_room_ids(room_ids)
        with self._transaction("shadow_records") as conn:
            return self._shadows(conn, ids)

    def marks(self, room_id: int, limit: int) -> list[RoomMark]:
        check_room_id(room_id)
        limit = check_limit(limit)
        table = room_marks
        with self._transaction("marks") as conn:
            rows = conn.execute(
                select(table)
                .where(table.c.room_id == room_id)
                .order_by(table.c.id.desc())
                .limit(limit)
            ).all()
        marks = []
        for row in rows:
            try:
                kind = MarkKind(row.kind)
            except ValueError:
                raise ControlStoreMisconfigured(
                    f"control store table room_marks, id={row.id}: unknown kind {row.kind!r}"
                ) from None
            marks.append(
                RoomMark(row.room_id, kind, row.detail, row.who, row.at.replace(tzinfo=UTC))
            )
        return marks

    # -- changes -------------------------------------------------------------------------

    def move(
        self,
        room_ids: Iterable[int],
        to: Phase,
        who: str,
        why: str,
        *,
        dry_run: bool = False,
        direction: Direction | None = None,
        parity_max_age_s: float = PARITY_MAX_AGE_S,
    ) -> MoveReport:
        target, who, why = parse_phase(to), check_who(who), check_why(why)
        direction, max_age = check_direction(direction), check_max_age(parity_max_age_s)
        ids = check_room_ids(room_ids)
        if not ids:
            return MoveReport()
        with self._transaction("move") as conn:
            meta = self._meta(conn, lock=not dry_run)
            found = self._records(conn, ids, lock=not dry_run)
            records = [found.get(room_id) or RoomRecord.absent(room_id) for room_id in ids]
            # Read without a lock: recording a shadow batch takes no meta lock (it must never
            # wait on a move), so a batch committed after this read is judged by the next move.
            shadows = self._shadows(conn, ids) if target == Phase.NEW_PRIMARY else None
            report = plan_move(
                records, target, who, why, meta.now, direction=direction, shadows=shadows,
                parity_max_age_s=max_age,
            )  # fmt: skip
            if dry_run or not report.moved:
                return report
            revision = meta.revision + 1
            at = _naive(meta.now)
            upsert = mysql_insert(room_phases)
            conn.execute(
                upsert.on_duplicate_key_update(
                    phase=upsert.inserted.phase, changed_at=upsert.inserted.changed_at
                ),
                [{"room_id": t.room_id, "phase": t.to_phase.value, "changed_at": at}
                 for t in report.moved],
            )  # fmt: skip
            conn.execute(
                phase_transitions.insert(),
                [
                    {"room_id": t.room_id, "from_phase": t.from_phase.value,
                     "to_phase": t.to_phase.value, "who": who, "why": why, "at": at,
                     "revision": revision}
                    for t in report.moved
                ],
            )  # fmt: skip
            self._bump(conn, revision)
        return report

    def set_kill_switch(self, on: bool, who: str, why: str) -> KillSwitch:
        if not isinstance(on, bool):
            raise ValueError(f"the kill switch is on (True) or off (False), got {on!r}")
        who, why = check_who(who), check_why(why)
        with self._transaction("set_kill_switch") as conn:
            meta = self._meta(conn, lock=True)
            if meta.kill_switch_on == on:
                return self._switch_now(conn, on)
            revision = meta.revision + 1
            conn.execute(
                kill_switch_history.insert().values(
                    switched_on=on, who=who, why=why, at=_naive(meta.now), revision=revision
                )
            )
            self._bump(conn, revision, kill_switch_on=on)
        return KillSwitch(on, who, why, meta.now)

    def mark_backfilled(self, room_id: int, who: str) -> RoomRecord:
        return self._mark(check_room_id(room_id), MarkKind.BACKFILLED, None, check_who(who))

    def mark_parity_clean(self, room_id: int, positions: str, who: str) -> RoomRecord:
        return self._mark(
            check_room_id(room_id), MarkKind.PARITY_CLEAN, check_positions(positions),
            check_who(who),
        )  # fmt: skip

    def record_shadow(self, counts: Mapping[int, ShadowCounts]) -> None:
        batch = check_shadow_batch(counts)
        if not batch:
            return
        with self._transaction("record_shadow") as conn:
            # The meta row read, not locked: its schema check and the server's clock. Rows in
            # one order, so that two gateways' batches cannot deadlock on each other.
            at = _naive(self._meta(conn, lock=False).now)
            upsert = mysql_insert(shadow_records)
            table, new = shadow_records.c, upsert.inserted
            conn.execute(
                upsert.on_duplicate_key_update(
                    same=table.same + new.same,
                    different=table.different + new.different,
                    late=table.late + new.late,
                    last_same_at=func.coalesce(new.last_same_at, table.last_same_at),
                    last_different_at=func.coalesce(new.last_different_at, table.last_different_at),
                    last_late_at=func.coalesce(new.last_late_at, table.last_late_at),
                    updated_at=new.updated_at,
                ),
                [
                    {"room_id": room_id, "same": c.same, "different": c.different, "late": c.late,
                     "last_same_at": at if c.same else None,
                     "last_different_at": at if c.different else None,
                     "last_late_at": at if c.late else None, "updated_at": at}
                    for room_id, c in sorted(batch.items())
                ],
            )  # fmt: skip

    def close(self) -> None:
        self._engine.dispose()

    # -- the parts -----------------------------------------------------------------------

    @contextmanager
    def _transaction(self, doing: str, *, consistent: bool = False) -> Iterator[Connection]:
        """One transaction, committed when the block ends; the driver's errors translated.
        `consistent`: every read of the block sees one snapshot (REPEATABLE READ); otherwise
        the engine's READ COMMITTED, where locking reads see the latest commit."""
        try:
            with self._engine.connect() as conn:
                if consistent:
                    conn = conn.execution_options(isolation_level="REPEATABLE READ")
                with conn.begin():
                    yield conn
        except SQLAlchemyError as exc:
            raise translate(exc, doing) from exc

    def _meta(self, conn: Connection, *, lock: bool) -> _Meta:
        query = select(
            control_meta.c.schema_version,
            control_meta.c.revision,
            control_meta.c.kill_switch_on,
            _NOW,
        ).where(control_meta.c.id == META_ID)
        row = conn.execute(query.with_for_update() if lock else query).one_or_none()
        check_meta(None if row is None else tuple(row))
        assert row is not None
        return _Meta(int(row[1]), bool(row[2]), row[3].replace(tzinfo=UTC))

    def _records(
        self, conn: Connection, ids: Sequence[int], *, lock: bool
    ) -> dict[int, RoomRecord]:
        found: dict[int, RoomRecord] = {}
        for chunk in _chunks(ids):
            query = select(room_phases).where(room_phases.c.room_id.in_(chunk))
            for row in conn.execute(query.with_for_update() if lock else query):
                found[row.room_id] = _record(row)
        return found

    def _shadows(self, conn: Connection, ids: Sequence[int]) -> dict[int, ShadowTally]:
        found: dict[int, ShadowTally] = {}
        for chunk in _chunks(ids):
            for row in conn.execute(
                select(shadow_records).where(shadow_records.c.room_id.in_(chunk))
            ):
                found[row.room_id] = ShadowTally(
                    row.room_id, int(row.same), int(row.different), int(row.late),
                    _utc(row.last_same_at), _utc(row.last_different_at), _utc(row.last_late_at),
                    _utc(row.updated_at),
                )  # fmt: skip
        return found

    def _bump(self, conn: Connection, revision: int, **values: object) -> None:
        conn.execute(
            update(control_meta)
            .where(control_meta.c.id == META_ID)
            .values(revision=revision, **values)
        )

    def _switch_now(self, conn: Connection, on: bool) -> KillSwitch:
        """The switch's state with who set it: the newest history row, if it agrees with the
        meta row (the state that routes) and (who, why, at) None otherwise."""
        row = conn.execute(
            select(kill_switch_history).order_by(kill_switch_history.c.id.desc()).limit(1)
        ).one_or_none()
        if row is None or bool(row.switched_on) != on:
            return KillSwitch(on)
        return KillSwitch(on, row.who, row.why, _utc(row.at))

    def _mark(self, room_id: int, kind: MarkKind, detail: str | None, who: str) -> RoomRecord:
        with self._transaction(f"mark {kind.value}") as conn:
            meta = self._meta(conn, lock=True)
            self._records(conn, [room_id], lock=True)
            revision = meta.revision + 1
            at = _naive(meta.now)
            facts: dict[str, object] = (
                {"backfilled_at": at}
                if kind == MarkKind.BACKFILLED
                else {"parity_clean_at": at, "parity_positions": detail}
            )
            conn.execute(
                mysql_insert(room_phases)
                .values(room_id=room_id, phase=Phase.LEGACY.value, **facts)
                .on_duplicate_key_update(**facts)
            )
            conn.execute(
                room_marks.insert().values(
                    room_id=room_id, kind=kind.value, detail=detail, who=who, at=at,
                    revision=revision,
                )
            )  # fmt: skip
            self._bump(conn, revision)
            return self._records(conn, [room_id], lock=False)[room_id]
