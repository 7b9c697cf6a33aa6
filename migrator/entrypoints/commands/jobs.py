"""`chat-migrate job ...`: the operator controls of running jobs (issue 13 item 1; the same job
board the admin API's `/admin/jobs` writes, `gateway/domain/jobs.py`):

    chat-migrate job list                          every job's control and last heartbeat
    chat-migrate job show JOB
    chat-migrate job pause JOB --why ...           the job waits at its next checkpoint
    chat-migrate job resume JOB --why ...          back to run (also after a panic)
    chat-migrate job panic JOB --why ...           the job stops at once, exit 5, checkpoint kept
    chat-migrate job rate JOB N --why ...          N messages/s from now on
    chat-migrate job rate JOB --clear --why ...    back to the job's own rate
    chat-migrate job set JOB [--state S] [--rate N | --clear-rate] --why ...

A running job reads its control about once a second (`migrator/service/control.py`), so a
change takes effect within about a second; a job need not run to be controlled (a pause set
before it starts holds it at its start).

Thin: every argument (the job's name, the state, the rate, who and why) is checked before
anything is opened, so bad input is one line on stderr, exit 2, nothing read or changed; then
one call on the board (`JobsParts`, from `migrator/bootstrap.py` unless a test gives others).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from gateway.domain.jobs import (
    RATE_MAX,
    JobControl,
    JobReport,
    JobState,
    check_change,
    check_job_name,
    check_rate,
    check_state,
    check_who,
    check_why,
)
from gateway.ports import JobBoard
from migrator.errors import OperatorError


@dataclass
class JobsParts:
    """What these commands use: the job board and who a change is recorded as by default."""

    board: JobBoard
    who: str


Wiring = Callable[[], AbstractContextManager[JobsParts]]


@contextmanager
def real_parts() -> Iterator[JobsParts]:
    """The job board in the real control store, from the MIG_* settings."""
    from migrator import bootstrap
    from migrator.settings import MigratorSettings

    settings = MigratorSettings.from_env()
    with bootstrap.parts(settings) as shared:
        yield JobsParts(bootstrap.job_board(shared), settings.ops.who)


JobArgument = Annotated[str, typer.Argument(metavar="JOB", help="The job's name (backfill, ...).")]
WhoOption = Annotated[
    str | None, typer.Option("--who", help="Who asks (recorded); default MIG_MIGRATOR_WHO.")
]
WhyOption = Annotated[
    str | None, typer.Option("--why", help="Why (required; recorded with the change).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a summary.")]
# A rate of -1 must reach our check (and its clear message), not be taken for an option.
LOOSE = {"ignore_unknown_options": True}


class JobGroup(TyperGroup):
    """`chat-migrate job`: a word that is not one of its commands (`job stop backfill`) is
    one line saying which words set a state, not click's usage box."""

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        found = super().get_command(ctx, cmd_name)
        if found is None and not cmd_name.startswith("-"):
            raise OperatorError(
                f"job {cmd_name!r}: not a job command; a job's state is set with pause, resume "
                "(run) or panic, its rate with rate (`chat-migrate job --help`)"
            )
        return found


@dataclass(frozen=True)
class Change:
    """A change, checked before anything is opened."""

    job: str
    who: str | None  # None: the settings' default (checked once known)
    why: str
    state: JobState | None = None
    rate: float | None = None
    clear_rate: bool = False


