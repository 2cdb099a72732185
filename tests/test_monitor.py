"""The prediction log and its statistics (portal.monitor.stats, portal.monitor.drift, portal.monitor.figures).

Time is a fake clock (``portal.monitor.stats.clock``): every row lands at a known
instant, so counts, percentiles and time buckets are exact.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select

from portal import Portal
from portal.monitor import stats as mon
from portal.monitor import figures as monitor_figures
from portal.storage.db import PredictionRow
from portal.errors import BusyError, InvalidInputError
from portal.monitor.drift import EPSILON, feature_drift, input_drift, level, psi

from api_fixtures import make_users, serve
from tiny import add_model, softmax_classifier

T0 = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC, a whole hour
REPO = Path(__file__).resolve().parents[1]


class Clock:
    """A settable epoch clock."""

    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _rows(portal: Portal, **where: object) -> list[dict]:
    table = PredictionRow.__table__
    with portal.registry.engine.connect() as conn:
        query = select(table).where(*(table.c[k] == v for k, v in where.items())).order_by(table.c.id)
        return [dict(r._mapping) for r in conn.execute(query)]


def _count(portal: Portal) -> int:
    with portal.registry.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(PredictionRow.__table__)).scalar_one())


# -- a known sequence ------------------------------------------------------------------
LATENCIES_MS = [float(ms) for ms in range(1, 21)]  # the 20 successful requests
CACHE = [True] * 15 + [False] * 4 + [None]
SOURCES = ["ui", "cli", "api", "library"]


def _log_known_sequence(portal: Portal, clock: Clock) -> None:
    """20 successes, 3 failures in [T0, T0 + 12 min), plus rows that must not count."""
    log = portal.monitor
    for i, (ms, hit) in enumerate(zip(LATENCIES_MS, CACHE, strict=True)):
        clock.t = T0 + 30 * i  # two requests a minute
        log.record("m", 2, caller=f"user{i % 2}", source=SOURCES[i % 4], rows=i + 1, latency_s=ms / 1000, cache_hit=hit)
    for i, error in enumerate([InvalidInputError("missing column 'a'"), BusyError("queue full"),
                               InvalidInputError("missing column 'a'")]):
        clock.t = T0 + 600 + 60 * i
        log.record("m", 2, caller="user0", source="api", rows=5, latency_s=0.5, error=error)
    clock.t = T0 - 7200  # before the window
    log.record("m", 2, caller="user0", source="ui", rows=100, latency_s=1.0)
    clock.t = T0 + 60
    log.record("m", 1, caller="user0", source="ui", rows=7, latency_s=0.002, cache_hit=False)  # another version
    log.record("other", 2, caller="user0", source="ui", rows=9, latency_s=0.002)  # another model
    assert log.flush() == 26


@pytest.fixture(params=["sqlite", "postgresql"])
def logged(request: pytest.FixtureRequest, portal_home: Path):
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    portal = Portal.open(portal_home, **({"db_url": url} if url else {}))
    for name in ("m", "m", "other", "other"):  # versions 1 and 2 of each
        add_model(portal, softmax_classifier(), name)
    clock = Clock()
    portal.monitor.clock = clock
    _log_known_sequence(portal, clock)
    yield portal
    portal.close()


WINDOW = mon.TimeRange(mon.utc(T0 - 1800), mon.utc(T0 + 1800))


def test_summary_matches_the_logged_sequence(logged):
    summary = mon.summarize(logged, "m", 2, WINDOW)
    assert (summary.requests, summary.rows, summary.errors) == (23, sum(range(1, 21)) + 15, 3)
    assert summary.error_rate == 3 / 23
    ms = [(x / 1000) * 1000 for x in LATENCIES_MS]  # as stored: seconds → ms
    assert summary.latency_p50_ms == pytest.approx(np.percentile(ms, 50), abs=1e-9) == pytest.approx(10.5)
    assert summary.latency_p95_ms == pytest.approx(np.percentile(ms, 95), abs=1e-9) == pytest.approx(19.05)
    assert (summary.cache_hits, summary.cache_lookups, summary.cache_hit_ratio) == (15, 19, 15 / 19)
    assert [(e.kind, e.message, e.count) for e in summary.top_errors] == [
        ("InvalidInputError", "missing column 'a'", 2), ("BusyError", "queue full", 1)]


def test_summary_breaks_traffic_down_by_caller_and_source(logged):
    callers = mon.summarize(logged, "m", 2, WINDOW).callers
    got = {(r["caller"], r["source"]): (r["requests"], r["rows"], r["errors"]) for r in callers.to_dict("records")}
    assert got == {
        ("user0", "ui"): (5, 1 + 5 + 9 + 13 + 17, 0), ("user0", "api"): (5 + 3, 3 + 7 + 11 + 15 + 19 + 15, 3),
        ("user1", "cli"): (5, 2 + 6 + 10 + 14 + 18, 0), ("user1", "library"): (5, 4 + 8 + 12 + 16 + 20, 0),
    }


def test_series_buckets_hold_each_request_once(logged):
    summary = mon.summarize(logged, "m", 2, WINDOW)
    series = summary.series.set_index("time")
    assert summary.bucket_seconds == 60 and len(series) == 60
    assert int(series["requests"].sum()) == 23 and int(series["rows"].sum()) == summary.rows
    first = series.loc[pd.Timestamp(mon.utc(T0))]
    assert (first["requests"], first["rows"], first["errors"]) == (2, 1 + 2, 0)
    assert first["p50_ms"] == pytest.approx(1.5) and first["p95_ms"] == pytest.approx(1.95)
    failed = series.loc[pd.Timestamp(mon.utc(T0 + 600))]
    assert (failed["requests"], failed["errors"]) == (1, 1) and math.isnan(failed["p50_ms"])
    assert series.loc[pd.Timestamp(mon.utc(T0 + 1200)), "requests"] == 0


def test_all_versions_and_other_windows(logged):
    every = mon.summarize(logged, "m", None, WINDOW)
    assert (every.requests, every.rows, every.cache_lookups) == (24, 225 + 7, 20)
    earlier = mon.summarize(logged, "m", 2, mon.TimeRange(mon.utc(T0 - 86_400), mon.utc(T0)))
    assert (earlier.requests, earlier.rows, earlier.latency_p50_ms) == (1, 100, 1000.0)
    assert mon.logged_versions(logged, "m") == [2, 1]


def test_figures_show_the_summary(logged):
    summary = mon.summarize(logged, "m", 2, WINDOW)
    requests = monitor_figures.requests_over_time(summary)
    assert sum(requests.data[0].y) == 23 and sum(requests.data[1].y) == summary.rows
    assert requests.layout.xaxis.rangeslider.visible and requests.layout.xaxis.rangeselector.buttons
    latency = monitor_figures.latency_over_time(summary)
    # the charts draw plot_series, buckets fitted to the requests (issue 14 item 8), not the window's series
    np.testing.assert_array_equal(latency.data[1].y, summary.plot_series["p95_ms"].to_numpy())
    errors = monitor_figures.error_bars(summary)
    assert list(errors.data[0].x) == [1, 2]  # most frequent on top
    assert sum(monitor_figures.errors_over_time(summary).data[0].y) == 3


def test_empty_window_gives_zero_traffic_and_no_percentiles(portal):
    add_model(portal, softmax_classifier(), "m")
    summary = mon.summarize(portal, "m", None, WINDOW)
    assert summary.empty and summary.error_rate is None and summary.latency_p50_ms is None
    assert summary.cache_hit_ratio is None and len(summary.series) == 60 and summary.series["requests"].sum() == 0
    assert "no predictions" in summary.describe()


def test_bucket_size_follows_the_window():
    assert [mon.bucket_seconds(s) for s in (3600, 86_400, 7 * 86_400, 30 * 86_400)] == [60, 900, 7200, 21_600]
    window = mon.TimeRange.parse("7d", now=T0)
    assert window.end == mon.utc(T0) and window.seconds == 7 * 86_400
    assert mon.TimeRange.parse("2027-01-15T07:00", now=T0).seconds == 3600
    with pytest.raises(InvalidInputError, match="invalid --since"):
        mon.TimeRange.parse("yesterday", now=T0)


def _axis(figure) -> tuple[pd.Timestamp, pd.Timestamp]:
    start, end = figure.layout.xaxis.range
    return pd.Timestamp(start), pd.Timestamp(end)


def test_charts_span_the_logged_requests_not_the_window(logged):
    day = mon.TimeRange(mon.utc(T0 - 1800), mon.utc(T0 + 86_400 - 1800))
    summary = mon.summarize(logged, "m", 2, day)
    assert (summary.first, summary.last) == (mon.utc(T0), mon.utc(T0 + 720))  # 20 successes, then 3 failures
    assert summary.bucket_seconds == 900 and summary.plot_bucket_seconds == 15  # 720 s in 15 s bars, not 15 min
    series = summary.plot_series
    assert series["time"].iloc[0] == pd.Timestamp(mon.utc(T0)) and series["time"].iloc[-1] == pd.Timestamp(mon.utc(T0 + 720))
    assert len(series) == 49 and int(series["requests"].sum()) == 23 and int(series["rows"].sum()) == summary.rows
    margin = pd.Timedelta(seconds=0.05 * 735)  # 5% of the buckets' span, T0 to T0 + 735 s
    expected = (pd.Timestamp(mon.utc(T0)) - margin, pd.Timestamp(mon.utc(T0 + 735)) + margin)
    requests = monitor_figures.requests_over_time(summary)
    for figure in (requests, monitor_figures.latency_over_time(summary), monitor_figures.errors_over_time(summary)):
        assert _axis(figure) == expected
        assert [b.label for b in figure.layout.xaxis.rangeselector.buttons] == ["all"]  # no "1h" on 12 minutes
    bars = requests.data[0]
    assert bars.width == 15_000 and pd.Timestamp(bars.x[0]) == pd.Timestamp(mon.utc(T0 + 7.5))  # a bucket wide, centred
    assert requests.layout.title.text == "Requests and rows per 15 s"


def test_a_lone_request_gets_a_minute_around_it(portal):
    add_model(portal, softmax_classifier(), "clf")
    portal.monitor.clock = Clock(T0 + 30.25)
    portal.predict("clf", {"x": np.ones((3, 4), np.float32)})
    portal.monitor.flush()
    summary = mon.summarize(portal, "clf", None, mon.TimeRange.last(86_400, now=T0 + 3600))
    assert summary.plot_bucket_seconds == 1 and summary.first == summary.last == mon.utc(T0 + 30.25)
    start, end = _axis(monitor_figures.requests_over_time(summary))
    # the 1 s bucket [T0+30, T0+31) widened to 60 s around it, then 5% (3 s) each side
    assert (start, end) == (pd.Timestamp(mon.utc(T0 + 0.5 - 3)), pd.Timestamp(mon.utc(T0 + 60.5 + 3)))
    assert summary.plot_series["requests"].tolist() == [1] and summary.plot_series["rows"].tolist() == [3]


def test_chart_buckets_are_round_steps_of_at_most_60_bars():
    spans = (60, 100, 600, 3600, 86_400, 30 * 86_400)
    assert [mon.plot_bucket_seconds(s) for s in spans] == [1, 2, 10, 60, 1800, 43_200]
    assert all(s / mon.plot_bucket_seconds(s) <= 60 for s in (*spans, 400 * 86_400))


# -- real predictions ------------------------------------------------------------------------
def test_predictions_log_latency_rows_errors_and_cache_misses(portal):
    add_model(portal, softmax_classifier(), "clf")
    clock = Clock()
    portal.monitor.clock = clock
    latencies, hits = [], []
    for i, batch in enumerate([3, 1, 7, 2]):
        clock.t = T0 + i
        if i == 2:
            portal.cache.clear()  # the next request has to load the model again
        latencies.append(portal.predict("clf", {"x": np.ones((batch, 4), np.float32)}).latency_s * 1000)
    clock.t = T0 + 10
    with pytest.raises(InvalidInputError):
        portal.predict("clf", {"x": np.ones((2, 5), np.float32)})
    portal.monitor.flush()
    summary = mon.summarize(portal, "clf", 1, mon.TimeRange(mon.utc(T0 - 60), mon.utc(T0 + 60)))
    assert (summary.requests, summary.rows, summary.errors) == (5, 13, 1)
    assert summary.latency_p50_ms == pytest.approx(np.percentile(latencies, 50), rel=1e-9)
    assert summary.latency_p95_ms == pytest.approx(np.percentile(latencies, 95), rel=1e-9)
    assert [r["cache_hit"] for r in _rows(portal)] == [False, True, False, True, None]
    assert summary.cache_hit_ratio == 2 / 4
    assert summary.top_errors[0].kind == "InvalidInputError" and "[N, 4]" in summary.top_errors[0].message
    assert [r["ts"] for r in _rows(portal)][:2] == [mon.utc(T0), mon.utc(T0 + 1)]


def test_sample_of_a_large_request_is_bounded(portal):
    add_model(portal, softmax_classifier(), "clf", feature_names=["a", "b", "c", "d"])
    x = np.arange(40_000, dtype=np.float32).reshape(10_000, 4)
    portal.predict("clf", {"x": x})
    portal.monitor.flush()
    (row,) = _rows(portal)
    assert row["rows"] == 10_000
    assert row["sample"]["columns"] == ["a", "b", "c", "d"]
    assert row["sample"]["rows"] == x[: portal.monitor.sample_rows].tolist()
    assert portal.monitor.sample_rows == 16


@pytest.mark.parametrize("how", ["environment", "override"])
def test_monitor_off_logs_nothing(portal_home, monkeypatch, how):
    if how == "environment":
        monkeypatch.setenv("PORTAL_MONITOR", "off")
    portal = Portal.open(portal_home, **({"monitor": False} if how == "override" else {}))
    try:
        assert portal.monitor is None
        add_model(portal, softmax_classifier(), "clf")
        portal.predict("clf", {"x": np.ones((3, 4), np.float32)})
    finally:
        portal.close()  # would write anything queued
    assert _count(Portal.open(portal_home)) == 0


# -- retention ---------------------------------------------------------------------------------
def test_prune_deletes_only_rows_past_the_retention(portal):
    add_model(portal, softmax_classifier(), "m")
    clock = Clock()
    portal.monitor.clock = clock
    for days in (40, 10, 6.9, 1, 0):
        clock.t = T0 - days * 86_400
        portal.monitor.record("m", 1, caller="u", source="ui", rows=int(days * 10), latency_s=0.001)
    portal.monitor.flush()
    assert mon.prune_log(portal, older_than_days=7, now=T0) == 2
    assert [r["rows"] for r in _rows(portal)] == [69, 10, 0]
    assert mon.prune_log(portal, now=T0) == 0  # the default retention (30 days) keeps them


def test_prune_needs_an_admin(portal):
    from portal.accounts.auth import Auth
    from portal.errors import PermissionDeniedError

    user = Auth(portal.registry).add_user("ann", "analyst", actor="test")
    with pytest.raises(PermissionDeniedError, match="admin"):
        mon.prune_log(portal.as_user(user), older_than_days=1)


# -- PSI ------------------------------------------------------------------------------------------
def test_psi_of_a_numeric_feature_matches_the_hand_computed_value():
    reference = pd.Series(np.arange(1000.0))  # deciles: 100 values in each of 10 bins
    recent = pd.Series([50.0] * 50 + [950.0] * 50)  # half in the first bin, half in the last
    drift = feature_drift("x", reference, recent)
    expected = 2 * (0.5 - 0.1) * math.log(0.5 / 0.1) + 8 * (EPSILON - 0.1) * math.log(EPSILON / 0.1)
    assert drift.psi == pytest.approx(expected, rel=1e-12)
    assert drift.level == "significant" and drift.kind == "numeric"
    assert drift.bins[0] == "< 99.9" and drift.bins[-1] == "≥ 899.1" and len(drift.bins) == 10
    assert drift.reference == pytest.approx([0.1] * 10) and drift.recent == [0.5] + [0.0] * 8 + [0.5]


def test_psi_of_values_beyond_the_reference_range_lands_in_the_open_outer_bins():
    drift = feature_drift("x", pd.Series(np.arange(1000.0)), pd.Series([-1e9] * 10 + [1e9] * 10))
    assert drift.recent == [0.5] + [0.0] * 8 + [0.5]


def test_psi_of_a_categorical_feature_puts_unseen_values_in_other():
    reference = pd.Series(["a"] * 50 + ["b"] * 50)
    recent = pd.Series(["a"] * 80 + ["c"] * 20)
    drift = feature_drift("plan", reference, recent)
    expected = ((0.8 - 0.5) * math.log(0.8 / 0.5) + (EPSILON - 0.5) * math.log(EPSILON / 0.5)
                + (0.2 - EPSILON) * math.log(0.2 / EPSILON))
    assert drift.bins == ["a", "b", "other"] and drift.kind == "categorical"
    assert drift.psi == pytest.approx(expected, rel=1e-12)


def test_identical_distributions_are_stable_and_levels_follow_the_convention():
    values = pd.Series(np.arange(1000.0))
    assert feature_drift("x", values, values).psi == pytest.approx(0.0, abs=1e-12)
    assert [level(v) for v in (0.0, 0.099, 0.1, 0.25, 0.2501)] == [
        "stable", "stable", "moderate", "moderate", "significant"]
    assert psi(np.array([0.5, 0.5]), np.array([0.5, 0.5])) == 0.0


def _reference(rng: np.random.Generator, n: int = 2000) -> pd.DataFrame:
    return pd.DataFrame({"a": rng.normal(0, 1, n), "b": rng.normal(0, 1, n), "c": rng.normal(0, 1, n),
                         "d": rng.normal(0, 1, n)})


def test_input_drift_flags_the_shifted_feature_only(portal):
    rng = np.random.default_rng(0)
    add_model(portal, softmax_classifier(), "clf", reference=_reference(rng), feature_names=list("abcd"))
    clock = Clock()
    portal.monitor.clock = clock
    for i in range(10):  # 10 requests of 40 rows, each sampled (16 rows): 160 rows
        clock.t = T0 + i
        x = rng.normal(0, 1, (40, 4)).astype(np.float32)
        x[:, 0] += 2.0  # feature a moves two standard deviations
        portal.predict("clf", {"x": x})
    portal.monitor.flush()
    report = input_drift(portal, "clf", mon.TimeRange(mon.utc(T0 - 60), mon.utc(T0 + 60)))
    assert report.status == "ok" and report.recent_rows == 160 and report.reference_rows == 2000
    assert report.features[0].feature == "a" and report.features[0].level == "significant"
    assert [f.feature for f in report.drifting] == ["a"]
    assert all(f.psi < 0.25 for f in report.features[1:])
    bars = monitor_figures.drift_bars(report)
    assert list(bars.data[0].y)[-1] == "a" and bars.data[0].marker.color[-1] == monitor_figures.DANGER
    dist = monitor_figures.feature_distributions(report.feature("a"))
    assert list(dist.data[1].y) == report.feature("a").recent


def test_input_drift_says_why_there_is_no_number(portal):
    rng = np.random.default_rng(1)
    add_model(portal, softmax_classifier(), "plain", feature_names=list("abcd"))
    add_model(portal, softmax_classifier(), "clf", reference=_reference(rng), feature_names=list("abcd"))
    portal.predict("clf", {"x": np.ones((5, 4), np.float32)})
    portal.monitor.flush()
    window = mon.TimeRange.last(3600, now=mon.now(portal) + 1)
    none = input_drift(portal, "plain", window)
    assert none.status == "no_reference" and "no reference data" in none.message and not none.features
    few = input_drift(portal, "clf", window)
    assert few.status == "not_enough" and few.recent_rows == 5 and "Not enough recent inputs" in few.message


# -- the front doors ------------------------------------------------------------------------------
def _cli(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    full = dict(os.environ, PORTAL_HOME=str(home), **env)
    return subprocess.run([sys.executable, "-m", "portal.cli", *args], capture_output=True, text=True, env=full,
                          timeout=120, cwd=REPO)


def test_cli_predictions_are_logged_with_source_cli(portal, portal_home, tmp_path):
    model_id = add_model(portal, softmax_classifier(), "clf", feature_names=list("abcd")).model_id
    data = tmp_path / "in.csv"
    pd.DataFrame(np.ones((4, 4)), columns=list("abcd")).to_csv(data, index=False)
    done = _cli(portal_home, "predict", "clf", "--input", str(data))
    assert done.returncode == 0, done.stderr
    (row,) = _rows(portal)  # the CLI process wrote it when it exited
    assert (row["model_id"], row["version"], row["rows"], row["error"]) == (model_id, 1, 4, None)
    assert row["source"] == "cli"


def test_cli_monitor_summary_and_prune(portal, portal_home):
    import time

    add_model(portal, softmax_classifier(), "m")
    clock = Clock(time.time())  # the CLI's window ends at the real now
    portal.monitor.clock = clock
    now = clock.t
    for age, error in ((600, None), (300, None), (120, InvalidInputError("bad")), (40 * 86_400, None)):
        clock.t = now - age
        portal.monitor.record("m", 1, caller="u", source="api", rows=3, latency_s=0.004, error=error, cache_hit=True)
    portal.monitor.flush()
    done = _cli(portal_home, "monitor", "summary", "m", "--since", "1h", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert (data["requests"], data["rows"], data["errors"], data["latency_p50_ms"]) == (3, 9, 1, pytest.approx(4.0))
    assert data["top_errors"] == [{"kind": "InvalidInputError", "message": "bad", "count": 1}]
    assert data["drift"]["status"] == "no_reference"
    text = _cli(portal_home, "monitor", "summary", "m:1", "--since", "1h").stdout
    assert "3 requests, 9 rows" in text and "1 (33.3%)" in text
    pruned = _cli(portal_home, "monitor", "prune", "--older-than-days", "7", "--json")
    assert json.loads(pruned.stdout) == {"deleted": 1, "older_than_days": 7.0}
    assert _count(portal) == 3
    bad = _cli(portal_home, "monitor", "summary", "m", "--since", "someday")
    assert bad.returncode == 1 and "invalid --since" in bad.stderr


def test_api_predictions_are_logged_with_the_token_user(portal, portal_home):
    tokens = make_users(portal)
    model_id = add_model(portal, softmax_classifier(), "clf", feature_names=list("abcd")).model_id
    records = [dict(zip("abcd", [0.1, 0.2, 0.3, 0.4], strict=True))] * 3
    server_run = serve(portal_home)
    server = next(server_run)
    try:
        with httpx.Client(base_url=server.url, headers=tokens.headers("analyst"), timeout=30) as client:
            assert client.post("/api/models/clf/predict", json=records).status_code == 200
    finally:
        server_run.close()  # stops the server; its log writes what is queued on the way out
    (row,) = _rows(portal, model_id=model_id)
    assert (row["source"], row["caller"], row["rows"], row["error"]) == ("api", "analyst", 3, None)
