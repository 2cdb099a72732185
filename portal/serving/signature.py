"""Turn user data into onnxruntime feeds that match a version's signature.

Accepted: a dict of arrays (by input name), one record as a dict of feature
values, a pandas DataFrame, a list of records, or a bare array for a
single-input model.  Casts are safe: a float is never silently truncated to an
int, a string is never silently turned into NaN, and every refusal says what
was expected and what was given.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InvalidInputError
from ..ingest.modelinfo import numpy_dtype
from .casting import as_array, cast, listing
from .matching import NameMatch, match_inputs

__all__ = ["FastPlan", "Feeds", "cast", "coerce", "column_layout", "describe_columns", "fixed_batch", "shared_batch", "tensor_inputs"]


@dataclass(frozen=True)
class Feeds:
    """Arrays keyed by input name, and the number of rows (batch size)."""

    arrays: dict[str, np.ndarray]
    rows: int
    unused_columns: tuple[str, ...] = ()
    batched: bool = True  # False: the arrays go to the model as given, in one run (see ``shared_batch``)
    matched_columns: tuple[tuple[str, str], ...] = ()  # (model column, file column) matched by normalised name


def tensor_inputs(signature: dict[str, Any]) -> list[dict[str, Any]]:
    """The input specs, refusing models whose inputs are not tensors."""
    specs = signature["inputs"]
    for spec in specs:
        if spec.get("kind") != "tensor":
            raise InvalidInputError(f"input {spec['name']!r} is a {spec.get('kind')}, not a tensor; it cannot be fed")
    return specs


def fixed_batch(signature: dict[str, Any]) -> int | None:
    """The fixed batch size of the first input (a model exported with batch 1), or None if dynamic."""
    inputs = signature["inputs"]
    shape = inputs[0].get("shape") if inputs else None
    return int(shape[0]) if shape and isinstance(shape[0], int) and shape[0] >= 1 else None


def shared_batch(signature: dict[str, Any]) -> bool:
    """Whether the inputs declare one shared batch (first) dimension, so their rows must agree.

    They do when there is one input, or every input has a first dimension and those are
    the same symbol or the same size (unknown ones match any).  Inputs of different fixed
    sizes, differently named symbols or a scalar input say nothing of the kind: such
    feeds go to the model as given.
    """
    specs = signature["inputs"]
    if len(specs) <= 1:
        return True
    firsts = []
    for spec in specs:
        shape = spec.get("shape")
        if shape is None:
            continue
        if not shape:
            return False
        if shape[0] is not None:
            firsts.append(shape[0])
    return len(set(firsts)) <= 1


def describe_columns(signature: dict[str, Any], feature_names: Sequence[str] | None) -> list[str]:
    """The column names a DataFrame must have for this signature."""
    specs = tensor_inputs(signature)
    if len(specs) == 1 and feature_names and _rank(specs[0]) == 2:
        return list(feature_names)
    return [s["name"] for s in specs]


def _rank(spec: dict[str, Any]) -> int | None:
    shape = spec.get("shape")
    return None if shape is None else len(shape)


def _width(spec: dict[str, Any]) -> int | None:
    shape = spec.get("shape")
    if shape and len(shape) == 2 and isinstance(shape[1], int):
        return shape[1]
    return None


def _check_shape(arr: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    shape = spec.get("shape")
    name = spec["name"]
    if shape is None:
        return arr
    if arr.ndim == len(shape) - 1 and len(shape) >= 1 and len(shape) == 2 and shape[1] == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim == len(shape) - 1 and arr.shape == tuple(d for d in shape[1:] if isinstance(d, int)):
        arr = arr.reshape((1, *arr.shape))  # one sample given without its batch dimension
    expected = "[" + ", ".join(str(d) if isinstance(d, int) else (d or "?") for d in shape) + "]"
    if arr.ndim != len(shape):
        raise InvalidInputError(f"input {name!r}: expected shape {expected}, got {list(arr.shape)}")
    for axis, (want, got) in enumerate(zip(shape, arr.shape, strict=True)):
        if isinstance(want, int) and want != got and not (axis == 0 and want == 1):
            raise InvalidInputError(
                f"input {name!r}: expected shape {expected}, got {list(arr.shape)} (axis {axis} must be {want})"
            )
    return arr


# -- data forms ----------------------------------------------------------------
def _from_mapping(
    specs: list[dict[str, Any]], data: Mapping[str, Any], allow_nan: bool, extra_columns: str, shared: bool = True
) -> Feeds:
    names = [s["name"] for s in specs]
    missing = [n for n in names if n not in data]
    if missing:
        raise InvalidInputError(f"missing input(s) {listing(missing)}; the model takes {listing(names)}")
    extra = [k for k in data if k not in names]
    if extra and extra_columns == "error":
        raise InvalidInputError(f"unknown input(s) {listing(extra)}; the model takes {listing(names)}")
    arrays = {}
    for spec in specs:
        arr = cast(data[spec["name"]], spec["dtype"], f"input {spec['name']!r}", allow_nan=allow_nan)
        arrays[spec["name"]] = _check_shape(arr, spec)
    if not shared:
        sizes = {a.shape[0] if a.ndim else 1 for a in arrays.values()}
        return Feeds(arrays, sizes.pop() if len(sizes) == 1 else 1, tuple(extra), batched=False)
    return Feeds(arrays, _rows(arrays), tuple(extra))


def _rows(arrays: dict[str, np.ndarray]) -> int:
    sizes = {a.shape[0] if a.ndim else 1 for a in arrays.values()}
    if len(sizes) > 1:
        raise InvalidInputError(f"inputs have different numbers of rows: {sorted(sizes)}")
    return sizes.pop() if sizes else 0


def _align(
    specs: list[dict[str, Any]], frame: pd.DataFrame, feature_names: Sequence[str] | None,
    column_map: Mapping[str, str] | None,
) -> NameMatch:
    """Rename the frame's columns that match a model column by normalised spelling (or by ``column_map``)."""
    match = match_inputs([s["name"] for s in specs], feature_names, list(frame.columns), column_map=column_map)
    if match.renames:
        frame.rename(columns=match.renames, inplace=True)
    return match


