"""int8-budgeted: static int8 that keeps in float32 the nodes that hurt, within an agreement budget.

The child calibrates once (the ranges are cached for every later quantization),
quantizes every node and scores the result against the parent on the calibration
rows. Within ``tolerance``, that is the variant. Otherwise each quantized node is
quantized alone to rank the harm it does (:func:`.sensitivity.rank_nodes`); the
most harmful stay in float32 (``nodes_to_exclude``) in rank order, on a growing
schedule and then a bisection to the fewest that meet the budget; the candidates
within budget are timed interleaved and the fastest is the variant.
``stats["budget"]`` says which nodes stayed float and why.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import onnx

from ...errors import InvalidInputError, InvalidModelError
from .base import Method, MethodAdvice, Work, listing, progress_line
from .graph import count_ops
from .int8 import calibration_batch, check_calibration_method, prepare_static, quantize_qdq, refuse_unquantizable
from .sensitivity import Evaluator, Score, percent, quantized_nodes, rank_nodes, time_candidates

__all__ = ["INT8_BUDGETED", "MAX_TOLERANCE"]

MAX_TOLERANCE = 0.5
MAX_SEARCH_SECONDS = 120.0  # ranking and search together; the sandbox's CPU limit bounds it further
RANK_SHARE = 0.6  # of the search time, at most, for quantizing nodes one at a time
TIMING_SECONDS = 1.5
SAME_SPEED = 0.02  # candidates within 2% of the fastest count as fast: the one with fewer float nodes wins


# -- parent: parameters and applicability ------------------------------------------------
def _check(params: dict[str, Any]) -> dict[str, Any]:
    tolerance = params["tolerance"]
    if isinstance(tolerance, bool) or not isinstance(tolerance, int | float) or not np.isfinite(tolerance):
        raise InvalidInputError(f"invalid tolerance {tolerance!r} for int8-budgeted: expected a number from 0 to "
                                f"{MAX_TOLERANCE} (the largest agreement loss accepted, 0.01 = 1%)")
    if not 0.0 <= float(tolerance) <= MAX_TOLERANCE:
        raise InvalidInputError(f"invalid tolerance {tolerance!r} for int8-budgeted: expected a number from 0 to "
                                f"{MAX_TOLERANCE} (0.01 = at most 1% agreement loss); above {MAX_TOLERANCE}, "
                                "int8-static without a budget is the better choice")
    params["tolerance"] = float(tolerance)
    params["per_channel"] = bool(params["per_channel"])
    params["calibration_method"] = check_calibration_method(params["calibration_method"])
    return params


def _applies(ops: Mapping[str, int], params: Mapping[str, Any]) -> None:
    refuse_unquantizable("int8-budgeted", ops)


# -- child: the search -------------------------------------------------------------------------
@dataclass
class _Candidate:
    excluded: int  # how many of the ranked nodes stay in float32
    path: Path
    score: Score
    p50_ms: float | None = None


def _name_nodes(path: Path) -> None:
    """Give every node a unique name, so that ``nodes_to_exclude`` can name it."""
    model = onnx.load(str(path))
    seen: set[str] = set()
    for i, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.name or node.op_type}__{i}"
        seen.add(node.name)
    onnx.save(model, str(path))


def _whole_batches(arrays: dict[str, np.ndarray], fixed: int | None) -> dict[str, np.ndarray]:
    """The rows cut (or repeated) to a multiple of a fixed batch, which the model cannot run otherwise."""
    rows = len(next(iter(arrays.values())))
    if not fixed or rows % fixed == 0:
        return arrays
    keep = np.arange(max(fixed, rows - rows % fixed)) % rows
    return {k: v[keep] for k, v in arrays.items()}


def _ranking_rows(rows: int, batch: int, seconds_per_row: float, seconds_per_node: float) -> int:
    """Rows enough to rank every node in the time left (at least 16 or one batch; whole batches)."""
    affordable = int(0.6 * seconds_per_node / max(seconds_per_row, 1e-9))
    wanted = min(rows, max(affordable, 16, batch))
    return max(batch, wanted - wanted % batch)


def _schedule(limit: int) -> Iterator[int]:
    """1, 2, 3, 4, 6, 8, 12, 16, 24, 32, ... below ``limit``, then ``limit`` itself."""
    k = 1
    while k < limit:
        yield k
        k += 1 if k < 4 else (k // 2 if k & (k - 1) == 0 else k // 3)
    if limit > 0:
        yield limit


def _search(attempt: Callable[[int], _Candidate], within: Callable[[Score], bool], limit: int,
            deadline: float) -> tuple[list[_Candidate], bool]:
    """Candidates with more and more ranked nodes in float32; True with them if the deadline stopped the search."""
    tried: dict[int, _Candidate] = {}

    def passes(k: int) -> bool:
        if k not in tried:
            tried[k] = attempt(k)
        return within(tried[k].score)

    low, high = 0, None
    for k in _schedule(limit):
        if time.monotonic() > deadline:
            return sorted(tried.values(), key=lambda c: c.excluded), True
        if passes(k):
            high = k
            break
        low = k
    if high is not None:
        while high - low > 1 and time.monotonic() < deadline:
            mid = (low + high) // 2
            low, high = (low, mid) if passes(mid) else (mid, high)
        if high < limit and time.monotonic() < deadline:
            passes(high + 1)  # one more float node may remove a costly int8/float boundary
    return sorted(tried.values(), key=lambda c: c.excluded), False


def _fastest(passing: list[_Candidate]) -> _Candidate:
    best = min(c.p50_ms or 0.0 for c in passing)
    return min((c for c in passing if (c.p50_ms or 0.0) <= best * (1 + SAME_SPEED)), key=lambda c: c.excluded)


def _reason(entry: Mapping[str, Any], evaluator: Evaluator) -> str:
    if not entry["measured"]:
        return ("not measured alone (the sensitivity pass ran out of time); kept in float32, latest in the graph "
                "first, to reach the budget")
    changed = (f"changed {entry['loss']:.1%} of the top-1 answers" if evaluator.labels is not None else
               f"moved {entry['loss']:.1%} of the rows beyond {percent(evaluator.tolerance)} relative error")
    spread = f"its output error was {entry['error']:.3g} of the outputs' spread"
    if entry["loss"] > 0:
        return f"quantized alone, it {changed} on {evaluator.rows} calibration rows ({spread})"
    return (f"quantized alone, it changed no answer on {evaluator.rows} calibration rows, but {spread}, the next "
            "largest; "
            "kept in float32 to reach the budget")


def _refusal(tolerance: float, tried: list[_Candidate], plain: Score, quantizable: int,
             stopped_after: float | None) -> str:
    head = f"int8 cannot stay within {percent(tolerance)} agreement on this model: "
    tail = "; raise the tolerance or use fp16"
    if not tried and stopped_after is not None:
        return (head + f"the search reached its time limit ({stopped_after:.0f} s) before any candidate was tried "
                f"(all-int8: {plain.agreement:.1%} agreement)" + tail)
    if not tried:
        return (head + f"quantizing its only quantizable node leaves {plain.agreement:.1%} agreement with the "
                "parent on the calibration rows, and keeping it in float32 leaves nothing quantized" + tail)
    best = max(tried, key=lambda c: (c.score.agreement, -c.excluded))
    reached = (f"at best {best.score.agreement:.1%} agreement, with {best.excluded} in float32; all-int8: "
               f"{plain.agreement:.1%}")
    if stopped_after is not None:
        return (head + f"the search stopped at its time limit ({stopped_after:.0f} s) with up to "
                f"{tried[-1].excluded} of {quantizable} quantized nodes in float32 ({reached})" + tail)
    return (head + f"even with {tried[-1].excluded} of {quantizable} quantized nodes kept in float32 (one left "
            f"quantized) the agreement with the parent on the calibration rows is {tried[-1].score.agreement:.1%} "
            f"({reached})" + tail)


def _build(w: Work) -> dict[str, Any]:
    started = time.monotonic()
    budget = min(MAX_SEARCH_SECONDS, 0.4 * float((w.job.get("limits") or {}).get("cpu_seconds", 300)))
    tolerance = float(w.params["tolerance"])
    prepared, kept, arrays = prepare_static(w)
    _name_nodes(prepared)
    rows = len(next(iter(arrays.values())))
    batch = calibration_batch(w.job, rows)
    cache = w.scratch / "ranges.json"

    def quantize(dst: Path, exclude: list[str], only: list[str] | None = None) -> Path:
        quantize_qdq(prepared, dst, arrays, w.params, batch=batch, nodes_to_exclude=[*kept, *exclude],
                     nodes_to_quantize=only, cache=cache)
        return dst

    w.progress(progress_line(f"calibrating on {rows} rows ({w.params['calibration_method']}) and quantizing "
                             "every node", 0.02))
    all_int8 = quantize(w.scratch / "candidate-0.onnx", [])
    fixed = w.job.get("fixed_batch")
    rows_used = _whole_batches(arrays, fixed)
    evaluator = Evaluator(w.src, rows_used, batch=int(fixed or 64), tolerance=tolerance)
    clock = time.monotonic()
    plain = evaluator.score(all_int8)
    seconds_per_row = (time.monotonic() - clock) / evaluator.rows
    nodes = quantized_nodes(all_int8, kept)
    if not nodes:
        raise InvalidModelError("int8-budgeted quantized nothing: onnxruntime's static quantizer found no node to "
                                "compute in int8 in this graph")

    def within(score: Score) -> bool:
        return score.agreement >= 1.0 - tolerance - 1e-9

    w.progress(progress_line(f"all-int8: {evaluator.measure} {plain.agreement:.1%} on {evaluator.rows} rows "
                             f"(budget: at most {percent(tolerance)} loss)", 0.08))
    report: dict[str, Any] = {"tolerance": tolerance, "plain_agreement": plain.agreement, "quantizable": len(nodes),
                              "measure": evaluator.measure}
    if within(plain):
        shutil.copyfile(all_int8, w.dst)
        report.update(agreement=plain.agreement, quantized=len(nodes), excluded=[],
                      candidates=[{"excluded": 0, "agreement": plain.agreement, "p50_ms": None}])
        return _finish(w, report, started, rows, f"all {len(nodes)} quantizable nodes quantized: the all-int8 model "
                       f"already agrees {plain.agreement:.1%} with its parent on the calibration rows, within the "
                       f"{percent(tolerance)} budget")
    ranking = evaluator.subset(_ranking_rows(evaluator.rows, int(fixed or 1), seconds_per_row,
                                             (started + budget * RANK_SHARE - time.monotonic()) / len(nodes)))
    ranked = rank_nodes(nodes, lambda name: quantize(w.scratch / "alone.onnx", [], [name]), ranking,
                        deadline=started + budget * RANK_SHARE, progress=w.progress, span=(0.1, 0.6))
    attempts = [0]

    def attempt(k: int) -> _Candidate:
        attempts[0] += 1
        w.progress(progress_line(f"trying {k} of {len(nodes)} nodes in float32", min(0.9, 0.6 + 0.04 * attempts[0])))
        path = quantize(w.scratch / f"candidate-{k}.onnx", [e["node"] for e in ranked[:k]])
        return _Candidate(k, path, evaluator.score(path))

    tried, timed_out = _search(attempt, within, len(nodes) - 1, started + budget)
    passing = [c for c in tried if within(c.score)]
    if not passing:
        raise InvalidModelError(_refusal(tolerance, tried, plain, len(nodes), budget if timed_out else None))
    w.progress(progress_line(f"timing {len(passing)} candidate(s) within budget, interleaved", 0.92))
    step = int(fixed or min(32, rows))
    feeds = {k: v[np.arange(step) % rows] for k, v in arrays.items()}
    for candidate, p50 in zip(passing, time_candidates([c.path for c in passing], feeds, seconds=TIMING_SECONDS),
                              strict=True):
        candidate.p50_ms = p50
    chosen = _fastest(passing)
    shutil.copyfile(chosen.path, w.dst)
    excluded = [{"node": e["node"], "op_type": e["op_type"], "loss": e["loss"] if e["measured"] else None,
                 "error": e["error"], "reason": _reason(e, ranking)} for e in ranked[:chosen.excluded]]
    report.update(agreement=chosen.score.agreement, quantized=len(nodes) - chosen.excluded, excluded=excluded,
                  candidates=[{"excluded": 0, "agreement": plain.agreement, "p50_ms": None}]
                  + [{"excluded": c.excluded, "agreement": c.score.agreement, "p50_ms": c.p50_ms} for c in tried])
    names = listing([f"{e['node']} ({e['op_type']})" for e in excluded], limit=5)
    return _finish(w, report, started, rows, f"{chosen.excluded} of {len(nodes)} quantizable nodes kept in float32 "
                   f"to stay within the {percent(tolerance)} budget: {names}; agreement {chosen.score.agreement:.1%} "
                   f"on the calibration rows (all-int8: {plain.agreement:.1%}), fastest of {len(passing)} "
                   "candidate(s) within budget")


def _finish(w: Work, report: dict[str, Any], started: float, rows: int, note: str) -> dict[str, Any]:
    w.notes.append(note)
    report["seconds"] = time.monotonic() - started
    return {"calibration_rows": rows, "quantized_nodes": count_ops(w.dst, ("QuantizeLinear",)),
            "excluded_nodes": len(report["excluded"]), "budget": report}


# -- advice ----------------------------------------------------------------------------------
def _hint(params: Mapping[str, Any]) -> str:
    return ("the budget held on the calibration rows: calibrate on rows more like these, or lower the tolerance "
            "so that more nodes stay in float32")


def _slower(ops: Mapping[str, int], env: Mapping[str, Any]) -> str:
    if env.get("vnni") is False:
        return ("Slower: this CPU has no VNNI instructions (AVX-512 VNNI / AVX-VNNI), so int8 arithmetic is "
                "hardly faster than float32 and the QuantizeLinear/DequantizeLinear steps cost extra.")
    return ("Slower: each node kept in float32 adds conversions between int8 and float32 at its edges; "
            "for small layers those cost more than the int8 arithmetic saves.")


INT8_BUDGETED = Method(
    name="int8-budgeted",
    help="static int8 that keeps the nodes that hurt in float32, within an agreement budget",
    defaults=MappingProxyType({"tolerance": 0.01, "per_channel": False, "calibration_method": "minmax"}),
    check=_check,
    applies=_applies,
    build=_build,
    advice=MethodAdvice(accuracy_hint=_hint, slower=_slower),
    color="#db2777",
    compare_options=("tolerance", "per_channel", "calibration_method"),
    calibrated=True,
    default=False,
)
