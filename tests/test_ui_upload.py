"""The Upload page: drop a file, read the report, register; refusals are error boxes."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from tiny import softmax_classifier
from ui_fixtures import (  # noqa: F401  (fixtures)
    assert_clean,
    button,
    elements_of_type,
    empty_home,
    new_app,
    onnx_bytes,
    texts,
    widget,
)

from portal import Portal

MIME = "application/octet-stream"


def _drop(at: AppTest, name: str, data: bytes) -> AppTest:
    uploader = next(u for u in at.file_uploader if u.label.startswith("Drag and drop"))
    uploader.set_value((name, data, MIME))
    return at.run()


def _registered(home: Path) -> list[str]:
    portal = Portal.open(home)
    try:
        return [v.ref for m in portal.list_models() for v in m.versions]
    finally:
        portal.close()


def _staging_dirs(home: Path) -> list[Path]:
    tmp = home / "tmp"
    return [p for p in tmp.iterdir() if p.name.startswith("upload")] if tmp.exists() else []


def _upload_and_register(name: str, **fields: str) -> AppTest:
    at = _drop(new_app("app_pages/upload.py"), "classifier.onnx", onnx_bytes(softmax_classifier()))
    widget(at.text_input, "Name").set_value(name)
    for label, value in fields.items():
        widget(at.text_area, label).set_value(value)
    at.run()
    button(at, "Register").click()
    return at.run()


def test_drop_shows_the_validation_report(empty_home: Path) -> None:
    at = _drop(new_app("app_pages/upload.py"), "classifier.onnx", onnx_bytes(softmax_classifier()))
    assert_clean(at)
    assert not at.error
    assert "Validation report" in texts(at.subheader)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Uploaded as"] == "onnx" and metrics["Opset"] == "17" and metrics["Parameters"] == "15"
    signature = at.dataframe[0].value
    assert list(signature["Name"]) == ["x", "probs"] and list(signature["Shape"]) == ["[N, 4]", "[N, 3]"]
    assert elements_of_type(at, "plotly_chart"), "operator histogram missing"
    assert widget(at.text_input, "Name").value == "classifier"
    assert _registered(empty_home) == []


def test_register_from_the_form(empty_home: Path) -> None:
    at = _upload_and_register("iris", **{"Class labels": "setosa, versicolor, virginica",
                                         "Feature names": "sl\nsw\npl\npw"})
    assert_clean(at)
    assert "Registered **iris:1**" in " ".join(texts(at.success))
    assert _registered(empty_home) == ["iris:1"]
    portal = Portal.open(empty_home)
    version = portal.get("iris")
    assert version.class_labels == ["setosa", "versicolor", "virginica"]
    assert version.feature_names == ["sl", "sw", "pl", "pw"]
    portal.close()
    assert at.selectbox(key="picker.model").value == "iris"
    assert not _staging_dirs(empty_home)


def test_existing_name_becomes_the_next_version(empty_home: Path) -> None:
    _upload_and_register("iris")
    at = _drop(new_app("app_pages/upload.py"), "classifier.onnx", onnx_bytes(softmax_classifier(seed=5)))
    widget(at.text_input, "Name").set_value("iris")
    at.run()
    assert "becomes its next version" in " ".join(texts(at.info))
    button(at, "Register").click()
    at.run()
    assert "Registered **iris:2**" in " ".join(texts(at.success))
    assert _registered(empty_home) == ["iris:2", "iris:1"]


def test_cancel_discards_the_staged_upload(empty_home: Path) -> None:
    at = _drop(new_app("app_pages/upload.py"), "classifier.onnx", onnx_bytes(softmax_classifier()))
    assert _staging_dirs(empty_home)
    button(at, "Cancel").click()
    at.run()
    assert_clean(at)
    assert not _staging_dirs(empty_home)
    assert "Validation report" not in texts(at.subheader)
    assert _registered(empty_home) == []


def test_metadata_that_does_not_fit_keeps_the_upload(empty_home: Path) -> None:
    at = _upload_and_register("iris", **{"Class labels": "a, b"})
    assert "2 class labels given" in " ".join(texts(at.error))
    assert _registered(empty_home) == [] and _staging_dirs(empty_home)
    widget(at.text_area, "Class labels").set_value("a, b, c")
    at.run()
    button(at, "Register").click()
    at.run()
    assert _registered(empty_home) == ["iris:1"]


def test_an_invalid_name_is_an_error_box(empty_home: Path) -> None:
    at = _upload_and_register("no spaces please")
    assert_clean(at)
    assert "invalid model name" in " ".join(texts(at.error))
    assert _registered(empty_home) == []


BAD_FILES = {
    "empty": ("model.onnx", b""),
    "random bytes": ("model.onnx", os.urandom(4096)),
    "pickle": ("model.pkl", pickle.dumps({"weights": [1.0, 2.0]})),
    "text named .onnx": ("model.onnx", b"this is not a model, just some notes\n" * 20),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_a_bad_file_is_refused_with_an_error_box(empty_home: Path, kind: str) -> None:
    name, data = BAD_FILES[kind]
    at = _drop(new_app("app_pages/upload.py"), name, data)
    assert_clean(at)
    assert at.error, f"no error shown for {kind}"
    assert "Traceback" not in " ".join(texts(at.error))
    assert "Validation report" not in texts(at.subheader)
    assert _registered(empty_home) == [] and not _staging_dirs(empty_home)


def test_a_refusal_is_not_checked_again_on_rerun(empty_home: Path) -> None:
    at = _drop(new_app("app_pages/upload.py"), "model.onnx", b"")
    first = texts(at.error)
    at.run()
    assert texts(at.error) == first
    assert not at.status or all("Checking" not in s.label for s in at.status)


def test_torchscript_without_shape_asks_for_one(empty_home: Path) -> None:
    torch = pytest.importorskip("torch")
    module = torch.jit.script(torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Softmax(dim=1)))
    buffer = io.BytesIO()
    torch.jit.save(module, buffer)
    at = _drop(new_app("app_pages/upload.py"), "net.pt", buffer.getvalue())
    assert_clean(at)
    assert "input shape" in " ".join(texts(at.error))
    widget(at.text_input, "Input shape").set_value("1, 4")
    at.run()
    button(at, "Convert with this shape").click()
    at.run()
    assert_clean(at)
    assert "Validation report" in texts(at.subheader)
    assert {m.label: m.value for m in at.metric}["Uploaded as"] == "torchscript"
    widget(at.text_input, "Name").set_value("net")
    at.run()
    button(at, "Register").click()
    at.run()
    assert _registered(empty_home) == ["net:1"]
