"""Explanation drift: does a compressed variant still answer for the same reasons as its parent?

Both versions explain the same rows with the same background, settings and
seed, for the class the *parent* predicts; then, per row and overall, the rank
correlation (Spearman) of absolute attributions, whether the top-k features
agree, and the largest attribution changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InvalidInputError
from ..services import ModelServices
from ..storage.registry import ModelVersion
from .images import ImageJob, takes_images
from .model import Progress
from .tabular import TabularJob, load_background
from .types import ExplainSettings, ImageExplanation, TabularExplanation

__all__ = ["DriftReport", "drift_jobs", "explain_drift", "spearman", "top_k_agreement"]

DEFAULT_ROWS = 20


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation; 1.0 when both are constant, NaN when only one is."""
    from scipy.stats import rankdata

    ra, rb = rankdata(a), rankdata(b)
    sa, sb = ra.std(), rb.std()
    if sa == 0 or sb == 0:
        return 1.0 if sa == sb else float("nan")
    return float(((ra - ra.mean()) * (rb - rb.mean())).mean() / (sa * sb))


def _top(values: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-values, kind="stable")[:k]


def top_k_agreement(a: np.ndarray, b: np.ndarray, k: int) -> float:
    """Share of the ``k`` largest entries of ``a`` that are among the ``k`` largest of ``b``."""
    k = min(k, len(a))
    return len(set(_top(a, k).tolist()) & set(_top(b, k).tolist())) / k if k else 1.0


@dataclass
class DriftReport:
    """How the explanations of a variant differ from its parent's on the same rows."""

    parent_ref: str
    variant_ref: str
    top_k: int
    feature_names: list[str]
    parent_values: np.ndarray  # rows × features, for the explained class of each row
    variant_values: np.ndarray
    explained: list[str]  # the class (output) explained on each row: the parent's prediction
    per_row: pd.DataFrame
    changes: pd.DataFrame
    importance: pd.DataFrame  # feature, parent and variant mean |SHAP|
    spearman: float  # rank correlation of the global importances
    mean_row_spearman: float
    top_k_agreement: float  # of the global importances
    mean_row_top_k_agreement: float
    parent: TabularExplanation | ImageExplanation
    variant: TabularExplanation | list[ImageExplanation]  # images: one per explained class

    def summary(self) -> dict[str, Any]:
        """The overall figures, JSON-ready."""
        def clean(x: float) -> float | None:
            return None if np.isnan(x) else round(float(x), 6)

        return {
            "parent": self.parent_ref, "variant": self.variant_ref, "rows": len(self.per_row), "top_k": self.top_k,
            "spearman": clean(self.spearman), "mean_row_spearman": clean(self.mean_row_spearman),
            "top_k_agreement": clean(self.top_k_agreement),
            "mean_row_top_k_agreement": clean(self.mean_row_top_k_agreement),
            "max_abs_change": clean(float(np.abs(self.variant_values - self.parent_values).max())),
        }


def explain_drift(
    services: ModelServices,
    variant_ref: Any,
    parent_ref: Any = None,
    rows: Any = None,
    *,
    background: Any = None,
    target: str | int | None = None,
    settings: ExplainSettings = ExplainSettings(),
    top_k: int = 5,
    max_changes: int = 20,
    progress: Progress | None = None,
) -> DriftReport:
    """Explain ``rows`` with a variant and its parent and compare the explanations.

    ``parent_ref`` defaults to the variant's parent; ``rows`` to a sample of
    the parent's reference data (tabular) — image models need images.
    """
    variant = services.get(variant_ref)
    parent = _parent(services, variant, parent_ref)
    if top_k < 1:
        raise InvalidInputError(f"top_k must be at least 1 (not {top_k})")
    halves = _halves(progress)
    if takes_images(parent):
        if rows is None:
            raise InvalidInputError(f"{parent.ref} takes images; give the images to compare on")
        p_values, v_values, names, explained, p_expl, v_expl = _image_pair(
            services, parent, variant, rows, target, settings, halves)
    else:
        p_values, v_values, names, explained, p_expl, v_expl = _tabular_pair(
            services, parent, variant, rows, background, target, settings, halves)
    return _report(parent.ref, variant.ref, top_k, max_changes, names, explained, p_values, v_values, p_expl, v_expl)


def _halves(progress: Progress | None) -> tuple[Progress | None, Progress | None]:
    if progress is None:
        return None, None
    return (lambda f, t: progress(0.5 * f, f"parent: {t}")), (lambda f, t: progress(0.5 + 0.5 * f, f"variant: {t}"))


def drift_jobs(
    services: ModelServices,
    variant_ref: Any,
    parent_ref: Any = None,
    rows: Any = None,
    *,
    background: Any = None,
    target: str | int | None = None,
    settings: ExplainSettings = ExplainSettings(),
) -> tuple[TabularJob, TabularJob]:
    """The parent's and the variant's jobs on the same rows and background (the parent's reference data)."""
    variant = services.get(variant_ref)
    parent = _parent(services, variant, parent_ref)
    frame, label = load_background(services, parent, background)
    if rows is None:
        rows = frame.sample(n=min(DEFAULT_ROWS, len(frame)), random_state=settings.seed) if len(frame) else frame
    return tuple(  # type: ignore[return-value]
        TabularJob(services, v, rows, background=frame, background_label=label, target=target, settings=settings)
        for v in (parent, variant)
    )


