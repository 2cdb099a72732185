"""Graph diff (issue 18 item 3): every parent node's fate, exact on the portal's own methods, stored and on demand."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from tiny import add_model
from variant_models import add_mlp

from portal import InvalidInputError, InvalidModelError, Portal
from portal.accounts.auth import Auth
from portal.compress.graphdiff import GraphDiff, diff_graphs
from portal.compress.variants import create_variant
from portal.errors import CorruptBlobError, NotFoundError, PermissionDeniedError

MLP_NODES = {"Sub__0", "Div__1", "dense0", "Relu__3", "dense1", "Relu__5", "dense2", "Mul__7", "Softmax__8"}


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory):
    """The trained MLP (mlp:1) and one variant per method, built once."""
    portal = Portal.open(tmp_path_factory.mktemp("graphdiff") / "home")
    add_mlp(portal)
    built = {m: create_variant(portal, "mlp:1", m) for m in ("int8-dynamic", "int8-static", "fp16", "prune",
                                                              "optimized")}
    yield portal, built
    portal.close()


def _diff(portal: Portal, version: Any) -> GraphDiff:
    return portal.variants.diff(version.ref)


def _fates(diff: GraphDiff) -> dict[str, set[str]]:
    return {fate: diff.names(fate) for fate in ("quantized", "excluded", "fused", "pruned", "converted", "replaced",
                                                "removed")}


def _only(diff: GraphDiff, **wanted: set[str]) -> None:
    """The diff's changed nodes are exactly ``wanted`` (fate → names), every other parent node unchanged."""
    expected = {fate: set() for fate in ("quantized", "excluded", "fused", "pruned", "converted", "replaced",
                                         "removed")}
    expected.update(wanted)
    assert _fates(diff) == expected
    assert diff.unchanged == len(MLP_NODES) - sum(len(v) for v in wanted.values())


# -- exact on each method ------------------------------------------------------------------
def test_prune_lists_exactly_the_layers_whose_weights_it_zeroed(shared) -> None:
    portal, built = shared
    diff = _diff(portal, built["prune"])
    variant = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(portal.model_path(built["prune"].ref))).graph.initializer}
    zeroed = {n.name for n in onnx.load(str(portal.model_path("mlp:1"))).graph.node
              if any(t in variant and (variant[t] == 0).mean() > 0.4 for t in n.input)}
    assert zeroed == {"dense0", "dense1", "dense2"}
    _only(diff, pruned=zeroed)
    assert {c.name: c.detail for c in diff.of_fate("pruned")}["dense0"] == "weights 50% zero (960 of 1,920 set to zero)"
    assert diff.added == () and all(r[3] == 0 for r in diff.op_counts())


def test_int8_static_lists_the_quantized_nodes_and_keeps_the_final_softmax_in_float(shared) -> None:
    portal, built = shared
    diff = _diff(portal, built["int8-static"])
    _only(diff, quantized={"dense0", "dense1", "dense2", "Mul__7"}, excluded={"Softmax__8"},
          fused={"Relu__3", "Relu__5"})
    relu = next(c for c in diff.of_fate("fused") if c.name == "Relu__3")
    assert (relu.into, relu.detail) == ("dense0", "folded into dense0's int8 output (the quantizer drops it: the "
                                                  "int8 range clips)")
    variant_ops = built["int8-static"].info["operators"]
    assert {a.op_type for a in diff.added} == {"QuantizeLinear", "DequantizeLinear"}
    assert len(diff.added) == variant_ops["QuantizeLinear"] + variant_ops["DequantizeLinear"]
    counts = {op: (p, v, d) for op, p, v, d in diff.op_counts()}
    assert counts["Relu"] == (2, 0, -2) and counts["Gemm"] == (3, 3, 0)


def test_int8_dynamic_rewrites_each_gemm_as_matmulinteger(shared) -> None:
    portal, built = shared
    diff = _diff(portal, built["int8-dynamic"])
    _only(diff, quantized={"dense0", "dense1", "dense2"})
    assert {c.after for c in diff.of_fate("quantized")} == {"MatMulInteger"}
    assert diff.node_count == (9, sum(built["int8-dynamic"].info["operators"].values()))
    assert len(diff.added) == diff.node_count[1] - 6  # everything but the six untouched parent nodes
    assert all(a.detail.startswith(("part of dense0", "part of dense1", "part of dense2")) for a in diff.added)


