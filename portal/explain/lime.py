"""LIME beside SHAP: local linear surrogates of table rows, over the portal's own predict function.

    job = LimeJob(portal, "wine", rows)         # cheap: coerce, hash, cache lookup
    job.estimate                                # samples per row and predicted seconds (measures latency)
    job.run(progress=...)                       # -> LimeTabularExplanation (from the cache when possible)

This module and :mod:`portal.explain.lime_images` are the only places that call
the ``lime`` package (0.2.0.1). Each row is explained by lime's own
``LimeTabularExplainer.explain_instance``: samples drawn from the training
statistics (quartile bins by default, categories by frequency), an exponential
kernel of width 0.75 × sqrt(features), a ridge fit (alpha 1) weighted by it. The
training data is the background the SHAP explainer would use (the version's
reference data or an uploaded table). Two choices are ours: every feature is
kept (``feature_selection="none"``: with all features lime's selections all end
in the same fit) and the random state is reseeded before every row, so a row's
explanation does not depend on the rows explained before it in the same call.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from functools import cached_property
from typing import Any

import numpy as np

from ..errors import PortalError
from ..services import ModelServices
from .cache import cache_for, library_version, make_key
from .data import BackgroundInfo, check_tabular, hash_array
from .job import ExplainJob
from .lime_types import LimeTabularExplanation
from .model import BudgetExceededError, Progress, measure_latency
from .shap import ExplanationError
from .tabular import load_inputs
from .types import MIN_LIME_SAMPLES, Estimate, ExplainSettings, check_target, output_index

__all__ = ["LimeJob", "lime_rows", "lime_translate"]

FORMAT = 1
DEFAULT_SAMPLES = 5000  # lime's own default
MAX_TRAINING_ROWS = 20_000  # lime only takes statistics of its training data; a sample of this size is plenty
# lime's own work, fitted to runs on two busy cores (bench/explain.py): per row (explainer set-up,
# ridge fit), per sample, and per sample and feature (sampling, distances, fit); by ``discretize``
SECONDS_PER_ROW = {True: 5e-3, False: 2.5e-3}
SECONDS_PER_SAMPLE = {True: 0.7e-6, False: 0.2e-6}
SECONDS_PER_SAMPLE_FEATURE = {True: 0.3e-6, False: 0.07e-6}

# The portal's probabilities are float32: lime's exact check that they sum to 1 is a false alarm.
warnings.filterwarnings("ignore", message=r"\s*Prediction probabilties do not sum to 1", category=UserWarning)

Function = Callable[[np.ndarray], np.ndarray]


def lime_translate(exc: Exception) -> ExplanationError:
    first = str(exc).strip().split("\n")[0][:300]
    return ExplanationError(f"LIME could not explain this model: {type(exc).__name__}: {first}")


def lime_rows(
    function: Function,
    rows: np.ndarray,
    training: np.ndarray,
    *,
    targets: np.ndarray,
    classifier: bool,
    feature_names: list[str],
    categories: dict[int, list[str]],
    samples: int,
    discretize: bool,
    kernel_width: float | None,
    seed: int,
) -> dict[str, Any]:
    """Weights, intercepts, R², surrogate predictions, interpretable rows and conditions of ``rows``."""
    from lime.lime_tabular import LimeTabularExplainer

    features = rows.shape[1]
    out: dict[str, Any] = {k: [] for k in ("weights", "instance", "intercepts", "scores", "local", "conditions")}
    try:
        explainer = LimeTabularExplainer(
            training, mode="classification" if classifier else "regression", feature_names=feature_names,
            categorical_features=sorted(categories), categorical_names=categories, kernel_width=kernel_width,
            discretize_continuous=discretize, feature_selection="none", random_state=seed,
        )
        for i, row in enumerate(rows):
            explainer.random_state.seed(seed)  # the same samples wherever the row sits in the batch
            target = int(targets[i])
            predict = function if classifier else _column(function, target)
            exp = explainer.explain_instance(row, predict, labels=(target,), num_features=features,
                                             num_samples=samples)
            label = target if classifier else 1  # lime keeps a regression's weights under label 1
            for key, value in _parts(exp, label, features).items():
                out[key].append(value)
            out["conditions"].append(_conditions(explainer, row, exp.domain_mapper.feature_names))
    except PortalError:
        raise
    except Exception as exc:  # lime raises ValueError, LinAlgError, IndexError...
        raise lime_translate(exc) from exc
    return {k: (v if k == "conditions" else np.asarray(v, dtype=np.float64)) for k, v in out.items()}


def _parts(exp: Any, label: int, features: int) -> dict[str, Any]:
    """One row's weights (in feature order), interpretable row, intercept, R² and surrogate value."""
    weights = np.zeros(features)
    for j, w in exp.local_exp[label]:
        weights[j] = w
    return {"weights": weights, "instance": np.asarray(exp.domain_mapper.scaled_row, dtype=np.float64),
            "intercepts": float(exp.intercept[label]), "scores": float(exp.score),
            "local": float(np.ravel(exp.local_pred)[0])}


