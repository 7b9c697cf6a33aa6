"""How the monolith shows and authenticates an account: its own rules, shared by every
directory adapter (MariaDB and the in-memory one) so that they cannot disagree."""

from __future__ import annotations

from newcore.ports import DEFAULT_AVATAR, AccountProfile


def token_is_well_formed(token: str) -> bool:
    """The monolith's own rule: 1..64 printable ASCII characters."""
    return 0 < len(token) <= 64 and token.isascii() and token.isprintable()


def profile(account_id: int, name: str | None, avatar: str | None) -> AccountProfile:
    return AccountProfile(account_id, name or "", avatar or DEFAULT_AVATAR)