def test_fp16_converts_every_node_and_adds_the_two_casts(shared) -> None:
    portal, built = shared
    diff = _diff(portal, built["fp16"])
    _only(diff, converted=MLP_NODES)
    assert [(a.op_type, a.detail) for a in diff.added] == [("Cast", "cast x to float16"),
                                                           ("Cast", "cast Softmax__8_cast_to_probs to float32")]


def test_optimized_lists_the_fused_gemm_relu_pairs(shared) -> None:
    portal, built = shared
    diff = _diff(portal, built["optimized"])
    _only(diff, fused={"dense0", "Relu__3", "dense1", "Relu__5"})
    assert [(a.name, a.op_type, a.detail) for a in diff.added] == [
        ("fused dense0", "FusedGemm", "replaces dense0 and Relu__3"),
        ("fused dense1", "FusedGemm", "replaces dense1 and Relu__5")]


def _conv_bn() -> onnx.ModelProto:
    """x → Conv → BatchNormalization → Relu → Identity → Flatten → Gemm → Softmax."""
    rng = np.random.default_rng(0)

    def arr(name: str, *shape: int, positive: bool = False) -> onnx.TensorProto:
        values = rng.normal(size=shape).astype(np.float32)
        return numpy_helper.from_array(np.abs(values) + 0.5 if positive else values, name)

    inits = [arr("K", 4, 1, 3, 3), arr("KB", 4), arr("g", 4, positive=True), arr("b", 4), arr("mu", 4),
             arr("var", 4, positive=True), numpy_helper.from_array((rng.normal(size=(144, 10)) / 12).astype(np.float32), "W"),
             numpy_helper.from_array(np.zeros(10, np.float32), "B")]
    nodes = [helper.make_node("Conv", ["x", "K", "KB"], ["c"], name="conv"),
             helper.make_node("BatchNormalization", ["c", "g", "b", "mu", "var"], ["bn"], name="bn"),
             helper.make_node("Relu", ["bn"], ["r"], name="relu"),
             helper.make_node("Identity", ["r"], ["idn"], name="identity"),
             helper.make_node("Flatten", ["idn"], ["fl"], name="flatten", axis=1),
             helper.make_node("Gemm", ["fl", "W", "B"], ["logits"], name="fc"),
             helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=1)]
    graph = helper.make_graph(nodes, "convbn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 10])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_pre_processing_fusions_are_told_apart_from_the_quantizers(tmp_path: Path) -> None:
    portal = Portal.open(tmp_path / "home")
    add_model(portal, _conv_bn(), "convbn", task="classification")
    calibration = {"x": np.random.default_rng(1).normal(size=(32, 1, 8, 8)).astype(np.float32)}
    diff = _diff(portal, create_variant(portal, "convbn:1", "int8-static", calibration=calibration))
    assert _fates(diff) == {"quantized": {"conv", "flatten", "fc"}, "excluded": {"softmax"}, "fused": {"bn", "relu"},
                            "pruned": set(), "converted": set(), "replaced": set(), "removed": {"identity"}}
    details = {c.name: c.detail for c in diff.changed}
    assert details["bn"] == "fused into conv by pre-processing (quant_pre_process)"
    assert details["relu"].startswith("folded into conv's int8 output")
    assert details["conv"] == "QDQ (int8 in, int8 out); absorbed bn, relu"
    optimized = _diff(portal, create_variant(portal, "convbn:1", "optimized"))
    assert optimized.names("fused") == {"conv", "bn", "relu"} and optimized.names("removed") == {"identity"}
    assert [(a.op_type, a.detail) for a in optimized.added] == [("FusedConv", "replaces conv, bn, relu")]
    portal.close()


def test_a_distilled_student_replaces_the_whole_graph_and_matches_no_node() -> None:
    """A student is a new network: even where an op type and a tensor name recur, no node is said to carry over."""
    parent = _conv_bn()
    nodes = [helper.make_node("Flatten", ["x"], ["fl"], name="flatten", axis=1),
             helper.make_node("Gemm", ["fl", "W", "B"], ["logits"], name="fc"),
             helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=1)]
    inits = [i for i in parent.graph.initializer if i.name in ("B",)] + [
        numpy_helper.from_array(np.zeros((64, 10), np.float32), "W")]
    student = helper.make_model(helper.make_graph(nodes, "student", list(parent.graph.input), list(parent.graph.output),
                                                  inits), opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    diff = diff_graphs(parent, student, method="distill")
    assert diff.names("replaced") == {"conv", "bn", "relu", "identity", "flatten", "fc", "softmax"}
    assert diff.unchanged == 0 and [a.name for a in diff.added] == ["flatten", "fc", "softmax"]
    assert diff.fates == {"replaced": 7, "added": 3}
    assert diff.summary() == "7 → 3 nodes: 7 replaced, 3 added"
    assert GraphDiff.from_json(diff.to_json()) == diff


# -- stored, on demand, JSON ---------------------------------------------------------------
def test_the_diff_is_stored_with_the_variant_and_reads_back_equal(shared) -> None:
    portal, built = shared
    for version in built.values():
        stored = version.meta["variant"]["diff"]
        assert GraphDiff.from_json(stored) == _diff(portal, version)
        assert GraphDiff.from_json(stored).to_json() == stored


def _register_without_diff(portal: Portal, source: Any, blob_sha: str | None = None, size: int | None = None) -> Any:
    """A variant row like those built before graph diffs existed: no ``diff`` in its metadata."""
    meta = {k: v for k, v in source.meta.items() if k != "variant"}
    meta["variant"] = {k: v for k, v in source.meta["variant"].items() if k != "diff"}
    return portal.registry.add_version(
        "mlp", blob_sha=blob_sha or source.blob_sha, size_bytes=size or source.size_bytes, source_format="onnx",
        info=source.info, meta=meta, actor="tests", parent="mlp:1", method=source.method,
        method_params=source.method_params, reference_sha=source.reference_sha)


def test_an_older_variant_without_a_stored_diff_gets_it_from_the_child(shared) -> None:
    portal, built = shared
    old = _register_without_diff(portal, built["int8-static"])
    portal.invalidate()
    stages: list[str] = []
    diff = portal.variants.diff(old.ref, progress=stages.append)
    assert diff == GraphDiff.from_json(built["int8-static"].meta["variant"]["diff"])
    assert stages == ["comparing the variant's graph with its parent's"]  # said by the sandboxed child


def test_a_version_that_is_not_a_variant_is_refused(shared) -> None:
    with pytest.raises(InvalidInputError, match=r"mlp:1 is not a variant: it has no parent"):
        shared[0].variants.diff("mlp:1")


def test_a_changed_variant_file_is_refused_with_the_fsck_hint(tmp_path: Path) -> None:
    portal = Portal.open(tmp_path / "home")
    add_mlp(portal)
    old = _register_without_diff(portal, create_variant(portal, "mlp:1", "prune"))
    path = portal.store.path(old.blob_sha)
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(CorruptBlobError, match=r"is corrupt \(sha256 mismatch\)"):
        portal.variants.diff(old.ref)
    portal.close()


def test_a_variant_file_that_is_not_onnx_gives_a_clear_message(tmp_path: Path) -> None:
    portal = Portal.open(tmp_path / "home")
    add_mlp(portal)
    blob = portal.store.put_bytes(b"\x08\x07garbage that is no protobuf " * 8)
    junk = _register_without_diff(portal, create_variant(portal, "mlp:1", "prune"), blob.sha256, blob.size)
    with pytest.raises(InvalidModelError, match=r"the variant's model file cannot be read as an ONNX graph") as err:
        portal.variants.diff(junk.ref)
    assert "Traceback" not in str(err.value)
    portal.close()


def test_a_private_models_diff_is_refused_to_another_user(shared) -> None:
    portal, built = shared
    auth = Auth(portal.registry)
    bob, carol = (auth.add_user(n, "analyst", actor="tests") for n in ("bob", "carol"))
    portal.registry.update_model("mlp", actor="tests", owner="bob", visibility="private")
    try:
        assert portal.as_user(bob).variants.diff(built["prune"].ref).names("pruned") == {"dense0", "dense1", "dense2"}
        with pytest.raises((NotFoundError, PermissionDeniedError)):
            portal.as_user(carol).variants.diff(built["prune"].ref)
    finally:
        portal.registry.update_model("mlp", actor="tests", visibility="shared")


def test_diff_graphs_names_nameless_nodes_by_position_in_both_graphs() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    parent = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["h"]),
                                                  helper.make_node("Identity", ["h"], ["y"])], "g", [x], [y]))
    variant = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y]))
    diff = diff_graphs(parent, variant)
    assert diff.names("fused") == {"Relu__0", "Identity__1"} and diff.unchanged == 0 and diff.added == ()
    assert {c.name: (c.into, c.detail) for c in diff.changed} == {
        "Relu__0": ("Relu__0", "absorbed Identity__1"), "Identity__1": ("Relu__0", "fused into Relu__0")}
    assert diff.summary() == "2 → 1 nodes: 2 fused"
