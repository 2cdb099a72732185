"""LIME beside SHAP: tabular weights, categories, images, determinism, cache, budget, agreement, CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pandas as pd
import pytest
from explain_models import CODES, linear, names, number_plus_category
from onnx import TensorProto, helper, numpy_helper
from tiny import add_model, image_model, softmax_classifier

from portal import InvalidInputError, Portal
from portal.explain import (
    BudgetExceededError,
    ExplainSettings,
    LimeImageExplanation,
    LimeJob,
    LimeTabularExplanation,
    explain_agreement,
    explain_images,
    explain_rows,
)
from portal.explain.agreement import compare_attributions

COEF = np.array([3.0, -2.0, 1.0, -0.5], np.float32)  # well apart, so their order is unambiguous
LIME = ExplainSettings(method="lime")
SCALED = ExplainSettings(method="lime", lime_discretize=False)


def _standardized(rows: int, n: int, *, seed: int) -> pd.DataFrame:
    """Columns with mean 0 and (population) standard deviation 1 exactly, as LIME's scaler sees them."""
    values = np.random.default_rng(seed).normal(size=(rows, n))
    values = (values - values.mean(axis=0)) / values.std(axis=0)
    return pd.DataFrame(values.astype(np.float32), columns=names(n))


@pytest.fixture
def lin(portal: Portal) -> pd.DataFrame:
    """y = x · COEF + 0.5 over 4 standardized features; returns the reference data."""
    reference = _standardized(400, 4, seed=1)
    add_model(portal, linear(COEF), "lin", task="regression", reference=reference, feature_names=names(4))
    return reference


