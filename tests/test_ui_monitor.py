"""The Monitor page (AppTest): the tiles and tables show exactly what the prediction log holds."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from portal import Portal
from portal.errors import InvalidInputError
from portal.monitor import stats as mon
from portal.ui.monitor_panels import tile_values

from tiny import add_model, softmax_classifier
from ui_fixtures import assert_clean, elements_of_type, empty_home, new_app, texts  # noqa: F401 (fixture)

PAGE = "app_pages/monitor.py"
FEATURES = ["age", "income", "tenure", "score"]
LATENCIES_MS = [2.0, 3.0, 5.0, 8.0, 13.0, 21.0, 34.0, 55.0]
ROWS = [40, 40, 40, 40, 1, 2, 3, 4]
HIGHLIGHT = "#fee2e2"  # the background of a significantly drifting row


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture(autouse=True)
def _no_warm_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORTAL_WARM_UP", "0")


def _seed(home: Path) -> None:
    """8 successes and 3 failures in the last 20 minutes; the samples move ``age`` by 2 standard deviations."""
    rng = np.random.default_rng(0)
    reference = pd.DataFrame(rng.normal(0, 1, (2000, 4)), columns=FEATURES)
    portal = Portal.open(home)
    try:
        add_model(portal, softmax_classifier(), "churn", reference=reference, feature_names=FEATURES)
        log = portal.monitor
        log.sample_rows = 40
        clock = log.clock = Clock(time.time() - 1200)
        for i, (ms, rows) in enumerate(zip(LATENCIES_MS, ROWS, strict=True)):
            clock.t += 60
            x = rng.normal(0, 1, (rows, 4)).astype(np.float32)
            x[:, 0] += 2.0
            log.record("churn", 1, caller="ann", source="ui", rows=rows, latency_s=ms / 1000, feeds={"x": x},
                       feature_names=FEATURES, cache_hit=i != 0)
        for message in ("missing column 'age'", "missing column 'age'", "bad value in 'score'"):
            clock.t += 60
            log.record("churn", 1, caller="bob", source="api", rows=1, latency_s=0.0005,
                       error=InvalidInputError(message))
        log.flush()
    finally:
        portal.close()


def _metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _frame(at, first_column: str) -> pd.DataFrame:
    for frame in at.dataframe:
        if frame.value.columns[0] == first_column:
            return frame.value
    raise AssertionError(f"no table starting with {first_column!r}")


def test_tiles_and_tables_show_the_logged_numbers(empty_home):
    _seed(empty_home)
    at = new_app(PAGE)
    assert_clean(at)
    p50, p95 = np.percentile(LATENCIES_MS, [50, 95])  # 10.5 and 46.25 ms, successes only
    assert _metrics(at) == {
        "Requests": "11", "Rows": f"{sum(ROWS) + 3:,}", "Latency p50": f"{p50:.1f} ms", "Latency p95": f"{p95:.1f} ms",
        "Error rate": f"{3 / 11:.1%}", "Cache hit ratio": f"{7 / 8:.1%}",
    }
    errors = _frame(at, "Error")
    assert errors.values.tolist() == [["InvalidInputError", "missing column 'age'", 2],
                                      ["InvalidInputError", "bad value in 'score'", 1]]
    callers = _frame(at, "Caller")
    assert callers.values.tolist() == [["ann", "ui", 8, sum(ROWS), 0], ["bob", "api", 3, 3, 3]]
    assert len(elements_of_type(at, "plotly_chart")) == 6  # requests, latency, errors ×2, PSI, distributions


def test_tiles_sit_three_to_a_row_so_their_values_are_not_cut(empty_home):
    _seed(empty_home)
    at = new_app(PAGE)
    tiles = [(c.weight, [m.label for m in c.metric]) for c in at.columns if len(c.metric) == 1]
    assert [labels[0] for _, labels in tiles] == ["Requests", "Rows", "Error rate", "Latency p50", "Latency p95",
                                                  "Cache hit ratio"]
    assert all(weight == pytest.approx(1 / 3) for weight, _ in tiles)  # a third of the page each, not a sixth
    assert all(len(m.value) <= 9 for m in at.metric)
    assert any("are not traffic and are not counted" in c for c in texts(at.caption))


def _summary(**values: object) -> mon.TrafficSummary:
    window = mon.TimeRange.last(3600, now=1_800_000_000.0)
    return mon.TrafficSummary(model="m", version=None, window=window, bucket_seconds=60, **values)


@pytest.mark.parametrize(("p50", "shown"), [(0.614, "0.61 ms"), (20.46, "20.5 ms"), (345.2, "345 ms"),
                                            (999.7, "1.00 s"), (1234.0, "1.23 s"), (61_500.0, "61.5 s"),
                                            (7_200_000.0, "7,200 s")])
def test_latency_tiles_are_short(p50: float, shown: str):
    assert tile_values(_summary(requests=1, latency_p50_ms=p50))["Latency p50"] == shown


def test_large_counts_are_shortened_with_the_exact_number_in_the_help():
    values = tile_values(_summary(requests=999_999, rows=12_345_678, errors=1))
    assert (values["Requests"], values["Rows"], values["Error rate"]) == ("999,999", "12.3M", "0.0%")
    assert tile_values(_summary(requests=2_500_000_000, rows=1))["Requests"] == "2.5B"


def test_the_drifting_feature_is_highlighted(empty_home):
    _seed(empty_home)
    at = new_app(PAGE)
    drift = _frame(at, "Feature")
    assert drift["Feature"].iloc[0] == "age" and drift["Level"].iloc[0] == "significant"
    assert drift["Level"].iloc[1:].tolist() == ["stable"] * 3
    assert (drift["Recent rows"] == sum(ROWS)).all() and (drift["Reference rows"] == 2000).all()
    table = next(f for f in at.dataframe if f.value.columns[0] == "Feature")
    styles = table.proto.arrow_data.styler.styles
    assert "row0_col0" in styles and HIGHLIGHT in styles
    warnings = " ".join(texts(at.warning))
    assert "Drifting features: **age**" in warnings and "income" not in warnings
    assert at.selectbox(key="monitor.feature.churn:1").value == "age"


def test_no_traffic_says_so(empty_home):
    portal = Portal.open(empty_home)
    try:
        add_model(portal, softmax_classifier(), "quiet", feature_names=FEATURES)
    finally:
        portal.close()
    at = new_app(PAGE)
    assert_clean(at)
    info = " ".join(texts(at.info))
    assert "No predictions of quiet:1 in this time range yet" in info
    assert "quiet:1 has no reference data" in info
    assert not at.metric and not elements_of_type(at, "plotly_chart")


def test_no_models_says_so(empty_home):
    at = new_app(PAGE)
    assert_clean(at)
    assert "No models yet" in " ".join(texts(at.info))
