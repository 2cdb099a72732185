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
from portal.storage.backup import backup, restore


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


# -- restore trusts nothing in the archive ----------------------------------------------------
def _members(path):
    with tarfile.open(path) as tar:
        return [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]


def _forge(dest, members, *, extra=()):
    """Write ``members`` (plus ``extra``) to ``dest`` with a manifest whose checksums match them,
    as anyone editing an archive can: the manifest proves nothing."""
    import hashlib
    import io
    import json

    members = [(m, d) for m, d in members if m.name != "manifest.json"] + list(extra)
    files = {m.name: hashlib.sha256(d).hexdigest() for m, d in members if d is not None}
    manifest = {"format": "model-portal-backup/1", "files": files}
    with tarfile.open(dest, "w") as tar:
        data = json.dumps(manifest).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        for member, data in members:
            if data is not None:
                member.size = len(data)
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
    return dest


@pytest.fixture
def good_backup(portal, tmp_path):
    add_model(portal, softmax_classifier(), "a")
    return backup(portal, tmp_path / "good.tar").path


def _file(name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _special(name, kind, linkname=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info, None


def _blob_name(members):
    return next(m.name for m, _ in members if m.name.startswith("blobs/"))


def _nothing_restored(tmp_path, home):
    """Neither the home nor the parent restore made for it exist; nothing landed outside."""
    assert not home.exists() and not home.parent.exists()
    assert not (tmp_path / "X").exists() and not (tmp_path / "outside").exists()


def test_member_outside_the_home_is_refused_and_not_written(good_backup, tmp_path):
    home = tmp_path / "r" / "new"
    evil = _forge(tmp_path / "evil.tar", _members(good_backup), extra=[_file("../../X", b"owned")])
    with pytest.raises(InvalidInputError, match=r"unexpected member '../../X' \(a regular file\)"):
        restore(evil, home)
    _nothing_restored(tmp_path, home)


def test_cli_restore_of_a_member_outside_the_home_exits_1(good_backup, tmp_path):
    home = tmp_path / "r" / "new"
    evil = _forge(tmp_path / "evil.tar", _members(good_backup), extra=[_file("../../X", b"owned")])
    out = subprocess.run([sys.executable, "-m", "portal.cli", "restore", str(evil), "--home", str(home)],
                         env=dict(os.environ, PORTAL_HOME=str(tmp_path / "unused")), capture_output=True, text=True)
    assert out.returncode == 1
    assert out.stderr.startswith("error: unexpected member '../../X'") and "Traceback" not in out.stderr
    _nothing_restored(tmp_path, home)


@pytest.mark.parametrize("name", ["/abs/portal.db", "blobs/../portal.db", "blobs/sha256/ab/x", "notes.txt",
                                  "blobs/" + "A" * 64, "./portal.db"])
def test_any_other_member_name_is_refused(good_backup, tmp_path, name):
    home = tmp_path / "r" / "new"
    evil = _forge(tmp_path / "evil.tar", _members(good_backup), extra=[_file(name, b"x")])
    with pytest.raises(InvalidInputError, match="unexpected member"):
        restore(evil, home)
    _nothing_restored(tmp_path, home)


@pytest.mark.parametrize("kind,what", [(tarfile.SYMTYPE, "a link to"), (tarfile.LNKTYPE, "a link to"),
                                       (tarfile.CHRTYPE, "a device"), (tarfile.FIFOTYPE, "a device")])
def test_links_and_special_files_are_refused(good_backup, tmp_path, kind, what):
    home = tmp_path / "r" / "new"
    members = [(m, d) for m, d in _members(good_backup) if m.name != "portal.db"]
    evil = _forge(tmp_path / "evil.tar", members, extra=[_special("portal.db", kind, str(tmp_path / "outside"))])
    with pytest.raises(InvalidInputError, match=f"unexpected member 'portal.db' \\({what}"):
        restore(evil, home)
    _nothing_restored(tmp_path, home)


def test_directory_member_is_refused(good_backup, tmp_path):
    evil = _forge(tmp_path / "evil.tar", _members(good_backup), extra=[_special("blobs", tarfile.DIRTYPE)])
    with pytest.raises(InvalidInputError, match=r"unexpected member 'blobs' \(a directory\)"):
        restore(evil, tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_blob_whose_content_does_not_match_its_name_is_refused(good_backup, tmp_path):
    members = _members(good_backup)
    name = _blob_name(members)
    other = softmax_classifier(seed=8).SerializeToString()  # a valid model, but not the one named
    swapped = [(m, other if m.name == name else d) for m, d in members]
    evil = _forge(tmp_path / "evil.tar", swapped)  # manifest checksums recomputed: they still match
    with pytest.raises(InvalidInputError, match=f"{name} in the backup is corrupted: its content does not match"):
        restore(evil, tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_duplicate_member_is_refused(good_backup, tmp_path):
    members = _members(good_backup)
    name = _blob_name(members)
    evil = _forge(tmp_path / "evil.tar", members, extra=[_file(name, b"second copy wins in tar")])
    with pytest.raises(InvalidInputError, match="appears twice"):
        restore(evil, tmp_path / "new")


def test_registry_referencing_an_absent_blob_is_refused(good_backup, tmp_path):
    members = [(m, d) for m, d in _members(good_backup) if not m.name.startswith("blobs/")]
    evil = _forge(tmp_path / "evil.tar", members)
    with pytest.raises(InvalidInputError, match="portal.db references 1 blob"):
        restore(evil, tmp_path / "new")


def test_not_a_tar_is_a_clear_error(tmp_path):
    (tmp_path / "junk.tar").write_bytes(b"not a tar archive at all" * 100)
    with pytest.raises(InvalidInputError, match="not a readable backup archive"):
        restore(tmp_path / "junk.tar", tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_failed_restore_into_an_existing_empty_home_leaves_it_empty(good_backup, tmp_path):
    home = tmp_path / "empty"
    home.mkdir()
    evil = _forge(tmp_path / "evil.tar", _members(good_backup), extra=[_file("../X", b"owned")])
    with pytest.raises(InvalidInputError):
        restore(evil, home)
    assert list(home.iterdir()) == [] and not (tmp_path / "X").exists()


def test_good_backup_restores_into_an_existing_empty_home(good_backup, tmp_path):
    home = tmp_path / "empty"
    home.mkdir()
    info = restore(good_backup, home)
    assert (info.models, info.versions, info.blobs) == (1, 1, 1)
    restored = Portal.open(home)
    assert restored.predict("a", {"x": np.ones((1, 4), np.float32)}).rows == 1
    assert restored.fsck(verify=True, grace_seconds=0).healthy
    restored.close()


def test_encrypted_backup_is_checked_with_the_key(portal_home, tmp_path):
    from portal.storage.crypto import BlobCipher, generate_key

    key = generate_key()
    p = Portal.open(portal_home, encryption_key=key)
    add_model(p, softmax_classifier(), "a")
    backup(p, tmp_path / "enc.tar")
    p.close()
    with pytest.raises(InvalidInputError, match="is encrypted; restore needs the store's key"):
        restore(tmp_path / "enc.tar", tmp_path / "nokey")
    assert not (tmp_path / "nokey").exists()
    with pytest.raises(InvalidInputError, match="corrupted: its content does not match"):
        restore(tmp_path / "enc.tar", tmp_path / "wrongkey", cipher=BlobCipher(generate_key()))
    restore(tmp_path / "enc.tar", tmp_path / "new", cipher=BlobCipher(key))
    assert Portal.open(tmp_path / "new", encryption_key=key).predict(
        "a", {"x": np.ones((1, 4), np.float32)}).rows == 1
