"""Reference data and the Upload page's messages in the pages (issue 14 items 4 and 13), with AppTest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from explain_models import frame, linear, names
from streamlit.testing.v1 import AppTest
from tiny import add_model, softmax_classifier
from ui_fixtures import (  # noqa: F401  (fixtures)
    assert_clean,
    button,
    empty_home,
    new_app,
    onnx_bytes,
    select_model,
    texts,
    widget,
)

from portal import Portal

MIME = "application/octet-stream"
UPLOAD = "app_pages/upload.py"


def _drop(at: AppTest, name: str, data: bytes) -> AppTest:
    next(u for u in at.file_uploader if u.label.startswith("Drag and drop")).set_value((name, data, MIME))
    return at.run()


def _uploader(at: AppTest, label: str) -> object:
    return next(u for u in at.file_uploader if u.label == label)


def _open(home: Path) -> Portal:
    return Portal.open(home)


# -- the Upload page ---------------------------------------------------------------------------
def test_a_generic_file_name_asks_for_a_real_name(empty_home: Path) -> None:
    at = _drop(new_app(UPLOAD), "model.onnx", onnx_bytes(softmax_classifier()))
    assert_clean(at)
    assert widget(at.text_input, "Name").value == ""
    assert any("says nothing about the model" in t for t in texts(at.info))
    assert button(at, "Register").disabled
    widget(at.text_input, "Name").set_value("iris")
    at.run()
    assert not button(at, "Register").disabled


def test_passed_every_check_is_shown_once(empty_home: Path) -> None:
    at = _drop(new_app(UPLOAD), "classifier.onnx", onnx_bytes(softmax_classifier()))
    passed = [s.label for s in at.status if "passed every check" in s.label]
    assert passed == ["**classifier.onnx** passed every check"]
    at.run()
    assert len([s for s in at.status if "passed every check" in s.label]) == 1


def test_register_with_reference_data_that_lacks_a_column_keeps_the_upload(empty_home: Path) -> None:
    at = _drop(new_app(UPLOAD), "classifier.onnx", onnx_bytes(softmax_classifier()))
    widget(at.text_input, "Name").set_value("iris")
    widget(at.text_area, "Feature names").set_value("a\nb\nc\nd")
    at.run()
    bad = frame(15, ["a", "b", "c"], seed=1).to_csv(index=False).encode()
    _uploader(at, "Reference data (optional)").set_value(("train.csv", bad, "text/csv"))
    at.run()
    button(at, "Register").click()
    at.run()
    assert_clean(at)
    assert any("missing column(s) 'd'" in e and "nothing was stored" in e for e in texts(at.error))
    portal = _open(empty_home)
    assert portal.list_models() == []
    portal.close()
    good = frame(15, ["a", "b", "c", "d"], seed=1).to_csv(index=False).encode()
    _uploader(at, "Reference data (optional)").set_value(("train.csv", good, "text/csv"))
    at.run()
    button(at, "Register").click()
    at.run()
    assert "Registered **iris:1**" in " ".join(texts(at.success))
    portal = _open(empty_home)
    assert len(portal.reference_frame("iris")) == 15
    portal.close()


def test_parameters_read_the_same_on_the_card_and_in_the_versions_table(empty_home: Path) -> None:
    portal = _open(empty_home)
    add_model(portal, softmax_classifier(), "iris")
    portal.close()
    at = select_model(new_app("app_pages/models.py"), "iris")
    card = {m.label: m.value for m in at.metric}["Parameters"]
    versions = next(d.value for d in at.dataframe if "Parameters" in d.value.columns)
    assert card == "15" and list(versions["Parameters"]) == ["15"]


# -- the Models page -----------------------------------------------------------------------------
def _models_page(home: Path) -> AppTest:
    portal = _open(home)
    add_model(portal, linear(np.array([1.0, -2.0, 0.5, 3.0], np.float32)), "lin", task="regression",
              feature_names=names(4))
    portal.close()
    return select_model(new_app("app_pages/models.py"), "lin")


def test_the_models_page_adds_reference_data(empty_home: Path) -> None:
    at = _models_page(empty_home)
    assert any("No reference data yet" in c for c in texts(at.caption))
    table = frame(20, names(4), seed=2).to_csv(index=False).encode()
    _uploader(at, "Add reference data").set_value(("train.csv", table, "text/csv"))
    at.run()
    button(at, "Save reference data").click()
    at.run()
    assert_clean(at)
    assert "Saved 20 rows of reference data for lin:1." in texts(at.success)
    assert any(c.startswith("Reference data: 20 rows") for c in texts(at.caption))


def test_the_models_page_refuses_reference_data_with_wrong_columns(empty_home: Path) -> None:
    at = _models_page(empty_home)
    bad = frame(20, ["x", "y"], seed=3).to_csv(index=False).encode()
    _uploader(at, "Add reference data").set_value(("bad.csv", bad, "text/csv"))
    at.run()
    button(at, "Save reference data").click()
    at.run()
    assert_clean(at)
    assert any("missing column(s) 'f0'" in e for e in texts(at.error))
    portal = _open(empty_home)
    assert portal.get("lin").reference_sha is None
    portal.close()


# -- the Explain page without reference data ---------------------------------------------------------
def test_explain_uses_uploaded_rows_as_their_own_background(empty_home: Path) -> None:
    portal = _open(empty_home)
    add_model(portal, linear(np.array([1.0, -2.0, 0.5, 3.0], np.float32)), "bare", task="regression",
              feature_names=names(4))
    portal.close()
    at = select_model(new_app("app_pages/explain.py"), "bare")
    rows = frame(12, names(4), seed=4).to_csv(index=False).encode()
    _uploader(at, "Rows to explain (optional)").set_value(("rows.csv", rows, "text/csv"))
    at.run()
    assert_clean(at)
    assert not [t for t in texts(at.info) if "no reference data" in t]
    assert any("Background: the 12 rows being explained" in c for c in texts(at.caption))
