"""What int8-budgeted measures in the sandboxed child: agreement with the parent, sensitive nodes, speed.

    Evaluator          the parent's answers on the calibration rows; scores a candidate file against them
    quantized_nodes    the nodes an all-int8 QDQ graph computes from int8 inputs (the ones that can stay float)
    rank_nodes         quantize one node at a time: the agreement loss and the output error each alone causes
    time_candidates    candidate files timed interleaved (A B C, B C A, ...), their median latency

Classifiers are scored by top-1 agreement; models without class scores by the share
of rows whose outputs stay within the tolerance's relative error of the parent's.
Sessions run on one thread here, so the search's CPU time stays that of its wall time.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ...errors import InvalidModelError
from .base import Progress, progress_line
from .graph import first_line

__all__ = ["Evaluator", "Score", "percent", "quantized_nodes", "rank_nodes", "time_candidates"]

_Q_OPS = ("QuantizeLinear", "DequantizeLinear")


@dataclass(frozen=True)
class Score:
    """How close one candidate's answers are to the parent's on the calibration rows."""

    agreement: float  # top-1 agreement, or the share of rows within the relative error
    error: float  # mean absolute difference of the float outputs / their spread in the parent


def _session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    from ...serving.runtime import SessionConfig

    try:
        return ort.InferenceSession(str(path), sess_options=SessionConfig(intra_op_threads=threads).build(),
                                    providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - a quantized candidate onnxruntime cannot load
        raise InvalidModelError(f"onnxruntime cannot load an int8 candidate of this model: {first_line(exc)}") from exc


def _as_array(value: Any) -> np.ndarray | None:
    if isinstance(value, list):  # ZipMap: one {class: probability} per row
        if not value or not isinstance(value[0], dict):
            return None
        keys = list(value[0])
        return np.array([[row[k] for k in keys] for row in value], dtype=np.float32)
    return np.asarray(value)


def _outputs(path: Path, arrays: Mapping[str, np.ndarray], batch: int) -> list[np.ndarray]:
    session = _session(path, 1)
    rows = len(next(iter(arrays.values())))
    parts: list[list[np.ndarray]] = []
    for start in range(0, rows, batch):
        values = session.run(None, {k: v[start : start + batch] for k, v in arrays.items()})
        found = [_as_array(v) for v in values]
        parts.append([v for v in found if v is not None and v.ndim and len(v) == min(batch, rows - start)])
    return [np.concatenate(column) for column in zip(*parts, strict=True)]


def _labels(outputs: list[np.ndarray]) -> np.ndarray | None:
    """Top-1 answers: a label output (integers or strings, one per row), else the argmax of class scores."""
    for value in outputs:
        if value.dtype.kind in "iuUSO" and value.reshape(len(value), -1).shape[1] == 1:
            return value.reshape(-1)
    for value in outputs:
        if value.dtype.kind == "f" and value.ndim == 2 and value.shape[1] >= 2:
            return value.argmax(axis=1)
    return None


def _floats(outputs: list[np.ndarray]) -> np.ndarray:
    rows = len(outputs[0]) if outputs else 0
    floats = [v.reshape(rows, -1).astype(np.float64) for v in outputs if v.dtype.kind == "f"]
    return np.concatenate(floats, axis=1) if floats else np.zeros((rows, 0))


class Evaluator:
    """The parent's answers on the calibration rows, and how far a candidate's are from them."""

    def __init__(self, parent: Path, arrays: Mapping[str, np.ndarray], *, batch: int, tolerance: float) -> None:
        self.arrays, self.batch, self.tolerance = arrays, batch, tolerance
        reference = _outputs(parent, arrays, batch)
        self.labels = _labels(reference)
        self.values = _floats(reference)
        self.rows = len(next(iter(arrays.values())))
        spread = float(self.values.std()) if self.values.size else 0.0
        self.spread = spread if spread > 0 else 1.0

    def subset(self, rows: int) -> Evaluator:
        """The same comparison on the first ``rows`` rows (whole batches of ``batch`` when that is fixed)."""
        part = copy.copy(self)
        part.arrays = {k: v[:rows] for k, v in self.arrays.items()}
        part.labels = None if self.labels is None else self.labels[:rows]
        part.values, part.rows = self.values[:rows], min(rows, self.rows)
        return part

    @property
    def measure(self) -> str:
        """What :attr:`Score.agreement` counts, in words."""
        if self.labels is not None:
            return "top-1 agreement"
        return f"share of rows within {percent(self.tolerance)} relative error"

    def score(self, path: Path) -> Score:
        """Run ``path`` on the rows and compare its answers with the parent's."""
        outputs = _outputs(path, self.arrays, self.batch)
        values = _floats(outputs)
        same_shape = values.shape == self.values.shape and values.size > 0
        error = float(np.abs(values - self.values).mean() / self.spread) if same_shape else float("inf")
        if self.labels is not None:
            labels = _labels(outputs)
            agree = float(np.mean(labels == self.labels)) if labels is not None else 0.0
        elif same_shape:
            floor = 1e-3 * float(np.abs(self.values).mean()) + 1e-12
            allowed = self.tolerance * np.maximum(np.abs(self.values), floor)
            agree = float(np.mean(np.all(np.abs(values - self.values) <= allowed, axis=1)))
        else:
            agree = 0.0
        return Score(agree, error)


