"""prune: zero the smallest-magnitude weights of each Conv, MatMul and Gemm layer.

The ONNX file stores every zero, so a pruned variant is smaller only when shipped
or archived compressed; onnxruntime's CPU kernels do not skip zeros, so it is
never faster. Its statistics and advice say so with the raw and gzip sizes.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np
import onnx

from ...errors import InvalidInputError, InvalidModelError
from ..arrays import gzip_size
from .base import WEIGHTED_OPS, Method, MethodAdvice, Work, listing, ml_operators

__all__ = ["PRUNE"]

_NO_SKIPPING = "onnxruntime's CPU kernels do not skip zero weights, so pruning cannot speed it up."


def _check(params: dict[str, Any]) -> dict[str, Any]:
    value = params["sparsity"]
    try:
        sparsity = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"sparsity must be a number strictly between 0 and 1 (not {value!r})") from None
    if not 0.0 < sparsity < 1.0:
        raise InvalidInputError(
            f"sparsity must be strictly between 0 and 1, e.g. 0.5 to zero half the weights (not {value!r})"
        )
    params["sparsity"] = sparsity
    return params


def _applies(ops: Mapping[str, int], params: Mapping[str, Any]) -> None:
    if any(op in WEIGHTED_OPS for op in ops):
        return
    ml_ops = ml_operators(ops)
    reason = f"its weights live in ai.onnx.ml operator attributes ({listing(ml_ops)})" if ml_ops else (
        f"it has no Conv, MatMul or Gemm weights (operators: {listing(ops)})")
    raise InvalidModelError(f"prune does not apply: {reason}")


def _build(w: Work) -> dict[str, Any]:
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


def _hint(params: Mapping[str, Any]) -> str:
    return f"lower the sparsity (now {float(params.get('sparsity', 0)):.0%})"


def _slower(ops: Mapping[str, int], env: Mapping[str, Any]) -> str:
    return f"Slower: {_NO_SKIPPING}"


def _size(raw_ratio: float, gzip_ratio: float) -> str:
    return (f"Size: the raw file stays {raw_ratio:.2f}× the parent's because ONNX stores every zero; "
            f"gzip-compressed it is {gzip_ratio:.2f}× the parent's compressed size, so it only saves space when "
            "shipped or archived compressed.")


PRUNE = Method(
    name="prune",
    help="zero the smallest weights (smaller only when compressed)",
    defaults=MappingProxyType({"sparsity": 0.5}),
    check=_check,
    applies=_applies,
    build=_build,
    advice=MethodAdvice(accuracy_hint=_hint, slower=_slower, no_faster=f"No faster: {_NO_SKIPPING}", size=_size),
    color="#dc2626",
    compare_options=("sparsity",),
)
