"""Users, roles and API tokens: who may do what.

:class:`Auth` is the account store, in the registry's database, in parts:

    roles       the roles (viewer < analyst < admin), :class:`User`, ``allowed`` / ``require``
    auth        :class:`Auth` itself: add, change and delete users; the first admin
    signin      passwords and browser sign-in with back-off (:mod:`portal.accounts.passwords`)
    tokens      API tokens: create, list, revoke, authenticate every request
    store       what the parts share: transactions, audit rows, the acting user's checks

There are no default users or tokens: the first admin is made on the command line
(``portal users add NAME --role admin``, then ``portal tokens create NAME``), or
by :meth:`Auth.create_first_admin` from the portal's first page, which succeeds
once, however many forms race for it.  Every change is written to the audit
trail in the same transaction.

The methods that change state take ``actor``: a name (the trusted local
operator: the CLI without a token, scripts) or a :class:`User`, whose current
row is read in the same transaction and checked here: only an enabled admin
manages users and other people's tokens; anyone enabled may change their own
password and create or revoke their own tokens.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from argon2 import PasswordHasher
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.orm import Session

from ..errors import ConflictError, InvalidInputError, TooManyAttemptsError
from ..storage.db import ModelRow, TokenRow, UserRow, utcnow
from ..storage.registry import Registry
from .passwords import check_password, default_hasher
from .roles import ACTIONS, ROLES, Actor, User, allowed, check_role, check_user_name, require
from .signin import SignIn
from .tokens import NewToken, TokenInfo, Tokens

__all__ = [
    "ACTIONS", "ROLES", "Actor", "Auth", "NewToken", "TokenInfo", "TooManyAttemptsError", "User", "allowed",
    "require",
]


def _owns_models(name: str, models: list[str]) -> str:
    shown = ", ".join(models[:5]) + (f" and {len(models) - 5} more" if len(models) > 5 else "")
    count = f"{len(models)} model{'s' if len(models) != 1 else ''}"
    return (
        f"refused: {name} owns {count} ({shown}); choose who takes them over, e.g. "
        f"`portal users delete {name} --reassign-to OTHER_USER` (REST: DELETE /api/users/{name}?reassign_to="
        "OTHER_USER; Admin page: 'Give their models to')"
    )


class Auth(SignIn, Tokens):
    """Users, passwords and tokens in the registry's database.

    Args:
        clock: the current time as a naive UTC datetime (tests pass a fake one);
            audit rows written here and the sign-in back-off use it.
        hasher: argon2 parameters for new hashes; a stored hash made with other
            parameters is re-hashed at the next successful sign-in.
    """

    def __init__(self, registry: Registry, *, clock: Callable[[], dt.datetime] | None = None,
                 hasher: PasswordHasher | None = None) -> None:
        self._registry = registry
        self.engine = registry.engine
        self._clock = clock or utcnow
        self._hasher = hasher or default_hasher()
        self._prepare_lookup()

    # -- users ------------------------------------------------------------
    def add_user(self, name: str, role: str, *, actor: str | User, password: str | None = None) -> User:
        """Create a user with ``role`` (viewer, analyst or admin), with a password to sign in with or none."""
        check_user_name(name)
        check_role(role)
        digest = self._hasher.hash(check_password(name, password)) if password is not None else None
        with self._write() as s:
            who = self._actor(s, actor)
            if s.scalar(select(UserRow.id).where(UserRow.name == name)) is not None:
                raise ConflictError(f"user {name!r} already exists")
            row = UserRow(name=name, role=role, disabled=False, password_hash=digest)
            s.add(row)
            s.flush()
            self._audit(s, who, "user.create", name, {"role": role, "password": digest is not None})
            return self._user(row)

    def has_users(self) -> bool:
        """Whether any user exists (when none does, the portal asks for the first admin)."""
        with Session(self.engine) as s:
            return s.scalar(select(UserRow.id).limit(1)) is not None

    def create_first_admin(self, name: str, password: str) -> User:
        """Create the first user, an admin, on a store with no users.

        Raises:
            ConflictError: a user exists already (another form won the race).
        """
        check_user_name(name)
        digest = self._hasher.hash(check_password(name, password))
        with self._write() as s:  # BEGIN IMMEDIATE on SQLite: one writer at a time
            if s.bind is not None and s.bind.dialect.name == "postgresql":
                s.execute(text("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE"))
            if s.scalar(select(UserRow.id).limit(1)) is not None:
                raise ConflictError("the first admin exists already: sign in, or ask an admin for an account")
            row = UserRow(name=name, role="admin", disabled=False, password_hash=digest)
            s.add(row)
            s.flush()
            self._audit(s, name, "user.create", name, {"role": "admin", "first_admin": True, "password": True})
            return self._user(row)

    def get_user(self, name: str) -> User:
        with Session(self.engine) as s:
            return self._user(self._user_row(s, name))

    def list_users(self) -> list[User]:
        with Session(self.engine) as s:
            return [self._user(r) for r in s.scalars(select(UserRow).order_by(UserRow.name)).all()]

    def update_user(
        self, name: str, *, actor: str | User, role: str | None = None, disabled: bool | None = None
    ) -> User:
        """Change a user's role or disable/enable them; the last active admin stays."""
        if role is not None:
            check_role(role)
        with self._write() as s:
            actor = self._actor(s, actor)
            row = self._user_row(s, name)
            was_admin = row.role == "admin" and not row.disabled
            changed: dict[str, Any] = {}
            if role is not None and role != row.role:
                changed["role"] = {"from": row.role, "to": role}
                row.role = role
            if disabled is not None and bool(disabled) != bool(row.disabled):
                changed["disabled"] = bool(disabled)
                row.disabled = bool(disabled)
            s.flush()
            if changed:
                if was_admin:
                    self._keep_an_admin(s, name)
                self._audit(s, actor, "user.update", name, changed)
            return self._user(row)

    def owned_models(self, name: str) -> list[str]:
        """Names of the models ``name`` owns (what deleting them would have to hand over)."""
        with Session(self.engine) as s:
            return self._owned(s, self._user_row(s, name))

    @staticmethod
    def _owned(s: Session, row: UserRow) -> list[str]:
        return list(s.scalars(select(ModelRow.name).where(ModelRow.owner_id == row.id).order_by(ModelRow.name)))

    def delete_user(self, name: str, *, actor: str | User, reassign_to: str | None = None) -> list[str]:
        """Delete a user and their tokens; the last active admin stays.

        The models they own go to the user ``reassign_to``; without one, the
        delete is refused while they own any.  Returns the names of the models
        that changed owner.

        Raises:
            ConflictError: they own models and no ``reassign_to`` was given, or they are the last admin.
            NotFoundError: no user ``name`` or ``reassign_to``.
            InvalidInputError: ``reassign_to`` is the user being deleted.
        """
        if reassign_to is not None and reassign_to == name:
            raise InvalidInputError(f"cannot give {name}'s models to {name}: choose another user to reassign them to")
        with self._write() as s:
            actor = self._actor(s, actor)
            row = self._user_row(s, name)
            heir = self._user_row(s, reassign_to) if reassign_to is not None else None
            owned = self._owned(s, row)
            if owned and heir is None:
                raise ConflictError(_owns_models(name, owned))
            if owned and heir is not None:
                s.execute(update(ModelRow).where(ModelRow.owner_id == row.id)
                          .values(owner_id=heir.id, updated_at=utcnow()))
            was_admin = row.role == "admin" and not row.disabled
            tokens = s.scalar(select(func.count()).select_from(TokenRow).where(TokenRow.user_id == row.id))
            s.execute(delete(TokenRow).where(TokenRow.user_id == row.id))
            s.delete(row)
            s.flush()
            if was_admin:
                self._keep_an_admin(s, name)
            detail: dict[str, Any] = {"role": row.role, "tokens": int(tokens or 0)}
            if owned:
                detail.update(models=len(owned), model_names=owned[:100], reassigned_to=heir.name if heir else None)
            self._audit(s, actor, "user.delete", name, detail)
            return owned

    @staticmethod
    def _keep_an_admin(s: Session, name: str) -> None:
        active = s.scalar(
            select(func.count()).select_from(UserRow).where(UserRow.role == "admin", UserRow.disabled.is_(False))
        )
        if not active:
            raise ConflictError(
                f"refused: {name!r} is the last active admin; make another admin first"
            )