def _from_frame(
    specs: list[dict[str, Any]],
    frame: pd.DataFrame,
    feature_names: Sequence[str] | None,
    allow_nan: bool,
    extra_columns: str,
    column_map: Mapping[str, str] | None = None,
) -> Feeds:
    if len(frame) == 0:
        raise InvalidInputError("the data has no rows; give at least one row to predict")
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    match = _align(specs, frame, feature_names, column_map)
    columns = list(frame.columns)
    feeds = _frame_feeds(specs, frame, columns, feature_names, allow_nan, extra_columns, match)
    return Feeds(feeds.arrays, feeds.rows, feeds.unused_columns, matched_columns=match.normalised)


def column_layout(
    specs: list[dict[str, Any]], columns: Sequence[str], feature_names: Sequence[str] | None
) -> tuple[str, list[str]]:
    """How a table's columns feed ``specs`` (the rules of ``coerce`` and of the batch reader's plan).

    Returns ``(layout, wanted)``: "per-column" (a column per input), "pixels" (one fixed N-D input
    from the feature-named columns, e.g. 64 → 1×8×8), "table" (one 2-D input: the feature names, or
    every column when as many as its width) or "inputs" (the input names), and the columns needed.

    Raises:
        InvalidInputError: one 2-D input, no feature names, and not as many columns as its width.
    """
    names = [s["name"] for s in specs]
    single = specs[0] if len(specs) == 1 else None
    if all(n in columns for n in names) and not (
        single and feature_names and _rank(single) == 2 and names[0] not in feature_names and len(feature_names) > 1
    ):
        return "per-column", names
    if single is not None and feature_names and (_rank(single) or 0) > 2 and _fixed_size(single) == len(feature_names):
        return "pixels", list(feature_names)
    if single is not None and _rank(single) == 2:
        if feature_names:
            return "table", list(feature_names)
        if _width(single) == len(columns):
            return "table", list(columns)
        raise InvalidInputError(
            f"input {single['name']!r} expects {_width(single) or 'a fixed number of'} columns, got "
            f"{len(columns)}; set the version's feature names so columns can be matched by name"
        )
    return "inputs", names


