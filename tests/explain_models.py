"""Tiny ONNX models whose SHAP values are known, and helpers shared by the explanation tests."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pandas as pd
from onnx import TensorProto, helper, numpy_helper
from tiny import add_model

from portal import Portal


# -- tiny models with known SHAP values ----------------------------------------------------
def _check(model: onnx.ModelProto) -> onnx.ModelProto:
    onnx.checker.check_model(model, full_check=True)
    return model


def linear(weights: np.ndarray, bias: float = 0.5, *, outputs: int = 1) -> onnx.ModelProto:
    """x[N, d] → y[N, outputs] = x @ W + bias (W's columns are ``weights`` scaled by 1, 2, ...)."""
    w = np.stack([weights * (k + 1) for k in range(outputs)], axis=1).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "W", "B"], ["y"])], "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", len(weights)])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", outputs])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(np.full(outputs, bias, np.float32), "B")],
    )
    return _check(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8))


def constant(n_in: int = 4, value: float = 0.7) -> onnx.ModelProto:
    """x[N, n_in] → y[N, 1] = 0 · x + value."""
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "W", "B"], ["y"])], "constant",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", n_in])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])],
        [numpy_helper.from_array(np.zeros((n_in, 1), np.float32), "W"),
         numpy_helper.from_array(np.array([value], np.float32), "B")],
    )
    return _check(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8))


def constant_image(classes: int = 10) -> onnx.ModelProto:
    """x[N, 1, 8, 8] → logits[N, classes] = 0 · x + b: the pixels never change the output (all SHAP values 0)."""
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["flat"], axis=1), helper.make_node("Gemm", ["flat", "W", "B"], ["logits"])],
        "constant-image", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        [numpy_helper.from_array(np.zeros((64, classes), np.float32), "W"),
         numpy_helper.from_array(np.linspace(-1, 1, classes).astype(np.float32), "B")],
    )
    return _check(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8))


CODES = {"low": -1.0, "mid": 0.5, "high": 3.0}


def number_plus_category() -> onnx.ModelProto:
    """num[N,1] float and cat[N,1] string → y = 2·num + code(cat) (a LabelEncoder)."""
    graph = helper.make_graph(
        [
            helper.make_node("LabelEncoder", ["cat"], ["code"], domain="ai.onnx.ml",
                             keys_strings=list(CODES), values_floats=list(CODES.values()), default_float=0.0),
            helper.make_node("Mul", ["num", "two"], ["doubled"]),
            helper.make_node("Add", ["doubled", "code"], ["y"]),
        ],
        "mixed",
        [helper.make_tensor_value_info("num", TensorProto.FLOAT, ["N", 1]),
         helper.make_tensor_value_info("cat", TensorProto.STRING, ["N", 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])],
        [numpy_helper.from_array(np.array([2.0], np.float32), "two")],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 2)]
    model = helper.make_model(graph, opset_imports=opsets, ir_version=8)
    return _check(model)


def frame(rows: int, columns: list[str], *, seed: int = 0) -> pd.DataFrame:
    """``rows`` standard-normal float32 rows."""
    values = np.random.default_rng(seed).normal(size=(rows, len(columns))).astype(np.float32)
    return pd.DataFrame(values, columns=columns)


def names(n: int) -> list[str]:
    return [f"f{i}" for i in range(n)]


def register_linear(
    portal: Portal, n: int, *, name: str = "lin", outputs: int = 1, seed: int = 0
) -> tuple[Any, np.ndarray, pd.DataFrame]:
    """A linear regressor over ``n`` features with 60 reference rows; returns (version, weights, reference)."""
    weights = np.random.default_rng(seed).normal(size=n).astype(np.float32)
    reference = frame(60, names(n), seed=seed + 1)
    version = add_model(portal, linear(weights, outputs=outputs), name, task="regression", reference=reference,
                        feature_names=names(n))
    return version, weights, reference


def analytic(weights: np.ndarray, rows: pd.DataFrame, background: pd.DataFrame) -> np.ndarray:
    """Interventional SHAP of a linear model: w_i (x_i − mean of the background's x_i)."""
    x = rows.to_numpy(np.float64)
    return weights.astype(np.float64) * (x - background.to_numpy(np.float64).mean(axis=0))


def add_variant(portal: Portal, parent: str, model: onnx.ModelProto, name: str, n: int) -> Any:
    """Register ``model`` as a variant of ``parent`` (what portal.compress does, minus the compression)."""
    from portal.ingest.modelinfo import describe_model

    data = model.SerializeToString()
    blob = portal.store.put_bytes(data)
    version = portal.registry.add_version(
        name, blob_sha=blob.sha256, size_bytes=blob.size, source_format="onnx",
        info=describe_model(model, size_bytes=len(data)), meta={"feature_names": names(n)}, actor="tests",
        parent=parent, method="test", model_fields={"task": "regression"},
    )
    portal.invalidate()
    return version
