"""Input drift: do the inputs a version gets now look like its reference data?

For each feature, the population stability index (PSI) of the recent inputs
(the samples the prediction log keeps, see :mod:`portal.monitor.log`) against the
version's reference data set::

    PSI = sum over bins of (recent_i - reference_i) * ln(recent_i / reference_i)

where ``recent_i`` and ``reference_i`` are the shares of rows in bin ``i``, a
share of 0 being replaced by ``EPSILON`` (1e-4) so that an empty bin counts as
a large but finite change.  Numeric features are cut at the deciles of the
reference data (fewer bins when quantiles coincide), the outer bins open-ended
so recent values beyond the reference range still land somewhere; categorical
features (strings, booleans) get one bin per reference category (the 20 most
frequent) plus an "other" bin for everything else, unseen categories included.
Missing values are left out of both sides.

Levels follow the usual credit-scoring convention (Siddiqi, *Credit Risk
Scorecards*, Wiley 2006, ch. 8; discussed in Yurdakul, "Statistical Properties
of Population Stability Index", 2018): PSI < 0.1 stable, 0.1 to 0.25 moderate
shift, > 0.25 significant shift.  PSI of two samples of one population is not
0: it is about (bins - 1) * (1/n + 1/m) on average, which is why a report needs
``MIN_ROWS`` recent rows before it gives numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sqlalchemy import Text, cast, select

from ..services import ModelServices
from ..storage.db import PredictionRow
from .stats import TimeRange

if TYPE_CHECKING:
    from ..storage.registry import ModelVersion

__all__ = [
    "BINS",
    "EPSILON",
    "MIN_ROWS",
    "DriftReport",
    "FeatureDrift",
    "feature_drift",
    "input_drift",
    "level",
    "psi",
    "recent_inputs",
]

_T = PredictionRow.__table__
BINS = 10
EPSILON = 1e-4
MIN_ROWS = 100
MAX_ROWS = 5000
MAX_CATEGORIES = 20
OTHER = "other"
MODERATE, SIGNIFICANT = 0.1, 0.25


def psi(reference: np.ndarray, recent: np.ndarray, *, epsilon: float = EPSILON) -> float:
    """PSI of two vectors of bin shares (each summing to 1); empty bins count as ``epsilon``."""
    e = np.maximum(np.asarray(reference, dtype=float), epsilon)
    a = np.maximum(np.asarray(recent, dtype=float), epsilon)
    return float(np.sum((a - e) * np.log(a / e)))


def level(value: float) -> str:
    """``stable`` (< 0.1), ``moderate`` (0.1 to 0.25) or ``significant`` (> 0.25)."""
    if value > SIGNIFICANT:
        return "significant"
    return "moderate" if value >= MODERATE else "stable"


@dataclass
class FeatureDrift:
    """PSI of one feature, with the binned distributions it was computed from (for charts)."""

    feature: str
    kind: str  # numeric | categorical
    psi: float
    level: str
    bins: list[str]
    reference: list[float]  # share of reference rows per bin
    recent: list[float]  # share of recent rows per bin
    reference_rows: int
    recent_rows: int

    @property
    def drifting(self) -> bool:
        return self.level != "stable"

    def to_dict(self) -> dict[str, Any]:
        return {"feature": self.feature, "kind": self.kind, "psi": self.psi, "level": self.level,
                "reference_rows": self.reference_rows, "recent_rows": self.recent_rows,
                "bins": self.bins, "reference": self.reference, "recent": self.recent}


@dataclass
class DriftReport:
    """Drift of every feature of a version, or why there is none to show (``status`` and ``message``).

    ``status``: ``ok``, ``no_reference`` (the version has no reference data),
    ``not_enough`` (fewer than ``min_rows`` sampled recent rows) or
    ``no_features`` (the samples share no column with the reference data).
    """

    ref: str
    window: TimeRange
    status: str
    message: str
    recent_rows: int = 0
    reference_rows: int = 0
    min_rows: int = MIN_ROWS
    features: list[FeatureDrift] = field(default_factory=list)  # highest PSI first

    @property
    def drifting(self) -> list[FeatureDrift]:
        return [f for f in self.features if f.drifting]

    def feature(self, name: str) -> FeatureDrift:
        for item in self.features:
            if item.feature == name:
                return item
        raise KeyError(name)

    def frame(self) -> pd.DataFrame:
        """One row per feature: Feature, PSI, Level, Recent rows, Reference rows."""
        return pd.DataFrame(
            [[f.feature, round(f.psi, 4), f.level, f.recent_rows, f.reference_rows] for f in self.features],
            columns=["Feature", "PSI", "Level", "Recent rows", "Reference rows"],
        )

    def to_dict(self) -> dict[str, Any]:
        return {"ref": self.ref, "status": self.status, "message": self.message, "recent_rows": self.recent_rows,
                "reference_rows": self.reference_rows, "features": [f.to_dict() for f in self.features]}

    def describe(self) -> str:
        if self.status != "ok":
            return f"input drift: {self.message}"
        lines = [f"input drift ({self.recent_rows:,} recent rows vs {self.reference_rows:,} reference rows):"]
        lines += [f"  {f.feature:<24} PSI {f.psi:7.4f}  {f.level}" for f in self.features]
        return "\n".join(lines)


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _edge(value: float) -> str:
    return f"{value:.4g}"


def _numeric_bins(reference: np.ndarray, recent: np.ndarray, bins: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    inner = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    # bin i holds values in [inner[i-1], inner[i]); the first and last are open-ended
    ref_counts = np.bincount(np.searchsorted(inner, reference, side="right"), minlength=len(inner) + 1)
    new_counts = np.bincount(np.searchsorted(inner, recent, side="right"), minlength=len(inner) + 1)
    if len(inner) == 0:
        labels = ["all values"]
    else:
        labels = [f"< {_edge(inner[0])}"]
        labels += [f"{_edge(lo)} to {_edge(hi)}" for lo, hi in zip(inner[:-1], inner[1:])]
        labels.append(f"≥ {_edge(inner[-1])}")
    return labels, ref_counts, new_counts


def _categorical_bins(reference: pd.Series, recent: pd.Series) -> tuple[list[str], np.ndarray, np.ndarray]:
    ref, new = reference.astype(str), recent.astype(str)
    categories = ref.value_counts().index[:MAX_CATEGORIES].tolist()
    labels = [*categories, OTHER] if OTHER not in categories else [*categories, f"{OTHER} (unseen)"]
    index = {c: i for i, c in enumerate(categories)}
    def count(values: pd.Series) -> np.ndarray:
        return np.bincount(values.map(index).fillna(len(categories)).astype(int), minlength=len(labels))
    return labels, count(ref), count(new)


def feature_drift(name: str, reference: pd.Series, recent: pd.Series, *, bins: int = BINS) -> FeatureDrift:
    """PSI of one feature's recent values against its reference values (missing values left out)."""
    reference = reference.dropna()
    numeric = _is_numeric(reference)
    if numeric:
        recent = pd.to_numeric(recent, errors="coerce")
    recent = recent.dropna()
    if numeric:
        labels, ref_counts, new_counts = _numeric_bins(reference.to_numpy(float), recent.to_numpy(float), bins)
    else:
        labels, ref_counts, new_counts = _categorical_bins(reference, recent)
    ref_share = ref_counts / max(1, ref_counts.sum())
    new_share = new_counts / max(1, new_counts.sum())
    value = psi(ref_share, new_share)
    return FeatureDrift(
        feature=name, kind="numeric" if numeric else "categorical", psi=value, level=level(value), bins=labels,
        reference=ref_share.tolist(), recent=new_share.tolist(), reference_rows=len(reference),
        recent_rows=len(recent),
    )


