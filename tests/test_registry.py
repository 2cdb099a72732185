"""Registry: versions, aliases, metadata, deletes, audit, schema."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
from sqlalchemy import text
from tiny import add_model, linear_regressor, softmax_classifier

from portal import ConflictError, InvalidNameError, NotFoundError, Portal, PortalError
from portal.storage.db import SCHEMA_VERSION
from portal.storage.refs import ModelRef


@pytest.fixture(params=["sqlite", "postgresql"])
def portal(request, portal_home):
    """The registry tests run against both SQLite and a real PostgreSQL server."""
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    p = Portal.open(portal_home, db_url=url)
    yield p
    p.close()


def test_versions_are_numbered_per_model(portal):
    a1 = add_model(portal, softmax_classifier(), "a")
    a2 = add_model(portal, softmax_classifier(seed=5), "a")
    b1 = add_model(portal, linear_regressor(), "b")
    assert (a1.ref, a2.ref, b1.ref) == ("a:1", "a:2", "b:1")
    assert portal.get("a").version == 2
    assert portal.get("a:1").blob_sha == a1.blob_sha


def test_version_numbers_are_never_reused_after_delete(portal):
    add_model(portal, softmax_classifier(), "a")
    add_model(portal, softmax_classifier(seed=5), "a")
    portal.delete("a:2")
    assert add_model(portal, softmax_classifier(seed=6), "a").version == 3


def test_alias_moves_and_resolves(portal):
    add_model(portal, softmax_classifier(), "a")
    add_model(portal, softmax_classifier(seed=5), "a")
    portal.set_alias("a:1", "production")
    assert portal.get("a@production").version == 1
    portal.set_alias("a:2", "production")  # promote
    assert portal.get("a@production").version == 2
    portal.set_alias("a:1", "production")  # roll back
    assert portal.get("a@production").version == 1
    assert portal.get_model("a").aliases == {"production": 1}


def test_unknown_references_raise_not_found(portal):
    add_model(portal, softmax_classifier(), "a")
    for ref, fragment in [("nope", "no model named 'nope'"), ("a:9", "has no version 9"), ("a@prod", "no alias 'prod'")]:
        with pytest.raises(NotFoundError, match=fragment):
            portal.get(ref)


@pytest.mark.parametrize("bad", ["../x", "a/b", "a\nb", "", ".hidden", "a..b", "x" * 200, "tab\tname", "a:0", "a:x", "a@"])
def test_malformed_references_are_refused(bad):
    with pytest.raises(InvalidNameError):
        ModelRef.parse(bad)


def test_reference_forms_parse():
    assert ModelRef.parse("m") == ModelRef("m")
    assert ModelRef.parse("m:3") == ModelRef("m", version=3)
    assert ModelRef.parse("m@prod") == ModelRef("m", alias="prod")
    assert ModelRef.parse("m@latest") == ModelRef("m")
    assert str(ModelRef.parse("m@prod")) == "m@prod"


def test_delete_refused_while_alias_points_at_version(portal):
    add_model(portal, softmax_classifier(), "a")
    portal.set_alias("a:1", "production")
    with pytest.raises(ConflictError, match="alias @production"):
        portal.delete("a:1")
    with pytest.raises(ConflictError):
        portal.delete("a")
    assert portal.get("a:1")
    portal.remove_alias("a", "production")
    assert portal.delete("a:1") == ["a:1"]
    with pytest.raises(NotFoundError):
        portal.get_model("a")


def test_delete_removes_unreferenced_blob_but_keeps_shared_one(portal):
    model = softmax_classifier()
    v1 = add_model(portal, model, "a")
    add_model(portal, model, "b")  # same bytes: one blob
    portal.delete("a")
    assert portal.store.exists(v1.blob_sha)
    portal.delete("b")
    assert not portal.store.exists(v1.blob_sha)


def test_variant_parent_blocks_delete_unless_forced(portal):
    parent = add_model(portal, softmax_classifier(), "a")
    child = portal.registry.add_version(
        "a", blob_sha=parent.blob_sha, size_bytes=parent.size_bytes, source_format="onnx",
        info=parent.info, parent="a:1", method="int8-dynamic",
    )
    assert child.parent == "a:1" and child.method == "int8-dynamic"
    assert portal.registry.dependents("a:1") == ["a:2"]
    with pytest.raises(ConflictError, match="variants depend on it .a:2"):
        portal.delete("a:1")
    portal.delete("a:1", force=True)
    orphan = portal.get("a:2")
    assert orphan.parent is None and orphan.meta["parent_deleted"] is True


def test_metadata_edits_are_audited(portal):
    add_model(portal, softmax_classifier(), "a")
    portal.update_model("a", description="# Card", tags=["x", "y", "x"], task="classification")
    summary = portal.get_model("a")
    assert (summary.description, summary.tags, summary.task) == ("# Card", ("x", "y"), "classification")
    events = portal.registry.audit_log(target="a")
    assert [e.action for e in events][:2] == ["model.update", "version.create"]
    assert events[0].detail == {"fields": ["description", "tags", "task"]}


def test_invalid_task_is_refused(portal):
    add_model(portal, softmax_classifier(), "a")
    with pytest.raises(PortalError, match="expected one of classification, regression, other"):
        portal.update_model("a", task="clustering")


def test_audit_filters_are_literal(portal):
    add_model(portal, softmax_classifier(), "a")
    assert portal.registry.audit_log(actor="' OR 1=1 --") == []
    assert portal.registry.audit_log(target="%") == []
    assert len(portal.registry.audit_log(target="a")) == 1


@pytest.mark.parametrize("statement", ["UPDATE audit SET actor = 'mallory'", "DELETE FROM audit"])
def test_audit_table_is_append_only(portal, statement):
    from sqlalchemy.exc import DatabaseError

    add_model(portal, softmax_classifier(), "a")
    with portal.registry.engine.begin() as conn, pytest.raises(DatabaseError, match="append-only"):
        conn.execute(text(statement))
    assert len(portal.registry.audit_log()) == 1


def test_sqlite_store_uses_wal_and_busy_timeout(portal_home):
    portal = Portal.open(portal_home)
    with portal.registry.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 30000


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_reopening_keeps_everything(portal_home, backend, request):
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    p = Portal.open(portal_home, db_url=url)
    add_model(p, softmax_classifier(), "a")
    p.set_alias("a:1", "prod")
    p.close()
    again = Portal.open(portal_home, db_url=url)
    assert again.get("a@prod").ref == "a:1"
    with again.registry.engine.connect() as conn:
        assert conn.execute(text("SELECT value FROM schema_info WHERE key='schema_version'")).scalar() == str(SCHEMA_VERSION)


def test_store_from_a_newer_portal_is_refused(portal_home):
    Portal.open(portal_home).close()
    with sqlite3.connect(portal_home / "portal.db") as conn:
        conn.execute("UPDATE schema_info SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(PortalError, match="newer than this portal"):
        Portal.open(portal_home)


def test_concurrent_writers_from_threads_all_commit(portal):
    from concurrent.futures import ThreadPoolExecutor

    model = softmax_classifier()
    with ThreadPoolExecutor(8) as pool:
        versions = list(pool.map(lambda i: add_model(portal, model, "busy").version, range(24)))
    assert sorted(versions) == list(range(1, 25))


def test_older_store_is_migrated_in_place_without_losing_rows(portal_home, monkeypatch):
    import portal.storage.db as db

    with monkeypatch.context() as patch:  # a store written by a portal of schema 1
        patch.setattr(db, "SCHEMA_VERSION", 1)
        old = Portal.open(portal_home)
        add_model(old, softmax_classifier(), "a")
        old.set_alias("a:1", "prod")
        old.close()
    with sqlite3.connect(portal_home / "portal.db") as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert "predictions" not in tables and "models" in tables

    upgraded = Portal.open(portal_home)  # schema 2 adds the prediction log, 3 keys it by model id
    assert upgraded.get("a@prod").ref == "a:1"
    upgraded.predict("a@prod", np.zeros((2, 4), np.float32))
    upgraded.monitor.flush()
    with upgraded.registry.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM predictions")).scalar() == 1
        assert conn.execute(text("SELECT value FROM schema_info WHERE key='schema_version'")).scalar() == str(
            SCHEMA_VERSION)
    assert [e.action for e in upgraded.registry.audit_log()] == ["alias.set", "version.create"]

    def add_column(conn):
        conn.execute(text("ALTER TABLE models ADD COLUMN license VARCHAR(64) DEFAULT 'unknown'"))

    upgraded.close()
    monkeypatch.setattr(db, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    monkeypatch.setitem(db.MIGRATIONS, SCHEMA_VERSION + 1, add_column)
    again = Portal.open(portal_home)
    with again.registry.engine.connect() as conn:
        assert conn.execute(text("SELECT license FROM models")).scalar() == "unknown"
        assert conn.execute(text("SELECT count(*) FROM predictions")).scalar() == 1


def test_list_models_matches_get_model(portal):
    add_model(portal, softmax_classifier(), "a")
    parent = add_model(portal, softmax_classifier(seed=3), "a")
    portal.registry.add_version("b", blob_sha=parent.blob_sha, size_bytes=1, source_format="onnx",
                                info=parent.info, parent="a:2", method="fp16")
    portal.set_alias("a:1", "prod")
    listed = {m.name: m for m in portal.list_models()}
    for name in ("a", "b"):
        assert listed[name] == portal.get_model(name)
    assert listed["b"].versions[0].parent == "a:2" and listed["a"].next_version == 3
