"""A private little world inside the monolith's database, for contract tests over real HTTP.

Each test builds its own accounts, tokens, rooms and memberships with direct SQL, with ids in a
range no seeder uses (room and account ids >= 3_000_000_000, still INT UNSIGNED, from a random
base per world), and removes every row it made afterwards, so tests can run beside other
people's data and beside each other.
"""

from __future__ import annotations

import os
import random
import secrets
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlencode

import httpx
import pymysql
import pymysql.cursors

from tests.support.stack import Stack

Role = Literal["admin", "member", "readonly"]

FIRST_TEST_ID = 3_000_000_000
LAST_INT_UNSIGNED = 4_294_967_295
IDS_PER_WORLD = 10_000
DEFAULT_AVATAR = "https://appdata.chatwork.com/avatar/ico_default_blue.png"
NOT_SET: Any = object()


def limited_port() -> int:
    """The port of the same app with the public API's rate limits on (deploy/web.sh)."""
    return int(os.environ.get("MIG_MONOLITH_LIMITED_PORT", "8081"))


@dataclass(frozen=True)
class Member:
    """An account with a token: who a request is made as."""

    account_id: int
    token: str
    name: str


@dataclass(frozen=True)
class MessageRow:
    """The columns of one `messages` row that matter to its rendering."""

    message_id: int
    room_id: int
    account_id: int
    body: str | None
    update_time: int | None
    deleted: int


