"""Measure versions on one evaluation set: size, memory and latency, and keep the figures.

    VersionMeasurement       the figures of one version in one run (agreement from :mod:`.agreement`)
    run_outputs(job)         child: load one model, run the set in batches, report peak memory
    run_timing(job)          child: load every model, warm up, time them interleaved A B A B ... until the
                             faster / no gain call of every variant is settled (:mod:`.speed`), or a cap
    environment()            the machine the figures come from (CPU model, AVX2/AVX-512/VNNI, threads)
    save_run / load_run      a comparison run in ``MeasurementRow``, with the machine it ran on

Each child is a fresh process, so "peak memory" is the high-water mark of one
process that loaded and ran exactly one model. ``save_run`` / ``load_run`` keep
the figures in ``MeasurementRow`` with the machine they came from, so a page
shows them again without re-measuring.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import os
import platform
import statistics
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from ..errors import NotFoundError
from ..storage.db import MeasurementRow, ModelRow, VersionRow, utcnow
from .arrays import gzip_size, load_arrays, save_arrays
from .speed import CONFIDENCE, estimate, time_until_settled

__all__ = [
    "StoredRun",
    "VersionMeasurement",
    "environment",
    "load_run",
    "run_outputs",
    "run_timing",
    "save_run",
]

Progress = Callable[[str], None]


@dataclass(frozen=True)
class VersionMeasurement:
    """The figures of one version in one comparison run (JSON-able)."""

    ref: str
    method: str | None  # None for the parent
    parent: str | None
    size_bytes: int
    gzip_bytes: int
    peak_rss_bytes: int  # high-water mark of a process that loaded and ran only this model
    model_memory_bytes: int  # that peak minus the process's memory before loading the model
    load_seconds: float
    latency: dict[str, dict[str, float]]  # batch → p50_ms, p95_ms, mean_ms, rounds (+ paired_speedup, ci_low,
    #                                        ci_high, confidence, p_faster, p_slower against the parent, for variants)
    throughput_rows_s: float | None  # largest batch measured / its p50 latency
    agreement: dict[str, Any] = field(default_factory=dict)  # against the parent; empty for the parent
    labels: dict[str, float] = field(default_factory=dict)  # accuracy / r2 / mae against the label column
    operators: dict[str, int] = field(default_factory=dict)  # of this version's graph (for the advice)
    params: dict[str, Any] = field(default_factory=dict)  # the method's parameters
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> VersionMeasurement:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)

    def p50_ms(self, batch: int) -> float | None:
        stats = self.latency.get(str(batch))
        return None if stats is None else float(stats["p50_ms"])


# -- the machine ------------------------------------------------------------------------
def _cpu_info() -> tuple[str, set[str]]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                if flags and model:
                    break
    except OSError:
        pass
    return model, flags


def environment(*, threads: int = 0) -> dict[str, Any]:
    """CPU model and the instruction sets that matter for int8/fp16, onnxruntime version, threads."""
    import onnxruntime as ort

    model, flags = _cpu_info()
    return {
        "cpu": model,
        "machine": platform.machine(),
        "cores": os.cpu_count() or 1,
        "avx2": "avx2" in flags,
        "avx512": "avx512f" in flags,
        "vnni": bool({"avx512_vnni", "avx_vnni", "avx_vnni_int8"} & flags),
        "avx512_fp16": "avx512_fp16" in flags,
        "amx": "amx_int8" in flags,
        "onnxruntime": ort.__version__,
        "threads": threads,  # intra-op threads asked for; 0 = onnxruntime's default (one per core)
        "python": platform.python_version(),
    }


# -- child: outputs and memory -------------------------------------------------------------
def _status_bytes(field_name: str) -> int:
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _session(path: str, threads: int) -> Any:
    import onnxruntime as ort

    from ..serving.runtime import SessionConfig

    return ort.InferenceSession(path, sess_options=SessionConfig(intra_op_threads=threads).build(),
                                providers=["CPUExecutionProvider"])


def _run_batches(
    session: Any, feeds: Mapping[str, np.ndarray], step: int
) -> tuple[dict[str, np.ndarray], dict[str, list[Any]]]:
    names = [o.name for o in session.get_outputs()]
    rows = len(next(iter(feeds.values())))
    parts: dict[str, list[np.ndarray]] = {n: [] for n in names}
    keys: dict[str, list[Any]] = {}
    for start in range(0, rows, step):
        values = session.run(None, {k: v[start : start + step] for k, v in feeds.items()})
        for name, value in zip(names, values, strict=True):
            if isinstance(value, list) and (not value or isinstance(value[0], dict)):  # ZipMap
                keys[name] = list(value[0].keys()) if value else []
                value = np.array([[row[k] for k in keys[name]] for row in value], dtype=np.float32)
            parts[name].append(np.asarray(value))
    return {n: np.concatenate(p) if p[0].ndim else p[-1] for n, p in parts.items()}, keys


def run_outputs(job: Mapping[str, Any], progress: Progress) -> dict[str, Any]:
    """Child: load ``job["model"]``, run the evaluation set in batches, save the outputs."""
    feeds = load_arrays(Path(job["feeds"]))
    baseline = _status_bytes("VmRSS")
    start = time.perf_counter()
    session = _session(job["model"], int(job["threads"]))
    load_seconds = time.perf_counter() - start
    outputs, keys = _run_batches(session, feeds, int(job["batch"]))
    peak = _status_bytes("VmHWM")
    out = Path(job["scratch"]) / "outputs.npz"
    save_arrays(outputs, out)
    data = Path(job["model"]).read_bytes()
    return {"outputs": str(out), "keys": {k: [str(x) for x in v] for k, v in keys.items()},
            "key_types": {k: type(v[0]).__name__ if v else "str" for k, v in keys.items()},
            "load_seconds": load_seconds, "peak_rss_bytes": peak, "model_memory_bytes": max(0, peak - baseline),
            "size_bytes": len(data), "gzip_bytes": gzip_size(data)}


# -- child: interleaved timing ---------------------------------------------------------------
def run_timing(job: Mapping[str, Any], progress: Progress) -> dict[str, Any]:
    """Child: time every model at every batch size, interleaved, after a warm-up.

    One round runs each model once, starting from a different model each round
    (A B C, B C A, ...), so drift and cache effects spread evenly.  The rounds the
    budget allows are a first target; while a variant's call (faster, no gain,
    slower) is not settled, more rounds follow, up to ``cap_factor`` × the budget
    and ``cap_rounds`` rounds.
    """
    threads = int(job["threads"])
    sessions = [_session(path, threads) for path in job["models"]]
    latency: list[dict[str, dict[str, float]]] = [{} for _ in sessions]
    for batch, feeds_path in job["feeds"].items():
        feeds = load_arrays(Path(feeds_path))
        runs = [functools.partial(s.run, None, feeds) for s in sessions]
        per_round = sum(_warm_up(run, float(job["warmup_seconds"])) for run in runs)
        budget = float(job["budget_seconds"])
        rounds = int(min(job["max_rounds"], max(job["min_rounds"], budget / max(per_round, 1e-6))))
        progress(f"timing batch {batch}: {len(runs)} models × {rounds} interleaved rounds (more if too close)")
        times = _time_until_settled(runs, rounds, cap=int(job.get("cap_rounds", 4 * job["max_rounds"])),
                                    seconds=budget * float(job.get("cap_factor", 4)))
        if len(times[0]) > rounds:
            progress(f"timing batch {batch}: {len(times[0])} rounds to settle the call")
        for i, samples in enumerate(times):
            latency[i][batch] = _stats(samples) | (_paired(times[0], samples) if i else {})
    return {"latency": latency}


def _time_until_settled(runs: Sequence[Callable[[], Any]], rounds: int, *, cap: int,
                        seconds: float) -> list[list[float]]:
    """Interleaved rounds until every variant's call is settled (:func:`.speed.time_until_settled`), or the caps."""
    deadline = time.perf_counter() + seconds
    return time_until_settled(lambda n, done: _interleave(runs, n, start=done), target=rounds, cap=cap,
                              out_of_time=lambda: time.perf_counter() > deadline)


