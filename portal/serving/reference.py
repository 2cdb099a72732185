"""Image reference data as a table: model-input tensors in a form a parquet file holds well.

A version's reference data is one table (a parquet blob).  Tabular rows are kept
as they are.  Images are kept as the tensors the model takes, after its
preprocessing: a small input (at most :data:`MAX_PIXEL_COLUMNS` values, like the
64 pixels of an 8×8 digit) as one column per value, the way the digits demo keeps
them; a larger one as a single column ``tensor[3x224x224]`` of flattened float32
arrays, because parquet takes seconds per row to write 150,528 columns.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["MAX_PIXEL_COLUMNS", "images_frame", "tensor_column", "tensor_of"]

MAX_PIXEL_COLUMNS = 4096
_TENSOR = re.compile(r"^tensor\[(\d+(?:x\d+)*)\]$")


def images_frame(batch: np.ndarray, feature_names: Sequence[str] | None = None) -> pd.DataFrame:
    """A table of a preprocessed image batch ``(N, ...)``: pixel columns, or one tensor column."""
    rows, width = len(batch), int(np.prod(batch.shape[1:]))
    flat = np.ascontiguousarray(batch, dtype=np.float32).reshape(rows, width)
    if width <= MAX_PIXEL_COLUMNS:
        names = list(feature_names) if feature_names and len(feature_names) == width else [
            f"pixel_{i}" for i in range(width)]
        return pd.DataFrame(flat, columns=names)
    column = "tensor[" + "x".join(str(d) for d in batch.shape[1:]) + "]"
    return pd.DataFrame({column: list(flat)})


def tensor_column(frame: pd.DataFrame) -> str | None:
    """The name of the frame's tensor column (``tensor[3x224x224]``), if it has one."""
    return next((str(c) for c in frame.columns if _TENSOR.match(str(c))), None)


def tensor_of(frame: pd.DataFrame) -> np.ndarray | None:
    """The image batch a tensor column holds, shaped ``(N, *dims)`` (None: no tensor column)."""
    column = tensor_column(frame)
    if column is None:
        return None
    match = _TENSOR.match(column)
    assert match is not None
    dims = [int(d) for d in match.group(1).split("x")]
    values = [np.asarray(v, dtype=np.float32) for v in frame[column]]
    if not values:
        return np.zeros((0, *dims), dtype=np.float32)
    return np.stack(values).reshape(len(values), *dims)
