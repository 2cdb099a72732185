"""Portal.register end to end through the sandboxed ingest: success and refusals."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pandas as pd
import pytest
from tiny import files_under
from tiny import save, softmax_classifier

from portal import InvalidInputError, InvalidModelError, InvalidNameError, PayloadTooLargeError, Portal, PortalError


def _store_files(portal):
    """Files of the store, ignoring the SQLite database and its WAL files."""
    return [p for p in files_under(portal.home) if not p.name.startswith("portal.db")]


def test_register_onnx_file_with_metadata_and_reference(portal, tmp_path):
    path = save(softmax_classifier(), tmp_path / "clf.onnx")
    reference = pd.DataFrame(np.ones((5, 4)), columns=list("abcd"))
    stages = []
    version = portal.register(path, "clf", description="# Card", tags="a, b", feature_names="a,b,c,d",
                              class_labels=["x", "y", "z"], reference=reference, progress=stages.append)
    assert version.ref == "clf:1" and version.source_format == "onnx"
    assert version.feature_names == list("abcd") and version.class_labels == ["x", "y", "z"]
    assert version.tags == ("a", "b") and version.description == "# Card"
    assert stages[0] == "received" and stages[-1] == "registered"
    pd.testing.assert_frame_equal(portal.reference_frame("clf"), reference)
    assert portal.predict("clf", reference).to_frame()["prediction"].isin(["x", "y", "z"]).all()
    assert [p.name for p in files_under(portal.home / "tmp")] == []


def test_same_name_creates_next_version_and_task_is_inferred(portal, tmp_path):
    path = save(softmax_classifier(), tmp_path / "clf.onnx")
    portal.register(path, "clf")
    second = portal.register(path.read_bytes(), "clf", filename="clf.onnx")
    assert second.version == 2 and second.blob_sha == portal.get("clf:1").blob_sha


def test_name_defaults_to_file_stem(portal, tmp_path):
    path = save(softmax_classifier(), tmp_path / "My Model.v2.onnx")
    assert portal.register(path).name == "My-Model"


@pytest.mark.parametrize(
    "payload, error, fragment",
    [
        (b"", InvalidModelError, "empty"),
        (np.random.default_rng(0).bytes(4096), InvalidModelError, "not a recognised model"),
        (pickle.dumps({"a": 1}), InvalidModelError, "pickle"),
        (b"hello, I am text\n" * 20, InvalidModelError, "not a recognised model"),
    ],
    ids=["empty", "random", "pickle", "text"],
)
def test_refused_upload_registers_nothing_and_leaves_no_file(portal, payload, error, fragment):
    before = _store_files(portal)
    with pytest.raises(error, match=fragment):
        portal.register(payload, "bad", filename="bad.onnx")
    assert portal.list_models() == []
    assert _store_files(portal) == before


def test_bad_metadata_is_refused_before_anything_is_stored(portal, tmp_path):
    path = save(softmax_classifier(), tmp_path / "clf.onnx")
    with pytest.raises(InvalidInputError, match="3 feature names given, but input 'x' takes 4 columns"):
        portal.register(path, "clf", feature_names=["a", "b", "c"])
    with pytest.raises(InvalidInputError, match="2 class labels given, but output 'probs' has 3 classes"):
        portal.register(path, "clf", class_labels=["x", "y"])
    with pytest.raises(InvalidNameError):
        portal.register(path, "../evil")
    with pytest.raises(InvalidInputError, match="unknown metadata"):
        portal.register(path, "clf", colour="red")
    assert portal.list_models() == [] and _store_files(portal) == []


def test_upload_over_size_limit_is_refused_while_streaming(portal_home, tmp_path):
    p = Portal.open(portal_home, max_upload_bytes=1000)
    with pytest.raises(PayloadTooLargeError, match="PORTAL_MAX_UPLOAD_MB"):
        p.register(io.BytesIO(b"\0" * 5000), "big", filename="big.onnx")
    assert p.list_models() == [] and [f for f in files_under(portal_home) if not f.name.startswith("portal.db")] == []


def test_prepare_then_discard_keeps_store_clean(portal, tmp_path):
    staged = portal.prepare(save(softmax_classifier(), tmp_path / "clf.onnx"))
    assert staged.info["signature"]["inputs"][0]["name"] == "x"
    assert staged.workdir.exists()
    portal.discard(staged)
    assert not staged.workdir.exists() and portal.list_models() == []


def test_portal_error_messages_never_empty():
    for cls in PortalError.__subclasses__():
        assert cls("x").message == "x" and cls.status >= 400


@pytest.mark.slow
def test_demo_models_register_once_and_predict(portal):
    added = portal.load_demo()
    assert sorted(v.name for v in added) == ["breast-cancer", "diabetes", "digits", "wine"]
    assert portal.load_demo() == []
    for name in ("breast-cancer", "diabetes", "wine"):
        reference = portal.reference_frame(name)
        frame = portal.predict(name, reference.drop(columns=["target"])).to_frame()
        if name == "diabetes":
            assert np.corrcoef(frame["prediction"], reference["target"])[0, 1] > 0.5
        else:
            assert (frame["prediction"].to_numpy() == reference["target"].astype(str).to_numpy()).mean() > 0.9
    digits = portal.get("digits")
    assert digits.preprocessing["mode"] == "L" and digits.class_labels == [str(i) for i in range(10)]