def percent(fraction: float) -> str:
    """``0.01`` → ``"1%"``, ``0.005`` → ``"0.5%"``."""
    return f"{round(100 * fraction, 2):g}%"


def quantized_nodes(all_int8: Path, kept: list[str]) -> list[tuple[str, str]]:
    """(name, op type) of the nodes the all-int8 graph computes from DequantizeLinear outputs, in graph order."""
    graph = onnx.load(str(all_int8), load_external_data=False).graph
    dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return [(n.name, n.op_type) for n in graph.node
            if n.op_type not in _Q_OPS and n.name not in kept and dequantized & set(n.input)]


def rank_nodes(nodes: list[tuple[str, str]], quantize_only: Callable[[str], Path], evaluator: Evaluator, *,
               deadline: float, progress: Progress, span: tuple[float, float]) -> list[dict[str, Any]]:
    """Each node quantized alone, most harmful first: its agreement loss, then its output error.

    Nodes left unmeasured when ``deadline`` (``time.monotonic()``) passes come last, latest in the graph first.
    """
    measured: list[dict[str, Any]] = []
    for i, (name, op_type) in enumerate(nodes):
        if time.monotonic() > deadline:
            break
        fraction = span[0] + (span[1] - span[0]) * i / len(nodes)
        progress(progress_line(f"sensitivity: quantizing {name} ({op_type}) alone, node {i + 1} of {len(nodes)}",
                               fraction))
        score = evaluator.score(quantize_only(name))
        measured.append({"node": name, "op_type": op_type, "loss": max(0.0, 1.0 - score.agreement),
                         "error": score.error, "measured": True})
    measured.sort(key=lambda e: (-e["loss"], -e["error"]))
    rest = [{"node": name, "op_type": op_type, "loss": None, "error": None, "measured": False}
            for name, op_type in reversed(nodes[len(measured):])]
    return measured + rest


def time_candidates(paths: list[Path], feeds: Mapping[str, np.ndarray], *, seconds: float,
                    min_rounds: int = 10, max_rounds: int = 400) -> list[float]:
    """Median latency (ms) of each model on ``feeds``, timed in interleaved rounds after one warm-up run."""
    sessions = [_session(p, 0) for p in paths]
    for session in sessions:
        session.run(None, dict(feeds))
    times: list[list[float]] = [[] for _ in sessions]
    end = time.monotonic() + seconds
    rounds = 0
    while rounds < max_rounds and (rounds < min_rounds or time.monotonic() < end):
        for j in range(len(sessions)):
            k = (rounds + j) % len(sessions)
            start = time.perf_counter()
            sessions[k].run(None, dict(feeds))
            times[k].append((time.perf_counter() - start) * 1e3)
        rounds += 1
    return [statistics.median(t) for t in times]
