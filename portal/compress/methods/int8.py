"""int8-dynamic and int8-static: onnxruntime's quantizers, with the checks and advice of each.

    int8-dynamic   weights to int8, activations quantized on every call (MatMul, Gemm rewritten as MatMul)
    int8-static    weights and activations to int8 (QDQ), ranges calibrated on sample rows

Both upgrade an old graph to opset 13 and run ``quant_pre_process`` first; both
refuse a graph that is already quantized.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import onnx

from ...errors import InvalidInputError, InvalidModelError
from ..arrays import load_arrays
from .base import (
    QUANT_OPSET,
    WEIGHTED_OPS,
    Method,
    MethodAdvice,
    Work,
    listing,
    ml_operators,
    quantized_operators,
)
from .graph import count_ops, ensure_opset, first_line, pre_process

__all__ = [
    "CALIBRATION_METHODS",
    "DYNAMIC_OP_TYPES",
    "INT8_DYNAMIC",
    "INT8_STATIC",
    "CalibrationReader",
    "calibration_batch",
    "check_calibration_method",
    "final_probability_nodes",
    "prepare_static",
    "quantize_qdq",
    "refuse_unquantizable",
]

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
DYNAMIC_OP_TYPES = ("MatMul", "Gemm", "Conv", "Attention", "LSTM", "Gather")


# -- parent: parameters and applicability ------------------------------------------------
def _check_op_types(method: str, op_types: Any, accepted: tuple[str, ...]) -> list[str]:
    ops = [op_types] if isinstance(op_types, str) else list(op_types)
    ops = [o.strip() for op in ops for o in str(op).split(",") if o.strip()]
    bad = [op for op in ops if op not in accepted]
    if bad or not ops:
        raise InvalidInputError(
            f"invalid op types {', '.join(bad) or '(none)'} for {method}: choose from {', '.join(accepted)}"
        )
    return sorted(set(ops), key=ops.index)


def _check_dynamic(params: dict[str, Any]) -> dict[str, Any]:
    params["per_channel"] = bool(params["per_channel"])
    if params["op_types"] is not None:
        params["op_types"] = _check_op_types("int8-dynamic", params["op_types"], DYNAMIC_OP_TYPES)
    return params


def _qdq_op_types() -> tuple[str, ...]:
    from onnxruntime.quantization.registry import QDQRegistry

    return tuple(sorted(QDQRegistry))


def _check_static(params: dict[str, Any]) -> dict[str, Any]:
    params["per_channel"] = bool(params["per_channel"])
    if params["op_types"] is not None:
        params["op_types"] = _check_op_types("int8-static", params["op_types"], _qdq_op_types())
    params["calibration_method"] = check_calibration_method(params["calibration_method"])
    return params


def check_calibration_method(value: Any) -> str:
    """``value`` if it names one of :data:`CALIBRATION_METHODS`.

    Raises:
        InvalidInputError: it does not.
    """
    if value not in CALIBRATION_METHODS:
        raise InvalidInputError(
            f"invalid calibration method {value!r}: expected one of {', '.join(CALIBRATION_METHODS)}"
        )
    return str(value)


def _refuse_quantized(method: str, ops: Mapping[str, int]) -> None:
    quantized = quantized_operators(ops)
    if quantized:
        raise InvalidModelError(
            f"{method} does not apply: the graph is already quantized ({listing(quantized)}); "
            "quantize the float32 parent instead"
        )


def _dynamic_applies(ops: Mapping[str, int], params: Mapping[str, Any]) -> None:
    _refuse_quantized("int8-dynamic", ops)
    wanted = set(params["op_types"])
    if not any(op in wanted for op in ops):
        raise InvalidModelError(f"int8-dynamic does not apply: {_no_ops_reason(ops, wanted)}")


def _static_applies(ops: Mapping[str, int], params: Mapping[str, Any]) -> None:
    refuse_unquantizable("int8-static", ops, params["op_types"])


def refuse_unquantizable(method: str, ops: Mapping[str, int], op_types: Any = None) -> None:
    """Refuse static int8 (``method``) on a graph that is quantized already or has no weighted op to quantize.

    Raises:
        InvalidModelError: saying why, and what to do instead.
    """
    _refuse_quantized(method, ops)
    wanted = set(op_types or WEIGHTED_OPS)
    if not any(op in wanted and op in WEIGHTED_OPS for op in ops):
        raise InvalidModelError(f"{method} does not apply: {_no_ops_reason(ops, set(WEIGHTED_OPS))}")


def _no_ops_reason(ops: Mapping[str, int], wanted: set[str]) -> str:
    ml_ops = ml_operators(ops)
    names = sorted(wanted & set(WEIGHTED_OPS)) or sorted(wanted)
    want = " or ".join(names) if len(names) < 3 else ", ".join(names[:-1]) + " or " + names[-1]
    if ml_ops:
        return (f"the graph has no {want} to quantize; its ai.onnx.ml operators ({listing(ml_ops)}) keep "
                "their weights in attributes, which onnxruntime cannot quantize")
    hint = ""
    if "Conv" in ops and "Conv" not in wanted:
        hint = "; add Conv to the op types (it becomes ConvInteger, slow on many CPUs) or use int8-static"
    return f"the graph has no {want} to quantize (operators: {listing(ops)}){hint}"


# -- child: int8-dynamic -------------------------------------------------------------------
def _gemm_to_matmul(model: onnx.ModelProto) -> int:
    """Rewrite ``Gemm(x, W, b)`` with constant W as ``MatMul + Add`` (dynamic int8 only knows MatMul)."""
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    nodes, count = [], 0
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type != "Gemm" or node.input[1] not in inits or attrs.get("transA", 0):
            nodes.append(node)
            continue
        weight = numpy_helper.to_array(inits[node.input[1]])
        weight = (weight.T if attrs.get("transB", 0) else weight) * np.float32(attrs.get("alpha", 1.0))
        name = f"{node.input[1]}__matmul{count}"
        graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(weight, np.float32), name))
        out, label = node.output[0], f"{node.name or 'Gemm'}__{count}"
        if len(node.input) > 2 and node.input[2]:
            bias = node.input[2]
            if attrs.get("beta", 1.0) != 1.0:
                if bias not in inits:
                    nodes.append(node)
                    continue
                bias = f"{bias}__beta{count}"
                scaled = numpy_helper.to_array(inits[node.input[2]]) * np.float32(attrs["beta"])
                graph.initializer.append(numpy_helper.from_array(scaled.astype(np.float32), bias))
            nodes.append(helper.make_node("MatMul", [node.input[0], name], [f"{out}__mm"], name=f"{label}_matmul"))
            nodes.append(helper.make_node("Add", [f"{out}__mm", bias], [out], name=f"{label}_bias"))
        else:
            nodes.append(helper.make_node("MatMul", [node.input[0], name], [out], name=f"{label}_matmul"))
        count += 1
    del graph.node[:]
    graph.node.extend(nodes)
    used = {i for n in graph.node for i in n.input}
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    return count


def _build_dynamic(w: Work) -> dict[str, Any]:
    src, dst, scratch, params, notes, progress = w.src, w.dst, w.scratch, w.params, w.notes, w.progress
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = ensure_opset(onnx.load(str(src)), QUANT_OPSET, notes, progress)
    model = pre_process(model, scratch, notes, progress)
    op_types = list(params["op_types"])
    if "Gemm" in op_types:
        rewritten = _gemm_to_matmul(model)
        if rewritten:
            notes.append(f"{rewritten} Gemm node(s) rewritten as MatMul + Add so that they can be quantized")
        op_types = [op for op in op_types if op != "Gemm"] + (["MatMul"] if "MatMul" not in op_types else [])
    prepared = scratch / "prepared.onnx"
    onnx.save(model, str(prepared))
    progress("quantizing weights to int8 (dynamic)")
    try:
        quantize_dynamic(str(prepared), str(dst), op_types_to_quantize=op_types,
                         per_channel=bool(params["per_channel"]), weight_type=QuantType.QInt8)
    except Exception as exc:  # noqa: BLE001
        raise InvalidModelError(f"onnxruntime's dynamic quantizer failed on this graph: {first_line(exc)}") from exc
    quantized = count_ops(dst, ("MatMulInteger", "ConvInteger", "DynamicQuantizeLSTM", "QAttention",
                                "DynamicQuantizeMatMul"))
    if not quantized and count_ops(dst, ("DequantizeLinear",)) == 0:
        raise InvalidModelError(
            f"int8-dynamic quantized nothing: no {' or '.join(params['op_types'])} node has constant weights "
            "that onnxruntime can quantize"
        )
    return {"quantized_nodes": quantized}


# -- child: int8-static --------------------------------------------------------------------
class CalibrationReader:
    """Feeds calibration rows to onnxruntime's calibrator in batches."""

    def __init__(self, arrays: dict[str, np.ndarray], batch: int) -> None:
        self.arrays, self.batch = arrays, batch
        self._batches = self._iter()

    def _iter(self) -> Iterator[dict[str, np.ndarray]]:
        rows = len(next(iter(self.arrays.values())))
        for start in range(0, rows - self.batch + 1 if self.batch > 1 else rows, self.batch):
            yield {k: v[start : start + self.batch] for k, v in self.arrays.items()}

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)

    def rewind(self) -> None:
        self._batches = self._iter()


