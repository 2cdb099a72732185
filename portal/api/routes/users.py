"""Users, tokens and the audit trail (admins only), plus ``/api/me`` for everyone."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from ...accounts.auth import TokenInfo, User
from ..context import context
from ..errors import ERROR_RESPONSES

__all__ = ["router"]

router = APIRouter(prefix="/api", tags=["Users, tokens and audit"], responses=ERROR_RESPONSES)  # type: ignore[arg-type]

Role = Literal["viewer", "analyst", "admin"]


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64)
    role: Role


class UserEdit(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Role | None = None
    disabled: bool | None = None


class NewTokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str = Field(min_length=1, max_length=64)
    label: str = Field(default="", max_length=64)


def _user_json(user: User) -> dict[str, Any]:
    return {"name": user.name, "role": user.role, "disabled": user.disabled,
            "created_at": user.created_at.isoformat() if user.created_at else None}


def _token_json(token: TokenInfo) -> dict[str, Any]:
    return {
        "id": token.id, "user": token.user, "label": token.label, "prefix": token.prefix,
        "created_at": token.created_at.isoformat(),
        "last_used_at": token.last_used_at.isoformat() if token.last_used_at else None,
        "revoked_at": token.revoked_at.isoformat() if token.revoked_at else None,
    }


@router.get("/me", summary="The user of the token")
def me(request: Request) -> dict[str, Any]:
    ctx = context(request)
    return _user_json(ctx.auth.get_user(ctx.allow(request, "read").name))


@router.get("/users", summary="List users")
def list_users(request: Request) -> list[dict[str, Any]]:
    ctx = context(request)
    ctx.allow(request, "admin")
    return [_user_json(u) for u in ctx.auth.list_users()]


@router.post("/users", summary="Create a user", status_code=201)
def add_user(body: NewUser, request: Request) -> dict[str, Any]:
    ctx = context(request)
    admin = ctx.allow(request, "admin")
    return _user_json(ctx.auth.add_user(body.name, body.role, actor=admin))


@router.patch("/users/{name}", summary="Change a user's role, or disable or enable them")
def edit_user(name: str, body: UserEdit, request: Request) -> dict[str, Any]:
    ctx = context(request)
    admin = ctx.allow(request, "admin")
    return _user_json(ctx.auth.update_user(name, role=body.role, disabled=body.disabled, actor=admin))


@router.delete(
    "/users/{name}", summary="Delete a user and their tokens",
    description="While the user owns models, `reassign_to` must name the user who takes them over (409 without it).",
)
def delete_user(
    name: str, request: Request, reassign_to: str | None = Query(None, min_length=1, max_length=64),
) -> dict[str, Any]:
    ctx = context(request)
    admin = ctx.allow(request, "admin")
    moved = ctx.auth.delete_user(name, actor=admin, reassign_to=reassign_to)
    return {"deleted": name, "reassigned_to": reassign_to if moved else None, "models": moved}


@router.get("/tokens", summary="List tokens (never their secrets)")
def list_tokens(
    request: Request,
    user: str | None = Query(None, max_length=64),
    include_revoked: bool = Query(False),
) -> list[dict[str, Any]]:
    ctx = context(request)
    ctx.allow(request, "admin")
    return [_token_json(t) for t in ctx.auth.list_tokens(user=user, include_revoked=include_revoked)]


@router.post("/tokens", summary="Create a token; its secret is in this answer only", status_code=201)
def create_token(body: NewTokenRequest, request: Request) -> dict[str, Any]:
    ctx = context(request)
    admin = ctx.allow(request, "admin")
    new = ctx.auth.create_token(body.user, label=body.label, actor=admin)
    return {**_token_json(new.info), "token": new.secret}


@router.delete("/tokens/{token_id}", summary="Revoke a token")
def revoke_token(token_id: int, request: Request) -> dict[str, Any]:
    ctx = context(request)
    admin = ctx.allow(request, "admin")
    return _token_json(ctx.auth.revoke_token(token_id, actor=admin))


@router.get("/audit", summary="The audit trail, newest first")
def audit(
    request: Request,
    actor: str | None = Query(None, max_length=128),
    action: str | None = Query(None, max_length=64),
    target: str | None = Query(None, max_length=256),
    limit: int = Query(100, ge=1, le=10_000),
) -> list[dict[str, Any]]:
    ctx = context(request)
    ctx.allow(request, "admin")
    events = ctx.portal.registry.audit_log(actor=actor, action=action, target=target, limit=limit)
    return [{"id": e.id, "ts": e.ts.isoformat(), "actor": e.actor, "action": e.action, "target": e.target,
             "detail": e.detail} for e in events]