def register(app: typer.Typer, wiring: Wiring = real_parts) -> None:
    """Adds `job` (list, show, pause, resume, panic, rate, set) to `app`; `wiring` opens the
    board."""
    job_app = typer.Typer(
        name="job",
        cls=JobGroup,
        help=(
            "Operator controls of running jobs (backfill, repair): pause, resume, panic, change "
            "the rate; a running job obeys within about a second."
        ),
        no_args_is_help=True,
    )

    def apply(change: Change, as_json: bool) -> None:
        with wiring() as parts:
            who = _checked("--who", check_who, change.who or parts.who)
            control = parts.board.set_control(
                change.job, who, change.why, state=change.state, rate=change.rate,
                clear_rate=change.clear_rate,
            )  # fmt: skip
        typer.echo(_json({"job": control.job, "control": control_json(control)}) if as_json
                   else render_change(control))  # fmt: skip

    @job_app.command("list")
    def list_jobs(as_json: JsonOption = False) -> None:
        """Every job with a control or a heartbeat: its state, rate, who set it and why, and
        its last heartbeat. Reads only."""
        with wiring() as parts:
            controls = {c.job: c for c in parts.board.controls()}
            reports = {r.job: r for r in parts.board.reports()}
        names = sorted(controls.keys() | reports.keys())
        views = [(controls.get(n) or JobControl.default(n), reports.get(n)) for n in names]
        if as_json:
            typer.echo(_json({"jobs": [job_json(c, r) for c, r in views]}))
        elif not views:
            typer.echo("no job has been controlled or has reported yet")
        else:
            typer.echo("\n".join(render_job(c, r) for c, r in views))

    @job_app.command("show")
    def show(job: JobArgument, as_json: JsonOption = False) -> None:
        """One job's control and last heartbeat (a job never controlled runs at its own
        rate). Reads only."""
        name = _job(job)
        with wiring() as parts:
            control = parts.board.control(name)
            report = next((r for r in parts.board.reports() if r.job == name), None)
        typer.echo(_json(job_json(control, report)) if as_json else render_job(control, report))

    @job_app.command("pause")
    def pause(
        job: JobArgument, why: WhyOption = None, who: WhoOption = None, as_json: JsonOption = False
    ) -> None:
        """Pause JOB: it sends nothing more and waits at its next checkpoint, keeping its
        place, until resumed."""
        apply(_change(job, who, why, "pause", state=JobState.PAUSE), as_json)

    @job_app.command("resume")
    def resume(
        job: JobArgument, why: WhyOption = None, who: WhoOption = None, as_json: JsonOption = False
    ) -> None:
        """Set JOB back to run: a paused job goes on; after a panic, run its command again (it
        resumes from its checkpoint)."""
        apply(_change(job, who, why, "resume", state=JobState.RUN), as_json)

    @job_app.command("panic")
    def panic(
        job: JobArgument, why: WhyOption = None, who: WhoOption = None, as_json: JsonOption = False
    ) -> None:
        """Stop JOB at once: nothing more is sent, it exits 5 with its checkpoint kept; it
        refuses to start again until resumed."""
        apply(_change(job, who, why, "panic", state=JobState.PANIC), as_json)

    @job_app.command("rate", context_settings=LOOSE)
    def rate(
        job: JobArgument,
        n: Annotated[
            str | None, typer.Argument(metavar="[N]", help="Messages per second (above 0).")
        ] = None,
        clear: Annotated[
            bool, typer.Option("--clear", help="Back to the job's own rate (its setting).")
        ] = False,
        why: WhyOption = None,
        who: WhoOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Set JOB's rate to N messages per second (its state is kept), or --clear it back to
        the job's own rate."""
        if (n is None) == (not clear):
            raise OperatorError("job rate: give N (messages per second) or --clear, not both")
        if n is None:
            apply(_change(job, who, why, "rate", clear_rate=True), as_json)
        else:
            apply(_change(job, who, why, "rate", rate=_rate(n)), as_json)

    @job_app.command("set", context_settings=LOOSE)
    def set_(
        job: JobArgument,
        state: Annotated[str | None, typer.Option("--state", help="run, pause or panic.")] = None,
        rate: Annotated[
            str | None, typer.Option("--rate", help="Messages per second (above 0).")
        ] = None,
        clear_rate: Annotated[
            bool, typer.Option("--clear-rate", help="Back to the job's own rate.")
        ] = False,
        why: WhyOption = None,
        who: WhoOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Set JOB's state and/or rate in one change (what PUT /admin/jobs/{job} does)."""
        checked_state = None if state is None else _checked("--state", check_state, state.strip())
        checked_rate = None if rate is None else _rate(rate, "--rate")
        apply(
            _change(job, who, why, "set", state=checked_state, rate=checked_rate,
                    clear_rate=clear_rate),
            as_json,
        )  # fmt: skip

    app.add_typer(job_app, name="job")


# -- checking arguments (before anything is opened) -----------------------------------------


def _checked(what: str, check: Callable[[Any], Any], value: Any) -> Any:
    try:
        return check(value)
    except ValueError as exc:
        raise OperatorError(f"{what}: {exc}") from None


def _job(job: str) -> str:
    name: str = _checked("JOB", check_job_name, job)
    return name


def _rate(text: str, what: str = "N") -> float:
    """A rate as typed: a number above 0 (1e3 is 1000); `abc`, `nan`, `0`, `-1` refused."""
    try:
        value = float(text.strip())
    except ValueError:
        raise OperatorError(
            f"{what}: a rate is a number of messages per second, got {text!r}"
        ) from None
    if math.isnan(value):
        raise OperatorError(f"{what}: a rate is a number of messages per second, got {text!r}")
    try:
        return float(check_rate(value) or 0.0)
    except ValueError:
        raise OperatorError(
            f"{what}: a rate is above 0 and at most {RATE_MAX:.0f} messages/s, got {text!r}"
        ) from None


def _change(
    job: str,
    who: str | None,
    why: str | None,
    command: str,
    *,
    state: JobState | None = None,
    rate: float | None = None,
    clear_rate: bool = False,
) -> Change:
    name = _job(job)
    if why is None or not why.strip():
        raise OperatorError(f"job {command} needs --why (it is recorded with the change)")
    checked_why: str = _checked("--why", check_why, why)
    if who is not None:
        _checked("--who", check_who, who)
    _checked(f"job {command}", lambda _: check_change(state, rate, clear_rate), None)
    return Change(name, who, checked_why, state, rate, clear_rate)


# -- rendering -------------------------------------------------------------------------------


def _json(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2)


def _when(at: datetime | None) -> str:
    return "-" if at is None else at.strftime("%Y-%m-%d %H:%M:%S UTC")


def control_json(control: JobControl) -> dict[str, Any]:
    return {
        "job": control.job,
        "state": control.state.value,
        "rate": control.rate,
        "who": control.who,
        "why": control.why,
        "at": None if control.at is None else control.at.isoformat(),
    }


def job_json(control: JobControl, report: JobReport | None) -> dict[str, Any]:
    shown = None
    if report is not None:
        try:
            detail: Any = json.loads(report.detail)
        except ValueError:
            detail = report.detail
        shown = {"kind": report.kind, "at": report.at.isoformat(), "detail": detail}
    return {"job": control.job, "control": control_json(control), "report": shown}


def _rate_text(rate: float | None) -> str:
    return "its own rate" if rate is None else f"{rate:g} messages/s"


def render_change(control: JobControl) -> str:
    effect = {
        JobState.RUN: "runs (a paused job goes on within about a second; after a panic, run "
        "its command again: it resumes from its checkpoint)",
        JobState.PAUSE: "pauses at its next checkpoint, within about a second, keeping its "
        f"place (`chat-migrate job resume {control.job} --why ...` lets it go on)",
        JobState.PANIC: "stops at once at its next checkpoint (exit 5), its checkpoint kept; it "
        f"will not start again until `chat-migrate job resume {control.job} --why ...`",
    }[control.state]
    return (
        f"job {control.job}: {control.state.value} at {_rate_text(control.rate)} (set by "
        f"{control.who} at {_when(control.at)}: {control.why})\n  the job {effect}"
    )


def render_job(control: JobControl, report: JobReport | None) -> str:
    if control.at is None:
        asked = f"{control.state.value} at {_rate_text(control.rate)} (never controlled)"
    else:
        asked = (
            f"{control.state.value} at {_rate_text(control.rate)} (set by {control.who} at "
            f"{_when(control.at)}: {control.why})"
        )
    if report is None:
        beat = "no heartbeat (not started, or not a job that reports)"
    else:
        age = (datetime.now(UTC) - report.at).total_seconds()
        beat = (
            f"last heartbeat [{report.kind}] {_when(report.at)} ({max(age, 0):.0f} s ago): "
            f"{_summary(report.detail)}"
        )
    return f"{control.job}: {asked}\n  {beat}"


def _summary(detail: str, width: int = 200) -> str:
    """A heartbeat's detail on one line, cut at `width` characters."""
    try:
        text = json.dumps(json.loads(detail), ensure_ascii=False, separators=(", ", ": "))
    except ValueError:
        text = detail
    return text if len(text) <= width else text[: width - 1] + "…"
