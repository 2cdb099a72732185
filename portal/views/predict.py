"""How the Predict page feeds a version and reads its answers.

The input mode, the columns a table needs, how an uploaded table's columns
line up, results joined to their inputs, the top classes, chunked prediction.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..errors import InvalidInputError
from ..serving.images import is_image_signature
from ..serving.matching import match_names
from ..serving.signature import describe_columns
from ..storage.registry import ModelVersion

if TYPE_CHECKING:
    from ..core import Portal

__all__ = [
    "ColumnMatch",
    "input_columns",
    "input_mode",
    "join_results",
    "match_columns",
    "predict_in_chunks",
    "top_classes",
]


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


@dataclass(frozen=True)
class ColumnMatch:
    """How an uploaded table's columns line up with what the model needs."""

    expected: tuple[str, ...]
    missing: tuple[str, ...]
    extra: tuple[str, ...]
    positional: bool = False
    normalised: tuple[tuple[str, str], ...] = ()  # (model column, file column) matched by normalised name
    mapped: tuple[tuple[str, str], ...] = ()  # (model column, file column) the user chose

    @property
    def ok(self) -> bool:
        return not self.missing


def match_columns(
    version: ModelVersion, columns: Sequence[Any], *, column_map: Mapping[str, str] | None = None,
) -> ColumnMatch:
    """Compare a table's columns with the model's; a nameless 2-D input matches by count.

    Names match exactly, then by normalised spelling when unambiguous (as predicting
    does, see :mod:`portal.serving.matching`), after ``column_map`` (model column → file column).
    """
    names = [str(c) for c in columns]
    width = _positional_width(version)
    if width is not None and len(names) == width and not column_map:
        return ColumnMatch(tuple(names), (), (), positional=True)
    expected = input_columns(version)
    match = match_names(expected, names, mapping={k: v for k, v in (column_map or {}).items() if k in expected})
    used = set(match.found.values())
    extra = tuple(c for c in names if c not in used)
    mapped = tuple((k, v) for k, v in (column_map or {}).items() if match.found.get(k) == v)
    return ColumnMatch(tuple(expected), match.missing, extra, normalised=match.normalised, mapped=mapped)


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
