"""Which table columns feed which model input: the batch reader's plan, checked before any row is read.

The same rules and messages as :func:`portal.serving.signature.coerce`: one
table input named by the feature names or by position, pixel columns of a
fixed-size input, or one input per column.  The inputs the fast path can build
straight from pyarrow columns are listed; any other signature is left to pandas
and ``coerce``, chunk by chunk.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from ...errors import InvalidInputError
from ..casting import listing
from ..matching import NameMatch, match_inputs
from ..signature import column_layout, tensor_inputs

__all__ = ["FLOAT_TYPES", "INT_TYPES", "TABLE_SUFFIXES", "ColumnPlan", "InputColumns", "plan_columns"]

TABLE_SUFFIXES = (".csv", ".parquet")
FLOAT_TYPES = {"float16": pa.float32(), "float32": pa.float32(), "float64": pa.float64()}
INT_TYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")


@dataclass(frozen=True)
class InputColumns:
    """The table columns that make one model input, its dtype and its shape per row."""

    name: str
    columns: tuple[str, ...]
    dtype: str
    shape: tuple[int, ...]  # per row: () for [N], (1,) for [N, 1], (k,) for a table, the tail for pixels


@dataclass(frozen=True)
class ColumnPlan:
    """Which columns a table must have, which it has to spare, and how they feed the inputs."""

    inputs: tuple[InputColumns, ...] | None  # None: the general path (pandas + coerce, chunk by chunk)
    needed: tuple[str, ...]  # the file's columns the model reads
    unused: tuple[str, ...]
    renames: dict[str, str] = field(default_factory=dict)  # file column -> the model column it feeds
    matched: tuple[tuple[str, str], ...] = ()  # (model column, file column) matched by normalised name


def _rank(spec: dict[str, Any]) -> int | None:
    shape = spec.get("shape")
    return None if shape is None else len(shape)


def _tail(spec: dict[str, Any]) -> tuple[Any, ...]:
    return tuple((spec.get("shape") or [])[1:])


def plan_columns(signature: dict[str, Any], feature_names: Sequence[str] | None, columns: Sequence[str],
                 extra_columns: str, *, column_map: Mapping[str, str] | None = None) -> ColumnPlan:
    """Match a table's columns to the inputs, with the same rules and messages as ``coerce``.

    Columns match by exact name, then by normalised spelling when unambiguous, after
    ``column_map`` (``{model column: file column}``, the user's choice); see
    :mod:`portal.serving.matching`.
    """
    if extra_columns not in ("error", "ignore"):
        raise InvalidInputError(f"extra_columns must be 'error' or 'ignore' (not {extra_columns!r})")
    specs = tensor_inputs(signature)
    match = match_inputs([s["name"] for s in specs], feature_names, [str(c) for c in columns], column_map=column_map)
    renames = match.renames
    source = {renames.get(c, c): c for c in columns}  # model column -> file column
    columns = [renames.get(c, c) for c in columns]
    layout, wanted = column_layout(specs, columns, feature_names)
    per_column, pixels = layout == "per-column", layout == "pixels"
    missing = [c for c in wanted if c not in columns]
    if missing:
        unmatched = NameMatch({}, missing=tuple(missing), ambiguous=match.ambiguous)
        raise InvalidInputError(unmatched.missing_message(wanted))
    extra = tuple(source[c] for c in columns if c not in wanted)
    if extra and extra_columns == "error":
        raise InvalidInputError(f"unexpected column(s) {listing(extra)}; remove them, or ignore extra columns")
    wanted = [source[c] for c in wanted]  # the file's own names, which the reader reads
    return ColumnPlan(_fast_inputs(specs, wanted, per_column, pixels), tuple(wanted), extra, renames, match.normalised)


def _numeric(dtype: str) -> bool:
    return dtype in FLOAT_TYPES or dtype in INT_TYPES


def _fast_inputs(specs: list[dict[str, Any]], wanted: list[str], per_column: bool,
                 pixels: bool) -> tuple[InputColumns, ...] | None:
    """The inputs the fast path can build, or None where only ``coerce`` knows the rules."""
    if per_column:
        inputs = []
        for spec in specs:
            shape = spec.get("shape")
            if not (_numeric(spec["dtype"]) or spec["dtype"] == "string"):
                return None
            if shape is not None and len(shape) == 1:
                per_row: tuple[int, ...] = ()
            elif shape is not None and len(shape) == 2 and shape[1] == 1:
                per_row = (1,)
            else:
                return None
            inputs.append(InputColumns(spec["name"], (wanted[len(inputs)],), spec["dtype"], per_row))
        return tuple(inputs)
    (spec,) = specs
    if not _numeric(spec["dtype"]):
        return None
    tail = _tail(spec)
    if pixels:
        return (InputColumns(spec["name"], tuple(wanted), spec["dtype"], tuple(int(d) for d in tail)),)
    if _rank(spec) == 2 and (not isinstance(tail[0], int) or tail[0] == len(wanted)):
        return (InputColumns(spec["name"], tuple(wanted), spec["dtype"], (len(wanted),)),)
    return None
