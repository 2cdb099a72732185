"""The work behind each compression method; runs only in the sandboxed child.

Every builder reads ``Work.src``, writes ``Work.dst`` inside the scratch folder,
appends plain-words notes for the user and returns statistics. Third-party
failures are translated here into :class:`~portal.errors.InvalidModelError`
with a message a user can act on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from .rules import QUANT_OPSET, WEIGHTED_OPS, gzip_size, load_arrays
from ..errors import InvalidModelError

__all__ = ["BUILDERS", "Work"]

Progress = Callable[[str], None]


@dataclass
class Work:
    """One build: where to read and write, the method's parameters, and where to report."""

    src: Path
    dst: Path
    scratch: Path
    params: Mapping[str, Any]
    job: Mapping[str, Any]
    progress: Progress
    notes: list[str] = field(default_factory=list)


def _default_opset(model: onnx.ModelProto) -> int:
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _ensure_opset(model: onnx.ModelProto, target: int, notes: list[str], progress: Progress) -> onnx.ModelProto:
    current = _default_opset(model)
    if current >= target:
        return model
    progress(f"upgrading opset {current} → {target}")
    from onnx import helper, version_converter

    unknown = _unknown_ops(model)
    if unknown:
        raise InvalidModelError(
            f"this model uses opset {current}, and quantization needs opset {target} or newer; the ONNX version "
            f"converter cannot upgrade it because {', '.join(unknown)} no longer exist(s) in ONNX (experimental "
            f"operators removed in later opsets); re-export the model with opset {target} or newer"
        )
    try:
        upgraded = version_converter.convert_version(model, target)
        onnx.checker.check_model(upgraded)
    except Exception as exc:  # noqa: BLE001 - the converter raises RuntimeError / ValidationError / ConvertError
        raise InvalidModelError(
            f"this model uses opset {current}, and quantization needs opset {target} or newer; the ONNX version "
            f"converter could not upgrade it ({_first_line(exc)}); re-export the model with opset {target} or newer"
        ) from exc
    upgraded.ir_version = max(int(upgraded.ir_version), helper.find_min_ir_version_for(list(upgraded.opset_import)))
    notes.append(f"opset upgraded from {current} to {target} with the ONNX version converter")
    return upgraded


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().split("\n")[0]
    if "Assertion" in text and "failed: " in text:  # the C++ converter prefixes file:line and the assertion
        text = text.split("failed: ", 1)[1]
    return text[:300] or type(exc).__name__


def _unknown_ops(model: onnx.ModelProto) -> list[str]:
    """Operators of the default domain that the installed onnx no longer defines (old experimental ops)."""
    return sorted({n.op_type for n in model.graph.node if n.domain in ("", "ai.onnx") and not onnx.defs.has(n.op_type)})


def _pre_process(model: onnx.ModelProto, scratch: Path, notes: list[str], progress: Progress) -> onnx.ModelProto:
    """``quant_pre_process`` (shape inference + basic optimizations); skipped with a note if it fails."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    progress("pre-processing (quant_pre_process)")
    src, out = scratch / "pre-in.onnx", scratch / "pre-out.onnx"
    onnx.save(model, str(src))
    for skip_symbolic in (False, True):
        try:
            quant_pre_process(str(src), str(out), skip_symbolic_shape=skip_symbolic)
            if skip_symbolic:
                notes.append("quant_pre_process ran without symbolic shape inference, which failed on this graph")
            return onnx.load(str(out))
        except Exception as exc:  # noqa: BLE001 - pre-processing is an optimisation, never a requirement
            failure = _first_line(exc)
    notes.append(f"quant_pre_process could not run on this graph ({failure}); quantized without it")
    return model


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


def _count(path: Path, ops: tuple[str, ...]) -> int:
    return sum(1 for n in onnx.load(str(path), load_external_data=False).graph.node if n.op_type in ops)


def _int8_dynamic(w: Work) -> dict[str, Any]:
    src, dst, scratch, params, notes, progress = w.src, w.dst, w.scratch, w.params, w.notes, w.progress
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = _ensure_opset(onnx.load(str(src)), QUANT_OPSET, notes, progress)
    model = _pre_process(model, scratch, notes, progress)
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
        raise InvalidModelError(f"onnxruntime's dynamic quantizer failed on this graph: {_first_line(exc)}") from exc
    quantized = _count(dst, ("MatMulInteger", "ConvInteger", "DynamicQuantizeLSTM", "QAttention",
                             "DynamicQuantizeMatMul"))
    if not quantized and _count(dst, ("DequantizeLinear",)) == 0:
        raise InvalidModelError(
            f"int8-dynamic quantized nothing: no {' or '.join(params['op_types'])} node has constant weights "
            "that onnxruntime can quantize"
        )
    return {"quantized_nodes": quantized}


class _CalibrationReader:
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


def _final_probability_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the Softmax/Sigmoid nodes that produce graph outputs (named first if unnamed)."""
    outputs = {o.name for o in model.graph.output}
    found = []
    for i, node in enumerate(model.graph.node):
        if node.op_type in ("Softmax", "Sigmoid", "LogSoftmax") and outputs & set(node.output):
            node.name = node.name or f"{node.op_type}__{i}"
            found.append(node.name)
    return found


