"""Blob store: atomic, deduplicated, size-limited writes, on the local disk and on an fsspec filesystem."""

from __future__ import annotations

import hashlib
import io
import uuid

import fsspec
import pytest
from tiny import files_under

from portal import NotFoundError, PayloadTooLargeError
from portal.storage.blobfs import FsspecBlobFS, LocalBlobFS
from portal.storage.store import BlobStore, receive_stream


@pytest.fixture(params=["local", "memory"])
def store(request, tmp_path):
    """A store on ``tmp_path`` whose blobs live on the local disk or in fsspec's memory filesystem."""
    if request.param == "local":
        yield BlobStore(tmp_path)
        return
    root = f"/portal-test-{uuid.uuid4().hex}"
    fs = fsspec.filesystem("memory")
    yield BlobStore(tmp_path, fs=FsspecBlobFS(fs, root))
    fs.rm(root, recursive=True)


def _raw(store: BlobStore, sha: str) -> bytes:
    return store.fs.cat(f"{sha[:2]}/{sha}")


def _parts(store: BlobStore) -> list[str]:
    return [key for key in store.fs.find() if key.endswith(".part")]


def test_put_is_content_addressed_and_deduplicated(store, tmp_path):
    a = store.put_bytes(b"hello")
    b = store.put_bytes(b"hello")
    assert a == b and a.sha256 == hashlib.sha256(b"hello").hexdigest() and a.size == 5
    assert _raw(store, a.sha256) == b"hello" and store.read_bytes(a.sha256) == b"hello"
    assert list(store.iter_blobs()) == [a.sha256]
    assert files_under(tmp_path / "tmp") == [] and _parts(store) == []


def test_stream_over_limit_is_refused_and_leaves_nothing(store, tmp_path):
    with pytest.raises(PayloadTooLargeError, match="larger than the limit"):
        store.put_stream(io.BytesIO(b"x" * 5000), limit=4096)
    assert files_under(tmp_path) == [] and store.fs.find() == []


def test_receive_stream_counts_before_holding_everything(tmp_path):
    class Endless(io.RawIOBase):
        served = 0

        def read(self, n=-1):
            self.served += 1 << 20
            return b"\0" * (1 << 20)

    stream = Endless()
    with pytest.raises(PayloadTooLargeError):
        receive_stream(stream, tmp_path / "x", limit=3 << 20)
    assert stream.served <= 4 << 20
    assert not (tmp_path / "x").exists()


def test_missing_blob_is_not_found(store):
    with pytest.raises(NotFoundError, match="missing from the store"):
        store.open("0" * 64)
    with pytest.raises(NotFoundError, match="not a sha256 digest"):
        store.path("../../etc/passwd")
    assert not store.exists("0" * 64) and store.delete("0" * 64) is False


def test_staging_dir_is_removed_even_on_error(store, tmp_path):
    with pytest.raises(RuntimeError), store.staging() as work:
        (work / "f").write_text("x")
        raise RuntimeError
    assert files_under(tmp_path) == []


def test_verify_detects_tampering(store):
    info = store.put_bytes(b"model")
    assert store.verify(info.sha256)
    store.fs.pipe(f"{info.sha256[:2]}/{info.sha256}", b"evil!")
    assert not store.verify(info.sha256)


def test_adopt_keeps_the_source_and_delete_removes_the_blob(store, tmp_path):
    src = store.tmp_root / "upload.onnx"
    src.write_bytes(b"weights")
    info = store.adopt(src)
    assert src.read_bytes() == b"weights" and store.read_bytes(info.sha256) == b"weights"
    assert store.delete(info.sha256) and not store.exists(info.sha256)
    store.ensure(src, info)  # a concurrent collector removed it: put it back
    assert store.read_bytes(info.sha256) == b"weights" and list(store.iter_blobs()) == [info.sha256]


def test_local_path_only_on_a_local_backend(store):
    info = store.put_bytes(b"onnx bytes")
    path = store.local_path(info.sha256)
    if isinstance(store.fs, LocalBlobFS):
        assert path is not None and path.read_bytes() == b"onnx bytes"
    else:
        assert path is None and not store.blob_root.exists()