def _upper_tail(k: int, n: int) -> float:
    """P(X >= k) for X ~ Binomial(n, 1/2): the one-sided sign test.

    Summed in floats from log-gamma: exact integers take seconds once rounds reach thousands.
    """
    if k <= 0:
        return 1.0
    log_total = math.lgamma(n + 1) - n * math.log(2.0)
    return min(1.0, sum(math.exp(log_total - math.lgamma(i + 1) - math.lgamma(n - i + 1)) for i in range(k, n + 1)))


def _paired(parent: Sequence[float], variant: Sequence[float]) -> dict[str, float]:
    """Round-by-round comparison with the parent, which cancels the drift of a shared machine.

    ``paired_speedup`` is the median of parent/variant over the rounds and ``ci_low`` /
    ``ci_high`` its ``confidence`` interval (:mod:`.speed`); ``p_faster`` and ``p_slower``
    are sign-test p-values: how likely that many rounds would favour one side if the two
    models were equally fast.
    """
    ratios = np.asarray(parent) / np.maximum(np.asarray(variant), 1e-12)
    faster = int((ratios > 1.0).sum())
    interval = estimate(parent, variant)
    return {"paired_speedup": float(np.median(ratios)), "faster_rounds": faster,
            "p_faster": _upper_tail(faster, len(ratios)), "p_slower": _upper_tail(len(ratios) - faster, len(ratios)),
            "ci_low": interval.low, "ci_high": interval.high, "confidence": CONFIDENCE}


