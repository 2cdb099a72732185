"""Tests for portal.accounts.auth: users, roles, tokens, and what each role may do."""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from portal import Portal
from portal.accounts.auth import Auth, User, allowed, require
from portal.storage.db import UserRow
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


@pytest.mark.parametrize(("owner", "owner_id", "ok"), [
    ("ana", 2, True),  # ana's id
    ("ana", 9, False),  # a model of an earlier user named ana: same name, another id
    ("", None, False),  # nobody's model: an admin's to change
])
def test_ownership_is_decided_by_user_id(owner, owner_id, ok):
    for action in ("upload", "edit", "alias", "delete"):
        assert allowed(ANALYST, action, model_owner=owner, model_owner_id=owner_id) is ok
    assert allowed(ADMIN, "delete", model_owner=owner, model_owner_id=owner_id)


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


# -- passwords and sign-in -------------------------------------------------------------
from argon2 import PasswordHasher  # noqa: E402

from portal.accounts.auth import TooManyAttemptsError  # noqa: E402

FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
PW = "correct horse"


class Clock:
    """A fake UTC clock that tests move forward."""

    def __init__(self) -> None:
        import datetime as dt

        self.now = dt.datetime(2026, 1, 1, 12, 0, 0)

    def __call__(self):
        return self.now

    def advance(self, seconds: float) -> None:
        import datetime as dt

        self.now += dt.timedelta(seconds=seconds)


@pytest.fixture()
def clock():
    return Clock()


@pytest.fixture()
def users(portal, clock):
    return Auth(portal.registry, clock=clock, hasher=FAST)


def test_sign_in_checks_the_password_and_stores_only_an_argon2_hash(users, portal):
    users.add_user("ana", "analyst", actor="root", password=PW)
    assert users.sign_in("ana", PW).name == "ana"
    with pytest.raises(AuthenticationError, match="^wrong user name or password$"):
        users.sign_in("ana", PW + "!")
    db = sqlite3.connect(portal.home / "portal.db")
    dump = "\n".join(db.iterdump())
    db.close()
    assert PW not in dump and "$argon2id$" in dump


@pytest.mark.parametrize(("password", "message"), [
    ("short", "too short"), ("x" * 1025, "too long"), ("Ana-Analyst", "must not be the user name"), ("", "too short"),
])
def test_password_rules(users, password, message):
    with pytest.raises(InvalidInputError, match=message):
        users.add_user("Ana-Analyst", "analyst", actor="root", password=password)
    assert users.list_users() == []


@pytest.mark.parametrize("name", ["", "x" * 100_000, "a\x00b", "a\nb", "a\u202eb"])
def test_sign_in_with_a_bad_name_fails_like_a_wrong_password(users, portal, name):
    with pytest.raises(AuthenticationError, match="^wrong user name or password$"):
        users.sign_in(name, PW)
    (event,) = portal.registry.audit_log(action="signin.fail")
    assert len(event.target) <= 64 and event.target.isprintable() and event.detail["reason"] == "invalid user name"


def test_every_attempt_is_audited_with_a_reason_never_the_password(users, portal):
    users.add_user("ana", "analyst", actor="root", password=PW)
    users.add_user("api", "viewer", actor="root")
    for name, password in [("ghost", "guess one"), ("ana", "guess two"), ("api", "guess three"), ("ana", PW)]:
        with contextlib.suppress(AuthenticationError):
            users.sign_in(name, password)
    events = [(e.action, e.target, e.detail.get("reason")) for e in reversed(portal.registry.audit_log())]
    assert events[-4:] == [("signin.fail", "ghost", "unknown user"), ("signin.fail", "ana", "wrong password"),
                           ("signin.fail", "api", "no password set"), ("signin.ok", "ana", None)]
    assert not any(g in str(e.detail) for e in portal.registry.audit_log() for g in ("guess", PW))