def _conditions(explainer: Any, row: np.ndarray, names: list[str]) -> list[str]:
    """Each feature's condition for the row: its quartile bin, to 4 significant digits (lime's names round
    to 2 decimals, "x <= 0.00" on a small-valued feature), its category ("band=low"), or its name."""
    out = [str(n) for n in names]
    discretizer = explainer.discretizer
    if discretizer is None:
        return out
    for j, bin_of in discretizer.lambdas.items():
        edges = [f"{q:.4g}" for q in discretizer.maxs[j][:-1]]
        b = int(bin_of(row[j]))
        if b == 0:
            out[j] = f"{out[j]} <= {edges[0]}"
        elif b == len(edges):
            out[j] = f"{out[j]} > {edges[-1]}"
        else:
            out[j] = f"{edges[b - 1]} < {out[j]} <= {edges[b]}"
    return out


def _target_key(target: str | int | None) -> str | int | None:
    """1 (the second output) and "1" (the output named 1) must not share a cache entry."""
    return int(target) if isinstance(target, (int, np.integer)) and not isinstance(target, bool) else target


def _column(function: Function, index: int) -> Function:
    def picked(batch: np.ndarray) -> np.ndarray:
        return function(batch)[:, index]

    return picked


class LimeJob(ExplainJob):
    """One prepared LIME explanation of table rows (one output per row: the target or the predicted class)."""

    def __init__(
        self,
        services: ModelServices,
        ref: Any,
        rows: Any,
        *,
        background: Any = None,
        target: str | int | None = None,
        settings: ExplainSettings = ExplainSettings(),
        clock: Callable[[], float] = time.monotonic,
        background_label: str | None = None,
    ) -> None:
        self.services = services
        self.version = services.get(ref)
        check_tabular(self.version)
        self.settings = settings
        self.clock = clock
        self.codec, self.rows, pool, source, dropped = load_inputs(services, self.version, rows, background)
        self.training, method = self._training(pool)
        self.info = BackgroundInfo(background_label or source, method, len(self.training), len(pool), dropped,
                                   settings.seed)
        self.cache = cache_for(services)
        self.key = self._key(target)
        self._hit = self.cache.get(self.key)
        names, classifier = self._outputs()
        check_target(target, names, classifier, self.version.ref)
        self.target = None if target is None else output_index(target, names, classifier)

    def _training(self, pool: np.ndarray) -> tuple[np.ndarray, str]:
        if len(pool) <= MAX_TRAINING_ROWS:
            return pool, "all"
        index = np.sort(np.random.default_rng(self.settings.seed).choice(len(pool), MAX_TRAINING_ROWS, replace=False))
        return pool[index], "sample"

    def _key(self, target: str | int | None) -> str:
        """Everything the result depends on: model, its metadata, rows, training data, target, settings, lime."""
        v = self.version
        return make_key({
            "kind": "lime-tabular", "format": FORMAT, "lime": library_version("lime"), "blob": v.blob_sha,
            "task": v.task, "labels": v.class_labels, "prep": v.preprocessing,
            "columns": self.codec.signature_key(), "rows": hash_array(self.rows),
            "training": hash_array(self.training, self.info.source), "target": _target_key(target),
            "settings": self.settings.lime_key(),
        })

    # -- model ------------------------------------------------------------------------
    def _model_inputs(self) -> tuple[Callable[[np.ndarray], dict[str, np.ndarray]], np.ndarray]:
        return self.codec.feeds, self.rows

    @property
    def kernel_width(self) -> float:
        return self.settings.lime_kernel_width or float(np.sqrt(self.rows.shape[1]) * 0.75)

    # -- plan -------------------------------------------------------------------------
    @cached_property
    def estimate(self) -> Estimate:
        """Samples per row within the hard budget, and the predicted cost (refused when too few fit)."""
        n, features = self.rows.shape
        if self._hit is not None:
            meta = self._hit[1]
            return Estimate("lime", n, features, meta["num_samples"], 1, meta["model_rows"], 0.0, 0.0, cached=True,
                            notes=tuple(meta["notes"]))
        latency = measure_latency(self.function, self.training)
        d = self.settings.lime_discretize
        per_sample = latency + SECONDS_PER_SAMPLE[d] + SECONDS_PER_SAMPLE_FEATURE[d] * features
        samples, notes = fit_samples(self.settings, n, self.settings.lime_samples or DEFAULT_SAMPLES,
                                     per_sample, SECONDS_PER_ROW[d], "row")
        seconds = n * (SECONDS_PER_ROW[d] + samples * per_sample)
        return Estimate("lime", n, features, samples, 1, n * samples, latency, seconds, notes=tuple(notes))

    # -- run --------------------------------------------------------------------------
    def targets(self, outputs: np.ndarray) -> np.ndarray:
        """The output explained on each row: the target, else the predicted class (or the only output)."""
        if self.target is not None:
            return np.full(len(outputs), self.target, dtype=np.int64)
        if self.picker.classifier:
            return outputs.argmax(axis=1).astype(np.int64)
        return np.zeros(len(outputs), dtype=np.int64)

    def run(self, *, progress: Progress | None = None) -> LimeTabularExplanation:
        """Explain the rows (or load the cached explanation); ``progress(fraction, text)`` as it goes."""
        restored = self._restored(LimeTabularExplanation, progress)
        if restored is not None:
            return restored
        plan = self.estimate
        start = time.perf_counter()
        outputs = self.function(self.rows)
        targets = self.targets(outputs)
        guard = self._guard(plan.model_rows, progress)
        categories = {j: list(c.categories) for j, c in enumerate(self.codec.columns) if c.categories is not None}
        parts = lime_rows(
            self.function.with_guard(guard), self.rows, self.training, targets=targets,
            classifier=self.picker.classifier, feature_names=self.codec.feature_names, categories=categories,
            samples=plan.max_evals, discretize=self.settings.lime_discretize,
            kernel_width=self.settings.lime_kernel_width, seed=self.settings.seed,
        )
        result = LimeTabularExplanation(
            ref=self.version.ref, task=self.version.task, feature_names=self.codec.feature_names,
            output_names=list(self.picker.names), data=self.codec.frame(self.rows), matrix=self.rows,
            weights=parts["weights"], instance=parts["instance"], conditions=parts["conditions"],
            intercepts=parts["intercepts"], scores=parts["scores"], local_predictions=parts["local"],
            outputs=outputs, target_index=targets, classifier=self.picker.classifier, num_samples=plan.max_evals,
            discretize=self.settings.lime_discretize, kernel_width=self.kernel_width, training=self.info,
            settings=self.settings, model_rows=guard.rows, seconds=time.perf_counter() - start, key=self.key,
            notes=list(plan.notes),
        )
        return self._stored(result, progress)


def fit_samples(
    s: ExplainSettings, n: int, samples: int, per_sample: float, per_item: float, unit: str
) -> tuple[int, list[str]]:
    """Cap LIME's samples per row (image) to the budget of model rows and seconds; refuse below the minimum."""
    by_rows = s.max_model_rows // max(1, n)
    by_time = int((s.max_seconds / max(1, n) - per_item) / per_sample)
    fitted = min(samples, by_rows, by_time)
    if fitted >= samples:
        return samples, []
    if fitted < MIN_LIME_SAMPLES:
        least = n * MIN_LIME_SAMPLES
        seconds = n * (per_item + MIN_LIME_SAMPLES * per_sample)
        raise BudgetExceededError(
            f"explaining {n:,} {unit}(s) with LIME needs at least {least:,} model evaluations ({MIN_LIME_SAMPLES} "
            f"samples per {unit}, about {seconds:.0f} s), over the budget of {s.max_model_rows:,} evaluations / "
            f"{s.max_seconds:g} s; explain fewer {unit}s or raise the budget"
        )
    return fitted, [f"LIME samples capped from {samples:,} to {fitted:,} per {unit} to stay within the budget"]
