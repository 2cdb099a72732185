"""int8-budgeted: the nodes that hurt stay in float32, the variant stays within the agreement budget.

The models are small MLPs on well-separated clusters (int8 keeps every answer), and
the same MLP with one hidden channel carrying a constant 1000: per-tensor int8 of
that activation (the output of ``wide``, the input of ``head``) rounds every other
channel to zero, and plain int8-static loses most of its answers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
from onnx import TensorProto, helper, numpy_helper
from tiny import add_model

from portal import InvalidInputError, InvalidModelError, Portal
from portal.compress.methods import DEFAULT_METHODS, REGISTRY, progress_fraction
from portal.compress.variants import compare, create_variant

F, H, C, ROWS = 8, 16, 4, 256
FEATURES = [f"f{i}" for i in range(F)]


def clustered_mlp(*, outlier: bool, input_outlier: bool = False, seed: int = 0) -> tuple[onnx.ModelProto,
                                                                                           pd.DataFrame]:
    """x[N, 8] → Gemm dense0 → Relu → Gemm wide → Gemm head → Softmax, fitted to 4 separated clusters.

    ``outlier``: wide's output channel 0 is a constant 1000 that head weighs equally for every class.
    ``input_outlier``: the input's last column is a constant 10000 that dense0 ignores.
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(C, F)) * 3
    truth = rng.integers(0, C, ROWS)
    x = (centres[truth] + rng.normal(size=(ROWS, F)) * 0.5).astype(np.float32)
    w0 = (rng.normal(size=(F, H)) / np.sqrt(F)).astype(np.float32)
    wa = (rng.normal(size=(H, H)) / np.sqrt(H)).astype(np.float32)
    ba = np.zeros(H, np.float32)
    if input_outlier:
        x[:, -1], w0[-1, :] = 1e4, 0.0
    if outlier:
        wa[:, 0], ba[0] = 0.0, 1000.0
    hidden = np.maximum(x @ w0, 0) @ wa + ba
    used = hidden[:, 1:] if outlier else hidden
    wb = np.linalg.lstsq(used, np.eye(C)[truth] * 4, rcond=None)[0].astype(np.float32)
    if outlier:
        wb = np.vstack([np.full((1, C), 1e-3, np.float32), wb])
    inits = [numpy_helper.from_array(a, n) for a, n in [(w0, "W0"), (np.zeros(H, np.float32), "b0"), (wa, "WA"),
                                                         (ba, "bA"), (wb, "WB"), (np.zeros(C, np.float32), "bB")]]
    nodes = [helper.make_node("Gemm", ["x", "W0", "b0"], ["h0"], name="dense0"),
             helper.make_node("Relu", ["h0"], ["r0"], name="relu0"),
             helper.make_node("Gemm", ["r0", "WA", "bA"], ["h"], name="wide"),
             helper.make_node("Gemm", ["h", "WB", "bB"], ["logits"], name="head"),
             helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=1)]
    graph = helper.make_graph(nodes, "clusters", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", F])],
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", C])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    return model, pd.DataFrame(x, columns=FEATURES)


def _add(portal: Portal, name: str, **kwargs: Any) -> None:
    model, frame = clustered_mlp(**kwargs)
    add_model(portal, model, name, task="classification", reference=frame, feature_names=FEATURES,
              class_labels=["a", "b", "c", "d"])


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory):
    """One store: the outlier MLP with its int8-static and int8-budgeted variants, and the plain MLP."""
    portal = Portal.open(tmp_path_factory.mktemp("budget") / "home")
    _add(portal, "outlier", outlier=True)
    _add(portal, "plain", outlier=False)
    progress: list[str] = []
    built = {"progress": progress, "static": create_variant(portal, "outlier:1", "int8-static"),
             "budgeted": create_variant(portal, "outlier:1", "int8-budgeted", progress=progress.append)}
    yield portal, built
    portal.close()


