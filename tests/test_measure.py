"""Measurement, agreement and advice: exact numbers on constructed outputs, real runs on small models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select
from tiny import add_model
from variant_models import add_mlp, tree_ensemble

from portal import InvalidInputError, Portal
from portal.compress.advice import advise
from portal.storage.db import MeasurementRow
from portal.compress.agreement import Interpreted, agreement, interpret, label_metrics
from portal.compress.measure import VersionMeasurement, environment
from portal.compress.variants import compare, load_comparison

# -- agreement on constructed outputs -------------------------------------------------------------


def _classes(labels: list[str], probs: list[list[float]]) -> Interpreted:
    p = np.asarray(probs, dtype=np.float64)
    return Interpreted(np.asarray(labels, dtype=object), p, p)


def test_top1_agreement_counts_and_lists_the_flipped_rows() -> None:
    parent = _classes(["a", "b", "a", "b"], [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    variant = _classes(["a", "b", "b", "b"], [[0.9, 0.1], [0.2, 0.8], [0.45, 0.55], [0.3, 0.7]])
    result = agreement(parent, variant)
    assert (result["kind"], result["value"], result["flip_rate"], result["flipped_count"]) == ("top-1", 0.75, 0.25, 1)
    assert result["flipped"] == [{"row": 2, "parent": "a", "variant": "b", "parent_confidence": 0.6,
                                  "variant_confidence": 0.55}]
    assert result["max_abs_error"] == pytest.approx(0.15) and result["mean_abs_error"] == pytest.approx(0.3 / 8)
    expected_kl = (0.6 * np.log(0.6 / 0.45) + 0.4 * np.log(0.4 / 0.55)) / 4
    assert result["kl_divergence"] == pytest.approx(expected_kl)


def test_identical_outputs_agree_fully() -> None:
    parent = _classes(["a", "b"], [[0.7, 0.3], [0.1, 0.9]])
    result = agreement(parent, parent)
    assert result["value"] == 1.0 and result["flipped"] == [] and result["max_abs_error"] == 0.0
    assert result["kl_divergence"] == pytest.approx(0.0, abs=1e-12)


def test_numeric_agreement_is_one_minus_mae_over_the_parents_spread() -> None:
    parent = Interpreted(None, None, np.array([[0.0], [2.0], [4.0], [6.0]]))
    variant = Interpreted(None, None, np.array([[0.5], [2.0], [4.0], [5.5]]))
    result = agreement(parent, variant)
    spread = np.std([0.0, 2.0, 4.0, 6.0])
    assert result["kind"] == "1 - MAE/std" and result["value"] == pytest.approx(1 - 0.25 / spread)
    assert result["top1"] is None and result["max_abs_error"] == 0.5


def test_interpret_reads_logits_as_softmax_probabilities_with_class_labels() -> None:
    logits = np.array([[2.0, 0.0, 0.0], [0.0, 0.0, 3.0]], np.float32)
    read = interpret({"logits": logits}, {}, task="classification", class_labels=["x", "y", "z"], rows=2)
    assert list(read.labels) == ["x", "z"]
    assert read.probabilities[0] == pytest.approx(np.exp([2, 0, 0]) / np.exp([2, 0, 0]).sum())


def test_a_variants_rounded_probabilities_are_not_mistaken_for_logits() -> None:
    parent_probs = np.array([[0.7, 0.3], [0.2, 0.8]], np.float32)
    rounded = np.array([[0.698, 0.296], [0.204, 0.792]], np.float32)  # int8 output: rows sum to 0.994 and 0.996
    parent = interpret({"p": parent_probs}, {}, task="classification", class_labels=None, rows=2)
    variant = interpret({"p": rounded}, {}, task="classification", class_labels=None, rows=2,
                        probabilities=parent.scores_are_probabilities)
    assert parent.scores_are_probabilities and variant.probabilities[0] == pytest.approx([0.698 / 0.994, 0.296 / 0.994])
    logits = interpret({"p": rounded}, {}, task="classification", class_labels=None, rows=2)
    assert not logits.scores_are_probabilities and logits.probabilities[0][0] == pytest.approx(
        np.exp(0.698) / (np.exp(0.698) + np.exp(0.296)))


def test_label_metrics_accuracy_and_regression_scores() -> None:
    read = _classes(["a", "b", "b"], [[0.9, 0.1], [0.2, 0.8], [0.4, 0.6]])
    assert label_metrics(read, np.array(["a", "b", "a"]), task="classification") == {"accuracy": pytest.approx(2 / 3)}
    numbers = Interpreted(None, None, np.array([[1.0], [2.0], [4.0]]))
    scores = label_metrics(numbers, np.array([1.0, 3.0, 5.0]), task="regression")
    assert scores["mae"] == pytest.approx(2 / 3) and scores["r2"] == pytest.approx(1 - 2 / 8)


def test_environment_reports_the_cpu_flags_of_this_machine() -> None:
    env = environment(threads=2)
    flags = Path("/proc/cpuinfo").read_text().split("flags", 1)[1].split("\n", 1)[0].split()
    assert env["avx2"] == ("avx2" in flags) and env["avx512"] == ("avx512f" in flags)
    assert env["vnni"] == bool({"avx512_vnni", "avx_vnni"} & set(flags))
    assert env["threads"] == 2 and env["onnxruntime"] and env["cpu"]


# -- advice on constructed measurements -------------------------------------------------------------------


def _m(ref: str, method: str | None, *, p50: tuple[float, float], size: int, agree: float = 1.0,
       operators: dict[str, int] | None = None, params: dict | None = None) -> VersionMeasurement:
    latency = {"1": {"p50_ms": p50[0], "p95_ms": p50[0], "mean_ms": p50[0], "rounds": 50},
               "32": {"p50_ms": p50[1], "p95_ms": p50[1], "mean_ms": p50[1], "rounds": 50}}
    agreement_ = {} if method is None else {"kind": "top-1", "value": agree, "rows": 200,
                                             "flipped_count": round((1 - agree) * 200), "mean_abs_error": 0.01}
    return VersionMeasurement(ref=ref, method=method, parent=None if method is None else "m:1", size_bytes=size,
                              gzip_bytes=size, peak_rss_bytes=1, model_memory_bytes=1, load_seconds=0.01,
                              latency=latency, throughput_rows_s=1.0, agreement=agreement_,
                              operators=operators or {}, params=params or {})


PARENT = _m("m:1", None, p50=(1.0, 10.0), size=1000)


def test_a_variant_slower_than_its_parent_is_never_recommended_for_latency() -> None:
    small_but_slow = _m("m:2", "fp16", p50=(1.3, 11.0), size=500)
    advice = advise([PARENT, small_but_slow])
    assert advice.best is None and advice.verdict("m:2").status == "slower"
    assert "keep serving m:1" in advice.summary
    assert advise([PARENT, small_but_slow], objective="size").best == "m:2"


def test_the_fastest_variant_within_tolerance_is_recommended() -> None:
    fast_inaccurate = _m("m:2", "int8-dynamic", p50=(0.4, 3.0), size=300, agree=0.97)
    fast = _m("m:3", "int8-static", p50=(0.6, 5.0), size=300, agree=0.995)
    faster_at_32_only = _m("m:4", "optimized", p50=(1.1, 4.0), size=1000)
    advice = advise([PARENT, fast_inaccurate, fast, faster_at_32_only])
    assert advice.best == "m:3" and advice.verdict("m:3").status == "recommended"
    assert advice.verdict("m:2").status == "less accurate"
    assert advice.verdict("m:3").speedup == {"1": pytest.approx(1 / 0.6), "32": pytest.approx(2.0)}
    assert advice.summary.startswith("Serve m:3 (int8-static): 1.67× faster at batch 1, 2.00× faster at batch 32")
    assert advise([PARENT, fast_inaccurate], tolerance=0.05).best == "m:2"
    assert advise([PARENT, faster_at_32_only], batch=32).best == "m:4"
    assert advise([PARENT, faster_at_32_only]).verdict("m:4").status == "slower"


def _with_rounds(m: VersionMeasurement, speedup: float, faster: int, rounds: int = 40) -> VersionMeasurement:
    from portal.compress.measure import _paired

    parent = [1.0] * rounds
    variant = [1.0 / speedup if i < faster else 1.01 for i in range(rounds)]
    paired = _paired(parent, variant)
    latency = {b: {**stats, **paired, "rounds": rounds} for b, stats in m.latency.items()}
    return VersionMeasurement(**{**m.__dict__, "latency": latency})


def test_a_gain_within_the_noise_of_the_machine_is_not_recommended() -> None:
    lucky = _with_rounds(_m("m:2", "optimized", p50=(0.7, 7.0), size=1000), speedup=1.4, faster=22)
    advice = advise([PARENT, lucky])
    # issue 14 item 7: a gain within the noise is "too close to call" (was "no gain"), never a pick
    assert advice.best is None and advice.verdict("m:2").status == "too close to call"
    noise = "(within the noise: faster in 22 of 40 rounds; 99% interval 0.99–1.40×)"
    assert noise in advice.verdict("m:2").reasons[0]
    assert "No clear gain" in advice.verdict("m:2").reasons[1]
    steady = _with_rounds(_m("m:2", "optimized", p50=(0.7, 7.0), size=1000), speedup=1.4, faster=38)
    assert advise([PARENT, steady]).best == "m:2"


def test_the_sign_test_p_values_of_paired_rounds() -> None:
    from portal.compress.measure import _paired

    paired = _paired([2.0] * 10, [1.0] * 9 + [3.0])
    assert paired["faster_rounds"] == 9 and paired["paired_speedup"] == 2.0
    assert paired["p_faster"] == pytest.approx(11 / 1024) and paired["p_slower"] == pytest.approx(1023 / 1024)


def test_slow_variants_are_explained_in_plain_words() -> None:
    conv_integer = _m("m:2", "int8-dynamic", p50=(4.0, 40.0), size=300, operators={"ConvInteger": 2})
    static = _m("m:3", "int8-static", p50=(1.2, 12.0), size=300)
    fp16 = _m("m:4", "fp16", p50=(1.2, 12.0), size=500)
    prune = _m("m:5", "prune", p50=(1.0, 10.0), size=1000, agree=0.9, params={"sparsity": 0.8})
    advice = advise([PARENT, conv_integer, static, fp16, prune], environment={"vnni": False})
    reasons = {v.ref: " ".join(v.reasons) for v in advice.verdicts}
    assert ("dynamic int8 turns convolutions into ConvInteger, which this CPU runs slowly; try int8-static"
            in reasons["m:2"])
    assert "this CPU has no VNNI instructions" in reasons["m:3"]
    assert "saves file size, not time" in reasons["m:4"]
    assert "lower the sparsity (now 80%)" in reasons["m:5"] and "ONNX stores every zero" in reasons["m:5"]


def test_bad_tolerance_or_objective_is_refused() -> None:
    with pytest.raises(InvalidInputError, match=r"invalid objective 'speed': expected one of latency, size"):
        advise([PARENT], objective="speed")
    with pytest.raises(InvalidInputError, match=r"tolerance is an agreement loss between 0 and 1"):
        advise([PARENT], tolerance=5)


# -- real measurement ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory):
    """The trained MLP compared on an uploaded CSV with labels: int8-dynamic, fp16 and prune at 90%."""
    portal = Portal.open(tmp_path_factory.mktemp("measure") / "home")
    add_mlp(portal)
    data = tmp_path_factory.mktemp("data") / "eval.csv"
    portal.reference_frame("mlp:1").rename(columns={"target": "diagnosis"}).to_csv(data, index=False)
    lines: list[str] = []
    comparison = compare(portal, "mlp:1", data=data, label_column="diagnosis", sparsity=0.9,
                         methods=["int8-dynamic", "fp16", "prune"], budget_seconds=0.3, progress=lines.append)
    yield portal, comparison, lines
    portal.close()


def test_compare_measures_parent_and_variants_on_the_same_rows(measured) -> None:
    _, comparison, _ = measured
    refs = [m.ref for m in comparison.measurements]
    assert refs == ["mlp:1", "mlp:2", "mlp:3", "mlp:4"] and comparison.refused == {}
    assert comparison.run.dataset == {"sha": comparison.run.dataset["sha"], "rows": 200, "source": "eval.csv",
                                      "label_column": "diagnosis", "synthetic": False}
    for m in comparison.measurements:
        assert set(m.latency) == {"1", "32"} and all(s["rounds"] >= 10 and s["p50_ms"] > 0 for s in m.latency.values())
        assert m.peak_rss_bytes > m.model_memory_bytes > 0 and m.throughput_rows_s > 0


def test_compare_reports_agreement_sizes_and_label_scores(measured) -> None:
    _, comparison, _ = measured
    parent, dynamic, fp16, prune = comparison.measurements
    assert parent.labels["accuracy"] >= 0.95
    assert dynamic.agreement["value"] >= 0.97 and 0.2 < dynamic.size_bytes / parent.size_bytes < 0.45
    assert fp16.agreement["value"] == 1.0 and fp16.agreement["max_abs_error"] < 5e-3
    assert 0.45 < fp16.size_bytes / parent.size_bytes < 0.6
    assert prune.size_bytes == pytest.approx(parent.size_bytes, rel=0.01) and prune.gzip_bytes < 0.7 * parent.gzip_bytes
    assert prune.agreement["flipped_count"] == len(prune.agreement["flipped"]) == round(
        (1 - prune.agreement["value"]) * 200)
    for m in comparison.measurements:
        assert set(m.labels) == {"accuracy"}


def test_every_variant_gets_a_verdict_and_the_recommendation_is_never_slower(measured) -> None:
    _, comparison, _ = measured
    advice = comparison.advice
    assert [v.ref for v in advice.verdicts] == ["mlp:2", "mlp:3", "mlp:4"]
    if advice.best is not None:
        assert all(s >= 1.0 for s in advice.verdict(advice.best).speedup.values())
    table = comparison.table()
    assert list(table["Version"]) == ["mlp:1", "mlp:2", "mlp:3", "mlp:4"] and table["Verdict"].iloc[0] == "parent"


def test_stored_results_are_read_back_without_measuring_again(measured) -> None:
    portal, comparison, _ = measured
    with portal.registry.engine.connect() as conn:
        rows = conn.execute(select(func.count()).select_from(MeasurementRow)).scalar()
    stored = load_comparison(portal, "mlp:1", tolerance=0.2)
    with portal.registry.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(MeasurementRow)).scalar() == rows == 4
    assert stored.run.run == comparison.run.run and stored.measurements == comparison.measurements
    assert stored.run.environment["cpu"] == environment()["cpu"] and stored.advice.tolerance == 0.2


def test_progress_names_each_step_of_the_comparison(measured) -> None:
    lines = measured[2]
    assert lines[0] == "evaluation data: 200 rows from eval.csv"
    assert "running mlp:1 on 200 rows (own process, for its peak memory)" in lines
    assert "timing 4 models interleaved at batch 1 and 32" in lines and lines[-1] == "measurements stored"


def test_bad_calibration_data_fails_the_comparison_before_any_variant_is_built(measured, tmp_path: Path) -> None:
    portal = measured[0]
    before = [v.ref for v in portal.get_model("mlp").versions]
    path = tmp_path / "calibration.csv"
    portal.reference_frame("mlp:1").drop(columns=["target", "mean area"]).to_csv(path, index=False)
    missing = r"calibration data \(calibration.csv\): missing column\(s\) 'mean area'"
    with pytest.raises(InvalidInputError, match=missing):
        compare(portal, "mlp:1", methods=["optimized", "int8-static"], calibration=path)
    assert [v.ref for v in portal.get_model("mlp").versions] == before


def test_cli_compare_lists_refused_methods_and_reads_back_the_stored_run(portal: Portal) -> None:
    import pandas as pd
    from sklearn.datasets import load_iris

    x, _ = load_iris(return_X_y=True)
    add_model(portal, tree_ensemble(), "forest", task="classification",
              reference=pd.DataFrame(x[::3].astype(np.float32), columns=["a", "b", "c", "d"]))
    env = dict(os.environ, PORTAL_HOME=str(portal.home))
    run = subprocess.run([sys.executable, "-m", "portal.cli", "compare", "forest:1", "--methods", "fp16,optimized",
                          "--json"], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    assert list(data["refused"]) == ["fp16"] and "TreeEnsembleClassifier" in data["refused"]["fp16"]
    assert [m["ref"] for m in data["measurements"]] == ["forest:1", "forest:2"]
    assert data["measurements"][1]["agreement"]["value"] == 1.0
    shown = subprocess.run([sys.executable, "-m", "portal.cli", "compare", "forest:1", "--stored"],
                           capture_output=True, text=True, env=env, timeout=300)
    assert shown.returncode == 0 and "fp16 not created: fp16 does not apply" in shown.stdout
    assert "forest:2 (optimized):" in shown.stdout
