"""Image settings on the Register form and the Models page; the Predict page's statement and download."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest
from tiny import add_model, image_model
from ui_fixtures import (  # noqa: F401  (fixtures)
    assert_clean,
    button,
    elements_of_type,
    empty_home,
    new_app,
    select_model,
    texts,
    widget,
)

from portal import Portal
from portal.serving.predict import softmax
from portal.ui import keys

SQUEEZENET = Path(os.path.dirname(onnx.__file__)) / "backend/test/data/light/light_squeezenet.onnx"
LABELS = ["ant", "bee", "cat", "dog", "eel"]


def _png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _version(home: Path, ref: str):  # noqa: ANN202 - a ModelVersion
    portal = Portal.open(home)
    try:
        return portal.get(ref)
    finally:
        portal.close()


@pytest.fixture
def tiny_home(empty_home: Path) -> Path:
    """``tiny``: x[N, 3, 16, 16] → logits[N, 5], registered without image settings."""
    portal = Portal.open(empty_home)
    add_model(portal, image_model(channels=3, size=16, classes=5), "tiny")
    portal.close()
    return empty_home


def _uploader(at: AppTest, label: str):  # noqa: ANN202 - AppTest's file uploader
    return next(u for u in at.file_uploader if u.label == label)


# -- the Models page ---------------------------------------------------------------
def _fill(at: AppTest, prefix: str, labels: bytes) -> None:
    at.radio(key=prefix + "task").set_value("image classification")
    at.number_input(key=prefix + "width").set_value(12)
    at.number_input(key=prefix + "height").set_value(16)
    at.selectbox(key=prefix + "resize").set_value("center-crop")
    at.selectbox(key=prefix + "order").set_value("BGR")
    at.selectbox(key=prefix + "scale").set_value("0-255")
    at.text_input(key=prefix + "mean").set_value("120, 115, 100")
    at.text_input(key=prefix + "std").set_value("60, 60, 60")
    _uploader(at, "Labels file").set_value(("labels.txt", labels, "text/plain"))


def test_image_settings_round_trip_through_the_models_page(tiny_home: Path) -> None:
    at = select_model(new_app("app_pages/models.py"), "tiny")
    prefix = "image.tiny:1."
    assert at.radio(key=prefix + "task").value == "other (raw outputs)"
    assert at.number_input(key=prefix + "width").value == 16  # from the input shape
    _fill(at, prefix, "\n".join(LABELS).encode())
    button(at, "Save image settings").click()
    at.run()
    assert_clean(at)
    assert not at.error, texts(at.error)
    version = _version(tiny_home, "tiny:1")
    assert version.task == "classification" and version.class_labels == LABELS
    assert version.preprocessing == {"mode": "RGB", "size": [12, 16], "resize": "center-crop", "channel_order": "BGR",
                                     "scale": 255.0, "layout": "NCHW", "mean": [120.0, 115.0, 100.0],
                                     "std": [60.0, 60.0, 60.0]}
    at = select_model(new_app("app_pages/models.py"), "tiny")  # a fresh session shows what was stored
    assert at.radio(key=prefix + "task").value == "image classification"
    assert (at.number_input(key=prefix + "width").value, at.number_input(key=prefix + "height").value) == (12, 16)
    assert at.selectbox(key=prefix + "resize").value == "center-crop"
    assert at.selectbox(key=prefix + "order").value == "BGR"
    assert at.selectbox(key=prefix + "scale").value == "0-255"
    assert at.text_input(key=prefix + "mean").value == "120, 115, 100"
    assert "channel_order = BGR" in " ".join(m.value for m in at.markdown)  # the version's details list it


def test_models_page_refuses_a_labels_file_of_the_wrong_length(tiny_home: Path) -> None:
    at = select_model(new_app("app_pages/models.py"), "tiny")
    _fill(at, "image.tiny:1.", b'["ant", "bee", "cat"]')
    button(at, "Save image settings").click()
    at.run()
    assert_clean(at)
    errors = " ".join(texts(at.error))
    assert "labels.txt has 3 labels, but output 'logits' has 5 classes" in errors
    assert "3 class labels given, but output 'logits' has 5 classes; give exactly 5 labels" in errors
    version = _version(tiny_home, "tiny:1")
    assert version.preprocessing is None and version.class_labels is None and version.task == "other"


# -- the Register form --------------------------------------------------------------
def _drop_squeezenet() -> AppTest:
    at = new_app("app_pages/upload.py")
    uploader = next(u for u in at.file_uploader if u.label.startswith("Drag and drop"))
    uploader.set_value(("squeezenet.onnx", SQUEEZENET.read_bytes(), "application/octet-stream"))
    at.run()
    assert_clean(at)
    widget(at.text_input, "Name").set_value("squeezenet")
    return at.run()


def _image_key(at: AppTest, suffix: str) -> str:
    widgets = [*at.radio, *at.selectbox, *at.text_input, *at.number_input]
    return next(w.key for w in widgets if w.key and w.key.startswith("upload.") and w.key.endswith(".image." + suffix))


def test_register_takes_image_settings_and_a_labels_file(empty_home: Path) -> None:
    at = _drop_squeezenet()
    assert at.radio(key=_image_key(at, "task")).value == "image classification"
    at.selectbox(key=_image_key(at, "order")).set_value("BGR")
    at.text_input(key=_image_key(at, "mean")).set_value("0.485, 0.456, 0.406")
    at.text_input(key=_image_key(at, "std")).set_value("0.229, 0.224, 0.225")
    _uploader(at, "Labels file").set_value(("synset.txt", "\n".join(f"n{i:05d}" for i in range(1000)).encode(),
                                            "text/plain"))
    at.run()
    assert "1000 labels read from synset.txt · the model has 1000 classes" in " ".join(c.value for c in at.caption)
    button(at, "Register").click()
    at.run()
    assert_clean(at)
    assert not at.error, texts(at.error)
    version = _version(empty_home, "squeezenet")
    assert version.task == "classification" and version.class_labels[:2] == ["n00000", "n00001"]
    assert version.preprocessing["channel_order"] == "BGR" and version.preprocessing["size"] == [224, 224]
    assert version.preprocessing["mean"] == [0.485, 0.456, 0.406]


def test_register_refuses_a_labels_file_of_the_wrong_length(empty_home: Path) -> None:
    at = _drop_squeezenet()
    _uploader(at, "Labels file").set_value(("synset.txt", b"tench\ngoldfish\n", "text/plain"))
    at.run()
    assert "synset.txt has 2 labels, but output 'softmaxout_1' has 1000 classes" in " ".join(texts(at.error))
    button(at, "Register").click()
    at.run()
    assert_clean(at)
    assert "2 class labels given, but output 'softmaxout_1' has 1000 classes" in " ".join(texts(at.error))
    portal = Portal.open(empty_home)
    assert portal.list_models() == []
    portal.close()


# -- the Predict page ----------------------------------------------------------------
def test_predict_states_the_preprocessing_and_offers_the_image_predictions(tiny_home: Path) -> None:
    portal = Portal.open(tiny_home)
    portal.set_image_settings("tiny", {"size": [16, 16], "mean": [0.5] * 3, "std": [0.25] * 3},
                              class_labels=LABELS, classify=True)
    batch = portal.images_to_array("tiny", [_png(1), _png(2)])
    expected = softmax(portal.predict("tiny", batch).outputs["logits"].astype(np.float64))
    portal.close()
    at = select_model(new_app("app_pages/predict.py"), "tiny")
    _uploader(at, "Drop one or several images").set_value(
        [("one.png", _png(1), "image/png"), ("two.png", _png(2), "image/png")])
    at.run()
    assert_clean(at)
    captions = " ".join(c.value for c in at.caption)
    assert ("Preprocessing applied: resized to 16×16 (stretched), RGB channel order, pixels scaled to 0–1, "
            "normalised with mean [0.5, 0.5, 0.5] and std [0.25, 0.25, 0.25], layout NCHW.") in captions
    assert "softmax applied to logits" in captions
    labels = [b.proto.label for b in elements_of_type(at, "download_button")]
    assert "Download image predictions (CSV)" in labels
    ranked = at.session_state[keys.IMAGE_RESULT][5]
    assert list(ranked.columns) == ["file", "class", "score", "top_5"]
    assert list(ranked["file"]) == ["one.png", "two.png"]
    assert list(ranked["class"]) == [LABELS[i] for i in expected.argmax(axis=1)]
    np.testing.assert_allclose(ranked["score"], expected.max(axis=1), rtol=1e-6)
