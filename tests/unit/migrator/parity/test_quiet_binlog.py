"""migrator/adapters/kafka/pipeline.py `quiet`: which binlog events between the binlog
source's checkpoint and a frontier may be passed over (nothing there the source would carry
or checkpoint past), and which hold a frontier back."""

from __future__ import annotations

import pytest

from migrator.adapters.kafka.pipeline import quiet

A_NEW_FILE = [
    ("Format_desc", "Server ver: 10.11.19-MariaDB-0+deb12u1-log, Binlog ver: 4"),
    ("Gtid_list", "[0-1-400882]"),
    ("Binlog_checkpoint", "mariadb-bin.000005"),
]
AN_ARIA_WRITE = [
    ("Gtid", "BEGIN GTID 0-1-5"),
    ("Query", "BEGIN"),
    ("Annotate_rows", "INSERT INTO stats VALUES (1)"),
    ("Table_map", "table_id: 41 (chat.stats)"),
    ("Write_rows_v1", "table_id: 41 flags: STMT_END_F"),
    ("Query", "COMMIT"),
]


@pytest.mark.parametrize(
    "events",
    [
        [],
        A_NEW_FILE,
        AN_ARIA_WRITE,
        [("Gtid", "GTID 0-1-7"), ("Query", "GRANT SELECT ON x.* TO y")],
    ],
)
def test_events_that_carry_nothing_are_quiet(events: list[tuple[str, str]]) -> None:
    assert quiet(events, "chat") is True


@pytest.mark.parametrize(
    "events",
    [
        [("Gtid", "BEGIN GTID 0-1-6"), ("Xid", "COMMIT /* xid=98 */")],  # any transaction
        [("Query", "ALTER TABLE other ADD COLUMN x INT")],  # DDL: the source checkpoints past it
        [("Query", "CREATE USER 'x'@'y'")],
        [("Query", "UPDATE `messages` SET body = 'x'")],  # statement-logged, a watched table
        [("Table_map", "table_id: 9 (chat.messages)"), ("Write_rows_v1", "table_id: 9 flags: STMT_END_F")],
        [("Table_map", "table_id: 9 (chat.room_cursors)")],
        [("Write_rows_v1", "table_id: 9 flags: STMT_END_F")],  # rows of a table never mapped
        [("Table_map", "something unexpected")],
        [("Unknown_event", "")],
    ],
)  # fmt: skip
def test_anything_that_may_carry_a_change_holds_the_frontier_back(
    events: list[tuple[str, str]],
) -> None:
    assert quiet(A_NEW_FILE + events, "chat") is False


def test_the_watched_tables_are_those_of_the_monolith_s_schema() -> None:
    elsewhere = [("Table_map", "table_id: 9 (other.messages)"),
                 ("Write_rows_v1", "table_id: 9 flags: STMT_END_F"), ("Query", "COMMIT")]  # fmt: skip
    assert quiet(elsewhere, "chat") is True
    assert quiet(elsewhere, "other") is False
