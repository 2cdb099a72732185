"""fsck: orphans and stale staging files are collected, referenced blobs never."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from tiny import add_model, softmax_classifier

from portal import Portal


def _age(path, seconds):
    old = time.time() - seconds
    os.utime(path, (old, old))


def test_orphans_older_than_grace_are_collected(portal):
    kept = add_model(portal, softmax_classifier(), "a")
    orphan = portal.store.put_bytes(b"debris of a crashed upload")
    fresh = portal.store.put_bytes(b"an upload another process is finishing")
    _age(portal.store.path(orphan.sha256), 3600)
    _age(portal.store.path(kept.blob_sha), 3600)
    report = portal.fsck()
    assert report.orphans == [orphan.sha256] and report.healthy
    assert not portal.store.exists(orphan.sha256)
    assert portal.store.exists(fresh.sha256) and portal.store.exists(kept.blob_sha)


def test_stale_staging_is_collected_and_fresh_kept(portal):
    stale = portal.store.make_staging_dir("stage")
    (stale / "half.onnx").write_bytes(b"x")
    _age(stale, 3600)
    part = portal.store.tmp_root / "blob-1.part"
    part.write_bytes(b"y")
    _age(part, 3600)
    fresh = portal.store.make_staging_dir("upload")
    report = portal.fsck()
    assert sorted(report.stale_tmp) == sorted([stale.name, "blob-1.part"])
    assert not stale.exists() and not part.exists() and fresh.exists()


def test_missing_and_corrupted_blobs_are_reported_never_deleted(portal):
    a = add_model(portal, softmax_classifier(), "a")
    b = add_model(portal, softmax_classifier(seed=9), "b")
    portal.store.path(a.blob_sha).unlink()
    portal.store.path(b.blob_sha).write_bytes(b"tampered")
    report = portal.fsck(verify=True, grace_seconds=0)
    assert report.missing == [a.blob_sha] and report.corrupted == [b.blob_sha]
    assert not report.healthy and portal.store.path(b.blob_sha).exists()


def test_open_runs_fsck(portal_home):
    p = Portal.open(portal_home)
    orphan = p.store.put_bytes(b"debris")
    _age(p.store.path(orphan.sha256), 3600)
    p.close()
    Portal.open(portal_home).close()
    assert not (portal_home / "blobs" / "sha256" / orphan.sha256[:2] / orphan.sha256).exists()


def test_cli_fsck_reports_and_exits_2_when_unhealthy(portal):
    a = add_model(portal, softmax_classifier(), "a")
    env = dict(os.environ, PORTAL_HOME=str(portal.home))
    ok = subprocess.run([sys.executable, "-m", "portal.cli", "fsck"], env=env, capture_output=True, text=True)
    assert ok.returncode == 0 and "1 blobs, 1 referenced" in ok.stdout
    portal.store.path(a.blob_sha).unlink()
    bad = subprocess.run([sys.executable, "-m", "portal.cli", "fsck", "--json"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and a.blob_sha in bad.stdout
