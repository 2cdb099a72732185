"""Tests for portal.auth: users, roles, tokens, and what each role may do."""

from __future__ import annotations

import hashlib
import sqlite3

import pytest

from portal import Portal
from portal.auth import Auth, User, allowed, require
from portal.errors import (
    AuthenticationError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
)


@pytest.fixture()
def portal(tmp_path):
    p = Portal.open(tmp_path / "home")
    yield p
    p.close()


@pytest.fixture()
def auth(portal):
    return Auth(portal.registry)


def test_new_token_authenticates_as_its_user(auth):
    auth.add_user("ana", "analyst", actor="root")
    token = auth.create_token("ana", actor="root", label="laptop")
    user = auth.authenticate(token.secret)
    assert (user.name, user.role) == ("ana", "analyst")
    assert token.secret.startswith("mpt_") and len(token.secret) > 40


def test_only_the_token_hash_is_stored(auth, portal):
    auth.add_user("ana", "viewer", actor="root")
    token = auth.create_token("ana", actor="root")
    db = sqlite3.connect(portal.home / "portal.db")
    dump = "\n".join(db.iterdump())
    db.close()
    assert token.secret not in dump
    assert hashlib.sha256(token.secret.encode()).hexdigest() in dump


def test_secret_is_not_in_repr(auth):
    auth.add_user("ana", "viewer", actor="root")
    token = auth.create_token("ana", actor="root")
    assert token.secret not in repr(token)


@pytest.mark.parametrize("token", [None, "", "mpt_nope", "x" * 10_000, "é\u2028\x00"])
def test_missing_or_unknown_token_is_refused(auth, token):
    with pytest.raises(AuthenticationError):
        auth.authenticate(token)


def test_revoked_token_fails_at_once(auth):
    auth.add_user("ana", "viewer", actor="root")
    token = auth.create_token("ana", actor="root")
    auth.authenticate(token.secret)
    auth.revoke_token(token.info.id, actor="root")
    with pytest.raises(AuthenticationError, match="revoked"):
        auth.authenticate(token.secret)


def test_deleted_user_fails_at_once_and_loses_tokens(auth):
    auth.add_user("ana", "viewer", actor="root")
    token = auth.create_token("ana", actor="root")
    auth.authenticate(token.secret)
    auth.delete_user("ana", actor="root")
    with pytest.raises(AuthenticationError):
        auth.authenticate(token.secret)
    assert auth.list_tokens(include_revoked=True) == []


def test_disabled_user_is_refused_and_can_come_back(auth):
    auth.add_user("ana", "viewer", actor="root")
    token = auth.create_token("ana", actor="root")
    auth.update_user("ana", disabled=True, actor="root")
    with pytest.raises(AuthenticationError, match="disabled"):
        auth.authenticate(token.secret)
    auth.update_user("ana", disabled=False, actor="root")
    assert auth.authenticate(token.secret).name == "ana"


def test_role_change_applies_to_the_next_request(auth):
    auth.add_user("ana", "viewer", actor="root")
    token = auth.create_token("ana", actor="root")
    auth.update_user("ana", role="admin", actor="root")
    assert auth.authenticate(token.secret).role == "admin"


@pytest.mark.parametrize("name", ["", "a b", "../x", "x" * 65, "-lead", "semi;colon", "new\nline"])
def test_invalid_user_names_are_refused(auth, name):
    with pytest.raises(InvalidInputError, match="invalid user name"):
        auth.add_user(name, "viewer", actor="root")


def test_invalid_role_is_refused_with_the_choices(auth):
    with pytest.raises(InvalidInputError, match="viewer, analyst, admin"):
        auth.add_user("ana", "root", actor="root")


def test_duplicate_user_is_a_conflict(auth):
    auth.add_user("ana", "viewer", actor="root")
    with pytest.raises(ConflictError):
        auth.add_user("ana", "admin", actor="root")


def test_last_active_admin_cannot_be_removed(auth):
    auth.add_user("boss", "admin", actor="root")
    with pytest.raises(ConflictError, match="last active admin"):
        auth.delete_user("boss", actor="root")
    with pytest.raises(ConflictError):
        auth.update_user("boss", role="viewer", actor="root")
    with pytest.raises(ConflictError):
        auth.update_user("boss", disabled=True, actor="root")
    auth.add_user("boss2", "admin", actor="root")
    auth.delete_user("boss", actor="root")
    assert [u.name for u in auth.list_users()] == ["boss2"]


