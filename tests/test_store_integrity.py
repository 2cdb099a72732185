"""A blob is checked against its sha256 when it is loaded into the session cache: a changed file is never served."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import subprocess
import sys
import uuid

import fsspec
import httpx
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper
from tiny import add_model, softmax_classifier
from ui_fixtures import assert_clean, button, empty_home, new_app, select_model  # noqa: F401  (fixtures)

from portal import Portal
from portal.accounts.auth import Auth
from portal.storage.crypto import BlobCipher, generate_key
from portal.errors import CorruptBlobError
from portal.serving.runtime import SessionCache

X = {"x": np.ones((2, 4), np.float32)}
CORRUPT = r"is corrupt \(sha256 mismatch\); an admin should run `portal fsck --verify` and restore it from a backup"


def _same_size(data: bytes) -> bytes:
    """One bit of one weight flipped: same size, still a valid model, other outputs."""
    weights = numpy_helper.to_array(onnx.load_from_string(data).graph.initializer[0]).tobytes()
    at = data.index(weights)
    return data[:at] + bytes([weights[0] ^ 0x01]) + data[at + 1:]


def _longer(data: bytes) -> bytes:
    """A doc string added: larger, still a valid model."""
    model = onnx.load_from_string(data)
    model.doc_string = "changed after registration"
    return model.SerializeToString()


@pytest.fixture(params=[_same_size, _longer], ids=["same-size", "different-size"])
def tamper(request):
    def change(portal: Portal, sha: str) -> None:
        path = portal.store.path(sha)
        changed = request.param(path.read_bytes())
        ort.InferenceSession(changed, providers=["CPUExecutionProvider"])  # only the hash can tell
        path.write_bytes(changed)  # in place: same file, same name

    return change


def test_changed_blob_is_refused_by_predict(portal, tamper):
    version = add_model(portal, softmax_classifier(), "m")
    tamper(portal, version.blob_sha)
    with pytest.raises(CorruptBlobError, match=CORRUPT):
        portal.predict("m", X)
    assert portal.cache.loaded() == []


def test_changed_blob_is_refused_by_a_fresh_portal(portal_home, tamper):
    portal = Portal.open(portal_home)
    version = portal.register(softmax_classifier().SerializeToString(), "m", filename="m.onnx")  # the real ingest
    portal.close()
    tamper(Portal.open(portal_home), version.blob_sha)
    fresh = Portal.open(portal_home)
    with pytest.raises(CorruptBlobError, match=CORRUPT):
        fresh.predict("m", X)
    fresh.close()


def test_check_is_once_per_load_not_per_prediction(portal):
    version = add_model(portal, softmax_classifier(), "m")
    expected = portal.predict("m", X).outputs["probs"]
    path = portal.store.path(version.blob_sha)
    original = path.read_bytes()
    path.write_bytes(_same_size(original))
    # the session loaded from the checked bytes keeps serving them
    np.testing.assert_array_equal(portal.predict("m", X).outputs["probs"], expected)
    portal.cache.clear()
    with pytest.raises(CorruptBlobError, match=CORRUPT):
        portal.predict("m", X)
    path.write_bytes(original)  # restored from a backup: served again, nothing remembered the failure
    np.testing.assert_array_equal(portal.predict("m", X).outputs["probs"], expected)


def test_changed_blob_is_reported_by_fsck(portal, tamper):
    version = add_model(portal, softmax_classifier(), "m")
    good = add_model(portal, softmax_classifier(seed=1), "other")
    tamper(portal, version.blob_sha)
    report = portal.fsck(verify=True, grace_seconds=0)
    assert report.corrupted == [version.blob_sha] and not report.healthy
    assert portal.store.exists(version.blob_sha) and portal.store.verify(good.blob_sha)
    assert f"corrupted {version.blob_sha}" in report.summary()


def test_fsck_checks_unreferenced_blobs_too(portal):
    orphan = portal.store.put_bytes(b"not referenced by any version").sha256
    portal.store.path(orphan).write_bytes(b"not referenced by any versioN")
    report = portal.fsck(repair=False, verify=True)
    assert report.corrupted == [orphan]


def test_cli_fsck_verify_reports_the_changed_blob(portal):
    version = add_model(portal, softmax_classifier(), "m")
    portal.store.path(version.blob_sha).write_bytes(b"tampered")
    env = dict(os.environ, PORTAL_HOME=str(portal.home))
    out = subprocess.run([sys.executable, "-m", "portal.cli", "fsck", "--verify", "--dry-run"], env=env,
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert f"corrupted {version.blob_sha}" in out.stdout and "Traceback" not in out.stderr


def test_model_bytes_refuses_a_changed_blob(portal):
    version = add_model(portal, softmax_classifier(), "m")
    path = portal.store.path(version.blob_sha)
    path.write_bytes(_same_size(path.read_bytes()))
    with pytest.raises(CorruptBlobError, match=f"stored file {version.blob_sha[:12]} {CORRUPT}"):
        portal.model_bytes("m")


def test_encrypted_blob_swapped_under_its_name_is_refused(portal_home):
    key = generate_key()
    portal = Portal.open(portal_home, encryption_key=key)
    version = add_model(portal, softmax_classifier(), "m")
    other = softmax_classifier(seed=7).SerializeToString()
    # someone holding the key writes another model under this name: GCM accepts it, the hash does not
    portal.store.path(version.blob_sha).write_bytes(BlobCipher(key).encrypt(other, version.blob_sha))
    with pytest.raises(CorruptBlobError, match=CORRUPT):
        portal.predict("m", X)
    assert portal.fsck(verify=True, grace_seconds=0).corrupted == [version.blob_sha]
    portal.close()


def test_changed_blob_on_a_remote_store_is_refused(tmp_path):
    root = f"portal-test-{uuid.uuid4().hex}"
    portal = Portal.open(tmp_path / "home", blob_url=f"memory://{root}")
    try:
        version = add_model(portal, softmax_classifier(), "m")
        key = f"{version.blob_sha[:2]}/{version.blob_sha}"
        portal.store.fs.pipe(key, _same_size(portal.store.fs.cat(key)))
        with pytest.raises(CorruptBlobError, match=CORRUPT):
            portal.predict("m", X)
    finally:
        portal.close()
        fsspec.filesystem("memory").rm(f"/{root}", recursive=True)


def test_session_cache_names_the_model_and_caches_nothing(tmp_path):
    data = softmax_classifier().SerializeToString()
    path = tmp_path / "model.onnx"
    path.write_bytes(_same_size(data))
    sha = hashlib.sha256(data).hexdigest()
    cache = SessionCache(max_bytes=10**9, max_count=4)
    with pytest.raises(CorruptBlobError, match=f"^model file for churn:3 {CORRUPT}$"):
        cache.get(sha, lambda: path, size_bytes=len(data), label="churn:3")
    assert cache.loaded() == [] and cache.stats().loads == 0
    path.write_bytes(data)
    assert cache.get(sha, lambda: path, size_bytes=len(data), label="churn:3").input_names == ("x",)


def test_rest_api_answers_the_message_without_a_traceback(portal):
    from portal.api import ApiSettings, create_app

    version = add_model(portal, softmax_classifier(), "m")
    portal.store.path(version.blob_sha).write_bytes(b"tampered")
    auth = Auth(portal.registry)
    auth.add_user("alice", "viewer", actor="test")
    token = auth.create_token("alice", actor="test", label="tests").secret
    app = create_app(portal, settings=ApiSettings())
    body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post("/v2/models/m/infer", json=body, headers={"Authorization": f"Bearer {token}"})

    response = asyncio.run(call())
    assert response.status_code == 500
    assert response.json()["error"].endswith(CORRUPT.replace("\\", ""))
    assert "Traceback" not in response.text and "outputs" not in response.json()


def test_predict_page_shows_the_message_without_a_traceback(empty_home):
    portal = Portal.open(empty_home)
    version = add_model(portal, softmax_classifier(), "m")
    portal.store.path(version.blob_sha).write_bytes(b"tampered")
    portal.close()
    at = select_model(new_app("app_pages/predict.py"), "m")
    button(at, "Predict").click()
    at.run()
    assert_clean(at)
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and re.search(f"{CORRUPT}$", errors[0])
    assert not at.metric  # no prediction shown
