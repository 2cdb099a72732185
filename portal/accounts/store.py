"""What every part of the account store shares: the database, the clock, audit rows, who is acting.

:class:`AccountStore` is the base of :class:`portal.accounts.auth.Auth` and of its
parts (:mod:`~portal.accounts.signin`, :mod:`~portal.accounts.tokens`); the
attributes it declares are set by ``Auth.__init__``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from ..errors import NotFoundError, PermissionDeniedError
from ..storage.audit import add_event
from ..storage.db import UserRow
from .roles import User

if TYPE_CHECKING:
    from argon2 import PasswordHasher

    from ..storage.registry import Registry

__all__ = ["AccountStore", "as_datetime"]


def as_datetime(value: Any) -> dt.datetime | None:
    """A DateTime column read through the raw DBAPI (SQLite gives text)."""
    if value is None or isinstance(value, dt.datetime):
        return value
    return dt.datetime.fromisoformat(str(value))


class AccountStore:
    """Users, passwords and tokens live in the registry's database; every change is audited with them."""

    engine: Engine
    _registry: Registry
    _clock: Callable[[], dt.datetime]
    _hasher: PasswordHasher

    def _write(self) -> contextlib.AbstractContextManager[Session]:
        return self._registry.write_session()

    def _audit(self, s: Session, actor: str, action: str, target: str, detail: dict[str, Any]) -> None:
        add_event(s, actor, action, target, detail, ts=self._clock())

    def _actor(self, s: Session, actor: str | User, *, own: str | None = None,
               what: str = "manage other users' tokens") -> str:
        """The name to audit ``actor`` as, after checking that a :class:`User` actor may act.

        A string is the trusted local operator.  A ``User`` is re-read here (a
        disabled, deleted or demoted user is refused at once) and must be an
        admin, or be ``own`` (the user whose password or token it is).

        Raises:
            PermissionDeniedError: the user is disabled, gone, or not allowed.
        """
        if not isinstance(actor, User):
            return actor
        row = s.get(UserRow, actor.id)
        if row is None or row.name != actor.name:
            raise PermissionDeniedError(f"user {actor.name!r} no longer exists")
        if row.disabled:
            raise PermissionDeniedError(f"user {actor.name!r} is disabled")
        if row.role != "admin" and (own is None or own != row.name):
            what = what if own is not None else "manage users"
            raise PermissionDeniedError(f"{row.role} {row.name!r} may not {what}: that needs the role admin")
        return row.name

    @staticmethod
    def _user(row: UserRow) -> User:
        return User(id=row.id, name=row.name, role=row.role, disabled=bool(row.disabled), created_at=row.created_at,
                    has_password=row.password_hash is not None)

    @staticmethod
    def _user_row(s: Session, name: str) -> UserRow:
        row = s.scalar(select(UserRow).where(UserRow.name == name))
        if row is None:
            raise NotFoundError(f"no user named {str(name)[:64]!r}; `portal users list` shows them")
        return row
