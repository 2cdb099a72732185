"""Plotly figures, reports and CSV of LIME explanations and of SHAP-vs-LIME agreement (no streamlit here).

    lime_weights         one row: LIME's weight per feature condition, with intercept, surrogate and local R²
    lime_importance      many rows: mean |LIME weight| per feature
    lime_superpixels     an image, its superpixels, and each superpixel's weight for its top classes
    agreement_rows       per row: rank correlation and top-k overlap, the rows that disagree most shaded
    agreement_row        one row: SHAP values and LIME contributions side by side
    agreement_importance global importance shares by SHAP and by LIME
    lime_csv             LIME weights per row as CSV bytes, formula-escaped
    lime_report          a standalone HTML page of a LIME explanation or an agreement report
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..serving.dataio import frame_to_csv_bytes
from .agreement import AgreementReport
from .figures import (
    FONT,
    NEGATIVE,
    OVERLAY,
    POSITIVE,
    label_value,
    largest_attribution,
    numerically_zero,
    standalone_html,
    style,
)
from .lime_types import LimeImageExplanation, LimeTabularExplanation

__all__ = ["agreement_importance", "agreement_row", "agreement_rows", "lime_csv", "lime_importance", "lime_report",
           "lime_superpixels", "lime_weights"]

SHAP_COLOR = "#2563eb"
LIME_COLOR = "#f59e0b"
FLAGGED = "rgba(220,38,38,0.12)"
EDGE = "rgba(250,204,21,0.9)"  # superpixel boundaries in yellow


# -- tabular ------------------------------------------------------------------------------
def lime_weights(expl: LimeTabularExplanation, row: int = 0, *, max_features: int = 12,
                 label: str | None = None) -> go.Figure:
    """LIME's weight of each feature condition of one row, largest on top (red raises the output)."""
    weights = expl.weights[row]
    order = np.argsort(-np.abs(weights), kind="stable")[:max_features][::-1]
    names = [_condition(expl, row, j) for j in order]
    fig = go.Figure(go.Bar(
        x=weights[order], y=names, orientation="h",
        marker_color=[POSITIVE if w > 0 else NEGATIVE for w in weights[order]],
        text=[f"{w:+.4g}" for w in weights[order]], textposition="outside", cliponaxis=False,
        hovertemplate="%{y}: weight %{x:.4g}<extra></extra>",
    ))
    fig.update_yaxes(type="category")
    fig.add_vline(x=0, line_color="#94a3b8", line_width=1)
    low, high = min(0.0, float(weights[order].min())), max(0.0, float(weights[order].max()))
    pad = 0.22 * (high - low or 1.0)  # room for the value labels outside the bars
    fig.update_xaxes(range=[low - (pad if low < 0 else 0), high + (pad if high > 0 else 0)])
    title = (f"LIME for {label or f'row {row}'} → {expl.targets[row]} = {label_value(expl.model_outputs[row])} "
             f"(surrogate {label_value(expl.local_predictions[row])}, intercept {label_value(expl.intercepts[row])}, "
             f"local R² {expl.scores[row]:.2f})")
    axis = "LIME weight (change of the output when the condition holds)" if expl.discretize \
        else "LIME weight (per standard deviation)"
    return style(fig, title=title, x=axis, y="", height=max(260, 90 + 30 * len(order)))


def _condition(expl: LimeTabularExplanation, row: int, j: int) -> str:
    condition = expl.conditions[row][j]
    if expl.discretize or "=" in condition:
        return condition
    return f"{condition} = {label_value(expl.data.iloc[row, j])}"


def lime_importance(expl: LimeTabularExplanation, *, max_features: int = 20) -> go.Figure:
    """Mean |LIME weight| per feature over the explained rows, the most important on top."""
    mean = np.abs(expl.weights).mean(axis=0)
    order = np.argsort(-mean, kind="stable")[:max_features][::-1]
    fig = go.Figure(go.Bar(
        x=mean[order], y=[expl.feature_names[j] for j in order], orientation="h", marker_color=LIME_COLOR,
        text=[f"{mean[j]:.3g}" for j in order], textposition="outside", cliponaxis=False,
        hovertemplate="%{y}: mean |weight| %{x:.4g}<extra></extra>",
    ))
    fig.update_yaxes(type="category")
    return style(fig, title=f"LIME importance over {len(expl.weights)} row(s) (mean local R² "
                  f"{float(np.mean(expl.scores)):.2f})", x="mean |LIME weight|", y="",
                  height=max(240, 70 + 26 * len(order)))


def lime_csv(expl: LimeTabularExplanation) -> bytes:
    """Intercept, surrogate and model output, local R², weights and values per row, as CSV (formulas escaped)."""
    return frame_to_csv_bytes(expl.to_frame())