def test_unknown_user_and_token_are_not_found(auth):
    with pytest.raises(NotFoundError):
        auth.create_token("ghost", actor="root")
    with pytest.raises(NotFoundError):
        auth.revoke_token(12345, actor="root")
    with pytest.raises(NotFoundError):
        auth.delete_user("ghost", actor="root")


def test_every_change_is_audited_with_its_actor(auth, portal):
    auth.add_user("ana", "viewer", actor="root")
    token = auth.create_token("ana", actor="root", label="ci")
    auth.update_user("ana", role="analyst", actor="root")
    auth.revoke_token(token.info.id, actor="root")
    auth.delete_user("ana", actor="root")
    events = [(e.actor, e.action, e.target) for e in reversed(portal.registry.audit_log(limit=10))]
    assert events == [
        ("root", "user.create", "ana"), ("root", "token.create", "ana"), ("root", "user.update", "ana"),
        ("root", "token.revoke", "ana"), ("root", "user.delete", "ana"),
    ]
    assert all(token.secret not in str(e.detail) for e in portal.registry.audit_log())


def test_list_tokens_hides_revoked_unless_asked(auth):
    auth.add_user("ana", "viewer", actor="root")
    keep = auth.create_token("ana", actor="root")
    gone = auth.create_token("ana", actor="root")
    auth.revoke_token(gone.info.id, actor="root")
    assert [t.id for t in auth.list_tokens()] == [keep.info.id]
    assert {t.id for t in auth.list_tokens(include_revoked=True)} == {keep.info.id, gone.info.id}


VIEWER = User(1, "vic", "viewer")
ANALYST = User(2, "ana", "analyst")
ADMIN = User(3, "adam", "admin")


@pytest.mark.parametrize(("user", "action", "owner", "ok"), [
    (VIEWER, "read", None, True), (VIEWER, "infer", None, True), (VIEWER, "upload", None, False),
    (VIEWER, "alias", "vic", False), (VIEWER, "admin", None, False),
    (ANALYST, "infer", None, True), (ANALYST, "upload", None, True), (ANALYST, "upload", "ana", True),
    (ANALYST, "upload", "bob", False), (ANALYST, "alias", "ana", True), (ANALYST, "alias", "bob", False),
    (ANALYST, "delete", "ana", True), (ANALYST, "delete", "bob", False), (ANALYST, "edit", None, False),
    (ANALYST, "admin", None, False),
    (ADMIN, "delete", "bob", True), (ADMIN, "admin", None, True), (ADMIN, "upload", "bob", True),
])
def test_role_rules(user, action, owner, ok):
    assert allowed(user, action, model_owner=owner) is ok


def test_require_names_the_missing_role():
    with pytest.raises(PermissionDeniedError, match="viewer 'vic' may not upload: that needs the role analyst or admin"):
        require(VIEWER, "upload")
    with pytest.raises(PermissionDeniedError, match="belongs to 'bob'"):
        require(ANALYST, "delete", model_owner="bob")


def test_unknown_action_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown action"):
        allowed(ADMIN, "fly")


# -- the command line ------------------------------------------------------------------
def _cli(tmp_path, *args):
    from typer.testing import CliRunner

    from portal.cli import app

    return CliRunner().invoke(app, list(args), env={"PORTAL_HOME": str(tmp_path / "cli-home")})


def test_cli_adds_users_and_prints_a_token_once(tmp_path):
    assert _cli(tmp_path, "users", "add", "boss", "--role", "admin").exit_code == 0
    made = _cli(tmp_path, "tokens", "create", "boss", "--label", "laptop", "--json")
    assert made.exit_code == 0, made.output
    import json

    secret = json.loads(made.output)["token"]
    listed = _cli(tmp_path, "tokens", "list", "--json")
    assert secret not in listed.output and '"user": "boss"' in listed.output
    users = _cli(tmp_path, "users", "list")
    assert "boss" in users.output and "admin" in users.output
    p = Portal.open(tmp_path / "cli-home")
    try:
        assert Auth(p.registry).authenticate(secret).name == "boss"
        revoked = _cli(tmp_path, "tokens", "revoke", str(json.loads(made.output)["id"]))
        assert revoked.exit_code == 0
        with pytest.raises(AuthenticationError):
            Auth(p.registry).authenticate(secret)
    finally:
        p.close()


def test_cli_errors_are_one_line_and_exit_1(tmp_path):
    result = _cli(tmp_path, "users", "add", "x y", "--role", "admin")
    assert result.exit_code == 1 and "invalid user name" in result.output and "Traceback" not in result.output
    assert _cli(tmp_path, "tokens", "create", "ghost").exit_code == 1
