"""Variants: real onnxruntime quantization, fp16, pruning and optimization of small real models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
from tiny import files_under
from onnx import numpy_helper
from tiny import add_model, softmax_classifier, two_input_model
from variant_models import (
    add_mlp,
    conv_only,
    old_opset_mlp,
    tiny_cnn,
    tree_ensemble,
    unconvertible,
    write_digit_pngs,
)

from portal import ConflictError, InvalidInputError, InvalidModelError, Portal
from portal.compress.variants import create_variant, lineage


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory):
    """One store with the trained MLP (mlp:1) and its variants, built once for the module."""
    portal = Portal.open(tmp_path_factory.mktemp("variants") / "home")
    add_mlp(portal)
    stages: list[str] = []
    built = {"stages": stages, "int8-dynamic": create_variant(portal, "mlp:1", "int8-dynamic", progress=stages.append)}
    for method, options in [("int8-static", {}), ("fp16", {}), ("prune", {"sparsity": 0.5}), ("optimized", {})]:
        built[method] = create_variant(portal, "mlp:1", method, **options)
    yield portal, built
    portal.close()


def _reference_rows(portal: Portal) -> pd.DataFrame:
    return portal.reference_frame("mlp:1").drop(columns=["target"])


def _agreement(portal: Portal, ref: str) -> tuple[float, float]:
    rows = _reference_rows(portal)
    parent = portal.predict("mlp:1", rows).to_frame()
    variant = portal.predict(ref, rows).to_frame()
    same = float((parent["prediction"] == variant["prediction"]).mean())
    return same, float(np.abs(parent["proba_benign"] - variant["proba_benign"]).max())


def _initializers(portal: Portal, ref: str) -> dict[str, np.ndarray]:
    model = onnx.load(str(portal.model_path(ref)))
    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


def _versions(portal: Portal, name: str) -> list[str]:
    return [v.ref for v in portal.get_model(name).versions]


# -- the five methods on a trained MLP ---------------------------------------------------
def test_int8_dynamic_quantizes_the_gemms_and_keeps_the_answers(shared) -> None:
    portal, built = shared
    variant = built["int8-dynamic"]
    assert (variant.parent, variant.method) == ("mlp:1", "int8-dynamic")
    assert variant.method_params == {"per_channel": False, "op_types": ["MatMul", "Gemm"]}
    assert variant.info["operators"]["MatMulInteger"] == 3
    assert 0.2 < variant.size_bytes / portal.get("mlp:1").size_bytes < 0.45
    assert any("3 Gemm node(s) rewritten as MatMul + Add" in n for n in variant.meta["variant"]["notes"])
    same, max_diff = _agreement(portal, variant.ref)
    assert same >= 0.97 and max_diff < 0.2


def test_variant_keeps_the_parents_metadata_and_reference(shared) -> None:
    portal, built = shared
    parent, variant = portal.get("mlp:1"), built["int8-dynamic"]
    assert variant.feature_names == parent.feature_names and variant.class_labels == parent.class_labels
    assert variant.task == "classification" and variant.reference_sha == parent.reference_sha


def test_progress_reports_each_stage_in_order(shared) -> None:
    stages = shared[1]["stages"]
    wanted = ["starting int8-dynamic", "pre-processing (quant_pre_process)", "quantizing weights to int8 (dynamic)",
              "checking the variant in onnxruntime", "variant ready", "registered mlp:2"]
    assert [s for s in stages if s in wanted] == wanted


def test_int8_static_calibrates_on_the_reference_data(shared) -> None:
    portal, built = shared
    variant = built["int8-static"]
    calibration = variant.method_params["calibration"]
    assert calibration["rows"] == 200 and calibration["source"] == "reference data of mlp:1"
    assert variant.method_params["calibration_method"] == "minmax"
    assert variant.info["operators"]["QuantizeLinear"] >= 3 and variant.info["operators"]["DequantizeLinear"] >= 6
    assert variant.meta["variant"]["stats"]["calibration_rows"] == 200
    same, _ = _agreement(portal, variant.ref)
    assert same >= 0.95


def test_fp16_halves_the_file_and_keeps_float32_inputs_and_outputs(shared) -> None:
    portal, built = shared
    variant = built["fp16"]
    assert 0.45 < variant.size_bytes / portal.get("mlp:1").size_bytes < 0.6
    assert variant.signature == portal.get("mlp:1").signature
    assert variant.info["operators"]["Cast"] >= 2
    same, max_diff = _agreement(portal, variant.ref)
    assert same == 1.0 and max_diff < 5e-3


def test_prune_zeroes_half_the_weights_and_reports_sizes_honestly(shared) -> None:
    portal, built = shared
    stats = built["prune"].meta["variant"]["stats"]
    assert stats["tensors"] == 3 and stats["weights"] == 30 * 64 + 64 * 32 + 32
    assert stats["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert stats["raw_bytes"] == pytest.approx(stats["raw_bytes_parent"], rel=0.01)
    assert stats["gzip_bytes"] < 0.8 * stats["gzip_bytes_parent"]
    weights = _initializers(portal, built["prune"].ref)
    zeros = sum(int((weights[f"W{i}"] == 0).sum()) for i in range(3))
    assert zeros == stats["pruned_weights"]
    assert "stores every zero" in built["prune"].meta["variant"]["notes"][0]


def test_optimized_variant_predicts_exactly_like_its_parent(shared) -> None:
    portal, built = shared
    variant = built["optimized"]
    assert variant.method_params == {"level": "extended"}
    assert variant.info["node_count"] < portal.get("mlp:1").info["node_count"]
    same, max_diff = _agreement(portal, variant.ref)
    assert same == 1.0 and max_diff < 1e-5


def test_variant_of_a_variant_keeps_the_lineage(shared) -> None:
    portal, built = shared
    child = create_variant(portal, built["int8-dynamic"].ref, "optimized")
    assert child.parent == built["int8-dynamic"].ref
    assert [v.ref for v in lineage(portal, child.ref)] == [child.ref, built["int8-dynamic"].ref, "mlp:1"]
    assert [v.method for v in lineage(portal, child.ref)] == ["optimized", "int8-dynamic", None]


def test_quantizing_a_quantized_variant_is_refused(shared) -> None:
    portal, built = shared
    before = _versions(portal, "mlp")
    with pytest.raises(InvalidModelError, match=r"int8-static does not apply: the graph is already quantized"):
        create_variant(portal, built["int8-dynamic"].ref, "int8-static")
    assert _versions(portal, "mlp") == before


def test_reuse_returns_the_existing_variant_without_building(shared) -> None:
    portal, built = shared
    before = _versions(portal, "mlp")
    again = create_variant(portal, "mlp:1", "prune", sparsity=0.5, reuse=True)
    assert again.ref == built["prune"].ref and _versions(portal, "mlp") == before


# -- lineage and deletion -------------------------------------------------------------------
def test_deleting_a_parent_with_variants_is_refused_unless_forced(portal: Portal) -> None:
    add_model(portal, softmax_classifier(), "tiny", task="classification")
    variant = create_variant(portal, "tiny:1", "optimized")
    with pytest.raises(ConflictError, match=r"variants depend on it \(tiny:2\)"):
        portal.delete("tiny:1")
    assert portal.registry.dependents("tiny:1") == ["tiny:2"]
    assert portal.delete("tiny:1", force=True) == ["tiny:1"]
    orphan = portal.get(variant.ref)
    assert orphan.parent is None and orphan.method == "optimized" and orphan.meta["parent_deleted"] is True


# -- refusals before any work -----------------------------------------------------------------
@pytest.mark.parametrize("sparsity", [0, 1, -0.1, 1.5, "half"])
def test_sparsity_outside_the_open_unit_interval_is_refused(portal: Portal, sparsity: object) -> None:
    add_model(portal, softmax_classifier(), "tiny", task="classification")
    with pytest.raises(InvalidInputError, match=r"sparsity must be .*between 0 and 1"):
        create_variant(portal, "tiny:1", "prune", sparsity=sparsity)  # type: ignore[arg-type]
    assert _versions(portal, "tiny") == ["tiny:1"] and files_under(portal.home / "tmp") == []


def test_unknown_method_and_misplaced_parameter_are_refused(portal: Portal) -> None:
    add_model(portal, softmax_classifier(), "tiny", task="classification")
    with pytest.raises(InvalidInputError, match=r"unknown method 'int4': expected one of int8-dynamic, int8-static"):
        create_variant(portal, "tiny:1", "int4")
    with pytest.raises(InvalidInputError, match=r"sparsity does not apply to fp16"):
        create_variant(portal, "tiny:1", "fp16", sparsity=0.5)
    with pytest.raises(InvalidInputError, match=r"invalid op types Softmax for int8-dynamic"):
        create_variant(portal, "tiny:1", "int8-dynamic", op_types=["Softmax"])


def test_fp16_and_int8_on_a_tree_ensemble_are_refused_with_the_reason(portal: Portal) -> None:
    add_model(portal, tree_ensemble(), "forest", task="classification")
    with pytest.raises(InvalidModelError) as fp16:
        create_variant(portal, "forest:1", "fp16")
    assert "fp16 does not apply: the graph uses ai.onnx.ml operators (TreeEnsembleClassifier)" in fp16.value.message
    with pytest.raises(InvalidModelError) as int8:
        create_variant(portal, "forest:1", "int8-dynamic")
    assert "no Gemm or MatMul to quantize; its ai.onnx.ml operators (TreeEnsembleClassifier)" in int8.value.message
    with pytest.raises(InvalidModelError, match=r"prune does not apply: its weights live in ai.onnx.ml"):
        create_variant(portal, "forest:1", "prune")
    assert _versions(portal, "forest") == ["forest:1"] and files_under(portal.home / "tmp") == []


def test_quantization_without_quantizable_operators_is_refused(portal: Portal) -> None:
    add_model(portal, two_input_model(), "echo")
    with pytest.raises(InvalidModelError, match=r"int8-static does not apply: the graph has no Conv, ConvTranspose, "
                                                r"Gemm or MatMul to quantize \(operators: Identity, Mul\)"):
        create_variant(portal, "echo:1", "int8-static", calibration={"num": np.ones((2, 1)), "cat": [["a"], ["b"]]})
    add_model(portal, conv_only(), "convs")
    with pytest.raises(InvalidModelError, match=r"add Conv to the op types \(it becomes ConvInteger"):
        create_variant(portal, "convs:1", "int8-dynamic")


# -- calibration data ---------------------------------------------------------------------------
def test_calibration_with_a_missing_column_is_refused(shared, tmp_path: Path) -> None:
    portal, _ = shared
    before = _versions(portal, "mlp")
    path = tmp_path / "calibration.csv"
    _reference_rows(portal).drop(columns=["mean radius"]).to_csv(path, index=False)
    missing = r"calibration data \(calibration.csv\): missing column\(s\) 'mean radius'"
    with pytest.raises(InvalidInputError, match=missing):
        create_variant(portal, "mlp:1", "int8-static", calibration=path)
    assert _versions(portal, "mlp") == before


def test_empty_calibration_set_is_refused(shared, tmp_path: Path) -> None:
    portal, _ = shared
    path = tmp_path / "empty.csv"
    _reference_rows(portal).head(0).to_csv(path, index=False)
    with pytest.raises(InvalidInputError, match=r"calibration data \(empty.csv\): the table has no rows"):
        create_variant(portal, "mlp:1", "int8-static", calibration=path)


def test_calibration_array_of_the_wrong_shape_is_refused(shared, tmp_path: Path) -> None:
    portal, _ = shared
    path = tmp_path / "calibration.npz"
    np.savez(path, x=np.zeros((10, 5), np.float32))
    with pytest.raises(InvalidInputError, match=r"input 'x': expected shape \[N, 30\], got \[10, 5\]"):
        create_variant(portal, "mlp:1", "int8-static", calibration=path)


def test_static_int8_calibrates_on_a_folder_of_images(portal: Portal, tmp_path: Path) -> None:
    add_model(portal, tiny_cnn(), "cnn", task="classification")
    folder = write_digit_pngs(tmp_path / "digits", count=12)
    variant = create_variant(portal, "cnn:1", "int8-static", calibration=folder, per_channel=True)
    assert variant.method_params["calibration"]["source"] == "12 images in digits"
    assert variant.method_params["per_channel"] is True
    ops = variant.info["operators"]
    assert ops["Conv"] == 1 and ops["QuantizeLinear"] >= 2 and ops["DequantizeLinear"] >= 4


# -- opsets ------------------------------------------------------------------------------------
def test_an_old_opset_is_upgraded_before_quantizing(portal: Portal) -> None:
    add_model(portal, old_opset_mlp(9), "old")
    variant = create_variant(portal, "old:1", "int8-dynamic")
    assert variant.info["opset"]["ai.onnx"] == 13
    assert "opset upgraded from 9 to 13 with the ONNX version converter" in variant.meta["variant"]["notes"]
    x = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    parent, quantized = portal.predict("old:1", {"x": x}).outputs["y"], portal.predict(variant, {"x": x}).outputs["y"]
    assert np.abs(parent - quantized).max() < 0.1


def test_an_opset_that_cannot_be_upgraded_is_refused(portal: Portal) -> None:
    add_model(portal, unconvertible(), "ancient")
    with pytest.raises(InvalidModelError) as refused:
        create_variant(portal, "ancient:1", "int8-dynamic")
    message = refused.value.message
    assert "opset 8, and quantization needs opset 13" in message and "ImageScaler" in message
    assert "re-export the model with opset 13 or newer" in message
    assert _versions(portal, "ancient") == ["ancient:1"] and files_under(portal.home / "tmp") == []


# -- command line ---------------------------------------------------------------------------------
def _cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PORTAL_HOME=str(home))
    return subprocess.run([sys.executable, "-m", "portal.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_cli_compress_creates_a_variant_and_refuses_bad_sparsity(portal: Portal) -> None:
    add_model(portal, softmax_classifier(), "tiny", task="classification")
    created = _cli(portal.home, "compress", "tiny:1", "--method", "prune", "--sparsity", "0.25", "--json")
    assert created.returncode == 0, created.stderr
    data = json.loads(created.stdout)
    assert (data["ref"], data["parent"], data["method"]) == ("tiny:2", "tiny:1", "prune")
    assert data["method_params"] == {"sparsity": 0.25} and data["stats"]["pruned_weights"] == 3
    refused = _cli(portal.home, "compress", "tiny:1", "--method", "prune", "--sparsity", "1.5")
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        "error: sparsity must be strictly between 0 and 1, e.g. 0.5 to zero half the weights (not 1.5)")
    assert _versions(portal, "tiny") == ["tiny:2", "tiny:1"]


def test_no_calibration_note_about_int8_static_when_it_was_not_created(portal: Portal) -> None:
    """Issue 14 item 7: the refused int8-static gets its refusal, not a caveat about how it was calibrated."""
    from sklearn.datasets import load_iris

    from portal.compress.variants import compare

    add_model(portal, tree_ensemble(), "forest", task="classification")
    rows = load_iris(return_X_y=True)[0][:40].astype(np.float32)
    comparison = compare(portal, "forest:1", data=rows, methods=["int8-static", "optimized"], budget_seconds=0.1)
    assert "int8-static does not apply" in comparison.refused["int8-static"]
    assert [m.method for m in comparison.measurements] == [None, "optimized"]
    assert not [n for n in comparison.notes if "calibrated on the evaluation rows" in n]
