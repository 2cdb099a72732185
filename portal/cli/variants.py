"""Compression commands: ``compress`` one variant, ``compare`` all of them and advise which to serve."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from .common import JsonOpt, emit, handles_errors, open_portal, progress_to_stderr, version_dict

if TYPE_CHECKING:
    from ..compress.variants import Comparison

__all__ = ["compare", "compress"]


@handles_errors
def compress(
    ref: Annotated[str, typer.Argument(help="Version to compress: name, name:3 or name@alias")],
    method: Annotated[str, typer.Option("--method", "-m", help="int8-dynamic, int8-static, fp16, prune or optimized")],
    calibration: Annotated[Path | None, typer.Option(
        help="int8-static: CSV, Parquet, npz or a folder of images (default: the version's reference data)")] = None,
    calibration_method: Annotated[str | None, typer.Option(
        "--calibration-method", help="int8-static: minmax (default), entropy or percentile")] = None,
    sparsity: Annotated[float | None, typer.Option(help="prune: share of weights set to zero, in (0, 1); default 0.5")] = None,
    per_channel: Annotated[bool, typer.Option("--per-channel", help="int8: one scale per output channel")] = False,
    op_types: Annotated[str | None, typer.Option("--op-types", help="int8: operators to quantize, comma-separated")] = None,
    block_ops: Annotated[str | None, typer.Option("--block-ops", help="fp16: operators kept in float32, comma-separated")] = None,
    level: Annotated[str | None, typer.Option(help="optimized: basic, extended (default) or all")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a compressed variant of a version (registered as the model's next version)."""
    from ..compress.variants import create_variant

    version = create_variant(
        open_portal(), ref, method, calibration=calibration, calibration_method=calibration_method, sparsity=sparsity,
        per_channel=True if per_channel else None, op_types=op_types.split(",") if op_types else None,
        block_ops=block_ops.split(",") if block_ops else None, level=level, progress=progress_to_stderr,
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
    methods: Annotated[str | None, typer.Option(help="Comma-separated methods (default: all)")] = None,
    calibration: Annotated[Path | None, typer.Option(help="int8-static calibration data (default: reference data)")] = None,
    tolerance: Annotated[float, typer.Option(help="Largest agreement loss accepted, e.g. 0.01 for 1%")] = 0.01,
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
            progress=progress_to_stderr,
        )
    emit(comparison.to_dict(), as_json, lambda: _comparison_text(comparison))
