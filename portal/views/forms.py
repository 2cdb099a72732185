"""What the pages' forms check and prefill: registration and edit checks, name counts, the prediction form.

Checks raise the error the library would raise, before anything is written,
so a typo in a form keeps what the user staged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InvalidInputError
from ..ingest.metadata import build_version_meta, class_output
from ..serving.images import check_preprocessing
from ..serving.matching import match_names
from ..storage.refs import check_name
from ..storage.registry import ModelVersion
from .predict import input_columns

__all__ = [
    "FeatureField",
    "check_registration",
    "check_version_edit",
    "feature_fields",
    "names_note",
    "previous_alias_target",
    "row_values",
]

_MAX_CATEGORIES = 200
_FORM_MAX_FIELDS = 120


def check_registration(report: Any, name: str, metadata: Mapping[str, Any]) -> None:
    """Raise the error ``Portal.register`` would raise for this name and metadata.

    Checked before registering so that a typo in a form keeps the staged upload
    (``register`` discards it whatever happens).
    """
    check_name(name)
    build_version_meta(report, dict(metadata))
    if metadata.get("preprocessing") is not None:
        check_preprocessing(metadata["preprocessing"], report.info["signature"])


def check_version_edit(version: ModelVersion, feature_names: Sequence[str] | None,
                       class_labels: Sequence[str] | None) -> None:
    """Raise if edited feature names or class labels do not fit the version's signature."""
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
    found = class_output(dict(signature))  # [N, C], or [N, C, 1, 1] squeezed
    return found[1] if found else None


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


# -- the prediction form -------------------------------------------------------------
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
    named = _under_model_names(columns, reference)
    return [_field(name, dtypes[name], named) for name in columns]


def _under_model_names(columns: Sequence[str], frame: pd.DataFrame | None) -> pd.DataFrame | None:
    """``frame`` with its columns renamed to the model's where they match by normalised spelling.

    Reference data keeps the user's spelling (``malic acid``) while the model says ``malic_acid``:
    the form's defaults and a reference row must still reach that field.
    """
    if frame is None:
        return None
    renames = match_names(columns, [str(c) for c in frame.columns]).renames
    return frame.rename(columns=renames) if renames else frame


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
    named = _under_model_names([f.name for f in fields], reference)
    assert named is not None
    row = named.iloc[index]
    return {f.name: _cast_value(f, row[f.name]) if f.name in row.index else f.default for f in fields}
