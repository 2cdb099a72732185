"""SHAP (and LIME) explanations of any version or variant, over the portal's own predict function.

    >>> from portal.explain import explain_rows, explain_images, warm_up_shap
    >>> warm_up_shap()                               # at start-up: compile shap in the background
    >>> e = explain_rows(portal, "wine", frame.head(5))
    >>> e.select().values                            # rows × features, for each row's predicted class
    >>> e.max_additivity_error <= e.tolerance        # base value + sum of attributions = model output

Tabular rows use shap's exact explainer for few features and the permutation
explainer beyond, over a background summarized from the version's reference data
(or a given table); string inputs are explained as category codes and shown as
their strings. Images use the partition explainer with a blur masker. Before a
run, :meth:`TabularJob.estimate` predicts its cost from the measured model
latency; a hard budget (evaluations and seconds) caps or refuses a run that
would be too long and stops one that overruns. Results are cached on disk under
``<home>/cache/explain`` by (model blob, rows, background, settings).

``ExplainSettings(method="lime")`` explains the same rows or images with LIME
instead (:mod:`portal.explain.lime`: local surrogate weights, intercept and R²;
superpixel weights for images), under the same estimate, budget, seed and cache;
:func:`explain_agreement` puts SHAP and LIME side by side on the same rows.

    >>> e = explain_rows(portal, "wine", frame.head(5), settings=ExplainSettings(method="lime"))
    >>> e.weights, e.intercepts, e.scores             # rows × features, rows, rows (local R²)
    >>> explain_agreement(portal, "wine", frame.head(20)).summary()
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .agreement import AgreementReport, agreement_jobs, explain_agreement
from .data import BackgroundInfo
from .drift import DriftReport, drift_jobs, explain_drift
from .images import ImageJob
from .lime import LimeJob
from .lime_images import LimeImageJob
from .lime_types import LimeImageExplanation, LimeTabularExplanation
from .model import BudgetExceededError, Progress
from .shap import ExplanationError, is_warm, warm_up_shap
from .tabular import TabularJob, cache_for
from .types import Attribution, Estimate, ExplainSettings, ImageExplanation, TabularExplanation

__all__ = [
    "AgreementReport",
    "Attribution",
    "BackgroundInfo",
    "BudgetExceededError",
    "DriftReport",
    "Estimate",
    "ExplainSettings",
    "ExplanationError",
    "ImageExplanation",
    "ImageJob",
    "LimeImageExplanation",
    "LimeImageJob",
    "LimeJob",
    "LimeTabularExplanation",
    "TabularExplanation",
    "TabularJob",
    "agreement_jobs",
    "clear_cache",
    "drift_jobs",
    "explain_agreement",
    "explain_drift",
    "explain_images",
    "explain_rows",
    "is_warm",
    "warm_up_shap",
]


def explain_rows(
    portal: Any,
    ref: Any,
    rows: Any,
    *,
    background: Any = None,
    target: str | int | None = None,
    settings: ExplainSettings = ExplainSettings(),
    progress: Progress | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> TabularExplanation | LimeTabularExplanation:
    """Explain table rows of ``ref`` (any form ``Portal.predict`` accepts) with SHAP, or LIME.

    Args:
        background: a table (DataFrame, CSV/Parquet path or bytes); default the version's reference data.
        target: the class (or output) to check exists; ``select(target)`` picks it from the result.
            Required for non-classifiers with several outputs. LIME explains only this output
            (default: each row's predicted class).
        settings: ``method="lime"`` for LIME (a :class:`LimeTabularExplanation`).
        progress: called with (fraction done, text) while it runs.

    Raises:
        InvalidInputError: bad rows or background, an image model, an unknown or missing target.
        BudgetExceededError: even a capped run would not fit the budget, or a run overran it.
    """
    job_type = LimeJob if settings.method == "lime" else TabularJob
    job = job_type(portal, ref, rows, background=background, target=target, settings=settings, clock=clock)
    return job.run(progress=progress)


def explain_images(
    portal: Any,
    ref: Any,
    images: Any,
    *,
    target: str | int | None = None,
    settings: ExplainSettings = ExplainSettings(),
    progress: Progress | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> ImageExplanation | LimeImageExplanation:
    """Explain images (paths, bytes, PIL images or a preprocessed array) for their top classes (SHAP or LIME)."""
    job_type = LimeImageJob if settings.method == "lime" else ImageJob
    job = job_type(portal, ref, images, target=target, settings=settings, clock=clock)
    return job.run(progress=progress)


def clear_cache(portal: Any) -> int:
    """Remove every cached explanation of ``portal``; return how many were removed."""
    return cache_for(portal).clear()