def _int8_static(w: Work) -> dict[str, Any]:
    src, dst, scratch, params, notes, progress = w.src, w.dst, w.scratch, w.params, w.notes, w.progress
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_static

    arrays = load_arrays(Path(w.job["calibration"]))
    rows = len(next(iter(arrays.values())))
    model = _ensure_opset(onnx.load(str(src)), QUANT_OPSET, notes, progress)
    model = _pre_process(model, scratch, notes, progress)
    kept = _final_probability_nodes(model)
    if kept:
        notes.append("the final Softmax/Sigmoid stays in float32, so the probabilities still sum to 1")
    prepared = scratch / "prepared.onnx"
    onnx.save(model, str(prepared))
    fixed = w.job.get("fixed_batch")
    reader = _CalibrationReader(arrays, int(fixed or min(16, rows)))
    calibrate = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                 "percentile": CalibrationMethod.Percentile}[params["calibration_method"]]
    progress(f"calibrating on {rows} rows ({params['calibration_method']}) and quantizing (static QDQ)")
    try:
        quantize_static(str(prepared), str(dst), reader, quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=params["op_types"], per_channel=bool(params["per_channel"]),
                        calibrate_method=calibrate, nodes_to_exclude=kept)
    except Exception as exc:  # noqa: BLE001
        raise InvalidModelError(f"onnxruntime's static quantizer failed on this graph: {_first_line(exc)}") from exc
    return {"calibration_rows": rows, "quantized_nodes": _count(dst, ("QuantizeLinear",))}


_MISSING_KERNEL = re.compile(r"Could not find an implementation for (\w+)\(")
_TYPE_CLASH = re.compile(r"(?:of|in) node \(([^)]+)\)")


def _fp16_input(src: Path) -> tuple[onnx.ModelProto, list[str]]:
    """The model with every node named, and its Casts to float32 (kept: the converter mistypes them)."""
    model = onnx.load(str(src))
    for i, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"{node.op_type}__{i}"
    casts = [n.name for n in model.graph.node
             if n.op_type == "Cast" and any(a.name == "to" and a.i == onnx.TensorProto.FLOAT for a in n.attribute)]
    return model, casts


def _io_types(path: Path) -> list[tuple[str, int]]:
    graph = onnx.load(str(path), load_external_data=False).graph
    return [(v.name, v.type.tensor_type.elem_type) for v in [*graph.input, *graph.output]]


def _check_io_types(src: Path, dst: Path) -> None:
    """keep_io_types must hold: callers feed and read float32 exactly as with the parent."""
    if _io_types(src) != _io_types(dst):
        raise InvalidModelError("the float16 converter changed the model's input or output types; fp16 does not "
                                "suit this model (add the last operators to the block list and retry)")


