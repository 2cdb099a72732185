"""Plotly figures of the Monitor page (no streamlit): traffic, latency, errors and input drift.

The time charts take :attr:`portal.monitor.stats.TrafficSummary.plot_series`: buckets
fitted to the logged requests, drawn at their centres (bars a bucket wide) on a time
axis spanning the first to the last request with a small margin, not the whole window;
the axis carries a range slider and range buttons shorter than that span.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import plotly.graph_objects as go

from ..figures import ACCENT, SECOND, style
from .stats import TrafficSummary
from .drift import DriftReport, FeatureDrift

__all__ = ["drift_bars", "error_bars", "errors_over_time", "feature_distributions", "latency_over_time",
           "requests_over_time"]

DANGER = "#dc2626"
WARN = "#f59e0b"
CALM = "#94a3b8"
LEVEL_COLORS = {"significant": DANGER, "moderate": WARN, "stable": CALM}
_HEIGHT = 340


_BUTTONS = ((3600, dict(count=1, label="1h", step="hour")), (6 * 3600, dict(count=6, label="6h", step="hour")),
            (86_400, dict(count=1, label="1d", step="day")), (7 * 86_400, dict(count=7, label="7d", step="day")))


def _plot_range(summary: TrafficSummary) -> tuple[dt.datetime, dt.datetime]:
    return summary.plot_range or (summary.window.start, summary.window.end)


def _time_axis(fig: go.Figure, summary: TrafficSummary) -> go.Figure:
    start, end = _plot_range(summary)
    span = (end - start).total_seconds()
    buttons = [dict(button, stepmode="backward") for seconds, button in _BUTTONS if span > seconds]
    buttons.append(dict(step="all", label="all"))
    fig.update_xaxes(
        type="date", range=[start, end],
        rangeselector=dict(buttons=buttons, x=0, y=1.0, yanchor="bottom", font=dict(size=11)),
        rangeslider=dict(visible=True, thickness=0.08),
    )
    fig.update_layout(legend=dict(y=1.0, yanchor="bottom", x=1, xanchor="right"), margin=dict(t=80))
    return fig


def _step(summary: TrafficSummary) -> int:
    return summary.plot_bucket_seconds or summary.bucket_seconds


def _bucket_text(summary: TrafficSummary) -> str:
    seconds = _step(summary)
    if seconds % 86_400 == 0:
        return f"{seconds // 86_400} d" if seconds > 86_400 else "day"
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h" if seconds > 3600 else "hour"
    if seconds % 60 == 0:
        return f"{seconds // 60} min" if seconds > 60 else "minute"
    return f"{seconds} s" if seconds > 1 else "second"


def _series(summary: TrafficSummary) -> tuple[pd.DataFrame, pd.Series, list[str]]:
    """The charts' buckets, their centres (where they are drawn) and their spans as hover text."""
    s = summary.plot_series if not summary.plot_series.empty else summary.series
    step = pd.Timedelta(seconds=_step(summary))
    shown = "%H:%M:%S" if step < pd.Timedelta(minutes=1) else "%Y-%m-%d %H:%M"
    spans = [f"{t:{shown}} to {t + step:{shown}}" for t in s["time"]]
    return s, s["time"] + step / 2, spans


def requests_over_time(summary: TrafficSummary) -> go.Figure:
    """Requests per bucket (bars a bucket wide) and rows per bucket (line, right axis)."""
    s, x, spans = _series(summary)
    fig = go.Figure([
        go.Bar(x=x, y=s["requests"], name="requests", marker_color=ACCENT, width=_step(summary) * 1000,
               customdata=spans, hovertemplate="%{customdata}<br>%{y:,} requests<extra></extra>"),
        go.Scatter(x=x, y=s["rows"], name="rows", yaxis="y2", mode="lines+markers", line=dict(color=SECOND),
                   marker=dict(size=4), customdata=spans, hovertemplate="%{customdata}<br>%{y:,} rows<extra></extra>"),
    ])
    style(fig, title=f"Requests and rows per {_bucket_text(summary)}", x="time (UTC)", y="requests",
           height=_HEIGHT)
    # after style, which titles every y axis alike
    fig.update_layout(yaxis2=dict(title="rows", overlaying="y", side="right", rangemode="tozero", showgrid=False),
                      yaxis=dict(rangemode="tozero"))
    return _time_axis(fig, summary)


def latency_over_time(summary: TrafficSummary) -> go.Figure:
    """Latency p50 and p95 of successful requests per bucket (gaps where a bucket had none)."""
    s, x, spans = _series(summary)
    fig = go.Figure([
        go.Scatter(x=x, y=s["p50_ms"], name="p50", mode="lines+markers", line=dict(color=ACCENT),
                   marker=dict(size=6), customdata=spans,
                   hovertemplate="%{customdata}<br>p50 %{y:.2f} ms<extra></extra>"),
        go.Scatter(x=x, y=s["p95_ms"], name="p95", mode="lines+markers", line=dict(color=SECOND),
                   marker=dict(size=6), customdata=spans,
                   hovertemplate="%{customdata}<br>p95 %{y:.2f} ms<extra></extra>"),
    ])
    fig.update_yaxes(rangemode="tozero")
    style(fig, title=f"Latency per {_bucket_text(summary)}", x="time (UTC)", y="ms", height=_HEIGHT)
    return _time_axis(fig, summary)


