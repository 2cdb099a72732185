"""Issue 14 item 7: the speed call does not flip between identical runs, and the charts do not exaggerate.

Every sample here is a deterministic fixture (seeded generators), never a timer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np
import pytest

from portal.compress.advice import advise
from portal.compress.figures import agreement_range, pareto_chart
from portal.compress.measure import VersionMeasurement, _paired
from portal.compress.speed import TOO_CLOSE, estimate, overall_call, speed_call, time_until_settled

Sampler = Callable[[int, int], list[list[float]]]


def _noisy(speedup: float, seed: int, *, noise: float = 0.1, spikes: float = 0.05) -> Sampler:
    """Parent and variant times of a shared machine: common drift, lognormal jitter, 5x spikes."""
    rng = np.random.default_rng(seed)

    def sample(rounds: int, done: int) -> list[list[float]]:
        drift = 1 + 0.5 * np.sin(np.arange(done, done + rounds) / 37)
        out = []
        for s in (1.0, speedup):
            t = 1e-3 / s * drift * rng.lognormal(0, noise, rounds)
            out.append(list(np.where(rng.random(rounds) < spikes, t * 5, t)))
        return out

    return sample


def _call(sample: Sampler, *, target: int = 200, cap: int = 2000) -> tuple[str, int]:
    times = time_until_settled(sample, target=target, cap=cap)
    found = estimate(times[0], times[1])
    return speed_call(found.low, found.high), len(times[0])


def test_the_interval_is_the_order_statistics_around_the_median() -> None:
    parent = [1.0] * 50
    variant = [1.0 / r for r in np.linspace(0.9, 1.4, 50)]
    found = estimate(parent, variant)
    ratios = np.sort(np.linspace(0.9, 1.4, 50))
    assert found.rounds == 50 and found.speedup == pytest.approx(np.median(ratios))
    assert (found.low, found.high) == (pytest.approx(ratios[15]), pytest.approx(ratios[34]))  # 99%, n = 50


@pytest.mark.parametrize(("low", "high", "call"), [
    (1.06, 1.20, "faster"), (1.05, 1.06, "faster"), (0.98, 1.04, "no gain"), (0.90, 1.049, "no gain"),
    (0.80, 0.97, "slower"), (1.01, 1.09, TOO_CLOSE), (0.95, 1.30, TOO_CLOSE),
])
def test_a_call_needs_the_whole_interval_on_one_side_of_the_threshold(low: float, high: float, call: str) -> None:
    assert speed_call(low, high) == call


def test_over_batch_sizes_a_doubt_anywhere_is_too_close_to_call() -> None:
    assert overall_call({"1": (1.1, 1.2), "32": (1.3, 1.5)}) == "faster"
    assert overall_call({"1": (0.99, 1.02), "32": (1.3, 1.5)}) == "faster"  # no gain at 1, but not slower
    assert overall_call({"1": (0.95, 1.02), "32": (1.3, 1.5)}) == TOO_CLOSE  # maybe 5% slower at batch 1
    assert overall_call({"1": (0.80, 0.90), "32": (1.3, 1.5)}) == "slower"
    assert overall_call({"1": (0.99, 1.01), "32": (0.98, 1.02)}) == "no gain"
    assert overall_call({"1": (1.01, 1.10), "32": (1.3, 1.5)}) == TOO_CLOSE


@pytest.mark.parametrize(("speedup", "call"), [(1.12, "faster"), (1.0, "no gain"), (0.9, "slower")])
def test_identical_runs_reach_the_same_call(speedup: float, call: str) -> None:
    calls = Counter(_call(_noisy(speedup, seed))[0] for seed in range(30))
    assert calls == {call: 30}


def test_a_gain_at_the_threshold_is_too_close_to_call_never_the_opposite_call() -> None:
    calls = Counter(_call(_noisy(1.05, seed))[0] for seed in range(30))
    assert "no gain" not in calls and calls[TOO_CLOSE] >= 27


def test_a_clear_call_stops_at_the_target_and_a_doubt_measures_up_to_the_cap() -> None:
    assert _call(_noisy(1.5, 0), target=200) == ("faster", 200)
    assert _call(_noisy(1.05, 1), target=200, cap=1000) == (TOO_CLOSE, 1000)
    looks: list[int] = []

    def out_of_time() -> bool:
        looks.append(1)
        return len(looks) >= 3

    times = time_until_settled(_noisy(1.05, 1), target=100, cap=10_000, out_of_time=out_of_time)
    assert len(times[0]) == 150  # three looks of 50 rounds, then out of time


def test_the_old_point_estimate_flipped_where_the_interval_does_not() -> None:
    """A variant as fast as its parent at batch 1 read 0.99x or 1.01x by luck: "no gain" once, "serve it" next."""
    points, calls = set(), set()
    for seed in range(30):
        times = time_until_settled(_noisy(1.0, seed), target=200, cap=2000)
        found = estimate(times[0], times[1])
        points.add(found.speedup >= 1.0)
        calls.add(overall_call({"1": (found.low, found.high), "32": (1.3, 1.5)}))
    assert points == {True, False} and calls == {"faster"}


# -- advice and card text -------------------------------------------------------------------------
def _measurement(ref: str, method: str | None, latency: dict, size: int = 1000) -> VersionMeasurement:
    agreement = {} if method is None else {"kind": "top-1", "value": 1.0, "rows": 40, "flipped_count": 0}
    return VersionMeasurement(ref=ref, method=method, parent=None if method is None else "m:1", size_bytes=size,
                              gzip_bytes=size, peak_rss_bytes=1, model_memory_bytes=1, load_seconds=0.01,
                              latency=latency, throughput_rows_s=1.0, agreement=agreement)


def _timed(speedup: float, seed: int = 0, rounds: int = 400) -> dict:
    parent, variant = _noisy(speedup, seed)(rounds, 0)
    stats = {"p50_ms": float(np.median(variant)) * 1e3, "p95_ms": 1.0, "mean_ms": 1.0, "rounds": rounds}
    return {"1": stats | _paired(parent, variant)}


PARENT = _measurement("m:1", None, {"1": {"p50_ms": 1.0, "p95_ms": 1.0, "mean_ms": 1.0, "rounds": 400}})


def test_the_advice_says_too_close_to_call_with_the_interval_as_its_reason() -> None:
    advice = advise([PARENT, _measurement("m:2", "int8-dynamic", _timed(1.05, rounds=60))])
    verdict = advice.verdict("m:2")
    assert advice.best is None and verdict.status == TOO_CLOSE and not verdict.promotable
    assert advice.summary.startswith("Too close to call: m:2 (int8-dynamic) measured within the noise of m:1")
    lo, hi = verdict.intervals["1"]
    assert lo < 1.05 <= hi
    assert advice.why == [f"m:2 (int8-dynamic) · too close to call: {verdict.headline}"]
    assert f"could be {lo:.2f}× to {hi:.2f}× after 60 paired rounds" in verdict.headline


def test_a_clear_gain_is_recommended_with_its_interval() -> None:
    advice = advise([PARENT, _measurement("m:2", "int8-dynamic", _timed(1.3))])
    assert advice.best == "m:2" and advice.verdict("m:2").promotable
    assert advice.why == ["Faster beyond the measurement noise: 1.29× faster at batch 1 (99% interval 1.26–1.32×); "
                          "agreement 100.0%, within the 1.0% loss you allow."]


def test_no_gain_is_not_promotable() -> None:
    advice = advise([PARENT, _measurement("m:2", "optimized", _timed(1.0))])
    assert advice.verdict("m:2").status == "no gain" and not advice.verdict("m:2").promotable


# -- figures ------------------------------------------------------------------------------------------
def test_latency_axis_starts_at_zero_so_one_percent_looks_like_one_percent() -> None:
    base = {"p95_ms": 1.0, "mean_ms": 1.0, "rounds": 10}
    parent = _measurement("m:1", None, {"1": {"p50_ms": 1.00, **base}})
    variant = _measurement("m:2", "optimized", {"1": {"p50_ms": 0.99, **base}})
    fig = pareto_chart([parent, variant], batch="1", tolerance=0.01)
    assert fig.layout.xaxis.type != "log"
    assert tuple(fig.layout.xaxis.range) == pytest.approx((0.0, 1.15))
    assert tuple(fig.layout.yaxis.range) == pytest.approx((0.97, 1.0))


def test_agreement_axis_stays_within_zero_and_one_hundred_percent() -> None:
    assert agreement_range([1.0, 1.0]) == (0.98, 1.0)
    assert agreement_range([0.9, 1.0], tolerance=0.05) == (0.88, 1.0)
    assert agreement_range([0.01, 1.0]) == (0.0, 1.0)
