"""Tabular data for explanations: rows and background as one numeric matrix.

SHAP's maskers work on a float matrix. A version's inputs may be one float
tensor, several one-column tensors, or string columns (the wine demo), so
:class:`TabularCodec` lays every input column side by side in a float64 matrix
("explanation space"): numbers as they are, strings as integer codes into the
sorted categories seen in the rows and the background. A masked matrix only
ever mixes values of real rows, so every code decodes back to a real category,
and :meth:`TabularCodec.feeds` turns it into the feeds ``Portal.predict`` runs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InvalidInputError
from ..serving.images import is_image_signature
from ..ingest.modelinfo import numpy_dtype
from ..storage.registry import ModelVersion
from ..serving.signature import Feeds, tensor_inputs

__all__ = ["ROWS_AS_BACKGROUND", "BackgroundInfo", "Column", "TabularCodec", "hash_array", "summarize_background"]

BACKGROUND_METHODS = ("sample", "kmeans")
ROWS_AS_BACKGROUND = "rows being explained"  # BackgroundInfo.source when they are their own background


@dataclass(frozen=True)
class Column:
    """One feature: a column of one ONNX input."""

    name: str
    input: str
    index: int
    dtype: str
    categories: tuple[str, ...] | None = None  # string inputs only

    @property
    def categorical(self) -> bool:
        return self.categories is not None


def _input_width(spec: dict[str, Any], feeds: Sequence[Feeds]) -> int:
    shape = spec.get("shape")
    if shape is not None and len(shape) not in (1, 2):
        raise InvalidInputError(
            f"input {spec['name']!r} has shape {shape}; tabular explanations need inputs of shape [N, features]"
        )
    if shape is not None and len(shape) == 2 and isinstance(shape[1], int):
        return shape[1]
    arr = feeds[0].arrays[spec["name"]]
    return 1 if arr.ndim == 1 else int(np.prod(arr.shape[1:]))


def _column_names(spec: dict[str, Any], width: int, single: bool, feature_names: Sequence[str] | None) -> list[str]:
    if single and feature_names and len(feature_names) == width:
        return [str(n) for n in feature_names]
    if width == 1:
        return [spec["name"]]
    if single:  # the names the portal's forms and CSV templates use for positional columns
        return [f"feature_{i}" for i in range(width)]
    return [f"{spec['name']}[{i}]" for i in range(width)]


def check_tabular(version: ModelVersion) -> None:
    """Refuse image models early, with a message that says what to give instead."""
    specs = version.signature.get("inputs", [])
    if is_image_signature(version.signature, version.preprocessing) and len(specs[0].get("shape") or []) == 4:
        shape = "×".join(str(d) for d in specs[0]["shape"][1:])
        raise InvalidInputError(
            f"{version.ref} takes images ({shape}), not table rows; explain it with image files"
        )


class TabularCodec:
    """Maps feeds to a float64 matrix of features and back."""

    def __init__(self, version: ModelVersion, columns: list[Column]) -> None:
        self.version = version
        self.columns = columns
        self.feature_names = [c.name for c in columns]
        self._specs = tensor_inputs(version.signature)
        self._lookup = {c.name: {v: i for i, v in enumerate(c.categories)} for c in columns if c.categories}
        # build() lays each input's columns out contiguously, so a slice (a view) picks them
        self._slices: dict[str, slice] = {}
        for j, col in enumerate(columns):
            start = self._slices[col.input].start if col.input in self._slices else j
            self._slices[col.input] = slice(start, j + 1)

    @classmethod
    def build(cls, version: ModelVersion, feeds: Sequence[Feeds]) -> TabularCodec:
        """Columns of ``version``; categories are those found in ``feeds`` (rows and background)."""
        check_tabular(version)
        specs = tensor_inputs(version.signature)
        columns: list[Column] = []
        for spec in specs:
            width = _input_width(spec, feeds)
            names = _column_names(spec, width, len(specs) == 1, version.feature_names)
            for i, name in enumerate(names):
                categories = None
                if spec["dtype"] == "string":
                    seen: set[str] = set()
                    for f in feeds:
                        seen.update(str(v) for v in f.arrays[spec["name"]].reshape(f.rows, -1)[:, i])
                    categories = tuple(sorted(seen))
                columns.append(Column(name, spec["name"], i, spec["dtype"], categories))
        return cls(version, columns)

    @property
    def categorical(self) -> list[bool]:
        return [c.categorical for c in self.columns]

    def matrix(self, feeds: Feeds) -> np.ndarray:
        """The float64 matrix (rows × features) of ``feeds``."""
        out = np.empty((feeds.rows, len(self.columns)), dtype=np.float64)
        for j, col in enumerate(self.columns):
            values = feeds.arrays[col.input].reshape(feeds.rows, -1)[:, col.index]
            if col.categories is not None:
                lookup = self._lookup[col.name]
                try:
                    out[:, j] = [lookup[str(v)] for v in values]
                except KeyError as exc:
                    raise InvalidInputError(f"column {col.name!r}: unknown category {exc.args[0]!r}") from None
            else:
                out[:, j] = values.astype(np.float64)
        return out

    def feeds(self, matrix: np.ndarray) -> dict[str, np.ndarray]:
        """Feeds for ``Portal.predict`` from a matrix in explanation space."""
        rows = len(matrix)
        arrays: dict[str, np.ndarray] = {}
        for spec in self._specs:
            cols = self._slices[spec["name"]]
            block = matrix[:, cols]
            arrays[spec["name"]] = self._cast(block, spec, cols).reshape(self._shape(spec, rows, block.shape[1]))
        return arrays

    def _cast(self, block: np.ndarray, spec: dict[str, Any], cols: slice) -> np.ndarray:
        if spec["dtype"] == "string":
            out = np.empty(block.shape, dtype=object)
            for k, j in enumerate(range(cols.start, cols.stop)):
                cats = np.asarray(self.columns[j].categories, dtype=object)
                out[:, k] = cats[np.rint(block[:, k]).astype(np.int64)]
            return out
        dtype = numpy_dtype(spec["dtype"])
        if dtype.kind in "iub":
            return np.rint(block).astype(dtype)
        return block.astype(dtype)

    @staticmethod
    def _shape(spec: dict[str, Any], rows: int, width: int) -> tuple[int, ...]:
        shape = spec.get("shape")
        if shape is not None and len(shape) == 1:
            return (rows,)
        return (rows, width)

    def frame(self, matrix: np.ndarray) -> pd.DataFrame:
        """Feature values for display: numbers, and categories as their strings."""
        data: dict[str, Any] = {}
        for j, col in enumerate(self.columns):
            if col.categories is not None:
                data[col.name] = np.asarray(col.categories, dtype=object)[np.rint(matrix[:, j]).astype(np.int64)]
            else:
                data[col.name] = matrix[:, j]
        return pd.DataFrame(data)

    def signature_key(self) -> list[Any]:
        """What the matrix layout depends on (part of cache keys)."""
        return [[c.name, c.input, c.index, c.dtype, list(c.categories or ())] for c in self.columns]


def hash_array(array: np.ndarray, *extra: Any) -> str:
    """A content hash of ``array`` (shape, dtype and bytes) and ``extra`` values."""
    digest = hashlib.sha256()
    digest.update(repr((array.shape, str(array.dtype), extra)).encode())
    digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


# -- background --------------------------------------------------------------------
@dataclass(frozen=True)
class BackgroundInfo:
    """Which background the explanation used, and how it was summarized."""

    source: str  # "reference data of name:1" or "uploaded table"
    method: str  # "all", "sample" or "kmeans"
    rows: int  # rows used
    available: int  # rows given (after dropping incomplete ones)
    dropped: int = 0  # rows dropped for missing values
    seed: int = 0

    def describe(self) -> str:
        """One sentence for the page, the CLI and the report."""
        dropped = f" ({self.dropped} row(s) with missing values dropped)" if self.dropped else ""
        if self.source == ROWS_AS_BACKGROUND:
            return self._describe_rows(dropped)
        if self.method == "all":
            how = f"all {self.rows} rows"
        elif self.method == "sample":
            how = f"{self.rows} of {self.available} rows, sampled at random (seed {self.seed})"
        else:
            how = f"{self.rows} k-means representatives of {self.available} rows (nearest real row to each centre)"
        return f"Background: {how} of the {self.source}{dropped}."

    def _describe_rows(self, dropped: str) -> str:
        return (f"Background: {_describe_rows_method(self)}{dropped}, because this version has no reference data "
                "(add some on the Models page for a background that does not depend on the rows you pick).")


def _describe_rows_method(info: BackgroundInfo) -> str:
    if info.method == "all":
        return f"the {info.rows} rows being explained"
    how = "sampled at random" if info.method == "sample" else "k-means representatives"
    return f"{info.rows} of the {info.available} rows being explained ({how})"


def summarize_background(matrix: np.ndarray, *, size: int, method: str, seed: int) -> tuple[np.ndarray, str]:
    """At most ``size`` rows of ``matrix``: a random sample or k-means representatives."""
    if method not in BACKGROUND_METHODS:
        raise InvalidInputError(f"invalid background method, expected 'sample' or 'kmeans' (not {method!r})")
    if size < 1:
        raise InvalidInputError(f"background size must be at least 1 (not {size})")
    if len(matrix) <= size:
        return matrix, "all"
    if method == "sample":
        index = np.sort(np.random.default_rng(seed).choice(len(matrix), size=size, replace=False))
        return matrix[index], "sample"
    return _kmeans_rows(matrix, size, seed), "kmeans"


def _kmeans_rows(matrix: np.ndarray, size: int, seed: int) -> np.ndarray:
    """The real row nearest to each k-means centre (so categorical codes stay valid)."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import pairwise_distances_argmin

    scale = matrix.std(axis=0)
    scale[scale == 0] = 1.0
    scaled = (matrix - matrix.mean(axis=0)) / scale
    model = KMeans(n_clusters=size, n_init=3, random_state=seed).fit(scaled)
    index = np.unique(pairwise_distances_argmin(model.cluster_centers_, scaled))
    return matrix[index]
