"""Roles and what each may do: :class:`User`, :func:`allowed`, :func:`require`.

Roles, each allowed what the one before it is:

    viewer    read models and metadata, run predictions
    analyst   also upload models, and alias, edit or delete the models they own
    admin     everything, users and tokens included
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from ..errors import InvalidInputError, PermissionDeniedError

__all__ = ["ACTIONS", "ROLES", "USER_NAME", "Actor", "User", "allowed", "check_role", "check_user_name", "require"]

ROLES = ("viewer", "analyst", "admin")
ACTIONS = ("read", "infer", "upload", "edit", "alias", "delete", "admin")
USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")

_VIEWER = frozenset({"read", "infer"})
_ANALYST = _VIEWER | {"upload"}
_OWNER_ACTIONS = frozenset({"upload", "edit", "alias", "delete"})


@dataclass(frozen=True)
class User:
    """An authenticated person or service account."""

    id: int
    name: str
    role: str
    disabled: bool = False
    created_at: dt.datetime | None = None
    has_password: bool = False


Actor = "str | User"


def check_user_name(name: str) -> str:
    """``name`` if it is a valid user name.

    Raises:
        InvalidInputError: not 1-64 letters, digits, '.', '_', '@' or '-' starting with a letter or digit.
    """
    if not isinstance(name, str) or not USER_NAME.fullmatch(name):
        shown = str(name)[:64]
        raise InvalidInputError(
            f"invalid user name {shown!r}: use 1-64 letters, digits, '.', '_', '@' or '-', "
            "starting with a letter or digit"
        )
    return name


def check_role(role: str) -> str:
    """``role`` if it is one of :data:`ROLES`.

    Raises:
        InvalidInputError: any other role.
    """
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