def errors_over_time(summary: TrafficSummary) -> go.Figure:
    """Failed requests per bucket (bars a bucket wide) and the error rate (markers, right axis)."""
    s, x, spans = _series(summary)
    rate = (s["errors"] / s["requests"].where(s["requests"] > 0)).astype(float)
    fig = go.Figure([
        go.Bar(x=x, y=s["errors"], name="errors", marker_color=DANGER, width=_step(summary) * 1000,
               customdata=spans, hovertemplate="%{customdata}<br>%{y:,} errors<extra></extra>"),
        go.Scatter(x=x, y=rate, name="error rate", yaxis="y2", mode="markers", marker=dict(color=CALM, size=6),
                   customdata=spans, hovertemplate="%{customdata}<br>%{y:.1%} of requests<extra></extra>"),
    ])
    style(fig, title=f"Errors per {_bucket_text(summary)}", x="time (UTC)", y="errors", height=_HEIGHT)
    if s["errors"].max() <= 5:
        fig.update_layout(yaxis=dict(dtick=1))  # whole errors: no 0.5-error ticks
    fig.update_layout(yaxis2=dict(title="error rate", overlaying="y", side="right", range=[0, 1.05],
                                  tickformat=".0%", showgrid=False), yaxis=dict(rangemode="tozero"))
    return _time_axis(fig, summary)


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def error_bars(summary: TrafficSummary) -> go.Figure:
    """Horizontal bars of the most common errors, the most frequent on top."""
    items = summary.top_errors[::-1]
    labels = [_short(f"{e.kind}: {e.message}") for e in items]
    counts = [e.count for e in items]
    fig = go.Figure(go.Bar(
        x=counts, y=labels, orientation="h", marker_color=DANGER, text=counts, textposition="outside",
        cliponaxis=False, customdata=[f"{e.kind}: {e.message}" for e in items],
        hovertemplate="%{customdata}<br>%{x:,} time(s)<extra></extra>",
    ))
    fig.update_xaxes(range=[0, max(counts, default=1) * 1.15])
    fig.update_yaxes(type="category")
    return style(fig, title="Most common errors", x="requests", y="", height=max(200, 80 + 34 * len(items)))


def drift_bars(report: DriftReport) -> go.Figure:
    """PSI per feature, highest first, coloured by level, with the 0.1 and 0.25 thresholds drawn."""
    items = report.features[::-1]
    fig = go.Figure(go.Bar(
        x=[f.psi for f in items], y=[f.feature for f in items], orientation="h",
        marker_color=[LEVEL_COLORS[f.level] for f in items], text=[f"{f.psi:.3f}" for f in items],
        textposition="outside", cliponaxis=False, customdata=[f.level for f in items],
        hovertemplate="%{y}: PSI %{x:.4f} (%{customdata})<extra></extra>",
    ))
    for threshold, color, side in ((0.1, WARN, "top left"), (0.25, DANGER, "top right")):
        fig.add_vline(x=threshold, line=dict(color=color, dash="dot", width=1), annotation_position=side,
                      annotation=dict(text=f"{threshold:g}", font=dict(size=10, color=color)))
    top = max([f.psi for f in items] + [0.3])
    fig.update_xaxes(range=[0, top * 1.18])
    fig.update_yaxes(type="category")
    return style(fig, title=f"Population stability index per feature ({report.recent_rows:,} recent rows)",
                  x="PSI", y="feature", height=max(220, 90 + 28 * len(items)))


def feature_distributions(drift: FeatureDrift) -> go.Figure:
    """The reference and recent distributions of one feature over the PSI bins, overlaid."""
    fig = go.Figure([
        go.Bar(x=drift.bins, y=drift.reference, name=f"reference ({drift.reference_rows:,} rows)",
               marker_color=CALM, opacity=0.75, hovertemplate="%{x}: %{y:.1%} of reference rows<extra></extra>"),
        go.Bar(x=drift.bins, y=drift.recent, name=f"recent ({drift.recent_rows:,} rows)",
               marker_color=LEVEL_COLORS[drift.level] if drift.drifting else ACCENT, opacity=0.6,
               hovertemplate="%{x}: %{y:.1%} of recent rows<extra></extra>"),
    ])
    fig.update_layout(barmode="overlay", bargap=0.05)
    fig.update_xaxes(type="category")
    fig.update_yaxes(tickformat=".0%", rangemode="tozero")
    return style(fig, title=f"{drift.feature}: reference vs recent (PSI {drift.psi:.3f}, {drift.level})",
                  x="bin" if drift.kind == "numeric" else "category", y="share of rows", height=_HEIGHT)