def final_probability_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the Softmax/Sigmoid nodes that produce graph outputs (named first if unnamed)."""
    outputs = {o.name for o in model.graph.output}
    found = []
    for i, node in enumerate(model.graph.node):
        if node.op_type in ("Softmax", "Sigmoid", "LogSoftmax") and outputs & set(node.output):
            node.name = node.name or f"{node.op_type}__{i}"
            found.append(node.name)
    return found


def prepare_static(w: Work) -> tuple[Path, list[str], dict[str, np.ndarray]]:
    """The graph ready for static int8 (opset 13+, pre-processed) saved in the scratch folder.

    Returns its path, the final Softmax/Sigmoid nodes that stay in float32, and the calibration rows.
    """
    arrays = load_arrays(Path(w.job["calibration"]))
    model = ensure_opset(onnx.load(str(w.src)), QUANT_OPSET, w.notes, w.progress)
    model = pre_process(model, w.scratch, w.notes, w.progress)
    kept = final_probability_nodes(model)
    if kept:
        w.notes.append("the final Softmax/Sigmoid stays in float32, so the probabilities still sum to 1")
    prepared = w.scratch / "prepared.onnx"
    onnx.save(model, str(prepared))
    return prepared, kept, arrays


def quantize_qdq(prepared: Path, dst: Path, arrays: dict[str, np.ndarray], params: Mapping[str, Any], *,
                 batch: int, nodes_to_exclude: list[str], nodes_to_quantize: list[str] | None = None,
                 cache: Path | None = None) -> None:
    """onnxruntime's static QDQ quantizer on ``prepared``; ``cache`` keeps the calibrated ranges between calls.

    Raises:
        InvalidModelError: the quantizer failed on this graph.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_static

    calibrate = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                 "percentile": CalibrationMethod.Percentile}[params["calibration_method"]]
    try:
        quantize_static(str(prepared), str(dst), CalibrationReader(arrays, batch), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=params.get("op_types"), per_channel=bool(params["per_channel"]),
                        calibrate_method=calibrate, nodes_to_exclude=nodes_to_exclude,
                        nodes_to_quantize=nodes_to_quantize, calibration_cache_path=cache)
    except Exception as exc:  # noqa: BLE001
        raise InvalidModelError(f"onnxruntime's static quantizer failed on this graph: {first_line(exc)}") from exc


