"""The blob filesystems: the protocol on both backends, PORTAL_BLOB_URL, and a whole portal on memory://."""

from __future__ import annotations

import uuid

import fsspec
import numpy as np
import onnxruntime as ort
import pytest
from tiny import softmax_classifier

from portal import NotFoundError, Portal
from portal.storage.blobfs import BlobFS, FsspecBlobFS, LocalBlobFS, from_env, from_url
from portal.storage.crypto import MAGIC, generate_key

X = {"x": np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)}


@pytest.fixture
def memory_url():
    root = f"portal-test-{uuid.uuid4().hex}"
    yield f"memory://{root}"
    fs = fsspec.filesystem("memory")
    if fs.exists(f"/{root}"):
        fs.rm(f"/{root}", recursive=True)


@pytest.fixture(params=["local", "memory"])
def fs(request, tmp_path, memory_url) -> BlobFS:
    return LocalBlobFS(tmp_path / "blobs") if request.param == "local" else from_url(memory_url)


def test_protocol_basics(fs, tmp_path):
    assert isinstance(fs, BlobFS)
    fs.pipe("ab/one", b"1")
    local = tmp_path / "staged"
    local.write_bytes(b"22")
    fs.put_file(local, "cd/two", move=True)
    assert not local.exists()
    assert fs.find() == ["ab/one", "cd/two"] and fs.ls("ab") == ["ab/one"]
    assert fs.cat("cd/two") == b"22" and fs.size("cd/two") == 2 and fs.info("ab/one")["size"] == 1
    with fs.open("ab/one") as fh:
        assert fh.read() == b"1"
    fs.mv("ab/one", "ef/one")
    assert not fs.exists("ab/one") and fs.isfile("ef/one")
    fs.rm("ef/one")
    with pytest.raises(FileNotFoundError):
        fs.rm("ef/one")
    assert fs.find() == ["cd/two"]


def test_blob_url_picks_the_backend(tmp_path, memory_url):
    assert isinstance(from_env(tmp_path, {}), LocalBlobFS)
    chosen = from_env(tmp_path, {"PORTAL_BLOB_URL": memory_url})
    assert isinstance(chosen, FsspecBlobFS) and chosen.local_path("ab/x") is None
    shared = from_env(tmp_path, {"PORTAL_BLOB_URL": f"file://{tmp_path / 'shared'}"})
    assert shared.local_path("ab/x") == str(tmp_path / "shared" / "ab" / "x")
    with pytest.raises(ValueError, match="PORTAL_BLOB_URL='nosuchproto://x' cannot be opened"):
        from_url("nosuchproto://x")


def _expected() -> np.ndarray:
    session = ort.InferenceSession(softmax_classifier(seed=3).SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, X)[0]


def test_portal_register_predict_delete_on_memory(tmp_path, memory_url, monkeypatch):
    monkeypatch.setenv("PORTAL_BLOB_URL", memory_url)
    portal = Portal.open(tmp_path / "home")
    version = portal.register(softmax_classifier(seed=3).SerializeToString(), "m", filename="m.onnx")
    mem = fsspec.filesystem("memory")
    root = memory_url.removeprefix("memory://")
    assert mem.find(f"/{root}") == [f"/{root}/{version.blob_sha[:2]}/{version.blob_sha}"]
    assert not (tmp_path / "home" / "blobs" / "sha256" / version.blob_sha[:2]).exists()
    np.testing.assert_allclose(portal.predict("m", X).outputs["probs"], _expected(), rtol=1e-6)
    assert portal.fsck(verify=True, grace_seconds=0).healthy
    portal.delete("m:1")
    assert mem.find(f"/{root}") == [] and not portal.store.exists(version.blob_sha)
    with pytest.raises(NotFoundError):
        portal.predict("m", X)
    portal.close()


def test_encryption_on_memory(tmp_path, memory_url, monkeypatch):
    monkeypatch.setenv("PORTAL_BLOB_URL", memory_url)
    key = generate_key()
    portal = Portal.open(tmp_path / "home", encryption_key=key)
    version = portal.register(softmax_classifier(seed=3).SerializeToString(), "m", filename="m.onnx")
    raw = portal.store.fs.cat(f"{version.blob_sha[:2]}/{version.blob_sha}")
    plain = softmax_classifier(seed=3).SerializeToString()
    assert raw.startswith(MAGIC) and plain[-64:] not in raw
    assert portal.model_bytes("m") == plain
    np.testing.assert_allclose(portal.predict("m", X).outputs["probs"], _expected(), rtol=1e-6)
    assert portal.rotate_key(None) == 1 and portal.store.fs.cat(f"{version.blob_sha[:2]}/{version.blob_sha}") == plain
    portal.close()


def test_fsck_and_backup_work_on_memory(tmp_path, memory_url):
    from portal.storage.backup import backup, restore

    portal = Portal.open(tmp_path / "home", blob_url=memory_url)  # the Settings field, not the environment
    assert isinstance(portal.store.fs, FsspecBlobFS)
    version = portal.register(softmax_classifier(seed=3).SerializeToString(), "m", filename="m.onnx")
    orphan = portal.store.put_bytes(b"left behind by a crash").sha256
    assert portal.store.modified(orphan) is not None
    report = portal.fsck(grace_seconds=0)
    assert report.orphans == [orphan] and not portal.store.exists(orphan) and portal.store.exists(version.blob_sha)
    info = backup(portal, tmp_path / "snap.tar")
    assert info.blobs == 1
    portal.close()
    restore(tmp_path / "snap.tar", tmp_path / "restored")
    restored = Portal.open(tmp_path / "restored")  # a plain local store
    np.testing.assert_allclose(restored.predict("m", X).outputs["probs"], _expected(), rtol=1e-6)
    restored.close()
