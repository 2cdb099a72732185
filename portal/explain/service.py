"""The package's front: explain rows or images with SHAP or LIME, and :class:`Explanations`, bound to one user.

``explain_rows`` and ``explain_images`` pick the job of ``settings.method`` and
run it; :class:`Explanations` offers them, the SHAP-vs-LIME agreement, the
variant drift and the cache, over one :class:`~portal.services.ModelServices`
(``Portal.explain`` is one, scoped to its signed-in user).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..services import ModelServices
from .agreement import AgreementReport, agreement_jobs, explain_agreement
from .cache import cache_for
from .drift import DriftReport, drift_jobs, explain_drift
from .images import ImageJob
from .lime import LimeJob
from .lime_images import LimeImageJob
from .lime_types import LimeImageExplanation, LimeTabularExplanation
from .model import Progress
from .tabular import TabularJob
from .types import ExplainSettings, ImageExplanation, TabularExplanation

__all__ = ["Explanations", "clear_cache", "explain_images", "explain_rows", "images_job", "rows_job"]


def rows_job(
    services: ModelServices,
    ref: Any,
    rows: Any,
    *,
    background: Any = None,
    target: str | int | None = None,
    settings: ExplainSettings = ExplainSettings(),
    clock: Callable[[], float] = time.monotonic,
) -> TabularJob | LimeJob:
    """The prepared job explaining table rows of ``ref``: LIME's when ``settings.method == "lime"``, else SHAP's."""
    job_type = LimeJob if settings.method == "lime" else TabularJob
    return job_type(services, ref, rows, background=background, target=target, settings=settings, clock=clock)


def images_job(
    services: ModelServices,
    ref: Any,
    images: Any,
    *,
    target: str | int | None = None,
    settings: ExplainSettings = ExplainSettings(),
    clock: Callable[[], float] = time.monotonic,
) -> ImageJob | LimeImageJob:
    """The prepared job explaining images of ``ref``: LIME's when ``settings.method == "lime"``, else SHAP's."""
    job_type = LimeImageJob if settings.method == "lime" else ImageJob
    return job_type(services, ref, images, target=target, settings=settings, clock=clock)


def explain_rows(
    services: ModelServices,
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
    job = rows_job(services, ref, rows, background=background, target=target, settings=settings, clock=clock)
    return job.run(progress=progress)


def explain_images(
    services: ModelServices,
    ref: Any,
    images: Any,
    *,
    target: str | int | None = None,
    settings: ExplainSettings = ExplainSettings(),
    progress: Progress | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> ImageExplanation | LimeImageExplanation:
    """Explain images (paths, bytes, PIL images or a preprocessed array) for their top classes (SHAP or LIME)."""
    job = images_job(services, ref, images, target=target, settings=settings, clock=clock)
    return job.run(progress=progress)


def clear_cache(services: ModelServices) -> int:
    """Remove every cached explanation of ``services``; return how many were removed."""
    return cache_for(services).clear()


class Explanations:
    """Every explanation the package offers, for the user ``services`` acts for.

    Each method is the module function of the same purpose with ``services``
    given; the options are that function's keyword arguments.

        >>> portal.explain.rows("wine", frame.head(5)).describe()
        >>> portal.explain.agreement("wine").summary()
    """

    def __init__(self, services: ModelServices) -> None:
        self.services = services

    def rows(self, ref: Any, rows: Any, **options: Any) -> TabularExplanation | LimeTabularExplanation:
        """:func:`explain_rows`: SHAP (or LIME) values of table rows."""
        return explain_rows(self.services, ref, rows, **options)

    def images(self, ref: Any, images: Any, **options: Any) -> ImageExplanation | LimeImageExplanation:
        """:func:`explain_images`: SHAP (or LIME) attributions of images for their top classes."""
        return explain_images(self.services, ref, images, **options)

    def rows_job(self, ref: Any, rows: Any, **options: Any) -> TabularJob | LimeJob:
        """:func:`rows_job`: the prepared job, to show its estimate before running it."""
        return rows_job(self.services, ref, rows, **options)

    def images_job(self, ref: Any, images: Any, **options: Any) -> ImageJob | LimeImageJob:
        """:func:`images_job`: the prepared job, to show its estimate before running it."""
        return images_job(self.services, ref, images, **options)

    def agreement(self, ref: Any, rows: Any = None, **options: Any) -> AgreementReport:
        """:func:`~portal.explain.agreement.explain_agreement`: SHAP and LIME compared on the same rows."""
        return explain_agreement(self.services, ref, rows, **options)

    def agreement_jobs(self, ref: Any, rows: Any = None, **options: Any) -> tuple[TabularJob, LimeJob]:
        """:func:`~portal.explain.agreement.agreement_jobs`: SHAP's and LIME's prepared jobs on the same rows."""
        return agreement_jobs(self.services, ref, rows, **options)

    def drift(self, variant_ref: Any, parent_ref: Any = None, rows: Any = None, **options: Any) -> DriftReport:
        """:func:`~portal.explain.drift.explain_drift`: a variant's explanations compared with its parent's."""
        return explain_drift(self.services, variant_ref, parent_ref, rows, **options)

    def drift_jobs(
        self, variant_ref: Any, parent_ref: Any = None, rows: Any = None, **options: Any
    ) -> tuple[TabularJob, TabularJob]:
        """:func:`~portal.explain.drift.drift_jobs`: the parent's and the variant's prepared jobs."""
        return drift_jobs(self.services, variant_ref, parent_ref, rows, **options)

    def clear_cache(self) -> int:
        """:func:`clear_cache`: remove every cached explanation; return how many were removed."""
        return clear_cache(self.services)
