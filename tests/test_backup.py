"""Backup while running and restore into an empty home, verified by hashes."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import threading

import numpy as np
import pandas as pd
import pytest
from tiny import add_model, softmax_classifier

from portal import InvalidInputError, Portal
from portal.backup import backup, restore


def _state(p: Portal):
    models = {m.name: ([v.blob_sha for v in m.versions], m.aliases, m.description) for m in p.list_models()}
    audit = [(e.actor, e.action, e.target) for e in p.registry.audit_log() if e.action != "store.backup"]
    return models, audit


def test_backup_and_restore_give_back_everything(portal, tmp_path):
    ref = pd.DataFrame(np.ones((3, 4)), columns=list("abcd"))
    add_model(portal, softmax_classifier(), "a", reference=ref)
    add_model(portal, softmax_classifier(seed=3), "a")
    add_model(portal, softmax_classifier(seed=4), "b")
    portal.set_alias("a:1", "prod")
    portal.update_model("a", description="# A")
    info = backup(portal, tmp_path / "b.tar")
    assert info.blobs == 4 and info.versions == 3
    restored = restore(tmp_path / "b.tar", tmp_path / "new")
    again = Portal.open(tmp_path / "new")
    assert _state(again) == _state(portal)
    assert again.fsck(verify=True, grace_seconds=0).healthy
    pd.testing.assert_frame_equal(again.reference_frame("a:1"), ref)
    assert again.predict("a@prod", {"x": np.ones((1, 4), np.float32)}).rows == 1
    assert restored.blobs == 4


def test_backup_while_writers_run_is_consistent(portal, tmp_path):
    add_model(portal, softmax_classifier(), "busy")
    stop = threading.Event()

    def write():
        i = 0
        while not stop.is_set():
            i += 1
            add_model(portal, softmax_classifier(seed=i), "busy")
            versions = portal.get_model("busy").versions
            if len(versions) > 2:
                portal.delete(versions[-1].ref)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        for n in range(3):
            backup(portal, tmp_path / f"b{n}.tar")
    finally:
        stop.set()
        writer.join()
    for n in range(3):
        home = tmp_path / f"r{n}"
        restore(tmp_path / f"b{n}.tar", home)
        assert Portal.open(home).fsck(verify=True, grace_seconds=0).healthy


def test_restore_refuses_non_empty_home_and_tampered_backup(portal, tmp_path):
    add_model(portal, softmax_classifier(), "a")
    backup(portal, tmp_path / "b.tar")
    with pytest.raises(InvalidInputError, match="not empty"):
        restore(tmp_path / "b.tar", portal.home)
    with tarfile.open(tmp_path / "b.tar") as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(tmp_path / "evil.tar", "w") as tar:
        for member, data in members:
            if member.name.startswith("blobs/"):
                data = b"X" + data[1:]
            import io

            tar.addfile(member, io.BytesIO(data))
    with pytest.raises(InvalidInputError, match="corrupted"):
        restore(tmp_path / "evil.tar", tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_restore_refuses_unexpected_members(tmp_path):
    import io
    import json

    with tarfile.open(tmp_path / "evil.tar", "w") as tar:
        data = json.dumps({"format": "model-portal-backup/1", "files": {"portal.db": "0"}}).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("../escape")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(InvalidInputError, match="unexpected member"):
        restore(tmp_path / "evil.tar", tmp_path / "new")
    assert not (tmp_path / "escape").exists()


def test_cli_backup_and_restore(portal, tmp_path):
    add_model(portal, softmax_classifier(), "a")
    env = dict(os.environ, PORTAL_HOME=str(portal.home))
    out = subprocess.run([sys.executable, "-m", "portal.cli", "backup", str(tmp_path / "b.tar")], env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0 and "1 models, 1 versions" in out.stdout
    out = subprocess.run([sys.executable, "-m", "portal.cli", "restore", str(tmp_path / "b.tar"), "--home",
                          str(tmp_path / "n")], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert Portal.open(tmp_path / "n").get("a").version == 1
