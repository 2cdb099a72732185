"""Blob store: atomic, deduplicated, size-limited writes."""

from __future__ import annotations

import hashlib
import io

import pytest
from tiny import files_under

from portal import NotFoundError, PayloadTooLargeError
from portal.store import BlobStore, receive_stream


def test_put_is_content_addressed_and_deduplicated(tmp_path):
    store = BlobStore(tmp_path)
    a = store.put_bytes(b"hello")
    b = store.put_bytes(b"hello")
    assert a == b and a.sha256 == hashlib.sha256(b"hello").hexdigest() and a.size == 5
    assert store.path(a.sha256).read_bytes() == b"hello"
    assert list(store.iter_blobs()) == [a.sha256]
    assert files_under(tmp_path / "tmp") == []


def test_stream_over_limit_is_refused_and_leaves_nothing(tmp_path):
    store = BlobStore(tmp_path)
    with pytest.raises(PayloadTooLargeError, match="larger than the limit"):
        store.put_stream(io.BytesIO(b"x" * 5000), limit=4096)
    assert files_under(tmp_path) == []


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


def test_missing_blob_is_not_found(tmp_path):
    store = BlobStore(tmp_path)
    with pytest.raises(NotFoundError):
        store.open("0" * 64)
    with pytest.raises(NotFoundError):
        store.path("../../etc/passwd")


def test_staging_dir_is_removed_even_on_error(tmp_path):
    store = BlobStore(tmp_path)
    with pytest.raises(RuntimeError), store.staging() as work:
        (work / "f").write_text("x")
        raise RuntimeError
    assert files_under(tmp_path) == []


def test_verify_detects_tampering(tmp_path):
    store = BlobStore(tmp_path)
    info = store.put_bytes(b"model")
    assert store.verify(info.sha256)
    store.path(info.sha256).write_bytes(b"evil!")
    assert not store.verify(info.sha256)
