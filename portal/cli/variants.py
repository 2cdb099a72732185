"""Compression commands: ``compress`` one variant, ``compare`` all of them and advise which to serve."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..compress.methods import DEFAULT_METHODS, METHODS, REGISTRY
from ..compress.students.names import IMAGE_STUDENTS, STUDENTS, TABULAR_STUDENTS
from .common import JsonOpt, emit, handles_errors, open_portal, progress_to_stderr, version_dict

if TYPE_CHECKING:
    from ..compress.variants import Comparison

__all__ = ["compare", "compress"]

_METHOD_HELP = "; ".join(f"{m.name}: {m.help}" for m in REGISTRY.values())
_STUDENT_HELP = (f"distill: the student, one of {', '.join(STUDENTS)} (auto, the default, picks by model kind: "
                 f"{' or '.join(TABULAR_STUDENTS)} for tables, {', '.join(IMAGE_STUDENTS)} for images)")
_TRAIN_HELP = "distill: the training budget in seconds (default 60)"


@handles_errors
def compress(
    ref: Annotated[str, typer.Argument(help="Version to compress: name, name:3 or name@alias")],
    method: Annotated[str, typer.Option("--method", "-m", help=f"One of {', '.join(METHODS)} ({_METHOD_HELP})")],
    calibration: Annotated[Path | None, typer.Option(
        help="int8-static and int8-budgeted calibrate on it, distill trains on it: CSV, Parquet, npz or a folder "
             "of images (default: the version's reference data)")] = None,
    calibration_method: Annotated[str | None, typer.Option(
        "--calibration-method", help="int8-static: minmax (default), entropy or percentile")] = None,
    sparsity: Annotated[float | None, typer.Option(help="prune: share of weights set to zero, in (0, 1); default 0.5")] = None,
    per_channel: Annotated[bool, typer.Option("--per-channel", help="int8: one scale per output channel")] = False,
    op_types: Annotated[str | None, typer.Option("--op-types", help="int8: operators to quantize, comma-separated")] = None,
    block_ops: Annotated[str | None, typer.Option("--block-ops", help="fp16: operators kept in float32, comma-separated")] = None,
    level: Annotated[str | None, typer.Option(help="optimized: basic, extended (default) or all")] = None,
    student: Annotated[str | None, typer.Option(help=_STUDENT_HELP)] = None,
    train_seconds: Annotated[float | None, typer.Option("--train-seconds", help=_TRAIN_HELP)] = None,
    tolerance: Annotated[float | None, typer.Option(
        help="int8-budgeted: the largest agreement loss accepted, e.g. 0.01 for 1% (default)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a compressed variant of a version (registered as the model's next version)."""
    from ..compress.variants import create_variant

    version = create_variant(
        open_portal(), ref, method, calibration=calibration, calibration_method=calibration_method, sparsity=sparsity,
        per_channel=True if per_channel else None, op_types=op_types.split(",") if op_types else None,
        block_ops=block_ops.split(",") if block_ops else None, level=level, student=student,
        train_seconds=train_seconds, tolerance=tolerance, progress=progress_to_stderr,
    )
    details = version.meta.get("variant", {})
    data = {**version_dict(version), "method_params": version.method_params, **details}

    def text() -> str:
        lines = [f"created {version.ref} ({version.method} of {version.parent}), {version.size_bytes / 1024:.1f} KiB"]
        return "\n".join(lines + [f"  note: {note}" for note in details.get("notes", [])])

    emit(data, as_json, text)


def _comparison_text(comparison: Comparison) -> str:
    table = comparison.table()
    keep = [c for c in table.columns if not c.startswith("p95") and c not in ("Gzip size", "Peak memory")]
    lines = [table[keep].to_string(index=False, float_format=lambda v: f"{v:.4g}"), "", comparison.advice.summary]
    for verdict in comparison.advice.verdicts:
        lines.append(f"{verdict.ref} ({verdict.method}): {verdict.status}")
        lines += [f"  - {reason}" for reason in verdict.reasons]
    lines += [f"{method} not created: {reason}" for method, reason in comparison.refused.items()]
    if comparison.gate_rules:
        lines.append(f"evaluation gate: {'; '.join(comparison.gate_rules)}")
        for ref, result in comparison.gate.items():
            lines.append(f"  {ref}: {'PASSED' if result.passed else 'FAILED'}"
                         + ("" if result.passed else f" ({result.reason})"))
    lines += [f"note: {note}" for note in comparison.notes]
    env = comparison.run.environment
    lines.append(f"measured on {env.get('cpu')} (avx2={env.get('avx2')}, avx512={env.get('avx512')}, "
                 f"vnni={env.get('vnni')}), onnxruntime {env.get('onnxruntime')}, "
                 f"{comparison.run.dataset['rows']} rows of {comparison.run.dataset['source']}")
    if comparison.run.dataset.get("synthetic"):
        lines.append("the inputs were SYNTHETIC (generated from the signature): no accuracy is claimed")
    return "\n".join(lines)


@handles_errors
def compare(
    ref: Annotated[str, typer.Argument(help="Version whose variants to compare: name, name:3 or name@alias")],
    data: Annotated[Path | None, typer.Option(help="Evaluation data: CSV, Parquet, npz or an image folder (default: reference data, else synthetic inputs from the signature: speed, size and agreement only)")] = None,
    label_column: Annotated[str | None, typer.Option("--label-column", help="Column of true labels in --data")] = None,
    methods: Annotated[str | None, typer.Option(help=(
        f"Comma-separated, of {', '.join(METHODS)} (default: {', '.join(DEFAULT_METHODS)})"))] = None,
    calibration: Annotated[Path | None, typer.Option(
        help="Rows int8-static and int8-budgeted calibrate on and distill trains on (default: reference data)")] = None,
    tolerance: Annotated[float, typer.Option(
        help="Largest agreement loss accepted, e.g. 0.01 for 1% (also int8-budgeted's budget)")] = 0.01,
    gate: Annotated[list[str] | None, typer.Option("--gate", help=(
        "Evaluation-gate rule a variant must meet to be promoted, repeatable: e.g. accuracy>=0.95, "
        "accuracy>=parent-0.01, mae<=parent*1.05 (needs labels: --label-column or labelled reference data)"))] = None,
    student: Annotated[str, typer.Option(help=_STUDENT_HELP)] = "auto",
    train_seconds: Annotated[float, typer.Option("--train-seconds", help=_TRAIN_HELP)] = 60.0,
    objective: Annotated[str, typer.Option(help="latency or size")] = "latency",
    stored: Annotated[bool, typer.Option("--stored", help="Show the stored comparison; measure nothing")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Create the variants of a version, measure them side by side, and say which to serve."""
    from ..compress.variants import compare as run_compare
    from ..compress.variants import load_comparison
    from ..errors import NotFoundError

    p = open_portal()
    if stored:
        found = load_comparison(p, p.get(ref).ref, tolerance=tolerance, objective=objective)
        if found is None:
            raise NotFoundError(f"{ref} has no stored comparison; run `portal compare {ref}` first")
        comparison = found
    else:
        comparison = run_compare(
            p, ref, data=data, label_column=label_column, calibration=calibration, tolerance=tolerance,
            objective=objective, methods=[m.strip() for m in methods.split(",")] if methods else None,
            gate=gate or None, student=student, train_seconds=train_seconds, progress=progress_to_stderr,
        )
    emit(comparison.to_dict(), as_json, lambda: _comparison_text(comparison))
