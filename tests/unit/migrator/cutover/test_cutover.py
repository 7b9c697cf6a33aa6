"""`chat-migrate cutover`, `rollback` and `kill-switch` on in-memory parts: moves go through the
guards with a direction, percent steps are one command each, a dry run changes nothing and says
why each refused room is refused, and bad input exits 2 with nothing changed."""

from __future__ import annotations

import json

from gateway.domain.phases import Phase, bucket
from tests.unit.migrator.cutover.conftest import ROOMS, Cli

L, DW, SR, NP = Phase.LEGACY, Phase.DUAL_WRITE, Phase.SHADOW_READ, Phase.NEW_PRIMARY


def phases(cli: Cli, rooms: list[int]) -> list[Phase]:
    return [cli.store.room(r).phase for r in rooms]


def test_cutover_moves_rooms_forward_and_records_who_and_why(cli: Cli) -> None:
    ran = cli("cutover", "3,1", "--to", "dual_write", "--why", "MIG-1: first rooms")
    assert ran.code == 0, ran.err
    assert "cutover 3,1 to dual_write: 2 rooms selected; 2 moved, 0 unchanged, 0 refused" in ran.out
    assert "moved legacy -> dual_write (2): 3, 1" in ran.out
    assert phases(cli, [1, 3, 2]) == [DW, DW, L]
    (transition,) = cli.store.timeline(1, 10)
    assert (transition.who, transition.why) == ("ops:test", "MIG-1: first rooms")
    ran = cli("cutover", "2", "--to", "dual_write", "--why", "next", "--who", "ops:alice")
    assert ran.code == 0 and cli.store.timeline(2, 1)[0].who == "ops:alice"


def test_percent_steps_are_one_command_each_and_each_contains_the_last(cli: Cli) -> None:
    moved: list[set[int]] = []
    for step in ("1%", "10%", "100%"):
        ran = cli("cutover", step, "--to", "dual_write", "--why", f"wave {step}", "--json")
        assert ran.code == 0, ran.err
        answer = json.loads(ran.out)
        assert answer["selection"] == step
        moved.append({m["room_id"] for m in answer["moved"]})
        assert answer["selected"] == len(moved[-1]) + len(answer["unchanged"])
        inside = {r for r in ROOMS if cli.store.room(r).phase == DW}
        assert inside == {r for r in ROOMS if bucket(r) < float(step[:-1]) * 100}
    assert moved[0] and moved[1] and moved[2]
    assert len(moved[0]) < len(moved[0] | moved[1]) < 200
    assert set().union(*moved) == set(ROOMS)
    again = json.loads(cli("cutover", "10%", "--to", "dual_write", "--why", "again", "--json").out)
    assert again["moved"] == [] and len(again["unchanged"]) == len(moved[0] | moved[1])


def test_a_dry_run_says_each_fate_and_reason_and_changes_nothing(cli: Cli) -> None:
    cli.store.move([1, 2, 3], DW, "ops", "start")
    cli.store.mark_backfilled(1, "backfill")
    revision = cli.store.revision()
    ran = cli("cutover", "1,2,3,4", "--to", "shadow_read", "--why", "try", "--dry-run")
    assert ran.code == 0, ran.err
    assert "2 would be moved" not in ran.out
    assert "1 would be moved, 0 unchanged, 3 refused (dry run: nothing changed)" in ran.out
    assert "would be moved dual_write -> shadow_read (1): 1" in ran.out
    assert "refused (2): 2, 3\n    because shadow_read needs the room's backfill done" in ran.out
    assert "refused (1): 4\n    because forward one step at a time: legacy goes to dual_write" in (
        ran.out
    )
    assert cli.store.revision() == revision
    assert phases(cli, [1, 2, 3, 4]) == [DW, DW, DW, L]
    answer = json.loads(cli("cutover", "1,4", "--to", "shadow_read", "--why", "try", "--dry-run",
                            "--json").out)  # fmt: skip
    assert answer["dry_run"] is True
    assert answer["moved"] == [{"room_id": 1, "from": "dual_write", "to": "shadow_read"}]
    assert [r["room_id"] for r in answer["refused"]] == [4]
    assert cli.store.revision() == revision


def test_some_refused_beside_moved_is_done_every_room_refused_exits_2(cli: Cli) -> None:
    cli.store.move([1, 2], DW, "ops", "start")
    cli.store.mark_backfilled(1, "backfill")
    ran = cli("cutover", "1,2", "--to", "shadow_read", "--why", "wave")
    assert ran.code == 0 and phases(cli, [1, 2]) == [SR, DW]
    revision = cli.store.revision()
    ran = cli("cutover", "2", "--to", "shadow_read", "--why", "wave")
    assert ran.code == 2
    assert "refused (1): 2" in ran.out and "backfill" in ran.out
    assert cli.store.revision() == revision


def test_cutover_refuses_to_take_a_room_back_and_names_rollback(cli: Cli) -> None:
    cli.store.move([1, 2], DW, "ops", "start")
    revision = cli.store.revision()
    ran = cli("cutover", "1,2,3", "--to", "legacy", "--why", "oops")
    assert ran.code == 0  # room 3 is already legacy: unchanged
    assert "refused (2): 1, 2\n    because the room is in dual_write, and legacy is behind it" in (
        ran.out
    )
    assert "chat-migrate rollback ... --to legacy" in ran.out
    assert cli.store.revision() == revision
    assert cli("cutover", "1", "--to", "legacy", "--why", "oops").code == 2


