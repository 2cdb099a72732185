"""Compressed variants of an ONNX model: the rules of every method, and the child's one entry point.

    check_params(name, given)                parent: validate and complete the parameters
    check_applicable(name, info, params)     parent: refuse, before any work, what cannot apply
    build_variant(job, progress)             sandboxed child: run the method's builder, check the result

Each method's defaults, checks and builder live in its record
(:mod:`portal.compress.methods`); these three functions apply them the same way
for all. The parent decides from the version's stored description (operators,
opsets), so a refusal costs nothing; the child does the heavy work on files in
its scratch folder (see :mod:`portal.compress._worker`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import onnx

from ..errors import InvalidInputError, InvalidModelError
from .graphdiff import variant_diff
from .methods import (
    CALIBRATION_METHODS,
    DYNAMIC_OP_TYPES,
    METHODS,
    OPTIMIZATION_LEVELS,
    QUANT_OPSET,
    WEIGHTED_OPS,
    Progress,
    Work,
    method,
    operators,
)

__all__ = [
    "CALIBRATION_METHODS",
    "DYNAMIC_OP_TYPES",
    "METHODS",
    "OPTIMIZATION_LEVELS",
    "QUANT_OPSET",
    "WEIGHTED_OPS",
    "build_variant",
    "check_applicable",
    "check_params",
]


# -- parent side: parameters and applicability --------------------------------------
def check_params(name: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """The complete, checked parameters of the method ``name`` (defaults filled in).

    Raises:
        InvalidInputError: unknown method, a parameter that does not apply to it, or a bad value.
    """
    record = method(name)
    params = dict(record.defaults)
    extra = sorted(k for k, v in given.items() if v is not None and k not in params)
    if extra:
        raise InvalidInputError(
            f"{', '.join(extra)} does not apply to {name}; it takes {', '.join(params) or 'no parameters'}"
        )
    params.update({k: v for k, v in given.items() if v is not None})
    return record.check(params)


def check_applicable(name: str, info: Mapping[str, Any], params: Mapping[str, Any]) -> None:
    """Refuse the method ``name`` on a graph it cannot apply to, saying why (no work done yet).

    Raises:
        InvalidModelError: the method does not apply to this graph.
    """
    method(name).applies(operators(info), params)


# -- child side: the work -------------------------------------------------------------
def build_variant(job: Mapping[str, Any], progress: Progress) -> dict[str, Any]:
    """Write the variant of ``job["src"]`` to ``job["dst"]``, check it, and describe it.

    Runs in the sandboxed child. Returns ``{"model", "info", "notes", "stats"}``.
    """
    from ..ingest.modelinfo import describe_model
    from ..ingest.testrun import TEST_RUN_KEY, run_synthetic

    work = Work(src=Path(job["src"]), dst=Path(job["dst"]), scratch=Path(job["scratch"]), params=job["params"],
                job=job, progress=progress)
    progress(f"starting {job['method']}")
    stats = method(job["method"]).build(work)
    progress("checking the variant in onnxruntime")
    info = describe_model(onnx.load(str(work.dst)), size_bytes=work.dst.stat().st_size)
    # the synthetic inputs ingest tries (zeros first), so a variant of a model whose inputs carry shapes
    # is checked like its parent was; a variant that no longer runs while its parent did is refused
    info[TEST_RUN_KEY] = run_synthetic(work.dst, onnx.load(str(work.dst)), info["signature"])
    if not info[TEST_RUN_KEY]["ran"] and job.get("parent_ran", True):
        raise InvalidModelError(f"the {job['method']} variant does not run in onnxruntime although its parent "
                                f"does: {info[TEST_RUN_KEY]['reason']}")
    stats.update(nodes_before=int(job.get("nodes_before", 0)), nodes_after=int(info["node_count"]))
    progress("comparing the variant's graph with its parent's")
    try:
        diff: dict[str, Any] | None = variant_diff(work.src, work.dst, method=job["method"], params=job["params"],
                                                   stats=stats)
    except Exception:  # noqa: BLE001 - the diff is a view of the build; the Compare page computes it again on demand
        diff = None
    progress("variant ready")
    return {"model": work.dst.name, "info": info, "notes": work.notes, "stats": stats, "diff": diff}