def bend() -> onnx.ModelProto:
    """x[N, 2] → y = 10·x0² + x1: flat in x0 at 0, where a straight line sees no effect of x0 at all."""
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "x"], ["sq"]), helper.make_node("Gemm", ["sq", "A", "Z"], ["bent"]),
         helper.make_node("Gemm", ["x", "B", "Z"], ["straight"]), helper.make_node("Add", ["bent", "straight"], ["y"])],
        "bend", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])],
        [numpy_helper.from_array(np.array([[10.0], [0.0]], np.float32), "A"),
         numpy_helper.from_array(np.array([[0.0], [1.0]], np.float32), "B"),
         numpy_helper.from_array(np.zeros(1, np.float32), "Z")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    return model


def bend_reference() -> pd.DataFrame:
    """Row 0 sits where the bend is flat (x0 = 0); rows 1 and 2 on its steep side; then standardized noise."""
    rest = _standardized(200, 2, seed=6)
    head = pd.DataFrame([[0.0, 1.0], [2.0, 0.1], [-2.0, 0.1]], columns=names(2), dtype=np.float32)
    return pd.concat([head, rest], ignore_index=True)


def _order(values: np.ndarray) -> list[int]:
    return np.argsort(-np.abs(values), kind="stable").tolist()


# -- tabular values -----------------------------------------------------------------------
def test_lime_on_scaled_features_recovers_a_linear_models_coefficients(portal: Portal, lin: pd.DataFrame) -> None:
    expl = explain_rows(portal, "lin", lin.head(3), settings=SCALED)
    assert isinstance(expl, LimeTabularExplanation)
    for weights in expl.weights:  # per standard deviation, and every standard deviation is 1
        assert np.sign(weights).tolist() == np.sign(COEF).tolist()
        assert _order(weights) == _order(COEF)
        np.testing.assert_allclose(weights, COEF, rtol=0.02)
    np.testing.assert_allclose(expl.scores, 1.0, atol=1e-6)  # a straight line fits a linear model exactly
    np.testing.assert_allclose(expl.local_predictions, expl.model_outputs, rtol=1e-3)


def test_lime_with_quartile_bins_gives_the_coefficients_signs_and_order_on_a_top_quartile_row(
    portal: Portal, lin: pd.DataFrame
) -> None:
    row = pd.DataFrame([[2.0] * 4], columns=names(4))  # in the top quartile of every feature
    expl = explain_rows(portal, "lin", row, settings=LIME)
    assert np.sign(expl.weights[0]).tolist() == np.sign(COEF).tolist()
    assert _order(expl.weights[0]) == _order(COEF)
    assert all(condition.startswith(f"f{j} > ") for j, condition in enumerate(expl.conditions[0]))
    np.testing.assert_array_equal(expl.instance, 1.0)  # every condition holds for the row itself
    chosen = expl.select()  # intercept + contributions = the surrogate at the row, exactly
    np.testing.assert_allclose(chosen.base_values + chosen.values.sum(axis=1), chosen.outputs, rtol=1e-9)


def test_a_string_column_is_explained_as_its_category(portal: Portal) -> None:
    rng = np.random.default_rng(5)
    reference = pd.DataFrame({"num": rng.normal(size=90).astype(np.float32),
                              "cat": rng.choice(list(CODES), size=90).astype(object)})
    add_model(portal, number_plus_category(), "mixed", task="regression", reference=reference)
    rows = pd.DataFrame({"num": [0.0, 0.0], "cat": ["high", "low"]})
    expl = explain_rows(portal, "mixed", rows, settings=SCALED)
    assert [c[1] for c in expl.conditions] == ["cat=high", "cat=low"]
    high, low = expl.weights[:, 1]
    assert high > 0 > low  # "high" (code 3.0) lifts y above the other categories, "low" (−1.0) lowers it
    assert expl.data["cat"].tolist() == ["high", "low"]
    assert "cat=high" in expl.describe()
    np.testing.assert_allclose(expl.weights[:, 0], 2 * reference["num"].std(ddof=0), rtol=0.02)  # y = 2·num + …


def test_a_classifier_explains_each_rows_predicted_class_unless_a_class_is_chosen(portal: Portal) -> None:
    reference = _standardized(60, 4, seed=2)
    add_model(portal, softmax_classifier(4, 3), "clf", task="classification", class_labels=["a", "b", "c"],
              reference=reference, feature_names=names(4))
    expl = explain_rows(portal, "clf", reference.head(5), settings=LIME)
    assert expl.targets == [["a", "b", "c"][i] for i in expl.outputs.argmax(axis=1)]
    chosen = explain_rows(portal, "clf", reference.head(5), target="c", settings=LIME)
    assert chosen.targets == ["c"] * 5
    with pytest.raises(InvalidInputError, match="explain again with target 'a'"):
        chosen.select("a")


# -- determinism, cache, budget -----------------------------------------------------------
def test_same_seed_is_identical_another_differs_and_a_row_does_not_depend_on_its_neighbours(
    portal: Portal, lin: pd.DataFrame
) -> None:
    rows = lin.iloc[[3, 8]].reset_index(drop=True)
    first = LimeJob(portal, "lin", rows, settings=LIME).run()
    portal_cache = Path(portal.settings.home) / "cache" / "explain"
    for entry in portal_cache.glob("*/*.npz"):
        entry.unlink()
    again = LimeJob(portal, "lin", rows, settings=LIME).run()
    assert not again.from_cache
    np.testing.assert_array_equal(first.weights, again.weights)
    other = LimeJob(portal, "lin", rows, settings=ExplainSettings(method="lime", seed=1)).run()
    assert not np.array_equal(first.weights, other.weights)
    alone = LimeJob(portal, "lin", rows.iloc[[1]], settings=LIME).run()
    np.testing.assert_array_equal(alone.weights[0], first.weights[1])


class CountingPortal(Portal):
    """A real portal that counts model calls."""

    calls = 0

    def predict(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return super().predict(*args, **kwargs)


def test_a_cached_lime_explanation_loads_without_calling_the_model(portal_home: Path) -> None:
    counting = CountingPortal.open(portal_home)
    try:
        reference = _standardized(50, 4, seed=3)
        add_model(counting, linear(COEF), "lin", task="regression", reference=reference, feature_names=names(4))
        first = explain_rows(counting, "lin", reference.head(2), settings=LIME)
        counting.calls = 0
        second = explain_rows(counting, "lin", reference.head(2), settings=LIME)
        assert counting.calls == 0 and second.from_cache
        np.testing.assert_array_equal(first.weights, second.weights)
        assert second.conditions == first.conditions and second.training == first.training
    finally:
        counting.close()


def test_lime_settings_stay_out_of_shaps_cache_key_and_shap_settings_out_of_limes() -> None:
    shap = ExplainSettings()
    assert shap.key() == ExplainSettings(method="lime", lime_samples=100, lime_discretize=False).key()
    assert shap.lime_key() == ExplainSettings(explainer="exact", background_size=7).lime_key()
    assert shap.lime_key() != ExplainSettings(lime_samples=100).lime_key()


@pytest.mark.parametrize(("field", "value", "message"), [
    ("method", "anchor", "invalid method"), ("lime_samples", 10, "lime_samples must be at least 50"),
    ("lime_kernel_width", 0.0, "lime_kernel_width must be positive"), ("lime_segments", 1, "at least 2"),
])
def test_invalid_lime_settings_are_refused(field: str, value: Any, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        ExplainSettings(**{field: value})


def test_samples_are_capped_to_the_budget_and_a_run_that_cannot_fit_is_refused(
    portal: Portal, lin: pd.DataFrame
) -> None:
    capped = LimeJob(portal, "lin", lin.head(4), settings=ExplainSettings(method="lime", max_model_rows=2000))
    assert capped.estimate.max_evals == 500 and capped.estimate.model_rows == 2000
    assert capped.estimate.describe().startswith("lime explainer: 4 row(s) × 500 evaluations")
    assert "capped from 5,000 to 500" in capped.estimate.notes[0]
    expl = capped.run()
    assert expl.num_samples == 500 and expl.model_rows <= 2000 and expl.notes == list(capped.estimate.notes)
    tight = LimeJob(portal, "lin", lin.head(4), settings=ExplainSettings(method="lime", max_model_rows=100))
    with pytest.raises(BudgetExceededError, match="at least 200 model evaluations"):
        _ = tight.estimate


def test_an_image_model_given_rows_is_refused_for_lime_too(portal: Portal) -> None:
    add_model(portal, image_model(), "img", task="classification", class_labels=[str(d) for d in range(10)])
    with pytest.raises(InvalidInputError, match="takes images"):
        explain_rows(portal, "img", pd.DataFrame({"x": [1.0]}), settings=LIME)


# -- images -------------------------------------------------------------------------------
def test_images_get_superpixel_weights_for_their_top_classes(portal: Portal) -> None:
    add_model(portal, image_model(), "img", task="classification", class_labels=[str(d) for d in range(10)])
    images = np.random.default_rng(4).random(size=(2, 1, 8, 8)).astype(np.float32)
    settings = ExplainSettings(method="lime", top_classes=2, lime_samples=300)
    expl = explain_images(portal, "img", images, settings=settings)
    assert isinstance(expl, LimeImageExplanation)
    np.testing.assert_array_equal(expl.class_indices, np.argsort(-expl.outputs, axis=1)[:, :2])
    for i in range(2):
        count = expl.segment_count(i)
        assert 4 <= count <= 16 and sorted(np.unique(expl.segments[i])) == list(range(count))
        assert np.isfinite(expl.weights[i, :, :count]).all() and np.isnan(expl.weights[i, :, count:]).all()
        heat = expl.pixel_weights(i, 0)
        assert heat.shape == (8, 8) and heat[0, 0] == expl.weights[i, 0, expl.segments[i, 0, 0]]
    assert expl.model_rows == 2 * 300 and ((expl.scores > 0) & (expl.scores <= 1)).all()
    again = explain_images(portal, "img", images, settings=settings)
    assert again.from_cache
    np.testing.assert_array_equal(again.weights, expl.weights)


# -- agreement ----------------------------------------------------------------------------
def _compare(a: list[list[float]], b: list[list[float]], k: int = 2) -> Any:
    return compare_attributions(np.array(a), np.array(b), feature_names=names(4), explained=["y"] * len(a), top_k=k)


def test_identical_rankings_agree_fully() -> None:
    values = [[4.0, -3.0, 2.0, 1.0], [0.1, 0.4, -0.3, 0.2]]
    report = _compare(values, [[2 * v for v in row] for row in values])  # another scale, same ranking
    s = report.summary()
    assert s["mean_row_spearman"] == pytest.approx(1.0) and s["spearman"] == pytest.approx(1.0)
    assert s["mean_row_top_k_overlap"] == 1.0 and s["mean_sign_agreement"] == 1.0
    assert report.flagged == [] and "no row disagrees much" in report.describe()


def test_reversed_rankings_correlate_negatively_share_no_top_feature_and_are_flagged() -> None:
    report = _compare([[4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0]], [[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]])
    assert report.per_row["spearman"].tolist() == pytest.approx([-1.0, 1.0])
    assert report.per_row["top_k_overlap"].tolist() == [0.0, 1.0]
    assert report.mean_row_spearman == pytest.approx(0.0) and report.flagged == [0]
    assert report.per_row.loc[0, "shap_top"] == "f0, f1" and report.per_row.loc[0, "lime_top"] == "f3, f2"
    assert "rows where they disagree most:\n  row 0" in report.describe()


def test_opposite_directions_are_counted() -> None:
    report = _compare([[4.0, -3.0, 0.0, 0.0]], [[-4.0, 3.0, 0.0, 0.0]])
    assert report.per_row["spearman"][0] == pytest.approx(1.0) and report.mean_sign_agreement == 0.0


def test_shap_and_scaled_lime_agree_on_a_linear_model(portal: Portal, lin: pd.DataFrame) -> None:
    """Both reduce to coefficient × (value − mean) there: one ranking, whatever the row."""
    rows = lin.sample(8, random_state=0).reset_index(drop=True)
    whole = ExplainSettings(method="lime", lime_discretize=False, background_size=len(lin))  # both: mean exactly 0
    report = explain_agreement(portal, "lin", rows, settings=whole, top_k=2)
    np.testing.assert_allclose(report.lime_values, report.shap_values, rtol=0.05, atol=0.05)
    assert report.mean_row_spearman > 0.95 and report.spearman == pytest.approx(1.0)
    assert report.mean_row_top_k_overlap == 1.0 and report.flagged == []
    assert report.shap is not None and report.lime is not None and report.lime.num_samples == 5000


def test_where_the_model_bends_they_disagree_and_the_row_is_flagged(portal: Portal) -> None:
    reference = bend_reference()
    add_model(portal, bend(), "bend", task="regression", reference=reference, feature_names=names(2))
    report = explain_agreement(portal, "bend", reference.head(3), settings=SCALED, top_k=1)
    # row 0: SHAP gives x0 its gap to the average 10·E[x0²] ≈ −10; LIME's line through the row's x0 = 0 gives 0
    assert report.per_row.loc[0, "shap_top"] == "f0" and report.per_row.loc[0, "lime_top"] == "f1"
    assert report.per_row["top_k_overlap"].tolist() == [0.0, 1.0, 1.0]
    assert report.per_row.loc[0, "spearman"] == pytest.approx(-1.0) and report.flagged == [0]
    assert report.worst(1)["row"].tolist() == [0]


def test_agreement_rows_default_to_a_seeded_sample_of_the_reference(portal: Portal, lin: pd.DataFrame) -> None:
    report = explain_agreement(portal, "lin", settings=SCALED)
    assert len(report.per_row) == 20
    assert report.to_dict()["meaning"].startswith("SHAP and LIME measure different things")


# -- CLI ----------------------------------------------------------------------------------
def _cli(args: list[str], home: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    from typer.testing import CliRunner

    from portal.cli import app

    monkeypatch.setenv("PORTAL_HOME", str(home))
    return CliRunner().invoke(app, args)


def test_cli_explains_with_lime_and_writes_weights(
    lin: pd.DataFrame, portal_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lin.head(3).to_csv(tmp_path / "rows.csv", index=False)
    result = _cli(["explain", "lin", "-i", str(tmp_path / "rows.csv"), "--method", "lime", "--samples", "1000",
                   "--json", "-o", str(tmp_path / "lime.csv")], portal_home, monkeypatch)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["method"] == "lime" and doc["num_samples"] == 1000 and len(doc["weights"]) == 3
    assert np.array(doc["weights"]).shape == (3, 4) and " f0 " in f" {doc['conditions'][0][0]} "
    assert pd.read_csv(tmp_path / "lime.csv").columns[:6].tolist() == [
        "row", "explained", "intercept", "local_prediction", "model_output", "local_r2"]


def test_cli_agreement_prints_the_figures_and_the_rows_that_disagree(
    lin: pd.DataFrame, portal_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lin.head(6).to_csv(tmp_path / "rows.csv", index=False)
    result = _cli(["explain", "lin", "-i", str(tmp_path / "rows.csv"), "--agreement", "--top-k", "2", "--json"],
                  portal_home, monkeypatch)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["rows"] == 6 and doc["top_k"] == 2 and len(doc["per_row"]) == 6
    assert 0 <= doc["mean_row_top_k_overlap"] <= 1 and doc["meaning"]
    text = _cli(["explain", "lin", "-i", str(tmp_path / "rows.csv"), "--agreement"], portal_home, monkeypatch)
    assert text.stdout.startswith("SHAP vs LIME on 6 row(s) of lin:1, top 4 features:")


def test_cli_refuses_an_unknown_method_in_one_line(
    lin: pd.DataFrame, portal_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lin.head(1).to_csv(tmp_path / "rows.csv", index=False)
    result = _cli(["explain", "lin", "-i", str(tmp_path / "rows.csv"), "--method", "anchors"], portal_home,
                  monkeypatch)
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: invalid method 'anchors': use shap or lime"
