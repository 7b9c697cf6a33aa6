"""Which account a token belongs to, known without I/O on the request path.

A cursor hint needs the account; the monolith's answer to a read/unread or a `force=0` fetch
does not say it. The gateway looks the token up in the monolith's directory *after* the answer
is forwarded and keeps the result, so the next request of the same client costs a dictionary
look-up. Tokens are kept only as SHA-256 digests: a memory dump or a debug print of this cache
shows no secret.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict

from newcore.ports import AccountDirectory


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


class AccountCache:
    """Token digest -> account id, bounded (least recently used out first). A token the
    directory does not know is not cached (it may be created a second later)."""

    def __init__(self, directory: AccountDirectory, max_entries: int = 100_000) -> None:
        self._directory = directory
        self._max = max_entries
        self._known: OrderedDict[bytes, int] = OrderedDict()

    def known(self, token: str) -> int | None:
        """The account, if already looked up; never blocks."""
        digest = token_digest(token)
        account = self._known.get(digest)
        if account is not None:
            self._known.move_to_end(digest)
        return account

    async def resolve(self, token: str) -> int | None:
        """The account of the token, asking the directory (in a thread) when not cached.
        Raises MonolithUnavailable when the directory cannot be asked."""
        account = self.known(token)
        if account is not None:
            return account
        account = await asyncio.to_thread(self._directory.account_for_token, token)
        if account is not None:
            self._known[token_digest(token)] = account
            while len(self._known) > self._max:
                self._known.popitem(last=False)
        return account
