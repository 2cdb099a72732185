"""Plain-data views the pages render: tables, form defaults, column matching.

No streamlit here, so every rule a page follows (what a form's defaults are,
which columns a batch file lacks, how two versions differ) is testable
without a browser and reusable by the REST API.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import InvalidInputError
from ..core import suggest_name
from ..serving.images import is_image_signature
from ..ingest.metadata import parse_list, parse_shape  # the pages parse what users type with these
from ..storage.registry import ModelSummary, ModelVersion
from ..serving.signature import describe_columns

__all__ = [
    "ColumnMatch",
    "FeatureField",
    "check_registration",
    "check_version_edit",
    "demote_headings",
    "previous_alias_target",
    "compare_versions",
    "describe_shape",
    "feature_fields",
    "format_bytes",
    "input_columns",
    "input_mode",
    "join_results",
    "latest_versions",
    "names_note",
    "match_columns",
    "models_frame",
    "operators_frame",
    "parse_list",
    "parse_shape",
    "predict_in_chunks",
    "row_values",
    "search_models",
    "signature_frame",
    "suggest_name",
    "summary_line",
    "top_classes",
    "versions_frame",
]

if TYPE_CHECKING:
    from ..core import Portal

_MAX_CATEGORIES = 200
_FORM_MAX_FIELDS = 120


# -- formatting ------------------------------------------------------------------
def format_bytes(size: int | float) -> str:
    """``1536`` → ``"1.5 KB"`` (powers of 1024, one decimal above bytes)."""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if abs(value) < 1024 or unit == "GB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"  # pragma: no cover - loop always returns


def describe_shape(shape: Sequence[Any] | None) -> str:
    """``["batch", 30]`` → ``"[batch, 30]"``; unknown dims shown as ``?``."""
    if shape is None:
        return "any"
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def summary_line(description: str, *, width: int = 120) -> str:
    """The first prose line of a markdown description (headings stripped)."""
    for line in description.splitlines():
        text = line.strip().lstrip("#").strip().strip("*_`")
        if text and not text.startswith("|"):
            return text if len(text) <= width else text[: width - 1] + "…"
    return ""


def demote_headings(markdown: str, *, levels: int = 2) -> str:
    """Push markdown headings ``levels`` down (``# Title`` → ``### Title``) to nest a card in a page."""
    lines, fenced = [], False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if not fenced and line.startswith("#"):
            line = "#" * levels + line
        lines.append(line)
    return "\n".join(lines)


def check_registration(report: Any, name: str, metadata: Mapping[str, Any]) -> None:
    """Raise the error ``Portal.register`` would raise for this name and metadata.

    Checked before registering so that a typo in a form keeps the staged upload
    (``register`` discards it whatever happens).
    """
    from ..ingest.metadata import build_version_meta
    from ..storage.refs import check_name

    check_name(name)
    build_version_meta(report, dict(metadata))


def check_version_edit(version: ModelVersion, feature_names: Sequence[str] | None,
                       class_labels: Sequence[str] | None) -> None:
    """Raise if edited feature names or class labels do not fit the version's signature."""
    from types import SimpleNamespace

    from ..ingest.metadata import build_version_meta

    report = SimpleNamespace(info=version.info, suggested={})
    build_version_meta(report, {"feature_names": feature_names, "class_labels": class_labels, "task": version.task})


def previous_alias_target(events: Sequence[Any]) -> int | None:
    """The version an alias pointed at before its last move, from its ``alias.set`` audit events."""
    for event in events:
        if event.action == "alias.set":
            previous = event.detail.get("previous")
            return int(previous) if previous is not None else None
    return None


def _expected_columns(signature: Mapping[str, Any]) -> int | None:
    inputs = signature.get("inputs", [])
    if len(inputs) > 1:
        return len(inputs)
    shape = (inputs[0].get("shape") or []) if inputs else []
    return shape[1] if len(shape) == 2 and isinstance(shape[1], int) else None


def _expected_classes(signature: Mapping[str, Any]) -> int | None:
    for out in signature.get("outputs", []):
        shape = out.get("shape") or []
        if out.get("kind") == "tensor" and str(out.get("dtype", "")).startswith("float") and len(shape) == 2:
            return shape[1] if isinstance(shape[1], int) and shape[1] >= 2 else None
    return None


def names_note(names: Sequence[str], signature: Mapping[str, Any], *, kind: str) -> tuple[str, bool]:
    """``("4 feature names · the model takes 4 columns", True)``; False when the counts disagree.

    Args:
        kind: ``"features"`` (compared with the input columns) or ``"labels"`` (with the output classes).
    """
    what = "feature names" if kind == "features" else "class labels"
    expected = _expected_columns(signature) if kind == "features" else _expected_classes(signature)
    unit = "columns" if kind == "features" else "classes"
    text = f"{len(names)} {what}"
    if expected is None:
        return text, True
    return f"{text} · the model has {expected} {unit}", not names or len(names) == expected


# -- tables --------------------------------------------------------------------------
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


def versions_frame(model: ModelSummary, variants: Mapping[str, Sequence[str]] | None = None) -> pd.DataFrame:
    """One row per version, newest first, with its aliases, parent and variants."""
    variants = variants or {}
    rows = [{
        "Version": v.version,
        "Registered": pd.Timestamp(v.created_at),
        "By": v.created_by,
        "Format": v.source_format,
        "Size": v.size_bytes,
        "Parameters": int(v.info.get("parameters", 0)),
        "Aliases": ", ".join(f"@{a}" for a in v.aliases),
        "Parent": v.parent or "",
        "Method": v.method or "",
        "Variants": ", ".join(variants.get(v.ref, ())),
    } for v in model.versions]
    columns = ["Version", "Registered", "By", "Format", "Size", "Parameters", "Aliases", "Parent", "Method", "Variants"]
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
        "Parameters": f"{int(info.get('parameters', 0)):,}",
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


# -- predict -----------------------------------------------------------------------
def input_mode(version: ModelVersion) -> str:
    """How the Predict page feeds ``version``: ``"image"``, ``"tabular"`` or ``"tensor"``."""
    signature = version.signature
    specs = signature.get("inputs", [])
    if any(s.get("kind") != "tensor" for s in specs) or not specs:
        return "tensor"
    if is_image_signature(signature, version.preprocessing):
        return "image"
    if all(len(s.get("shape") or [0, 0]) <= 2 for s in specs):
        return "tabular"
    return "tensor"


def _positional_width(version: ModelVersion) -> int | None:
    """Width of a single 2-D input that has no feature names (columns matched by position)."""
    specs = version.signature["inputs"]
    if len(specs) != 1 or version.feature_names:
        return None
    shape = specs[0].get("shape") or []
    return shape[1] if len(shape) == 2 and isinstance(shape[1], int) and shape[1] > 1 else None


def input_columns(version: ModelVersion) -> list[str]:
    """The column names a table for ``version`` needs (generated when the file names none)."""
    width = _positional_width(version)
    if width is not None:
        return [f"feature_{i}" for i in range(width)]
    return describe_columns(version.signature, version.feature_names)


def _column_dtypes(version: ModelVersion, columns: Sequence[str]) -> dict[str, str]:
    specs = version.signature["inputs"]
    by_name = {s["name"]: s.get("dtype", "float32") for s in specs}
    if all(c in by_name for c in columns):
        return {c: by_name[c] for c in columns}
    return {c: specs[0].get("dtype", "float32") for c in columns}


@dataclass(frozen=True)
class FeatureField:
    """One field of the prediction form."""

    name: str
    kind: str  # "number", "integer", "boolean", "category" or "text"
    default: Any
    options: tuple[str, ...] = ()


def _numeric_default(series: pd.Series | None) -> float:
    if series is None:
        return 0.0
    values = pd.to_numeric(series, errors="coerce").dropna()
    return float(values.median()) if len(values) else 0.0


def _field(name: str, dtype: str, reference: pd.DataFrame | None) -> FeatureField:
    column = reference[name] if reference is not None and name in reference.columns else None
    if dtype == "string":
        if column is None:
            return FeatureField(name, "text", "")
        seen = column.dropna().astype(str)
        options = tuple(sorted(seen.unique().tolist()))[:_MAX_CATEGORIES]
        default = seen.mode().iloc[0] if len(seen) else ""
        return FeatureField(name, "category" if options else "text", default, options)
    if dtype == "bool":
        return FeatureField(name, "boolean", bool(round(_numeric_default(column))))
    if np.dtype(dtype).kind in "iu":
        return FeatureField(name, "integer", int(round(_numeric_default(column))))
    return FeatureField(name, "number", _numeric_default(column))


def feature_fields(version: ModelVersion, reference: pd.DataFrame | None) -> list[FeatureField]:
    """The form fields for ``version``: medians and seen categories of the reference data.

    Raises:
        InvalidInputError: the model takes more columns than a form can sensibly show.
    """
    columns = input_columns(version)
    if len(columns) > _FORM_MAX_FIELDS:
        raise InvalidInputError(
            f"this model takes {len(columns)} columns, too many for a form; upload a CSV or Parquet file instead"
        )
    dtypes = _column_dtypes(version, columns)
    return [_field(name, dtypes[name], reference) for name in columns]


def _cast_value(field: FeatureField, value: Any) -> Any:
    if field.kind in ("category", "text"):
        return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
    number = pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0]
    if pd.isna(number):
        return field.default
    if field.kind == "integer":
        return int(round(float(number)))
    if field.kind == "boolean":
        return bool(number)
    return float(number)


