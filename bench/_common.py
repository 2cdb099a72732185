"""Helpers shared by the benchmark scripts (timing, tiny model builders)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def mlp(n_in: int = 30, hidden: int = 256, n_out: int = 2, *, seed: int = 0) -> onnx.ModelProto:
    """A float32 MLP (Gemm + Relu ×2 + Gemm + Softmax) with a dynamic batch."""
    rng = np.random.default_rng(seed)
    dims = [n_in, hidden, hidden, n_out]
    inits, nodes, prev = [], [], "x"
    for i, (a, b) in enumerate(zip(dims, dims[1:])):
        inits += [numpy_helper.from_array((rng.normal(size=(a, b)) / np.sqrt(a)).astype(np.float32), f"W{i}"),
                  numpy_helper.from_array(np.zeros(b, np.float32), f"B{i}")]
        nodes.append(helper.make_node("Gemm", [prev, f"W{i}", f"B{i}"], [f"h{i}"]))
        prev = f"h{i}"
        if i < len(dims) - 2:
            nodes.append(helper.make_node("Relu", [prev], [f"r{i}"]))
            prev = f"r{i}"
    nodes.append(helper.make_node("Softmax", [prev], ["probs"], axis=1))
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", n_in])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", n_out])], inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def per_call(func: Callable[[], object], *, min_seconds: float = 0.5, warmup: int = 20) -> float:
    """Median seconds per call over repeated timing blocks."""
    for _ in range(warmup):
        func()
    start = time.perf_counter()
    n = 0
    while time.perf_counter() - start < 0.05:
        func()
        n += 1
    reps = max(1, n)
    blocks = []
    deadline = time.perf_counter() + min_seconds
    while time.perf_counter() < deadline or len(blocks) < 5:
        t0 = time.perf_counter()
        for _ in range(reps):
            func()
        blocks.append((time.perf_counter() - t0) / reps)
    return statistics.median(blocks)


def interleaved(a: Callable[[], object], b: Callable[[], object], *, rounds: int = 7,
                min_seconds: float = 0.3) -> tuple[float, float]:
    """Median per-call times of ``a`` and ``b`` measured A B A B ... to cancel drift."""
    ta, tb = [], []
    for _ in range(rounds):
        ta.append(per_call(a, min_seconds=min_seconds, warmup=3))
        tb.append(per_call(b, min_seconds=min_seconds, warmup=3))
    return statistics.median(ta), statistics.median(tb)


def paired_ratio(a: Callable[[], object], b: Callable[[], object], *, rounds: int = 15,
                 min_seconds: float = 0.2) -> tuple[float, float, float]:
    """Median per-call times of ``a`` and ``b`` (A B A B ...) and the median of the per-round ratios b / a.

    The ratio of two blocks measured back to back is steadier than the ratio of
    two medians when other work on the machine comes and goes.
    """
    ta, tb = [], []
    for _ in range(rounds):
        ta.append(per_call(a, min_seconds=min_seconds, warmup=3))
        tb.append(per_call(b, min_seconds=min_seconds, warmup=3))
    return statistics.median(ta), statistics.median(tb), statistics.median(y / x for x, y in zip(ta, tb))


def table(rows: list[list[object]], header: list[str]) -> str:
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
