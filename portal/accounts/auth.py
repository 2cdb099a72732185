"""Users, roles and API tokens: who may do what.

Roles, each allowed what the one before it is:

    viewer    read models and metadata, run predictions
    analyst   also upload models, and alias, edit or delete the models they own
    admin     everything, users and tokens included

A token is ``mpt_`` plus 43 url-safe characters from :func:`secrets.token_urlsafe`;
it is shown once, at creation, and only its sha256 is stored.
:meth:`Auth.authenticate` reads the database on every call, so a revoked token,
or a deleted or disabled user, fails on the very next request.  There are no
default users or tokens: the first admin is made on the command line
(``portal users add NAME --role admin``, then ``portal tokens create NAME``).
Every change is written to the audit trail in the same transaction.

People also sign in to the browser portal with a password (argon2id, see
:mod:`portal.accounts.passwords`): :meth:`Auth.sign_in` audits every attempt
(``signin.ok`` / ``signin.fail`` with a reason, never the password) and slows
down repeated failures using those audit rows, so the back-off holds across
replicas.  On a store with no users, :meth:`Auth.create_first_admin` makes the
first admin; it succeeds once, however many forms race for it.

The methods that change state take ``actor``: a name (the trusted local
operator: the CLI without a token, scripts) or a :class:`User`, whose current
row is read in the same transaction and checked here: only an enabled admin
manages users and other people's tokens; anyone enabled may change their own
password and create or revoke their own tokens.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any

from argon2 import PasswordHasher
from sqlalchemy import bindparam, delete, func, select, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from ..storage.db import AuditRow, ModelRow, TokenRow, UserRow, utcnow
from ..errors import (
    AuthenticationError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
)
from .passwords import (
    FAILURE_WINDOW,
    THROTTLED,
    TooManyAttemptsError,
    check_password,
    default_hasher,
    retry_after,
    shown_name,
    verify,
)
from ..storage.registry import Registry

__all__ = [
    "ACTIONS", "ROLES", "Actor", "Auth", "NewToken", "TokenInfo", "TooManyAttemptsError", "User", "allowed",
    "require",
]

ROLES = ("viewer", "analyst", "admin")
ACTIONS = ("read", "infer", "upload", "edit", "alias", "delete", "admin")

_VIEWER = frozenset({"read", "infer"})
_ANALYST = _VIEWER | {"upload"}
_OWNER_ACTIONS = frozenset({"upload", "edit", "alias", "delete"})
_USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
_TOKEN_PREFIX = "mpt_"
_MAX_TOKEN_CHARS = 256
_LAST_USED_EVERY = dt.timedelta(seconds=60)


@dataclass(frozen=True)
class User:
    """An authenticated person or service account."""

    id: int
    name: str
    role: str
    disabled: bool = False
    created_at: dt.datetime | None = None
    has_password: bool = False


@dataclass(frozen=True)
class TokenInfo:
    """What is known about a token after creation (never the secret)."""

    id: int
    user: str
    label: str
    prefix: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True)
class NewToken:
    """A token just created: ``secret`` is shown to its owner once and never stored."""

    info: TokenInfo
    secret: str = field(repr=False)


def _as_datetime(value: Any) -> dt.datetime | None:
    """A DateTime column read through the raw DBAPI (SQLite gives text)."""
    if value is None or isinstance(value, dt.datetime):
        return value
    return dt.datetime.fromisoformat(str(value))


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _check_user_name(name: str) -> str:
    if not isinstance(name, str) or not _USER_NAME.fullmatch(name):
        shown = str(name)[:64]
        raise InvalidInputError(
            f"invalid user name {shown!r}: use 1-64 letters, digits, '.', '_', '@' or '-', "
            "starting with a letter or digit"
        )
    return name


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidInputError(f"invalid role {str(role)[:32]!r}: expected one of {', '.join(ROLES)}")
    return role


def allowed(user: User, action: str, *, model_owner: str | None = None, model_owner_id: int | None = None) -> bool:
    """Whether ``user`` may do ``action`` (on a model owned by ``model_owner``, if any).

    Ownership is decided by the owner's user id when ``model_owner_id`` is given
    (the library always gives it), else by the owner's current name.  A model
    nobody owns (``model_owner=""``) is an admin's to change.
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}: expected one of {', '.join(ACTIONS)}")
    if user.role == "admin":
        return True
    if user.role == "analyst":
        if action in _OWNER_ACTIONS:
            if model_owner is None and model_owner_id is None:
                return action == "upload"  # a new model (no owner yet) may be uploaded
            if model_owner_id is not None:
                return model_owner_id == user.id
            return bool(model_owner) and model_owner == user.name
        return action in _ANALYST
    return user.role == "viewer" and action in _VIEWER


