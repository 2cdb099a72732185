"""Explanation figures, the HTML report and the CSV export, built from real explanations."""

from __future__ import annotations

import io
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from explain_models import add_variant, constant_image, frame, linear, names, register_linear
from tiny import add_model, image_model

from portal import Portal
from portal.explain import figures as xf
from portal.explain import (
    ExplainSettings,
    TabularExplanation,
    explain_drift,
    explain_images,
    explain_rows,
)


@pytest.fixture
def expl(portal: Portal) -> TabularExplanation:
    register_linear(portal, 14)
    return explain_rows(portal, "lin", frame(6, names(14), seed=2), settings=ExplainSettings(max_evals=29))


def test_waterfall_walks_from_base_value_to_output_with_feature_values(expl: TabularExplanation) -> None:
    fig = xf.waterfall(expl, 2, max_features=5)
    trace = fig.data[0]
    chosen = expl.select()
    assert trace.y[0] == "base value" and trace.y[-1] == "output (prediction)"
    assert trace.y[-2] == "9 other features"
    assert sum(trace.x[:-1]) == pytest.approx(chosen.outputs[2], abs=1e-9)  # base + steps = output
    top = int(np.argmax(np.abs(chosen.values[2])))
    assert trace.y[1] == f"{expl.feature_names[top]} = {expl.data.iloc[2, top]:.4g}"
    assert "Why row 2 → prediction" in fig.layout.title.text


def test_importance_bar_is_mean_absolute_shap_most_important_on_top(expl: TabularExplanation) -> None:
    fig = xf.importance_bar(expl, max_features=4)
    mean = np.abs(expl.select().values).mean(axis=0)
    assert list(fig.data[0].x) == pytest.approx(sorted(mean)[-4:])
    assert fig.data[0].y[-1] == expl.feature_names[int(np.argmax(mean))]


def test_beeswarm_has_one_dot_per_row_and_feature(expl: TabularExplanation) -> None:
    fig = xf.beeswarm(expl, max_features=10)
    assert len(fig.data[0].x) == 6 * 10
    assert fig.data[0].marker.cmin == 0 and fig.data[0].marker.cmax == 1


def test_dependence_coloured_by_a_category_has_a_trace_per_category(portal: Portal) -> None:
    from explain_models import CODES, number_plus_category

    reference = pd.DataFrame({"num": np.linspace(-1, 1, 12).astype(np.float32), "cat": list(CODES) * 4})
    add_model(portal, number_plus_category(), "mixed", task="regression", reference=reference)
    expl = explain_rows(portal, "mixed", reference.head(9))
    fig = xf.dependence(expl, "num", color_by="cat")
    assert sorted(t.name for t in fig.data) == ["cat = high", "cat = low", "cat = mid"]
    numeric = xf.dependence(expl, "cat", color_by="num")
    assert list(numeric.data[0].x) == reference["cat"].head(9).tolist()


def test_unknown_dependence_feature_is_refused(expl: TabularExplanation) -> None:
    from portal import InvalidInputError

    with pytest.raises(InvalidInputError, match="unknown feature 'nope'"):
        xf.dependence(expl, "nope")


def test_image_overlay_has_the_image_and_a_heat_map_per_class(portal: Portal) -> None:
    add_model(portal, image_model(), "img", task="classification", class_labels=[str(d) for d in range(10)])
    expl = explain_images(portal, "img", np.random.default_rng(0).random((1, 1, 8, 8)).astype(np.float32),
                          settings=ExplainSettings(top_classes=2, max_evals=40))
    fig = xf.image_overlay(expl, 0)
    assert [t.type for t in fig.data] == ["heatmap"] * 5
    heat = np.asarray(fig.data[2].z)
    np.testing.assert_allclose(heat, expl.values[0, ..., 0].sum(axis=2))
    html = xf.html_report(expl)
    assert "Images shown: 0" in html and "partition, blur(4,4)" in html


def test_drift_figures_compare_parent_andadd_variant(portal: Portal) -> None:
    _, weights, _ = register_linear(portal, 6)
    add_variant(portal, "lin:1", linear(weights[::-1].copy()), "lin-rev", 6)
    report = explain_drift(portal, "lin-rev", rows=frame(3, names(6)))
    rows = xf.drift_rows(report)
    assert [t.name for t in rows.data] == ["rank correlation (Spearman)", f"top-{report.top_k} agreement"]
    importance = xf.drift_importance(report)
    assert [t.name for t in importance.data] == ["lin:1", "lin-rev:1"]