def _parent(services: ModelServices, variant: ModelVersion, parent_ref: Any) -> ModelVersion:
    parent_ref = parent_ref or variant.parent
    if not parent_ref:
        raise InvalidInputError(f"{variant.ref} is not a variant (it has no parent); name the version to compare with")
    return services.get(parent_ref)


def _tabular_pair(services: ModelServices, parent: ModelVersion, variant: ModelVersion, rows: Any, background: Any,
                  target: Any, settings: ExplainSettings, halves: tuple[Any, Any]) -> tuple[Any, ...]:
    parent_job, variant_job = drift_jobs(services, variant, parent, rows, background=background, target=target,
                                         settings=settings)
    p_expl = parent_job.run(progress=halves[0])
    v_expl = variant_job.run(progress=halves[1])
    if v_expl.output_names != p_expl.output_names or v_expl.feature_names != p_expl.feature_names:
        raise InvalidInputError(
            f"{variant.ref} and {parent.ref} differ in features or outputs; they cannot be compared")
    index = p_expl.target_indices(target)
    rows_ix = np.arange(len(index))
    explained = [p_expl.output_names[i] for i in index]
    return (p_expl.values[rows_ix, :, index], v_expl.values[rows_ix, :, index], p_expl.feature_names,
            explained, p_expl, v_expl)


def _image_pair(services: ModelServices, parent: ModelVersion, variant: ModelVersion, images: Any, target: Any,
                settings: ExplainSettings, halves: tuple[Any, Any]) -> tuple[Any, ...]:
    from dataclasses import replace

    one = replace(settings, top_classes=1)
    p_expl = ImageJob(services, parent, images, target=target, settings=one).run(progress=halves[0])
    classes = p_expl.class_indices[:, 0]
    n = len(classes)
    p_values = p_expl.values[..., 0].reshape(n, -1)
    v_values = np.zeros_like(p_values)
    explained = [p_expl.output_names[c] for c in classes]
    variants = []
    for c in np.unique(classes):
        picked = np.flatnonzero(classes == c)
        job = ImageJob(services, variant, _model_layout(p_expl.images[picked], variant), target=int(c), settings=one)
        expl = job.run(progress=halves[1])
        v_values[picked] = expl.values[..., 0].reshape(len(picked), -1)
        variants.append(expl)
    height, width, channels = p_expl.images.shape[1:]
    names = [f"pixel ({r}, {c})" + (f" ch{ch}" if channels > 1 else "")
             for r in range(height) for c in range(width) for ch in range(channels)]
    return p_values, v_values, names, explained, p_expl, variants


def _model_layout(hwc: np.ndarray, version: ModelVersion) -> np.ndarray:
    layout = (version.preprocessing or {}).get("layout", "NCHW")
    return hwc.astype(np.float32) if layout == "NHWC" else np.transpose(hwc, (0, 3, 1, 2)).astype(np.float32)


def _report(parent_ref: str, variant_ref: str, top_k: int, max_changes: int, names: list[str], explained: list[str],
            p_values: np.ndarray, v_values: np.ndarray, p_expl: Any, v_expl: Any) -> DriftReport:
    p_abs, v_abs = np.abs(p_values), np.abs(v_values)
    k = min(top_k, len(names))
    per_row = pd.DataFrame({
        "row": np.arange(len(explained)),
        "explained": explained,
        "spearman": [spearman(a, b) for a, b in zip(p_abs, v_abs, strict=True)],
        "top_k_agreement": [top_k_agreement(a, b, k) for a, b in zip(p_abs, v_abs, strict=True)],
        "parent_top": [", ".join(names[i] for i in _top(a, k)) for a in p_abs],
        "variant_top": [", ".join(names[i] for i in _top(b, k)) for b in v_abs],
        "max_abs_change": np.abs(v_values - p_values).max(axis=1),
    })
    delta = v_values - p_values
    order = np.argsort(-np.abs(delta), axis=None, kind="stable")[:max_changes]
    r, f = np.unravel_index(order, delta.shape)
    changes = pd.DataFrame({
        "row": r, "explained": [explained[i] for i in r], "feature": [names[j] for j in f],
        "parent": p_values[r, f], "variant": v_values[r, f], "change": delta[r, f],
    })
    importance = pd.DataFrame({"feature": names, "parent": p_abs.mean(axis=0), "variant": v_abs.mean(axis=0)})
    return DriftReport(
        parent_ref=parent_ref, variant_ref=variant_ref, top_k=k, feature_names=names, parent_values=p_values,
        variant_values=v_values, explained=explained, per_row=per_row, changes=changes, importance=importance,
        spearman=spearman(importance["parent"].to_numpy(), importance["variant"].to_numpy()),
        mean_row_spearman=float(np.nanmean(per_row["spearman"])) if per_row["spearman"].notna().any() else float("nan"),
        top_k_agreement=top_k_agreement(importance["parent"].to_numpy(), importance["variant"].to_numpy(), k),
        mean_row_top_k_agreement=float(per_row["top_k_agreement"].mean()),
        parent=p_expl, variant=v_expl,
    )
