"""What a compression method is: the :class:`Method` record, and what the records share.

A :class:`Method` holds everything the portal knows of one method: its name, the
line of help users see, its default parameters, how it checks them, when it
applies to a graph, the builder the sandboxed child runs (given a :class:`Work`),
the advice texts that explain its figures, and its colour in charts. The
parent-side helpers here read a graph's operators from the version's stored
description, so a refusal costs nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ALREADY_OPTIMIZED",
    "ML_DOMAIN",
    "QUANTIZED_OPS",
    "QUANT_OPSET",
    "WEIGHTED_OPS",
    "Method",
    "MethodAdvice",
    "Progress",
    "Work",
    "listing",
    "ml_operators",
    "operators",
    "progress_fraction",
    "progress_line",
    "quantized_operators",
]

Progress = Callable[[str], None]
QUANT_OPSET = 13  # QDQ with per-channel axes; older graphs are upgraded first
WEIGHTED_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")  # ops whose weights int8 and prune act on
QUANTIZED_OPS = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger", "ConvInteger",
                 "QLinearConv", "QLinearMatMul", "DynamicQuantizeMatMul", "MatMulIntegerToFloat")
ML_DOMAIN = "ai.onnx.ml."
ALREADY_OPTIMIZED = "onnxruntime already applies these optimizations when it loads the parent."


@dataclass
class Work:
    """One build in the child: where to read and write, the method's parameters, and where to report."""

    src: Path
    dst: Path
    scratch: Path
    params: Mapping[str, Any]
    job: Mapping[str, Any]
    progress: Progress
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class MethodAdvice:
    """What the advice says of a variant of this method that falls short of its parent."""

    accuracy_hint: Callable[[Mapping[str, Any]], str]  # what to try when less accurate, given its parameters
    slower: Callable[[Mapping[str, int], Mapping[str, Any]], str]  # why slower, given its operators and the machine
    no_faster: str | None = None  # why it cannot be faster; None: the gain is within the noise
    size: Callable[[float, float], str] | None = None  # the size note from the raw and gzip size ratios


@dataclass(frozen=True)
class Method:
    """One compression method, all of it: a new method is one of these, listed in :data:`REGISTRY`."""

    name: str
    help: str  # one line for users: what the method does
    defaults: Mapping[str, Any]  # every parameter it takes, with its default
    check: Callable[[dict[str, Any]], dict[str, Any]]  # complete parameters → checked (InvalidInputError)
    applies: Callable[[Mapping[str, int], Mapping[str, Any]], None]  # operators, params → InvalidModelError or None
    build: Callable[[Work], dict[str, Any]]  # child: write Work.dst, append notes, return statistics
    advice: MethodAdvice
    color: str  # of its markers in the comparison charts
    compare_options: tuple[str, ...] = ()  # the knobs of ``compare`` it takes (per_channel, sparsity, ...)
    calibrated: bool = False  # it needs real input rows (the version's reference data by default)
    data_rows: int = 256  # at most this many rows of that data are handed to the builder (evenly spread)
    data_use: str = "calibrate on"  # what the rows are for, in "needs real inputs to ..." messages
    default: bool = True  # part of a comparison when no methods are chosen (False: opt-in, e.g. it trains)


def operators(info: Mapping[str, Any]) -> dict[str, int]:
    """Operator counts of a version's stored description."""
    return {str(k): int(v) for k, v in (info.get("operators") or {}).items()}


def ml_operators(ops: Mapping[str, int]) -> list[str]:
    """The ai.onnx.ml operators (tree ensembles, linear models), without their domain."""
    return [op[len(ML_DOMAIN):] for op in ops if op.startswith(ML_DOMAIN)]


def quantized_operators(ops: Mapping[str, int]) -> list[str]:
    """The operators that show a graph is already int8-quantized."""
    return [op for op in ops if op in QUANTIZED_OPS]


def listing(ops: Mapping[str, int] | list[str], limit: int = 6) -> str:
    """At most ``limit`` names, then how many more."""
    names = list(ops)
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


_FRACTION = re.compile(r"\[(\d{1,3})%\]\s*$")


def progress_line(text: str, fraction: float) -> str:
    """A progress line that also says how far a long step is: ``"epoch 3 of 20 [15%]"``.

    Pages show such lines as a progress bar (see :func:`progress_fraction`); elsewhere
    they read as plain text.
    """
    return f"{text} [{round(100 * min(1.0, max(0.0, fraction)))}%]"


def progress_fraction(line: str) -> float | None:
    """The fraction done that a :func:`progress_line` carries, or None for a plain line."""
    found = _FRACTION.search(line)
    return min(100, int(found.group(1))) / 100 if found else None
