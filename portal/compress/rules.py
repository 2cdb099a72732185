"""Compressed variants of an ONNX model: int8 (dynamic, static), fp16, pruned, optimized.

Two halves in one module, so the rules and the work cannot drift apart:

    check_params(method, given)              parent: validate and complete the parameters
    check_applicable(method, info, params)   parent: refuse, before any work, what cannot apply
    build_variant(job, progress)             sandboxed child: upgrade opset, pre-process, transform, check

The parent decides from the version's stored description (operators, opsets), so
a refusal costs nothing; the child does the heavy work on files in its scratch
folder (see :mod:`portal.compress._worker`).
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..errors import InvalidInputError, InvalidModelError

__all__ = [
    "CALIBRATION_METHODS",
    "DYNAMIC_OP_TYPES",
    "METHODS",
    "OPTIMIZATION_LEVELS",
    "QUANT_OPSET",
    "WEIGHTED_OPS",
    "build_variant",
    "check_applicable",
    "check_params",
    "gzip_size",
    "load_arrays",
    "save_arrays",
]

METHODS = ("int8-dynamic", "int8-static", "fp16", "prune", "optimized")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
OPTIMIZATION_LEVELS = ("basic", "extended", "all")
DYNAMIC_OP_TYPES = ("MatMul", "Gemm", "Conv", "Attention", "LSTM", "Gather")
QUANT_OPSET = 13  # QDQ with per-channel axes; older graphs are upgraded first

_DEFAULTS: dict[str, dict[str, Any]] = {
    "int8-dynamic": {"per_channel": False, "op_types": ["MatMul", "Gemm"]},
    "int8-static": {"per_channel": False, "calibration_method": "minmax", "op_types": None},
    "fp16": {"block_ops": []},
    "prune": {"sparsity": 0.5},
    "optimized": {"level": "extended"},
}
WEIGHTED_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")  # ops whose weights int8 and prune act on
_QUANTIZED = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger", "ConvInteger",
              "QLinearConv", "QLinearMatMul", "DynamicQuantizeMatMul", "MatMulIntegerToFloat")
_ML_DOMAIN = "ai.onnx.ml."
Progress = Callable[[str], None]


# -- parent side: parameters and applicability --------------------------------------
def check_params(method: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """The complete, checked parameters of ``method`` (defaults filled in).

    Raises:
        InvalidInputError: unknown method, a parameter that does not apply to it, or a bad value.
    """
    if method not in METHODS:
        raise InvalidInputError(f"unknown method {method!r}: expected one of {', '.join(METHODS)}")
    params = dict(_DEFAULTS[method])
    extra = sorted(k for k, v in given.items() if v is not None and k not in params)
    if extra:
        raise InvalidInputError(
            f"{', '.join(extra)} does not apply to {method}; it takes {', '.join(params) or 'no parameters'}"
        )
    params.update({k: v for k, v in given.items() if v is not None})
    if "per_channel" in params:
        params["per_channel"] = bool(params["per_channel"])
    if params.get("op_types") is not None:
        params["op_types"] = _check_op_types(method, params["op_types"])
    if method == "int8-static" and params["calibration_method"] not in CALIBRATION_METHODS:
        raise InvalidInputError(
            f"invalid calibration method {params['calibration_method']!r}: "
            f"expected one of {', '.join(CALIBRATION_METHODS)}"
        )
    if method == "prune":
        params["sparsity"] = _check_sparsity(params["sparsity"])
    if method == "fp16":
        params["block_ops"] = sorted({str(op).strip() for op in params["block_ops"] if str(op).strip()})
    if method == "optimized" and params["level"] not in OPTIMIZATION_LEVELS:
        raise InvalidInputError(f"invalid level {params['level']!r}: expected one of {', '.join(OPTIMIZATION_LEVELS)}")
    return params


def _check_sparsity(value: Any) -> float:
    try:
        sparsity = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"sparsity must be a number strictly between 0 and 1 (not {value!r})") from None
    if not 0.0 < sparsity < 1.0:
        raise InvalidInputError(
            f"sparsity must be strictly between 0 and 1, e.g. 0.5 to zero half the weights (not {value!r})"
        )
    return sparsity


def _check_op_types(method: str, op_types: Any) -> list[str]:
    from onnxruntime.quantization.registry import QDQRegistry

    ops = [op_types] if isinstance(op_types, str) else list(op_types)
    ops = [o.strip() for op in ops for o in str(op).split(",") if o.strip()]
    accepted = DYNAMIC_OP_TYPES if method == "int8-dynamic" else tuple(sorted(QDQRegistry))
    bad = [op for op in ops if op not in accepted]
    if bad or not ops:
        raise InvalidInputError(
            f"invalid op types {', '.join(bad) or '(none)'} for {method}: choose from {', '.join(accepted)}"
        )
    return sorted(set(ops), key=ops.index)


def _operators(info: Mapping[str, Any]) -> dict[str, int]:
    return {str(k): int(v) for k, v in (info.get("operators") or {}).items()}


def _listing(ops: Mapping[str, int] | list[str], limit: int = 6) -> str:
    names = list(ops)
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_applicable(method: str, info: Mapping[str, Any], params: Mapping[str, Any]) -> None:
    """Refuse ``method`` on a graph it cannot apply to, saying why (no work done yet).

    Raises:
        InvalidModelError: the method does not apply to this graph.
    """
    ops = _operators(info)
    ml_ops = [op[len(_ML_DOMAIN):] for op in ops if op.startswith(_ML_DOMAIN)]
    quantized = [op for op in ops if op in _QUANTIZED]
    if method.startswith("int8") and quantized:
        raise InvalidModelError(
            f"{method} does not apply: the graph is already quantized ({_listing(quantized)}); "
            "quantize the float32 parent instead"
        )
    if method == "int8-dynamic":
        wanted = set(params["op_types"])
        found = [op for op in ops if op in wanted]
        if not found:
            raise InvalidModelError(f"int8-dynamic does not apply: {_no_ops_reason(ops, ml_ops, wanted)}")
    elif method == "int8-static":
        wanted = set(params["op_types"] or WEIGHTED_OPS)
        if not any(op in wanted and op in WEIGHTED_OPS for op in ops):
            reason = _no_ops_reason(ops, ml_ops, set(WEIGHTED_OPS))
            raise InvalidModelError(f"int8-static does not apply: {reason}")
    elif method == "fp16":
        if ml_ops:
            raise InvalidModelError(
                f"fp16 does not apply: the graph uses ai.onnx.ml operators ({_listing(ml_ops)}), such as "
                "scikit-learn tree ensembles and linear models, which have no float16 form; onnxruntime "
                "cannot load them after conversion"
            )
        if quantized:
            raise InvalidModelError(f"fp16 does not apply: the graph is int8-quantized ({_listing(quantized)})")
    elif method == "prune" and not any(op in WEIGHTED_OPS for op in ops):
        reason = f"its weights live in ai.onnx.ml operator attributes ({_listing(ml_ops)})" if ml_ops else (
            f"it has no Conv, MatMul or Gemm weights (operators: {_listing(ops)})")
        raise InvalidModelError(f"prune does not apply: {reason}")


def _no_ops_reason(ops: Mapping[str, int], ml_ops: list[str], wanted: set[str]) -> str:
    names = sorted(wanted & set(WEIGHTED_OPS)) or sorted(wanted)
    want = " or ".join(names) if len(names) < 3 else ", ".join(names[:-1]) + " or " + names[-1]
    if ml_ops:
        return (f"the graph has no {want} to quantize; its ai.onnx.ml operators ({_listing(ml_ops)}) keep "
                "their weights in attributes, which onnxruntime cannot quantize")
    hint = ""
    if "Conv" in ops and "Conv" not in wanted:
        hint = "; add Conv to the op types (it becomes ConvInteger, slow on many CPUs) or use int8-static"
    return f"the graph has no {want} to quantize (operators: {_listing(ops)}){hint}"


def gzip_size(data: bytes) -> int:
    """Size of ``data`` after gzip (level 6): what a pruned file costs to ship or archive."""
    return len(gzip.compress(data, compresslevel=6, mtime=0))


# -- child side: the work -------------------------------------------------------------
def build_variant(job: Mapping[str, Any], progress: Progress) -> dict[str, Any]:
    """Write the variant of ``job["src"]`` to ``job["dst"]``, check it, and describe it.

    Runs in the sandboxed child. Returns ``{"model", "info", "notes", "stats"}``.
    """
    from .builders import BUILDERS, Work
    from ..ingest.onnx_check import run_once
    from ..ingest.modelinfo import describe_model

    work = Work(src=Path(job["src"]), dst=Path(job["dst"]), scratch=Path(job["scratch"]), params=job["params"],
                job=job, progress=progress)
    progress(f"starting {job['method']}")
    stats = BUILDERS[job["method"]](work)
    progress("checking the variant in onnxruntime")
    info = describe_model(onnx.load(str(work.dst)), size_bytes=work.dst.stat().st_size)
    run_once(work.dst, info["signature"])
    stats.update(nodes_before=int(job.get("nodes_before", 0)), nodes_after=int(info["node_count"]))
    progress("variant ready")
    return {"model": work.dst.name, "info": info, "notes": work.notes, "stats": stats}


def save_arrays(arrays: Mapping[str, np.ndarray], path: Path) -> Path:
    """Save feeds for a child process without pickles (object strings become unicode)."""
    plain: dict[str, Any] = {k: (v.astype(str) if v.dtype == object else v) for k, v in arrays.items()}
    np.savez(path, **plain)
    return path


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    """Arrays saved by the parent (strings travel as unicode and come back as objects)."""
    with np.load(path, allow_pickle=False) as data:
        return {k: (data[k].astype(object) if data[k].dtype.kind == "U" else data[k]) for k in data.files}
