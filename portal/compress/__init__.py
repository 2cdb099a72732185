"""Compressed variants of ONNX models: build them, measure them against their parent, advise which to serve.

This package owns compression: the methods (int8 dynamic, static and
budgeted, fp16, prune, optimized, distill), each one :class:`~portal.compress.methods.Method` record with
its parameters, checks, builder, help and advice; building a variant in the
sandboxed child and registering it as the model's next version; measuring a
parent and its variants side by side (size, memory, interleaved latency,
agreement); storing those figures; and the advice on which variant to serve. It
asks the portal only for what :class:`~portal.services.ModelServices` offers, so
it never imports :mod:`portal.core`; ``Portal.variants`` is a :class:`Variants`.

    >>> from portal.compress import METHODS, method, Variants
    >>> method("prune").help, method("prune").defaults
    >>> Variants(portal).compare("digits:1", tolerance=0.01).advice.summary

Modules:

    service      Variants: the operations below bound to one ModelServices (what Portal.variants returns)
    variants     create_variant, lineage, measure_versions, compare, load_comparison (the library entry points)
    comparison   Comparison: a measured run with its advice, table, flipped rows and JSON
    methods      the Method records, one module per method family, and the registry (METHODS, method())
    rules        check_params / check_applicable in the parent, build_variant in the child
    datasets     evaluation and calibration sets: any data form into feeds checked against a signature
    synthetic    seeded inputs generated from a signature, when a version has no reference data
    measure      VersionMeasurement; the measuring children (outputs + memory, interleaved timing); stored runs
    agreement    what outputs mean (labels, probabilities) and how far a variant's are from its parent's
    advice       which variant to serve within a tolerance, and why the others fall short
    gate         the evaluation gate: metric thresholds on labelled rows a variant must meet to be promoted
    graphdiff    the graph diff: each parent node's fate in a variant, the nodes added, counts by op type
    graphmatch   how graphdiff matches the nodes of two graphs (by name, then written, then read tensors)
    diffs        graph_diff(services, ref): the stored diff of a variant, or computed in the sandboxed child
    students     distillation's students (mlp, trees, small CNN, torchvision), trained in the sandboxed child
    speed        the speed call from paired rounds (faster, no gain, slower, too close to call) and when to stop timing
    figures      plotly figures of a comparison (latency vs agreement, Pareto front)
    arrays       npz files the parent and the child hand each other; gzip size
    _worker      the sandboxed child's entry point (python -m portal.compress._worker)

Names load on first use, so the sandboxed child, which starts in this package,
imports only what its job needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .advice import Advice, Verdict, advise
    from .arrays import gzip_size, load_arrays, save_arrays
    from .comparison import Comparison
    from .datasets import DataSet, load_data
    from .measure import StoredRun, VersionMeasurement
    from .methods import (
        CALIBRATION_METHODS,
        DYNAMIC_OP_TYPES,
        METHODS,
        OPTIMIZATION_LEVELS,
        REGISTRY,
        Method,
        MethodAdvice,
        method,
    )
    from .rules import build_variant, check_applicable, check_params
    from .service import Variants
    from .variants import compare, create_variant, lineage, load_comparison, measure_versions

_LAZY = {
    "Advice": ".advice", "Verdict": ".advice", "advise": ".advice",
    "gzip_size": ".arrays", "load_arrays": ".arrays", "save_arrays": ".arrays",
    "Comparison": ".comparison",
    "DataSet": ".datasets", "load_data": ".datasets",
    "StoredRun": ".measure", "VersionMeasurement": ".measure",
    "CALIBRATION_METHODS": ".methods", "DYNAMIC_OP_TYPES": ".methods", "METHODS": ".methods",
    "OPTIMIZATION_LEVELS": ".methods", "REGISTRY": ".methods", "Method": ".methods", "MethodAdvice": ".methods",
    "method": ".methods",
    "build_variant": ".rules", "check_applicable": ".rules", "check_params": ".rules",
    "Variants": ".service",
    "compare": ".variants", "create_variant": ".variants", "lineage": ".variants",
    "load_comparison": ".variants", "measure_versions": ".variants",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'portal.compress' has no attribute {name!r}")


__all__ = [
    "CALIBRATION_METHODS",
    "DYNAMIC_OP_TYPES",
    "METHODS",
    "OPTIMIZATION_LEVELS",
    "REGISTRY",
    "Advice",
    "Comparison",
    "DataSet",
    "Method",
    "MethodAdvice",
    "StoredRun",
    "Variants",
    "Verdict",
    "VersionMeasurement",
    "advise",
    "build_variant",
    "check_applicable",
    "check_params",
    "compare",
    "create_variant",
    "gzip_size",
    "lineage",
    "load_arrays",
    "load_comparison",
    "load_data",
    "measure_versions",
    "method",
    "save_arrays",
]
