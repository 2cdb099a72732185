"""Plotly figures of a variant comparison (no streamlit): the latency-agreement Pareto chart."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import plotly.graph_objects as go

from .measure import VersionMeasurement
from .methods import REGISTRY

__all__ = ["agreement_range", "pareto_chart", "pareto_front"]

_FONT = dict(family="Inter, 'Source Sans Pro', sans-serif", size=13)
_PARENT_COLOR = "#111827"
_OTHER_COLOR = "#6b7280"


def _color(method: str) -> str:
    if method == "parent":
        return _PARENT_COLOR
    found = REGISTRY.get(method)
    return found.color if found else _OTHER_COLOR


def _agreement(m: VersionMeasurement) -> float:
    return 1.0 if m.method is None else float(m.agreement.get("value", 0.0))


def pareto_front(points: Sequence[tuple[str, float, float]]) -> list[str]:
    """Names of the points no other point beats on both latency (lower) and agreement (higher)."""
    front = []
    for name, latency, agree in points:
        dominated = any(
            (lat <= latency and agr >= agree) and (lat < latency or agr > agree)
            for other, lat, agr in points if other != name
        )
        if not dominated:
            front.append(name)
    return front


def pareto_chart(
    measurements: Sequence[VersionMeasurement],
    *,
    batch: str = "1",
    best: str | None = None,
    statuses: Mapping[str, str] | None = None,
    tolerance: float | None = None,
) -> go.Figure:
    """Latency (p50 at ``batch``) against agreement with the parent; marker area ∝ file size.

    The parent is a black diamond, the recommended variant is ringed, the Pareto
    front is a dashed line and the tolerance a shaded band.  Latency starts at
    zero (a linear axis) and agreement stays within 0-100%.
    """
    points = [(m.ref, float(m.latency[batch]["p50_ms"]), _agreement(m)) for m in measurements if batch in m.latency]
    biggest = max((m.size_bytes for m in measurements), default=1) or 1
    fig = go.Figure()
    if tolerance is not None:
        fig.add_hrect(y0=1.0 - tolerance, y1=1.0, fillcolor="#10b981", opacity=0.08, line_width=0,
                      annotation_text=f"within {tolerance:.1%}", annotation_position="bottom left")
    front = [p for p in sorted(points, key=lambda p: p[1]) if p[0] in pareto_front(points)]
    if len(front) > 1:
        fig.add_trace(go.Scatter(x=[p[1] for p in front], y=[p[2] for p in front], mode="lines",
                                 line=dict(color="#9ca3af", dash="dash"), name="Pareto front", hoverinfo="skip"))
    # labels of markers at about the same spot alternate above, below and beside them instead of overlapping
    places = iter(["top center", "bottom center", "middle right", "middle left"] * len(measurements))
    for m in measurements:
        if batch not in m.latency:
            continue
        method = m.method or "parent"
        status = (statuses or {}).get(m.ref, "parent" if m.method is None else "")
        size = 14 + 36 * math.sqrt(m.size_bytes / biggest)
        ring = dict(width=4, color="#10b981") if m.ref == best else dict(width=1, color="white")
        fig.add_trace(go.Scatter(
            x=[m.latency[batch]["p50_ms"]], y=[_agreement(m)], mode="markers+text", name=f"{m.ref} ({method})",
            text=[m.ref], textposition=next(places),
            marker=dict(size=size, color=_color(method), line=ring,
                        symbol="diamond" if m.method is None else "circle", opacity=0.85),
            customdata=[[method, m.size_bytes / 1024, status or "-"]],
            hovertemplate=("%{text} · %{customdata[0]}<br>p50 %{x:.3f} ms<br>agreement %{y:.2%}"
                           "<br>file %{customdata[1]:,.0f} KiB<br>%{customdata[2]}<extra></extra>"),
        ))
    fig.update_layout(
        title=dict(text=f"Latency at batch {batch} vs agreement with the parent (marker area ∝ file size)",
                   x=0, xanchor="left", font=dict(size=15)),
        template="plotly_white", font=_FONT, height=460, margin=dict(l=10, r=10, t=50, b=10),
        legend=dict(orientation="h", yanchor="top", y=-0.15, xanchor="left", x=0),
    )
    # from zero: a 1% latency difference must look like 1%, not like the width of the chart
    slowest = max((p[1] for p in points), default=1.0) or 1.0
    fig.update_xaxes(title_text=f"p50 latency at batch {batch} (ms, lower is better)", range=[0, slowest * 1.15],
                     rangemode="tozero", automargin=True)
    fig.update_yaxes(title_text="agreement with the parent (higher is better)", tickformat=".1%",
                     range=list(agreement_range([p[2] for p in points], tolerance)), automargin=True)
    fig.update_traces(cliponaxis=False)  # markers at 100% drawn whole, without widening the axis past it
    return fig


def agreement_range(values: Sequence[float], tolerance: float | None = None) -> tuple[float, float]:
    """The agreement axis: never above 100% nor below 0, showing every point and the tolerance band."""
    lowest = min([*values, 1.0 - (tolerance or 0.0), 1.0])
    return max(0.0, math.floor((lowest - 0.02) * 100) / 100), 1.0
