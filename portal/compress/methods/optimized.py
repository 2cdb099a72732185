"""optimized: onnxruntime's graph optimizations run offline and saved into the file.

It applies to any graph and changes no weight; onnxruntime already applies the
same optimizations when it loads the parent, so it rarely saves time.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from ...errors import InvalidInputError, InvalidModelError
from .base import ALREADY_OPTIMIZED, Method, MethodAdvice, Work
from .graph import first_line

__all__ = ["OPTIMIZATION_LEVELS", "OPTIMIZED"]

OPTIMIZATION_LEVELS = ("basic", "extended", "all")


def _check(params: dict[str, Any]) -> dict[str, Any]:
    if params["level"] not in OPTIMIZATION_LEVELS:
        raise InvalidInputError(f"invalid level {params['level']!r}: expected one of {', '.join(OPTIMIZATION_LEVELS)}")
    return params


def _applies(ops: Mapping[str, int], params: Mapping[str, Any]) -> None:
    """Every graph can be optimized."""


def _build(w: Work) -> dict[str, Any]:
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
        raise InvalidModelError(f"onnxruntime could not optimize this graph: {first_line(exc)}") from exc
    if level == "all":
        notes.append("saved with layout optimizations for this CPU; the file may not load on other machines")
    return {"level": level}


def _hint(params: Mapping[str, Any]) -> str:
    return "this should not happen with graph optimizations; please report it"


def _slower(ops: Mapping[str, int], env: Mapping[str, Any]) -> str:
    return f"Slower: {ALREADY_OPTIMIZED}"


OPTIMIZED = Method(
    name="optimized",
    help="onnxruntime's graph optimizations saved into the file",
    defaults=MappingProxyType({"level": "extended"}),
    check=_check,
    applies=_applies,
    build=_build,
    advice=MethodAdvice(accuracy_hint=_hint, slower=_slower, no_faster=f"No faster: {ALREADY_OPTIMIZED}"),
    color="#059669",
)
