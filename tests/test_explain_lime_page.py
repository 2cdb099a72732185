"""The Explain page with LIME: one row, many rows, what-if, images, and the SHAP vs LIME view (AppTest)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from explain_models import frame, linear, names
from streamlit.testing.v1 import AppTest
from test_explain_lime import bend, bend_reference
from tiny import add_model, image_model, softmax_classifier
from ui_fixtures import assert_clean, button, elements_of_type, empty_home, new_app, select_model, texts  # noqa: F401

from portal import Portal
from portal.demo import DIGITS_PREPROCESSING

PAGE = "app_pages/explain.py"
WEIGHTS = np.array([1.0, -2.0, 0.5, 3.0], np.float32)


@pytest.fixture
def home(empty_home: Path) -> Path:
    """A linear regressor, a classifier, an image model and a model that bends."""
    portal = Portal.open(empty_home)
    try:
        add_model(portal, linear(WEIGHTS), "lin", task="regression", reference=frame(40, names(4), seed=1),
                  feature_names=names(4))
        add_model(portal, softmax_classifier(5, 3), "clf", task="classification", class_labels=["a", "b", "c"],
                  reference=frame(40, names(5), seed=2), feature_names=names(5))
        pixels = pd.DataFrame(np.random.default_rng(3).random((5, 64)).astype(np.float32),
                              columns=[f"pixel_{i}" for i in range(64)])
        add_model(portal, image_model(), "img", task="classification", class_labels=[str(d) for d in range(10)],
                  preprocessing=dict(DIGITS_PREPROCESSING), feature_names=list(pixels.columns), reference=pixels)
        add_model(portal, bend(), "bend", task="regression", reference=bend_reference(), feature_names=names(2))
    finally:
        portal.close()
    return empty_home


def _lime_page(name: str, *, bins: bool = True) -> AppTest:
    at = select_model(new_app(PAGE), name)
    at.radio(key="explain.method").set_value("lime")
    at.checkbox(key="explain.lime.discretize").set_value(bins)
    at.run()
    assert_clean(at)
    return at


def _metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def _figures(at: AppTest) -> list[dict[str, Any]]:
    return [json.loads(c.proto.spec) for c in elements_of_type(at, "plotly_chart")]


def _array(value: Any) -> np.ndarray:
    """A plotly data array from its JSON: a list, or numpy's bytes in base64 ("bdata") with a dtype and shape."""
    if not isinstance(value, dict):
        return np.asarray(value)
    flat = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
    shape = value.get("shape")
    return flat.reshape([int(d) for d in str(shape).split(",")]) if shape else flat


def _reference(home: Path, name: str) -> pd.DataFrame:
    portal = Portal.open(home)
    try:
        return portal.reference_frame(name)
    finally:
        portal.close()


def test_the_method_choice_offers_shap_and_lime(home: Path) -> None:
    at = select_model(new_app(PAGE), "lin")
    assert at.radio(key="explain.method").value == "shap"
    assert at.radio(key="explain.method").options == ["SHAP", "LIME"]
    assert [t.label for t in at.tabs] == ["One row", "Many rows", "What-if", "Variant drift", "SHAP vs LIME"]


def test_one_row_shows_limes_weights_intercept_and_local_r2(home: Path) -> None:
    at = _lime_page("lin", bins=False)
    at.number_input(key="explain.row").set_value(5)  # row 0 is already explained by the what-if tab
    at.run()
    assert any(c.startswith("Estimate: lime explainer: 1 row(s) × 5,000 evaluations") for c in texts(at.caption))
    button(at, "Explain this row with LIME").click()
    at.run()
    assert_clean(at)
    reference = _reference(home, "lin")
    expected = float(reference.iloc[5].to_numpy(np.float64) @ WEIGHTS + 0.5)
    assert float(_metric(at, "Output (prediction)")) == pytest.approx(expected, rel=1e-3)
    assert float(_metric(at, "LIME surrogate")) == pytest.approx(expected, rel=1e-2)  # a line fits a line
    assert _metric(at, "Local R²") == "1.000"
    chart = next(f for f in _figures(at) if f["layout"]["title"]["text"].startswith("LIME for row 5"))
    bars = chart["data"][0]
    labels, weights = _array(bars["y"])[::-1], _array(bars["x"])[::-1]  # drawn largest at the top
    assert [label.split(" ")[0] for label in labels] == ["f3", "f1", "f0", "f2"]  # |weight × std|, std ≈ 1
    assert np.sign(weights).tolist() == [1, -1, 1, 1]
    assert any("ridge fit (alpha 1) on standardized feature values" in c for c in texts(at.caption))
    assert len(elements_of_type(at, "download_button")) >= 2