def calibration_batch(job: Mapping[str, Any], rows: int) -> int:
    """The batch the calibrator feeds: the model's fixed batch, or up to 16 rows."""
    return int(job.get("fixed_batch") or min(16, rows))


def _build_static(w: Work) -> dict[str, Any]:
    prepared, kept, arrays = prepare_static(w)
    rows = len(next(iter(arrays.values())))
    w.progress(f"calibrating on {rows} rows ({w.params['calibration_method']}) and quantizing (static QDQ)")
    quantize_qdq(prepared, w.dst, arrays, w.params, batch=calibration_batch(w.job, rows), nodes_to_exclude=kept)
    return {"calibration_rows": rows, "quantized_nodes": count_ops(w.dst, ("QuantizeLinear",))}


# -- advice ----------------------------------------------------------------------------------
def _dynamic_hint(params: Mapping[str, Any]) -> str:
    if params.get("per_channel"):
        return "try int8-static with calibration data"
    return "try per-channel quantization, or int8-static with calibration data"


def _static_hint(params: Mapping[str, Any]) -> str:
    if params.get("per_channel"):
        return "try Entropy or Percentile calibration, or more calibration rows"
    return "try per-channel quantization, Entropy or Percentile calibration, or more calibration rows"


def _dynamic_slower(ops: Mapping[str, int], env: Mapping[str, Any]) -> str:
    if "ConvInteger" in ops:
        return ("Slower: dynamic int8 turns convolutions into ConvInteger, which this CPU runs slowly; "
                "try int8-static (QDQ), which keeps the fast convolution kernels.")
    return ("Slower: dynamic int8 re-quantizes the activations on every call; for small layers or small "
            "batches that costs more than the int8 arithmetic saves.")


def _static_slower(ops: Mapping[str, int], env: Mapping[str, Any]) -> str:
    if env.get("vnni") is False:
        return ("Slower: this CPU has no VNNI instructions (AVX-512 VNNI / AVX-VNNI), so int8 arithmetic is "
                "hardly faster than float32 and the QuantizeLinear/DequantizeLinear steps cost extra.")
    return ("Slower: static int8 wraps each layer in QuantizeLinear/DequantizeLinear; for small layers "
            "those conversions cost more than the int8 arithmetic saves.")


INT8_DYNAMIC = Method(
    name="int8-dynamic",
    help="weights to int8, activations quantized on the fly (MatMul/Gemm)",
    defaults=MappingProxyType({"per_channel": False, "op_types": ["MatMul", "Gemm"]}),
    check=_check_dynamic,
    applies=_dynamic_applies,
    build=_build_dynamic,
    advice=MethodAdvice(accuracy_hint=_dynamic_hint, slower=_dynamic_slower),
    color="#2563eb",
    compare_options=("per_channel",),
)

INT8_STATIC = Method(
    name="int8-static",
    help="weights and activations to int8 (QDQ), calibrated on sample data",
    defaults=MappingProxyType({"per_channel": False, "calibration_method": "minmax", "op_types": None}),
    check=_check_static,
    applies=_static_applies,
    build=_build_static,
    advice=MethodAdvice(accuracy_hint=_static_hint, slower=_static_slower),
    color="#7c3aed",
    compare_options=("per_channel", "calibration_method"),
    calibrated=True,
)
