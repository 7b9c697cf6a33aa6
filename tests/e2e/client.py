"""The small client the e2e stories are told with: people who use the chat (through the front
door, or straight at the monolith to know what it would have answered), and the operator who
drives the migration through the gateway's admin API.

    alice.posts(room, "こんにちは")          ops.moves([room], to="dual_write")
    alice.directly().reads(room)            the_read_model_matches_the_monolith(world, [room])
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx

from tests.support.gateway_world import GatewayWorld
from tests.support.monolith_world import Member

COMPARED = "chat_gateway_shadow_comparisons_total"
REQUESTS = "chat_gateway_requests_total"


@dataclass(frozen=True)
class Answer:
    """What a client got: enough to say whether two answers are the same to a client."""

    method: str
    path: str
    status: int
    content_type: str | None
    body: bytes
    started: float  # time.monotonic() when sent
    seconds: float

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def message_id(self) -> int:
        value = self.json()["message_id"]
        assert isinstance(value, str) and value.isdigit(), self.body
        return int(value)

    def same_as(self, other: Answer) -> bool:
        """Same status, content type and bytes: a client cannot tell the two apart."""
        return (self.status, self.content_type, self.body) == (
            other.status,
            other.content_type,
            other.body,
        )

    def __str__(self) -> str:
        return f"{self.method} {self.path} -> {self.status} {self.body[:200]!r}"


class Person:
    """A member of the chat making the contract's calls at one address (the front door, or
    the monolith itself)."""

    def __init__(self, member: Member, base_url: str, monolith_url: str) -> None:
        self.member = member
        self._base_url = base_url
        self._monolith_url = monolith_url
        self._http = httpx.Client(base_url=base_url, timeout=30.0)

    @property
    def account_id(self) -> int:
        return self.member.account_id

    def directly(self) -> Person:
        """The same person asking the monolith itself: what the answer should be."""
        return Person(self.member, self._monolith_url, self._monolith_url)

    def close(self) -> None:
        self._http.close()

    def call(
        self,
        method: str,
        path: str,
        *,
        form: Mapping[str, str] | None = None,
        query: Mapping[str, str] | None = None,
        token: str | None = None,
    ) -> Answer:
        headers = {"X-ChatWorkToken": self.member.token if token is None else token}
        content = None
        if form is not None:
            content = urlencode(list(form.items())).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        started = time.monotonic()
        try:
            answer = self._http.request(
                method, path, params=query, content=content, headers=headers
            )
        except httpx.HTTPError as exc:  # no answer at all: status 0, the error as the body
            seconds = time.monotonic() - started
            return Answer(method, path, 0, None, repr(exc).encode(), started, seconds)
        seconds = time.monotonic() - started
        return Answer(
            method, path, answer.status_code, answer.headers.get("content-type"),
            answer.content, started, seconds,
        )  # fmt: skip

    # -- the contract's calls ----------------------------------------------------------------

    def posts(self, room: int, body: str) -> Answer:
        return self.call("POST", f"/v2/rooms/{room}/messages", form={"body": body})

    def edits(self, room: int, message: int, body: str) -> Answer:
        return self.call("PUT", f"/v2/rooms/{room}/messages/{message}", form={"body": body})

    def deletes(self, room: int, message: int) -> Answer:
        return self.call("DELETE", f"/v2/rooms/{room}/messages/{message}")

    def reads(self, room: int) -> Answer:
        """The latest 100 (`force=1`): moves no cursor."""
        return self.call("GET", f"/v2/rooms/{room}/messages", query={"force": "1"})

    def reads_new(self, room: int) -> Answer:
        """What this account has not fetched yet (`force=0`): moves its cursor."""
        return self.call("GET", f"/v2/rooms/{room}/messages", query={"force": "0"})

    def opens(self, room: int, message: int) -> Answer:
        return self.call("GET", f"/v2/rooms/{room}/messages/{message}")

    def marks_read(self, room: int, message: int) -> Answer:
        return self.call(
            "PUT", f"/v2/rooms/{room}/messages/read", form={"message_id": str(message)}
        )

    def reads_with_token(self, room: int, token: str) -> Answer:
        return self.call("GET", f"/v2/rooms/{room}/messages", query={"force": "1"}, token=token)


class Operator:
    """The migration's operator at the gateway's admin API."""

    def __init__(self, world: GatewayWorld, who: str = "e2e operator") -> None:
        self._world = world
        self._admin = world.admin
        self.who = who

    def moves(self, rooms: Iterable[int], *, to: str, why: str = "the e2e story") -> httpx.Response:
        return self._admin.post(
            "/admin/moves", json={"rooms": list(rooms), "to": to, "who": self.who, "why": why}
        )

    def switches_kill_switch(self, *, on: bool, why: str = "the e2e story") -> httpx.Response:
        return self._admin.put("/admin/kill-switch", json={"on": on, "who": self.who, "why": why})

    def phases(self) -> dict[int, str]:
        answer = self._admin.get("/admin/rooms")
        assert answer.status_code == 200, answer.text
        return {int(r["room_id"]): str(r["phase"]) for r in answer.json()["rooms"]}

    def differences(self) -> list[dict[str, Any]]:
        answer = self._admin.get("/admin/shadow/differences")
        assert answer.status_code == 200, answer.text
        found: list[dict[str, Any]] = answer.json()["differences"]
        return found

    def spool_pending(self) -> int:
        return int(self._world.spool()["pending_records"])

    def comparisons(self, outcome: str | None = None, route: str | None = None) -> float:
        labels = {k: v for k, v in (("outcome", outcome), ("route", route)) if v is not None}
        return self._world.gateway_count(COMPARED, **labels)

    def requests_seen(self) -> float:
        """Requests the gateway has answered (its own counter)."""
        return self._world.gateway_count(REQUESTS)


# -- what the stories check --------------------------------------------------------------------


def the_read_model_matches_the_monolith(world: GatewayWorld, rooms: Iterable[int]) -> None:
    """Eventually (a deadline), the read model holds exactly the monolith's live messages."""
    world.until_read_model_matches(rooms)


def the_read_model_has(world: GatewayWorld, room: int, message: int, body: str) -> None:
    def there() -> bool:
        found = world.read_model.message(room, message)
        return found is not None and found.body == body

    world.until(there, f"message {message} of room {room} in the read model with {body!r}")


def the_read_model_lacks(world: GatewayWorld, room: int, message: int) -> None:
    world.until(
        lambda: world.read_model.message(room, message) is None,
        f"message {message} of room {room} gone from the read model",
    )


def the_read_models_cursor(
    world: GatewayWorld, room: int, person: Person
) -> tuple[int, int] | None:
    found = world.read_model.cursor(room, person.account_id)
    return None if found is None else (found.last_read_message_id, found.last_fetched_message_id)


def same_answers(through: Answer, direct: Answer) -> None:
    assert through.same_as(direct), f"through the front door: {through}\nthe monolith: {direct}"
