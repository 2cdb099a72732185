"""Accounts, roles and the audit trail on PostgreSQL behave as on SQLite (issue: PORTAL_DB_URL unchanged)."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from argon2 import PasswordHasher
from tiny import add_model, softmax_classifier

from portal import Portal
from portal.accounts.auth import Auth
from portal.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    TooManyAttemptsError,
)

FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
PW = "correct horse"


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, portal_home):
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    p = Portal.open(portal_home, db_url=url)
    yield p
    p.close()


def test_first_admin_sign_in_throttling_and_tokens(store):
    now = {"t": dt.datetime(2026, 1, 1, 12)}
    auth = Auth(store.registry, clock=lambda: now["t"], hasher=FAST)
    assert not auth.has_users()
    with ThreadPoolExecutor(4) as pool:  # four first-admin forms submitted at once: one wins
        outcomes = list(pool.map(lambda i: _try(lambda: auth.create_first_admin(f"root{i}", PW)), range(4)))
    assert sum(isinstance(o, str) for o in outcomes) == 1
    assert all(isinstance(o, ConflictError) for o in outcomes if not isinstance(o, str))
    admin = auth.sign_in(next(o for o in outcomes if isinstance(o, str)), PW)
    auth.add_user("ana", "analyst", actor=admin, password=PW)
    for _ in range(3):
        with pytest.raises(AuthenticationError, match="wrong user name or password"):
            auth.sign_in("ana", "not the password")
    with pytest.raises(TooManyAttemptsError, match="too many failed sign-ins for ana; try again in 2 s"):
        auth.sign_in("ana", PW)  # refused before the password is checked
    now["t"] += dt.timedelta(seconds=2)
    with pytest.raises(AuthenticationError, match="wrong user name or password"):
        auth.sign_in("ana", "still not it")
    with pytest.raises(TooManyAttemptsError, match="try again in 4 s"):
        auth.sign_in("ana", PW)
    now["t"] += dt.timedelta(hours=2)
    ana = auth.sign_in("ana", PW)
    token = auth.create_token("ana", actor=ana)
    assert auth.authenticate(token.secret).name == "ana"
    with pytest.raises(PermissionDeniedError):
        auth.add_user("eve", "admin", actor=ana)
    auth.revoke_token(token.info.id, actor=ana)
    with pytest.raises(AuthenticationError, match="revoked"):
        auth.authenticate(token.secret)
    events = store.registry.audit_log(actor="ana")
    reasons = [e.detail.get("reason") for e in reversed(events) if e.action == "signin.fail"]
    assert reasons == ["wrong password"] * 3 + ["throttled", "wrong password", "throttled"], reasons
    assert {"signin.ok", "token.create", "token.revoke"} <= {e.action for e in events}


def _try(func):
    try:
        return func().name
    except Exception as exc:  # noqa: BLE001 - the outcome is what is compared
        return exc


def test_visibility_and_literal_audit_filters(store):
    auth = Auth(store.registry, hasher=FAST)
    ana = auth.add_user("ana", "analyst", actor="root")
    bob = auth.add_user("bob", "analyst", actor="root")
    as_ana, as_bob = store.as_user(ana), store.as_user(bob)
    add_model(store, softmax_classifier(), "a_b")
    store.update_model("a_b", owner="ana", visibility="private")
    add_model(store, softmax_classifier(), "aXb")
    assert [m.name for m in as_bob.list_models()] == ["aXb"]
    with pytest.raises(NotFoundError):
        as_bob.predict("a_b", np.zeros((1, 4), np.float32))
    with pytest.raises(NotFoundError):
        as_bob.delete("a_b")
    assert as_ana.predict("a_b", np.zeros((1, 4), np.float32)).rows == 1
    as_ana.set_alias("a_b:1", "prod")
    events = store.registry.audit_log(target="a_b")
    assert {e.target for e in events} == {"a_b", "a_b:1", "a_b@prod"}
    # as LIKE patterns these would match the other model too: they are compared literally
    assert store.registry.audit_log(target="a%") == [] and store.registry.audit_log(actor="%") == []
    assert store.registry.audit_log(target="a'b") == [] and store.registry.audit_log(action="alias.%") == []
