"""Variants at the facade level: create them, measure them, compare them, read results back.

    create_variant(portal, "digits:1", "int8-static")      → ModelVersion digits:2 (parent digits:1)
    compare(portal, "digits:1", methods=[...])             → Comparison (measured now, stored)
    load_comparison(portal, "digits:1")                    → Comparison as stored (no re-measuring)

A variant is a version of the same model with a parent, a method and its
parameters, so predict, explain, alias and delete work on it as on any version.
Every heavy step runs in the sandboxed child (:mod:`portal.compress._worker`);
nothing is registered unless the variant was built, loaded and run.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from . import measure
from . import rules as compress
from .advice import Advice, advise, check_settings
from .datasets import DataSet, load_data
from ..errors import InvalidModelError
from ..ingest.sandbox import run_worker
from ..storage.registry import ModelVersion
from ..serving.signature import fixed_batch

if TYPE_CHECKING:
    from ..core import Portal

__all__ = ["Comparison", "compare", "create_variant", "lineage", "load_comparison", "measure_versions"]

Progress = Callable[[str], None]
MAX_CALIBRATION_ROWS = 256
_WORKER = "portal.compress._worker"


def _say(progress: Progress | None, text: str) -> None:
    if progress is not None:
        progress(text)


# -- create -------------------------------------------------------------------------------
def create_variant(
    portal: Portal,
    ref: str,
    method: str,
    *,
    per_channel: bool | None = None,
    op_types: Sequence[str] | None = None,
    calibration: Any = None,
    calibration_method: str | None = None,
    sparsity: float | None = None,
    block_ops: Sequence[str] | None = None,
    level: str | None = None,
    reuse: bool = False,
    progress: Progress | None = None,
    actor: str | None = None,
) -> ModelVersion:
    """Build the ``method`` variant of ``ref`` in the sandbox and register it as the model's next version.

    Args:
        calibration: int8-static only: a CSV/Parquet/npz/image file or folder, a DataFrame,
            arrays, or None for the version's reference data.
        reuse: return an existing variant of ``ref`` with the same method and parameters
            instead of building a new one.

    Raises:
        InvalidInputError: a parameter or the calibration data is wrong (nothing was built).
        InvalidModelError: the method does not apply to this graph, or the build failed.
    """
    parent = portal.get(ref)
    portal.check("upload", parent)  # a variant is a new version of the model: its owner's (or an admin's) to add
    if portal.user is not None:
        actor = portal.actor  # a signed-in user is always the actor of their own changes
    given = {"per_channel": per_channel, "op_types": op_types, "calibration_method": calibration_method,
             "sparsity": sparsity, "block_ops": block_ops, "level": level}
    params = compress.check_params(method, given)
    compress.check_applicable(method, parent.info, params)
    data = None
    if method == "int8-static":
        data = load_data(portal, parent, calibration, purpose="calibration", max_rows=MAX_CALIBRATION_ROWS,
                         spread=True)
        params["calibration"] = {"source": data.source, "rows": data.rows, "sha": data.sha}
        _say(progress, f"calibration data: {data.rows} rows from {data.source}")
    if reuse:
        found = _existing_variant(portal, parent, method, params)
        if found is not None:
            _say(progress, f"reusing {found.ref} ({method})")
            return found
    return _build_and_register(portal, parent, method, params, data, progress, actor or portal.actor)


def _existing_variant(
    portal: Portal, parent: ModelVersion, method: str, params: Mapping[str, Any]
) -> ModelVersion | None:
    for version in portal.get_model(parent.name).versions:
        if version.parent == parent.ref and version.method == method and version.method_params == dict(params):
            return version
    return None


def _build_and_register(portal: Portal, parent: ModelVersion, method: str, params: dict[str, Any],
                        data: DataSet | None, progress: Progress | None, actor: str) -> ModelVersion:
    scratch = portal.store.make_staging_dir("variant").resolve()
    try:
        job: dict[str, Any] = {
            "kind": "compress", "method": method, "params": params,
            "src": str(portal.model_path(parent.ref).resolve()), "dst": str(scratch / "variant.onnx"),
            "nodes_before": parent.info.get("node_count", 0),
            "fixed_batch": _fixed_batch(parent),
        }
        if data is not None:
            job["calibration"] = str(compress.save_arrays(data.arrays, scratch / "calibration.npz"))
        result = run_worker(job, scratch=scratch, settings=portal.settings, progress=progress,
                            worker=_WORKER, activity=f"building the {method} variant", reads=[job["src"]])
        blob = portal.store.adopt(_fsynced(scratch / result["model"]))
        meta = {k: v for k, v in parent.meta.items() if k not in ("variant", "parent_deleted")}
        meta["variant"] = {"notes": result["notes"], "stats": result["stats"]}
        try:
            version = portal.registry.add_version(
                parent.name, blob_sha=blob.sha256, size_bytes=blob.size, source_format="onnx", info=result["info"],
                meta=meta, actor=actor, parent=parent.ref, method=method, method_params=params,
                reference_sha=parent.reference_sha,
            )
        except BaseException:
            if not portal.registry.blob_in_use(blob.sha256):
                portal.store.delete(blob.sha256)
            raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    portal.invalidate()
    _say(progress, f"registered {version.ref}")
    return version


def _fsynced(path: Path) -> Path:
    """The child wrote ``path``; make it durable before it becomes a blob a version row points at."""
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())
    return path


def _fixed_batch(version: ModelVersion) -> int | None:
    return fixed_batch(version.signature)


def lineage(portal: Portal, ref: str) -> list[ModelVersion]:
    """``ref`` and its ancestors, nearest first (a variant of a variant lists both parents)."""
    chain = [portal.get(ref)]
    while chain[-1].parent and len(chain) < 64:
        chain.append(portal.get(chain[-1].parent))
    return chain


# -- measure --------------------------------------------------------------------------------
def measure_versions(
    portal: Portal,
    versions: Sequence[ModelVersion],
    data: DataSet,
    *,
    batch_size: int = 32,
    threads: int = 0,
    budget_seconds: float = 3.0,
    min_rounds: int = 10,
    progress: Progress | None = None,
) -> list[measure.VersionMeasurement]:
    """Measure ``versions[0]`` (the parent) and the others on ``data``, each against the parent."""
    scratch = portal.store.make_staging_dir("measure").resolve()
    try:
        feeds = compress.save_arrays(data.arrays, scratch / "feeds.npz")
        runs = []
        for i, version in enumerate(versions):
            _say(progress, f"running {version.ref} on {data.rows} rows (own process, for its peak memory)")
            runs.append(_run_child(portal, scratch / f"run-{i}", {
                "kind": "outputs", "model": str(portal.model_path(version.ref).resolve()), "feeds": str(feeds),
                "batch": _fixed_batch(version) or batch_size, "threads": threads}, progress))
        latency = _time_all(portal, versions, data, scratch, batch_size=batch_size, threads=threads,
                            budget_seconds=budget_seconds, min_rounds=min_rounds, progress=progress)
        return _summarize(versions, data, runs, latency, batch_size)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _run_child(portal: Portal, scratch: Path, job: dict[str, Any], progress: Progress | None) -> dict[str, Any]:
    scratch.mkdir()
    feeds = job["feeds"].values() if isinstance(job["feeds"], dict) else [job["feeds"]]
    reads = [*job.get("models", [job.get("model")]), *feeds]
    result = run_worker(job, scratch=scratch, settings=portal.settings, progress=progress, worker=_WORKER,
                        activity="measuring the model", reads=reads)
    if "outputs" in result:
        result["arrays"] = compress.load_arrays(Path(result["outputs"]))
    return result


def _time_all(portal: Portal, versions: Sequence[ModelVersion], data: DataSet, scratch: Path, *, batch_size: int,
              threads: int, budget_seconds: float, min_rounds: int, progress: Progress | None) -> list[dict[str, Any]]:
    fixed = _fixed_batch(versions[0])
    batches = [fixed] if fixed else sorted({1, batch_size})
    feeds = {}
    for b in batches:
        rows = np.arange(b) % data.rows
        sample = {k: v[rows] for k, v in data.arrays.items()}
        feeds[str(b)] = str(compress.save_arrays(sample, scratch / f"batch-{b}.npz"))
    job = {"kind": "timing", "models": [str(portal.model_path(v.ref).resolve()) for v in versions], "feeds": feeds,
           "threads": threads, "budget_seconds": budget_seconds, "min_rounds": min_rounds, "max_rounds": 2000,
           "warmup_seconds": 0.2}
    _say(progress, f"timing {len(versions)} models interleaved at batch {' and '.join(map(str, batches))}")
    return list(_run_child(portal, scratch / "timing", job, progress)["latency"])


def _summarize(versions: Sequence[ModelVersion], data: DataSet, runs: list[dict[str, Any]],
               latency: list[dict[str, Any]], batch_size: int) -> list[measure.VersionMeasurement]:
    parent = versions[0]
    first = measure.interpret(runs[0]["arrays"], runs[0]["keys"], task=parent.task,
                              class_labels=parent.class_labels, rows=data.rows)
    read = [first] + [measure.interpret(r["arrays"], r["keys"], task=parent.task, class_labels=parent.class_labels,
                                        rows=data.rows, probabilities=first.scores_are_probabilities)
                      for r in runs[1:]]
    out = []
    for i, (version, run) in enumerate(zip(versions, runs, strict=True)):
        biggest = max(latency[i], key=int) if latency[i] else None
        throughput = int(biggest) / (latency[i][biggest]["p50_ms"] / 1e3) if biggest else None
        notes = list(version.meta.get("variant", {}).get("notes", [])) if i else []
        if biggest and int(biggest) != batch_size and _fixed_batch(version):
            notes.append(f"the model takes a fixed batch of {biggest}; batch {batch_size} was not measured")
        out.append(measure.VersionMeasurement(
            ref=version.ref, method=version.method if i else None, parent=parent.ref if i else None,
            size_bytes=int(run["size_bytes"]), gzip_bytes=int(run["gzip_bytes"]),
            peak_rss_bytes=int(run["peak_rss_bytes"]), model_memory_bytes=int(run["model_memory_bytes"]),
            load_seconds=float(run["load_seconds"]), latency=latency[i], throughput_rows_s=throughput,
            agreement=measure.agreement(read[0], read[i]) if i else {},
            labels=measure.label_metrics(read[i], data.labels, task=parent.task) if data.labels is not None else {},
            operators=dict(version.info.get("operators", {})), params=dict(version.method_params) if i else {},
            notes=notes,
        ))
    return out


# -- compare ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Comparison:
    """A parent and its variants measured on one data set, with the advice."""

    parent: str
    run: measure.StoredRun
    advice: Advice

    @property
    def measurements(self) -> list[measure.VersionMeasurement]:
        return self.run.measurements

    @property
    def refused(self) -> dict[str, str]:
        """Methods that were not created, with the reason."""
        return dict(self.run.extra.get("refused", {}))

    @property
    def notes(self) -> list[str]:
        """Caveats of the run (e.g. calibrated on the evaluation rows)."""
        return list(self.run.extra.get("notes", []))

    def with_advice(
        self, *, tolerance: float = 0.01, objective: str = "latency", batch: int | None = None
    ) -> Comparison:
        """The same figures judged with another tolerance or objective (nothing re-measured)."""
        return replace(self, advice=advise(self.measurements, tolerance=tolerance, objective=objective,
                                           batch=batch, environment=self.run.environment))

    def table(self) -> pd.DataFrame:
        """One row per version (parent first): size, memory, latency, agreement, verdict."""
        rows = [_table_row(m, self.measurements[0], self.advice) for m in self.measurements]
        return pd.DataFrame(rows)

    def flipped(self, ref: str) -> pd.DataFrame:
        """Rows whose class changes between the parent and ``ref`` (at most 200 kept)."""
        m = next((m for m in self.measurements if m.ref == ref), None)
        return pd.DataFrame(m.agreement.get("flipped", []) if m else [])

    def to_dict(self) -> dict[str, Any]:
        return {
            "parent": self.parent, "run": self.run.run, "measured_at": self.run.created_at.isoformat(),
            "environment": self.run.environment, "dataset": self.run.dataset, "refused": self.refused,
            "notes": self.notes,
            "measurements": [m.to_json() for m in self.measurements],
            "advice": {"objective": self.advice.objective, "tolerance": self.advice.tolerance,
                       "batch": self.advice.batch, "best": self.advice.best, "summary": self.advice.summary,
                       "verdicts": [v.__dict__ for v in self.advice.verdicts]},
        }


def _table_row(m: measure.VersionMeasurement, parent: measure.VersionMeasurement, advice: Advice) -> dict[str, Any]:
    verdict = advice.verdict(m.ref)
    row: dict[str, Any] = {"Version": m.ref, "Method": m.method or "parent", "Size": m.size_bytes,
                           "Size ratio": m.size_bytes / max(1, parent.size_bytes), "Gzip size": m.gzip_bytes,
                           "Peak memory": m.peak_rss_bytes, "Model memory": m.model_memory_bytes}
    for batch, stats in m.latency.items():
        row[f"p50 ms (batch {batch})"] = stats["p50_ms"]
        row[f"p95 ms (batch {batch})"] = stats["p95_ms"]
        base = parent.latency.get(batch)
        ratio = base["p50_ms"] / stats["p50_ms"] if base and stats["p50_ms"] else None
        row[f"Speedup (batch {batch})"] = stats.get("paired_speedup") or ratio
    row["Throughput rows/s"] = m.throughput_rows_s
    row["Agreement"] = m.agreement.get("value", 1.0) if m.method else 1.0
    row["Flipped rows"] = m.agreement.get("flipped_count", 0) if m.method else 0
    row["Max abs error"] = m.agreement.get("max_abs_error") if m.method else 0.0
    row["KL divergence"] = m.agreement.get("kl_divergence") if m.method else 0.0
    for key, value in m.labels.items():
        row[{"accuracy": "Accuracy", "r2": "R²", "mae": "MAE"}.get(key, key)] = value
    row["Verdict"] = verdict.status if verdict else "parent"
    return row


def compare(
    portal: Portal,
    ref: str,
    *,
    data: Any = None,
    label_column: str | None = None,
    methods: Sequence[str] | None = None,
    calibration: Any = None,
    calibration_method: str = "minmax",
    per_channel: bool = False,
    sparsity: float = 0.5,
    tolerance: float = 0.01,
    objective: str = "latency",
    batch_size: int = 32,
    threads: int = 0,
    budget_seconds: float = 3.0,
    progress: Progress | None = None,
    actor: str | None = None,
) -> Comparison:
    """Create (or reuse) each method's variant of ``ref``, measure all on one data set, advise, store.

    Methods that cannot apply are listed in ``Comparison.refused`` with the reason.
    ``data`` (evaluation set) and ``calibration`` default to the version's reference data.
    """
    parent = portal.get(ref)
    chosen = list(dict.fromkeys(methods or compress.METHODS))
    options: dict[str, dict[str, Any]] = {
        "int8-dynamic": {"per_channel": per_channel},
        "int8-static": {"per_channel": per_channel, "calibration_method": calibration_method},
        "prune": {"sparsity": sparsity},
    }
    for method in chosen:  # every parameter is checked before any work
        compress.check_params(method, options.get(method, {}))
    check_settings(tolerance, objective)
    evaluation = load_data(portal, parent, data, purpose="evaluation", label_column=label_column)
    _say(progress, f"evaluation data: {evaluation.rows} rows from {evaluation.source}")
    notes: list[str] = []
    if calibration is None and not parent.reference_sha and data is not None:
        calibration = data
        if "int8-static" in chosen:
            notes.append("int8-static was calibrated on the evaluation rows themselves (no calibration data "
                         "and no reference data), so its agreement may look better than on unseen rows")
    if "int8-static" in chosen and calibration is not None:  # bad calibration data fails before any work
        load_data(portal, parent, calibration, purpose="calibration", max_rows=MAX_CALIBRATION_ROWS, spread=True)
    variants, refused = [], {}
    for method in chosen:
        kwargs = dict(options.get(method, {}))
        if method == "int8-static":
            kwargs["calibration"] = calibration
        try:
            variants.append(create_variant(portal, parent.ref, method, reuse=True, progress=progress, actor=actor,
                                           **kwargs))
        except InvalidModelError as exc:
            refused[method] = exc.message
            _say(progress, f"{method} refused: {exc.message}")
    measurements = measure_versions(portal, [parent, *variants], evaluation, batch_size=batch_size, threads=threads,
                                    budget_seconds=budget_seconds, progress=progress)
    env = measure.environment(threads=threads)
    extra = {"refused": refused, "notes": notes, "methods": chosen, "batch_size": batch_size}
    run = measure.save_run(portal.registry.engine, measurements, dataset=evaluation.describe(), environment=env,
                           extra=extra, actor=actor or portal.actor)
    _say(progress, "measurements stored")
    return Comparison(parent.ref, run, advise(measurements, tolerance=tolerance, objective=objective, environment=env))


def load_comparison(portal: Portal, ref: str, *, tolerance: float = 0.01, objective: str = "latency",
                    batch: int | None = None) -> Comparison | None:
    """The newest stored comparison of ``ref`` as measured then (None if never compared)."""
    parent = portal.get(ref)
    run = measure.load_run(portal.registry.engine, parent.ref)
    if run is None:
        return None
    return Comparison(parent.ref, run, advise(run.measurements, tolerance=tolerance, objective=objective,
                                              batch=batch, environment=run.environment))
