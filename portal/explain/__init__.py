"""SHAP (and LIME) explanations of any version or variant, over the portal's own predict function.

This package owns explaining a model: why a version answers what it does for
given table rows or images (SHAP values, LIME surrogates), whether SHAP and LIME
agree, whether a compressed variant still answers for its parent's reasons, the
on-disk cache of results, and the figures and reports that show them. It asks
the portal only for what :class:`~portal.services.ModelServices` offers (resolve
a reference, coerce, predict, reference data), so it never imports
:mod:`portal.core`; ``Portal.explain`` is an :class:`Explanations` over it.

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

Modules:

    service        explain_rows, explain_images, clear_cache, and Explanations (all of it for one user)
    types          what an explanation is asked with (ExplainSettings) and what SHAP returns
    lime_types     what LIME returns, for rows and for images
    job            what the four jobs share: model function, cache lookup, budget guard
    tabular        SHAP on table rows: inputs and background, plan within budget, run
    images         SHAP on images: partition explainer with a blur masker
    lime           LIME on table rows, and its sample budget
    lime_images    LIME on images: SLIC superpixels, one ridge fit per class
    agreement      SHAP vs LIME on the same rows: rank correlation, top-k overlap, signs
    drift          a variant's explanations vs its parent's on the same rows
    model          the function explained: the portal's predict, output picking, the hard budget
    data           rows and background as one numeric matrix; background summaries
    shap           the one place that calls shap, and its start-up warm-up
    cache          the on-disk cache of results, keyed by everything they depend on
    figures        plotly figures, HTML report and CSV of SHAP explanations and drift
    lime_figures   plotly figures, HTML report and CSV of LIME and of SHAP-vs-LIME agreement
"""

from __future__ import annotations

from .agreement import AgreementReport, agreement_jobs, explain_agreement
from .data import BackgroundInfo
from .drift import DriftReport, drift_jobs, explain_drift
from .images import ImageJob
from .lime import LimeJob
from .lime_images import LimeImageJob
from .lime_types import LimeImageExplanation, LimeTabularExplanation
from .model import BudgetExceededError, Progress
from .service import Explanations, clear_cache, explain_images, explain_rows, images_job, rows_job
from .shap import ExplanationError, is_warm, warm_up_shap
from .tabular import TabularJob
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
    "Explanations",
    "ImageExplanation",
    "ImageJob",
    "LimeImageExplanation",
    "LimeImageJob",
    "LimeJob",
    "LimeTabularExplanation",
    "Progress",
    "TabularExplanation",
    "TabularJob",
    "agreement_jobs",
    "clear_cache",
    "drift_jobs",
    "explain_agreement",
    "explain_drift",
    "explain_images",
    "explain_rows",
    "images_job",
    "is_warm",
    "rows_job",
    "warm_up_shap",
]