def _top1(portal: Portal, ref: str) -> np.ndarray:
    """The model's top-1 class on the reference rows, computed here with onnxruntime."""
    rows = portal.reference_frame(ref)[FEATURES].to_numpy(np.float32)
    session = ort.InferenceSession(str(portal.model_path(ref)), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": rows})[0].argmax(axis=1)


def _agreement(portal: Portal, parent: str, variant: str) -> float:
    return float(np.mean(_top1(portal, parent) == _top1(portal, variant)))


def _float_nodes(portal: Portal, ref: str) -> set[str]:
    """Gemm nodes of the stored file whose weights are float32, not dequantized int8 (they compute in float32)."""
    graph = onnx.load(str(portal.model_path(ref))).graph
    dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return {n.name for n in graph.node if n.op_type == "Gemm" and n.input[1] not in dequantized}


# -- the record ----------------------------------------------------------------------------------
def test_record_is_opt_in_calibrated_and_takes_the_compare_knobs() -> None:
    record = REGISTRY["int8-budgeted"]
    assert dict(record.defaults) == {"tolerance": 0.01, "per_channel": False, "calibration_method": "minmax"}
    assert record.calibrated and not record.default and "int8-budgeted" not in DEFAULT_METHODS
    assert set(record.compare_options) == {"tolerance", "per_channel", "calibration_method"}


# -- the search on a model that int8 hurts ---------------------------------------------------------
def test_plain_int8_static_loses_more_than_one_percent(shared) -> None:
    portal, built = shared
    assert _agreement(portal, "outlier:1", built["static"].ref) < 0.99
    assert _float_nodes(portal, built["static"].ref) == set()


def test_budgeted_keeps_exactly_the_sensitive_layer_in_float(shared) -> None:
    portal, built = shared
    variant = built["budgeted"]
    budget = variant.meta["variant"]["stats"]["budget"]
    assert {e["node"] for e in budget["excluded"]} == {"wide", "head"}
    assert _float_nodes(portal, variant.ref) == {"wide", "head"}  # dense0 still computes in int8
    assert (budget["quantizable"], budget["quantized"]) == (3, 1)
    assert variant.meta["variant"]["stats"]["excluded_nodes"] == 2


def test_budgeted_variant_stays_within_budget_measured_here(shared) -> None:
    portal, built = shared
    variant = built["budgeted"]
    budget = variant.meta["variant"]["stats"]["budget"]
    measured = _agreement(portal, "outlier:1", variant.ref)
    assert measured >= 0.99 and budget["agreement"] == pytest.approx(measured)
    assert budget["plain_agreement"] == pytest.approx(_agreement(portal, "outlier:1", built["static"].ref))
    assert budget["tolerance"] == 0.01 and variant.method_params["tolerance"] == 0.01


def test_report_names_each_excluded_node_with_its_loss_and_reason(shared) -> None:
    portal, built = shared
    stats = built["budgeted"].meta["variant"]["stats"]
    for entry in stats["budget"]["excluded"]:
        assert entry["op_type"] == "Gemm"
        assert entry["loss"] > 0.5  # quantized alone, either one zeroes the small channels
        assert entry["reason"].startswith("quantized alone, it changed ") and "top-1 answers" in entry["reason"]
    candidates = stats["budget"]["candidates"]
    assert candidates[0] == {"excluded": 0, "agreement": stats["budget"]["plain_agreement"], "p50_ms": None}
    chosen = [c for c in candidates if c["excluded"] == 2]
    assert chosen and chosen[0]["p50_ms"] > 0 and chosen[0]["agreement"] >= 0.99
    assert [c for c in candidates if c["excluded"] == 1][0]["agreement"] < 0.99
    assert stats["budget"]["seconds"] > 0
    notes = built["budgeted"].meta["variant"]["notes"]
    assert any(n.startswith("2 of 3 quantizable nodes kept in float32 to stay within the 1% budget") and
               "wide (Gemm)" in n and "head (Gemm)" in n for n in notes)


def test_progress_reports_fractions_that_only_grow(shared) -> None:
    lines = shared[1]["progress"]
    fractions = [f for f in map(progress_fraction, lines) if f is not None]
    assert len(fractions) >= 5 and fractions == sorted(fractions) and 0 < fractions[0] and fractions[-1] <= 1
    assert any(line.startswith("sensitivity: quantizing wide (Gemm) alone") for line in lines)


def test_zero_tolerance_is_met_exactly_when_floats_keep_every_answer(shared) -> None:
    portal, _ = shared
    variant = create_variant(portal, "outlier:1", "int8-budgeted", tolerance=0.0)
    budget = variant.meta["variant"]["stats"]["budget"]
    assert budget["agreement"] == 1.0 and _agreement(portal, "outlier:1", variant.ref) == 1.0
    assert {e["node"] for e in budget["excluded"]} == {"wide", "head"}


def test_impossible_budget_is_refused_clearly(tmp_path) -> None:
    portal = Portal.open(tmp_path / "home")
    try:
        _add(portal, "hopeless", outlier=True, input_outlier=True)  # dense0's input is ruined too
        with pytest.raises(InvalidModelError) as caught:
            create_variant(portal, "hopeless:1", "int8-budgeted")
        message = str(caught.value)
        assert message.startswith("int8 cannot stay within 1% agreement on this model: even with 2 of 3 quantized "
                                  "nodes kept in float32")
        assert message.endswith("; raise the tolerance or use fp16")
        assert [v.ref for v in portal.get_model("hopeless").versions] == ["hopeless:1"]
    finally:
        portal.close()


# -- a model int8 does not hurt ------------------------------------------------------------------
def test_model_int8_keeps_is_quantized_whole(shared) -> None:
    portal, _ = shared
    variant = create_variant(portal, "plain:1", "int8-budgeted")
    stats = variant.meta["variant"]["stats"]
    assert stats["budget"]["excluded"] == [] and stats["budget"]["plain_agreement"] >= 0.99
    assert stats["budget"]["quantized"] == stats["budget"]["quantizable"] == 3
    assert _float_nodes(portal, variant.ref) == set()
    assert _agreement(portal, "plain:1", variant.ref) >= 0.99
    assert any(n.startswith("all 3 quantizable nodes quantized") for n in variant.meta["variant"]["notes"])


# -- refusals before any work -----------------------------------------------------------------------
@pytest.mark.parametrize("tolerance, wanted", [
    (-0.01, "invalid tolerance -0.01 for int8-budgeted: expected a number from 0 to 0.5"),
    (0.7, "invalid tolerance 0.7 for int8-budgeted: expected a number from 0 to 0.5"),
    ("abc", "invalid tolerance 'abc' for int8-budgeted: expected a number from 0 to 0.5"),
    (float("nan"), "invalid tolerance nan for int8-budgeted: expected a number from 0 to 0.5"),
    (True, "invalid tolerance True for int8-budgeted: expected a number from 0 to 0.5"),
])
def test_bad_tolerance_is_refused_with_the_accepted_range(shared, tolerance: Any, wanted: str) -> None:
    portal, _ = shared
    before = len(portal.get_model("plain").versions)
    with pytest.raises(InvalidInputError) as caught:
        create_variant(portal, "plain:1", "int8-budgeted", tolerance=tolerance)
    assert str(caught.value).startswith(wanted)
    assert len(portal.get_model("plain").versions) == before


def test_bad_calibration_method_is_refused(shared) -> None:
    with pytest.raises(InvalidInputError, match="invalid calibration method 'median': expected one of minmax"):
        create_variant(shared[0], "plain:1", "int8-budgeted", calibration_method="median")


def test_tree_ensemble_is_refused_as_for_int8_static(tmp_path) -> None:
    from variant_models import tree_ensemble

    portal = Portal.open(tmp_path / "home")
    try:
        add_model(portal, tree_ensemble(), "forest", task="classification")
        with pytest.raises(InvalidModelError, match="int8-budgeted does not apply: the graph has no"):
            create_variant(portal, "forest:1", "int8-budgeted")
    finally:
        portal.close()


# -- in a comparison -------------------------------------------------------------------------------
def test_compare_measures_static_and_budgeted_side_by_side(shared) -> None:
    portal, built = shared
    comparison = compare(portal, "outlier:1", methods=["int8-static", "int8-budgeted"], budget_seconds=0.2)
    by_method = {m.method: m for m in comparison.measurements if m.method}
    assert set(by_method) == {"int8-static", "int8-budgeted"} and comparison.refused == {}
    assert by_method["int8-budgeted"].ref == built["budgeted"].ref  # the variant with these parameters, reused
    assert by_method["int8-budgeted"].agreement["value"] >= 0.99 > by_method["int8-static"].agreement["value"]
