"""What an explanation is asked with and what it returns.

    ExplainSettings      method (SHAP or LIME), explainer, evaluation and background budget, seed, hard limits
    Estimate             the plan and its predicted cost, shown before running
    Attribution          one explained output per row: values, base value, model output
    TabularExplanation   SHAP values of table rows for every output, plus the additivity check
    ImageExplanation     SHAP values of image pixels for the top classes of each image
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InvalidInputError
from .cache import CachedResult
from .data import BackgroundInfo

__all__ = [
    "Attribution", "Estimate", "ExplainSettings", "ImageExplanation", "TabularExplanation",
    "check_target", "output_index", "show_value",
]

EXPLAINERS = ("auto", "exact", "permutation")
METHODS = ("shap", "lime")
# fields only LIME reads: kept out of SHAP's cache key (so SHAP entries survive a LIME setting change)
_LIME_FIELDS = ("method", "lime_samples", "lime_discretize", "lime_kernel_width", "lime_segments")
# fields only SHAP reads: kept out of LIME's cache key
_SHAP_FIELDS = ("explainer", "max_evals", "background_size", "background_method", "exact_max_features", "blur",
                "batch_rows")
MIN_LIME_SAMPLES = 50
_TOLERANCE = 1e-4


@dataclass(frozen=True)
class ExplainSettings:
    """How to explain; every field a method reads takes part in its cache key.

    Args:
        method: ``"shap"`` (default) or ``"lime"``; ``explain_rows`` / ``explain_images`` dispatch on it.
        explainer: ``"auto"`` (exact up to ``exact_max_features`` features, permutation beyond),
            ``"exact"`` or ``"permutation"``. Images always use the partition explainer.
        max_evals: masked evaluations per row (default: 500 for permutation, at least
            2 × features + 1; 2^features for exact; 300 for images).
        background_size: background rows kept after summarizing (default 100).
        background_method: ``"sample"`` (random rows) or ``"kmeans"`` (representative rows).
        seed: makes sampling and permutations repeatable.
        blur: image masker kernel in pixels (default: half the smaller side).
        top_classes: how many of each image's most probable classes are explained.
        max_model_rows: hard budget of rows run through the model for one explanation.
        max_seconds: hard budget of wall-clock seconds for one explanation.
        batch_rows: about how many rows each ONNX call gets.
        lime_samples: LIME's perturbed samples per row or image (default: lime's 5000 for rows, 1000 for images).
        lime_discretize: LIME on rows: quartile bins of continuous features (lime's default) or scaled values.
        lime_kernel_width: LIME's exponential kernel width (default: 0.75 × sqrt(features) for rows,
            lime's 0.25 for images).
        lime_segments: LIME on images: about how many superpixels (SLIC); default from the image size.
    """

    explainer: str = "auto"
    max_evals: int | None = None
    background_size: int = 100
    background_method: str = "sample"
    seed: int = 0
    exact_max_features: int = 10
    blur: int | None = None
    top_classes: int = 3
    max_model_rows: int = 20_000_000
    max_seconds: float = 120.0
    batch_rows: int = 4096
    method: str = "shap"
    lime_samples: int | None = None
    lime_discretize: bool = True
    lime_kernel_width: float | None = None
    lime_segments: int | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InvalidInputError(f"invalid method, expected 'shap' or 'lime' (not {self.method!r})")
        if self.explainer not in EXPLAINERS:
            raise InvalidInputError(
                f"invalid explainer, expected one of {', '.join(EXPLAINERS)} (not {self.explainer!r})")
        if self.background_method not in ("sample", "kmeans"):
            raise InvalidInputError(
                f"invalid background method, expected 'sample' or 'kmeans' (not {self.background_method!r})")
        positive = {
            "max_evals": self.max_evals, "background_size": self.background_size, "top_classes": self.top_classes,
            "max_model_rows": self.max_model_rows, "batch_rows": self.batch_rows, "blur": self.blur,
            "lime_samples": self.lime_samples, "lime_segments": self.lime_segments,
        }
        for name, value in positive.items():
            if value is not None and (not isinstance(value, (int, np.integer)) or value < 1):
                raise InvalidInputError(f"{name} must be a positive integer (not {value!r})")
        if not 1 <= self.exact_max_features <= 12:
            raise InvalidInputError(f"exact_max_features must be between 1 and 12 (not {self.exact_max_features!r})")
        if not self.max_seconds > 0:
            raise InvalidInputError(f"max_seconds must be positive (not {self.max_seconds!r})")
        if self.lime_samples is not None and self.lime_samples < MIN_LIME_SAMPLES:
            raise InvalidInputError(f"lime_samples must be at least {MIN_LIME_SAMPLES} (not {self.lime_samples!r})")
        if self.lime_segments is not None and self.lime_segments < 2:
            raise InvalidInputError(f"lime_segments must be at least 2 (not {self.lime_segments!r})")
        if self.lime_kernel_width is not None and not self.lime_kernel_width > 0:
            raise InvalidInputError(f"lime_kernel_width must be positive (not {self.lime_kernel_width!r})")

    def key(self) -> dict[str, Any]:
        """What a SHAP result depends on (LIME's fields left out)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _LIME_FIELDS}

    def lime_key(self) -> dict[str, Any]:
        """What a LIME result depends on (SHAP's fields left out)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _SHAP_FIELDS}


@dataclass(frozen=True)
class Estimate:
    """The plan of an explanation and what it should cost, known before it runs."""

    explainer: str
    rows: int
    features: int
    max_evals: int  # masked evaluations per explained row
    background_rows: int  # model rows per masked evaluation (1 for images)
    model_rows: int  # upper bound of rows run through the model
    latency_s: float  # measured seconds per model row
    seconds: float  # predicted wall-clock time
    cached: bool = False
    notes: tuple[str, ...] = ()

    def describe(self) -> str:
        """``"permutation explainer: 10 rows × 488 evaluations × 100 background rows = ..."``."""
        if self.cached:
            return "Cached: this explanation was computed before and loads instantly."
        per_row = f"{self.latency_s * 1e6:.2f} µs" if self.latency_s < 1e-3 else f"{self.latency_s * 1e3:.2f} ms"
        background = f" × {self.background_rows:,} background rows" if self.background_rows > 1 else ""
        unit = "image(s)" if self.explainer in ("partition", "lime image") else "row(s)"
        return (
            f"{self.explainer} explainer: {self.rows:,} {unit} × {self.max_evals:,} evaluations{background} "
            f"≤ {self.model_rows:,} model rows at {per_row} each → about {_seconds(self.seconds)}."
        )


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"


@dataclass(frozen=True)
class Attribution:
    """One output per row, explained: ``base_values + values.sum(1) ≈ outputs``."""

    feature_names: list[str]
    values: np.ndarray  # rows × features
    base_values: np.ndarray  # rows
    outputs: np.ndarray  # rows
    targets: list[str]  # the explained output (class) of each row


def tolerance(outputs: np.ndarray) -> float:
    scale = float(np.abs(outputs).max()) if outputs.size else 1.0
    return _TOLERANCE * max(1.0, scale)


@dataclass
class TabularExplanation(CachedResult):
    """SHAP values of table rows, for every output of the model."""

    ref: str
    task: str
    feature_names: list[str]
    output_names: list[str]
    data: pd.DataFrame  # the explained rows as the user sees them (strings kept)
    matrix: np.ndarray  # the same rows in explanation space (categories as codes)
    values: np.ndarray  # rows × features × outputs
    base_values: np.ndarray  # rows × outputs
    outputs: np.ndarray  # rows × outputs: the model's answer on each row
    classifier: bool
    explainer: str
    max_evals: int
    background: BackgroundInfo
    settings: ExplainSettings
    model_rows: int
    seconds: float
    key: str = ""
    from_cache: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def additivity_error(self) -> np.ndarray:
        """|base value + sum of attributions − model output|, rows × outputs."""
        return np.abs(self.base_values + self.values.sum(axis=1) - self.outputs)

    @property
    def max_additivity_error(self) -> float:
        return float(self.additivity_error.max()) if self.additivity_error.size else 0.0

    @property
    def tolerance(self) -> float:
        return tolerance(self.outputs)

    @property
    def additive(self) -> bool:
        return self.max_additivity_error <= self.tolerance

    def target_indices(self, target: str | int | None = None) -> np.ndarray:
        """The output explained for each row: ``target``, else the predicted class."""
        rows = len(self.outputs)
        if target is not None:
            return np.full(rows, output_index(target, self.output_names, self.classifier))
        if self.classifier:
            return self.outputs.argmax(axis=1)
        if len(self.output_names) == 1:
            return np.zeros(rows, dtype=int)
        raise InvalidInputError(
            f"{self.ref} has {len(self.output_names)} outputs ({', '.join(self.output_names[:8])}); "
            "choose the one to explain"
        )

    def select(self, target: str | int | None = None) -> Attribution:
        """Attributions of one output per row (default: each row's predicted class)."""
        index = self.target_indices(target)
        rows = np.arange(len(index))
        return Attribution(
            feature_names=list(self.feature_names),
            values=self.values[rows, :, index],
            base_values=self.base_values[rows, index],
            outputs=self.outputs[rows, index],
            targets=[self.output_names[i] for i in index],
        )

    def to_frame(self, target: str | int | None = None) -> pd.DataFrame:
        """One row per explained row: target, base value, output, additivity error, values and SHAP values."""
        chosen = self.select(target)
        frame = pd.DataFrame({
            "row": np.arange(len(chosen.targets)),
            "explained": chosen.targets,
            "base_value": chosen.base_values,
            "output": chosen.outputs,
            "additivity_error": np.abs(chosen.base_values + chosen.values.sum(axis=1) - chosen.outputs),
        })
        shap_cols = pd.DataFrame(chosen.values, columns=[f"shap_{n}" for n in self.feature_names])
        value_cols = self.data.reset_index(drop=True).add_prefix("value_")
        return pd.concat([frame, shap_cols, value_cols], axis=1)

    def to_dict(self, target: str | int | None = None) -> dict[str, Any]:
        """JSON-ready: base values, attributions, feature names, additivity error."""
        chosen = self.select(target)
        return {
            "ref": self.ref,
            "explainer": self.explainer,
            "max_evals": self.max_evals,
            "background": self.background.describe(),
            "seed": self.settings.seed,
            "feature_names": list(self.feature_names),
            "output_names": list(self.output_names),
            "explained": chosen.targets,
            "base_values": chosen.base_values.tolist(),
            "outputs": chosen.outputs.tolist(),
            "attributions": chosen.values.tolist(),
            "additivity_error": np.abs(chosen.base_values + chosen.values.sum(axis=1) - chosen.outputs).tolist(),
            "max_additivity_error": self.max_additivity_error,
            "tolerance": self.tolerance,
            "additive": self.additive,
            "from_cache": self.from_cache,
            "notes": list(self.notes),
        }

    def describe(self, target: str | int | None = None, *, top: int = 5) -> str:
        """Plain text: per row the explained output and its largest attributions, then the checks."""
        chosen = self.select(target)
        lines = []
        for i, name in enumerate(chosen.targets):
            lines.append(f"row {i}: {name} = {chosen.outputs[i]:.4g} (base value {chosen.base_values[i]:.4g})")
            for j in np.argsort(-np.abs(chosen.values[i]), kind="stable")[:top]:
                value = show_value(self.data.iloc[i, j])
                lines.append(f"  {chosen.values[i, j]:+.4g}  {self.feature_names[j]} = {value}")
        lines.append(f"{self.explainer} explainer, {self.max_evals:,} evaluations per row; "
                     f"{self.background.describe()}")
        lines.append(f"additivity: max error {self.max_additivity_error:.2e} "
                     f"({'ok' if self.additive else 'OVER'} tolerance {self.tolerance:.0e})"
                     + ("; from the cache" if self.from_cache else f"; {self.seconds:.2f} s"))
        lines.extend(f"note: {note}" for note in self.notes)
        return "\n".join(lines)


def output_index(target: str | int, names: list[str], classifier: bool) -> int:
    """The index of the output (class) ``target`` names: a position in ``names`` or one of them."""
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool) and 0 <= int(target) < len(names):
        return int(target)
    if str(target) in names:
        return names.index(str(target))
    kind = "class" if classifier else "output"
    raise InvalidInputError(f"unknown {kind} {target!r}; expected one of {', '.join(names)}")


def check_target(target: str | int | None, names: list[str], classifier: bool, ref: str) -> None:
    """Refuse an unknown ``target``, or none where a non-classifier has several outputs to choose from."""
    if target is not None:
        output_index(target, names, classifier)
    elif not classifier and len(names) > 1:
        raise InvalidInputError(
            f"{ref} has {len(names)} outputs ({', '.join(names[:8])}); choose the output to explain"
        )


@dataclass
class ImageExplanation(CachedResult):
    """SHAP values per pixel for the top classes of each image (partition explainer, blur masker)."""

    ref: str
    output_names: list[str]
    images: np.ndarray  # n × H × W × C, the model's input values
    values: np.ndarray  # n × H × W × C × k
    class_indices: np.ndarray  # n × k: the explained classes of each image
    base_values: np.ndarray  # n × k
    outputs: np.ndarray  # n × classes: the model's answer on each image
    max_evals: int
    blur: int
    settings: ExplainSettings
    model_rows: int
    seconds: float
    key: str = ""
    from_cache: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def additivity_error(self) -> np.ndarray:
        """n × k: |base value + sum over pixels − model output of that class|."""
        n, k = self.class_indices.shape
        sums = self.values.reshape(n, -1, k).sum(axis=1)
        chosen = np.take_along_axis(self.outputs, self.class_indices, axis=1)
        return np.abs(self.base_values + sums - chosen)

    @property
    def max_additivity_error(self) -> float:
        return float(self.additivity_error.max()) if self.additivity_error.size else 0.0

    @property
    def tolerance(self) -> float:
        return tolerance(self.outputs)

    @property
    def additive(self) -> bool:
        return self.max_additivity_error <= self.tolerance

    def describe(self) -> str:
        """Plain text: per image its explained classes and where the evidence is."""
        lines = []
        for i in range(len(self.outputs)):
            parts = [f"{self.output_names[c]} (p={self.outputs[i, c]:.3f}, base {self.base_values[i, j]:.3f})"
                     for j, c in enumerate(self.class_indices[i])]
            lines.append(f"image {i}: " + ", ".join(parts))
        lines.append(f"partition explainer, blur({self.blur},{self.blur}), {self.max_evals:,} evaluations per image; "
                     f"additivity: max error {self.max_additivity_error:.2e} "
                     f"({'ok' if self.additive else 'OVER'} tolerance {self.tolerance:.0e})")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: explained classes, base values, attributions (H × W × C per class), additivity error."""
        return {
            "ref": self.ref, "explainer": "partition", "blur": self.blur, "max_evals": self.max_evals,
            "seed": self.settings.seed, "output_names": list(self.output_names),
            "explained": [self.class_names(i) for i in range(len(self.outputs))],
            "base_values": self.base_values.tolist(),
            "outputs": np.take_along_axis(self.outputs, self.class_indices, axis=1).tolist(),
            "attributions": np.moveaxis(self.values, -1, 1).tolist(),
            "additivity_error": self.additivity_error.tolist(), "max_additivity_error": self.max_additivity_error,
            "tolerance": self.tolerance, "additive": self.additive, "from_cache": self.from_cache,
            "notes": list(self.notes),
        }

    def class_names(self, row: int) -> list[str]:
        return [self.output_names[i] for i in self.class_indices[row]]


def show_value(value: Any) -> str:
    """A feature value for text: numbers to 6 significant digits (float32 noise hidden)."""
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.6g}"
    return str(value)
