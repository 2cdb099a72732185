"""Advice, not just numbers: which variant to serve, and why the others are slow or inaccurate.

The rules, in order:

1. A variant is *within tolerance* when its agreement with the parent (top-1 for
   classifiers, 1 − MAE/σ otherwise) loses at most ``tolerance`` (default 1%).
2. With the ``latency`` objective a variant qualifies only if the speed call of
   :mod:`~portal.compress.speed` is "faster": the confidence interval of its paired
   speedup lies at or above ``1 + MIN_GAIN`` at some measured batch size (or at
   ``batch`` when given) and clears "slower" at the others.  A variant slower than
   its parent is never recommended, whatever else it saves; one whose interval
   straddles a threshold is "too close to call", never a pick, and says so.
3. With the ``size`` objective it qualifies if its file is at most
   ``1 − MIN_GAIN`` of the parent's.
4. The best qualifying variant is the fastest (geometric mean over batch sizes)
   or the smallest; ties go to the more faithful one.

Why a variant falls short (less accurate, slower, no faster, larger) is said in
the words of its method's record (:class:`~portal.compress.methods.MethodAdvice`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import InvalidInputError
from .measure import VersionMeasurement
from .methods import REGISTRY, MethodAdvice
from .methods.base import ALREADY_OPTIMIZED
from .speed import CONFIDENCE, MIN_GAIN, SAME, SIGNIFICANCE, TOO_CLOSE, interval_of, overall_call, speed_call

__all__ = [
    "GATE_FAILED",
    "MIN_GAIN",
    "OBJECTIVES",
    "SIGNIFICANCE",
    "TOO_CLOSE",
    "Advice",
    "Verdict",
    "advise",
    "check_settings",
]

OBJECTIVES = ("latency", "size")
_SAME = SAME
GATE_FAILED = "failed the gate"  # the status of a variant that failed the evaluation gate (never promotable)
# no gain, too close to call and slower bring nothing on the objective: never offered for an alias move.
# "less accurate" brings the gain at a cost in agreement, which a user may knowingly accept.
_PROMOTABLE = ("recommended", "qualifies", "less accurate")


@dataclass(frozen=True)
class Verdict:
    """What the advice says about one variant."""

    ref: str
    method: str
    status: str  # "recommended" | "qualifies" | "slower" | "less accurate" | "no gain" | "too close to call"
    #              | "failed the gate"
    within_tolerance: bool
    speedup: dict[str, float]  # batch → parent p50 / variant p50 (> 1: faster)
    size_ratio: float  # variant / parent file size
    reasons: list[str] = field(default_factory=list)
    headline: str = ""  # the one reason that decided the status, for the recommendation card
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)  # batch → speedup confidence interval

    @property
    def promotable(self) -> bool:
        """Whether an alias may be moved to it from the advice: it gains on the objective (maybe at a cost)."""
        return self.status in _PROMOTABLE


@dataclass(frozen=True)
class Advice:
    """The recommendation for one comparison, with a verdict per variant."""

    objective: str
    tolerance: float
    batch: int | None
    best: str | None
    summary: str
    verdicts: list[Verdict]

    def verdict(self, ref: str) -> Verdict | None:
        return next((v for v in self.verdicts if v.ref == ref), None)

    @property
    def why(self) -> list[str]:
        """The reason for the recommendation: the chosen variant's, else each variant's status and reason."""
        if self.best is not None:
            chosen = self.verdict(self.best)
            return [chosen.headline] if chosen and chosen.headline else []
        return [f"{v.ref} ({v.method}) · {v.status}: {v.headline}" for v in self.verdicts if v.headline]


def check_settings(tolerance: float, objective: str) -> None:
    """Refuse an unknown objective or a tolerance outside [0, 1)."""
    if objective not in OBJECTIVES:
        raise InvalidInputError(f"invalid objective {objective!r}: expected one of {', '.join(OBJECTIVES)}")
    if not 0.0 <= tolerance < 1.0:
        raise InvalidInputError(f"tolerance is an agreement loss between 0 and 1, e.g. 0.01 for 1% (not {tolerance!r})")


def _speedups(parent: VersionMeasurement, variant: VersionMeasurement, batch: int | None) -> dict[str, float]:
    """Parent time / variant time per batch: the median of the paired rounds, else the ratio of p50s."""
    batches = [str(batch)] if batch is not None else list(parent.latency)
    out = {}
    for b in batches:
        p, v = parent.latency.get(b), variant.latency.get(b)
        if p and v and v["p50_ms"] > 0:
            out[b] = float(v.get("paired_speedup") or p["p50_ms"] / v["p50_ms"])
    return out


def _geomean(values: Sequence[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else 1.0


def advise(
    measurements: Sequence[VersionMeasurement],
    *,
    tolerance: float = 0.01,
    objective: str = "latency",
    batch: int | None = None,
    environment: Mapping[str, Any] | None = None,
    gate: Mapping[str, str] | None = None,
) -> Advice:
    """Pick the best variant of ``measurements[0]`` (the parent) within ``tolerance``.

    ``gate``: the variants that failed the evaluation gate (:mod:`.gate`), with why; never recommended.
    """
    check_settings(tolerance, objective)
    parent, variants = measurements[0], list(measurements[1:])
    env = dict(environment or {})
    failed = dict(gate or {})
    verdicts = [_verdict(parent, v, tolerance, objective, batch, env) for v in variants]
    verdicts = [_gated(v, failed[v.ref]) if v.ref in failed else v for v in verdicts]
    candidates = [v for v in verdicts if v.status == "qualifies"]
    agreement = {m.ref: float(m.agreement.get("value", 0.0)) for m in variants}
    if objective == "latency":
        candidates.sort(key=lambda v: (-_geomean(list(v.speedup.values())), -agreement[v.ref]))
    else:
        candidates.sort(key=lambda v: (v.size_ratio, -agreement[v.ref]))
    best = candidates[0].ref if candidates else None
    verdicts = [replace(v, status="recommended") if v.ref == best else v for v in verdicts]
    gated = [v.ref for v in verdicts if v.status == GATE_FAILED]
    others = [v for v in verdicts if v.status != GATE_FAILED]
    if gated and not others:
        summary = f"Every variant failed the evaluation gate ({', '.join(gated)}): keep serving {parent.ref}."
    else:
        summary = _summary(parent, others, best, tolerance, objective)
        summary += f" Failed the evaluation gate, so not offered: {', '.join(gated)}." if gated else ""
    return Advice(objective, tolerance, batch, best, summary, verdicts)


def _gated(verdict: Verdict, why: str) -> Verdict:
    """A variant that failed the evaluation gate: whatever it gains, it is not a pick."""
    headline = f"{why}."  # the card puts the status ("failed the gate") before it
    return replace(verdict, status=GATE_FAILED, headline=headline,
                   reasons=[*verdict.reasons, f"Failed the evaluation gate: {why}."])


def _verdict(parent: VersionMeasurement, m: VersionMeasurement, tolerance: float, objective: str,
             batch: int | None, env: Mapping[str, Any]) -> Verdict:
    method = m.method or "variant"
    value = float(m.agreement.get("value", 0.0))
    within = value >= 1.0 - tolerance - 1e-12
    speedup = _speedups(parent, m, batch)
    size_ratio = m.size_bytes / max(1, parent.size_bytes)
    intervals = {b: interval_of(m.latency.get(b, {}), s) for b, s in speedup.items()}
    speed = overall_call(intervals) if speedup else "no gain"
    reasons = [_gains(speedup, intervals, size_ratio, m)]
    accuracy = None if within else _accuracy_reason(m, value, tolerance)
    if accuracy:
        reasons.append(accuracy)
    speed_reason = _speed_reason(speed, m, speedup, intervals, env)
    if speed_reason:
        reasons.append(speed_reason)
    size_note = _size_reason(m, parent, size_ratio)
    if size_note:
        reasons.append(size_note)
    if not within:
        status, headline = "less accurate", accuracy
    elif objective == "latency" and speed != "faster":
        status, headline = speed, speed_reason  # never recommend a variant not clearly faster at every batch size
    elif objective == "size" and size_ratio > 1.0 - MIN_GAIN:
        status, headline = "no gain", size_note or f"No smaller: the file is {size_ratio:.2f}× the parent's."
    else:
        status, headline = "qualifies", _qualifies_reason(m, speedup, intervals, size_ratio, value, tolerance,
                                                          objective)
    return Verdict(m.ref, method, status, within, speedup, size_ratio, reasons, headline or "", intervals)


def _speed_reason(speed: str, m: VersionMeasurement, speedup: Mapping[str, float],
                  intervals: Mapping[str, tuple[float, float]], env: Mapping[str, Any]) -> str | None:
    """Why the speed call is not "faster" (None when it is)."""
    if speed == "slower":
        return _slow_reason(m, env)
    if speed == TOO_CLOSE:
        return _close_reason(m, speedup, intervals)
    if speed == "no gain":
        return _no_speed_reason(m)
    return None


def _qualifies_reason(m: VersionMeasurement, speedup: Mapping[str, float], intervals: Mapping[str, tuple[float, float]],
                      size_ratio: float, value: float, tolerance: float, objective: str) -> str:
    faith = f"agreement {value:.1%}, within the {tolerance:.1%} loss you allow"
    if objective == "size":
        return f"File {size_ratio:.2f}× the parent's size; {faith}."
    speed = ", ".join(_speed_text(b, s, intervals[b], m) for b, s in speedup.items())
    return f"Faster beyond the measurement noise: {speed}; {faith}."


def _close_reason(m: VersionMeasurement, speedup: Mapping[str, float],
                  intervals: Mapping[str, tuple[float, float]]) -> str:
    close = [b for b, (lo, hi) in intervals.items() if speed_call(lo, hi) != "faster"] or list(intervals)
    parts = []
    for b in close:
        lo, hi = intervals[b]
        stats = m.latency.get(b, {})
        rounds = f" after {int(stats['rounds']):,} paired rounds" if "rounds" in stats else ""
        parts.append(f"at batch {b} it measured {_ratio_text(speedup[b])}, but could be {lo:.2f}× to {hi:.2f}×"
                     f"{rounds}")
    return (f"No clear gain (too close to call): {'; '.join(parts)}, which straddles the {MIN_GAIN:.0%} gain needed "
            f"(or the {_SAME:.0%} slowdown allowed) even after measuring more; measure again on a quieter machine.")


def _ratio_text(ratio: float) -> str:
    if abs(ratio - 1.0) <= _SAME:
        return "about as fast"
    return f"{ratio:.2f}× faster" if ratio > 1 else f"{1 / ratio:.2f}× slower"


def _speed_text(b: str, s: float, interval: tuple[float, float], m: VersionMeasurement) -> str:
    text = f"{_ratio_text(s)} at batch {b}"
    stats = m.latency.get(b, {})
    lo, hi = interval
    parts = []
    if speed_call(lo, hi) == TOO_CLOSE and "faster_rounds" in stats:
        parts.append(f"within the noise: faster in {stats['faster_rounds']} of {stats['rounds']} rounds")
    if "ci_low" in stats:
        parts.append(f"{stats.get('confidence', CONFIDENCE):.0%} interval {lo:.2f}–{hi:.2f}×")
    return text + (f" ({'; '.join(parts)})" if parts else "")


def _gains(speedup: Mapping[str, float], intervals: Mapping[str, tuple[float, float]], size_ratio: float,
           m: VersionMeasurement) -> str:
    speed = ", ".join(_speed_text(b, s, intervals[b], m) for b, s in speedup.items()) or "speed not measured"
    agree = m.agreement
    if agree.get("kind") == "top-1":
        faith = f"same class on {agree['value']:.1%} of {agree.get('rows', 0)} rows"
    else:
        faith = f"mean absolute difference {agree.get('mean_abs_error') or 0:.3g}"
    return f"{speed}; file {size_ratio:.2f}× the parent's size; {faith}."


def _advice(m: VersionMeasurement) -> MethodAdvice | None:
    found = REGISTRY.get(m.method or "")
    return found.advice if found else None


def _accuracy_reason(m: VersionMeasurement, value: float, tolerance: float) -> str:
    agree, advice = m.agreement, _advice(m)
    if agree.get("kind") == "top-1":
        what = (f"it agrees with the parent on {value:.1%} of rows ({agree.get('flipped_count', 0)} of "
                f"{agree.get('rows', 0)} change class), below the {1 - tolerance:.1%} you allow")
    else:
        what = (f"its outputs differ from the parent's by {agree.get('mean_abs_error') or 0:.3g} on average "
                f"({1 - value:.1%} of the parent's spread), more than the {tolerance:.1%} you allow")
    return f"Less accurate: {what}; {advice.accuracy_hint(m.params) if advice else 'keep the parent'}."


def _slow_reason(m: VersionMeasurement, env: Mapping[str, Any]) -> str:
    advice = _advice(m)
    return advice.slower(m.operators, env) if advice else f"Slower: {ALREADY_OPTIMIZED}"


def _no_speed_reason(m: VersionMeasurement) -> str:
    advice = _advice(m)
    if advice and advice.no_faster:
        return advice.no_faster
    return f"No faster: the gain is under {MIN_GAIN:.0%}, within the noise of the measurement."


def _size_reason(m: VersionMeasurement, parent: VersionMeasurement, size_ratio: float) -> str | None:
    advice = _advice(m)
    if advice and advice.size:
        return advice.size(size_ratio, m.gzip_bytes / max(1, parent.gzip_bytes))
    if size_ratio > 1.0 + _SAME:
        return f"Size: the file is {size_ratio:.2f}× the parent's, larger, not smaller."
    return None


def _summary(parent: VersionMeasurement, verdicts: list[Verdict], best: str | None, tolerance: float,
             objective: str) -> str:
    if not verdicts:
        return f"No variants to compare with {parent.ref}."
    if best is None:
        close = [v for v in verdicts if v.status == TOO_CLOSE]
        if objective == "latency" and close:
            names = ", ".join(f"{v.ref} ({v.method})" for v in close)
            return (f"Too close to call: {names} measured within the noise of {parent.ref} on this machine, and no "
                    f"variant is clearly faster within {tolerance:.1%} agreement loss: keep serving {parent.ref}, "
                    "or measure again on a quieter machine.")
        goal = "faster than" if objective == "latency" else "meaningfully smaller than"
        return (f"No variant is both {goal} {parent.ref} and within {tolerance:.1%} agreement loss on this machine: "
                f"keep serving {parent.ref}.")
    chosen = next(v for v in verdicts if v.ref == best)
    speed = ", ".join(f"{_ratio_text(s)} at batch {b}" for b, s in chosen.speedup.items())
    return (f"Serve {best} ({chosen.method}): {speed}, file {chosen.size_ratio:.2f}× the size of {parent.ref}, "
            f"within {tolerance:.1%} agreement loss.")