def recent_inputs(services: ModelServices, version: ModelVersion, window: TimeRange, *,
                  max_rows: int = MAX_ROWS) -> pd.DataFrame:
    """The sampled inputs of ``version`` (from ``services.get``) in ``window``, newest first, at most ``max_rows``."""
    query = (
        select(_T.c.sample)
        .where(_T.c.model_id == version.model_id, _T.c.version == version.version, _T.c.ts >= window.start,
               _T.c.ts < window.end,
               cast(_T.c.sample, Text) != "null")  # the JSON column stores None as JSON null, not SQL NULL
        .order_by(_T.c.ts.desc(), _T.c.id.desc())
        .limit(max_rows)
    )
    frames, total = [], 0
    with services.registry.engine.connect() as conn:
        for sample in conn.execute(query).scalars():
            if not sample or not sample.get("rows"):
                continue
            frames.append(pd.DataFrame(sample["rows"], columns=sample["columns"]))
            total += len(frames[-1])
            if total >= max_rows:
                break
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True).iloc[:max_rows]


def input_drift(
    services: ModelServices,
    ref: str,
    window: TimeRange,
    *,
    min_rows: int = MIN_ROWS,
    max_rows: int = MAX_ROWS,
    bins: int = BINS,
) -> DriftReport:
    """Per-feature PSI of the version ``ref``'s sampled inputs in ``window`` against its reference data."""
    version = services.get(ref)
    report = DriftReport(ref=version.ref, window=window, status="ok", message="", min_rows=min_rows)
    reference = services.reference_frame(version.ref)
    if reference is None or reference.empty:
        report.status = "no_reference"
        report.message = (f"{version.ref} has no reference data to compare recent inputs against; add some "
                          "(the training or validation inputs) on the Models page, Edit tab, or with "
                          "Portal.set_reference_data")
        return report
    report.reference_rows = len(reference)
    recent = recent_inputs(services, version, window, max_rows=max_rows)
    report.recent_rows = len(recent)
    if len(recent) < min_rows:
        report.status = "not_enough"
        report.message = (f"Not enough recent inputs: {len(recent):,} sampled rows of {version.ref} in this window, "
                          f"at least {min_rows:,} are needed for a meaningful PSI")
        return report
    common = [c for c in reference.columns if c in set(recent.columns)]
    if not common:
        report.status = "no_features"
        report.message = (f"The logged inputs of {version.ref} share no column with its reference data "
                          f"(logged: {', '.join(map(str, recent.columns[:8]))})")
        return report
    report.features = sorted((feature_drift(str(c), reference[c], recent[c], bins=bins) for c in common),
                             key=lambda f: (-f.psi, f.feature))
    return report
