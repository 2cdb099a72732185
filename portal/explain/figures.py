"""Plotly figures, an HTML report and a CSV export of explanations (no streamlit here).

    waterfall            one row: base value → each attribution (with the feature's value) → output
    importance_bar       many rows: mean |SHAP| per feature
    beeswarm             many rows: every attribution, coloured by the feature's value
    dependence           one feature's value against its attribution, coloured by another feature
    image_overlay        an image with the attribution heat map of its top classes
    drift_rows           per-row rank correlation and top-k agreement of a variant vs its parent
    drift_importance     global importances of parent and variant side by side
    html_report          a standalone HTML page (plotly inlined) for selected rows
    standalone_html      the page itself, shared with the LIME and agreement reports (lime_figures)
    shap_csv             SHAP values as CSV bytes, formula-escaped
    numerically_zero     whether attributions are rounding noise (then drawn on a neutral scale)
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..serving.dataio import frame_to_csv_bytes
from .drift import DriftReport
from .types import ImageExplanation, TabularExplanation

__all__ = [
    "beeswarm",
    "dependence",
    "drift_importance",
    "drift_rows",
    "html_report",
    "image_overlay",
    "importance_bar",
    "largest_attribution",
    "numerically_zero",
    "shap_csv",
    "standalone_html",
    "waterfall",
]

POSITIVE = "#dc2626"  # pushes the output up (shap's convention: red)
NEGATIVE = "#2563eb"  # pushes it down (blue)
NEUTRAL = "#64748b"
PARENT = "#2563eb"
VARIANT = "#f59e0b"
FONT = dict(family="Inter, 'Source Sans Pro', sans-serif", size=13)
_SCALE = "RdBu_r"
# blue (against) → transparent (no effect) → red (for): the image shows through where SHAP ≈ 0
OVERLAY = [[0.0, "rgba(37,99,235,0.95)"], [0.5, "rgba(255,255,255,0)"], [1.0, "rgba(220,38,38,0.95)"]]
# Attributions whose largest |value| is at most this share of the output scale (taken as at least 1)
# are rounding noise, not evidence. A float32 model's output moves by at least one float32 step (about
# 1e-7 of its size) when an input changes it at all, while SHAP's float64 sums over outputs that never
# change leave values near 1e-16 (±4e-18 seen on a constant image model): 1e-10 lies far from both.
ZERO_ATTRIBUTION = 1e-10


def largest_attribution(values: np.ndarray) -> float:
    """The largest finite |value| (0 when there is none)."""
    finite = np.abs(values[np.isfinite(values)])
    return float(finite.max(initial=0.0))


def numerically_zero(values: np.ndarray, outputs: np.ndarray) -> bool:
    """Whether every attribution in ``values`` is within ``ZERO_ATTRIBUTION`` × the scale of ``outputs`` of 0.

    The scale is the largest finite |output|, and at least 1 (probabilities, small regressions).
    """
    return largest_attribution(values) <= ZERO_ATTRIBUTION * max(1.0, largest_attribution(np.asarray(outputs)))


def _neutral_span(outputs: np.ndarray) -> float:
    """Half the width of a neutral axis for zero attributions: the output scale (at least 1)."""
    return max(1.0, largest_attribution(np.asarray(outputs)))


def style(fig: go.Figure, *, title: str, x: str, y: str, height: int) -> go.Figure:
    """The look every explanation figure shares: title top left, white template, labelled axes."""
    fig.update_layout(
        title=dict(text=title, x=0, xanchor="left", font=dict(size=15)), template="plotly_white", font=FONT,
        height=height, margin=dict(l=10, r=10, t=60, b=10), showlegend=len(fig.data) > 1,
        legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1),
    )
    fig.update_xaxes(title_text=x, automargin=True)
    fig.update_yaxes(title_text=y, automargin=True)
    return fig


def label_value(value: Any) -> str:
    """A value for a figure label: numbers to 4 significant digits, anything else as text."""
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.4g}"
    return str(value)


def _order(values: np.ndarray, limit: int) -> np.ndarray:
    return np.argsort(-np.abs(values), kind="stable")[:limit]


# -- one row ------------------------------------------------------------------------------
def waterfall(
    expl: TabularExplanation, row: int = 0, *, target: str | int | None = None, max_features: int = 12,
    label: str | None = None,
) -> go.Figure:
    """Base value at the top, the largest attributions (``feature = value``), the output at the bottom.

    ``label`` names the row in the title (default ``"row <row>"``).
    """
    chosen = expl.select(target)
    values, base, output = chosen.values[row], float(chosen.base_values[row]), float(chosen.outputs[row])
    order = _order(values, max_features)
    labels = [f"{expl.feature_names[j]} = {label_value(expl.data.iloc[row, j])}" for j in order]
    deltas = [float(values[j]) for j in order]
    rest = float(values.sum() - sum(deltas))
    if len(values) > len(order):
        labels.append(f"{len(values) - len(order)} other features")
        deltas.append(rest)
    fig = go.Figure(go.Waterfall(
        orientation="h", measure=["absolute", *["relative"] * len(deltas), "total"],
        y=["base value", *labels, f"output ({chosen.targets[row]})"], x=[base, *deltas, output],
        text=[label_value(base), *[f"{d:+.4g}" for d in deltas], label_value(output)], textposition="outside",
        increasing=dict(marker=dict(color=POSITIVE)), decreasing=dict(marker=dict(color=NEGATIVE)),
        totals=dict(marker=dict(color=NEUTRAL)), connector=dict(line=dict(color="#cbd5e1", width=1)),
        hovertemplate="%{y}: %{x:.4g}<extra></extra>", cliponaxis=False,
    ))
    fig.update_yaxes(autorange="reversed", type="category")
    running = np.cumsum([base, *deltas])
    low, high = min(0.0, float(running.min()), output), max(float(running.max()), output, base)
    pad = 0.15 * (high - low or 1.0)
    fig.update_xaxes(range=[low - (pad if low < 0 else 0), high + pad])
    title = (f"Why {label or f'row {row}'} → {chosen.targets[row]} = {label_value(output)} "
             f"(base value {label_value(base)})")
    return style(fig, title=title, x=_output_axis(expl), y="", height=max(260, 90 + 30 * (len(labels) + 2)))


def _output_axis(expl: TabularExplanation) -> str:
    return "probability" if expl.classifier else "model output"


# -- many rows ----------------------------------------------------------------------------
def importance_bar(expl: TabularExplanation, *, target: str | int | None = None, max_features: int = 20) -> go.Figure:
    """Mean |SHAP| per feature over the explained rows, the most important on top."""
    chosen = expl.select(target)
    mean = np.abs(chosen.values).mean(axis=0)
    order = np.argsort(-mean, kind="stable")[:max_features][::-1]
    fig = go.Figure(go.Bar(
        x=mean[order], y=[expl.feature_names[j] for j in order], orientation="h", marker_color=NEGATIVE,
        text=[f"{mean[j]:.3g}" for j in order], textposition="outside", cliponaxis=False,
        hovertemplate="%{y}: mean |SHAP| %{x:.4g}<extra></extra>",
    ))
    fig.update_yaxes(type="category")
    return style(fig, title=f"Global importance over {len(chosen.values)} row(s)", x="mean |SHAP value|",
                  y="", height=max(240, 70 + 26 * len(order)))


def _normalized(column: np.ndarray) -> np.ndarray:
    low, high = float(np.min(column)), float(np.max(column))
    return np.full(len(column), 0.5) if high == low else (column - low) / (high - low)


def beeswarm(
    expl: TabularExplanation, *, target: str | int | None = None, max_features: int = 15, seed: int = 0
) -> go.Figure:
    """Every attribution as a dot, one line per feature, coloured from low (blue) to high (red) feature value."""
    chosen = expl.select(target)
    order = np.argsort(-np.abs(chosen.values).mean(axis=0), kind="stable")[:max_features]
    rng = np.random.default_rng(seed)
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    colors: list[np.ndarray] = []
    hover: list[str] = []
    for rank, j in enumerate(order):
        n = len(chosen.values)
        xs.append(chosen.values[:, j])
        ys.append(np.full(n, float(len(order) - 1 - rank)) + rng.uniform(-0.3, 0.3, n))
        colors.append(_normalized(expl.matrix[:, j]))
        hover.extend(f"row {i}: {expl.feature_names[j]} = {label_value(expl.data.iloc[i, j])}" for i in range(n))
    fig = go.Figure(go.Scattergl(
        x=np.concatenate(xs), y=np.concatenate(ys), mode="markers", text=hover,
        marker=dict(color=np.concatenate(colors), colorscale=_SCALE, size=7, opacity=0.8, cmin=0, cmax=1,
                    colorbar=dict(title="feature value", tickvals=[0, 1], ticktext=["low", "high"])),
        hovertemplate="%{text}<br>SHAP %{x:.4g}<extra></extra>",
    ))
    fig.update_yaxes(tickvals=list(range(len(order))), ticktext=[expl.feature_names[j] for j in order[::-1]])
    fig.add_vline(x=0, line_color="#94a3b8", line_width=1)
    if numerically_zero(chosen.values, chosen.outputs):  # not rounding noise stretched across the axis
        span = _neutral_span(chosen.outputs)
        fig.update_xaxes(range=[-span, span])
    return style(fig, title=f"SHAP values of {len(chosen.values)} row(s), by feature", x="SHAP value", y="",
                  height=max(280, 80 + 32 * len(order)))


def dependence(
    expl: TabularExplanation, feature: str, *, color_by: str | None = None, target: str | int | None = None
) -> go.Figure:
    """A feature's value against its attribution, coloured by another feature's value."""
    j = _feature_index(expl, feature)
    chosen = expl.select(target)
    x = expl.data[feature]
    text = [f"row {i}" for i in range(len(x))]
    marker: dict[str, Any] = dict(size=9, opacity=0.85, color=NEGATIVE)
    fig = go.Figure()
    if color_by is not None:
        _feature_index(expl, color_by)
        column = expl.data[color_by]
        if expl.data[color_by].dtype.kind in "iuf":
            marker.update(color=column.to_numpy(), colorscale=_SCALE, colorbar=dict(title=color_by))
            text = [f"row {i}, {color_by} = {label_value(v)}" for i, v in enumerate(column)]
        else:
            for category in pd.unique(column):
                mask = (column == category).to_numpy()
                fig.add_trace(go.Scatter(
                    x=x[mask], y=chosen.values[mask, j], mode="markers", name=f"{color_by} = {category}",
                    marker=dict(size=9, opacity=0.85), hovertemplate="%{x}: SHAP %{y:.4g}<extra></extra>",
                ))
    if not fig.data:
        fig.add_trace(go.Scatter(x=x, y=chosen.values[:, j], mode="markers", marker=marker, text=text,
                                 hovertemplate=f"%{{text}}<br>{feature} = %{{x}}<br>SHAP %{{y:.4g}}<extra></extra>"))
    fig.add_hline(y=0, line_color="#94a3b8", line_width=1)
    if numerically_zero(chosen.values, chosen.outputs):
        span = _neutral_span(chosen.outputs)
        fig.update_yaxes(range=[-span, span])
    by = f", coloured by {color_by}" if color_by else ""
    return style(fig, title=f"Dependence on {feature}{by}", x=feature, y=f"SHAP value of {feature}", height=380)


def _feature_index(expl: TabularExplanation, feature: str) -> int:
    if feature not in expl.feature_names:
        from ..errors import InvalidInputError

        raise InvalidInputError(f"unknown feature {feature!r}; expected one of {', '.join(expl.feature_names[:8])}…")
    return expl.feature_names.index(feature)


# -- images -------------------------------------------------------------------------------
def image_overlay(expl: ImageExplanation, row: int = 0, *, max_classes: int = 3) -> go.Figure:
    """The image, then one panel per explained class with its attribution heat map over it.

    The colour scale spans ± the largest attribution of the image, or ± the output scale when
    the attributions are numerically zero (rounding noise is not drawn as full-strength evidence).
    """
    image = expl.images[row].mean(axis=2)
    k = min(max_classes, expl.class_indices.shape[1])
    titles = ["input"] + [
        f"{expl.output_names[c]} (p = {expl.outputs[row, c]:.2f})" for c in expl.class_indices[row, :k]
    ]
    fig = make_subplots(rows=1, cols=k + 1, subplot_titles=titles, horizontal_spacing=0.03)
    values = expl.values[row, ..., :k]
    zero = numerically_zero(values, expl.outputs[row])
    limit = _neutral_span(expl.outputs[row]) if zero else largest_attribution(values) or 1.0
    fig.add_trace(go.Heatmap(z=image, colorscale="gray", showscale=False,
                             hovertemplate="value %{z:.3f}<extra></extra>"), 1, 1)
    for i in range(k):
        heat = expl.values[row, ..., i].sum(axis=2)
        fig.add_trace(go.Heatmap(z=image, colorscale="gray", showscale=False, hoverinfo="skip"), 1, i + 2)
        fig.add_trace(go.Heatmap(
            z=heat, colorscale=OVERLAY, zmin=-limit, zmax=limit, showscale=i == k - 1,
            colorbar=dict(title="SHAP"), hovertemplate="SHAP %{z:.4f}<extra></extra>",
        ), 1, i + 2)
    fig.update_yaxes(autorange="reversed", showticklabels=False, scaleanchor="x")
    fig.update_xaxes(showticklabels=False)
    title = (f"Image {row}: attributions are numerically zero (largest |SHAP| {largest_attribution(values):.1e}), "
             "no evidence for any class" if zero else
             f"Image {row}: where the evidence for each class lies (red for, blue against)")
    fig.update_layout(title=dict(text=title, x=0, font=dict(size=15)), template="plotly_white", font=FONT, height=340,
                      margin=dict(l=10, r=10, t=80, b=10))
    return fig


# -- drift --------------------------------------------------------------------------------
def drift_rows(report: DriftReport) -> go.Figure:
    """Per row: Spearman correlation of importances and top-k agreement, variant vs parent."""
    rows = [f"row {r}" for r in report.per_row["row"]]
    fig = go.Figure([
        go.Bar(x=rows, y=report.per_row["spearman"], name="rank correlation (Spearman)", marker_color=PARENT),
        go.Bar(x=rows, y=report.per_row["top_k_agreement"], name=f"top-{report.top_k} agreement", marker_color=VARIANT),
    ])
    fig.update_layout(barmode="group")
    lowest = float(np.nanmin(report.per_row["spearman"].to_numpy(dtype=float), initial=0))
    fig.update_yaxes(range=[min(0.0, lowest), 1.05])
    return style(fig, title=f"Explanation agreement of {report.variant_ref} with {report.parent_ref}", x="",
                  y="agreement", height=340)


def drift_importance(report: DriftReport, *, max_features: int = 15) -> go.Figure:
    """Mean |SHAP| of parent and variant, side by side, for the most important features."""
    table = report.importance.assign(total=report.importance["parent"] + report.importance["variant"])
    table = table.sort_values("total", ascending=False, kind="stable").head(max_features).iloc[::-1]
    fig = go.Figure([
        go.Bar(x=table["parent"], y=table["feature"], orientation="h", name=report.parent_ref, marker_color=PARENT),
        go.Bar(x=table["variant"], y=table["feature"], orientation="h", name=report.variant_ref, marker_color=VARIANT),
    ])
    fig.update_layout(barmode="group")
    fig.update_yaxes(type="category")
    return style(fig, title="Global importance, parent vs variant", x="mean |SHAP value|", y="",
                  height=max(260, 80 + 40 * len(table)))


# -- exports ------------------------------------------------------------------------------
def shap_csv(expl: TabularExplanation, *, target: str | int | None = None) -> bytes:
    """SHAP values, base value, output and feature values per row, as CSV (formulas escaped)."""
    return frame_to_csv_bytes(expl.to_frame(target))


def _facts(expl: TabularExplanation | ImageExplanation) -> list[tuple[str, str]]:
    facts = [("Model", expl.ref)]
    if isinstance(expl, TabularExplanation):
        facts += [("Explainer", f"{expl.explainer} ({expl.max_evals:,} evaluations per row)"),
                  ("Background", expl.background.describe())]
    else:
        masker = f"blur({expl.blur},{expl.blur})"
        facts += [("Explainer", f"partition, {masker} masker, {expl.max_evals:,} evaluations per image")]
    facts += [
        ("Seed", str(expl.settings.seed)),
        ("Additivity", f"max |base + Σ SHAP − output| = {expl.max_additivity_error:.2e} "
                       f"({'within' if expl.additive else 'OVER'} tolerance {expl.tolerance:.0e})"),
        ("Computed in", f"{expl.seconds:.2f} s, {expl.model_rows:,} model evaluations"),
    ]
    facts += [("Note", note) for note in expl.notes]
    return facts


def html_report(
    expl: TabularExplanation | ImageExplanation,
    rows: Sequence[int] | None = None,
    *,
    target: str | int | None = None,
    title: str | None = None,
) -> str:
    """A standalone HTML page (plotly.js inlined, works offline) explaining the selected rows."""
    count = len(expl.outputs)
    rows = list(range(min(count, 10))) if rows is None else [int(r) for r in rows]
    figures: list[go.Figure] = []
    if isinstance(expl, TabularExplanation):
        if count > 1:
            figures += [importance_bar(expl, target=target), beeswarm(expl, target=target)]
        figures += [waterfall(expl, r, target=target) for r in rows]
    else:
        figures += [image_overlay(expl, r) for r in rows]
    shown = f"{'Rows' if isinstance(expl, TabularExplanation) else 'Images'} shown: {', '.join(str(r) for r in rows)}"
    return standalone_html(title or f"Explanation of {expl.ref}", _facts(expl), figures, shown)


def standalone_html(title: str, facts: Sequence[tuple[str, str]], figures: Sequence[go.Figure], caption: str) -> str:
    """A standalone HTML page: a title, a table of facts, a caption, then the figures (plotly.js inlined once)."""
    parts = [fig.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, fig in enumerate(figures)]
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in facts)
    heading = html.escape(title)
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{heading}</title><style>body{{font-family:Inter,'Source Sans Pro',sans-serif;margin:2em;"
        "color:#0f172a}th{text-align:left;padding-right:1em;vertical-align:top}td,th{padding:.2em .5em}"
        "table{border-collapse:collapse;margin-bottom:1.5em}tr:nth-child(even){background:#f1f5f9}</style>"
        f"</head><body><h1>{heading}</h1><table>{rows}</table><p>{html.escape(caption)}</p>"
        + "".join(f"<div class='figure'>{part}</div>" for part in parts)
        + "</body></html>"
    )