def row_values(fields: Sequence[FeatureField], reference: pd.DataFrame, index: int) -> dict[str, Any]:
    """The form values of reference row ``index`` (fields the row lacks keep their defaults)."""
    if not 0 <= index < len(reference):
        raise InvalidInputError(f"row {index} does not exist: the reference data has rows 0 to {len(reference) - 1}")
    row = reference.iloc[index]
    return {f.name: _cast_value(f, row[f.name]) if f.name in row.index else f.default for f in fields}


@dataclass(frozen=True)
class ColumnMatch:
    """How an uploaded table's columns line up with what the model needs."""

    expected: tuple[str, ...]
    missing: tuple[str, ...]
    extra: tuple[str, ...]
    positional: bool = False

    @property
    def ok(self) -> bool:
        return not self.missing


def match_columns(version: ModelVersion, columns: Sequence[Any]) -> ColumnMatch:
    """Compare a table's columns with the model's; a nameless 2-D input matches by count."""
    names = [str(c) for c in columns]
    width = _positional_width(version)
    if width is not None and len(names) == width:
        return ColumnMatch(tuple(names), (), (), positional=True)
    expected = input_columns(version)
    missing = tuple(c for c in expected if c not in names)
    extra = tuple(c for c in names if c not in expected)
    return ColumnMatch(tuple(expected), missing, extra)