# -- images -------------------------------------------------------------------------------
def _boundaries(segments: np.ndarray) -> go.Scatter:
    """The edges between superpixels as one line trace (pixel centres at integer coordinates)."""
    xs: list[float | None] = []
    ys: list[float | None] = []
    for r, c in zip(*np.nonzero(segments[:, :-1] != segments[:, 1:]), strict=True):  # vertical edges
        xs += [c + 0.5, c + 0.5, None]
        ys += [r - 0.5, r + 0.5, None]
    for r, c in zip(*np.nonzero(segments[:-1, :] != segments[1:, :]), strict=True):  # horizontal edges
        xs += [c - 0.5, c + 0.5, None]
        ys += [r + 0.5, r + 0.5, None]
    return go.Scatter(x=xs, y=ys, mode="lines", line=dict(color=EDGE, width=1.5), hoverinfo="skip", showlegend=False)


def lime_superpixels(expl: LimeImageExplanation, row: int = 0, *, max_classes: int = 3) -> go.Figure:
    """The image with its superpixels, then one panel per class: each superpixel coloured by its weight."""
    image = expl.images[row].mean(axis=2)
    k = min(max_classes, expl.class_indices.shape[1])
    titles = [f"input, {expl.segment_count(row)} superpixels"] + [
        f"{expl.output_names[c]} (p = {expl.outputs[row, c]:.2f}, R² {expl.scores[row, j]:.2f})"
        for j, c in enumerate(expl.class_indices[row, :k])
    ]
    fig = make_subplots(rows=1, cols=k + 1, subplot_titles=titles, horizontal_spacing=0.03)
    edges = _boundaries(expl.segments[row])
    fig.add_trace(go.Heatmap(z=image, colorscale="gray", showscale=False,
                             hovertemplate="value %{z:.3f}<extra></extra>"), 1, 1)
    fig.add_trace(edges, 1, 1)
    weights = expl.weights[row, :k]
    zero = numerically_zero(weights, expl.outputs[row])  # rounding noise: a neutral scale, not saturated colours
    limit = max(1.0, largest_attribution(expl.outputs[row])) if zero else largest_attribution(weights) or 1.0
    for j in range(k):
        heat = expl.pixel_weights(row, j)
        fig.add_trace(go.Heatmap(z=image, colorscale="gray", showscale=False, hoverinfo="skip"), 1, j + 2)
        fig.add_trace(go.Heatmap(
            z=heat, customdata=expl.segments[row], colorscale=OVERLAY, zmin=-limit, zmax=limit,
            showscale=j == k - 1, colorbar=dict(title="weight"),
            hovertemplate="superpixel %{customdata}: weight %{z:.4g}<extra></extra>",
        ), 1, j + 2)
        fig.add_trace(edges, 1, j + 2)
    height, width = expl.segments[row].shape
    fig.update_yaxes(range=[height - 0.5, -0.5], showticklabels=False, showgrid=False, zeroline=False,
                     scaleanchor="x")
    fig.update_xaxes(range=[-0.5, width - 0.5], showticklabels=False, showgrid=False, zeroline=False)
    title = (f"Image {row}: LIME weights are numerically zero (largest |weight| {largest_attribution(weights):.1e}), "
             "no evidence for any class" if zero else
             f"Image {row}: LIME superpixel weights (red for the class, blue against)")
    fig.update_layout(title=dict(text=title, x=0, font=dict(size=15)), template="plotly_white", font=FONT, height=340,
                      margin=dict(l=10, r=10, t=80, b=10))
    return fig


# -- agreement ----------------------------------------------------------------------------
def agreement_rows(report: AgreementReport) -> go.Figure:
    """Per row: rank correlation and top-k overlap of SHAP and LIME; the most disagreeing rows shaded."""
    rows = [f"row {r}" for r in report.per_row["row"]]
    fig = go.Figure([
        go.Bar(x=rows, y=report.per_row["spearman"], name="rank correlation (Spearman)", marker_color=SHAP_COLOR),
        go.Bar(x=rows, y=report.per_row["top_k_overlap"], name=f"top-{report.top_k} overlap", marker_color=LIME_COLOR),
    ])
    for r in report.flagged:
        fig.add_vrect(x0=r - 0.5, x1=r + 0.5, fillcolor=FLAGGED, line_width=0, layer="below")
    if report.flagged:
        fig.add_annotation(x=report.flagged[0], y=1.04, text="disagree", showarrow=False,
                           font=dict(color="#b91c1c", size=12), yanchor="bottom")
    fig.update_layout(barmode="group")
    lowest = float(np.nanmin(report.per_row["spearman"].to_numpy(dtype=float), initial=0))
    fig.update_yaxes(range=[min(0.0, lowest) - 0.05, 1.15])
    fig.update_xaxes(type="category")
    return style(fig, title=f"SHAP vs LIME per row on {report.ref} (shaded: where they disagree most)", x="",
                  y="agreement", height=360)


