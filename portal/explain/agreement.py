"""SHAP and LIME side by side on the same rows: do two different explainers tell the same story?

Both explain the same rows, with the same background (LIME's training data),
seed and budget, for the same output of each row (the predicted class unless a
target is given). Per row: the rank correlation (Spearman) of the absolute
attributions, the overlap of the two top-k feature sets and how often the two
agree on the direction of those features; overall: the means of those, and the
correlation and overlap of the global importances (mean |attribution|). LIME's
side is each feature's contribution (weight × the row's interpretable value, so
the weight itself when features are discretized), SHAP's the SHAP value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InvalidInputError
from ..services import ModelServices
from .drift import spearman, top_k_agreement
from .lime import LimeJob
from .lime_types import LimeTabularExplanation
from .model import Progress
from .tabular import TabularJob, load_background
from .types import ExplainSettings, TabularExplanation

__all__ = ["MEANING", "AgreementReport", "agreement_jobs", "compare_attributions", "explain_agreement"]

DEFAULT_ROWS = 20
# a row is flagged when the two rankings are this far apart (or share less than half their top k)
LOW_SPEARMAN = 0.5
LOW_OVERLAP = 0.5
MEANING = (
    "SHAP and LIME measure different things. SHAP splits the gap between this row's output and the average "
    "output over the background among the features, exactly. LIME fits a straight line to the model's answers "
    "on random variations of the row and reports its slopes: how much the output moves when a feature leaves "
    "the row's quartile (or category). Where the model is close to linear around a row, the two agree. Where "
    "they disagree, the model bends or its features interact around that row (LIME's local R² is then often "
    "low), or correlated features share the credit differently. Disagreement does not say which one is right: "
    "for those rows, trust neither ranking on its own; check them with the what-if tab or more LIME samples."
)


def _top(values: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-values, kind="stable")[:k]


def _sign_agreement(a: np.ndarray, b: np.ndarray, k: int) -> float:
    """Share of the features in either top k (by |value|) on whose direction (sign) both agree."""
    union = sorted(set(_top(np.abs(a), k).tolist()) | set(_top(np.abs(b), k).tolist()))
    return float(np.mean(np.sign(a[union]) == np.sign(b[union]))) if union else 1.0


@dataclass
class AgreementReport:
    """How SHAP's and LIME's explanations of the same rows compare."""

    ref: str
    top_k: int
    feature_names: list[str]
    explained: list[str]  # the output explained on each row
    shap_values: np.ndarray  # rows × features
    lime_values: np.ndarray  # rows × features: LIME contributions
    per_row: pd.DataFrame  # row, explained, spearman, top_k_overlap, sign_agreement, lime_r2, tops, disagreement
    importance: pd.DataFrame  # feature, shap and lime mean |attribution|
    spearman: float  # of the global importances
    mean_row_spearman: float
    top_k_overlap: float  # of the global importances
    mean_row_top_k_overlap: float
    mean_sign_agreement: float
    flagged: list[int]  # the rows where they disagree most, worst first
    shap: TabularExplanation | None = None
    lime: LimeTabularExplanation | None = None

    @property
    def meaning(self) -> str:
        return MEANING

    def worst(self, count: int = 10) -> pd.DataFrame:
        """The ``count`` rows where the two disagree most, worst first."""
        return self.per_row.sort_values("disagreement", ascending=False, kind="stable").head(count)

    def summary(self) -> dict[str, Any]:
        """The overall figures, JSON-ready."""
        def clean(x: float) -> float | None:
            return None if np.isnan(x) else round(float(x), 6)

        return {
            "ref": self.ref, "rows": len(self.per_row), "top_k": self.top_k, "spearman": clean(self.spearman),
            "mean_row_spearman": clean(self.mean_row_spearman), "top_k_overlap": clean(self.top_k_overlap),
            "mean_row_top_k_overlap": clean(self.mean_row_top_k_overlap),
            "mean_sign_agreement": clean(self.mean_sign_agreement), "flagged_rows": list(self.flagged),
        }

    def to_dict(self) -> dict[str, Any]:
        """The summary, every row's figures and the plain-words meaning."""
        rows = self.per_row.drop(columns=["disagreement"]).to_dict(orient="records")
        return {**self.summary(), "per_row": rows, "meaning": MEANING}

    def describe(self) -> str:
        """Plain text: the overall figures, the rows that disagree most, and what disagreement means."""
        s = self.summary()
        lines = [
            f"SHAP vs LIME on {s['rows']} row(s) of {self.ref}, top {self.top_k} features:",
            f"  rank correlation: mean per row {_fmt(s['mean_row_spearman'])}, of global importance "
            f"{_fmt(s['spearman'])}",
            f"  top-{self.top_k} overlap: mean per row {_fmt(s['mean_row_top_k_overlap'])}, of global importance "
            f"{_fmt(s['top_k_overlap'])}",
            f"  same direction: {_fmt(s['mean_sign_agreement'])} of the top features",
        ]
        if self.flagged:
            lines.append("rows where they disagree most:")
            for r in self.flagged:
                row = self.per_row.iloc[r]
                lines.append(f"  row {r} ({row['explained']}): rank correlation {row['spearman']:.2f}, overlap "
                             f"{row['top_k_overlap']:.2f}, LIME R² {row['lime_r2']:.2f}; SHAP top: {row['shap_top']}; "
                             f"LIME top: {row['lime_top']}")
        else:
            lines.append("no row disagrees much (every rank correlation ≥ 0.5 and top-k overlap ≥ 0.5)")
        lines.append(MEANING)
        return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def compare_attributions(
    shap_values: np.ndarray,
    lime_values: np.ndarray,
    *,
    feature_names: list[str],
    explained: list[str],
    top_k: int = 5,
    lime_r2: np.ndarray | None = None,
    ref: str = "",
    max_flagged: int = 5,
) -> AgreementReport:
    """Agreement figures of two rows × features attribution matrices (SHAP and LIME)."""
    if shap_values.shape != lime_values.shape or shap_values.ndim != 2:
        raise InvalidInputError(f"attributions differ in shape: {shap_values.shape} vs {lime_values.shape}")
    if top_k < 1:
        raise InvalidInputError(f"top_k must be at least 1 (not {top_k})")
    k = min(top_k, len(feature_names))
    a_abs, b_abs = np.abs(shap_values), np.abs(lime_values)
    per_row = pd.DataFrame({
        "row": np.arange(len(explained)),
        "explained": explained,
        "spearman": [spearman(a, b) for a, b in zip(a_abs, b_abs, strict=True)],
        "top_k_overlap": [top_k_agreement(a, b, k) for a, b in zip(a_abs, b_abs, strict=True)],
        "sign_agreement": [_sign_agreement(a, b, k) for a, b in zip(shap_values, lime_values, strict=True)],
        "lime_r2": np.full(len(explained), np.nan) if lime_r2 is None else np.asarray(lime_r2, dtype=float),
        "shap_top": [", ".join(feature_names[i] for i in _top(a, k)) for a in a_abs],
        "lime_top": [", ".join(feature_names[i] for i in _top(b, k)) for b in b_abs],
    })
    rho = per_row["spearman"].fillna(0.0)
    per_row["disagreement"] = 1.0 - (rho + per_row["top_k_overlap"]) / 2
    low = (rho < LOW_SPEARMAN) | (per_row["top_k_overlap"] < LOW_OVERLAP)
    flagged = per_row[low].sort_values("disagreement", ascending=False, kind="stable")["row"].head(max_flagged)
    importance = pd.DataFrame({"feature": feature_names, "shap": a_abs.mean(axis=0), "lime": b_abs.mean(axis=0)})
    return AgreementReport(
        ref=ref, top_k=k, feature_names=list(feature_names), explained=list(explained), shap_values=shap_values,
        lime_values=lime_values, per_row=per_row, importance=importance,
        spearman=spearman(importance["shap"].to_numpy(), importance["lime"].to_numpy()),
        mean_row_spearman=float(np.nanmean(per_row["spearman"])) if per_row["spearman"].notna().any() else float("nan"),
        top_k_overlap=top_k_agreement(importance["shap"].to_numpy(), importance["lime"].to_numpy(), k),
        mean_row_top_k_overlap=float(per_row["top_k_overlap"].mean()),
        mean_sign_agreement=float(per_row["sign_agreement"].mean()), flagged=[int(r) for r in flagged],
    )