def _fp16(w: Work) -> dict[str, Any]:
    src, dst, params, notes, progress = w.src, w.dst, w.params, w.notes, w.progress
    import onnxruntime as ort
    from onnxconverter_common import float16

    ops = list(dict.fromkeys([*float16.DEFAULT_OP_BLOCK_LIST, *params["block_ops"]]))
    nodes = _fp16_input(src)[1]
    added_ops: list[str] = []
    added_nodes: list[str] = []
    for _attempt in range(16):
        kept = f" (keeping {', '.join(added_ops)} in float32)" if added_ops else ""
        progress(f"converting float32 weights and ops to float16{kept}")
        try:
            converted = float16.convert_float_to_float16(_fp16_input(src)[0], keep_io_types=True,
                                                         op_block_list=ops, node_block_list=nodes)
        except Exception as exc:  # noqa: BLE001
            raise InvalidModelError(f"the float16 converter failed on this graph: {_first_line(exc)}") from exc
        onnx.save(converted, str(dst))
        try:
            ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - a missing kernel or a mistyped node: keep it in float32, retry
            missing, clash = _MISSING_KERNEL.search(str(exc)), _TYPE_CLASH.search(str(exc))
            if missing and missing.group(1) not in ops:
                ops.append(missing.group(1))
                added_ops.append(missing.group(1))
            elif clash and clash.group(1) not in nodes:
                nodes.append(clash.group(1))
                added_nodes.append(clash.group(1))
            else:
                raise InvalidModelError(f"onnxruntime cannot load the float16 model: {_first_line(exc)}") from exc
            continue
        _check_io_types(src, dst)
        if added_ops:
            notes.append(f"kept {', '.join(added_ops)} in float32: the CPU provider has no float16 kernel for them")
        if added_nodes:
            notes.append(f"kept {len(added_nodes)} node(s) in float32 that the float16 converter mistyped")
        return {"block_ops": list(params["block_ops"]), "auto_blocked_ops": added_ops, "float32_nodes": len(nodes)}
    raise InvalidModelError("the float16 model still fails to load after keeping 16 operators or nodes in float32; "
                            "fp16 does not suit this model")


def _prune(w: Work) -> dict[str, Any]:
    src, dst, params, notes, progress = w.src, w.dst, w.params, w.notes, w.progress
    from onnx import numpy_helper

    raw = src.read_bytes()
    model = onnx.load_from_string(raw)
    weights = {n.input[1] for n in model.graph.node if n.op_type in WEIGHTED_OPS and len(n.input) > 1}
    sparsity = float(params["sparsity"])
    pruned = total = tensors = 0
    progress(f"zeroing the {sparsity:.0%} smallest-magnitude weights of each layer")
    for index, init in enumerate(model.graph.initializer):
        if init.name not in weights or init.data_type != onnx.TensorProto.FLOAT or len(init.dims) < 2:
            continue
        values = numpy_helper.to_array(init).copy()
        k = int(round(sparsity * values.size))
        if k:
            order = np.argpartition(np.abs(values).ravel(), k - 1)[:k]
            values.ravel()[order] = 0.0
        model.graph.initializer[index].CopyFrom(numpy_helper.from_array(values, init.name))
        pruned, total, tensors = pruned + k, total + values.size, tensors + 1
    if not tensors:
        raise InvalidModelError("prune does not apply: the graph has no float32 weight tensors of Conv, MatMul or Gemm")
    onnx.save(model, str(dst))
    out = dst.read_bytes()
    stats = {"pruned_weights": pruned, "weights": total, "tensors": tensors, "sparsity": pruned / total,
             "raw_bytes_parent": len(raw), "raw_bytes": len(out),
             "gzip_bytes_parent": gzip_size(raw), "gzip_bytes": gzip_size(out)}
    notes.append(
        f"{pruned:,} of {total:,} weights set to zero in {tensors} tensors; the ONNX file stores every zero, so its "
        f"raw size stays {len(out) / max(1, len(raw)):.2f}× the parent's; gzip-compressed it is "
        f"{stats['gzip_bytes'] / max(1, stats['gzip_bytes_parent']):.2f}× the parent's compressed size"
    )
    return stats


def _optimized(w: Work) -> dict[str, Any]:
    src, dst, params, notes, progress = w.src, w.dst, w.params, w.notes, w.progress
    import onnxruntime as ort

    level = params["level"]
    options = ort.SessionOptions()
    options.graph_optimization_level = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    options.optimized_model_filepath = str(dst)
    progress(f"running onnxruntime's {level} graph optimizations offline")
    try:
        ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001
        raise InvalidModelError(f"onnxruntime could not optimize this graph: {_first_line(exc)}") from exc
    if level == "all":
        notes.append("saved with layout optimizations for this CPU; the file may not load on other machines")
    return {"level": level}


BUILDERS: dict[str, Callable[[Work], dict[str, Any]]] = {
    "int8-dynamic": _int8_dynamic,
    "int8-static": _int8_static,
    "fp16": _fp16,
    "prune": _prune,
    "optimized": _optimized,
}
