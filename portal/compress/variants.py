"""Variants at the facade level: create them, measure them, compare them, read results back.

    create_variant(services, "digits:1", "int8-static")    → ModelVersion digits:2 (parent digits:1)
    compare(services, "digits:1", methods=[...])           → Comparison (measured now, stored)
    load_comparison(services, "digits:1")                  → Comparison as stored (no re-measuring)
    lineage(services, "digits:3")                          → [digits:3, digits:2, digits:1], nearest first

A variant is a version of the same model with a parent, a method and its
parameters, so predict, explain, alias and delete work on it as on any version.
Every heavy step runs in the sandboxed child (:mod:`portal.compress._worker`);
nothing is registered unless the variant was built, loaded and run. Each
function takes a :class:`~portal.services.ModelServices` (``Portal`` is one,
scoped to its signed-in user); :class:`portal.compress.Variants` binds one.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidModelError
from ..ingest.sandbox import run_worker
from ..ingest.testrun import TEST_RUN_KEY
from ..serving.signature import fixed_batch
from ..services import ModelServices
from ..storage.registry import ModelVersion
from . import measure
from .advice import advise, check_settings
from .agreement import agreement, interpret, label_metrics
from .arrays import load_arrays, save_arrays
from .comparison import Comparison
from .datasets import DataSet, load_data
from .gate import Gate, gate_failures, stored_results
from .methods import DEFAULT_METHODS, METHODS, REGISTRY
from .rules import check_applicable, check_params

__all__ = ["Comparison", "compare", "create_variant", "lineage", "load_comparison", "measure_versions"]

Progress = Callable[[str], None]
MAX_CALIBRATION_ROWS = 256  # int8-static's; each method says how many rows it takes (Method.data_rows)
_WORKER = "portal.compress._worker"


def _say(progress: Progress | None, text: str) -> None:
    if progress is not None:
        progress(text)


# -- create -------------------------------------------------------------------------------
def create_variant(
    services: ModelServices,
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
    tolerance: float | None = None,
    student: str | None = None,
    train_seconds: float | None = None,
    reuse: bool = False,
    progress: Progress | None = None,
    actor: str | None = None,
) -> ModelVersion:
    """Build the ``method`` variant of ``ref`` in the sandbox and register it as the model's next version.

    Args:
        calibration: for the methods that need real inputs (int8-static and int8-budgeted calibrate on
            them, distill trains its student on them): a CSV/Parquet/npz/image file or folder, a
            DataFrame, arrays, or None for the version's reference data.
        tolerance: int8-budgeted: the largest agreement loss accepted (0.01 = 1%).
        student, train_seconds: distill: the student's architecture and its training budget.
        reuse: return an existing variant of ``ref`` with the same method and parameters
            instead of building a new one.

    Raises:
        InvalidInputError: a parameter or the calibration data is wrong (nothing was built).
        InvalidModelError: the method does not apply to this graph, or the build failed.
    """
    parent = services.get(ref)
    services.check("upload", parent)  # a variant is a new version of the model: its owner's (or an admin's) to add
    if services.user is not None:
        actor = services.actor  # a signed-in user is always the actor of their own changes
    given = {"per_channel": per_channel, "op_types": op_types, "calibration_method": calibration_method,
             "sparsity": sparsity, "block_ops": block_ops, "level": level, "tolerance": tolerance,
             "student": student, "train_seconds": train_seconds}
    params = check_params(method, given)
    check_applicable(method, parent.info, params)
    data = None
    record = REGISTRY[method]
    if record.calibrated:
        data = load_data(services, parent, calibration, purpose="calibration", max_rows=record.data_rows,
                         spread=True)
        params["calibration"] = {"source": data.source, "rows": data.rows, "sha": data.sha}
        _say(progress, f"calibration data: {data.rows} rows from {data.source}")
    if reuse:
        found = _existing_variant(services, parent, method, params)
        if found is not None:
            _say(progress, f"reusing {found.ref} ({method})")
            return found
    return _build_and_register(services, parent, method, params, data, progress, actor or services.actor)


def _existing_variant(
    services: ModelServices, parent: ModelVersion, method: str, params: Mapping[str, Any]
) -> ModelVersion | None:
    for version in services.get_model(parent.name).versions:
        if version.parent == parent.ref and version.method == method and version.method_params == dict(params):
            return version
    return None


def _build_and_register(services: ModelServices, parent: ModelVersion, method: str, params: dict[str, Any],
                        data: DataSet | None, progress: Progress | None, actor: str) -> ModelVersion:
    scratch = services.store.make_staging_dir("variant").resolve()
    try:
        job: dict[str, Any] = {
            "kind": "compress", "method": method, "params": params,
            "src": str(services.model_path(parent.ref).resolve()), "dst": str(scratch / "variant.onnx"),
            "nodes_before": parent.info.get("node_count", 0),
            "parent_ran": (parent.info.get(TEST_RUN_KEY) or {}).get("ran", True),
            "fixed_batch": _fixed_batch(parent),
        }
        if data is not None:
            job["calibration"] = str(save_arrays(data.arrays, scratch / "calibration.npz"))
        result = run_worker(job, scratch=scratch, settings=services.settings, progress=progress,
                            worker=_WORKER, activity=f"building the {method} variant", reads=[job["src"]])
        blob = services.store.adopt(_fsynced(scratch / result["model"]))
        meta = {k: v for k, v in parent.meta.items() if k not in ("variant", "parent_deleted")}
        meta["variant"] = {"notes": result["notes"], "stats": result["stats"]}
        if result.get("diff"):  # the graph diff (portal.compress.graphdiff), computed by the child that built it
            meta["variant"]["diff"] = result["diff"]
        try:
            version = services.registry.add_version(
                parent.name, blob_sha=blob.sha256, size_bytes=blob.size, source_format="onnx", info=result["info"],
                meta=meta, actor=actor, parent=parent.ref, method=method, method_params=params,
                reference_sha=parent.reference_sha,
            )
        except BaseException:
            if not services.registry.blob_in_use(blob.sha256):
                services.store.delete(blob.sha256)
            raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    services.invalidate()
    _say(progress, f"registered {version.ref}")
    return version


def _fsynced(path: Path) -> Path:
    """The child wrote ``path``; make it durable before it becomes a blob a version row points at."""
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())
    return path


def _fixed_batch(version: ModelVersion) -> int | None:
    return fixed_batch(version.signature)


def lineage(services: ModelServices, ref: str) -> list[ModelVersion]:
    """``ref`` and its ancestors, nearest first (a variant of a variant lists both parents)."""
    chain = [services.get(ref)]
    while chain[-1].parent and len(chain) < 64:
        chain.append(services.get(chain[-1].parent))
    return chain


# -- measure --------------------------------------------------------------------------------
def measure_versions(
    services: ModelServices,
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
    scratch = services.store.make_staging_dir("measure").resolve()
    try:
        feeds = save_arrays(data.arrays, scratch / "feeds.npz")
        runs = []
        for i, version in enumerate(versions):
            _say(progress, f"running {version.ref} on {data.rows} rows (own process, for its peak memory)")
            runs.append(_run_child(services, scratch / f"run-{i}", {
                "kind": "outputs", "model": str(services.model_path(version.ref).resolve()), "feeds": str(feeds),
                "batch": _fixed_batch(version) or batch_size, "threads": threads}, progress))
        latency = _time_all(services, versions, data, scratch, batch_size=batch_size, threads=threads,
                            budget_seconds=budget_seconds, min_rounds=min_rounds, progress=progress)
        return _summarize(versions, data, runs, latency, batch_size)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _run_child(
    services: ModelServices, scratch: Path, job: dict[str, Any], progress: Progress | None
) -> dict[str, Any]:
    scratch.mkdir()
    feeds = job["feeds"].values() if isinstance(job["feeds"], dict) else [job["feeds"]]
    reads = [*job.get("models", [job.get("model")]), *feeds]
    result = run_worker(job, scratch=scratch, settings=services.settings, progress=progress, worker=_WORKER,
                        activity="measuring the model", reads=reads)
    if "outputs" in result:
        result["arrays"] = load_arrays(Path(result["outputs"]))
    return result


def _time_all(services: ModelServices, versions: Sequence[ModelVersion], data: DataSet, scratch: Path, *,
              batch_size: int, threads: int, budget_seconds: float, min_rounds: int,
              progress: Progress | None) -> list[dict[str, Any]]:
    fixed = _fixed_batch(versions[0])
    batches = [fixed] if fixed else sorted({1, batch_size})
    feeds = {}
    for b in batches:
        rows = np.arange(b) % data.rows
        sample = {k: v[rows] for k, v in data.arrays.items()}
        feeds[str(b)] = str(save_arrays(sample, scratch / f"batch-{b}.npz"))
    job = {"kind": "timing", "models": [str(services.model_path(v.ref).resolve()) for v in versions], "feeds": feeds,
           "threads": threads, "budget_seconds": budget_seconds, "min_rounds": min_rounds, "max_rounds": 2000,
           "warmup_seconds": 0.2}
    _say(progress, f"timing {len(versions)} models interleaved at batch {' and '.join(map(str, batches))}")
    return list(_run_child(services, scratch / "timing", job, progress)["latency"])


def _summarize(versions: Sequence[ModelVersion], data: DataSet, runs: list[dict[str, Any]],
               latency: list[dict[str, Any]], batch_size: int) -> list[measure.VersionMeasurement]:
    parent = versions[0]
    first = interpret(runs[0]["arrays"], runs[0]["keys"], task=parent.task,
                      class_labels=parent.class_labels, rows=data.rows)
    read = [first] + [interpret(r["arrays"], r["keys"], task=parent.task, class_labels=parent.class_labels,
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
            agreement=agreement(read[0], read[i]) if i else {},
            labels=label_metrics(read[i], data.labels, task=parent.task) if data.labels is not None else {},
            operators=dict(version.info.get("operators", {})), params=dict(version.method_params) if i else {},
            notes=notes,
        ))
    return out


SYNTHETIC_NOTE = ("measured on synthetic inputs generated from the signature (this version has no reference "
                  "data): speed and size hold, agreement is on made-up inputs, and there is no accuracy; add "
                  "reference data on the Models page for figures on real rows")
NO_CALIBRATION = ("needs real inputs to calibrate on: this version has no reference data, so it was measured on "
                  "synthetic inputs; upload calibration data, or add reference data on the Models page")


def no_real_inputs(name: str) -> str:
    """Why the method ``name``, which needs real input rows, was not created on synthetic inputs."""
    return NO_CALIBRATION.replace("calibrate on", REGISTRY[name].data_use)


# -- compare ----------------------------------------------------------------------------------
def compare(
    services: ModelServices,
    ref: str,
    *,
    data: Any = None,
    label_column: str | None = None,
    methods: Sequence[str] | None = None,
    calibration: Any = None,
    calibration_method: str = "minmax",
    per_channel: bool = False,
    sparsity: float = 0.5,
    student: str = "auto",
    train_seconds: float = 60.0,
    tolerance: float = 0.01,
    gate: str | Sequence[str] | Gate | None = None,
    objective: str = "latency",
    batch_size: int = 32,
    threads: int = 0,
    budget_seconds: float = 3.0,
    progress: Progress | None = None,
    actor: str | None = None,
) -> Comparison:
    """Create (or reuse) each method's variant of ``ref``, measure all on one data set, advise, store.

    Methods that cannot apply are listed in ``Comparison.refused`` with the reason.
    ``methods`` defaults to :data:`~portal.compress.methods.DEFAULT_METHODS` (every method but the
    opt-in ones that train or search). ``data`` (evaluation set) and ``calibration`` (the rows
    int8-static calibrates on and distill trains on) default to the version's reference data.
    ``tolerance`` is the advice's largest accepted agreement loss and int8-budgeted's budget.
    ``gate``: evaluation-gate rules (:mod:`.gate`, e.g. ``["accuracy>=parent-0.01"]``) each variant must meet on
    the labelled evaluation set; the results are stored with the run, a variant that fails is never
    recommended, and ``Portal.set_alias`` refuses it (unless told to override the gate).
    """
    parent = services.get(ref)
    chosen = list(dict.fromkeys(methods or DEFAULT_METHODS))
    knobs = {"per_channel": per_channel, "calibration_method": calibration_method, "sparsity": sparsity,
             "tolerance": tolerance, "student": student, "train_seconds": train_seconds}
    for name in chosen:  # every parameter is checked before any work
        check_params(name, _knobs_of(name, knobs))
    check_settings(tolerance, objective)
    rules = Gate.parse(gate) if gate is not None else None
    if rules is not None:
        rules.check(task=parent.task, labelled=True)  # the metrics first: the data is read next
    evaluation = load_data(services, parent, data, purpose="evaluation", label_column=label_column, synthetic=True)
    if rules is not None:
        rules.check(task=parent.task, labelled=evaluation.labels is not None)  # before any variant is built
    _say(progress, f"evaluation data: {evaluation.rows} rows from {evaluation.source}")
    notes: list[str] = []
    calibrated = [name for name in chosen if REGISTRY[name].calibrated]
    if evaluation.synthetic:
        notes.append(SYNTHETIC_NOTE)
    if evaluation.synthetic and calibration is None:  # calibrating (or training) on made-up inputs would mislead
        refused_uncalibrated = {name: no_real_inputs(name) for name in calibrated}
        calibrated = []
    else:
        refused_uncalibrated = {}
    on_evaluation_rows = calibration is None and not parent.reference_sha and data is not None
    if on_evaluation_rows:
        calibration = data
    if calibrated and calibration is not None:  # bad calibration data fails before any work
        load_data(services, parent, calibration, purpose="calibration", max_rows=MAX_CALIBRATION_ROWS, spread=True)
    variants, refused = [], dict(refused_uncalibrated)
    for name in (n for n in chosen if n not in refused_uncalibrated):
        kwargs = _knobs_of(name, knobs) | ({"calibration": calibration} if name in calibrated else {})
        try:
            variants.append(create_variant(services, parent.ref, name, reuse=True, progress=progress, actor=actor,
                                           **kwargs))
        except InvalidModelError as exc:
            refused[name] = exc.message
            _say(progress, f"{name} refused: {exc.message}")
    made = [v.method for v in variants if v.method in calibrated]
    if on_evaluation_rows and made:  # only what this comparison built or reused: never a note on a refused method
        notes.append(f"{' and '.join(made)} was calibrated on the evaluation rows themselves (no calibration data "
                     "and no reference data), so its agreement may look better than on unseen rows")
    measurements = measure_versions(services, [parent, *variants], evaluation, batch_size=batch_size,
                                    threads=threads, budget_seconds=budget_seconds, progress=progress)
    env = measure.environment(threads=threads)
    extra = {"refused": refused, "notes": notes, "methods": chosen, "batch_size": batch_size}
    if rules is not None:
        extra["gate"] = rules.to_json(rules.evaluate(measurements))
    run = measure.save_run(services.registry.engine, measurements, dataset=evaluation.describe(),
                           environment=env, extra=extra, actor=actor or services.actor)
    _say(progress, "measurements stored")
    return Comparison(parent.ref, run, advise(measurements, tolerance=tolerance, objective=objective, environment=env,
                                              gate=gate_failures(stored_results(extra))))


def _knobs_of(name: str, knobs: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of :func:`compare` that the method ``name`` takes (none for an unknown name)."""
    found = REGISTRY.get(name)
    return {k: knobs[k] for k in found.compare_options} if found else {}


def load_comparison(services: ModelServices, ref: str, *, tolerance: float = 0.01,
                    objective: str = "latency", batch: int | None = None) -> Comparison | None:
    """The newest stored comparison of ``ref`` as measured then (None if never compared)."""
    parent = services.get(ref)
    run = measure.load_run(services.registry.engine, parent.ref)
    if run is None:
        return None
    return Comparison(parent.ref, run, advise(run.measurements, tolerance=tolerance, objective=objective,
                                              batch=batch, environment=run.environment,
                                              gate=gate_failures(stored_results(run.extra))))