class MonolithWorld:
    """Rows made for one test, in the test id range, and their removal."""

    def __init__(self, connection: pymysql.connections.Connection[pymysql.cursors.Cursor]) -> None:
        self._db = connection
        self._next_id = random.randrange(FIRST_TEST_ID, LAST_INT_UNSIGNED - IDS_PER_WORLD)
        self._accounts: list[int] = []
        self._tokens: list[str] = []
        self._rooms: list[int] = []
        self._auto_increment_before: int | None = None

    @classmethod
    def open(cls, stack: Stack) -> MonolithWorld:
        connection = pymysql.connect(
            host=stack.host,
            port=stack.mariadb_port,
            user=stack.db_user,
            password=stack.db_password,
            database=stack.db_name,
            charset="utf8mb4",
            autocommit=True,
            # Legacy rows hold zero dates: keep strict mode, but allow '0000-00-00'.
            sql_mode="STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION",
        )
        return cls(connection)

    # -- plain SQL ------------------------------------------------------------------------

    def execute(self, sql: str, args: Sequence[object] = ()) -> int:
        with self._db.cursor() as cursor:
            return cursor.execute(sql, tuple(args))

    def scalar(self, sql: str, args: Sequence[object] = ()) -> Any:
        with self._db.cursor() as cursor:
            cursor.execute(sql, tuple(args))
            row = cursor.fetchone()
            return None if row is None else row[0]

    # -- building the world ---------------------------------------------------------------

    def fresh_id(self) -> int:
        """An id in this world's slice of the test range, never used before by this world."""
        self._next_id += 1
        return self._next_id

    def account(
        self,
        name: str = "テスト ユーザー",
        *,
        avatar_image_url: str | None = None,
        chatwork_id: str | None = None,
        organization_name: str = "",
        my_room_id: int | None = None,
    ) -> Member:
        account_id = self.fresh_id()
        token = secrets.token_hex(16)
        self.execute(
            "INSERT INTO accounts (account_id, name, chatwork_id, avatar_image_url,"
            " organization_name, my_room_id) VALUES (%s, %s, %s, %s, %s, %s)",
            (account_id, name, chatwork_id, avatar_image_url, organization_name, my_room_id),
        )
        self._accounts.append(account_id)
        self.execute(
            "INSERT INTO api_tokens (token, account_id, created_at) VALUES (%s, %s, NOW())",
            (token, account_id),
        )
        self._tokens.append(token)
        return Member(account_id, token, name)

    def room(
        self,
        *members: Member,
        name: str = "テストルーム",
        role: Role = "member",
        room_type: str = "group",
        icon_path: str | None = None,
    ) -> int:
        room_id = self.fresh_id()
        self.execute(
            "INSERT INTO rooms (room_id, name, type, icon_path) VALUES (%s, %s, %s, %s)",
            (room_id, name, room_type, icon_path),
        )
        self._rooms.append(room_id)
        for member in members:
            self.join(room_id, member, role)
        return room_id

    def join(self, room_id: int, member: Member, role: Role = "member") -> None:
        self.execute(
            "INSERT INTO room_members (room_id, account_id, role) VALUES (%s, %s, %s)",
            (room_id, member.account_id, role),
        )

    def missing_room_id(self) -> int:
        """An id in the test range with no room behind it."""
        room_id = self.fresh_id()
        assert self.scalar("SELECT COUNT(*) FROM rooms WHERE room_id = %s", (room_id,)) == 0
        return room_id

    def message(
        self,
        room_id: int,
        account_id: int,
        *,
        body: str | None = NOT_SET,
        body_v1: str | None = None,
        body_raw: bytes | None = None,
        send_time: int | None = 1_700_000_000,
        update_time: int | None = 0,
        created_at: str | None = None,
        deleted: int = 0,
        message_id: int | None = None,
    ) -> int:
        """Inserts a message row as any era of the monolith left it; returns its id."""
        if body is NOT_SET:
            body = "legacy row" if body_v1 is None and body_raw is None else None
        if message_id is not None:
            self._remember_auto_increment()
        self.execute(
            "INSERT INTO messages (message_id, room_id, account_id, body, body_v1, body_raw,"
            " send_time, update_time, created_at, deleted)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                message_id,
                room_id,
                account_id,
                body,
                body_v1,
                body_raw,
                send_time,
                update_time,
                created_at,
                deleted,
            ),
        )
        if message_id is not None:
            return message_id
        return int(self.scalar("SELECT LAST_INSERT_ID()"))

    def messages(self, room_id: int, account_id: int, bodies: Sequence[str]) -> list[int]:
        """Many current-era rows in one transaction (ids in the order of `bodies`)."""
        self._db.begin()
        try:
            ids = [self.message(room_id, account_id, body=body) for body in bodies]
        except BaseException:
            self._db.rollback()
            raise
        self._db.commit()
        return ids

    def row(self, message_id: int) -> MessageRow | None:
        with self._db.cursor() as cursor:
            cursor.execute(
                "SELECT message_id, room_id, account_id, body, update_time, deleted"
                " FROM messages WHERE message_id = %s",
                (message_id,),
            )
            found = cursor.fetchone()
        if found is None:
            return None
        return MessageRow(
            int(found[0]),
            int(found[1]),
            int(found[2]),
            found[3],
            None if found[4] is None else int(found[4]),
            int(found[5]),
        )

    def count_messages(self, room_id: int) -> int:
        return int(self.scalar("SELECT COUNT(*) FROM messages WHERE room_id = %s", (room_id,)))

    def cursor_of(self, room_id: int, member: Member) -> tuple[int, int] | None:
        """(last_read_message_id, last_fetched_message_id), None when no row exists."""
        with self._db.cursor() as cursor:
            cursor.execute(
                "SELECT last_read_message_id, last_fetched_message_id FROM room_cursors"
                " WHERE room_id = %s AND account_id = %s",
                (room_id, member.account_id),
            )
            found = cursor.fetchone()
        return None if found is None else (int(found[0]), int(found[1]))

    # -- tearing it down ------------------------------------------------------------------

    def _auto_increment(self) -> int:
        with self._db.cursor() as cursor:
            cursor.execute("SHOW TABLE STATUS LIKE 'messages'")
            names = [column[0] for column in cursor.description or ()]
            found = cursor.fetchone()
        assert found is not None
        return int(found[names.index("Auto_increment")])

    def _remember_auto_increment(self) -> None:
        if self._auto_increment_before is None:
            self._auto_increment_before = self._auto_increment()

    def _restore_auto_increment(self) -> None:
        """An explicit id moves the shared AUTO_INCREMENT counter; move it back if we can.

        MariaDB clamps the value to MAX(message_id) + 1, so this never makes a collision
        possible, even if someone else inserted meanwhile.
        """
        before = self._auto_increment_before
        if before is None or self._auto_increment() <= before:
            return
        try:
            self.execute("SET SESSION lock_wait_timeout = 5")
            self.execute(f"ALTER TABLE messages AUTO_INCREMENT = {int(before)}")
        except pymysql.MySQLError as exc:
            warnings.warn(
                f"could not restore messages AUTO_INCREMENT to {before}: {exc}", stacklevel=2
            )

    def cleanup(self) -> None:
        rooms = self._rooms or [0]
        accounts = self._accounts or [0]
        room_marks = ", ".join(["%s"] * len(rooms))
        account_marks = ", ".join(["%s"] * len(accounts))
        self.execute(f"DELETE FROM messages WHERE room_id IN ({room_marks})", rooms)
        self.execute(
            f"DELETE FROM room_cursors WHERE room_id IN ({room_marks})"
            f" OR account_id IN ({account_marks})",
            [*rooms, *accounts],
        )
        self.execute(
            f"DELETE FROM room_members WHERE room_id IN ({room_marks})"
            f" OR account_id IN ({account_marks})",
            [*rooms, *accounts],
        )
        self.execute(f"DELETE FROM rooms WHERE room_id IN ({room_marks})", rooms)
        buckets = [f"token:{token}" for token in self._tokens]
        buckets += [f"room-post:{room}" for room in self._rooms]
        if buckets:
            marks = ", ".join(["%s"] * len(buckets))
            self.execute(f"DELETE FROM rate_limits WHERE bucket IN ({marks})", buckets)
        if self._tokens:
            marks = ", ".join(["%s"] * len(self._tokens))
            self.execute(f"DELETE FROM api_tokens WHERE token IN ({marks})", self._tokens)
        self.execute(f"DELETE FROM accounts WHERE account_id IN ({account_marks})", accounts)
        self._restore_auto_increment()
        self._db.close()


