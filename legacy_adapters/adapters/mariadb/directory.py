"""The account directory on the monolith's MariaDB (accounts, api_tokens, rooms, room_members)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from legacy_adapters.adapters.mariadb.schema import Account, ApiToken, Room, RoomMember
from legacy_adapters.domain.accounts import profile, token_is_well_formed
from newcore.ports import AccountProfile, MonolithUnavailable


class MariaDbAccountDirectory:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def _unavailable(self, exc: SQLAlchemyError) -> MonolithUnavailable:
        return MonolithUnavailable(f"monolith database: {exc.__class__.__name__}")

    def account_for_token(self, token: str) -> int | None:
        if not token_is_well_formed(token):
            return None
        try:
            with self._engine.connect() as conn:
                found = conn.execute(
                    select(ApiToken.account_id)
                    .join(Account, Account.account_id == ApiToken.account_id)
                    .where(ApiToken.token == token)
                ).scalar_one_or_none()
        except SQLAlchemyError as exc:
            raise self._unavailable(exc) from exc
        return found

    def access(self, room_id: int, account_id: int) -> str:
        try:
            with self._engine.connect() as conn:
                row = conn.execute(
                    select(Room.room_id, RoomMember.role)
                    .outerjoin(
                        RoomMember,
                        (RoomMember.room_id == Room.room_id)
                        & (RoomMember.account_id == account_id),
                    )
                    .where(Room.room_id == room_id)
                ).one_or_none()
        except SQLAlchemyError as exc:
            raise self._unavailable(exc) from exc
        if row is None:
            return "no_room"
        return row.role or "not_member"

    def profiles(self, account_ids: Sequence[int]) -> dict[int, AccountProfile]:
        wanted = list(dict.fromkeys(account_ids))
        found: dict[int, AccountProfile] = {}
        try:
            with self._engine.connect() as conn:
                for start in range(0, len(wanted), 1000):
                    rows = conn.execute(
                        select(Account.account_id, Account.name, Account.avatar_image_url).where(
                            Account.account_id.in_(wanted[start : start + 1000])
                        )
                    )
                    for account_id, name, avatar in rows:
                        found[account_id] = profile(account_id, name, avatar)
        except SQLAlchemyError as exc:
            raise self._unavailable(exc) from exc
        return {aid: found.get(aid, profile(aid, None, None)) for aid in wanted}
