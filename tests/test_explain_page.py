"""The Explain page: one row, many rows, what-if, images, drift, estimates, exports (AppTest)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from explain_models import add_variant, constant_image, frame, linear, names
from streamlit.testing.v1 import AppTest
from tiny import add_model, image_model, softmax_classifier
from ui_fixtures import (  # noqa: F401
    assert_clean,
    button,
    elements_of_type,
    empty_home,
    new_app,
    select_model,
    texts,
)

from portal import Portal
from portal.demo import DIGITS_PREPROCESSING

PAGE = "app_pages/explain.py"
WEIGHTS = np.array([1.0, -2.0, 0.5, 3.0], np.float32)


@pytest.fixture
def home(empty_home: Path) -> Path:
    """A store with a linear regressor (+ a variant), a classifier, an image model and a model without data."""
    portal = Portal.open(empty_home)
    try:
        reference = frame(40, names(4), seed=1)
        add_model(portal, linear(WEIGHTS), "lin", task="regression", reference=reference, feature_names=names(4))
        swapped = WEIGHTS[[3, 1, 2, 0]]
        add_variant(portal, "lin:1", linear(swapped), "lin-int8", 4)
        add_model(portal, softmax_classifier(5, 3), "clf", task="classification", class_labels=["a", "b", "c"],
                  reference=frame(40, names(5), seed=2), feature_names=names(5))
        pixels = pd.DataFrame(np.random.default_rng(3).random((5, 64)).astype(np.float32),
                              columns=[f"pixel_{i}" for i in range(64)])
        add_model(portal, image_model(), "img", task="classification", class_labels=[str(d) for d in range(10)],
                  preprocessing=dict(DIGITS_PREPROCESSING), feature_names=list(pixels.columns), reference=pixels)
        add_model(portal, linear(WEIGHTS), "bare", task="regression", feature_names=names(4))
    finally:
        portal.close()
    return empty_home


def _page(name: str) -> AppTest:
    at = select_model(new_app(PAGE), name)
    assert_clean(at)
    return at


def _metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def _charts(at: AppTest) -> list[Any]:
    return elements_of_type(at, "plotly_chart")


def _reference(home: Path, name: str) -> pd.DataFrame:
    portal = Portal.open(home)
    try:
        return portal.reference_frame(name)
    finally:
        portal.close()


def test_page_is_in_the_navigation_and_says_what_to_do_without_models(empty_home: Path) -> None:
    at = new_app(PAGE)
    assert_clean(at)
    assert "No models yet" in " ".join(texts(at.info))


def test_one_row_shows_the_estimate_then_a_checked_waterfall(home: Path) -> None:
    at = _page("lin")
    at.number_input(key="explain.row").set_value(5)  # row 0 is already explained by the what-if tab
    at.run()
    assert any(c.startswith("Estimate: exact explainer: 1 row(s) × 16 evaluations") for c in texts(at.caption))
    button(at, "Explain this row").click()
    at.run()
    assert_clean(at)
    reference = _reference(home, "lin")
    expected = float(reference.iloc[5].to_numpy(np.float64) @ WEIGHTS + 0.5)
    assert float(_metric(at, "Output (prediction)")) == pytest.approx(expected, rel=1e-3)
    assert float(_metric(at, "Base value")) == pytest.approx(float(reference.to_numpy(np.float64).mean(0) @ WEIGHTS + 0.5), rel=1e-3)
    assert any("Additivity check" in c and "within tolerance" in c for c in texts(at.caption))
    assert _charts(at)
    assert len(elements_of_type(at, "download_button")) >= 2


def test_a_revisited_explanation_shows_at_once_from_the_cache(home: Path) -> None:
    at = _page("lin")
    at.number_input(key="explain.row").set_value(7)
    at.run()
    button(at, "Explain this row").click()
    at.run()
    again = _page("lin")
    again.number_input(key="explain.row").set_value(7)
    again.run()
    assert not [b for b in again.button if b.label == "Explain this row"]
    assert any("loaded from the cache" in c for c in texts(again.caption))


def test_many_rows_show_importance_beeswarm_and_dependence_for_a_chosen_class(home: Path) -> None:
    at = _page("clf")
    at.slider(key="explain.many.count").set_value(12)
    at.run()
    button(at, "Explain 12 rows").click()
    at.run()
    assert_clean(at)
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in _charts(at)]
    assert any("Global importance over 12 row(s)" in t for t in titles)
    assert any("SHAP values of 12 row(s), by feature" in t for t in titles)
    assert any("Dependence on" in t for t in titles)
    at.selectbox(key="explain.many.target").select("b")
    at.run()
    assert_clean(at)


def test_what_if_editing_updates_the_prediction_and_waterfall(home: Path) -> None:
    at = _page("lin")
    prefix = "explain.whatif.lin:1."
    before = float(_metric(at, "Output (prediction)"))
    at.number_input(key=prefix + "f3").set_value(at.number_input(key=prefix + "f3").value + 1.0)
    button(at, "Update").click()
    at.run()
    assert_clean(at)
    after = next(m for m in at.metric if m.label == "Output (prediction)" and m.delta)
    assert float(after.value) == pytest.approx(before + 3.0, rel=1e-3)  # the weight of f3 is 3
    assert after.delta.startswith("+3")


def test_images_get_heat_maps_of_their_top_classes(home: Path) -> None:
    at = _page("img")
    at.slider(key="explain.image.top").set_value(2)
    at.run()
    button(at, "Explain the image(s)").click()
    at.run()
    assert_clean(at)
    figure = json.loads(_charts(at)[0].proto.spec)
    assert "where the evidence for each class lies" in figure["layout"]["title"]["text"]
    assert [trace["type"] for trace in figure["data"]] == ["heatmap"] * 5  # the image, then image + heat per class
    assert any("Additivity check" in c for c in texts(at.caption))


def test_variant_drift_shows_rank_correlation_and_largest_changes(home: Path) -> None:
    at = _page("lin-int8")
    assert any("variant of lin:1" in c for c in texts(at.caption))
    button(at, "Compare explanations").click()
    at.run()
    assert_clean(at)
    assert not at.error, texts(at.error)
    assert float(_metric(at, "Rank correlation (global)")) < 1.0
    changes = at.dataframe[0].value
    assert set(changes["feature"].head(4)) <= {"f0", "f3"}  # the variant swapped the weights of f0 and f3


def test_a_model_without_reference_data_asks_for_uploads(home: Path) -> None:
    at = _page("bare")
    assert any("upload the rows to explain" in t and "Models page" in t for t in texts(at.info))


def test_an_uploaded_background_with_wrong_columns_is_an_error_box(home: Path) -> None:
    at = _page("lin")
    at.file_uploader(key="explain.background_file.lin").set_value(("bad.csv", b"x,y\n1,2\n", "text/csv"))
    at.run()
    assert_clean(at)
    assert any("background data: missing column(s) 'f0'" in e for e in texts(at.error))


def test_the_compare_page_helper_shows_drift_for_aadd_variant(home: Path) -> None:
    def script() -> None:
        from portal.ui import get_portal
        from portal.ui.explain_shap_panels import variant_drift_panel

        portal = get_portal()
        variant_drift_panel(portal, portal.get("lin-int8"))

    at = AppTest.from_function(script, default_timeout=120)
    at.run()
    button(at, "Compare explanations").click()
    at.run()
    assert_clean(at)
    assert float(_metric(at, "Top-4 agreement")) == pytest.approx(1.0)  # only 4 features: k is capped to 4
    assert float(_metric(at, "Rank correlation (global)")) < 1.0


# -- issue 14 item 9 ----------------------------------------------------------------------------
def test_a_computed_explanation_does_not_claim_the_cache_on_a_rerun(home: Path) -> None:
    at = _page("lin")
    at.number_input(key="explain.row").set_value(9)
    at.run()
    button(at, "Explain this row").click()
    at.run()
    at.run()  # any later rerun reads the result back from the cache: it was computed here all the same
    captions = [c for c in texts(at.caption) if "Additivity check" in c]
    assert captions and all("computed in" in c and "loaded from the cache" not in c for c in captions)
    again = _page("lin")  # another browser session: a real cache hit
    again.number_input(key="explain.row").set_value(9)
    again.run()
    captions = [c for c in texts(again.caption) if "Additivity check" in c]
    assert captions and all("loaded from the cache (computed earlier in" in c for c in captions)


def test_an_image_model_that_ignores_its_pixels_says_its_attributions_are_zero(home: Path) -> None:
    portal = Portal.open(home)
    try:
        pixels = pd.DataFrame(np.random.default_rng(4).random((3, 64)).astype(np.float32),
                              columns=[f"pixel_{i}" for i in range(64)])
        add_model(portal, constant_image(), "flat", task="classification",
                  class_labels=[str(d) for d in range(10)], preprocessing=dict(DIGITS_PREPROCESSING),
                  feature_names=list(pixels.columns), reference=pixels)
    finally:
        portal.close()
    at = _page("flat")
    button(at, "Explain the image(s)").click()
    at.run()
    assert_clean(at)
    warning = " ".join(texts(at.warning))
    assert "attributions are numerically zero" in warning
    assert "the model's output does not change with the pixels SHAP varied" in warning
    figure = json.loads(_charts(at)[0].proto.spec)
    assert "numerically zero" in figure["layout"]["title"]["text"]
    assert {(t["zmin"], t["zmax"]) for t in figure["data"] if "zmin" in t} == {(-1.0, 1.0)}


def test_an_image_model_that_uses_its_pixels_gets_no_zero_warning(home: Path) -> None:
    at = _page("img")
    button(at, "Explain the image(s)").click()
    at.run()
    assert_clean(at)
    assert not any("numerically zero" in w for w in texts(at.warning))