def test_rollback_goes_back_at_once_and_refuses_to_go_forward(cli: Cli) -> None:
    cli.store.move([1, 2], DW, "ops", "start")
    cli.store.mark_backfilled(1, "backfill")
    cli.store.move([1], SR, "ops", "read")
    ran = cli("rollback", "1,2,3", "--to", "dual_write", "--why", "differences", "--json")
    assert ran.code == 0, ran.err
    answer = json.loads(ran.out)
    assert answer["command"] == "rollback"
    assert answer["moved"] == [{"room_id": 1, "from": "shadow_read", "to": "dual_write"}]
    assert answer["unchanged"] == [2]
    (refused,) = answer["refused"]
    assert refused["room_id"] == 3 and "a rollback only moves back" in refused["reason"]
    assert "chat-migrate cutover ... --to dual_write" in refused["reason"]
    ran = cli("rollback", "all", "--to", "legacy", "--why", "incident")
    assert ran.code == 0 and phases(cli, [1, 2]) == [L, L]
    assert "moved dual_write -> legacy (2): 1, 2" in ran.out


def test_new_primary_is_refused_naming_every_missing_condition(cli: Cli) -> None:
    cli.store.move([5], DW, "ops", "start")
    cli.store.mark_backfilled(5, "backfill")
    cli.store.move([5], SR, "ops", "read")
    ran = cli("cutover", "5", "--to", "new_primary", "--why", "go", "--dry-run")
    assert ran.code == 2
    assert "new_primary is not built in this version" in ran.out
    assert "a clean parity check of the room within 1 h (none is recorded)" in ran.out
    assert "a clean shadow record: no shadow read came out same" in ran.out


def test_unknown_rooms_are_refused_before_anything_changes(cli: Cli) -> None:
    revision = cli.store.revision()
    ran = cli("cutover", "1,999,5000", "--to", "dual_write", "--why", "typo")
    assert ran.code == 2
    assert "unknown room(s) 999, 5000: not rooms of the monolith" in ran.err
    assert cli.store.revision() == revision and phases(cli, [1]) == [L]


def test_bad_arguments_exit_2_with_a_message_and_open_nothing(cli: Cli) -> None:
    cases = [
        (["cutover", "1", "--to", "dual-write", "--why", "x"],
         "--to: unknown phase 'dual-write' (known: legacy, dual_write, shadow_read"),
        (["cutover", "1,x", "--to", "dual_write", "--why", "x"], "'x' in ROOMS is not a room id"),
        (["cutover", "0%", "--to", "dual_write", "--why", "x"], "'0%' is not a percentage"),
        (["cutover", "1", "--why", "x"], "Missing option '--to'"),
        (["cutover", "1", "--to", "dual_write"], "Missing option '--why'"),
        (["rollback", "@/nonexistent/rooms.txt", "--to", "legacy", "--why", "x"],
         "cannot read the room list /nonexistent/rooms.txt"),
        (["kill-switch", "maybe"], "kill-switch takes on, off or show, got 'maybe'"),
        (["kill-switch", "on"], "kill-switch on needs --why"),
        (["kill-switch", "off", "--why", " "], "kill-switch off needs --why"),
    ]  # fmt: skip
    for args, message in cases:
        ran = cli(*args)
        assert ran.code == 2, args
        assert message in ran.err, (args, ran.err)
    assert cli.opened == 0
    assert cli.store.rooms() == [] and cli.store.kill_switch().on is False


def test_bad_who_or_why_exit_2_and_change_nothing(cli: Cli) -> None:
    for args, message in [
        (["--who", "ops\nalice"], "who must be one line"),
        (["--why", "y" * 1001], "why is at most 1000 characters"),
    ]:
        base = ["cutover", "1", "--to", "dual_write", "--why", "x"]
        ran = cli(*base, *args)
        assert ran.code == 2 and message in ran.err, ran.err
    assert cli.store.rooms() == []


def test_the_kill_switch_on_off_and_show(cli: Cli) -> None:
    cli.store.move([1], DW, "ops", "start")
    assert "kill switch off (never set)" in cli("kill-switch", "show").out
    ran = cli("kill-switch", "on", "--why", "incident 42", "--who", "ops:carol")
    assert ran.code == 0
    assert ran.out.startswith("set: kill switch ON: every room goes straight to the monolith")
    assert "(set by ops:carol at" in ran.out and "incident 42" in ran.out
    assert cli.store.snapshot().phase_of(1) == L and cli.store.room(1).phase == DW
    again = cli("kill-switch", "on", "--why", "also")
    assert again.code == 0 and again.out.startswith("unchanged, already: kill switch ON")
    assert "incident 42" in again.out  # who set it first is kept
    shown = json.loads(cli("kill-switch", "show", "--json").out)
    assert shown["changed"] is False
    assert shown["kill_switch"]["on"] is True and shown["kill_switch"]["who"] == "ops:carol"
    off = json.loads(cli("kill-switch", "OFF", "--why", "over", "--json").out)
    assert off["changed"] is True and off["kill_switch"]["on"] is False
    assert cli.store.snapshot().phase_of(1) == DW


def test_a_percentage_selecting_no_room_is_refused(cli: Cli) -> None:
    """A cutover that moved nothing must not look done (a script going 1 % -> 10 % would go on)."""
    small = [r for r in ROOMS if bucket(r) >= 1]  # every room outside 0.01 %
    cli.catalog = type(cli.catalog)(small)
    revision = cli.store.revision()
    ran = cli("cutover", "0.01%", "--to", "dual_write", "--why", "tiny")
    assert ran.code == 2
    assert "0.01% selects no room of the monolith" in ran.err
    assert cli.store.revision() == revision
