"""Encryption at rest: AES-GCM blobs, decrypted only in memory, tampering refused, key rotation."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from tiny import softmax_classifier

from portal import Portal, PortalError
from portal.storage.crypto import MAGIC, IntegrityError, generate_key

X = {"x": np.ones((2, 4), np.float32)}


@pytest.fixture
def key():
    return generate_key()


def _register(p, seed=0):
    return p.register(softmax_classifier(seed=seed).SerializeToString(), "m", filename="m.onnx")


def test_blobs_are_encrypted_on_disk_and_predict_works(portal_home, key):
    p = Portal.open(portal_home, encryption_key=key)
    version = _register(p)
    raw = p.store.path(version.blob_sha).read_bytes()
    plain = softmax_classifier().SerializeToString()
    assert raw.startswith(MAGIC) and plain[-64:] not in raw
    assert p.model_bytes("m") == plain
    assert p.predict("m", X).outputs["probs"].shape == (2, 3)
    assert p.fsck(verify=True, grace_seconds=0).healthy
    with pytest.raises(PortalError, match="encrypted; read m:1 with model_bytes"):
        p.model_path("m")


def test_store_is_unreadable_without_the_key(portal_home, key):
    _register(Portal.open(portal_home, encryption_key=key))
    without = Portal.open(portal_home)
    with pytest.raises(PortalError, match="set PORTAL_ENCRYPTION_KEY"):
        without.predict("m", X)
    wrong = Portal.open(portal_home, encryption_key=generate_key())
    with pytest.raises(IntegrityError, match="another key"):
        wrong.predict("m", X)


def test_tampered_blob_is_refused(portal_home, key):
    p = Portal.open(portal_home, encryption_key=key)
    version = _register(p)
    path = p.store.path(version.blob_sha)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    fresh = Portal.open(portal_home, encryption_key=key)
    with pytest.raises(IntegrityError, match="failed its integrity check"):
        fresh.predict("m", X)
    assert fresh.fsck(verify=True, grace_seconds=0).corrupted == [version.blob_sha]


def test_bad_key_format_is_explained(portal_home):
    with pytest.raises(PortalError, match="portal keygen"):
        Portal.open(portal_home, encryption_key="short")


def test_rotate_key_via_cli(portal_home, key):
    version = _register(Portal.open(portal_home, encryption_key=key))
    new = generate_key()
    env = dict(os.environ, PORTAL_HOME=str(portal_home), PORTAL_ENCRYPTION_KEY=key, PORTAL_NEW_ENCRYPTION_KEY=new)
    out = subprocess.run([sys.executable, "-m", "portal.cli", "rotate-key"], env=env, capture_output=True, text=True)
    assert out.returncode == 0 and "rewrote 1 blobs" in out.stdout, out.stderr
    with pytest.raises(IntegrityError):
        Portal.open(portal_home, encryption_key=key).predict("m", X)
    rotated = Portal.open(portal_home, encryption_key=new)
    assert rotated.predict("m", X).rows == 2 and rotated.store.verify(version.blob_sha)


def test_plaintext_store_can_be_encrypted_then_decrypted(portal_home, key):
    p = Portal.open(portal_home)
    version = _register(p)
    assert p.rotate_key(key) == 1 and p.store.is_encrypted(version.blob_sha)
    assert p.predict("m", X).rows == 2
    assert p.rotate_key(None) == 1 and not p.store.is_encrypted(version.blob_sha)
