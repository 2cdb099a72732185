"""What a model's outputs mean, and how far a variant's are from its parent's on the same rows.

    interpret       outputs read as :class:`portal.serving.predict.Prediction` reads them: labels, probabilities
    agreement       top-1 agreement and flipped rows for classifiers, else 1 − MAE/σ; max error, KL divergence
    label_metrics   accuracy, or R² and MAE, against a label column

Runs in the parent, on the outputs the measuring child saved
(:func:`portal.compress.measure.run_outputs`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Interpreted", "agreement", "interpret", "label_metrics"]

_FLIPPED_KEPT = 200
_EPS = 1e-7


@dataclass(frozen=True)
class Interpreted:
    """Outputs read as a class label (+ probabilities) per row, or as numbers."""

    labels: np.ndarray | None  # predicted class per row (str)
    probabilities: np.ndarray | None  # rows × classes
    values: np.ndarray  # rows × k: every float output, for absolute errors
    scores_are_probabilities: bool = False  # the model outputs probabilities, not logits

    @property
    def confidence(self) -> np.ndarray | None:
        return None if self.probabilities is None else self.probabilities.max(axis=1)


def _is_scores(value: np.ndarray) -> bool:
    return value.ndim == 2 and value.dtype.kind == "f" and value.shape[1] >= 2


def _looks_like_probabilities(value: np.ndarray) -> bool:
    return bool(value.size and value.min() >= -1e-6 and value.max() <= 1 + 1e-6
                and np.allclose(value.sum(axis=1), 1, atol=1e-3))


def _renormalized(value: np.ndarray) -> np.ndarray:
    clipped = np.clip(value.astype(np.float64), 0.0, None)
    total = clipped.sum(axis=1, keepdims=True)
    return (clipped / np.where(total > 0, total, 1.0)).astype(value.dtype)


def interpret(outputs: Mapping[str, np.ndarray], keys: Mapping[str, list[Any]], *, task: str,
              class_labels: list[str] | None, rows: int, probabilities: bool | None = None) -> Interpreted:
    """Labels and probabilities as :class:`portal.serving.predict.Prediction` reads them, plus raw float values.

    ``probabilities`` carries the parent's reading over to a variant: int8 rounds a
    softmax so its rows no longer sum to exactly 1, and it must not be read as logits.
    """
    from ..serving.predict import Prediction, softmax

    floats = [v.reshape(rows, -1).astype(np.float64) for v in outputs.values()
              if v.dtype.kind == "f" and v.ndim and v.shape[0] == rows]
    values = np.concatenate(floats, axis=1) if floats else np.zeros((rows, 0))
    classify = task == "classification" or (task == "other" and any(_is_scores(v) for v in outputs.values()))
    if not classify:
        return Interpreted(None, None, values)
    scores = {k: v for k, v in outputs.items() if _is_scores(v)}
    if probabilities is None:
        probabilities = bool(scores) and all(_looks_like_probabilities(v) for v in scores.values())
    # decide here, not in Prediction's own heuristic: logits are softmaxed explicitly
    readable = {k: (_renormalized(v) if probabilities else softmax(v.astype(np.float64))) if k in scores else v
                for k, v in outputs.items()}
    frame = Prediction(ref="", outputs=readable, rows=rows, latency_s=0.0, task="classification",
                       class_labels=class_labels, output_keys=dict(keys)).to_frame()
    labels = frame["prediction"].astype(str).to_numpy() if "prediction" in frame else None
    proba_cols = [c for c in frame.columns if str(c).startswith("proba_")]
    probs = frame[proba_cols].to_numpy(np.float64) if proba_cols else None
    return Interpreted(labels, probs, values, probabilities)


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    p = np.clip(p, _EPS, None)
    q = np.clip(q, _EPS, None)
    p, q = p / p.sum(axis=1, keepdims=True), q / q.sum(axis=1, keepdims=True)
    return float(np.mean(np.sum(p * np.log(p / q), axis=1)))


def agreement(parent: Interpreted, variant: Interpreted) -> dict[str, Any]:
    """How far the variant's answers are from the parent's on the same rows.

    ``value`` is the number the advice compares with the tolerance: top-1 agreement
    for classifiers, else 1 − MAE / σ(parent outputs).
    """
    result: dict[str, Any] = {"rows": int(len(parent.values))}
    if parent.values.shape == variant.values.shape and parent.values.size:
        diff = np.abs(parent.values - variant.values)
        result.update(max_abs_error=float(diff.max()), mean_abs_error=float(diff.mean()))
    else:
        result.update(max_abs_error=None, mean_abs_error=None)
    p, q = parent.probabilities, variant.probabilities
    if p is not None and q is not None and p.shape == q.shape:
        result["kl_divergence"] = _kl(p, q)
    else:
        result["kl_divergence"] = None
    if parent.labels is not None and variant.labels is not None:
        same = parent.labels == variant.labels
        flipped = np.flatnonzero(~same)
        result.update(kind="top-1", value=float(same.mean()), top1=float(same.mean()),
                      flip_rate=float(1 - same.mean()), flipped_count=int(flipped.size),
                      flipped=_flipped_rows(parent, variant, flipped))
        return result
    scale = float(parent.values.std()) if parent.values.size else 0.0
    mae = result["mean_abs_error"]
    if mae is None:
        value = 0.0
    elif scale > 0:
        value = float(max(0.0, 1.0 - mae / scale))
    else:
        value = 1.0 if mae == 0 else 0.0
    result.update(kind="1 - MAE/std", value=value, top1=None, flip_rate=None, flipped_count=0, flipped=[])
    return result


def _flipped_rows(parent: Interpreted, variant: Interpreted, rows: np.ndarray) -> list[dict[str, Any]]:
    pc, vc = parent.confidence, variant.confidence
    assert parent.labels is not None and variant.labels is not None
    listed = []
    for i in rows[:_FLIPPED_KEPT]:
        entry: dict[str, Any] = {"row": int(i), "parent": str(parent.labels[i]), "variant": str(variant.labels[i])}
        if pc is not None and vc is not None:
            entry.update(parent_confidence=float(pc[i]), variant_confidence=float(vc[i]))
        listed.append(entry)
    return listed


def label_metrics(result: Interpreted, labels: np.ndarray, *, task: str) -> dict[str, float]:
    """Accuracy for classifiers; R² and MAE for numeric outputs."""
    if result.labels is not None:
        truth = np.asarray([str(x) for x in labels], dtype=object)
        return {"accuracy": float(np.mean(result.labels.astype(object) == truth))}
    if result.values.shape[1] == 0:
        return {}
    predicted = result.values[:, 0]
    truth_f = np.asarray(labels, dtype=np.float64)
    residual = float(np.sum((truth_f - predicted) ** 2))
    total = float(np.sum((truth_f - truth_f.mean()) ** 2))
    return {"r2": 1.0 - residual / total if total > 0 else float("nan"),
            "mae": float(np.mean(np.abs(truth_f - predicted)))}
