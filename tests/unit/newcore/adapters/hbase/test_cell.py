"""The packed cell: exact layout, round trip, and a reasoned refusal of anything else; how the
read store turns a refusal into a failed read; how ensure_tables runs its creation tool."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from newcore.adapters.hbase import cell, schema
from newcore.adapters.hbase.read_store import (
    _create,
    _message,
    _row,
    message_cells,
)
from newcore.domain.events import MessageDeleted, MessageUpserted
from newcore.domain.model import MAX_ID, Message
from newcore.errors import Misconfigured, ReadStoreMisconfigured, UnreadableCell
from newcore.ports import ReadStoreUnavailable
from newcore.settings import HBaseSettings

u64 = st.integers(0, MAX_ID)
messages = st.builds(Message, u64, u64, u64, st.text(), u64, u64)


@given(messages)
def test_a_live_message_round_trips(message: Message) -> None:
    packed = cell.encode(message)
    assert packed[:2] == bytes((cell.VERSION, cell.LIVE))
    assert cell.decode(message.room_id, message.message_id, packed) == message


def test_the_layout_is_pinned() -> None:
    """Cells are stored for years: a change of layout must be a new version, never an edit."""
    message = Message(1, 2, 0x0102030405060708, "é😀", 1_700_000_000, 0)
    assert cell.encode(message) == bytes.fromhex(
        "01 00 0102030405060708 000000006553f100 0000000000000000 c3a9 f09f9880"
    )
    assert cell.TOMBSTONE == b"\x01\x01"


def test_a_tombstone_reads_as_no_message() -> None:
    assert cell.decode(1, 2, cell.TOMBSTONE) is None


def test_an_empty_body_is_a_live_message() -> None:
    message = Message(1, 2, 3, "", 4, 5)
    assert len(cell.encode(message)) == cell.HEAD_BYTES
    assert cell.decode(1, 2, cell.encode(message)) == message


LIVE = cell.encode(Message(1, 2, 3, "本文", 4, 5))


@pytest.mark.parametrize(
    ("packed", "reason"),
    [
        (b"", "empty cell"),
        (b"\x02" + LIVE[1:], "unknown version 2 (this reader knows 1)"),
        (b"\x00" + LIVE[1:], "unknown version 0 (this reader knows 1)"),
        (b"\x02\x01", "unknown version 2 (this reader knows 1)"),
        (b"\x01", "1 byte: no state"),
        (b"\x01\x01\x00", "a tombstone of 3 bytes (it has 2)"),
        (b"\x01\x02" + LIVE[2:], "unknown state 2"),
        (LIVE[: cell.HEAD_BYTES - 1], "a live cell of 25 bytes (at least 26)"),
        (LIVE[:-1], "body is not UTF-8: unexpected end of data at byte 3"),
        (LIVE[: cell.HEAD_BYTES] + b"\xff", "body is not UTF-8: invalid start byte at byte 0"),
        (LIVE[: cell.HEAD_BYTES] + "\ud800".encode("utf-8", "surrogatepass"),
         "body is not UTF-8: invalid continuation byte at byte 0"),
    ],
)  # fmt: skip
def test_anything_but_exactly_version_1_is_refused_with_its_reason(
    packed: bytes, reason: str
) -> None:
    with pytest.raises(cell.CellRefused) as refused:
        cell.decode(1, 2, packed)
    assert refused.value.reason == reason


@pytest.mark.parametrize(
    "message",
    [Message(1, 2, -1, "x", 0, 0), Message(1, 2, 3, "x", MAX_ID + 1, 0),
     Message(1, 2, 3, "\ud800", 0, 0)],
)  # fmt: skip
def test_encoding_refuses_what_the_layout_cannot_hold(message: Message) -> None:
    with pytest.raises(ValueError):
        cell.encode(message)


def test_a_message_is_one_cell_and_a_deletion_its_tombstone() -> None:
    message = Message(5, 6, 7, "x", 8, 9)
    assert _row(MessageUpserted(message, 3, 0))[2] == {schema.PACKED: cell.encode(message)}
    assert _row(MessageDeleted(5, 6, 4, 0))[2] == {schema.PACKED: cell.TOMBSTONE}
    assert message_cells(message) == {schema.PACKED: cell.encode(message)}


def test_a_read_of_an_unreadable_cell_fails_and_names_it() -> None:
    """Never an answer without the message: a force=0 read would move the cursor past it."""
    key = schema.message_key(5, 6)
    with pytest.raises(UnreadableCell) as failed:
        _message(key, {schema.PACKED: b"\x02" + LIVE[1:]})
    assert isinstance(failed.value, ReadStoreUnavailable)
    assert (failed.value.room_id, failed.value.message_id) == (5, 6)
    assert str(failed.value) == (
        "unreadable read-model cell, room 5 message 6: unknown version 2 (this reader knows 1)"
    )


def test_a_row_of_the_five_cell_layout_is_unreadable() -> None:
    row = {b"m:a": schema.u64(7), b"m:b": b"x", b"m:d": b"\x00"}
    with pytest.raises(UnreadableCell, match=r"no packed cell, columns \[b'm:a', b'm:b'"):
        _message(schema.message_key(5, 6), row)


# -- the creation tool, as ensure_tables runs it --------------------------------------------


def fake_tool(tmp_path: Path, script: str) -> Path:
    tool = tmp_path / "create-tables.sh"
    tool.write_text(f'#!/usr/bin/env bash\necho "$@" >"{tmp_path}/args"\n{script}\n')
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    return tool


SETTINGS = HBaseSettings(table_prefix="t1")


def test_the_tool_gets_the_salt_splits_and_the_tables(tmp_path: Path) -> None:
    tool = fake_tool(tmp_path, 'echo "created t1_messages"; echo "exists t1_cursors"')
    assert _create(SETTINGS, tool, [schema.MESSAGES, schema.CURSORS]) == ["t1_messages"]
    assert (tmp_path / "args").read_text().split() == [
        "01,02,03,04,05,06,07,08,09,0a,0b,0c,0d,0e,0f", "t1_messages:m:1", "t1_cursors:c:1",
    ]  # fmt: skip


def test_hbase_unreachable_from_the_tool_is_unavailable(tmp_path: Path) -> None:
    tool = fake_tool(tmp_path, 'echo "CreateTables: no master" >&2; exit 4')
    with pytest.raises(ReadStoreUnavailable, match="no master"):
        _create(SETTINGS, tool, [schema.MESSAGES])


@pytest.mark.parametrize("code", [1, 2, 3])
def test_a_refusing_tool_is_a_misconfiguration(tmp_path: Path, code: int) -> None:
    tool = fake_tool(tmp_path, f'echo "create-tables: no HBase jars" >&2; exit {code}')
    with pytest.raises(ReadStoreMisconfigured, match=f"exited {code}: create-tables: no HBase"):
        _create(SETTINGS, tool, [schema.MESSAGES])


def test_a_missing_tool_is_a_misconfiguration(tmp_path: Path) -> None:
    with pytest.raises(Misconfigured, match="cannot run"):
        _create(SETTINGS, tmp_path / "absent.sh", [schema.MESSAGES])
