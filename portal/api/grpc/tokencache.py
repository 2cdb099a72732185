"""The gRPC door's token check without a database read per call, still refusing a revoked token at once.

Reading a token's row on every call costs a pooled connection and a query:
about 40-70 µs of the ~250 µs the portal adds to a small ModelInfer call.
``TokenCache`` keeps the users of tokens it has checked, but only while the
database file is unchanged: SQLite's ``PRAGMA data_version``, read on a
connection of the cache's own that never writes, changes as soon as any other
connection, of this process or another (``portal tokens revoke``,
``portal users disable``), commits to the file.  The cache is emptied then, so
a token revoked, a user disabled, deleted or given another role is refused (or
checked again) on the very next call, as over HTTP, where every request reads
the database.  The prediction log commits every half second under traffic,
which empties the cache too: a few database reads a second, not one a call.

Entries also expire after ``ttl`` seconds, so a full check (which stamps the
token's last use, at most once a minute) still runs regularly.  Only for a
local SQLite database: on a server database every call reads it.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from typing import Any, Protocol

from ...accounts.auth import User

__all__ = ["TokenCache", "TokenCheck"]

_TTL_S = 30.0
_MAX_ENTRIES = 1024


class TokenCheck(Protocol):
    """What checks a token against the database (``portal.accounts.auth.Auth``)."""

    def authenticate(self, token: str | None) -> User: ...


class TokenCache:
    """``user(token)``: ``auth.authenticate(token)``, remembered while the database file is unchanged.

    Args:
        auth: the accounts the HTTP app checks tokens against.
        engine: the registry's SQLAlchemy engine (its database file is watched).
        ttl: seconds an entry is trusted at most, changes or not.
    """

    def __init__(self, auth: TokenCheck, engine: Any, *, ttl: float = _TTL_S) -> None:
        self.auth = auth
        self.ttl = ttl
        self._users: dict[str, tuple[float, User]] = {}
        self._version: int | None = None
        self._lock = threading.Lock()
        self._watch = _watch(engine)

    def cached(self, token: str) -> User | None:
        """The user of ``token`` if it was checked since the database last changed, else None (no database read).

        Costs one ``PRAGMA data_version`` (a read that never waits for writers:
        the registry's database is in WAL mode), so the gRPC door may call it on
        its event loop.
        """
        with self._lock:
            if self._watch is None:
                return None
            self._refresh()
            entry = self._users.get(_digest(token))
        return entry[1] if entry is not None and entry[0] > time.monotonic() else None

    def user(self, token: str) -> User:
        """The user of ``token``: from the cache, else checked against the database (a read).

        Raises:
            AuthenticationError: an unknown or revoked token, a disabled or deleted user (never cached).
        """
        digest = _digest(token)
        now = time.monotonic()
        version, entry = None, None
        with self._lock:
            if self._watch is not None:  # None: not a local SQLite file, or closed
                # read before the lookup below: a change committed after this read shows on the next call
                version = self._refresh()
                entry = self._users.get(digest)
        if entry is not None and entry[0] > now:
            return entry[1]
        user = self.auth.authenticate(token)
        if version is None:
            return user
        with self._lock:
            if self._version == version:
                if len(self._users) >= _MAX_ENTRIES:
                    self._users.clear()
                self._users[digest] = (now + self.ttl, user)
        return user

    def _refresh(self) -> int:
        """Empty the cache if the database changed since the last look (under ``_lock``); the file's version."""
        assert self._watch is not None
        version: int = self._watch.execute("PRAGMA data_version").fetchall()[0][0]
        if version != self._version:
            self._users.clear()
            self._version = version
        return version

    def close(self) -> None:
        with self._lock:
            if self._watch is not None:
                self._watch.close()
                self._watch = None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _watch(engine: Any) -> sqlite3.Connection | None:
    """A connection of our own to the engine's SQLite file (never used to write); None for other databases."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:") or \
            str(url.database).startswith("file:"):
        return None
    try:
        return sqlite3.connect(url.database, check_same_thread=False, isolation_level=None)
    except sqlite3.Error:
        return None