Params = Mapping[str, str] | list[tuple[str, str]]


class Api:
    """The monolith over HTTP, as one member or another: tests read like the calls clients make."""

    def __init__(self, base_url: str) -> None:
        self._http = httpx.Client(base_url=base_url, timeout=30.0)

    @property
    def base_url(self) -> str:
        return str(self._http.base_url).rstrip("/")

    def close(self) -> None:
        self._http.close()

    def call(
        self,
        method: str,
        path: str,
        member: Member | None,
        *,
        params: Params | None = None,
        data: Mapping[str, str] | None = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """One request; `data` goes form-encoded in the body, `params` in the query string."""
        sent_headers = dict(headers or {})
        if member is not None:
            sent_headers["X-ChatWorkToken"] = member.token
        if data is not None:
            assert content is None
            content = urlencode(list(data.items())).encode("ascii")
            sent_headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        query: list[tuple[str, str | int | float | bool | None]] = []
        if params is not None:
            query += params.items() if isinstance(params, Mapping) else params
        return self._http.request(
            method, path, params=query or None, content=content, headers=sent_headers
        )

    def get(self, path: str, member: Member | None, **kwargs: Any) -> httpx.Response:
        return self.call("GET", path, member, **kwargs)

    def post(self, path: str, member: Member | None, **kwargs: Any) -> httpx.Response:
        return self.call("POST", path, member, **kwargs)

    def put(self, path: str, member: Member | None, **kwargs: Any) -> httpx.Response:
        return self.call("PUT", path, member, **kwargs)

    def delete(self, path: str, member: Member | None, **kwargs: Any) -> httpx.Response:
        return self.call("DELETE", path, member, **kwargs)

    # -- the calls most tests make --------------------------------------------------------

    def post_message(self, room_id: int, member: Member, body: str, **extra: str) -> str:
        answer = self.post(f"/v2/rooms/{room_id}/messages", member, data={"body": body, **extra})
        assert answer.status_code == 200, answer.text
        message_id = answer.json()["message_id"]
        assert isinstance(message_id, str) and message_id.isdigit(), answer.text
        return message_id

    def fetch(self, room_id: int, member: Member, force: str | None = None) -> httpx.Response:
        params = None if force is None else {"force": force}
        return self.get(f"/v2/rooms/{room_id}/messages", member, params=params)

    def room_counts(self, room_id: int, member: Member) -> tuple[int, int]:
        """(unread_num, mention_num) of a room from GET /v2/rooms, which moves no cursor."""
        answer = self.get("/v2/rooms", member)
        assert answer.status_code == 200, answer.text
        for room in answer.json():
            if room["room_id"] == room_id:
                return int(room["unread_num"]), int(room["mention_num"])
        raise AssertionError(f"room {room_id} not in GET /v2/rooms of {member.account_id}")