def test_failures_back_off_exponentially_and_a_success_resets(users, clock):
    users.add_user("ana", "analyst", actor="root", password=PW)
    waits = []
    for _ in range(6):
        try:
            users.sign_in("ana", "wrong password")
        except TooManyAttemptsError as exc:
            waits.append(exc.retry_after)
            clock.advance(exc.retry_after)
            with pytest.raises(AuthenticationError):
                users.sign_in("ana", "wrong password")
        except AuthenticationError:
            waits.append(0)
    assert waits == [0, 0, 0, 2, 4, 8]
    with pytest.raises(TooManyAttemptsError, match="too many failed sign-ins for ana; try again in 16 s"):
        users.sign_in("ana", PW)  # refused before the password is even checked
    clock.advance(16)
    assert users.sign_in("ana", PW).name == "ana"
    with pytest.raises(AuthenticationError) as caught:
        users.sign_in("ana", "wrong password")
    assert not isinstance(caught.value, TooManyAttemptsError)


def test_the_back_off_is_shared_by_every_replica(portal, clock):
    Auth(portal.registry, clock=clock, hasher=FAST).add_user("ana", "analyst", actor="root", password=PW)
    for _ in range(3):
        with pytest.raises(AuthenticationError):
            Auth(portal.registry, clock=clock, hasher=FAST).sign_in("ana", "wrong password")  # a fresh "replica"
    other = Portal.open(portal.home)
    try:
        with pytest.raises(TooManyAttemptsError):
            Auth(other.registry, clock=clock, hasher=FAST).sign_in("ana", PW)
    finally:
        other.close()


def test_old_failures_are_forgotten(users, clock):
    users.add_user("ana", "analyst", actor="root", password=PW)
    for _ in range(5):
        with contextlib.suppress(AuthenticationError):
            users.sign_in("ana", "wrong password")
        clock.advance(120)
    clock.advance(3600)
    assert users.sign_in("ana", PW).name == "ana"


def test_a_disabled_user_cannot_sign_in(users):
    users.add_user("boss", "admin", actor="root", password=PW)
    users.add_user("ana", "analyst", actor="root", password=PW)
    users.update_user("ana", disabled=True, actor="boss")
    with pytest.raises(AuthenticationError, match="the account ana is disabled"):
        users.sign_in("ana", PW)


def test_a_hash_with_old_parameters_is_rehashed_at_sign_in(portal, clock):
    Auth(portal.registry, clock=clock, hasher=FAST).add_user("ana", "analyst", actor="root", password=PW)
    stronger = PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1)
    Auth(portal.registry, clock=clock, hasher=stronger).sign_in("ana", PW)
    with Session(portal.registry.engine) as s:
        stored = s.scalar(select(UserRow.password_hash).where(UserRow.name == "ana"))
    assert "m=2048,t=2,p=1" in stored and not stronger.check_needs_rehash(stored)
    assert Auth(portal.registry, clock=clock, hasher=stronger).sign_in("ana", PW).name == "ana"


def test_first_admin_only_on_an_empty_store_and_only_once_under_a_race(portal):
    import threading

    barrier = threading.Barrier(4)
    won, lost = [], []

    def attempt(i: int) -> None:
        store = Auth(portal.registry, hasher=FAST)
        barrier.wait()
        try:
            won.append(store.create_first_admin(f"admin{i}", PW))
        except ConflictError as exc:
            lost.append(exc)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and len(lost) == 3 and "first admin exists already" in str(lost[0])
    store = Auth(portal.registry, hasher=FAST)
    assert [(u.name, u.role) for u in store.list_users()] == [(won[0].name, "admin")]
    assert store.sign_in(won[0].name, PW).role == "admin"


def _people(users):
    users.add_user("boss", "admin", actor="root", password=PW)
    users.add_user("ana", "analyst", actor="root", password=PW)
    users.add_user("bob", "viewer", actor="root", password=PW)
    return {u.name: u for u in users.list_users()}


