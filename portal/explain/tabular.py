"""Explaining table rows: check the data, summarize the background, plan within budget, run.

    job = TabularJob(portal, "wine", rows)      # cheap: coerce, hash, cache lookup
    job.estimate                                # plan and predicted seconds (measures latency)
    job.run(progress=...)                       # -> TabularExplanation (from the cache when possible)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from ..errors import InvalidInputError
from ..ingest.modelinfo import numpy_dtype
from ..serving.dataio import read_input
from ..serving.signature import Feeds
from ..services import ModelServices
from ..storage.registry import ModelVersion
from .cache import cache_for, make_key
from .data import ROWS_AS_BACKGROUND, BackgroundInfo, TabularCodec, check_tabular, hash_array, summarize_background
from .job import ExplainJob
from .model import BudgetExceededError, Progress, measure_latency
from .shap import shap_version, tabular_values
from .types import Estimate, ExplainSettings, TabularExplanation, check_target

__all__ = ["MIN_ROWS_AS_BACKGROUND", "TabularInputs", "TabularJob", "load_background", "load_inputs"]

FORMAT = 1
DEFAULT_PERMUTATION_EVALS = 500
MIN_BACKGROUND = 10
# with no reference data and no background table, the rows being explained are the
# background when there are at least this many (fewer would make a poor background)
MIN_ROWS_AS_BACKGROUND = 10
# shap's own work per model row (masking, averaging) and per masked evaluation
# (Python per call), fitted to runs of the demo models on two busy cores.
SHAP_SECONDS_PER_ROW = 1.5e-6
SHAP_SECONDS_PER_EVAL = {"exact": 10e-6, "permutation": 40e-6}
# shap builds every masked row of one permutation (or of all 2^M coalitions) in one
# array; this bounds that array so a wide model cannot exhaust memory.
MAX_CALL_BYTES = 256 * 1024**2
MAX_EXACT_FEATURES = 12


def load_background(
    services: ModelServices, version: ModelVersion, background: Any, *, rows: Any = None
) -> tuple[Any, str]:
    """The background table and where it came from.

    Given, else the version's reference data (or its parent's), else ``rows`` (the rows
    being explained) when there are at least :data:`MIN_ROWS_AS_BACKGROUND` of them.
    """
    if background is None:
        owner = version.ref
        frame = services.reference_frame(owner)
        if frame is None and version.parent:  # a variant answers to its parent's data
            owner = services.get(version.parent).ref
            frame = services.reference_frame(owner)
        if frame is not None:
            return frame, f"reference data of {owner}"
        count = _count_rows(rows)
        if count >= MIN_ROWS_AS_BACKGROUND:
            return rows, ROWS_AS_BACKGROUND
        given = f"only {count} row(s) to explain" if count else "no rows to explain"
        raise InvalidInputError(
            f"{version.ref} has no reference data to use as background, and {given} (at least "
            f"{MIN_ROWS_AS_BACKGROUND} can serve as their own background); explain more rows, upload a background "
            "table (CSV or Parquet) with the model's columns, or add reference data on the Models page (Edit tab)"
        )
    if isinstance(background, (str, Path)):
        return read_input(background), f"file {Path(background).name}"
    if isinstance(background, (bytes, bytearray)):
        return read_input(bytes(background), name="background.csv"), "uploaded table"
    return background, "uploaded table"


def _count_rows(rows: Any) -> int:
    if isinstance(rows, pd.DataFrame):
        return len(rows)
    if isinstance(rows, dict) and rows:
        return len(next(iter(rows.values())))
    if isinstance(rows, (np.ndarray, list)):
        return len(rows)
    return 0


def _coerce(
    services: ModelServices, version: ModelVersion, data: Any, what: str, *, allow_nan: bool = False
) -> Feeds:
    if isinstance(data, pd.DataFrame) and data.empty:
        raise InvalidInputError(f"the {what} is empty; give at least one row with the model's columns")
    fast = _numeric_block(version, data, allow_nan)
    if fast is not None:
        return fast
    try:
        return services.coerce(version, data, allow_nan=allow_nan, extra_columns="ignore")
    except InvalidInputError as exc:
        raise type(exc)(f"{what}: {exc.message}") from None


def _numeric_block(version: ModelVersion, data: Any, allow_nan: bool) -> Feeds | None:
    """Feeds for the common case (one float input, named numeric columns) without the general coercion.

    Anything else, or any value the general path would refuse, returns None, so
    ``Portal.coerce`` handles it and words the error.
    """
    specs = version.signature.get("inputs", [])
    names = version.feature_names
    if not isinstance(data, pd.DataFrame) or len(specs) != 1 or not names:
        return None
    spec, shape = specs[0], specs[0].get("shape") or []
    if spec.get("kind") != "tensor" or spec.get("dtype") not in ("float32", "float64") or len(shape) != 2:
        return None
    if shape[1] not in (None, len(names)) or not all(isinstance(c, str) for c in data.columns):
        return None
    if not set(names) <= set(data.columns) or len(set(data.columns)) != len(data.columns):
        return None
    block = data[list(names)]
    if not all(dtype.kind in "fiu" for dtype in block.dtypes):
        return None
    values = block.to_numpy(dtype=numpy_dtype(spec["dtype"]))
    if not allow_nan and not np.isfinite(values).all():
        return None
    return Feeds({spec["name"]: values}, len(values))


def _complete_rows(feeds: Feeds) -> Feeds:
    """Drop background rows holding NaN or infinite numbers."""
    keep = np.ones(feeds.rows, dtype=bool)
    for arr in feeds.arrays.values():
        if arr.dtype.kind == "f":
            keep &= np.isfinite(arr.reshape(feeds.rows, -1)).all(axis=1)
    if keep.all():
        return feeds
    if not keep.any():
        raise InvalidInputError("background data: every row has a missing value; give complete rows")
    return Feeds({k: v[keep] for k, v in feeds.arrays.items()}, int(keep.sum()), feeds.unused_columns)


class TabularInputs(NamedTuple):
    """Rows to explain and background rows, checked and laid out in explanation space."""

    codec: TabularCodec
    rows: np.ndarray
    pool: np.ndarray  # the complete background rows
    source: str  # where the background came from
    dropped: int  # background rows dropped for a missing value


def load_inputs(services: ModelServices, version: ModelVersion, rows: Any, background: Any) -> TabularInputs:
    """Check rows and background (default: the version's reference data) and lay both out as matrices."""
    row_feeds = _coerce(services, version, rows, "rows to explain")
    frame, source = load_background(services, version, background, rows=rows)
    raw = _coerce(services, version, frame, "background data", allow_nan=True)
    background_feeds = _complete_rows(raw)
    codec = TabularCodec.build(version, [row_feeds, background_feeds])
    return TabularInputs(codec, codec.matrix(row_feeds), codec.matrix(background_feeds), source,
                         raw.rows - background_feeds.rows)


class TabularJob(ExplainJob):
    """One prepared explanation of table rows."""

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
        self.target = target
        self.clock = clock
        self.codec, self.rows, self.pool, source, self.dropped = load_inputs(services, self.version, rows, background)
        self.source = background_label or source
        self.cache = cache_for(services)
        self.key = self._key()
        self._hit = self.cache.get(self.key)
        check_target(target, *self._outputs(), self.version.ref)

    def _key(self) -> str:
        """Everything the result depends on: model, its metadata, rows, background, settings, shap."""
        v = self.version
        return make_key({
            "kind": "tabular", "format": FORMAT, "shap": shap_version(), "blob": v.blob_sha, "task": v.task,
            "labels": v.class_labels, "prep": v.preprocessing, "columns": self.codec.signature_key(),
            "rows": hash_array(self.rows), "background": hash_array(self.pool, self.source),
            "settings": self.settings.key(),
        })

    # -- model ------------------------------------------------------------------------
    def _model_inputs(self) -> tuple[Callable[[np.ndarray], dict[str, np.ndarray]], np.ndarray]:
        return self.codec.feeds, self.rows

    # -- plan -------------------------------------------------------------------------
    @cached_property
    def estimate(self) -> Estimate:
        """The plan within the hard budget, and its predicted cost (refused when nothing fits)."""
        features, n = self.rows.shape[1], len(self.rows)
        if self._hit is not None:
            meta = self._hit[1]
            return Estimate(meta["explainer"], n, features, meta["max_evals"], meta["background"]["rows"],
                            meta["model_rows"], 0.0, 0.0, cached=True, notes=tuple(meta["notes"]))
        latency = measure_latency(self.function, self.pool)
        explainer, evals = self._explainer(features)
        size = min(self.settings.background_size, len(self.pool))
        evals, size, notes = _fit_budget(self.settings, explainer, n, features, evals, size, len(self.pool), latency)
        cost = n * evals * size
        return Estimate(explainer, n, features, evals, size, cost, latency,
                        _seconds(cost, size, latency, explainer), notes=tuple(notes))

    def _explainer(self, features: int) -> tuple[str, int]:
        s = self.settings
        name = s.explainer
        if name == "auto":
            name = "exact" if features <= s.exact_max_features else "permutation"
        if name == "exact":
            if features > MAX_EXACT_FEATURES:
                raise InvalidInputError(
                    f"the exact explainer needs 2^{features} evaluations per row for {features} features; "
                    "use the permutation explainer"
                )
            if s.max_evals is not None and s.max_evals < 2**features:
                raise InvalidInputError(
                    f"the exact explainer needs 2^{features} = {2**features:,} evaluations per row; "
                    f"max_evals={s.max_evals} is too low (raise it or use the permutation explainer)"
                )
            return name, 2**features
        minimum = 2 * features + 1
        requested = s.max_evals if s.max_evals is not None else max(DEFAULT_PERMUTATION_EVALS, minimum)
        if requested < minimum:
            raise InvalidInputError(
                f"max_evals must be at least 2 × {features} features + 1 = {minimum} for the permutation "
                f"explainer (not {requested})"
            )
        return name, requested // minimum * minimum

    # -- run --------------------------------------------------------------------------
    def run(self, *, progress: Progress | None = None) -> TabularExplanation:
        """Explain the rows (or load the cached explanation); ``progress(fraction, text)`` as it goes."""
        restored = self._restored(TabularExplanation, progress)
        if restored is not None:
            return restored
        plan = self.estimate
        background, method = summarize_background(
            self.pool, size=plan.background_rows, method=self.settings.background_method, seed=self.settings.seed
        )
        start = time.perf_counter()
        guard = self._guard(plan.model_rows, progress)
        values, base = tabular_values(
            self.function.with_guard(guard), self.rows, background, explainer=plan.explainer,
            max_evals=plan.max_evals, batch_size=max(1, self.settings.batch_rows // len(background)),
            seed=self.settings.seed,
        )
        outputs = self.function(self.rows)
        info = BackgroundInfo(self.source, method, len(background), len(self.pool), self.dropped, self.settings.seed)
        result = TabularExplanation(
            ref=self.version.ref, task=self.version.task, feature_names=self.codec.feature_names,
            output_names=list(self.picker.names), data=self.codec.frame(self.rows), matrix=self.rows,
            values=values, base_values=base, outputs=outputs, classifier=self.picker.classifier,
            explainer=plan.explainer, max_evals=plan.max_evals, background=info, settings=self.settings,
            model_rows=guard.rows, seconds=time.perf_counter() - start, key=self.key, notes=list(plan.notes),
        )
        return self._stored(result, progress)


def _seconds(model_rows: int, background: int, latency: float, explainer: str) -> float:
    """Predicted seconds: model and masking time per row, shap's Python time per evaluation."""
    per_eval = SHAP_SECONDS_PER_EVAL[explainer]
    return model_rows * (latency + SHAP_SECONDS_PER_ROW + per_eval / max(1, background))


def _fit_budget(
    s: ExplainSettings, explainer: str, n: int, features: int, evals: int, size: int, available: int, latency: float
) -> tuple[int, int, list[str]]:
    """Cap background rows for memory, then evaluations and background for the budget; refuse otherwise."""
    notes: list[str] = []
    least_background = min(MIN_BACKGROUND, available)
    size = _cap_for_memory(explainer, features, size, least_background, notes)

    def limit(rows: int) -> int:  # model rows that fit the budget with ``rows`` background rows
        return min(s.max_model_rows, int(s.max_seconds / _seconds(1, rows, latency, explainer)))

    if n * evals * size > limit(size) and explainer == "permutation":
        step = 2 * features + 1
        fitted = max(step, limit(size) // (n * size) // step * step)
        if fitted < evals:
            notes.append(f"max_evals capped from {evals:,} to {fitted:,} per row to stay within the budget")
            evals = fitted
    if n * evals * size > limit(size):
        fitted = max((b for b in range(size, 0, -1) if n * evals * b <= limit(b)), default=0)
        if fitted >= least_background:
            notes.append(f"background capped from {size:,} to {fitted:,} rows to stay within the budget")
            size = fitted
    if n * evals * size > limit(size):
        least = n * evals * least_background
        seconds = _seconds(least, least_background, latency, explainer)
        raise BudgetExceededError(
            f"explaining {n:,} row(s) of a {features:,}-feature model with the {explainer} explainer needs at least "
            f"{least:,} model evaluations (about {seconds:.0f} s), over the budget "
            f"of {s.max_model_rows:,} evaluations / {s.max_seconds:g} s; explain fewer rows or raise the budget"
        )
    return evals, size, notes


def _cap_for_memory(explainer: str, features: int, size: int, least: int, notes: list[str]) -> int:
    """Background rows that keep the masked rows of one shap call under ``MAX_CALL_BYTES``."""
    masks_per_call = 2**features if explainer == "exact" else 2 * features + 1
    fitting = MAX_CALL_BYTES // (masks_per_call * features * 8)
    if size <= fitting:
        return size
    if fitting < least:
        raise BudgetExceededError(
            f"a {features:,}-feature model is too wide to explain with the {explainer} explainer in "
            f"{MAX_CALL_BYTES // 1024**2} MiB per model call; reduce the number of features"
        )
    notes.append(f"background capped from {size:,} to {fitting:,} rows to keep each model call "
                 f"under {MAX_CALL_BYTES // 1024**2} MiB")
    return fitting
