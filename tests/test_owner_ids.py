"""Owners and the prediction log are keyed by ids that are never reused (security issue 13).

A user deleted and re-created under the same name, or a model deleted and
registered again under the same name, is a new row that inherits nothing: not
the old owner's private models, not the old model's callers, counts and sampled
inputs.  Deleting a user who owns models hands them to a user the admin names.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from api_fixtures import serve
from sqlalchemy import (
    Boolean, Column, DateTime, Float, Index, Integer, MetaData, String, Table, Text, JSON, create_engine, func,
    insert, select, text,
)
from tiny import add_model, softmax_classifier
from typer.testing import CliRunner
from ui_fixtures import accounts_home, assert_clean, make_user, signed_in_app, texts  # noqa: F401  (fixtures)

from portal import Portal
from portal.monitor import stats as mon
from portal.accounts.auth import Auth, User
from portal.cli import app
from portal.storage.db import Base, PredictionRow
from portal.errors import ConflictError, InvalidInputError, NotFoundError, PermissionDeniedError

X = np.zeros((2, 4), np.float32)
T0 = 1_800_000_000.0  # 2027-01-15 08:00 UTC, a fixed clock for the prediction log


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, portal_home: Path) -> Iterator[Portal]:
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    p = Portal.open(portal_home, db_url=url)
    p.monitor.clock = lambda: T0
    yield p
    p.close()


def _team(p: Portal) -> tuple[Auth, dict[str, User]]:
    """root (admin), ana and bob (analysts); bob last, so SQLite would hand his id out again."""
    auth = Auth(p.registry)
    return auth, {n: auth.add_user(n, r, actor="tests") for n, r in [("root", "admin"), ("ana", "analyst"),
                                                                      ("bob", "analyst")]}


def _own(p: Portal, name: str, owner: str, visibility: str = "private") -> None:
    add_model(p, softmax_classifier(), name, task="classification")
    p.registry.update_model(name, actor="tests", owner=owner, visibility=visibility)


def _log_rows(p: Portal) -> list[dict[str, Any]]:
    with p.registry.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(PredictionRow.__table__))]


# -- users ------------------------------------------------------------------------------------
def test_a_new_user_named_like_a_deleted_one_gets_nothing_of_theirs(store: Portal) -> None:
    auth, users = _team(store)
    _own(store, "bobs-secret", "bob")
    auth.delete_user("bob", actor="root", reassign_to="ana")
    new_bob = auth.add_user("bob", "analyst", actor="root")
    assert new_bob.id not in {u.id for u in users.values()}  # ids are never handed out again
    as_bob = store.as_user(new_bob)
    assert "bobs-secret" not in [m.name for m in as_bob.list_models()]
    for attempt in (lambda: as_bob.get("bobs-secret"), lambda: as_bob.predict("bobs-secret", X),
                    lambda: as_bob.update_model("bobs-secret", visibility="shared"),
                    lambda: as_bob.delete("bobs-secret")):
        with pytest.raises(NotFoundError, match="no model named 'bobs-secret'"):
            attempt()
    assert (store.get_model("bobs-secret").owner, store.get_model("bobs-secret").owner_id) == ("ana", users["ana"].id)
    assert store.as_user(users["ana"]).delete("bobs-secret") == ["bobs-secret:1"]


def test_deleting_a_user_who_owns_models_is_refused_with_how_to_reassign(store: Portal) -> None:
    auth, _ = _team(store)
    _own(store, "b1", "bob")
    _own(store, "b2", "bob", "shared")
    token = auth.create_token("bob", actor="root").secret
    with pytest.raises(ConflictError) as refused:
        auth.delete_user("bob", actor="root")
    assert str(refused.value).startswith(
        "refused: bob owns 2 models (b1, b2); choose who takes them over, e.g. "
        "`portal users delete bob --reassign-to OTHER_USER`")
    assert refused.value.status == 409
    assert auth.authenticate(token).name == "bob"  # nothing changed
    assert auth.owned_models("bob") == ["b1", "b2"]


def test_reassigning_moves_every_model_and_is_audited(store: Portal) -> None:
    auth, users = _team(store)
    for name in ("b1", "b2"):
        _own(store, name, "bob")
    _own(store, "a1", "ana")
    assert auth.delete_user("bob", actor=users["root"], reassign_to="ana") == ["b1", "b2"]
    assert {m.name: m.owner for m in store.list_models()} == {"a1": "ana", "b1": "ana", "b2": "ana"}
    assert store.as_user(users["ana"]).delete("b1") == ["b1:1"]  # the new owner may do what the old one could
    (event,) = store.registry.audit_log(action="user.delete")
    assert (event.actor, event.target) == ("root", "bob")
    assert (event.detail["models"], event.detail["model_names"], event.detail["reassigned_to"]) == (2, ["b1", "b2"],
                                                                                                  "ana")


def test_bad_reassignments_are_refused_and_change_nothing(store: Portal) -> None:
    auth, _ = _team(store)
    _own(store, "b1", "bob")
    with pytest.raises(InvalidInputError, match="cannot give bob's models to bob"):
        auth.delete_user("bob", actor="root", reassign_to="bob")
    with pytest.raises(NotFoundError, match="no user named 'ghost'"):
        auth.delete_user("bob", actor="root", reassign_to="ghost")
    assert auth.get_user("bob") and store.get_model("b1").owner == "bob"


def test_owners_are_shown_and_set_by_name(store: Portal) -> None:
    _, users = _team(store)
    _own(store, "m", "ana")
    assert store.registry.update_model("m", owner="bob").owner == "bob"
    listed = store.list_models()[0]
    assert (listed.owner, listed.owner_id, listed.latest.owner, listed.latest.owner_id) == (
        "bob", users["bob"].id, "bob", users["bob"].id)
    with pytest.raises(NotFoundError, match="no user named 'ghost'"):
        store.registry.update_model("m", owner="ghost")


def test_a_model_nobody_owns_is_an_admins_to_change_and_if_private_to_see(store: Portal) -> None:
    _, users = _team(store)
    add_model(store, softmax_classifier(), "orphan")  # the local operator ("tests" is no user): nobody owns it
    add_model(store, softmax_classifier(), "hidden")
    store.registry.update_model("hidden", visibility="private")
    as_ana, as_root = store.as_user(users["ana"]), store.as_user(users["root"])
    assert store.get_model("orphan").owner == "" and store.get_model("orphan").owner_id is None
    assert [m.name for m in as_ana.list_models()] == ["orphan"]
    assert [m.name for m in as_root.list_models()] == ["hidden", "orphan"]
    with pytest.raises(PermissionDeniedError, match="it belongs to 'nobody'"):
        as_ana.update_model("orphan", description="mine now")
    assert as_root.update_model("orphan", owner="ana").owner == "ana"


def test_the_cli_asks_for_a_new_owner(store: Portal, portal_home: Path) -> None:
    if store.registry.engine.dialect.name != "sqlite":
        pytest.skip("the CLI reads the store from PORTAL_HOME")
    _team(store)
    _own(store, "b1", "bob")
    env = {"PORTAL_HOME": str(portal_home)}
    refused = CliRunner().invoke(app, ["users", "delete", "bob"], env=env)
    assert refused.exit_code == 1 and "bob owns 1 model (b1)" in refused.output
    assert "portal users delete bob --reassign-to" in refused.output
    done = CliRunner().invoke(app, ["users", "delete", "bob", "--reassign-to", "ana"], env=env)
    assert done.exit_code == 0, done.output
    assert done.output.strip() == "deleted user bob; 1 model(s) now belong to ana: b1"
    assert store.get_model("b1").owner == "ana"


def test_the_rest_api_asks_for_a_new_owner_and_a_new_bob_sees_nothing(portal_home: Path) -> None:
    p = Portal.open(portal_home)
    try:
        auth, _ = _team(p)
        _own(p, "bobs-secret", "bob")
        admin = {"Authorization": f"Bearer {auth.create_token('root', actor='tests').secret}"}
    finally:
        p.close()
    running = serve(portal_home)
    server = next(running)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            refused = client.delete("/api/users/bob", headers=admin)
            assert refused.status_code == 409 and "bob owns 1 model (bobs-secret)" in refused.text
            done = client.delete("/api/users/bob", params={"reassign_to": "ana"}, headers=admin)
            assert done.json() == {"deleted": "bob", "reassigned_to": "ana", "models": ["bobs-secret"]}
            assert client.post("/api/users", json={"name": "bob", "role": "analyst"}, headers=admin).status_code == 201
            secret = client.post("/api/tokens", json={"user": "bob"}, headers=admin).json()["token"]
            new_bob = {"Authorization": f"Bearer {secret}"}
            assert client.get("/api/models/bobs-secret", headers=new_bob).status_code == 404
            assert client.delete("/api/models/bobs-secret", headers=new_bob).status_code == 404
            assert client.get("/api/models/bobs-secret", headers=admin).json()["owner"] == "ana"
    finally:
        running.close()


def test_the_admin_page_requires_a_new_owner(accounts_home: Path) -> None:
    root = make_user(accounts_home, "root", "admin")
    make_user(accounts_home, "ana", "analyst")
    make_user(accounts_home, "bob", "analyst")
    p = Portal.open(accounts_home)
    try:
        _own(p, "b1", "bob")
    finally:
        p.close()
    at = signed_in_app(root, "app_pages/admin.py")
    at.selectbox(key="admin.edit.user").select("bob")
    at.run()
    at.checkbox(key="admin.delete.sure.bob").check()
    at.run()
    go = next(b for b in at.button if b.label == "Delete user")
    assert go.disabled  # no new owner chosen yet
    at.selectbox(key="admin.delete.heir.bob").select("ana")
    at.run()
    next(b for b in at.button if b.label == "Delete user").click()
    at.run()
    assert_clean(at)
    assert texts(at.success) == ["Deleted bob. Their 1 model(s) now belong to ana."]
    p = Portal.open(accounts_home)
    try:
        assert [u.name for u in Auth(p.registry).list_users()] == ["ana", "root"]
        assert p.get_model("b1").owner == "ana"
    finally:
        p.close()


# -- the prediction log -------------------------------------------------------------------------
def test_a_deleted_models_log_goes_with_it_and_a_new_model_of_that_name_starts_empty(store: Portal) -> None:
    auth, users = _team(store)
    _own(store, "churn", "ana")
    store.as_user(users["ana"], source="api").predict("churn", X)
    store.monitor.flush()
    assert [(r["caller"], r["sample"] is not None) for r in _log_rows(store)] == [("ana", True)]
    store.as_user(users["ana"]).delete("churn")
    assert _log_rows(store) == []  # callers, counts and sampled inputs are gone
    _own(store, "churn", "bob")
    window = mon.TimeRange.last(3600, now=T0 + 1)
    summary = mon.summarize(store.as_user(users["bob"]), "churn", None, window)
    assert (summary.requests, summary.rows, list(summary.callers["caller"])) == (0, 0, [])
    assert mon.logged_versions(store, "churn") == []


def test_deleting_a_version_deletes_its_log_rows_only(store: Portal) -> None:
    first = add_model(store, softmax_classifier(), "m")
    add_model(store, softmax_classifier(seed=2), "m")
    for ref in ("m:1", "m:2", "m:2"):
        store.predict(ref, X)
    store.monitor.flush()
    store.delete("m:1")
    assert [(r["model_id"], r["version"]) for r in _log_rows(store)] == [(first.model_id, 2)] * 2
    assert mon.logged_versions(store, "m") == [2]


def test_queued_records_of_a_deleted_model_are_not_written_to_its_successor(store: Portal) -> None:
    add_model(store, softmax_classifier(), "m")
    store.predict("m", X)
    store.monitor.record("m", 1, caller="old", source="ui", rows=1, latency_s=0.001)  # by name: resolved at write
    store.delete("m")
    add_model(store, softmax_classifier(), "other")
    assert store.monitor.flush() == 0 and store.monitor.discarded == 2
    assert _log_rows(store) == []


def test_the_cli_summary_of_a_reused_name_shows_no_old_callers(portal_home: Path) -> None:
    p = Portal.open(portal_home)
    try:
        auth, users = _team(p)
        _own(p, "churn", "ana")
        p.as_user(users["ana"], source="cli").predict("churn", X)
        p.monitor.flush()
        p.delete("churn")
        _own(p, "churn", "bob")
    finally:
        p.close()
    result = CliRunner().invoke(app, ["monitor", "summary", "churn", "--json"], env={"PORTAL_HOME": str(portal_home)})
    assert result.exit_code == 0, result.output
    assert '"requests": 0' in result.output and '"callers": []' in result.output


# -- the migration from schema 2 ------------------------------------------------------------------
def _schema_2(engine: Any) -> dict[str, Table]:
    """The tables as schema 2 made them: owners and prediction models by name, ids SQLite may reuse."""
    meta = MetaData()
    old = {
        "users": Table("users", meta, Column("id", Integer, primary_key=True),
                       Column("name", String(64), unique=True, index=True), Column("role", String(16)),
                       Column("password_hash", String(256), nullable=True), Column("disabled", Boolean),
                       Column("created_at", DateTime)),
        "models": Table("models", meta, Column("id", Integer, primary_key=True),
                        Column("name", String(128), unique=True, index=True), Column("description", Text),
                        Column("task", String(32)), Column("tags", JSON), Column("owner", String(128)),
                        Column("visibility", String(16)), Column("next_version", Integer),
                        Column("created_at", DateTime), Column("updated_at", DateTime)),
        "predictions": Table("predictions", meta, Column("id", Integer, primary_key=True),
                             Column("ts", DateTime, index=True), Column("model", String(128)),
                             Column("version", Integer), Column("caller", String(128)), Column("source", String(16)),
                             Column("rows", Integer), Column("latency_ms", Float), Column("error", Text),
                             Column("error_kind", String(64)), Column("cache_hit", Boolean),
                             Column("sample", JSON(none_as_null=True)),
                             Index("ix_predictions_model_version_ts", "model", "version", "ts")),
    }
    for name in ("schema_info", "versions", "aliases", "audit", "tokens", "measurements"):
        old[name] = Base.metadata.tables[name].to_metadata(meta)
    meta.create_all(engine)
    return old


def _at(hours: float) -> dt.datetime:
    return dt.datetime(2026, 1, 1) + dt.timedelta(hours=hours)


def _fill_schema_2(engine: Any, t: dict[str, Table]) -> None:
    """Users root, ana and a second bob (the first was deleted at hour 5) and five models."""
    with engine.begin() as conn:
        conn.execute(insert(t["schema_info"]).values(key="schema_version", value="2"))
        for name, role, hour in [("root", "admin", 0), ("ana", "analyst", 0), ("bob", "analyst", 10)]:
            conn.execute(insert(t["users"]).values(name=name, role=role, disabled=False, created_at=_at(hour)))
        ana = conn.execute(select(t["users"].c.id).where(t["users"].c.name == "ana")).scalar_one()
        conn.execute(insert(t["tokens"]).values(user_id=ana, name="", token_hash="h", prefix="mpt_x",
                                                created_at=_at(1)))
        for actor, action, hour in [("root", "user.create", 0), ("root", "user.delete", 5), ("root", "user.create", 10)]:
            conn.execute(insert(t["audit"]).values(ts=_at(hour), actor=actor, action=action, target="bob", detail={}))
        for name, owner, visibility, hours in [("anas", "ana", "private", [1]), ("old-bobs", "bob", "private", [2]),
                                               ("new-bobs", "bob", "private", [11, 12]),
                                               ("ghosts", "carol", "private", [3]), ("demo", "demo", "shared", [3])]:
            model = conn.execute(insert(t["models"]).values(
                name=name, description="", task="other", tags=[], owner=owner, visibility=visibility,
                next_version=len(hours) + 1, created_at=_at(hours[0]), updated_at=_at(hours[0]))).inserted_primary_key[0]
            for number, hour in enumerate(hours, 1):
                version = conn.execute(insert(t["versions"]).values(
                    model_id=model, number=number, blob_sha="0" * 64, size_bytes=1, source_format="onnx", info={},
                    meta={}, method_params={}, created_at=_at(hour), created_by=owner)).inserted_primary_key[0]
                if name == "anas":
                    conn.execute(insert(t["aliases"]).values(model_id=model, name="prod", version_id=version,
                                                             updated_at=_at(hour)))
        for model, version, hour in [("anas", 1, 2), ("new-bobs", 1, 4), ("new-bobs", 1, 12), ("new-bobs", 2, 13),
                                     ("deleted", 1, 3), ("anas", 7, 3)]:
            conn.execute(insert(t["predictions"]).values(
                ts=_at(hour), model=model, version=version, caller="c", source="api", rows=1, latency_ms=1.0,
                sample={"columns": ["a"], "rows": [[1]]}))


def _counts(engine: Any) -> dict[str, int]:
    with engine.connect() as conn:
        return {name: conn.execute(select(func.count()).select_from(text(name))).scalar_one()
                for name in ("users", "tokens", "audit", "models", "versions", "aliases", "predictions")}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_schema_2_store_is_migrated_in_place(portal_home: Path, backend: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else f"sqlite:///{portal_home / 'portal.db'}"
    engine = create_engine(url)
    _fill_schema_2(engine, _schema_2(engine))
    before = _counts(engine)
    engine.dispose()
    p = Portal.open(portal_home, db_url=url, check=False)
    try:
        after = _counts(p.registry.engine)
        # every user, token, audit event, model, version and alias is kept; of the log, the rows of live versions
        assert after == {**before, "predictions": 3}
        owners = {m.name: m.owner for m in p.list_models()}
        assert owners == {"anas": "ana", "old-bobs": "", "new-bobs": "bob", "ghosts": "", "demo": ""}
        auth = Auth(p.registry)
        bob, ana = auth.get_user("bob"), auth.get_user("ana")
        assert [m.name for m in p.as_user(bob).list_models()] == ["demo", "new-bobs"]  # not the first bob's
        assert [m.name for m in p.as_user(ana).list_models()] == ["anas", "demo"]
        assert len(p.as_user(auth.get_user("root")).list_models()) == 5
        window = mon.TimeRange(_at(0), _at(24))
        assert (mon.summarize(p, "new-bobs", None, window).requests, mon.summarize(p, "anas", None, window).requests) == (2, 1)
        assert p.get("anas@prod").ref == "anas:1"
        with p.registry.engine.connect() as conn:
            assert conn.execute(text("SELECT value FROM schema_info WHERE key = 'schema_version'")).scalar() == "3"
            if backend == "sqlite":
                sql = dict(conn.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'table'")).all())
                assert "AUTOINCREMENT" in sql["users"] and "AUTOINCREMENT" in sql["models"]
                assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        with pytest.raises(ConflictError, match="bob owns 1 model"):
            auth.delete_user("bob", actor="root")
        assert auth.add_user("bob2", "viewer", actor="root").id > bob.id
    finally:
        p.close()


def test_every_door_says_a_private_name_of_someone_else_is_taken(store: Portal, tmp_path: Path) -> None:
    from factories import write_onnx_mlp

    _, users = _team(store)
    _own(store, "bobs-secret", "bob")
    upload = write_onnx_mlp(tmp_path / "m.onnx")
    as_ana = store.as_user(users["ana"])
    with pytest.raises(PermissionDeniedError, match="^the name 'bobs-secret' is taken; pick another name$"):
        as_ana.register(upload, name="bobs-secret")
    with pytest.raises(PermissionDeniedError, match="^the name 'bobs-secret' is taken"):
        as_ana.register(as_ana.prepare(upload), name="bobs-secret")  # the staged path checks again
    assert [v.ref for v in store.get_model("bobs-secret").versions] == ["bobs-secret:1"]
    viewer = Auth(store.registry).add_user("vic", "viewer", actor="tests")
    with pytest.raises(PermissionDeniedError) as refused:  # a viewer may not upload: learns nothing of names
        store.as_user(viewer).register(upload, name="bobs-secret")
    assert "taken" not in str(refused.value)