def test_only_an_enabled_admin_manages_users(users, portal):
    people = _people(users)
    for who in ("ana", "bob"):
        with pytest.raises(PermissionDeniedError, match="may not manage users: that needs the role admin"):
            users.add_user("eve", "admin", actor=people[who])
        with pytest.raises(PermissionDeniedError):
            users.update_user("boss", role="viewer", actor=people[who])
        with pytest.raises(PermissionDeniedError):
            users.delete_user("boss", actor=people[who])
    users.add_user("eve", "viewer", actor=people["boss"])
    assert portal.registry.audit_log(target="eve")[0].actor == "boss"
    users.add_user("boss2", "admin", actor=people["boss"])
    users.update_user("boss", disabled=True, actor="root")
    with pytest.raises(PermissionDeniedError, match="'boss' is disabled"):  # a stale User object is re-read
        users.add_user("mallory", "admin", actor=people["boss"])


def test_users_manage_their_own_password_and_tokens_only(users):
    people = _people(users)
    ana, bob = people["ana"], people["bob"]
    with pytest.raises(PermissionDeniedError, match="current password is wrong"):
        users.set_password("ana", "a brand new one", actor=ana, current_password="nope")
    users.set_password("ana", "a brand new one", actor=ana, current_password=PW)
    assert users.sign_in("ana", "a brand new one").name == "ana"
    with pytest.raises(PermissionDeniedError, match="may not change other users' passwords"):
        users.set_password("bob", "a brand new one", actor=ana)
    users.set_password("bob", "reset by boss", actor=people["boss"])  # an admin resets without the old one
    mine = users.create_token("bob", actor=bob, label="mine")
    with pytest.raises(PermissionDeniedError, match="may not manage other users' tokens"):
        users.create_token("ana", actor=bob)
    with pytest.raises(PermissionDeniedError, match="may not manage other users' tokens"):
        users.revoke_token(mine.info.id, actor=ana)
    users.revoke_token(mine.info.id, actor=bob)
    with pytest.raises(AuthenticationError, match="revoked"):  # a token used after revocation
        users.authenticate(mine.secret)


def test_a_deleted_user_object_can_do_nothing(users):
    people = _people(users)
    users.delete_user("ana", actor="root")
    with pytest.raises(PermissionDeniedError, match="no longer exists"):
        users.create_token("ana", actor=people["ana"])


def test_cli_sets_a_password_from_stdin_and_updates_a_user(tmp_path):
    from typer.testing import CliRunner

    from portal.cli import app

    env = {"PORTAL_HOME": str(tmp_path / "cli-home")}
    runner = CliRunner()
    assert runner.invoke(app, ["users", "add", "boss", "--role", "admin"], env=env).exit_code == 0
    assert runner.invoke(app, ["users", "add", "ana", "--role", "viewer"], env=env).exit_code == 0
    done = runner.invoke(app, ["users", "passwd", "ana", "--password-stdin"], input="correct horse\n", env=env)
    assert done.exit_code == 0 and "correct horse" not in done.output
    short = runner.invoke(app, ["users", "passwd", "ana", "--password-stdin"], input="short\n", env=env)
    assert short.exit_code == 1 and "too short" in short.output
    updated = runner.invoke(app, ["users", "update", "ana", "--role", "analyst", "--disable", "--json"], env=env)
    assert updated.exit_code == 0 and '"disabled": true' in updated.output
    token = runner.invoke(app, ["tokens", "create", "ana", "--json"], env=env)
    import json

    as_ana = {**env, "PORTAL_TOKEN": json.loads(token.output)["token"]}
    runner.invoke(app, ["users", "update", "ana", "--enable"], env=env)
    refused = runner.invoke(app, ["users", "update", "boss", "--role", "viewer"], env=as_ana)
    assert refused.exit_code == 1 and "may not manage users" in refused.output
    p = Portal.open(tmp_path / "cli-home")
    try:
        user = Auth(p.registry).sign_in("ana", "correct horse")
        assert (user.role, user.disabled) == ("analyst", False)
    finally:
        p.close()
