"""Is a variant faster than its parent? A call from paired timing rounds that does not flip between runs.

    estimate(parent, variant)        median paired speedup with a distribution-free confidence interval
    speed_call(low, high)            "faster" | "no gain" | "slower" | "too close to call" for one interval
    overall_call(intervals)          the same over several batch sizes
    time_until_settled(sample, ...)  measure in blocks until every call is settled twice in a row, or a cap

A call is made against thresholds, never from a point estimate alone: "faster"
needs the whole interval at or above ``1 + MIN_GAIN``, "no gain" needs it below
``1 + MIN_GAIN``, "slower" needs it at or below ``1 - SAME``.  While the interval
straddles a threshold more rounds are measured; if it still does at the cap, the
call is "too close to call".  Two identical runs can then differ only between a
firm call and "too close to call", not between "faster" and "no gain" (each firm
call is wrong with probability under ``1 - CONFIDENCE``).

Pure numpy and the standard library: the timing child imports it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "CONFIDENCE",
    "MIN_GAIN",
    "SAME",
    "SpeedEstimate",
    "TOO_CLOSE",
    "estimate",
    "interval_of",
    "overall_call",
    "settled",
    "speed_call",
    "time_until_settled",
]

MIN_GAIN = 0.05  # below 5% a "gain" is within the noise of a shared CPU
SAME = 0.03  # a slowdown under 3% reads as "about as fast"
CONFIDENCE = 0.99  # of the interval on the median paired speedup (several looks are taken: kept high)
SIGNIFICANCE = 0.05  # sign test of runs stored before intervals existed
TOO_CLOSE = "too close to call"


@dataclass(frozen=True)
class SpeedEstimate:
    """The median of parent time / variant time over paired rounds, and its confidence interval."""

    speedup: float
    low: float
    high: float
    rounds: int


def _order_index(n: int, confidence: float) -> int:
    """The 0-based index k of the order statistics [x_k, x_(n-1-k)] bounding the median at ``confidence``.

    The largest k with P(Binomial(n, 1/2) < k + 1) <= (1 - confidence) / 2; 0 when n is too small.
    """
    alpha = (1.0 - confidence) / 2
    if n > 200:  # the normal approximation of the binomial: exact to a round at this size, and cheap
        z = statistics.NormalDist().inv_cdf(1.0 - alpha)
        return max(int(math.floor((n - z * math.sqrt(n)) / 2)) - 1, 0)
    total, cumulative = 2**n, 0
    for k in range(n // 2 + 1):
        cumulative += math.comb(n, k)
        if cumulative / total > alpha:
            return max(k - 1, 0)
    return 0


def estimate(parent: Sequence[float], variant: Sequence[float], *, confidence: float = CONFIDENCE) -> SpeedEstimate:
    """The median paired speedup (``parent[i] / variant[i]``) and its distribution-free interval.

    With too few rounds for the interval, it spans all the ratios measured.
    """
    ratios = np.sort(np.asarray(parent, dtype=float) / np.maximum(np.asarray(variant, dtype=float), 1e-12))
    n = len(ratios)
    if n == 0:
        return SpeedEstimate(1.0, 0.0, math.inf, 0)
    k = _order_index(n, confidence)
    return SpeedEstimate(float(np.median(ratios)), float(ratios[k]), float(ratios[n - 1 - k]), n)


def speed_call(low: float, high: float, *, gain: float = MIN_GAIN, same: float = SAME) -> str:
    """The call for one speedup interval [low, high] (see the module docstring)."""
    if high <= 1.0 - same:
        return "slower"
    if low >= 1.0 + gain:
        return "faster"
    if high < 1.0 + gain:
        return "no gain"
    return TOO_CLOSE


def settled(low: float, high: float, *, gain: float = MIN_GAIN, same: float = SAME) -> bool:
    """Whether the interval answers both questions: at least ``gain`` faster? more than ``same`` slower?"""
    gain_known = low >= 1.0 + gain or high < 1.0 + gain
    loss_known = high <= 1.0 - same or low > 1.0 - same
    return gain_known and loss_known


def overall_call(intervals: Mapping[str, tuple[float, float]]) -> str:
    """The call over batch sizes: slower anywhere is "slower"; faster somewhere and clearly not slower elsewhere
    is "faster"; "no gain" everywhere is "no gain"; anything else is too close to call."""
    calls = {b: speed_call(lo, hi) for b, (lo, hi) in intervals.items()}
    if not calls:
        return TOO_CLOSE
    if "slower" in calls.values():
        return "slower"
    if TOO_CLOSE in calls.values():
        return TOO_CLOSE
    if all(c == "no gain" for c in calls.values()):
        return "no gain"
    not_slower = all(intervals[b][0] > 1.0 - SAME for b, c in calls.items() if c == "no gain")
    return "faster" if not_slower else TOO_CLOSE


def interval_of(stats: Mapping[str, float], speedup: float) -> tuple[float, float]:
    """The interval stored with a batch's figures; for runs stored before intervals, one read from the sign test.

    Such a run's point estimate counts as an interval of zero width when its sign test
    is significant (or absent), else as reaching from 1.0 to it (within the noise).
    """
    if "ci_low" in stats and "ci_high" in stats:
        return float(stats["ci_low"]), float(stats["ci_high"])
    low = high = speedup
    if speedup > 1.0 and stats.get("p_faster", 0.0) >= SIGNIFICANCE:
        low = 1.0
    if speedup < 1.0 and stats.get("p_slower", 0.0) >= SIGNIFICANCE:
        high = 1.0
    return low, high


def time_until_settled(
    sample: Callable[[int, int], list[list[float]]],
    *,
    target: int,
    cap: int,
    out_of_time: Callable[[], bool] = lambda: False,
) -> list[list[float]]:
    """Times per model (parent first), measured in blocks until the calls are settled and repeated.

    ``sample(rounds, done)`` measures ``rounds`` more interleaved rounds (``done`` so far) and
    returns one list of seconds per model.  Measuring stops once at least ``target`` rounds are
    in and every variant's call is settled and the same as at the previous look, or at ``cap``
    rounds, or when ``out_of_time()``.
    """
    block = max(5, target // 2)
    times: list[list[float]] = []
    previous: list[str] | None = None
    while True:
        more = sample(block, len(times[0]) if times else 0)
        times = [list(t) for t in more] if not times else [a + list(b) for a, b in zip(times, more, strict=True)]
        done = len(times[0])
        looks = [estimate(times[0], t) for t in times[1:]]
        calls = [speed_call(e.low, e.high) for e in looks]
        steady = all(settled(e.low, e.high) for e in looks) and calls == previous
        if (done >= target and steady) or done >= cap or out_of_time():
            return times
        previous = calls