def test_many_rows_show_lime_importance_and_each_rows_fit(home: Path) -> None:
    at = _lime_page("clf")
    at.slider(key="explain.many.count").set_value(12)
    at.run()
    button(at, "Explain 12 rows with LIME").click()
    at.run()
    assert_clean(at)
    assert any(f["layout"]["title"]["text"].startswith("LIME importance over 12 row(s)") for f in _figures(at))
    table = next(d.value for d in at.dataframe if "local_r2" in d.value.columns)
    assert len(table) == 12 and set(table["explained"]) <= {"a", "b", "c"}
    assert ((table["local_r2"] >= 0) & (table["local_r2"] <= 1)).all()


def test_what_if_with_lime_follows_the_edited_row(home: Path) -> None:
    at = _lime_page("lin")
    prefix = "explain.whatif.lin:1."
    before = float(next(m.value for m in at.metric if m.label == "Output (prediction)"))
    at.number_input(key=prefix + "f3").set_value(at.number_input(key=prefix + "f3").value + 1.0)
    button(at, "Update").click()
    at.run()
    assert_clean(at)
    after = next(m for m in at.metric if m.label == "Output (prediction)" and m.delta and m.delta != "+0")
    assert float(after.value) == pytest.approx(before + 3.0, rel=1e-3)  # the weight of f3 is 3
    assert after.delta.startswith("+3")


def test_images_show_superpixel_weights_for_their_top_classes(home: Path) -> None:
    at = _lime_page("img")
    at.slider(key="explain.image.top").set_value(2)
    at.run()
    button(at, "Explain the image(s) with LIME").click()
    at.run()
    assert_clean(at)
    figure = _figures(at)[0]
    assert "LIME superpixel weights" in figure["layout"]["title"]["text"]
    kinds = [trace["type"] for trace in figure["data"]]
    assert kinds == ["heatmap", "scatter"] + ["heatmap", "heatmap", "scatter"] * 2  # image + edges, per class
    segments, weights = _array(figure["data"][3]["customdata"]), _array(figure["data"][3]["z"])
    for s in np.unique(segments):  # one weight per superpixel
        assert len(np.unique(weights[segments == s])) == 1
    assert any("samples per image" in c for c in texts(at.caption))


def test_agreement_of_shap_and_scaled_lime_on_a_linear_model_is_full(home: Path) -> None:
    at = _lime_page("lin", bins=False)
    at.number_input(key="explain.agree.k").set_value(2)
    at.run()
    assert any(c.startswith("Estimate: SHAP about") for c in texts(at.caption))
    button(at, "Compare SHAP and LIME").click()
    at.run()
    assert_clean(at)
    assert float(_metric(at, "Top-2 overlap (mean per row)")) == 1.0
    assert float(_metric(at, "Rank correlation (global)")) == pytest.approx(1.0)
    assert float(_metric(at, "Rank correlation (mean per row)")) > 0.95
    assert any("tell much the same story on every row" in s for s in texts(at.success))
    assert any("What disagreement means" in i for i in texts(at.info))


def test_agreement_highlights_the_row_where_the_model_bends(home: Path) -> None:
    at = _lime_page("bend", bins=False)
    at.slider(key="explain.agree.count").set_value(3)
    at.number_input(key="explain.agree.k").set_value(1)
    at.run()
    button(at, "Compare SHAP and LIME").click()
    at.run()
    assert_clean(at)
    assert "SHAP and LIME disagree most on row 0 (shaded above)." in texts(at.warning)
    # the one-row tab (row 0) says so from LIME's side too: a straight line fits the bend badly there
    assert any(w.startswith("LIME's local fit is weak here") for w in texts(at.warning))
    assert float(_metric(at, "Top-1 overlap (mean per row)")) == pytest.approx(2 / 3, abs=1e-3)
    worst = next(d.value for d in at.dataframe if "SHAP top" in d.value.columns)
    assert worst.iloc[0][["row", "SHAP top", "LIME top"]].tolist() == [0, "f0", "f1"]
    rows_chart = next(f for f in _figures(at) if f["layout"]["title"]["text"].startswith("SHAP vs LIME per row"))
    assert [(s["x0"], s["x1"]) for s in rows_chart["layout"]["shapes"]] == [(-0.5, 0.5)]  # row 0 shaded
    assert at.selectbox(key="explain.agree.row").value == 0  # the side-by-side opens on the worst row
