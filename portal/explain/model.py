"""The function SHAP explains: the portal's own predict, one float column per output.

:class:`ModelFunction` turns a matrix (or image batch) in explanation space into
feeds, runs ``Portal.predict`` on the shared session, and picks the numbers to
explain with :class:`OutputPicker` (class probabilities for classifiers, the
value for regressors). Every call is charged to a :class:`Guard`, which reports
progress and stops the run the moment it would pass its hard budget.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidInputError, PortalError
from ..serving.predict import Prediction, class_scores, softmax
from ..services import ModelServices
from ..storage.registry import ModelVersion

__all__ = ["BudgetExceededError", "Guard", "ModelFunction", "OutputPicker", "measure_latency"]

Progress = Callable[[float, str], None]


class BudgetExceededError(PortalError):
    """An explanation would run (or ran) past its budget of model evaluations or seconds."""

    status = 422


def _looks_like_probabilities(values: np.ndarray) -> bool:
    return bool(values.min() >= -1e-6 and values.max() <= 1 + 1e-6 and np.allclose(values.sum(axis=1), 1, atol=1e-3))


@dataclass(frozen=True)
class OutputPicker:
    """Which model outputs are explained, decided once per explanation.

    Classifiers: the probability tensor (a softmax applied when it holds logits),
    one column per class. Other tasks: every float output, side by side.
    """

    tensors: tuple[str, ...]
    names: tuple[str, ...]
    softmax: bool = False
    classifier: bool = False

    @classmethod
    def build(cls, version: ModelVersion, sample: Prediction) -> OutputPicker:
        """Decide from one prediction on real rows (so logits are recognised once, not per batch)."""
        floats = {n: v for n, v in sample.outputs.items()
                  if v.dtype.kind == "f" and v.ndim >= 1 and v.shape[0] == sample.rows}
        if not floats:
            raise InvalidInputError(
                f"{version.ref} has no numeric output to explain (outputs: {', '.join(sample.outputs)})")
        if version.task == "classification":
            for name, raw in floats.items():
                value = class_scores(raw)  # [N, C], or [N, C, 1, 1] squeezed
                if value is not None:
                    labels: Sequence[Any] = sample.output_keys.get(name) or range(value.shape[1])
                    if version.class_labels and len(version.class_labels) == value.shape[1]:
                        labels = version.class_labels
                    prep = version.preprocessing or {}
                    logits = bool(prep.get("softmax")) or not _looks_like_probabilities(value.astype(np.float64))
                    return cls((name,), tuple(str(x) for x in labels), softmax=logits, classifier=True)
        names: list[str] = []
        for name, value in floats.items():
            width = int(np.prod(value.shape[1:])) if value.ndim > 1 else 1
            if width == 1:
                names.append("prediction" if version.task == "regression" and len(floats) == 1 else name)
            else:
                names.extend(f"{name}[{i}]" for i in range(width))
        return cls(tuple(floats), tuple(names))

    def __call__(self, prediction: Prediction) -> np.ndarray:
        parts = [prediction.outputs[n].reshape(prediction.rows, -1).astype(np.float64) for n in self.tensors]
        values = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
        return softmax(values) if self.softmax else values


class Guard:
    """Counts model rows, reports progress, and enforces the hard budget.

    ``clock`` is passed in so tests can drive the time limit without sleeping.
    """

    def __init__(
        self,
        *,
        max_rows: int,
        max_seconds: float,
        expected_rows: int,
        progress: Progress | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_rows = max_rows
        self.max_seconds = max_seconds
        self.expected_rows = max(1, expected_rows)
        self.progress = progress
        self.clock = clock
        self.rows = 0
        self.calls = 0
        self.start = clock()

    def charge(self, rows: int) -> None:
        """Account for ``rows`` model rows about to run; raise when over budget."""
        if self.rows + rows > self.max_rows:
            raise BudgetExceededError(
                f"stopped: the explanation needed more than its budget of {self.max_rows:,} model evaluations "
                f"({self.rows:,} done); explain fewer rows, use a smaller background or max_evals, or raise the budget"
            )
        elapsed = self.clock() - self.start
        if elapsed > self.max_seconds:
            raise BudgetExceededError(
                f"stopped after {elapsed:.1f} s, over the time budget of {self.max_seconds:g} s "
                f"({self.rows:,} model evaluations done); explain fewer rows, use a smaller background, "
                "or raise the budget"
            )
        self.rows += rows
        self.calls += 1

    def done(self, rows: int) -> None:
        if self.progress is not None:
            fraction = min(1.0, self.rows / self.expected_rows)
            self.progress(fraction, f"{self.rows:,} of ~{self.expected_rows:,} model evaluations")


class ModelFunction:
    """``f(batch) -> (n, outputs)`` over ``Portal.predict``, for SHAP."""

    def __init__(
        self,
        services: ModelServices,
        version: ModelVersion,
        to_feeds: Callable[[np.ndarray], Any],
        picker: OutputPicker,
        guard: Guard | None = None,
    ) -> None:
        self.services = services
        self.version = version
        self.to_feeds = to_feeds
        self.picker = picker
        self.guard = guard

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        rows = len(batch)
        if self.guard is not None:
            self.guard.charge(rows)
        # allow_nan: every row is a mix of checked rows and background, so the
        # per-call scan for NaN would only cost time; log=False: an explanation's
        # evaluations are the portal's own work, not traffic (nor inputs for drift)
        prediction = self.services.predict(self.version, self.to_feeds(batch), allow_nan=True, log=False)
        out = self.picker(prediction)
        if self.guard is not None:
            self.guard.done(rows)
        return out

    def with_guard(self, guard: Guard) -> ModelFunction:
        return ModelFunction(self.services, self.version, self.to_feeds, self.picker, guard)


def measure_latency(function: Callable[[np.ndarray], Any], sample: np.ndarray, *, rows: int = 1024) -> float:
    """Seconds per model row: the fastest of three calls on ``rows`` rows tiled from ``sample``.

    The fastest, because a busy machine only ever adds time; the estimate built on
    it only has to be right within a small factor.
    """
    reps = -(-rows // max(1, len(sample)))
    batch = np.concatenate([sample] * reps)[:rows] if reps > 1 else sample[:rows]
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        function(batch)
        best = min(best, time.perf_counter() - start)
    return best / len(batch)