def require(user: User, action: str, *, model_owner: str | None = None, model_owner_id: int | None = None) -> None:
    """Raise PermissionDeniedError unless ``user`` may do ``action``.

    Raises:
        PermissionDeniedError: the role (or ownership of the model) does not allow it.
    """
    if allowed(user, action, model_owner=model_owner, model_owner_id=model_owner_id):
        return
    if user.role == "analyst" and action in _OWNER_ACTIONS:
        raise PermissionDeniedError(
            f"analyst {user.name!r} may not {action} this model: it belongs to {model_owner or 'nobody'!r}; "
            "only its owner or an admin may"
        )
    needs = "admin" if action in ("admin", "edit", "alias", "delete") else "analyst or admin"
    raise PermissionDeniedError(f"{user.role} {user.name!r} may not {action}: that needs the role {needs}")


Actor = "str | User"
_WRONG = "wrong user name or password"


def _owns_models(name: str, models: list[str]) -> str:
    shown = ", ".join(models[:5]) + (f" and {len(models) - 5} more" if len(models) > 5 else "")
    count = f"{len(models)} model{'s' if len(models) != 1 else ''}"
    return (
        f"refused: {name} owns {count} ({shown}); choose who takes them over, e.g. "
        f"`portal users delete {name} --reassign-to OTHER_USER` (REST: DELETE /api/users/{name}?reassign_to="
        "OTHER_USER; Admin page: 'Give their models to')"
    )


