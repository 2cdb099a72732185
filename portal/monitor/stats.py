"""Monitoring: traffic, latency, errors and cache use of a model, read from the prediction log.

Every statistic is computed from the ``predictions`` table that
:mod:`portal.monitor.log` fills (one row per request, from the UI, the CLI, the API
or the library), over a time window, for one model version or all versions of a
model.  Counts and groupings run in SQL; latency percentiles are computed with
numpy/pandas (linear interpolation, numpy's default) from the latencies of the
window, reading only the columns they need, so the same code runs on SQLite and
PostgreSQL.  Input drift lives in :mod:`portal.monitor.drift`.

A model is named here as everywhere, but its rows are found by the id of the
model that has the name now: a model deleted and registered again under the
same name starts with an empty log (the old rows were deleted with it).

Timestamps are naive UTC, as everywhere in the database.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import case, func, select

from ..errors import InvalidInputError, PermissionDeniedError
from ..services import ModelServices
from ..storage.db import PredictionRow

__all__ = [
    "PRESETS",
    "ErrorCount",
    "TimeRange",
    "TrafficSummary",
    "bucket_seconds",
    "logged_versions",
    "plot_bucket_seconds",
    "now",
    "prune_log",
    "summarize",
]

_T = PredictionRow.__table__
# Window presets of the page and the CLI (``--since 24h``).
PRESETS: dict[str, int] = {"1h": 3600, "24h": 86_400, "7d": 7 * 86_400, "30d": 30 * 86_400}
_STEPS = (60, 300, 600, 900, 1800, 3600, 7200, 10_800, 21_600, 43_200, 86_400)
_MAX_BUCKETS = 120
# The charts' buckets fit the logged requests, not the window: a few requests in one minute of a
# 24-hour window get seconds-wide bars on an axis spanning that minute, not one bar in a day.
_PLOT_STEPS = (1, 2, 5, 10, 15, 30, *_STEPS)
_MAX_PLOT_BUCKETS = 60
_MIN_PLOT_SPAN_S = 60.0  # a lone request is shown within a minute around it
_PLOT_MARGIN = 0.05  # of the span, on each side of the first and last bucket
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}


def utc(epoch: float) -> dt.datetime:
    """Naive UTC datetime of an epoch time (how the log stores ``ts``)."""
    return dt.datetime.fromtimestamp(epoch, dt.UTC).replace(tzinfo=None)


def now(services: ModelServices) -> float:
    """The log's clock (epoch seconds): a test's fake clock when it set one, else the real time."""
    return services.monitor.clock() if services.monitor is not None else time.time()


def bucket_seconds(span_seconds: float) -> int:
    """Bucket size for a window: the smallest round step giving at most 120 buckets (1 min for an hour)."""
    for step in _STEPS:
        if span_seconds / step <= _MAX_BUCKETS:
            return step
    return 86_400 * math.ceil(span_seconds / 86_400 / _MAX_BUCKETS)


def plot_bucket_seconds(span_seconds: float) -> int:
    """Bucket size of the charts for requests spread over ``span_seconds``: a round step giving at most 60 bars."""
    for step in _PLOT_STEPS:
        if span_seconds / step <= _MAX_PLOT_BUCKETS:
            return step
    return 86_400 * math.ceil(span_seconds / 86_400 / _MAX_PLOT_BUCKETS)


@dataclass(frozen=True)
class TimeRange:
    """A half-open window ``[start, end)`` of naive UTC datetimes."""

    start: dt.datetime
    end: dt.datetime

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise InvalidInputError(f"the time range must end after it starts (not {self.start} to {self.end})")

    @classmethod
    def last(cls, seconds: float, *, now: float) -> TimeRange:
        """The ``seconds`` up to ``now`` (epoch seconds)."""
        return cls(utc(now - seconds), utc(now))

    @classmethod
    def parse(cls, since: str, *, now: float) -> TimeRange:
        """``90m``, ``24h``, ``7d``, ``2w`` (up to ``now``) or an ISO date/time in UTC (``2026-11-01T08:00``)."""
        text = since.strip().lower()
        match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhdw])", text)
        if match:
            return cls.last(float(match[1]) * _UNITS[match[2]], now=now)
        try:
            start = dt.datetime.fromisoformat(since.strip())
        except ValueError:
            raise InvalidInputError(
                f"invalid --since, expected a duration like 1h, 24h, 7d or a UTC date like 2026-11-01 (not {since!r})"
            ) from None
        if start.tzinfo is not None:
            start = start.astimezone(dt.UTC).replace(tzinfo=None)
        return cls(start, utc(now))

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    @property
    def bucket_seconds(self) -> int:
        return bucket_seconds(self.seconds)


@dataclass(frozen=True)
class ErrorCount:
    """How often one error (by kind and message) occurred in the window."""

    kind: str
    message: str
    count: int


@dataclass
class TrafficSummary:
    """Requests, rows, latency, errors and cache use of a model (version) over a window.

    Latency percentiles are over successful requests (a request refused in
    validation is fast and would flatter them); ``series`` has one row per
    bucket, empty buckets included, with columns ``time`` (bucket start, naive
    UTC), ``requests``, ``rows``, ``errors``, ``p50_ms`` and ``p95_ms``.

    The charts use ``plot_series`` instead: the same columns in buckets of
    ``plot_bucket_seconds`` fitted to the logged requests (``first`` to ``last``),
    over ``plot_range``, the span of those buckets with a small margin.
    """

    model: str
    version: int | None
    window: TimeRange
    bucket_seconds: int
    requests: int = 0
    rows: int = 0
    errors: int = 0
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    cache_hits: int = 0
    cache_lookups: int = 0
    top_errors: list[ErrorCount] = field(default_factory=list)
    callers: pd.DataFrame = field(default_factory=pd.DataFrame)
    series: pd.DataFrame = field(default_factory=pd.DataFrame)
    first: dt.datetime | None = None
    last: dt.datetime | None = None
    plot_bucket_seconds: int = 0
    plot_range: tuple[dt.datetime, dt.datetime] | None = None
    plot_series: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def label(self) -> str:
        return self.model if self.version is None else f"{self.model}:{self.version}"

    @property
    def empty(self) -> bool:
        return self.requests == 0

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    @property
    def cache_hit_ratio(self) -> float | None:
        """Share of requests that found the model loaded (requests whose cache use is unknown are left out)."""
        return self.cache_hits / self.cache_lookups if self.cache_lookups else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "version": self.version, "start": self.window.start.isoformat(),
            "end": self.window.end.isoformat(), "bucket_seconds": self.bucket_seconds,
            "requests": self.requests, "rows": self.rows, "errors": self.errors, "error_rate": self.error_rate,
            "latency_p50_ms": self.latency_p50_ms, "latency_p95_ms": self.latency_p95_ms,
            "cache_hit_ratio": self.cache_hit_ratio,
            "top_errors": [{"kind": e.kind, "message": e.message, "count": e.count} for e in self.top_errors],
            "callers": self.callers.to_dict("records"),
        }

    def describe(self) -> str:
        """A few lines of text for the CLI."""
        span = f"{self.window.start:%Y-%m-%d %H:%M} to {self.window.end:%Y-%m-%d %H:%M} UTC"
        if self.empty:
            return f"{self.label}: no predictions from {span}"
        lines = [
            f"{self.label}: {self.requests:,} requests, {self.rows:,} rows from {span}",
            f"latency p50 {_ms(self.latency_p50_ms)}, p95 {_ms(self.latency_p95_ms)}",
            f"errors {self.errors:,} ({_pct(self.error_rate)}), cache hit ratio {_pct(self.cache_hit_ratio)}",
        ]
        lines += [f"  {e.count:>6,}  {e.kind}: {e.message}" for e in self.top_errors]
        for r in self.callers.to_dict("records"):
            lines.append(f"  caller {r['caller'] or '-'} ({r['source']}): {r['requests']:,} requests, {r['rows']:,} rows")
        return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f} ms"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _where(model_id: int, version: int | None, window: TimeRange) -> list[Any]:
    conditions = [_T.c.model_id == model_id, _T.c.ts >= window.start, _T.c.ts < window.end]
    if version is not None:
        conditions.append(_T.c.version == version)
    return conditions


def _model_id(services: ModelServices, model: str) -> int:
    """The id of the model named ``model`` now (a signed-in user sees the traffic of the models they may see).

    Raises:
        NotFoundError: no such model, or the signed-in user may not see it.
    """
    model_id = services.get_model(model).model_id
    assert model_id is not None  # read from the registry
    return model_id


def summarize(
    services: ModelServices,
    model: str,
    version: int | None,
    window: TimeRange,
    *,
    bucket: int | None = None,
    top_errors: int = 5,
) -> TrafficSummary:
    """Traffic of ``model`` (``version``, or every version when None) in ``window``.

    Raises:
        NotFoundError: no model ``model``, or the signed-in user may not see it.
    """
    where = _where(_model_id(services, model), version, window)
    failed = case((_T.c.error_kind.is_not(None), 1), else_=0)
    with services.registry.engine.connect() as conn:
        frame = pd.DataFrame(
            conn.execute(select(_T.c.ts, _T.c.rows, _T.c.latency_ms, failed.label("failed"), _T.c.cache_hit)
                         .where(*where)).all(),
            columns=["ts", "rows", "latency_ms", "failed", "cache_hit"],
        )
        errors = conn.execute(
            select(_T.c.error_kind, _T.c.error, func.count().label("n")).where(*where, _T.c.error_kind.is_not(None))
            .group_by(_T.c.error_kind, _T.c.error).order_by(func.count().desc(), _T.c.error_kind, _T.c.error)
            .limit(top_errors)
        ).all()
        callers = pd.DataFrame(
            conn.execute(
                select(_T.c.caller, _T.c.source, func.count().label("requests"), func.sum(_T.c.rows).label("rows"),
                       func.sum(failed).label("errors"))
                .where(*where).group_by(_T.c.caller, _T.c.source).order_by(func.count().desc(), _T.c.caller, _T.c.source)
            ).all(),
            columns=["caller", "source", "requests", "rows", "errors"],
        )
    step = bucket or window.bucket_seconds
    summary = TrafficSummary(
        model=model, version=version, window=window, bucket_seconds=step,
        top_errors=[ErrorCount(kind or "", message or "", int(n)) for kind, message, n in errors],
        callers=callers.astype({"requests": "int64", "rows": "int64", "errors": "int64"}),
        series=_series(frame, window, step),
    )
    if frame.empty:
        summary.plot_bucket_seconds, summary.plot_range = step, (window.start, window.end)
        summary.plot_series = summary.series
        return summary
    _fit_plot(summary, frame)
    ok = frame.loc[frame["failed"] == 0, "latency_ms"].to_numpy(dtype=float)
    known = frame["cache_hit"].dropna().astype(bool)
    summary.requests = len(frame)
    summary.rows = int(frame["rows"].sum())
    summary.errors = int(frame["failed"].sum())
    summary.cache_hits = int(known.sum())
    summary.cache_lookups = len(known)
    if len(ok):
        summary.latency_p50_ms, summary.latency_p95_ms = (float(v) for v in np.percentile(ok, [50, 95]))
    return summary


def _fit_plot(summary: TrafficSummary, frame: pd.DataFrame) -> None:
    """Set the charts' bucket, range and series from the logged requests' first and last time."""
    times = pd.to_datetime(frame["ts"])
    first, last = times.min().to_pydatetime(), times.max().to_pydatetime()
    step = plot_bucket_seconds(max((last - first).total_seconds(), _MIN_PLOT_SPAN_S))
    freq = f"{step}s"
    start, end = pd.Timestamp(first).floor(freq), pd.Timestamp(last).floor(freq) + pd.Timedelta(seconds=step)
    low, high = start, end
    short = pd.Timedelta(seconds=_MIN_PLOT_SPAN_S) - (end - start)
    if short > pd.Timedelta(0):  # widen a short span evenly around its requests
        low, high = start - short / 2, end + short / 2
    margin = (high - low) * _PLOT_MARGIN
    summary.first, summary.last, summary.plot_bucket_seconds = first, last, step
    summary.plot_range = ((low - margin).to_pydatetime(), (high + margin).to_pydatetime())
    summary.plot_series = _series(frame, TimeRange(start.to_pydatetime(), end.to_pydatetime()), step)


def _series(frame: pd.DataFrame, window: TimeRange, step: int) -> pd.DataFrame:
    """Per-bucket requests, rows, errors and latency percentiles; buckets are aligned to multiples of ``step``."""
    freq = f"{step}s"
    times = pd.date_range(pd.Timestamp(window.start).floor(freq), window.end, freq=freq, inclusive="left")
    columns = ["requests", "rows", "errors", "p50_ms", "p95_ms"]
    if frame.empty:
        out = pd.DataFrame(0, index=times, columns=columns[:3]).assign(p50_ms=np.nan, p95_ms=np.nan)
    else:
        frame = frame.assign(time=pd.to_datetime(frame["ts"]).dt.floor(freq))
        grouped = frame.groupby("time")
        counts = pd.DataFrame({"requests": grouped.size(), "rows": grouped["rows"].sum(),
                               "errors": grouped["failed"].sum()})
        ok = frame[frame["failed"] == 0].groupby("time")["latency_ms"]
        out = counts.join(pd.DataFrame({"p50_ms": ok.quantile(0.5), "p95_ms": ok.quantile(0.95)}), how="left")
        out = out.reindex(times.union(out.index))
        out[columns[:3]] = out[columns[:3]].fillna(0).astype("int64")
    out.index.name = "time"
    return out.reset_index()[["time", *columns]]


def logged_versions(services: ModelServices, model: str) -> list[int]:
    """Versions of ``model`` that have rows in the log, newest first (a deleted version's rows go with it)."""
    model_id = _model_id(services, model)
    with services.registry.engine.connect() as conn:
        found = conn.execute(select(_T.c.version).where(_T.c.model_id == model_id).distinct()).scalars().all()
    return sorted((int(v) for v in found), reverse=True)


def prune_log(services: ModelServices, *, older_than_days: float | None = None, now: float | None = None) -> int:
    """Delete log rows older than ``older_than_days`` (default: the retention setting); return how many.

    Works with the log switched off (``PORTAL_MONITOR=off``) too, for rows written earlier.

    Raises:
        PermissionDeniedError: the signed-in user is not an admin.
    """
    from .log import PredictionLog

    if not services.can("admin"):
        raise PermissionDeniedError("pruning the prediction log needs the admin role")
    if older_than_days is not None and older_than_days < 0:
        raise InvalidInputError(f"--older-than-days must be 0 or more (not {older_than_days})")
    if services.monitor is not None:
        return services.monitor.prune(now=now, older_than_days=older_than_days)
    log = PredictionLog(services.registry.engine, retention_days=services.settings.log_retention_days)
    try:
        return log.prune(now=now, older_than_days=older_than_days)
    finally:
        log.close()
