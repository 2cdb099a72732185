"""Panels of the Monitor page: log state, window picker, metric tiles, traffic and error charts, input drift."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import streamlit as st

from ..core import Portal
from ..monitor import figures as monitor_figures
from ..monitor import stats as monitor
from ..monitor.drift import DriftReport, input_drift
from ..monitor.stats import TimeRange, TrafficSummary
from ..storage.registry import ModelVersion
from . import keys
from .render import chart
from .widgets import shown_errors

__all__ = [
    "drift_panel",
    "errors_panel",
    "log_state",
    "metric_tiles",
    "pick_scope",
    "pick_window",
    "summary_panels",
    "traffic_panel",
    "tile_values",
]

WINDOWS = {"Last hour": "1h", "Last 24 hours": "24h", "Last 7 days": "7d", "Last 30 days": "30d", "Custom": None}
THIS_VERSION, ALL_VERSIONS = "This version", "All versions"
INTERNAL_WORK = ("Requests from the Predict page, the CLI, the REST API and the library. The portal's own model "
                 "runs (Explain's SHAP and LIME evaluations, Compare's measurements) are not traffic and are not "
                 "counted.")
_HIGHLIGHT = {"significant": "background-color: #fee2e2", "moderate": "background-color: #fef3c7", "stable": ""}


def log_state(portal: Portal) -> None:
    """Warn when the prediction log is off; else flush it, so the last half second's predictions show too."""
    if portal.monitor is None:
        st.warning("The prediction log is off (`PORTAL_MONITOR=off`): new predictions are not recorded.",
                   icon=":material/visibility_off:")
    else:
        portal.monitor.flush()


def pick_window(portal: Portal) -> TimeRange | None:
    """The time range radio (last hour ... last 30 days, custom dates); None while custom dates are incomplete."""
    choice = st.radio("Time range", list(WINDOWS), index=1, horizontal=True, key=keys.MONITOR_WINDOW)
    now = monitor.now(portal)
    preset = WINDOWS[choice]
    if preset is not None:
        return TimeRange.last(monitor.PRESETS[preset], now=now)
    today = monitor.utc(now).date()
    picked = st.date_input("Dates (UTC)", value=(today - dt.timedelta(days=6), today), max_value=today,
                           key=keys.MONITOR_CUSTOM, help="From the start of the first day to the end of the last")
    if not isinstance(picked, (tuple, list)) or len(picked) != 2:
        st.info("Pick the last day of the range too.", icon=":material/date_range:")
        return None
    first, last = picked
    return TimeRange(dt.datetime.combine(first, dt.time()), dt.datetime.combine(last + dt.timedelta(days=1), dt.time()))


def pick_scope(version: ModelVersion) -> int | None:
    """This version only, or every version of the model (None)."""
    scope = st.radio("Versions", [THIS_VERSION, ALL_VERSIONS], horizontal=True, key=keys.MONITOR_SCOPE,
                     format_func=lambda s: f"v{version.version} only" if s == THIS_VERSION else f"all versions of {version.name}")
    return version.version if scope == THIS_VERSION else None


def _ms(value: float | None) -> str:
    """Three significant digits or so, at most 7 characters: 0.61 ms, 20.5 ms, 345 ms, 1.23 s, 12.3 s, 123 s."""
    if value is None:
        return "—"
    if value < 999.5:
        return f"{value:.2f} ms" if value < 10 else f"{value:.1f} ms" if value < 100 else f"{value:.0f} ms"
    seconds = value / 1000
    return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s" if seconds < 100 else f"{seconds:,.0f} s"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _count(value: int) -> str:
    """Exact up to 999,999; beyond, 1.2M or 3.4B (the tile's help gives the exact number)."""
    if value < 1_000_000:
        return f"{value:,}"
    return f"{value / 1e6:.1f}M" if value < 999_950_000 else f"{value / 1e9:.1f}B"


def tile_values(summary: TrafficSummary) -> dict[str, str]:
    """The metric tiles as shown: label → short text (at most 9 characters, so a tile never cuts it)."""
    return {
        "Requests": _count(summary.requests),
        "Rows": _count(summary.rows),
        "Error rate": _pct(summary.error_rate),
        "Latency p50": _ms(summary.latency_p50_ms),
        "Latency p95": _ms(summary.latency_p95_ms),
        "Cache hit ratio": _pct(summary.cache_hit_ratio),
    }