def _warm_up(run: Callable[[], Any], seconds: float) -> float:
    """Run until warm (at least 3 calls and ``seconds``); return the median call time."""
    samples: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(samples) < 3 or (time.perf_counter() < deadline and len(samples) < 200):
        start = time.perf_counter()
        run()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples[len(samples) // 2 :])


def _interleave(runs: Sequence[Callable[[], Any]], rounds: int, *, start: int = 0) -> list[list[float]]:
    times: list[list[float]] = [[] for _ in runs]
    clock = time.perf_counter
    for r in range(start, start + rounds):
        for offset in range(len(runs)):
            i = (r + offset) % len(runs)
            start = clock()
            runs[i]()
            times[i].append(clock() - start)
    return times


def _stats(samples: list[float]) -> dict[str, float]:
    ms = np.asarray(samples) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "mean_ms": float(ms.mean()), "rounds": len(samples)}


# -- storage: MeasurementRow ---------------------------------------------------------------
@dataclass(frozen=True)
class StoredRun:
    """One comparison run as stored: the parent's figures first, then each variant's."""

    run: str
    created_at: dt.datetime
    created_by: str
    environment: dict[str, Any]
    dataset: dict[str, Any]  # sha, rows, source, label_column
    extra: dict[str, Any]  # refused methods and the settings of the run
    measurements: list[VersionMeasurement]


def _version_ids(s: Session, refs: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
    ids = {}
    for name, number in refs:
        found = s.scalar(
            select(VersionRow.id).join(ModelRow, VersionRow.model_id == ModelRow.id)
            .where(ModelRow.name == name, VersionRow.number == number)
        )
        if found is None:
            raise NotFoundError(f"model {name!r} has no version {number}; it was deleted while being measured")
        ids[(name, number)] = found
    return ids


def _key(ref: str) -> tuple[str, int]:
    name, _, number = ref.rpartition(":")
    return name, int(number)


def save_run(engine: Engine, measurements: list[VersionMeasurement], *, dataset: dict[str, Any],
             environment: dict[str, Any], extra: dict[str, Any], actor: str) -> StoredRun:
    """Store one run: a row for the parent (no baseline) and one per variant (baseline = parent)."""
    run = uuid.uuid4().hex
    parent = measurements[0]
    with Session(engine, expire_on_commit=False) as s:
        s.connection(execution_options={"portal_write": True})
        ids = _version_ids(s, [_key(m.ref) for m in measurements])
        parent_id = ids[_key(parent.ref)]
        now = utcnow()
        for i, m in enumerate(measurements):
            results = {"run": run, "role": "parent" if i == 0 else "variant", "measurement": m.to_json()}
            if i == 0:
                results.update(dataset=dataset, extra=extra)
            s.add(MeasurementRow(version_id=ids[_key(m.ref)], baseline_version_id=None if i == 0 else parent_id,
                                 dataset_sha=dataset["sha"], environment=environment, results=results,
                                 created_at=now, created_by=actor))
        s.commit()
    return StoredRun(run, now, actor, environment, dataset, extra, list(measurements))


def load_run(engine: Engine, ref: str, *, dataset_sha: str | None = None) -> StoredRun | None:
    """The newest stored run whose parent is ``ref`` (``name:N``), or None."""
    with Session(engine) as s:
        parent_id = _version_ids(s, [_key(ref)])[_key(ref)]
        query = select(MeasurementRow).where(MeasurementRow.version_id == parent_id,
                                             MeasurementRow.baseline_version_id.is_(None))
        if dataset_sha:
            query = query.where(MeasurementRow.dataset_sha == dataset_sha)
        head = next((r for r in s.scalars(query.order_by(MeasurementRow.id.desc())).all()
                     if r.results.get("role") == "parent"), None)
        if head is None:
            return None
        run = head.results["run"]
        rows = s.scalars(select(MeasurementRow).where(MeasurementRow.baseline_version_id == parent_id)
                         .order_by(MeasurementRow.id)).all()
        variants = [VersionMeasurement.from_json(r.results["measurement"]) for r in rows if r.results.get("run") == run]
        return StoredRun(run, head.created_at, head.created_by, dict(head.environment), dict(head.results["dataset"]),
                         dict(head.results.get("extra", {})),
                         [VersionMeasurement.from_json(head.results["measurement"]), *variants])
