"""fp16: float16 weights and operators, float32 inputs and outputs (onnxconverter-common).

The converter leaves in float32 the operators of its block list and those the
user adds; the builder then keeps in float32 whatever onnxruntime's CPU provider
has no float16 kernel for, or the converter mistyped, until the model loads.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import onnx

from ...errors import InvalidModelError
from .base import Method, MethodAdvice, Work, listing, ml_operators, quantized_operators
from .graph import first_line

__all__ = ["FP16"]

_MISSING_KERNEL = re.compile(r"Could not find an implementation for (\w+)\(")
_TYPE_CLASH = re.compile(r"(?:of|in) node \(([^)]+)\)")


def _check(params: dict[str, Any]) -> dict[str, Any]:
    params["block_ops"] = sorted({str(op).strip() for op in params["block_ops"] if str(op).strip()})
    return params


def _applies(ops: Mapping[str, int], params: Mapping[str, Any]) -> None:
    ml_ops, quantized = ml_operators(ops), quantized_operators(ops)
    if ml_ops:
        raise InvalidModelError(
            f"fp16 does not apply: the graph uses ai.onnx.ml operators ({listing(ml_ops)}), such as "
            "scikit-learn tree ensembles and linear models, which have no float16 form; onnxruntime "
            "cannot load them after conversion"
        )
    if quantized:
        raise InvalidModelError(f"fp16 does not apply: the graph is int8-quantized ({listing(quantized)})")


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


def _build(w: Work) -> dict[str, Any]:
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
            raise InvalidModelError(f"the float16 converter failed on this graph: {first_line(exc)}") from exc
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
                raise InvalidModelError(f"onnxruntime cannot load the float16 model: {first_line(exc)}") from exc
            continue
        _check_io_types(src, dst)
        if added_ops:
            notes.append(f"kept {', '.join(added_ops)} in float32: the CPU provider has no float16 kernel for them")
        if added_nodes:
            notes.append(f"kept {len(added_nodes)} node(s) in float32 that the float16 converter mistyped")
        return {"block_ops": list(params["block_ops"]), "auto_blocked_ops": added_ops, "float32_nodes": len(nodes)}
    raise InvalidModelError("the float16 model still fails to load after keeping 16 operators or nodes in float32; "
                            "fp16 does not suit this model")


def _hint(params: Mapping[str, Any]) -> str:
    return "keep the sensitive operators in float32 with the block list"


def _slower(ops: Mapping[str, int], env: Mapping[str, Any]) -> str:
    return ("Slower: onnxruntime's CPU provider has few float16 kernels, so the variant converts back and "
            "forth between float16 and float32; fp16 saves file size, not time, on a CPU.")


FP16 = Method(
    name="fp16",
    help="float16 weights and ops, float32 inputs/outputs",
    defaults=MappingProxyType({"block_ops": []}),
    check=_check,
    applies=_applies,
    build=_build,
    advice=MethodAdvice(
        accuracy_hint=_hint, slower=_slower,
        no_faster="No faster: the CPU provider computes float16 models mostly through float32; fp16 saves size, "
                  "not time.",
    ),
    color="#f59e0b",
)
