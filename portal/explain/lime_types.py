"""What a LIME explanation returns.

    LimeTabularExplanation   per row: the local linear surrogate's weights, intercept and fidelity (R²)
    LimeImageExplanation     per image: superpixels and each one's weight for the explained classes

LIME fits, around each row, a weighted ridge regression of the model's output on
an *interpretable* copy of the row's neighbours: with ``discretize`` (lime's
default) one 0/1 column per feature, "is it in the row's quartile bin (or its
category)"; without it, the standardized values. Its ``weights`` are that fit's
slopes. A feature's *contribution* to the row is weight × the row's own
interpretable value (1 when discretized), so ``intercept + Σ contributions`` is
the surrogate's prediction at the row, exactly, which :meth:`select` exposes in
the same :class:`Attribution` form as SHAP (figures and agreement use it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from ..errors import InvalidInputError
from .cache import CachedResult
from .data import BackgroundInfo
from .types import Attribution, ExplainSettings, output_index, show_value

__all__ = ["LimeImageExplanation", "LimeTabularExplanation"]


@dataclass
class LimeTabularExplanation(CachedResult):
    """LIME's local surrogate of each row, for one output per row (the predicted class by default)."""

    explainer: ClassVar[str] = "lime"

    ref: str
    task: str
    feature_names: list[str]
    output_names: list[str]
    data: pd.DataFrame  # the explained rows as the user sees them (strings kept)
    matrix: np.ndarray  # the same rows in explanation space (categories as codes)
    weights: np.ndarray  # rows × features: the surrogate's slopes
    instance: np.ndarray  # rows × features: each row in the surrogate's space (1 = in its bin / category)
    conditions: list[list[str]]  # rows × features: "alcohol > 13.05", "hue_band=low", or the feature's name
    intercepts: np.ndarray  # rows
    scores: np.ndarray  # rows: weighted R² of the surrogate on its samples (its fidelity)
    local_predictions: np.ndarray  # rows: the surrogate's value at the row
    outputs: np.ndarray  # rows × outputs: the model's answer on each row
    target_index: np.ndarray  # rows: the explained output of each row
    classifier: bool
    num_samples: int
    discretize: bool
    kernel_width: float
    training: BackgroundInfo  # the data LIME's sampling statistics came from
    settings: ExplainSettings
    model_rows: int
    seconds: float
    key: str = ""
    from_cache: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def contributions(self) -> np.ndarray:
        """rows × features: weight × the row's interpretable value (they sum to surrogate − intercept)."""
        return self.weights * self.instance

    @property
    def targets(self) -> list[str]:
        return [self.output_names[i] for i in self.target_index]

    @property
    def model_outputs(self) -> np.ndarray:
        """The model's value of each row's explained output."""
        return self.outputs[np.arange(len(self.outputs)), self.target_index]

    def select(self, target: str | int | None = None) -> Attribution:
        """Contributions, intercepts and surrogate predictions in SHAP's :class:`Attribution` form."""
        if target is not None:
            index = output_index(target, self.output_names, self.classifier)
            if not (self.target_index == index).all():
                raise InvalidInputError(
                    f"this LIME explanation is of {', '.join(sorted(set(self.targets)))}; "
                    f"explain again with target {self.output_names[index]!r}"
                )
        return Attribution(feature_names=list(self.feature_names), values=self.contributions,
                           base_values=self.intercepts, outputs=self.local_predictions, targets=self.targets)

    def to_frame(self) -> pd.DataFrame:
        """One row per explained row: target, intercept, surrogate and model output, R², weights, values."""
        frame = pd.DataFrame({
            "row": np.arange(len(self.outputs)), "explained": self.targets, "intercept": self.intercepts,
            "local_prediction": self.local_predictions, "model_output": self.model_outputs,
            "local_r2": self.scores,
        })
        weights = pd.DataFrame(self.weights, columns=[f"lime_{n}" for n in self.feature_names])
        values = self.data.reset_index(drop=True).add_prefix("value_")
        return pd.concat([frame, weights, values], axis=1)

    def to_dict(self, target: str | int | None = None) -> dict[str, Any]:
        """JSON-ready: weights with their conditions, intercepts, local R², surrogate and model outputs."""
        self.select(target)
        return {
            "ref": self.ref, "method": "lime", "num_samples": self.num_samples, "discretize": self.discretize,
            "kernel_width": self.kernel_width, "training": self.training.describe(), "seed": self.settings.seed,
            "feature_names": list(self.feature_names), "output_names": list(self.output_names),
            "explained": self.targets, "intercepts": self.intercepts.tolist(), "weights": self.weights.tolist(),
            "conditions": self.conditions, "contributions": self.contributions.tolist(),
            "local_r2": self.scores.tolist(), "local_predictions": self.local_predictions.tolist(),
            "outputs": self.model_outputs.tolist(), "from_cache": self.from_cache, "notes": list(self.notes),
        }

    def describe(self, target: str | int | None = None, *, top: int = 5) -> str:
        """Plain text: per row the explained output, the surrogate's fit and its largest weights."""
        self.select(target)
        lines = []
        for i, name in enumerate(self.targets):
            lines.append(f"row {i}: {name} = {self.model_outputs[i]:.4g} (LIME surrogate "
                         f"{self.local_predictions[i]:.4g}, intercept {self.intercepts[i]:.4g}, "
                         f"local R² {self.scores[i]:.3f})")
            for j in np.argsort(-np.abs(self.weights[i]), kind="stable")[:top]:
                lines.append(f"  {self.weights[i, j]:+.4g}  {self.conditions[i][j]}"
                             + ("" if self.discretize else f" (= {show_value(self.data.iloc[i, j])})"))
        lines.append(f"{self.describe_method()}; {self.training.describe()}")
        lines.append("from the cache" if self.from_cache else f"{self.seconds:.2f} s, {self.model_rows:,} model rows")
        lines.extend(f"note: {note}" for note in self.notes)
        return "\n".join(lines)

    def describe_method(self) -> str:
        space = "quartile bins of continuous features" if self.discretize else "standardized feature values"
        return (f"LIME: {self.num_samples:,} samples per row, exponential kernel of width {self.kernel_width:.3g}, "
                f"ridge fit (alpha 1) on {space}")


