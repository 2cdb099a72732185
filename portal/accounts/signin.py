"""Passwords and browser sign-in: set a password, sign in with back-off, record a sign-out.

:meth:`SignIn.sign_in` audits every attempt (``signin.ok`` / ``signin.fail`` with
a reason, never the password) and slows down repeated failures using those
audit rows (see :mod:`portal.accounts.passwords`), so the back-off holds across
replicas: a locked-out attempt raises :class:`TooManyAttemptsError` saying when
to retry (REST: 429 with ``Retry-After``).
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..errors import AuthenticationError, PermissionDeniedError, TooManyAttemptsError
from ..storage.db import AuditRow, UserRow
from .passwords import FAILURE_WINDOW, THROTTLED, check_password, retry_after, shown_name, verify
from .roles import USER_NAME, User
from .store import AccountStore, as_datetime

__all__ = ["SignIn"]

_WRONG = "wrong user name or password"


class SignIn(AccountStore):
    """The password part of :class:`portal.accounts.auth.Auth`."""

    def set_password(self, name: str, password: str, *, actor: str | User,
                     current_password: str | None = None) -> None:
        """Set ``name``'s password: an admin for anyone; a user for themselves, given their current one.

        Raises:
            InvalidInputError: the new password breaks a rule.
            PermissionDeniedError: not an admin, not the user, or the current password is wrong.
        """
        check_password(name, password)
        digest = self._hasher.hash(password)
        with self._write() as s:
            who = self._actor(s, actor, own=name, what="change other users' passwords")
            row = self._user_row(s, name)
            admin = not isinstance(actor, User) or s.get(UserRow, actor.id).role == "admin"  # type: ignore[union-attr]
            if not admin and not verify(self._hasher, row.password_hash, current_password or ""):
                raise PermissionDeniedError("the current password is wrong; the password was not changed")
            row.password_hash = digest
            self._audit(s, who, "user.password", name, {"by": "self" if who == name else "admin"})

    def sign_in(self, name: str, password: str, *, source: str = "ui") -> User:
        """The user ``name`` if ``password`` is theirs; every attempt is audited.

        Raises:
            TooManyAttemptsError: too many recent failures for ``name`` (checked first).
            AuthenticationError: wrong name or password, or a disabled user.
        """
        shown = shown_name(name)
        if not isinstance(name, str) or not USER_NAME.fullmatch(name):
            self._failed(shown, "invalid user name", source)
            raise AuthenticationError(_WRONG)
        wait = self._retry_after(name)
        if wait > 0:
            self._failed(name, THROTTLED, source)
            seconds = int(wait) + (wait % 1 > 0)
            raise TooManyAttemptsError(f"too many failed sign-ins for {name}; try again in {seconds} s",
                                       retry_after=seconds)
        with Session(self.engine) as s:
            row = s.scalar(select(UserRow).where(UserRow.name == name))
            stored = row.password_hash if row is not None else None
        too_long = not isinstance(password, str) or len(password) > 1024
        if too_long or not verify(self._hasher, stored, "" if too_long else password):
            reason = "unknown user" if row is None else "no password set" if stored is None else "wrong password"
            self._failed(name, reason, source)
            raise AuthenticationError(_WRONG)
        assert row is not None and stored is not None
        if row.disabled:
            self._failed(name, "disabled", source)
            raise AuthenticationError(f"the account {name} is disabled; ask an admin to enable it")
        self._signed_in(row.id, name, stored, password, source)
        return self._user(row)

    def record_sign_out(self, name: str, *, reason: str = "signed out", source: str = "ui") -> None:
        """Audit the end of a session (sign-out, expiry, a disabled account)."""
        with self._write() as s:
            self._audit(s, name, "signout", name, {"reason": reason, "source": source})

    def _retry_after(self, name: str) -> float:
        since = self._clock() - FAILURE_WINDOW
        query = (
            select(AuditRow.action, AuditRow.ts, AuditRow.detail)
            .where(AuditRow.target == name, AuditRow.action.in_(("signin.fail", "signin.ok")), AuditRow.ts >= since)
            .order_by(AuditRow.id.desc()).limit(64)
        )
        with Session(self.engine) as s:
            events = [(a, as_datetime(ts), d) for a, ts, d in s.execute(query).all()]
        return retry_after(events, self._clock())  # type: ignore[arg-type]

    def _failed(self, target: str, reason: str, source: str) -> None:
        with self._write() as s:
            self._audit(s, target, "signin.fail", target, {"reason": reason, "source": source})

    def _signed_in(self, user_id: int, name: str, stored: str, password: str, source: str) -> None:
        rehash = self._hasher.check_needs_rehash(stored)
        digest = self._hasher.hash(password) if rehash else None
        with self._write() as s:
            if digest is not None:
                s.execute(update(UserRow).where(UserRow.id == user_id, UserRow.password_hash == stored)
                          .values(password_hash=digest))
            self._audit(s, name, "signin.ok", name, {"source": source, "rehashed": rehash})
