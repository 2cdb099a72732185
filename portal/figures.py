"""Plotly figures shared by the pages, the REST API and reports (no streamlit here).

Every builder returns a ``plotly.graph_objects.Figure`` with a title and labelled
axes, in one visual style, so a chart never reaches a user unlabeled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import plotly.graph_objects as go

__all__ = [
    "operator_comparison",
    "operator_histogram",
    "prediction_distribution",
    "top_k_bar",
]

ACCENT = "#2563eb"
SECOND = "#f59e0b"
_FONT = dict(family="Inter, 'Source Sans Pro', sans-serif", size=13)
_MAX_CLASS_BARS = 30


def style(fig: go.Figure, *, title: str, x: str, y: str, height: int) -> go.Figure:
    fig.update_layout(
        title=dict(text=title, x=0, xanchor="left", font=dict(size=15)),
        template="plotly_white",
        font=_FONT,
        height=height,
        margin=dict(l=10, r=10, t=50, b=10),
        bargap=0.25,
        showlegend=len(fig.data) > 1,
        legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1),
    )
    fig.update_xaxes(title_text=x, automargin=True)
    fig.update_yaxes(title_text=y, automargin=True)
    return fig


def operator_histogram(operators: Mapping[str, int], *, top: int = 25) -> go.Figure:
    """Horizontal bars of how often each ONNX operator occurs, most frequent on top.

    Operators beyond the ``top`` most frequent are summed into one "other (n types)" bar.
    """
    items = sorted(operators.items(), key=lambda kv: (-kv[1], kv[0]))
    if len(items) > top:
        rest = items[top - 1 :]
        items = items[: top - 1] + [(f"other ({len(rest)} types)", sum(c for _, c in rest))]
    names = [name for name, _ in items][::-1]
    counts = [count for _, count in items][::-1]
    fig = go.Figure(go.Bar(
        x=counts, y=names, orientation="h", marker_color=ACCENT, text=counts, textposition="outside",
        hovertemplate="%{y}: %{x} node(s)<extra></extra>", cliponaxis=False,
    ))
    if counts and max(counts) <= 10:
        fig.update_xaxes(dtick=1)  # whole nodes: no 0.2-node ticks
    fig.update_xaxes(range=[0, max(counts, default=1) * 1.12])
    total = sum(operators.values())
    height = max(220, 60 + 24 * len(names))
    return style(fig, title=f"Operators in the graph ({total} nodes, {len(operators)} types)",
                  x="nodes", y="operator", height=height)


def operator_comparison(
    first: Mapping[str, int], second: Mapping[str, int], *, labels: Sequence[str], top: int = 25
) -> go.Figure:
    """Grouped bars of operator counts in two versions (the ``top`` by combined count)."""
    names = sorted(set(first) | set(second), key=lambda n: (-(first.get(n, 0) + second.get(n, 0)), n))[:top]
    names = names[::-1]
    fig = go.Figure()
    for counts, label, color in ((first, labels[0], ACCENT), (second, labels[1], SECOND)):
        fig.add_trace(go.Bar(
            x=[counts.get(n, 0) for n in names], y=names, orientation="h", name=label, marker_color=color,
            hovertemplate=f"{label} · %{{y}}: %{{x}}<extra></extra>",
        ))
    fig.update_layout(barmode="group")
    peak = max([*first.values(), *second.values(), 1])
    if peak <= 10:
        fig.update_xaxes(dtick=1)
    return style(fig, title="Operators, side by side", x="nodes", y="operator",
                  height=max(240, 70 + 34 * len(names)))


def prediction_distribution(results: pd.DataFrame, *, task: str) -> go.Figure | None:
    """Class counts (classification) or a histogram of the predicted values.

    Returns ``None`` when ``results`` has no ``prediction`` column to summarise.
    """
    if "prediction" not in results.columns or results.empty:
        return None
    values = results["prediction"]
    numeric = pd.api.types.is_numeric_dtype(values) and task != "classification"
    if numeric:
        fig = go.Figure(go.Histogram(x=values, marker_color=ACCENT, nbinsx=min(50, max(5, len(values) // 4)),
                                     hovertemplate="%{x}: %{y} row(s)<extra></extra>"))
        return style(fig, title=f"Distribution of predictions ({len(values)} rows)",
                      x="predicted value", y="rows", height=340)
    counts = values.astype(str).value_counts()
    if len(counts) > _MAX_CLASS_BARS:
        counts = counts.iloc[:_MAX_CLASS_BARS]
    fig = go.Figure(go.Bar(
        x=counts.index.tolist(), y=counts.to_numpy().tolist(), marker_color=ACCENT,
        text=counts.to_numpy().tolist(), textposition="outside", cliponaxis=False,
        hovertemplate="%{x}: %{y} row(s)<extra></extra>",
    ))
    fig.update_xaxes(type="category")
    return style(fig, title=f"Predicted classes ({len(values)} rows)", x="predicted class", y="rows", height=340)


def top_k_bar(probabilities: Mapping[str, float], *, k: int = 5, title: str | None = None) -> go.Figure:
    """Horizontal bars of the ``k`` most probable classes, the most probable on top."""
    items = sorted(probabilities.items(), key=lambda kv: -kv[1])[:k][::-1]
    labels = [str(label) for label, _ in items]
    values = [float(p) for _, p in items]
    fig = go.Figure(go.Bar(
        x=values, y=labels, orientation="h", marker_color=[ACCENT] * len(values),
        text=[f"{p:.1%}" for p in values], textposition="outside", cliponaxis=False,
        hovertemplate="%{y}: %{x:.2%}<extra></extra>",
    ))
    fig.update_yaxes(type="category")
    fig.update_xaxes(range=[0, 1.3], tickformat=".0%", tickvals=[0, 0.25, 0.5, 0.75, 1])
    return style(fig, title=title or f"Top {len(items)} classes", x="probability", y="class",
                  height=max(200, 70 + 32 * len(items)))