def agreement_row(report: AgreementReport, row: int, *, max_features: int = 10) -> go.Figure:
    """One row's SHAP values and LIME contributions, side by side, for the features either ranks high."""
    shap_v, lime_v = report.shap_values[row], report.lime_values[row]
    share = np.abs(shap_v) / (np.abs(shap_v).sum() or 1.0) + np.abs(lime_v) / (np.abs(lime_v).sum() or 1.0)
    order = np.argsort(-share, kind="stable")[:max_features][::-1]
    names = [report.feature_names[j] for j in order]
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=["SHAP value", "LIME contribution"])
    for col, values in ((1, shap_v), (2, lime_v)):
        fig.add_trace(go.Bar(
            x=values[order], y=names, orientation="h", showlegend=False,
            marker_color=[POSITIVE if v > 0 else NEGATIVE for v in values[order]],
            hovertemplate="%{y}: %{x:.4g}<extra></extra>"), 1, col)
        fig.add_vline(x=0, line_color="#94a3b8", line_width=1, row=1, col=col)
    fig.update_yaxes(type="category")
    r = report.per_row.iloc[row]
    title = (f"Row {row} ({r['explained']}): rank correlation {r['spearman']:.2f}, "
             f"top-{report.top_k} overlap {r['top_k_overlap']:.2f}, LIME R² {r['lime_r2']:.2f}")
    return style(fig, title=title, x="", y="", height=max(280, 90 + 30 * len(order)))


def agreement_importance(report: AgreementReport, *, max_features: int = 15) -> go.Figure:
    """Each feature's share of the total mean |attribution|, by SHAP and by LIME."""
    table = report.importance.copy()
    for column in ("shap", "lime"):
        table[column] = table[column] / (table[column].sum() or 1.0)
    table = table.assign(total=table["shap"] + table["lime"])
    table = table.sort_values("total", ascending=False, kind="stable").head(max_features).iloc[::-1]
    fig = go.Figure([
        go.Bar(x=table["shap"], y=table["feature"], orientation="h", name="SHAP", marker_color=SHAP_COLOR),
        go.Bar(x=table["lime"], y=table["feature"], orientation="h", name="LIME", marker_color=LIME_COLOR),
    ])
    fig.update_layout(barmode="group")
    fig.update_yaxes(type="category")
    fig.update_xaxes(tickformat=".0%")
    return style(fig, title="Global importance: share of each feature, SHAP vs LIME", x="share of mean |attribution|",
                  y="", height=max(260, 80 + 40 * len(table)))


# -- reports ------------------------------------------------------------------------------
def _facts(expl: LimeTabularExplanation | LimeImageExplanation) -> list[tuple[str, str]]:
    facts = [("Model", expl.ref)]
    if isinstance(expl, LimeTabularExplanation):
        facts += [("Explainer", expl.describe_method()), ("Training data", expl.training.describe()),
                  ("Local R²", f"mean {float(np.mean(expl.scores)):.3f}, lowest {float(np.min(expl.scores)):.3f}")]
    else:
        facts += [("Explainer", f"LIME, {expl.num_samples:,} samples per image, SLIC superpixels, "
                                f"kernel width {expl.kernel_width:g}")]
    facts += [("Seed", str(expl.settings.seed)),
              ("Computed in", f"{expl.seconds:.2f} s, {expl.model_rows:,} model evaluations")]
    return facts + [("Note", note) for note in expl.notes]


def lime_report(expl: LimeTabularExplanation | LimeImageExplanation | AgreementReport,
                rows: Sequence[int] | None = None, *, title: str | None = None) -> str:
    """A standalone HTML page (plotly.js inlined, works offline) of a LIME explanation or an agreement report."""
    figures: list[go.Figure]
    if isinstance(expl, AgreementReport):
        s = expl.summary()
        facts: list[Any] = [("Model", expl.ref), ("Rows", str(s["rows"])),
                            ("Rank correlation", f"mean per row {s['mean_row_spearman']}, global {s['spearman']}"),
                            (f"Top-{expl.top_k} overlap", f"mean per row {s['mean_row_top_k_overlap']}"),
                            ("Rows that disagree most", ", ".join(map(str, expl.flagged)) or "none"),
                            ("What disagreement means", expl.meaning)]
        figures = [agreement_rows(expl), agreement_importance(expl)]
        figures += [agreement_row(expl, r) for r in expl.flagged]
        return standalone_html(title or f"SHAP vs LIME on {expl.ref}", facts, figures, "")
    count = len(expl.outputs)
    rows = list(range(min(count, 10))) if rows is None else [int(r) for r in rows]
    if isinstance(expl, LimeTabularExplanation):
        figures = ([lime_importance(expl)] if count > 1 else []) + [lime_weights(expl, r) for r in rows]
    else:
        figures = [lime_superpixels(expl, r) for r in rows]
    kind = "Rows" if isinstance(expl, LimeTabularExplanation) else "Images"
    return standalone_html(title or f"LIME explanation of {expl.ref}", _facts(expl), figures,
                           f"{kind} shown: {', '.join(map(str, rows))}")
