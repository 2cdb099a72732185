"""Run a version on coerced feeds, in chunks, and shape the results.

``Prediction.outputs`` holds the raw named outputs (sequence-of-map outputs such
as skl2onnx's ZipMap become 2-D arrays with ``output_keys``); ``to_frame()``
gives the tidy table: the predicted label and one probability column per class
label, or the regression value.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd

from ..errors import InvalidInputError, MemoryLimitError
from .runtime import LoadedSession
from .signature import Feeds

__all__ = ["FLAT_NOTE", "PROBABILITIES_NOTE", "SOFTMAX_NOTE", "Prediction", "class_scores", "ranked_frame", "run_feeds", "softmax"]

PROBABILITIES_NOTE = "outputs are probabilities: shown as given"
SOFTMAX_NOTE = "softmax applied to logits"
FLAT_NOTE = "every class has the same score: the model shows no preference for any class"


def _stack_maps(rows: list[dict[Any, float]]) -> tuple[np.ndarray, list[Any]]:
    keys = list(rows[0].keys()) if rows else []
    return np.array([[row[k] for k in keys] for row in rows], dtype=np.float32), keys


def _run_once(
    loaded: LoadedSession, feeds: dict[str, np.ndarray], run_options: ort.RunOptions | None
) -> tuple[dict[str, np.ndarray], dict[str, list[Any]]]:
    try:
        values = loaded.run(feeds, None, run_options)
    except MemoryLimitError:
        raise
    except Exception as exc:  # onnxruntime raises its own exception types
        message = str(exc).split("\n")[0]
        if "Exiting due to terminate flag" in message:
            raise
        raise InvalidInputError(f"the model refused the input: {message}") from exc
    outputs: dict[str, np.ndarray] = {}
    keys: dict[str, list[Any]] = {}
    for name, value in zip(loaded.output_names, values, strict=True):
        if isinstance(value, list) and (not value or isinstance(value[0], dict)):
            outputs[name], keys[name] = _stack_maps(value)
        else:
            outputs[name] = np.asarray(value)
    return outputs, keys


def run_feeds(
    loaded: LoadedSession,
    feeds: Feeds,
    *,
    chunk_rows: int,
    fixed_batch: int | None = None,
    run_options: ort.RunOptions | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, list[Any]]]:
    """Run ``feeds`` through the session in chunks of at most ``chunk_rows`` rows."""
    step = fixed_batch or chunk_rows
    if feeds.rows <= step and not (fixed_batch and feeds.rows != fixed_batch):
        return _run_once(loaded, feeds.arrays, run_options)
    if fixed_batch and fixed_batch != 1 and feeds.rows % fixed_batch:
        raise InvalidInputError(f"the model takes exactly {fixed_batch} rows per call; got {feeds.rows}")
    parts: dict[str, list[np.ndarray]] = {}
    keys: dict[str, list[Any]] = {}
    for start in range(0, feeds.rows, step):
        chunk = {name: arr[start : start + step] for name, arr in feeds.arrays.items()}
        outputs, keys = _run_once(loaded, chunk, run_options)
        for name, value in outputs.items():
            parts.setdefault(name, []).append(value)
    return {name: np.concatenate(chunks) if chunks[0].ndim else chunks[-1] for name, chunks in parts.items()}, keys


def softmax(values: np.ndarray) -> np.ndarray:
    """Row-wise softmax of class scores (rows × classes), stable for large logits."""
    shifted = values - values.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def _row_max(values: np.ndarray) -> np.ndarray:
    """``values.max(axis=1)``; for a few columns, column by column (40× faster on 65,536 × 2)."""
    if values.shape[1] > 32 or values.shape[0] == 0:
        return values.max(axis=1)
    return functools.reduce(np.maximum, values.T)


def _looks_like_probabilities(values: np.ndarray) -> bool:
    if values.size == 0:
        return True
    # loose on the sum: an fp16 or int8 variant's softmax can be off by more than float32 rounding,
    # and softmaxing real probabilities a second time would flatten them
    return bool(values.min() >= -1e-6 and values.max() <= 1 + 1e-6 and np.allclose(values.sum(axis=1), 1, atol=2e-2))


def class_scores(value: np.ndarray) -> np.ndarray | None:
    """``value`` as rows × classes when it holds one float score per class: ``[N, C]``, or
    ``[N, C, 1, 1]`` with the singleton dimensions squeezed (model-zoo image classifiers)."""
    if value.dtype.kind != "f" or value.ndim < 2:
        return None
    if value.ndim == 2:
        return value if value.shape[1] >= 2 else None
    wide = [d for d in value.shape[1:] if d != 1]
    return value.reshape(value.shape[0], wide[0]) if len(wide) == 1 and wide[0] >= 2 else None


@dataclass
class Prediction:
    """The result of one predict call."""

    ref: str
    outputs: dict[str, np.ndarray]
    rows: int
    latency_s: float
    task: str = "other"
    class_labels: list[str] | None = None
    output_keys: dict[str, list[Any]] = field(default_factory=dict)
    unused_columns: tuple[str, ...] = ()
    index: Any = None
    matched_columns: tuple[tuple[str, str], ...] = ()  # (model column, file column) matched by normalised name

    def _class_scores(self) -> tuple[str, np.ndarray] | None:
        for name, value in self.outputs.items():
            scores = class_scores(value)
            if scores is not None:
                return name, scores
        return None

    def _probabilities(self) -> tuple[np.ndarray, list[str]] | None:
        found = self._class_scores()
        if found is None:
            return None
        name, value = found
        labels = self.output_keys.get(name)
        if self.class_labels and len(self.class_labels) == value.shape[1]:
            labels = self.class_labels
        probs = value if _looks_like_probabilities(value) else softmax(value.astype(np.float64))
        return probs, [str(x) for x in (labels or range(value.shape[1]))]

    @property
    def score_note(self) -> str | None:
        """How the class probabilities were read: as given, or softmaxed from logits (None: not a classifier)."""
        found = self._class_scores() if self.task == "classification" else None
        if found is None:
            return None
        scores = found[1].astype(np.float64)
        probabilities = scores if _looks_like_probabilities(scores) else softmax(scores)
        note = PROBABILITIES_NOTE if probabilities is scores else SOFTMAX_NOTE
        # within a millionth of each other: no class is preferred (e.g. untrained or constant weights)
        flat = scores.size > 0 and bool(np.all(np.ptp(probabilities, axis=1) <= 1e-6))
        return f"{note}; {FLAT_NOTE}" if flat else note

    def _labels(self, probs: tuple[np.ndarray, list[str]] | None) -> np.ndarray | None:
        for value in self.outputs.values():
            if value.ndim == 1 or (value.ndim == 2 and value.shape[1] == 1 and value.dtype.kind in "iuUSOb"):
                flat = value.reshape(-1)
                if flat.dtype.kind in "iu" and self.class_labels:
                    if flat.size and flat.min() >= 0 and flat.max() < len(self.class_labels):
                        return np.asarray(self.class_labels, dtype=object)[flat]
                if flat.dtype.kind in "iuUSOb":
                    return flat.astype(str) if flat.dtype.kind != "O" else flat
        if probs is not None:
            values, labels = probs
            return np.asarray(labels, dtype=object)[values.argmax(axis=1)]
        return None

    def to_frame(self) -> pd.DataFrame:
        """A tidy table: one row per input row."""
        frame = pd.DataFrame(self.columns())
        if self.index is not None and len(self.index) == len(frame):
            frame.index = self.index
        return frame

    def columns(self) -> dict[str, Any]:
        """The columns of :meth:`to_frame` as arrays, in order (batch scoring turns them into pyarrow)."""
        columns: dict[str, Any] = {}
        if self.task == "classification":
            probs = self._probabilities()
            labels = self._labels(probs)
            if labels is not None:
                columns["prediction"] = labels
            if probs is not None:
                values, names = probs
                for i, label in enumerate(names):
                    columns[f"proba_{label}"] = values[:, i]
                columns["confidence"] = _row_max(values)
        elif self.task == "regression":
            floats = [v for v in self.outputs.values() if v.dtype.kind == "f"]
            if floats:
                value = floats[0].reshape(self.rows, -1)
                if value.shape[1] == 1:
                    columns["prediction"] = value[:, 0]
                else:
                    for i in range(value.shape[1]):
                        columns[f"prediction_{i}"] = value[:, i]
        if not columns:
            columns = self._raw_columns()
        return columns

    def _raw_columns(self) -> dict[str, Any]:
        columns: dict[str, Any] = {}
        for name, value in self.outputs.items():
            if value.ndim == 0 or value.shape[0] != self.rows:
                continue
            flat = value.reshape(self.rows, -1)
            keys = self.output_keys.get(name)
            if flat.shape[1] == 1:
                columns[name] = flat[:, 0]
            elif flat.shape[1] <= 1000:
                for i in range(flat.shape[1]):
                    columns[f"{name}_{keys[i] if keys else i}"] = flat[:, i]
            else:
                raise InvalidInputError(f"output {name!r} has {flat.shape[1]} values per row; use .outputs instead")
        return columns

    def ranked(self, k: int = 5) -> list[list[tuple[str, float]]]:
        """Per row, the ``k`` most probable classes with their probabilities (empty lists: not a classifier)."""
        probs = self._probabilities() if self.task == "classification" else None
        if probs is None:
            return [[] for _ in range(self.rows)]
        values, labels = probs
        order = np.argsort(-values, axis=1, kind="stable")[:, :k]
        return [[(labels[j], float(values[i, j])) for j in row] for i, row in enumerate(order)]

    def to_records(self) -> list[dict[str, Any]]:
        frame = self.to_frame()
        return frame.astype(object).where(frame.notna(), None).to_dict(orient="records")


def ranked_frame(prediction: Prediction, names: list[str], *, k: int = 5) -> pd.DataFrame:
    """One row per named input: file name, predicted class, its score, and the top ``k`` as text."""
    ranked = prediction.ranked(k)
    return pd.DataFrame({
        "file": names,
        "class": [row[0][0] if row else None for row in ranked],
        "score": [row[0][1] if row else None for row in ranked],
        f"top_{k}": ["; ".join(f"{label}: {score:.4f}" for label, score in row) for row in ranked],
    })
