"""Safe casts of user values to a tensor's dtype, and the short listings that refusals use.

A float is never silently truncated to an int, text is never silently turned
into NaN, and every refusal says where (the input or column) and what was
given.  :mod:`portal.serving.signature` and the batch reader share these.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InvalidInputError
from ..ingest.modelinfo import numpy_dtype

__all__ = ["as_array", "cast", "listing"]

_MAX_LISTED = 8


def listing(names: Sequence[str]) -> str:
    """The first few ``names`` quoted, then how many more (for messages)."""
    shown = ", ".join(repr(n) for n in list(names)[:_MAX_LISTED])
    more = len(names) - _MAX_LISTED
    return shown + (f" and {more} more" if more > 0 else "")


def as_array(values: Any, where: str) -> np.ndarray:
    """``np.asarray``, refusing ragged nested lists with a message instead of numpy's ValueError."""
    try:
        return np.asarray(values)
    except (ValueError, TypeError):
        raise InvalidInputError(
            f"{where}: nested lists must all have the same length (one row per sample, equal widths)"
        ) from None


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask.reshape(len(mask), -1).any(axis=1))[0]) if mask.ndim else 0


def _to_numeric(values: np.ndarray, where: str) -> np.ndarray:
    flat = values.reshape(-1)
    try:
        converted = pd.to_numeric(pd.Series(flat, dtype=object), errors="coerce").to_numpy(dtype=np.float64)
    except (TypeError, ValueError):  # cells holding lists, arrays or other containers
        raise InvalidInputError(f"{where} expects numbers, got nested values (lists or arrays in a cell)") from None
    bad = np.isnan(converted) & ~pd.isna(pd.Series(flat, dtype=object)).to_numpy()
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        rows = len(values) if values.ndim else 1
        value = flat[index].item() if isinstance(flat[index], np.generic) else flat[index]
        raise InvalidInputError(
            f"{where} expects numbers, got {value!r} (row {index // max(1, flat.size // max(1, rows))}); "
            "fix or remove the non-numeric values"
        )
    return converted.reshape(values.shape)


def _check_finite(values: np.ndarray, where: str) -> None:
    finite = np.isfinite(values)
    if not finite.all():
        row = _first_bad(~finite)
        bad_rows = int((~finite).reshape(len(values), -1).any(axis=1).sum()) if values.ndim else 1
        kind = "NaN (a missing value)" if np.isnan(values).any() else "an infinite value"
        raise InvalidInputError(
            f"{where} has {kind} in {bad_rows} row(s), first at row {row}; fill or drop those rows"
        )


def cast(values: Any, dtype_name: str, where: str, *, allow_nan: bool = False) -> np.ndarray:
    """Cast ``values`` to the tensor dtype ``dtype_name`` without losing information."""
    arr = values if isinstance(values, np.ndarray) else as_array(values, where)
    if dtype_name == "string":
        if arr.dtype.kind in "OUS":
            if arr.dtype.kind == "O" and pd.isna(pd.Series(arr.reshape(-1))).any():
                raise InvalidInputError(f"{where} has a missing value; give every row a text value")
            return arr.astype(str).astype(object) if arr.dtype.kind != "O" else arr
        return arr.astype(str).astype(object)
    want = numpy_dtype(dtype_name)
    if arr.dtype == want:
        if want.kind == "f" and not allow_nan:
            _check_finite(arr, where)
        return arr
    if arr.dtype.kind in "OUS":
        arr = _to_numeric(arr, where)
    if arr.dtype.kind in "mM":
        raise InvalidInputError(f"{where} expects {dtype_name} numbers, got dates or durations; convert them first")
    if arr.dtype.kind == "c":
        raise InvalidInputError(f"{where} expects {dtype_name} numbers, got complex numbers")
    if want.kind == "f":
        out = arr.astype(want)
        if not allow_nan:
            _check_finite(out, where)
        return out
    if want.kind in "iu":
        if arr.dtype.kind == "f":
            _check_finite(arr, where)
            if not np.array_equal(arr, np.round(arr)):
                raise InvalidInputError(
                    f"{where} expects integers ({dtype_name}), got fractional values; "
                    "round them yourself if that is what you mean"
                )
        info = np.iinfo(want)
        if arr.size and (arr.min() < info.min or arr.max() > info.max):
            raise InvalidInputError(f"{where} has values outside the {dtype_name} range [{info.min}, {info.max}]")
        return arr.astype(want)
    if want.kind == "b":
        if arr.dtype.kind in "iuf" and not np.isin(arr, (0, 1)).all():
            raise InvalidInputError(f"{where} expects booleans (0/1, true/false)")
        return arr.astype(bool)
    return arr.astype(want)