def _frame_feeds(
    specs: list[dict[str, Any]], frame: pd.DataFrame, columns: list[str], feature_names: Sequence[str] | None,
    allow_nan: bool, extra_columns: str, match: NameMatch,
) -> Feeds:
    layout, wanted = column_layout(specs, columns, feature_names)
    per_column = layout == "per-column"
    if layout == "pixels":
        return _from_pixel_frame(specs[0], frame, wanted, allow_nan, extra_columns)
    missing = [c for c in wanted if c not in columns]
    if missing:
        unmatched = NameMatch({}, missing=tuple(missing), ambiguous=match.ambiguous)
        raise InvalidInputError(unmatched.missing_message(wanted))
    extra = tuple(c for c in columns if c not in wanted)
    if extra and extra_columns == "error":
        raise InvalidInputError(
            f"unexpected column(s) {listing(extra)}; remove them, or ignore extra columns"
        )
    if per_column:
        arrays = {}
        for spec in specs:
            arr = cast(frame[spec["name"]].to_numpy(), spec["dtype"], f"column {spec['name']!r}", allow_nan=allow_nan)
            arr = _check_shape(arr, spec)
            if arr.shape[0] != len(frame):  # one value per row cannot fill a wider input: never a single sample
                raise InvalidInputError(
                    f"column {spec['name']!r} holds one value per row, but input {spec['name']!r} takes "
                    f"shape {list(spec['shape'])} per batch; pass it as an array instead of a table column"
                )
            arrays[spec["name"]] = arr
        return Feeds(arrays, len(frame), extra)
    (single,) = specs  # "table": one 2-D input ("inputs" with names missing was refused above)
    block = frame[wanted]
    if single["dtype"] != "string":
        kinds = [getattr(d, "kind", "O") for d in block.dtypes]  # one call, not one per column
        for col, kind in zip(wanted, kinds):  # per-column errors name the column, not the whole block
            if kind not in "biuf":
                cast(block[col].to_numpy(), single["dtype"], f"column {col!r}", allow_nan=allow_nan)
        numeric = all(kind in "biuf" for kind in kinds)
        values = block.to_numpy(dtype=numpy_dtype(single["dtype"]) if numeric else None)
    else:
        values = block.to_numpy()
    try:
        arr = cast(values, single["dtype"], f"input {single['name']!r}", allow_nan=allow_nan)
    except InvalidInputError as exc:
        raise _name_column(exc, block, single, allow_nan) from None
    return Feeds({single["name"]: _check_shape(arr, single)}, len(frame), extra)


def _fixed_size(spec: dict[str, Any]) -> int | None:
    tail = (spec.get("shape") or [])[1:]
    return int(np.prod(tail)) if tail and all(isinstance(d, int) for d in tail) else None


def _from_pixel_frame(
    spec: dict[str, Any], frame: pd.DataFrame, wanted: list[str], allow_nan: bool, extra_columns: str
) -> Feeds:
    """One row of named values per sample, reshaped to a fixed N-D input (e.g. 64 pixels → 1×8×8)."""
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise InvalidInputError(f"missing column(s) {listing(missing)}; the model needs {listing(wanted)}")
    extra = tuple(c for c in frame.columns if c not in wanted)
    if extra and extra_columns == "error":
        raise InvalidInputError(f"unexpected column(s) {listing(extra)}; remove them, or ignore extra columns")
    block = frame[wanted]
    for col in wanted:
        if block[col].dtype.kind not in "biuf":
            cast(block[col].to_numpy(), spec["dtype"], f"column {col!r}", allow_nan=allow_nan)
    arr = cast(block.to_numpy(), spec["dtype"], f"input {spec['name']!r}", allow_nan=allow_nan)
    tail = tuple(spec["shape"][1:])
    return Feeds({spec["name"]: arr.reshape((len(frame), *tail))}, len(frame), extra)


def _name_column(exc: InvalidInputError, block: pd.DataFrame, spec: dict[str, Any], allow_nan: bool) -> InvalidInputError:
    for col in block.columns:
        try:
            cast(block[col].to_numpy(), spec["dtype"], f"column {col!r}", allow_nan=allow_nan)
        except InvalidInputError as inner:
            return inner
    return exc


