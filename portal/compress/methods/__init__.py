"""The compression methods, one :class:`Method` record each, and the registry that lists them.

A record holds all the portal knows of its method: name, help line, default
parameters, parameter checks, applicability check, the builder the sandboxed
child runs, the advice texts and its chart colour. Adding a method is one record
in a module here and one entry in :data:`REGISTRY`; the rules, the builder, the
advice, the charts and the pages read it from there.

    >>> from portal.compress.methods import METHODS, method
    >>> METHODS                                  # ('int8-dynamic', 'int8-static', 'fp16', 'prune', 'optimized')
    >>> method("prune").defaults, method("prune").help

Modules:

    base        the Method record, the Work a builder gets, and what the parent-side checks share
    graph       what the builders share in the child: opset upgrade, quant_pre_process, plain errors
    int8        int8-dynamic and int8-static (onnxruntime's quantizers)
    int8_budget int8-budgeted (static int8 keeping the nodes that hurt in float32, within a tolerance)
    sensitivity what int8-budgeted measures in the child: agreement, per-node sensitivity, timing
    fp16        fp16 (float16 inside, float32 at the inputs and outputs)
    prune       prune (zero the smallest-magnitude weights)
    optimized   optimized (onnxruntime's graph optimizations saved into the file)
    distill     distill (a smaller student trained on the parent's outputs; see portal.compress.students)
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from ...errors import InvalidInputError
from .base import (
    QUANT_OPSET,
    WEIGHTED_OPS,
    Method,
    MethodAdvice,
    Progress,
    Work,
    operators,
    progress_fraction,
    progress_line,
)
from .distill import DISTILL
from .fp16 import FP16
from .int8 import CALIBRATION_METHODS, DYNAMIC_OP_TYPES, INT8_DYNAMIC, INT8_STATIC
from .int8_budget import INT8_BUDGETED
from .optimized import OPTIMIZATION_LEVELS, OPTIMIZED
from .prune import PRUNE

__all__ = [
    "CALIBRATION_METHODS",
    "DEFAULT_METHODS",
    "DYNAMIC_OP_TYPES",
    "METHODS",
    "OPTIMIZATION_LEVELS",
    "QUANT_OPSET",
    "REGISTRY",
    "WEIGHTED_OPS",
    "Method",
    "MethodAdvice",
    "Progress",
    "Work",
    "method",
    "operators",
    "progress_fraction",
    "progress_line",
]

REGISTRY: Mapping[str, Method] = MappingProxyType(
    {m.name: m for m in (INT8_DYNAMIC, INT8_STATIC, FP16, PRUNE, OPTIMIZED, INT8_BUDGETED, DISTILL)}
)
METHODS = tuple(REGISTRY)
DEFAULT_METHODS = tuple(m.name for m in REGISTRY.values() if m.default)  # a comparison's methods when none are chosen


def method(name: str) -> Method:
    """The record of the method ``name``.

    Raises:
        InvalidInputError: no method has that name.
    """
    found = REGISTRY.get(name)
    if found is None:
        raise InvalidInputError(f"unknown method {name!r}: expected one of {', '.join(METHODS)}")
    return found