class Auth:
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
        # Checked on every request, so it runs on a raw DBAPI connection in one
        # statement (no BEGIN/ROLLBACK round trips): ~20 µs instead of ~300 µs on SQLite.
        lookup = (
            select(UserRow.id, UserRow.name, UserRow.role, UserRow.disabled, TokenRow.id,
                   TokenRow.revoked_at, TokenRow.last_used_at)
            .join(UserRow, TokenRow.user_id == UserRow.id)
            .where(TokenRow.token_hash == bindparam("digest"))
        )
        self._lookup = lookup.compile(dialect=self.engine.dialect)
        self._touched: dict[int, float] = {}
        self._lookup_sql = str(self._lookup)

    # -- sessions ---------------------------------------------------------
    def _write(self) -> contextlib.AbstractContextManager[Session]:
        return self._registry.write_session()

    def _audit(self, s: Session, actor: str, action: str, target: str, detail: dict[str, Any]) -> None:
        s.add(AuditRow(actor=actor or "", action=action, target=target, detail=detail, ts=self._clock()))

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

    # -- users ------------------------------------------------------------
    def add_user(self, name: str, role: str, *, actor: str | User, password: str | None = None) -> User:
        """Create a user with ``role`` (viewer, analyst or admin), with a password to sign in with or none."""
        _check_user_name(name)
        _check_role(role)
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
        _check_user_name(name)
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
            _check_role(role)
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

    # -- passwords and sign-in ----------------------------------------------
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
        if not isinstance(name, str) or not _USER_NAME.fullmatch(name):
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
            events = [(a, _as_datetime(ts), d) for a, ts, d in s.execute(query).all()]
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

    # -- tokens -----------------------------------------------------------
    def create_token(self, user: str, *, actor: str | User, label: str = "") -> NewToken:
        """Create a token for ``user``; the secret is in the result and nowhere else."""
        label = (label or "").strip()
        if len(label) > 64 or any(ord(c) < 32 for c in label):
            raise InvalidInputError("invalid token label: at most 64 printable characters")
        secret = _TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self._write() as s:
            actor = self._actor(s, actor, own=user)
            owner = self._user_row(s, user)
            row = TokenRow(user_id=owner.id, name=label, token_hash=_hash(secret), prefix=secret[:12])
            s.add(row)
            s.flush()
            self._audit(s, actor, "token.create", user, {"token_id": row.id, "label": label, "prefix": row.prefix})
            return NewToken(info=self._token(row, owner.name), secret=secret)

    @staticmethod
    def _token(row: TokenRow, user: str) -> TokenInfo:
        return TokenInfo(
            id=row.id, user=user, label=row.name, prefix=row.prefix, created_at=row.created_at,
            last_used_at=row.last_used_at, revoked_at=row.revoked_at,
        )

    def list_tokens(self, *, user: str | None = None, include_revoked: bool = False) -> list[TokenInfo]:
        query = select(TokenRow, UserRow.name).join(UserRow, TokenRow.user_id == UserRow.id).order_by(TokenRow.id)
        if user is not None:
            query = query.where(UserRow.name == user)
        if not include_revoked:
            query = query.where(TokenRow.revoked_at.is_(None))
        with Session(self.engine) as s:
            return [self._token(row, name) for row, name in s.execute(query).all()]

    def revoke_token(self, token_id: int, *, actor: str | User) -> TokenInfo:
        """Revoke a token; requests made with it fail from now on."""
        with self._write() as s:
            row = s.get(TokenRow, token_id) if isinstance(token_id, int) and 0 < token_id < 2**63 else None
            if row is None:
                raise NotFoundError(f"no token with id {token_id}; `portal tokens list` shows them")
            owner = s.get(UserRow, row.user_id)
            actor = self._actor(s, actor, own=owner.name if owner else None)
            if row.revoked_at is None:
                row.revoked_at = utcnow()
                s.flush()
                self._audit(s, actor, "token.revoke", owner.name if owner else "", {"token_id": row.id})
            return self._token(row, owner.name if owner else "")

    # -- authentication -----------------------------------------------------
    def authenticate(self, token: str | None) -> User:
        """The user a bearer token belongs to.

        Raises:
            AuthenticationError: no token, an unknown or revoked token, or a deleted
                or disabled user.
        """
        if not token:
            raise AuthenticationError(
                "missing token: send 'Authorization: Bearer <token>'; an admin makes one with "
                "`portal tokens create USER`"
            )
        if len(token) > _MAX_TOKEN_CHARS:
            raise AuthenticationError("invalid token")
        row = self._find(_hash(token))
        if row is None or row[5] is not None:
            raise AuthenticationError("invalid or revoked token")
        user_id, name, role, disabled, token_id, _, last_used = row
        if disabled:
            raise AuthenticationError(f"user {name!r} is disabled")
        self._maybe_touch(token_id, last_used)
        return User(id=user_id, name=name, role=role)

    def _maybe_touch(self, token_id: int, last_used: Any) -> None:
        """Record the token's use at most once a minute (not a cache: nothing is skipped but a write)."""
        now = time.monotonic()
        if now - self._touched.get(token_id, -1e9) < _LAST_USED_EVERY.total_seconds():
            return
        self._touched[token_id] = now
        stamp = _as_datetime(last_used)
        if stamp is None or utcnow() - stamp > _LAST_USED_EVERY:
            # a write may wait on the database lock: never in the request's own thread
            threading.Thread(target=self._touch, args=(token_id,), name="portal-token-touch", daemon=True).start()

    def _find(self, digest: str) -> tuple[Any, ...] | None:
        compiled = self._lookup
        params: Any = (
            tuple(digest for _ in compiled.positiontup or ()) if compiled.positional else {"digest": digest}
        )
        conn = self.engine.raw_connection()
        try:
            cursor = conn.cursor()
            try:
                cursor.execute(self._lookup_sql, params)
                row = cursor.fetchone()
            finally:
                cursor.close()
        finally:
            conn.close()
        return tuple(row) if row is not None else None

    def _touch(self, token_id: int) -> None:
        # Best effort and at most once a minute per token: a busy database must not fail a request.
        with contextlib.suppress(OperationalError):
            with self.engine.connect().execution_options(portal_write=True) as conn:
                conn.execute(update(TokenRow).where(TokenRow.id == token_id).values(last_used_at=utcnow()))
                conn.commit()
