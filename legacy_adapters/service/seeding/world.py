"""The people and rooms of a seeded monolith: accounts, tokens, rooms and memberships.

Pure and deterministic for a given plan. Room activity is heavy-tailed (a few rooms hold a large
share of all messages, most rooms are quiet) and accounts belong to several rooms, with some
accounts in many, as in a real B2B chat.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

FAMILY_NAMES = (
    "佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "山本", "中村", "小林", "加藤",
    "吉田", "山田", "佐々木", "山口", "松本", "井上", "木村", "林", "清水", "斎藤",
)  # fmt: skip
GIVEN_NAMES = (
    "太郎", "花子", "翔太", "美咲", "健一", "陽子", "大輔", "愛", "直樹", "さくら",
    "拓也", "恵", "誠", "由美", "亮", "真由美", "Ken", "Emily", "Wei", "Anna",
)  # fmt: skip
ORGANIZATIONS = ("株式会社サンプル", "ACME Japan", "合同会社テスト", "Example Inc.", "")
ROOM_TOPICS = (
    "営業部",
    "開発チーム",
    "経理",
    "プロジェクトA",
    "全社連絡",
    "採用",
    "サポート",
    "雑談",
)


@dataclass(frozen=True)
class SeedPlan:
    """What to seed. Sizes not given follow from the number of messages."""

    messages: int
    seed: int
    rooms: int
    accounts: int

    @classmethod
    def sized(
        cls, messages: int, seed: int, rooms: int | None = None, accounts: int | None = None
    ) -> SeedPlan:
        if messages < 0:
            raise ValueError("the number of messages must be 0 or more")
        rooms = rooms if rooms is not None else max(3, messages // 200)
        accounts = accounts if accounts is not None else max(10, messages // 250)
        if rooms < 1 or accounts < 2:
            raise ValueError("a world needs at least 1 room and 2 accounts")
        return cls(messages=messages, seed=seed, rooms=rooms, accounts=accounts)


@dataclass(frozen=True)
class Account:
    account_id: int
    name: str
    chatwork_id: str
    avatar_image_url: str | None
    organization_name: str
    my_room_id: int
    token: str
    withdrawn: bool  # left the service: no account row, but their old messages remain


@dataclass(frozen=True)
class Room:
    room_id: int
    name: str
    type: str  # "group", "direct" or "my"
    members: tuple[int, ...]
    roles: tuple[str, ...]
    weight: float  # share of the seeded messages this room receives


@dataclass(frozen=True)
class World:
    plan: SeedPlan
    accounts: tuple[Account, ...]
    rooms: tuple[Room, ...]  # rooms with messages; `my` rooms are in my_rooms
    my_rooms: tuple[Room, ...]

    def account(self, account_id: int) -> Account:
        return self.accounts[account_id - 1]


def token_for(seed: int, account_id: int) -> str:
    """The API token of a seeded account: stable for a seed, so walk-throughs can name one."""
    return hashlib.blake2b(f"chat-seed:{seed}:{account_id}".encode(), digest_size=16).hexdigest()


def build_world(plan: SeedPlan) -> World:
    rng = random.Random(f"world:{plan.seed}")
    first_my_room = plan.rooms + 1
    accounts = tuple(
        Account(
            account_id=aid,
            name=f"{rng.choice(FAMILY_NAMES)} {rng.choice(GIVEN_NAMES)}",
            chatwork_id=f"user{aid:06d}" if rng.random() < 0.8 else "",
            avatar_image_url=None
            if rng.random() < 0.1
            else f"https://appdata.chatwork.com/avatar/{aid}.png",
            organization_name=rng.choice(ORGANIZATIONS),
            my_room_id=first_my_room + aid - 1,
            token=token_for(plan.seed, aid),
            # Account 1 never withdraws: it is the walk-through's account.
            withdrawn=aid != 1 and rng.random() < 0.01,
        )
        for aid in range(1, plan.accounts + 1)
    )
    # Some accounts are in many rooms: membership draws favour low-rank accounts (Zipf-like).
    account_weights = [1.0 / (rank**0.8) for rank in range(1, plan.accounts + 1)]
    rng.shuffle(account_weights)
    account_weights[0] = max(account_weights)  # the walk-through's account is a busy one
    account_ids = list(range(1, plan.accounts + 1))

    # Room activity is Zipf-distributed over a shuffled rank: heavy-tailed, not ordered by id.
    room_weights = [1.0 / (rank**1.1) for rank in range(1, plan.rooms + 1)]
    rng.shuffle(room_weights)
    total_weight = sum(room_weights)
    rooms = []
    for index in range(plan.rooms):
        room_id = index + 1
        direct = rng.random() < 0.3 and plan.accounts >= 2
        size = 2 if direct else min(plan.accounts, 3 + int(rng.paretovariate(1.3) * 3))
        chosen: set[int] = {1} if room_id == 1 else set()
        while len(chosen) < size:
            chosen.update(rng.choices(account_ids, weights=account_weights, k=size - len(chosen)))
        members = tuple(sorted(chosen))
        roles = tuple(
            "admin" if i == 0 else ("readonly" if rng.random() < 0.05 else "member")
            for i in range(len(members))
        )
        name = "" if direct else f"{rng.choice(ROOM_TOPICS)} {room_id}"
        rooms.append(
            Room(room_id, name, "direct" if direct else "group", members, roles,
                 room_weights[index] / total_weight)
        )  # fmt: skip
    my_rooms = tuple(
        Room(a.my_room_id, "マイチャット", "my", (a.account_id,), ("admin",), 0.0) for a in accounts
    )
    return World(plan=plan, accounts=accounts, rooms=tuple(rooms), my_rooms=my_rooms)
