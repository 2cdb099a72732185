"""The ``users`` and ``tokens`` commands: accounts, roles, passwords and API tokens.

With ``--token`` the library checks what that user may do; without it the CLI
is the local operator of the store.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from .common import JsonOpt, emit, fail, handles_errors, open_portal

if TYPE_CHECKING:
    from ..accounts.auth import Auth, User

__all__ = ["tokens_app", "users_app"]

users_app = typer.Typer(no_args_is_help=True, help="Users of the REST API (and the UI) and their roles.")
tokens_app = typer.Typer(no_args_is_help=True, help="API tokens: created once, stored hashed, revocable.")


def _user_text(users: list[User]) -> str:
    if not users:
        return "no users yet: `portal users add NAME --role admin`"
    width = max(len(u.name) for u in users)
    return "\n".join([f"{'NAME':<{width}}  ROLE     STATE"] +
                     [f"{u.name:<{width}}  {u.role:<7}  {'disabled' if u.disabled else 'active'}" for u in users])


def _auth() -> tuple[Auth, User | str]:
    """The user store, and who acts: the ``--token`` user (checked by the library) or the local operator."""
    from ..accounts.auth import Auth

    portal = open_portal()
    return Auth(portal.registry), portal.user or portal.actor


def _read_password(name: str, from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        fail("no terminal to ask for the password; pipe it in with --password-stdin")
    return str(typer.prompt(f"new password for {name}", hide_input=True, confirmation_prompt=True))


@users_app.command("add")
@handles_errors
def users_add(
    name: Annotated[str, typer.Argument(help="User name")],
    role: Annotated[str, typer.Option(help="viewer, analyst or admin")] = "viewer",
    as_json: JsonOpt = False,
) -> None:
    """Create a user with a role."""
    auth, actor = _auth()
    user = auth.add_user(name, role, actor=actor)
    emit({"name": user.name, "role": user.role}, as_json, lambda: f"added {user.role} {user.name}")


@users_app.command("list")
@handles_errors
def users_list(as_json: JsonOpt = False) -> None:
    """List users and their roles."""
    users = _auth()[0].list_users()
    emit([{"name": u.name, "role": u.role, "disabled": u.disabled} for u in users], as_json,
         lambda: _user_text(users))


@users_app.command("passwd")
@handles_errors
def users_passwd(
    name: Annotated[str, typer.Argument(help="User name")],
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the new password from stdin")] = False,
) -> None:
    """Set a user's password for the browser portal (asked twice on a terminal; never an argument)."""
    auth, actor = _auth()
    password = _read_password(name, password_stdin)
    current = None
    if not isinstance(actor, str) and actor.role != "admin":  # a user changing their own password
        current = str(typer.prompt("current password", hide_input=True)) if sys.stdin.isatty() else None
    auth.set_password(name, password, actor=actor, current_password=current)
    typer.echo(f"password of {name} set")


@users_app.command("update")
@handles_errors
def users_update(
    name: Annotated[str, typer.Argument(help="User name")],
    role: Annotated[str | None, typer.Option(help="New role: viewer, analyst or admin")] = None,
    disable: Annotated[bool, typer.Option("--disable", help="Disable: signed out at the next click, tokens refused")] = False,
    enable: Annotated[bool, typer.Option("--enable", help="Enable a disabled user")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Change a user's role, or disable or enable them."""
    if disable and enable:
        fail("give --disable or --enable, not both")
    auth, actor = _auth()
    user = auth.update_user(name, role=role, disabled=True if disable else False if enable else None, actor=actor)
    emit({"name": user.name, "role": user.role, "disabled": user.disabled}, as_json,
         lambda: f"{user.name}: {user.role}, {'disabled' if user.disabled else 'active'}")


@users_app.command("delete")
@handles_errors
def users_delete(
    name: Annotated[str, typer.Argument(help="User name")],
    reassign_to: Annotated[str | None, typer.Option(
        "--reassign-to", metavar="USER", help="Give the models they own to this user (needed while they own any)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete a user and their tokens (their requests fail at once); their models go to --reassign-to."""
    auth, actor = _auth()
    moved = auth.delete_user(name, actor=actor, reassign_to=reassign_to)
    moved_text = f"; {len(moved)} model(s) now belong to {reassign_to}: {', '.join(moved)}" if moved else ""
    emit({"deleted": name, "reassigned_to": reassign_to if moved else None, "models": moved}, as_json,
         lambda: f"deleted user {name}{moved_text}")


@tokens_app.command("create")
@handles_errors
def tokens_create(
    name: Annotated[str, typer.Argument(help="User the token belongs to")],
    label: Annotated[str, typer.Option(help="What the token is for")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Create an API token; it is printed once and cannot be shown again."""
    auth, actor = _auth()
    new = auth.create_token(name, label=label, actor=actor)
    emit({"id": new.info.id, "user": new.info.user, "label": new.info.label, "token": new.secret}, as_json,
         lambda: f"{new.secret}\n(token {new.info.id} for {new.info.user}; shown once, store it now)")


@tokens_app.command("list")
@handles_errors
def tokens_list(
    user: Annotated[str | None, typer.Option(help="Only this user's tokens")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Include revoked tokens")] = False,
    as_json: JsonOpt = False,
) -> None:
    """List tokens (ids, owners, labels; never the secrets)."""
    tokens = _auth()[0].list_tokens(user=user, include_revoked=all_)
    data = [{"id": t.id, "user": t.user, "label": t.label, "prefix": t.prefix, "active": t.active,
             "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None} for t in tokens]
    emit(data, as_json, lambda: "\n".join(
        f"{t.id:>4}  {t.user:<16} {t.prefix}…  {'active' if t.active else 'revoked'}  {t.label}" for t in tokens
    ) or "no tokens")


@tokens_app.command("revoke")
@handles_errors
def tokens_revoke(token_id: Annotated[int, typer.Argument(metavar="ID", help="Token id (`portal tokens list`)")]) -> None:
    """Revoke a token; requests made with it fail from now on."""
    auth, actor = _auth()
    info = auth.revoke_token(token_id, actor=actor)
    typer.echo(f"revoked token {info.id} of {info.user}")