def test_html_report_is_standalone_and_escapesnames(portal: Portal) -> None:
    names = ["<b>bold</b>", "=cmd()", "plain"]
    reference = pd.DataFrame(np.random.default_rng(1).normal(size=(20, 3)).astype(np.float32), columns=names)
    add_model(portal, linear(np.ones(3, np.float32)), "odd", task="regression", reference=reference, feature_names=names)
    expl = explain_rows(portal, "odd", reference.head(3))
    html = xf.html_report(expl, [0, 2], title="<script>alert(1)</script>")
    assert html.startswith("<!DOCTYPE html>") and "plotly.js" in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert(1)</script>" not in html
    assert "Rows shown: 0, 2" in html and "within tolerance" in html


def test_shap_csv_escapes_formulas_and_round_trips_the_values(portal: Portal) -> None:
    from explain_models import number_plus_category

    reference = pd.DataFrame({"num": np.linspace(-1, 1, 8).astype(np.float32),
                              "cat": ["=HYPERLINK(\"x\")", "low"] * 4})  # an unknown category: code 0
    add_model(portal, number_plus_category(), "mixed", task="regression", reference=reference)
    expl = explain_rows(portal, "mixed", reference.head(2))
    frame = pd.read_csv(io.BytesIO(xf.shap_csv(expl)))
    assert frame["value_cat"].tolist() == ["'=HYPERLINK(\"x\")", "low"]
    np.testing.assert_allclose(frame[["shap_num", "shap_cat"]].to_numpy(), expl.select().values, atol=1e-12)
    assert frame.columns[:5].tolist() == ["row", "explained", "base_value", "output", "additivity_error"]


# -- numerically zero attributions (issue 14 item 9) -----------------------------------------------
@pytest.fixture
def image_expl(portal: Portal) -> Any:
    add_model(portal, image_model(), "img", task="classification", class_labels=[str(d) for d in range(10)])
    return explain_images(portal, "img", np.random.default_rng(0).random((1, 1, 8, 8)).astype(np.float32),
                          settings=ExplainSettings(top_classes=2, max_evals=40))


def _overlays(fig: Any) -> list[Any]:
    return [t for t in fig.data if t.zmin is not None]


def test_rounding_noise_is_drawn_on_a_neutral_scale_and_named(image_expl: Any) -> None:
    noise = np.random.default_rng(1).choice([-4e-18, 4e-18], size=image_expl.values.shape)
    fig = xf.image_overlay(replace(image_expl, values=noise), 0)
    # ± the output scale (probabilities: 1), not ± 4e-18, which painted every pixel full red or blue
    assert [(t.zmin, t.zmax) for t in _overlays(fig)] == [(-1.0, 1.0), (-1.0, 1.0)]
    assert "attributions are numerically zero (largest |SHAP| 4.0e-18)" in fig.layout.title.text


def test_real_attributions_keep_a_scale_of_their_largest_value(image_expl: Any) -> None:
    fig = xf.image_overlay(image_expl, 0)
    largest = float(np.abs(image_expl.values[0, ..., :2]).max())
    assert [(t.zmin, t.zmax) for t in _overlays(fig)] == [(-largest, largest)] * 2
    assert "where the evidence for each class lies" in fig.layout.title.text


def test_a_model_that_ignores_its_pixels_gets_zero_attributions(portal: Portal) -> None:
    add_model(portal, constant_image(), "flat", task="classification", class_labels=[str(d) for d in range(10)])
    expl = explain_images(portal, "flat", np.random.default_rng(0).random((1, 1, 8, 8)).astype(np.float32),
                          settings=ExplainSettings(top_classes=2, max_evals=40))
    assert xf.numerically_zero(expl.values, expl.outputs)
    assert [(t.zmin, t.zmax) for t in _overlays(xf.image_overlay(expl, 0))] == [(-1.0, 1.0)] * 2


@pytest.mark.parametrize(("largest", "output", "zero"), [
    (4e-18, 0.5, True), (1e-10, 0.5, True), (1e-9, 0.5, False), (1e-6, 1.0, False),  # absolute below a scale of 1
    (5e-8, 1e3, True), (5e-7, 1e3, False),  # relative to larger outputs: 1e-10 × 1,000
    (0.0, np.nan, True), (np.nan, 0.5, True),  # non-finite values are left out
])
def test_numerically_zero_is_relative_to_the_output_scale(largest: float, output: float, zero: bool) -> None:
    values = np.array([[largest, -largest / 2]])
    assert xf.numerically_zero(values, np.array([[output, 0.25]])) is zero


def test_tabular_figures_of_zero_attributions_use_a_neutral_axis(expl: TabularExplanation) -> None:
    flat = replace(expl, values=np.full_like(expl.values, 3e-17))
    scale = max(1.0, float(np.abs(expl.outputs).max()))
    assert tuple(xf.beeswarm(flat).layout.xaxis.range) == (-scale, scale)
    assert tuple(xf.dependence(flat, expl.feature_names[0]).layout.yaxis.range) == (-scale, scale)
    assert xf.beeswarm(expl).layout.xaxis.range is None  # real attributions: plotly's own range
