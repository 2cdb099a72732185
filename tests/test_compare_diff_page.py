"""The Compare page's graph diff (AppTest): parent and variant side by side, an int8-budgeted sensitivity report."""

from __future__ import annotations

from pathlib import Path

from ui_fixtures import assert_clean, empty_home, new_app, select_model, texts  # noqa: F401  (fixtures)
from variant_models import add_mlp

from portal import Portal
from portal.compress.measure import VersionMeasurement, environment, save_run
from portal.compress.variants import create_variant

PAGE = "app_pages/compare.py"
BUDGET = {"tolerance": 0.01, "plain_agreement": 0.955, "agreement": 0.995, "quantized": 3, "quantizable": 4,
          "excluded": [{"node": "dense2", "op_type": "Gemm", "loss": 0.03,
                        "reason": "alone in int8 it changes 3% of the answers"}],
          "candidates": [{"excluded": 0, "agreement": 0.955, "p50_ms": 0.05},
                         {"excluded": 1, "agreement": 0.995, "p50_ms": 0.06}], "seconds": 4.2}


def _measurement(ref: str, method: str | None, p50: float) -> VersionMeasurement:
    latency = {"32": {"p50_ms": p50, "p95_ms": p50 * 1.2, "mean_ms": p50, "rounds": 100}}
    agreement = {} if method is None else {"kind": "top-1", "value": 1.0, "rows": 200, "flipped_count": 0,
                                           "flipped": [], "max_abs_error": 0.01, "mean_abs_error": 0.001}
    return VersionMeasurement(ref=ref, method=method, parent=None if method is None else "mlp:1", size_bytes=9000,
                              gzip_bytes=8000, peak_rss_bytes=50_000_000, model_memory_bytes=1_000_000,
                              load_seconds=0.01, latency=latency, throughput_rows_s=1000.0, agreement=agreement)


def _store(home: Path) -> None:
    """mlp:1, its real int8-static variant mlp:2, and mlp:3 recorded as int8-budgeted with a sensitivity report."""
    portal = Portal.open(home)
    add_mlp(portal)
    static = create_variant(portal, "mlp:1", "int8-static")
    meta = {**static.meta, "variant": {**static.meta["variant"], "stats": {"budget": BUDGET}}}
    portal.registry.add_version("mlp", blob_sha=static.blob_sha, size_bytes=static.size_bytes, source_format="onnx",
                                info=static.info, meta=meta, actor="tests", parent="mlp:1", method="int8-budgeted",
                                method_params={"tolerance": 0.01}, reference_sha=static.reference_sha)
    measurements = [_measurement("mlp:1", None, 0.1), _measurement("mlp:2", "int8-static", 0.05),
                    _measurement("mlp:3", "int8-budgeted", 0.06)]
    dataset = {"sha": "0" * 64, "rows": 200, "source": "reference data of mlp:1"}
    save_run(portal.registry.engine, measurements, dataset=dataset, environment=environment(), extra={},
             actor="tests")
    portal.close()


def _frames(at) -> list:
    return [d.value for d in at.dataframe]


def test_the_recommended_variant_shows_beside_its_parent_with_its_changed_nodes(empty_home: Path) -> None:
    _store(empty_home)
    at = select_model(new_app(PAGE), "mlp", "v1")
    assert_clean(at)
    assert at.selectbox(key="compare.diff").value == "mlp:2"  # the faster one, recommended
    assert "9 → 24 nodes: 4 quantized, 1 excluded, 2 fused, 2 unchanged, 17 added" in texts(at.caption)
    labels = [e.label for e in at.expander]
    assert "Quantized · 4" in labels and "Kept in float (excluded) · 1" in labels and "Fused · 2" in labels
    nodes = {tuple(sorted(f["Node"])) for f in _frames(at) if "Node" in f.columns and "Before" in f.columns}
    assert ("Mul__7", "dense0", "dense1", "dense2") in nodes and ("Softmax__8",) in nodes
    ops = next(f for f in _frames(at) if "Δ" in f.columns)
    parent_ops = next(f for f in _frames(at) if list(f.columns) == ["Operator", "Parent"])
    assert dict(zip(parent_ops["Operator"], parent_ops["Parent"], strict=True))["Relu"] == 2
    variant_ops = dict(zip(ops["Operator"], zip(ops["Variant"], ops["Δ"], strict=True), strict=True))
    assert variant_ops["Relu"] == (0, -2)  # what the variant lost is listed too, with its change
    assert "Softmax" in variant_ops and set(variant_ops) <= set(parent_ops["Operator"]) | {"QuantizeLinear",
                                                                                         "DequantizeLinear"}
    assert dict(zip(ops["Operator"], ops["Variant"], strict=True))["QuantizeLinear"] == 5
    assert dict(zip(ops["Operator"], ops["Δ"], strict=True))["DequantizeLinear"] == 12
    assert not any("Sensitivity report" in t for t in texts(at.markdown))


def test_an_int8_budgeted_variant_shows_its_sensitivity_report(empty_home: Path) -> None:
    _store(empty_home)
    at = select_model(new_app(PAGE), "mlp", "v1")
    at.selectbox(key="compare.diff").set_value("mlp:3").run()
    assert_clean(at)
    assert any("Sensitivity report (int8-budgeted)" in t for t in texts(at.markdown))
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["All-int8 agreement"] == "95.5%" and metrics["This variant's agreement"] == "99.5%"
    assert metrics["Nodes quantized"] == "3 of 4"
    excluded = next(f for f in _frames(at) if "Why" in f.columns)
    assert excluded.to_dict("records") == [{"Node": "dense2", "Operator": "Gemm", "Agreement loss alone": 0.03,
                                            "Why": "alone in int8 it changes 3% of the answers"}]
    assert "The search took 4.2 s." in texts(at.caption)