_TILE_HELP = {
    "Latency p50": "Median time of a successful prediction in the portal (input checks + inference)",
    "Latency p95": "95th percentile: one successful prediction in 20 took longer",
    "Error rate": "Share of requests that failed (bad input, timeouts, ...)",
    "Cache hit ratio": "Share of requests that found the model already loaded",
}


def metric_tiles(summary: TrafficSummary) -> None:
    """Two rows of three tiles: traffic and errors, then latency and cache use (six in a row cut the values)."""
    exact = {"Requests": summary.requests, "Rows": summary.rows}
    items = list(tile_values(summary).items())
    for row in (items[:3], items[3:]):
        for column, (label, value) in zip(st.columns(3), row, strict=True):
            note = f"{exact[label]:,} exactly" if label in exact and exact[label] >= 1_000_000 else None
            column.metric(label, value, help=_TILE_HELP.get(label, note), border=True)


def traffic_panel(summary: TrafficSummary) -> None:
    """Requests/rows and latency over time, and who called."""
    left, right = st.columns(2)
    with left:
        chart(monitor_figures.requests_over_time(summary), key="monitor.requests")
    with right:
        chart(monitor_figures.latency_over_time(summary), key="monitor.latency")
    st.subheader("Callers")
    callers = summary.callers.rename(columns=str.capitalize)
    st.dataframe(callers, hide_index=True, width="stretch")


def errors_panel(summary: TrafficSummary) -> None:
    st.subheader("Errors")
    if not summary.errors:
        st.success("No failed predictions in this time range.", icon=":material/check_circle:")
        return
    left, right = st.columns(2)
    with left:
        chart(monitor_figures.errors_over_time(summary), key="monitor.errors")
    with right:
        chart(monitor_figures.error_bars(summary), key="monitor.top_errors")
    table = pd.DataFrame([[e.kind, e.message, e.count] for e in summary.top_errors], columns=["Error", "Message", "Count"])
    st.dataframe(table, hide_index=True, width="stretch",
                 column_config={"Message": st.column_config.TextColumn("Message", width="large")})


def summary_panels(portal: Portal, version: ModelVersion, scope: int | None, window: TimeRange) -> None:
    """The metric tiles, traffic and errors of the model (or one version) in ``window``, or why there are none."""
    with shown_errors(stop=True):
        summary = monitor.summarize(portal, version.name, scope, window)
    if summary.empty:
        st.info(f"No predictions of {summary.label} in this time range yet. Predictions from the Predict page, "
                "`portal predict` and the REST API show up here as they happen.", icon=":material/monitoring:")
        return
    metric_tiles(summary)
    st.caption(INTERNAL_WORK)
    traffic_panel(summary)
    errors_panel(summary)


def _drift_table(report: DriftReport) -> None:
    frame = report.frame()
    styled = frame.style.apply(lambda row: [_HIGHLIGHT[row["Level"]]] * len(row), axis=1).format({"PSI": "{:.4f}"})
    st.dataframe(styled, hide_index=True, width="stretch", column_config={
        "PSI": st.column_config.NumberColumn("PSI", help="Population stability index of recent inputs vs the reference data"),
        "Level": st.column_config.TextColumn("Level", help="< 0.1 stable · 0.1 to 0.25 moderate · > 0.25 significant"),
    })


def drift_panel(portal: Portal, version: ModelVersion, window: TimeRange) -> None:
    """PSI per feature of the version's sampled recent inputs, drifting features highlighted, distributions overlaid."""
    st.subheader(f"Input drift of {version.ref}")
    report = input_drift(portal, version.ref, window)
    if report.status != "ok":
        st.info(report.message + ".", icon=":material/info:")
        return
    drifting = report.drifting
    if drifting:
        names = ", ".join(f"**{f.feature}** ({f.psi:.3f}, {f.level})" for f in drifting)
        st.warning(f"Drifting features: {names}", icon=":material/warning:")
    else:
        st.success("No feature drifts: every PSI is below 0.1.", icon=":material/check_circle:")
    st.caption(f"{report.recent_rows:,} sampled recent rows vs {report.reference_rows:,} reference rows · "
               "PSI < 0.1 stable, 0.1 to 0.25 moderate, > 0.25 significant")
    left, right = st.columns(2)
    with left:
        _drift_table(report)
        chart(monitor_figures.drift_bars(report), key="monitor.psi")
    with right:
        names = [f.feature for f in report.features]
        feature = st.selectbox("Feature", names, key=keys.MONITOR_FEATURE + version.ref,
                               help="Features are listed by PSI, the most drifting first")
        chart(monitor_figures.feature_distributions(report.feature(feature)), key="monitor.distribution")