def join_results(inputs: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    """The input rows with the result columns appended (clashing names get ``_predicted``)."""
    left = inputs.reset_index(drop=True)
    right = results.reset_index(drop=True)
    right = right.rename(columns={c: f"{c}_predicted" for c in right.columns if c in left.columns})
    return pd.concat([left, right], axis=1)


def top_classes(result_row: Mapping[str, Any], *, k: int = 5) -> dict[str, float]:
    """``{class label: probability}`` of the ``k`` most probable classes in a result row."""
    probs = {str(key)[len("proba_"):]: float(value) for key, value in result_row.items()
             if str(key).startswith("proba_")}
    return dict(sorted(probs.items(), key=lambda kv: -kv[1])[:k])


def predict_in_chunks(
    portal: Portal,
    version: ModelVersion,
    frame: pd.DataFrame,
    *,
    chunks: int = 20,
    min_rows: int = 2_000,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[pd.DataFrame, float]:
    """Predict ``frame`` in about ``chunks`` calls (so a progress bar can move); columns the
    model does not use are ignored. Returns the result table and the time spent predicting.
    """
    total = len(frame)
    if total == 0:
        raise InvalidInputError("the file has no data rows; give at least one row to predict")
    step = max(min_rows, math.ceil(total / chunks))
    parts, spent = [], 0.0
    for start in range(0, total, step):
        began = time.perf_counter()
        prediction = portal.predict(version, frame.iloc[start : start + step], extra_columns="ignore")
        parts.append(prediction.to_frame())
        spent += time.perf_counter() - began
        if progress:
            progress(min(start + step, total), total)
    return pd.concat(parts, ignore_index=True), spent
