"""Passwords of the shared user store: rules, argon2 hashing and sign-in back-off.

Used by :class:`portal.accounts.auth.Auth`; nothing here touches the database.

Back-off: the first ``FREE_FAILURES`` failed sign-ins for a name in
``FAILURE_WINDOW`` cost nothing; after that the next attempt must wait
``BACKOFF_BASE_S * 2 ** (failures - FREE_FAILURES)`` seconds (at most
``BACKOFF_CAP_S``) from the last failure.  The failures are the audit trail's
``signin.fail`` rows, so every replica sharing the database sees the same count.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterable
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ..errors import InvalidInputError, TooManyAttemptsError

__all__ = [
    "BACKOFF_BASE_S",
    "BACKOFF_CAP_S",
    "FAILURE_WINDOW",
    "FREE_FAILURES",
    "MAX_PASSWORD",
    "MIN_PASSWORD",
    "TooManyAttemptsError",
    "check_password",
    "default_hasher",
    "dummy_hash",
    "retry_after",
    "shown_name",
    "verify",
]

MIN_PASSWORD = 8
MAX_PASSWORD = 1024
FREE_FAILURES = 3
BACKOFF_BASE_S = 2.0
BACKOFF_CAP_S = 15 * 60.0
FAILURE_WINDOW = dt.timedelta(hours=1)
THROTTLED = "throttled"  # the reason of a refused attempt: not counted as a failure

_dummies: dict[str, str] = {}
_dummies_lock = threading.Lock()


def default_hasher() -> PasswordHasher:
    """argon2id with argon2-cffi's current recommended parameters."""
    return PasswordHasher()


def shown_name(name: object) -> str:
    """``name`` made safe for a message or an audit target: printable, at most 64 characters."""
    text = name if isinstance(name, str) else str(name)
    return "".join(c if c.isprintable() else "?" for c in text[:64])


def check_password(name: str, password: object) -> str:
    """Return ``password`` if it follows the rules.

    Raises:
        InvalidInputError: shorter than 8 or longer than 1024 characters, or the user name itself.
    """
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise InvalidInputError(f"the password is too short: use at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise InvalidInputError(f"the password is too long: use at most {MAX_PASSWORD} characters")
    if password.strip().casefold() == name.strip().casefold():
        raise InvalidInputError("the password must not be the user name")
    return password


def dummy_hash(hasher: PasswordHasher) -> str:
    """A hash to verify against when the user does not exist, so both cases take as long."""
    key = f"{hasher.time_cost}/{hasher.memory_cost}/{hasher.parallelism}/{hasher.hash_len}/{hasher.type}"
    with _dummies_lock:
        if key not in _dummies:
            _dummies[key] = hasher.hash("not a password of anyone")
        return _dummies[key]


def verify(hasher: PasswordHasher, stored: str | None, password: str) -> bool:
    """Whether ``password`` matches the ``stored`` hash (None: no password set, checked anyway)."""
    try:
        return bool(hasher.verify(stored or dummy_hash(hasher), password)) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def retry_after(events: Iterable[tuple[str, dt.datetime, dict[str, Any]]], now: dt.datetime) -> float:
    """Seconds to wait before the next sign-in, from recent (action, ts, detail) events, newest first.

    Counts ``signin.fail`` events back to the last ``signin.ok``; refused (throttled)
    attempts are not failures, so hammering does not lengthen the wait.
    """
    failures, last = 0, None
    for action, ts, detail in events:
        if action == "signin.ok":
            break
        if action == "signin.fail" and (detail or {}).get("reason") != THROTTLED:
            failures += 1
            last = last or ts
    if last is None or failures < FREE_FAILURES:
        return 0.0
    delay = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (failures - FREE_FAILURES))
    return max(0.0, (last - now).total_seconds() + delay)
