"""SHAP explanations: analytic values on linear models, additivity, seeds, cache, budget, bad input."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from explain_models import (
    CODES,
    add_variant,
    analytic,
    constant,
    frame,
    linear,
    names,
    number_plus_category,
    register_linear,
)
from tiny import add_model, image_model, softmax_classifier

from portal import InvalidInputError, Portal
from portal.explain import (
    BudgetExceededError,
    ExplainSettings,
    ImageJob,
    TabularJob,
    clear_cache,
    explain_drift,
    explain_images,
    explain_rows,
    is_warm,
    warm_up_shap,
)

RNG = np.random.default_rng(7)


# -- values -------------------------------------------------------------------------------
def test_exact_explainer_matches_analytic_shap_of_a_linear_model(portal: Portal) -> None:
    version, weights, reference = register_linear(portal, 4)
    rows = frame(3, names(4), seed=5)
    expl = explain_rows(portal, "lin", rows)  # 60 reference rows ≤ 100: the whole background is used
    assert expl.explainer == "exact"
    assert expl.background.method == "all" and expl.background.rows == 60
    chosen = expl.select()
    np.testing.assert_allclose(chosen.values, analytic(weights, rows, reference), atol=2e-5)
    x = reference.to_numpy(np.float64)
    np.testing.assert_allclose(chosen.base_values, np.full(3, (x @ weights.astype(np.float64)).mean() + 0.5), atol=2e-5)
    assert expl.additive and expl.max_additivity_error < 1e-9


def test_permutation_explainer_matches_analytic_shap_of_a_linear_model(portal: Portal) -> None:
    version, weights, reference = register_linear(portal, 14)
    rows = frame(2, names(14), seed=9)
    expl = explain_rows(portal, "lin", rows, background=reference, settings=ExplainSettings(max_evals=29))
    assert expl.explainer == "permutation" and expl.max_evals == 29  # one antithetic permutation
    np.testing.assert_allclose(expl.select().values, analytic(weights, rows, reference), atol=2e-5)


def test_every_explanation_carries_an_additivity_check(portal: Portal) -> None:
    add_model(portal, softmax_classifier(12, 3), "clf", task="classification", class_labels=["a", "b", "c"],
              reference=frame(40, names(12)), feature_names=names(12))
    expl = explain_rows(portal, "clf", frame(4, names(12), seed=3), settings=ExplainSettings(max_evals=100))
    errors = expl.additivity_error
    assert errors.shape == (4, 3)
    assert float(errors.max()) == expl.max_additivity_error <= expl.tolerance
    assert expl.to_dict()["additivity_error"] == pytest.approx(
        np.abs(expl.select().base_values + expl.select().values.sum(1) - expl.select().outputs).tolist())


def test_classifier_explains_the_predicted_class_by_default_and_any_chosen_class(portal: Portal) -> None:
    add_model(portal, softmax_classifier(5, 3), "clf", task="classification", class_labels=["a", "b", "c"],
              reference=frame(40, names(5)), feature_names=names(5))
    expl = explain_rows(portal, "clf", frame(6, names(5), seed=4))
    predicted = portal.predict("clf", frame(6, names(5), seed=4)).to_frame()["prediction"].tolist()
    assert expl.select().targets == predicted
    chosen = expl.select("b")
    assert chosen.targets == ["b"] * 6
    np.testing.assert_allclose(chosen.outputs, portal.predict("clf", frame(6, names(5), seed=4)).outputs["probs"][:, 1], atol=1e-6)
    with pytest.raises(InvalidInputError, match="unknown class 'z'; expected one of a, b, c"):
        expl.select("z")


def test_string_inputs_are_explained_as_categories(portal: Portal) -> None:
    reference = pd.DataFrame({"num": RNG.normal(size=30).astype(np.float32),
                              "cat": RNG.choice(list(CODES), size=30).astype(object)})
    add_model(portal, number_plus_category(), "mixed", task="regression", reference=reference)
    rows = pd.DataFrame({"num": [1.5, -0.5], "cat": ["high", "low"]})
    expl = explain_rows(portal, "mixed", rows)
    codes = reference["cat"].map(CODES).to_numpy(np.float64)
    expected = np.column_stack([2 * (rows["num"].to_numpy() - reference["num"].to_numpy(np.float64).mean()),
                                rows["cat"].map(CODES).to_numpy() - codes.mean()])
    np.testing.assert_allclose(expl.select().values, expected, atol=1e-5)
    assert expl.data["cat"].tolist() == ["high", "low"]  # shown as strings, not codes


def test_a_scikit_learn_pipeline_with_string_columns_is_explained_like_the_wine_demo(portal: Portal) -> None:
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    n = 120
    frame = pd.DataFrame({"a": RNG.normal(size=n), "b": RNG.normal(size=n), "band": RNG.choice(["low", "high"], size=n)})
    target = np.where(frame["a"] + (frame["band"] == "high") * 1.5 > 0.7, "yes", "no")
    pipe = Pipeline([("cols", ColumnTransformer([("num", StandardScaler(), ["a", "b"]),
                                                 ("cat", OneHotEncoder(handle_unknown="ignore"), ["band"])])),
                     ("clf", LogisticRegression())]).fit(frame, target)
    types = [("a", FloatTensorType([None, 1])), ("b", FloatTensorType([None, 1])), ("band", StringTensorType([None, 1]))]
    model = to_onnx(pipe, initial_types=types, options={id(pipe): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3})
    reference = frame.assign(a=frame["a"].astype(np.float32), b=frame["b"].astype(np.float32), target=target)
    add_model(portal, model, "mini-wine", task="classification", class_labels=["no", "yes"], reference=reference)
    expl = explain_rows(portal, "mini-wine", reference.head(8))
    assert expl.feature_names == ["a", "b", "band"] and expl.additive
    chosen = expl.select("yes")
    band_effect = chosen.values[:, 2]
    high = (reference.head(8)["band"] == "high").to_numpy()
    assert (band_effect[high] > 0).all() and (band_effect[~high] < 0).all()  # "high" pushes towards "yes"
    np.testing.assert_allclose(chosen.outputs, pipe.predict_proba(frame.head(8))[:, 1], atol=1e-5)


# -- determinism and cache -----------------------------------------------------------------
def test_same_seed_gives_identical_values_and_another_seed_differs(portal: Portal) -> None:
    add_model(portal, softmax_classifier(12, 3, seed=2), "clf", task="classification",
              reference=frame(40, names(12)), feature_names=names(12))
    rows = frame(2, names(12), seed=8)
    first = explain_rows(portal, "clf", rows, settings=ExplainSettings(max_evals=75, seed=1))
    clear_cache(portal)
    again = explain_rows(portal, "clf", rows, settings=ExplainSettings(max_evals=75, seed=1))
    other = explain_rows(portal, "clf", rows, settings=ExplainSettings(max_evals=75, seed=2))
    assert not again.from_cache
    np.testing.assert_array_equal(first.values, again.values)
    assert not np.allclose(first.values, other.values)


class CountingPortal(Portal):
    """A real portal that counts model calls."""

    calls = 0

    def predict(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return super().predict(*args, **kwargs)


def test_cache_hit_returns_identical_values_without_calling_the_model(portal_home: Path) -> None:
    counting = CountingPortal.open(portal_home)
    try:
        register_linear(counting, 6)
        rows = frame(3, names(6), seed=2)
        first = explain_rows(counting, "lin", rows)
        assert counting.calls > 0 and not first.from_cache
        counting.calls = 0
        second = explain_rows(counting, "lin", rows)
        assert counting.calls == 0 and second.from_cache
        np.testing.assert_array_equal(first.values, second.values)
        np.testing.assert_array_equal(first.base_values, second.base_values)
        assert TabularJob(counting, "lin", rows).estimate.cached
        assert list((portal_home / "cache" / "explain").glob("*/*.npz"))
    finally:
        counting.close()


def test_other_rows_background_or_settings_miss_the_cache(portal: Portal) -> None:
    _, _, reference = register_linear(portal, 3)
    rows = frame(2, names(3))
    explain_rows(portal, "lin", rows)
    assert TabularJob(portal, "lin", rows).cached
    assert not TabularJob(portal, "lin", frame(2, names(3), seed=4)).cached
    assert not TabularJob(portal, "lin", rows, background=reference.head(30)).cached
    assert not TabularJob(portal, "lin", rows, settings=ExplainSettings(seed=3)).cached


# -- budget ------------------------------------------------------------------------------
def test_a_1000_feature_model_stays_within_its_budget(portal: Portal) -> None:
    register_linear(portal, 1000, name="wide")
    job = TabularJob(portal, "wide", frame(1, names(1000), seed=3))
    plan = job.estimate
    assert plan.explainer == "permutation" and plan.max_evals == 2001
    assert plan.background_rows < 100 and any("256 MiB" in note for note in plan.notes)
    expl = job.run()
    assert expl.model_rows <= plan.model_rows <= ExplainSettings().max_model_rows
    assert expl.additive and expl.notes == list(plan.notes)


def test_a_run_that_cannot_fit_the_budget_is_refused_before_it_starts(portal: Portal) -> None:
    register_linear(portal, 1000, name="wide")
    job = TabularJob(portal, "wide", frame(5, names(1000), seed=3), settings=ExplainSettings(max_model_rows=50_000))
    with pytest.raises(BudgetExceededError, match=r"needs at least 100,050 model evaluations .* over the budget of 50,000"):
        _ = job.estimate
    with pytest.raises(BudgetExceededError):
        job.run()


def test_evaluations_are_capped_to_fit_the_budget(portal: Portal) -> None:
    register_linear(portal, 20, name="mid")
    settings = ExplainSettings(max_evals=4100, max_model_rows=2 * 410 * 60)
    plan = TabularJob(portal, "mid", frame(2, names(20)), settings=settings).estimate
    assert plan.max_evals == 410 and plan.model_rows <= settings.max_model_rows
    assert plan.notes == ("max_evals capped from 4,100 to 410 per row to stay within the budget",)


def test_a_run_past_its_time_budget_is_stopped(portal: Portal) -> None:
    register_linear(portal, 20, name="mid")
    ticks = itertools.count(0, 40.0)  # every look at the clock: 40 s later
    job = TabularJob(portal, "mid", frame(2, names(20)), settings=ExplainSettings(max_seconds=100),
                     clock=lambda: next(ticks))
    with pytest.raises(BudgetExceededError, match=r"stopped after 120\.0 s, over the time budget of 100 s"):
        job.run()
    assert not TabularJob(portal, "mid", frame(2, names(20)), settings=ExplainSettings(max_seconds=100)).cached


def test_progress_is_reported_up_to_done(portal: Portal) -> None:
    register_linear(portal, 12)
    seen: list[float] = []
    explain_rows(portal, "lin", frame(2, names(12)), progress=lambda f, text: seen.append(f))
    assert seen == sorted(seen) and seen[-1] == 1.0 and len(seen) > 2


# -- bad input -------------------------------------------------------------------------------
def test_constant_model_has_zero_attributions_and_the_constant_as_base(portal: Portal) -> None:
    add_model(portal, constant(4, 0.7), "flat", task="regression", reference=frame(20, names(4)),
              feature_names=names(4))
    expl = explain_rows(portal, "flat", frame(3, names(4), seed=1))
    np.testing.assert_allclose(expl.select().values, np.zeros((3, 4)), atol=1e-12)  # zero up to float rounding
    np.testing.assert_allclose(expl.select().base_values, 0.7, atol=1e-6)


def test_background_with_wrong_columns_is_refused(portal: Portal) -> None:
    register_linear(portal, 3)
    wrong = pd.DataFrame({"x": [1.0], "y": [2.0]})
    with pytest.raises(InvalidInputError, match=r"^background data: missing column\(s\) 'f0', 'f1', 'f2'"):
        explain_rows(portal, "lin", frame(1, names(3)), background=wrong)


def test_empty_background_is_refused(portal: Portal) -> None:
    register_linear(portal, 3)
    with pytest.raises(InvalidInputError, match="the background data is empty"):
        explain_rows(portal, "lin", frame(1, names(3)), background=pd.DataFrame(columns=names(3)))


def test_background_rows_with_missing_values_are_dropped_and_reported(portal: Portal) -> None:
    register_linear(portal, 3)
    background = frame(12, names(3))
    background.iloc[[2, 5], 1] = np.nan
    expl = explain_rows(portal, "lin", frame(1, names(3)), background=background)
    assert expl.background.rows == 10 and expl.background.dropped == 2
    assert "2 row(s) with missing values dropped" in expl.background.describe()


def test_model_without_reference_data_asks_for_a_background(portal: Portal) -> None:
    add_model(portal, linear(np.ones(3, np.float32)), "bare", task="regression", feature_names=names(3))
    with pytest.raises(InvalidInputError, match="has no reference data to use as background.*upload a background"):
        explain_rows(portal, "bare", frame(1, names(3)))


def test_nan_in_rows_is_refused(portal: Portal) -> None:
    register_linear(portal, 3)
    rows = frame(2, names(3))
    rows.iloc[1, 2] = np.nan
    with pytest.raises(InvalidInputError, match=r"rows to explain: .*NaN \(a missing value\) in 1 row\(s\), first at row 1"):
        explain_rows(portal, "lin", rows)


def test_multi_output_model_without_a_chosen_output_is_refused(portal: Portal) -> None:
    register_linear(portal, 3, name="multi", outputs=3)
    rows = frame(2, names(3))
    with pytest.raises(InvalidInputError, match=r"has 3 outputs \(y\[0\], y\[1\], y\[2\]\); choose the output"):
        explain_rows(portal, "multi", rows)
    expl = explain_rows(portal, "multi", rows, target="y[1]")
    assert expl.select("y[1]").targets == ["y[1]", "y[1]"]


def test_image_model_given_a_table_row_is_refused(portal: Portal) -> None:
    add_model(portal, image_model(), "img", task="classification")
    with pytest.raises(InvalidInputError, match=r"img:1 takes images \(1×8×8\), not table rows"):
        explain_rows(portal, "img", pd.DataFrame({"a": [1.0]}))
    with pytest.raises(InvalidInputError, match=r"img:1 takes images \(1×8×8\), not table rows; give image files"):
        explain_images(portal, "img", pd.DataFrame({"a": [1.0]}))


def test_tabular_model_given_images_is_refused(portal: Portal) -> None:
    register_linear(portal, 3)
    with pytest.raises(InvalidInputError, match="lin:1 takes table rows, not images"):
        explain_images(portal, "lin", np.zeros((1, 1, 8, 8), np.float32))


@pytest.mark.parametrize(("field", "value", "message"), [
    ("explainer", "magic", "invalid explainer, expected one of auto, exact, permutation (not 'magic')"),
    ("background_method", "median", "invalid background method, expected 'sample' or 'kmeans' (not 'median')"),
    ("background_size", 0, "background_size must be a positive integer (not 0)"),
    ("max_seconds", 0, "max_seconds must be positive (not 0)"),
])
def test_invalid_settings_are_refused(field: str, value: Any, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ExplainSettings(**{field: value})


def test_max_evals_below_one_permutation_is_refused(portal: Portal) -> None:
    register_linear(portal, 14)
    with pytest.raises(InvalidInputError, match=r"max_evals must be at least 2 × 14 features \+ 1 = 29"):
        _ = TabularJob(portal, "lin", frame(1, names(14)), settings=ExplainSettings(max_evals=20)).estimate


# -- background summaries ---------------------------------------------------------------------
@pytest.mark.parametrize("method", ["sample", "kmeans"])
def test_background_is_summarized_to_real_rows_and_reported(portal: Portal, method: str) -> None:
    register_linear(portal, 3)
    big = frame(300, names(3), seed=11)
    expl = explain_rows(portal, "lin", frame(1, names(3)), background=big,
                        settings=ExplainSettings(background_size=25, background_method=method))
    assert expl.background.method == method and expl.background.available == 300
    assert 20 <= expl.background.rows <= 25
    assert "of 300 rows" in expl.background.describe()


# -- images --------------------------------------------------------------------------------
def test_images_are_explained_per_top_class_with_additivity(portal: Portal) -> None:
    add_model(portal, image_model(), "img", task="classification", class_labels=[str(d) for d in range(10)])
    images = RNG.random(size=(2, 1, 8, 8)).astype(np.float32)
    expl = explain_images(portal, "img", images, settings=ExplainSettings(top_classes=2, max_evals=60))
    assert expl.values.shape == (2, 8, 8, 1, 2)
    np.testing.assert_array_equal(expl.class_indices, np.argsort(-expl.outputs, axis=1)[:, :2])
    assert expl.additive
    again = ImageJob(portal, "img", images, settings=ExplainSettings(top_classes=2, max_evals=60))
    assert again.cached
    np.testing.assert_array_equal(again.run().values, expl.values)


def test_image_explanation_of_a_chosen_class(portal: Portal) -> None:
    add_model(portal, image_model(), "img", task="classification", class_labels=[str(d) for d in range(10)])
    expl = explain_images(portal, "img", RNG.random(size=(1, 8, 8)).astype(np.float32), target="7",
                          settings=ExplainSettings(max_evals=40))
    assert expl.class_names(0) == ["7"] and expl.additive


# -- drift ---------------------------------------------------------------------------------
def test_drift_of_an_identical_variant_is_nil(portal: Portal) -> None:
    _, weights, _ = register_linear(portal, 6)
    add_variant(portal, "lin:1", linear(weights), "lin-copy", 6)
    report = explain_drift(portal, "lin-copy", rows=frame(4, names(6), seed=3))
    assert report.parent_ref == "lin:1" and report.spearman == pytest.approx(1.0)
    assert report.mean_row_top_k_agreement == 1.0 and float(report.changes["change"].abs().max()) < 1e-6


def test_drift_finds_the_features_a_variant_weighs_differently(portal: Portal) -> None:
    _, weights, reference = register_linear(portal, 6)
    changed = weights.copy()
    changed[[0, 5]] = changed[[5, 0]]  # swap two features' weights
    add_variant(portal, "lin:1", linear(changed), "lin-swapped", 6)
    rows = frame(5, names(6), seed=3)
    report = explain_drift(portal, "lin-swapped", rows=rows, top_k=2)
    expected = analytic(changed, rows, reference) - analytic(weights, rows, reference)
    np.testing.assert_allclose(report.variant_values - report.parent_values, expected, atol=1e-5)
    assert set(report.changes["feature"].head(4)) <= {"f0", "f5"}
    assert len(report.per_row) == 5 and report.summary()["rows"] == 5


def test_drift_of_an_image_variant_compares_pixels_for_the_parents_class(portal: Portal) -> None:
    add_model(portal, image_model(), "img", task="classification", class_labels=[str(d) for d in range(10)])
    from portal.ingest.modelinfo import describe_model

    data = image_model().SerializeToString()
    blob = portal.store.put_bytes(data)
    portal.registry.add_version("img-copy", blob_sha=blob.sha256, size_bytes=blob.size, source_format="onnx",
                                info=describe_model(image_model(), size_bytes=len(data)),
                                meta={"class_labels": [str(d) for d in range(10)]}, actor="tests", parent="img:1",
                                method="test", model_fields={"task": "classification"})
    portal.invalidate()
    images = RNG.random(size=(2, 1, 8, 8)).astype(np.float32)
    report = explain_drift(portal, "img-copy", rows=images, settings=ExplainSettings(max_evals=40))
    assert report.parent_values.shape == (2, 64) and report.feature_names[9] == "pixel (1, 1)"
    np.testing.assert_allclose(report.variant_values, report.parent_values, atol=1e-9)
    assert report.spearman == pytest.approx(1.0) and report.mean_row_top_k_agreement == 1.0


def test_drift_needs_a_parent(portal: Portal) -> None:
    register_linear(portal, 3)
    with pytest.raises(InvalidInputError, match="lin:1 is not a variant"):
        explain_drift(portal, "lin")


# -- warm-up and CLI ---------------------------------------------------------------------------
def test_warm_up_compiles_shap_once_in_the_background() -> None:
    thread = warm_up_shap()
    if thread is not None:
        assert thread.daemon
        assert warm_up_shap() in (thread, None)  # never a second thread while one runs
        thread.join()
    assert is_warm() and warm_up_shap() is None


def test_cli_explain_prints_json_with_base_values_attributions_and_additivity(
    portal: Portal, portal_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from portal.cli import app

    _, weights, reference = register_linear(portal, 3)
    rows = frame(4, names(3), seed=6)
    rows.to_csv(tmp_path / "rows.csv", index=False)
    monkeypatch.setenv("PORTAL_HOME", str(portal_home))
    result = CliRunner().invoke(app, ["explain", "lin", "--input", str(tmp_path / "rows.csv"), "--rows", "2",
                                      "--json", "--output", str(tmp_path / "shap.csv")])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["feature_names"] == names(3) and len(doc["base_values"]) == 2
    np.testing.assert_allclose(doc["attributions"], analytic(weights, rows.head(2), reference), atol=1e-4)
    assert max(doc["additivity_error"]) <= doc["tolerance"]
    assert pd.read_csv(tmp_path / "shap.csv").columns[:5].tolist() == [
        "row", "explained", "base_value", "output", "additivity_error"]


def test_cli_explain_error_is_one_line(portal: Portal, portal_home: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from portal.cli import app

    register_linear(portal, 3)
    pd.DataFrame({"x": [1.0]}).to_csv(tmp_path / "bad.csv", index=False)
    monkeypatch.setenv("PORTAL_HOME", str(portal_home))
    result = CliRunner().invoke(app, ["explain", "lin", "--input", str(tmp_path / "bad.csv")])
    assert result.exit_code == 1
    assert result.stderr.strip().startswith("error: rows to explain: missing column(s) 'f0', 'f1', 'f2'")