@dataclass
class LimeImageExplanation(CachedResult):
    """LIME on images: SLIC superpixels, and each one's weight for the explained classes of each image."""

    explainer: ClassVar[str] = "lime image"

    ref: str
    output_names: list[str]
    images: np.ndarray  # n × H × W × C, the model's input values
    segments: np.ndarray  # n × H × W: superpixel of each pixel, 0 … count − 1
    weights: np.ndarray  # n × k × max superpixels (NaN past an image's count)
    class_indices: np.ndarray  # n × k
    intercepts: np.ndarray  # n × k
    scores: np.ndarray  # n × k: weighted R² of each class's surrogate
    local_predictions: np.ndarray  # n × k
    outputs: np.ndarray  # n × classes
    num_samples: int
    kernel_width: float
    settings: ExplainSettings
    model_rows: int
    seconds: float
    key: str = ""
    from_cache: bool = False
    notes: list[str] = field(default_factory=list)

    def segment_count(self, row: int) -> int:
        return int(self.segments[row].max()) + 1

    def pixel_weights(self, row: int, k: int = 0) -> np.ndarray:
        """H × W: each pixel coloured with its superpixel's weight for the ``k``-th explained class."""
        return self.weights[row, k, : self.segment_count(row)][self.segments[row]]

    def class_names(self, row: int) -> list[str]:
        return [self.output_names[i] for i in self.class_indices[row]]

    def describe(self) -> str:
        """Plain text: per image its explained classes, their fit and strongest superpixels."""
        lines = []
        for i in range(len(self.outputs)):
            count = self.segment_count(i)
            for k, c in enumerate(self.class_indices[i]):
                w = self.weights[i, k, :count]
                top = ", ".join(f"#{s} {w[s]:+.3g}" for s in np.argsort(-np.abs(w), kind="stable")[:3])
                lines.append(f"image {i}: {self.output_names[c]} (p={self.outputs[i, c]:.3f}, local R² "
                             f"{self.scores[i, k]:.3f}, {count} superpixels): {top}")
        lines.append(f"LIME: {self.num_samples:,} samples per image, kernel width {self.kernel_width:.3g}; "
                     + ("from the cache" if self.from_cache else f"{self.seconds:.2f} s"))
        lines.extend(f"note: {note}" for note in self.notes)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: superpixel map, per-class superpixel weights, intercepts and local R²."""
        return {
            "ref": self.ref, "method": "lime", "num_samples": self.num_samples, "kernel_width": self.kernel_width,
            "seed": self.settings.seed, "output_names": list(self.output_names),
            "explained": [self.class_names(i) for i in range(len(self.outputs))],
            "segments": self.segments.tolist(),
            "weights": [[self.weights[i, k, : self.segment_count(i)].tolist() for k in range(self.weights.shape[1])]
                        for i in range(len(self.outputs))],
            "intercepts": self.intercepts.tolist(), "local_r2": self.scores.tolist(),
            "local_predictions": self.local_predictions.tolist(),
            "outputs": np.take_along_axis(self.outputs, self.class_indices, axis=1).tolist(),
            "from_cache": self.from_cache, "notes": list(self.notes),
        }
