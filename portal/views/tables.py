"""Tables the pages render: signatures, model search, latest uploads, versions, two versions compared."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from ..errors import InvalidInputError
from ..storage.registry import ModelSummary, ModelVersion
from .formatting import describe_shape, format_bytes, format_parameters, summary_line

__all__ = [
    "compare_versions",
    "latest_versions",
    "models_frame",
    "operators_frame",
    "search_models",
    "signature_frame",
    "variant_text",
    "versions_frame",
]


def signature_frame(signature: Mapping[str, Any]) -> pd.DataFrame:
    """One row per input and output: direction, name, kind, type, shape."""
    rows = []
    for direction in ("inputs", "outputs"):
        for spec in signature.get(direction, []):
            kind = spec.get("kind", "tensor")
            if kind == "sequence_map":
                dtype = f"map {spec.get('key_dtype')} → {spec.get('value_dtype')}"
                shape = "one map per row"
            else:
                dtype = spec.get("dtype", "")
                shape = describe_shape(spec.get("shape")) if kind == "tensor" else ""
            rows.append({"Direction": direction[:-1], "Name": spec["name"], "Kind": kind,
                         "Type": dtype, "Shape": shape})
    return pd.DataFrame(rows, columns=["Direction", "Name", "Kind", "Type", "Shape"])


def models_frame(models: Sequence[ModelSummary]) -> pd.DataFrame:
    """One row per model with what the table shows (raw numbers and datetimes)."""
    rows = []
    for model in models:
        latest = model.latest
        rows.append({
            "Model": model.name,
            "Versions": len(model.versions),
            "Aliases": ", ".join(f"@{a}→v{n}" for a, n in model.aliases.items()),
            "Task": model.task,
            "Tags": ", ".join(model.tags),
            "Size": latest.size_bytes if latest else 0,
            "Updated": pd.Timestamp(model.updated_at),
            "Description": summary_line(model.description),
        })
    columns = ["Model", "Versions", "Aliases", "Task", "Tags", "Size", "Updated", "Description"]
    return pd.DataFrame(rows, columns=columns)


_SORTS = {
    "Name": ("Model", True),
    "Last updated": ("Updated", False),
    "Most versions": ("Versions", False),
    "Largest": ("Size", False),
}


def _haystack(model: ModelSummary) -> str:
    parts = [model.name, model.task, model.description, *model.tags, *(f"@{a}" for a in model.aliases)]
    return " ".join(parts).lower()


def search_models(models: Sequence[ModelSummary], query: str = "", *, sort: str = "Name") -> pd.DataFrame:
    """The table of the models whose name, task, tags, aliases or description hold every word of ``query``."""
    if sort not in _SORTS:
        raise InvalidInputError(f"invalid sort {sort!r}: expected one of {', '.join(_SORTS)}")
    words = query.lower().split()
    chosen = [m for m in models if all(w in _haystack(m) for w in words)]
    frame = models_frame(chosen)
    column, ascending = _SORTS[sort]
    key = (lambda s: s.str.lower()) if column == "Model" else None
    return frame.sort_values(column, ascending=ascending, key=key, kind="stable").reset_index(drop=True)


def latest_versions(models: Sequence[ModelSummary], *, limit: int = 8) -> pd.DataFrame:
    """The most recently registered versions across all models."""
    versions = sorted((v for m in models for v in m.versions), key=lambda v: v.created_at, reverse=True)[:limit]
    rows = [{
        "Version": v.ref, "Registered": pd.Timestamp(v.created_at), "By": v.created_by,
        "Format": v.source_format, "Size": v.size_bytes, "Task": v.task,
    } for v in versions]
    return pd.DataFrame(rows, columns=["Version", "Registered", "By", "Format", "Size", "Task"])


def variant_text(version: ModelVersion) -> str:
    """``"int8-dynamic of iris:1"`` for a variant (``"..., parent deleted"`` without one); "" for an upload."""
    if not version.is_variant:
        return ""
    return f"{version.method} of {version.parent}" if version.parent else f"{version.method}, parent deleted"


def _kind(version: ModelVersion, latest: ModelVersion | None) -> str:
    kind = f"variant: {variant_text(version)}" if version.is_variant else "upload"
    return kind + (" · latest" if latest is not None and version.ref == latest.ref else "")


def versions_frame(model: ModelSummary, variants: Mapping[str, Sequence[str]] | None = None) -> pd.DataFrame:
    """One row per version, newest first, with what it is (upload or variant; the latest marked), aliases, links."""
    variants = variants or {}
    latest = model.latest
    rows = [{
        "Version": v.version,
        "Kind": _kind(v, latest),
        "Registered": pd.Timestamp(v.created_at),
        "By": v.created_by,
        "Format": v.source_format,
        "Size": v.size_bytes,
        "Parameters": format_parameters(v.info),
        "Aliases": ", ".join(f"@{a}" for a in v.aliases),
        "Parent": v.parent or "",
        "Method": v.method or "",
        "Variants": ", ".join(variants.get(v.ref, ())),
    } for v in model.versions]
    columns = ["Version", "Kind", "Registered", "By", "Format", "Size", "Parameters", "Aliases", "Parent", "Method",
               "Variants"]
    return pd.DataFrame(rows, columns=columns)


def _specs_text(specs: Sequence[Mapping[str, Any]]) -> str:
    parts = []
    for spec in specs:
        if spec.get("kind") == "tensor":
            parts.append(f"{spec['name']}: {spec.get('dtype')} {describe_shape(spec.get('shape'))}")
        else:
            parts.append(f"{spec['name']}: {spec.get('kind')}")
    return "; ".join(parts)


def _names_text(names: Sequence[str] | None, *, shown: int = 12) -> str:
    if not names:
        return "—"
    more = len(names) - shown
    return ", ".join(names[:shown]) + (f" … (+{more})" if more > 0 else "")


def _version_facts(v: ModelVersion) -> dict[str, str]:
    info = v.info
    return {
        "Registered": f"{v.created_at:%Y-%m-%d %H:%M} by {v.created_by or '?'}",
        "Source format": v.source_format,
        "Size": format_bytes(v.size_bytes),
        "Parameters": format_parameters(info),
        "Nodes": str(info.get("node_count", sum((info.get("operators") or {}).values()))),
        "Opset": ", ".join(f"{d} {n}" for d, n in (info.get("opset") or {}).items()) or "—",
        "IR version": str(info.get("ir_version", "—")),
        "Producer": info.get("producer") or "—",
        "Inputs": _specs_text(v.signature["inputs"]),
        "Outputs": _specs_text(v.signature["outputs"]),
        "Task": v.task,
        "Feature names": _names_text(v.feature_names),
        "Class labels": _names_text(v.class_labels),
        "Aliases": ", ".join(f"@{a}" for a in v.aliases) or "—",
        "Parent": f"{v.parent} ({v.method})" if v.parent else "—",
        "SHA-256": v.blob_sha[:16] + "…",
    }


def compare_versions(first: ModelVersion, second: ModelVersion) -> pd.DataFrame:
    """Side-by-side facts of two versions, with a column saying where they differ."""
    a, b = _version_facts(first), _version_facts(second)
    left, right = first.ref, second.ref
    if left == right:
        right = f"{right} (again)"
    rows = [{"Property": key, left: a[key], right: b[key], "Differs": "" if a[key] == b[key] else "≠"}
            for key in a if key != "Registered" or a[key] != b[key]]
    return pd.DataFrame(rows, columns=["Property", left, right, "Differs"])


def operators_frame(first: Mapping[str, int], second: Mapping[str, int], labels: Sequence[str]) -> pd.DataFrame:
    """Operator counts of two versions and the change, most frequent first."""
    names = sorted(set(first) | set(second), key=lambda n: (-(first.get(n, 0) + second.get(n, 0)), n))
    rows = [{"Operator": n, labels[0]: first.get(n, 0), labels[1]: second.get(n, 0),
             "Change": second.get(n, 0) - first.get(n, 0)} for n in names]
    return pd.DataFrame(rows, columns=["Operator", labels[0], labels[1], "Change"])