def agreement_jobs(
    services: ModelServices,
    ref: Any,
    rows: Any = None,
    *,
    background: Any = None,
    target: str | int | None = None,
    settings: ExplainSettings = ExplainSettings(),
) -> tuple[TabularJob, LimeJob]:
    """SHAP's and LIME's jobs on the same rows, background and settings (rows default: a seeded sample)."""
    version = services.get(ref)
    frame, label = load_background(services, version, background, rows=rows)
    if rows is None:
        rows = frame.sample(n=min(DEFAULT_ROWS, len(frame)), random_state=settings.seed) if len(frame) else frame
    shap_job = TabularJob(services, version, rows, background=frame, background_label=label, target=target,
                          settings=settings)
    lime_job = LimeJob(services, version, rows, background=frame, background_label=label, target=target,
                       settings=settings)
    return shap_job, lime_job


def explain_agreement(
    services: ModelServices,
    ref: Any,
    rows: Any = None,
    *,
    background: Any = None,
    target: str | int | None = None,
    settings: ExplainSettings = ExplainSettings(),
    top_k: int = 5,
    progress: Progress | None = None,
) -> AgreementReport:
    """Explain ``rows`` with SHAP and with LIME and compare the two, row by row and overall."""
    if top_k < 1:
        raise InvalidInputError(f"top_k must be at least 1 (not {top_k})")
    shap_job, lime_job = agreement_jobs(services, ref, rows, background=background, target=target, settings=settings)
    first = None if progress is None else (lambda f, t: progress(0.5 * f, f"SHAP: {t}"))
    second = None if progress is None else (lambda f, t: progress(0.5 + 0.5 * f, f"LIME: {t}"))
    shap = shap_job.run(progress=first)
    lime = lime_job.run(progress=second)
    index = lime.target_index
    shap_values = shap.values[np.arange(len(index)), :, index]
    report = compare_attributions(shap_values, lime.contributions, feature_names=lime.feature_names,
                                  explained=lime.targets, top_k=top_k, lime_r2=lime.scores, ref=lime.ref)
    report.shap, report.lime = shap, lime
    return report