class FastPlan:
    """Precomputed checks for the common case: a dict of ready numpy arrays.

    Keeps ``predict`` within a few microseconds of a raw ``InferenceSession.run``.
    """

    __slots__ = ("count", "checks")

    def __init__(self, checks: list[tuple[str, np.dtype, int | None, tuple[tuple[int, int], ...], bool]]) -> None:
        self.checks = checks
        self.count = len(checks)

    @classmethod
    def build(cls, signature: dict[str, Any]) -> FastPlan | None:
        specs = signature["inputs"]
        if not shared_batch(signature) or any(s.get("kind") != "tensor" or s.get("dtype") == "string" for s in specs):
            return None
        checks = []
        for spec in specs:
            shape = spec.get("shape")
            dtype = numpy_dtype(spec["dtype"])
            fixed = tuple((axis, d) for axis, d in enumerate(shape or []) if axis > 0 and isinstance(d, int))
            checks.append((spec["name"], dtype, None if shape is None else len(shape), fixed, dtype.kind == "f"))
        return cls(checks)

    def feeds(self, data: Any, allow_nan: bool) -> Feeds | None:
        """Feeds when ``data`` already matches exactly, else None (take the slow path)."""
        if type(data) is not dict or len(data) != self.count:
            return None
        rows = -1
        for name, dtype, ndim, fixed, is_float in self.checks:
            arr = data.get(name)
            if type(arr) is not np.ndarray or arr.dtype != dtype or arr.ndim == 0:
                return None
            shape = arr.shape
            if ndim is not None and len(shape) != ndim:
                return None
            for axis, size in fixed:
                if shape[axis] != size:
                    return None
            if rows != shape[0]:
                if rows != -1 or shape[0] == 0:
                    return None
                rows = shape[0]
            if is_float and not allow_nan and not math.isfinite(arr.sum()):
                return None  # the slow path names the bad value (or accepts a mere overflow)
        return Feeds(data, rows)


def _is_sequence(value: Any) -> bool:
    """Whether a record value holds several values (not ``np.ndim``: it raises on ragged lists)."""
    return isinstance(value, (list, tuple, pd.Series)) or (isinstance(value, np.ndarray) and value.ndim > 0)


def _columns_frame(data: Mapping[str, Any]) -> pd.DataFrame:
    """A table from ``{column: values}``; every column must hold a list of the same length."""
    try:
        return pd.DataFrame({k: list(v) for k, v in data.items()})
    except (TypeError, ValueError):
        raise InvalidInputError(
            "columns given as a dict need the same number of values each (or one value each, for one row)"
        ) from None


def coerce(
    signature: dict[str, Any],
    data: Any,
    *,
    feature_names: Sequence[str] | None = None,
    allow_nan: bool = False,
    extra_columns: str = "error",
    column_map: Mapping[str, str] | None = None,
) -> Feeds:
    """Feeds for ``signature`` from ``data`` (see the module docstring for forms).

    Table columns match model columns by exact name, then by normalised spelling when
    that is unambiguous (listed in ``Feeds.matched_columns``); see :mod:`portal.serving.matching`.
    A dict of arrays goes to the model as given when the inputs share no batch dimension
    (:func:`shared_batch`).

    Args:
        extra_columns: ``"error"`` (default) refuses columns the model does not use;
            ``"ignore"`` drops them (listed in ``Feeds.unused_columns``).
        column_map: ``{model column: table column}`` chosen by the user, applied before any matching.
    """
    if extra_columns not in ("error", "ignore"):
        raise InvalidInputError(f"extra_columns must be 'error' or 'ignore' (not {extra_columns!r})")
    specs = tensor_inputs(signature)
    if isinstance(data, pd.DataFrame):
        return _from_frame(specs, data.copy(deep=False), feature_names, allow_nan, extra_columns, column_map)
    if isinstance(data, Mapping):
        names = {s["name"] for s in specs}
        if data and not set(data) & names:
            scalar = not any(_is_sequence(v) for v in data.values())
            frame = pd.DataFrame([dict(data)]) if scalar else _columns_frame(data)
            return _from_frame(specs, frame, feature_names, allow_nan, extra_columns, column_map)
        return _from_mapping(specs, data, allow_nan, extra_columns, shared_batch(signature))
    if isinstance(data, list) and data and all(isinstance(r, Mapping) for r in data):
        return _from_frame(specs, pd.DataFrame.from_records(data), feature_names, allow_nan, extra_columns,
                           column_map)
    if isinstance(data, (np.ndarray, list, tuple)):
        if len(specs) != 1:
            raise InvalidInputError(
                f"the model has {len(specs)} inputs ({listing([s['name'] for s in specs])}); "
                "pass a dict of arrays or a table with those columns"
            )
        arr = as_array(data, "the data")
        if arr.size == 0:
            raise InvalidInputError("the data has no rows; give at least one row to predict")
        return _from_mapping(specs, {specs[0]["name"]: arr}, allow_nan, extra_columns)
    raise InvalidInputError(
        f"cannot predict on a {type(data).__name__}: pass a dict of arrays, a DataFrame, "
        "a list of records, an array, or a file (.csv, .parquet, .json, .npz, .npy, image)"
    )
