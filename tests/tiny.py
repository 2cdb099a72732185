"""Tiny real ONNX models for fast tests, and a way to register them without ingest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from portal.ingest.modelinfo import describe_model


def _model(nodes, inputs, outputs, inits=(), opsets=(("", 17),)) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "tiny", inputs, outputs, list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets], ir_version=8)
    model.producer_name = "tests"
    onnx.checker.check_model(model, full_check=True)
    return model


def softmax_classifier(n_in: int = 4, n_out: int = 3, *, seed: int = 0, batch: Any = "N") -> onnx.ModelProto:
    """x[N, n_in] → probs[N, n_out] (Gemm + Softmax)."""
    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.normal(size=(n_in, n_out)).astype(np.float32), "W")
    b = numpy_helper.from_array(rng.normal(size=n_out).astype(np.float32), "B")
    return _model(
        [helper.make_node("Gemm", ["x", "W", "B"], ["z"]), helper.make_node("Softmax", ["z"], ["probs"], axis=1)],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, n_in])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [batch, n_out])],
        [w, b],
    )


def linear_regressor(n_in: int = 3, *, seed: int = 1) -> onnx.ModelProto:
    """x[N, n_in] → y[N, 1] = x @ w + 0.5."""
    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.normal(size=(n_in, 1)).astype(np.float32), "W")
    b = numpy_helper.from_array(np.array([0.5], np.float32), "B")
    return _model(
        [helper.make_node("Gemm", ["x", "W", "B"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", n_in])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])],
        [w, b],
    )


def two_input_model() -> onnx.ModelProto:
    """A float column ``num`` [N,1] and a string column ``cat`` [N,1] → num * 2 and the category echoed."""
    two = numpy_helper.from_array(np.array([2.0], np.float32), "two")
    return _model(
        [helper.make_node("Mul", ["num", "two"], ["doubled"]), helper.make_node("Identity", ["cat"], ["cat_out"])],
        [
            helper.make_tensor_value_info("num", TensorProto.FLOAT, ["N", 1]),
            helper.make_tensor_value_info("cat", TensorProto.STRING, ["N", 1]),
        ],
        [
            helper.make_tensor_value_info("doubled", TensorProto.FLOAT, ["N", 1]),
            helper.make_tensor_value_info("cat_out", TensorProto.STRING, ["N", 1]),
        ],
        [two],
    )


def int_input_model() -> onnx.ModelProto:
    """counts[N, 2] int64 → the same plus one."""
    one = numpy_helper.from_array(np.array([1], np.int64), "one")
    return _model(
        [helper.make_node("Add", ["counts", "one"], ["plus"])],
        [helper.make_tensor_value_info("counts", TensorProto.INT64, ["N", 2])],
        [helper.make_tensor_value_info("plus", TensorProto.INT64, ["N", 2])],
        [one],
    )


def image_model(channels: int = 1, size: int = 8, classes: int = 10) -> onnx.ModelProto:
    """x[N, C, H, W] → logits[N, classes] via Flatten + Gemm."""
    rng = np.random.default_rng(3)
    w = numpy_helper.from_array(rng.normal(size=(channels * size * size, classes)).astype(np.float32), "W")
    b = numpy_helper.from_array(np.zeros(classes, np.float32), "B")
    return _model(
        [helper.make_node("Flatten", ["x"], ["flat"], axis=1), helper.make_node("Gemm", ["flat", "W", "B"], ["logits"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", channels, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        [w, b],
    )


def add_model(portal: Any, model: onnx.ModelProto, name: str, *, task: str = "other",
              reference: Any = None, **meta: Any) -> Any:
    """Register ``model`` directly through store + registry (bypassing the sandboxed ingest)."""
    data = model.SerializeToString()
    blob = portal.store.put_bytes(data)
    ref_sha = None
    if reference is not None:
        import io

        buffer = io.BytesIO()
        reference.to_parquet(buffer, index=False)
        ref_sha = portal.store.put_bytes(buffer.getvalue()).sha256
    version = portal.registry.add_version(
        name, blob_sha=blob.sha256, size_bytes=blob.size, source_format="onnx",
        info=describe_model(model, size_bytes=len(data)), meta=meta, actor="tests",
        reference_sha=ref_sha, model_fields={"task": task},
    )
    portal.invalidate()
    return version


def save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, path)
    return path


def files_under(path: Path) -> list[Path]:
    """Every regular file below ``path`` (for 'nothing left behind' checks)."""
    return sorted(p for p in path.rglob("*") if p.is_file())
