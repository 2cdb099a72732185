"""Inputs generated from a version's signature, for measuring when there is no real data.

Speed, size and how far a variant's outputs move from its parent's can be
measured on any inputs the model accepts; accuracy cannot, so a data set made
here is flagged ``synthetic`` and never carries labels.  Values are seeded:
float tables standard-normal (standardized features), images uniform on [0, 1)
(after the usual ToTensor), integers small non-negative codes, booleans random,
strings empty.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvalidInputError
from ..ingest.modelinfo import numpy_dtype

__all__ = ["SYNTHETIC_SOURCE", "synthetic_feeds", "synthetic_rows"]

SYNTHETIC_SOURCE = "synthetic inputs generated from the signature (no reference data)"
_TABLE_ROWS = 256
_TENSOR_ROWS = 32
_TENSOR_VALUES = 16 * 1024**2  # values per input across all rows: bounds the memory of a big image model
_IMAGE_SIDE = 224


def synthetic_rows(signature: dict[str, Any]) -> int:
    """How many rows to generate: many for small table rows, few for big tensors."""
    ranks = [len(spec.get("shape") or []) for spec in signature.get("inputs", [])]
    return _TABLE_ROWS if all(r <= 2 for r in ranks) else _TENSOR_ROWS


def synthetic_feeds(
    signature: dict[str, Any],
    *,
    rows: int,
    feature_names: list[str] | None = None,
    preprocessing: dict[str, Any] | None = None,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """``rows`` seeded inputs per input of ``signature`` (the batch dimension first).

    Raises:
        InvalidInputError: an input is not a tensor (a sequence or map): nothing to generate.
    """
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    single = len(signature.get("inputs", [])) == 1
    for spec in signature.get("inputs", []):
        if spec.get("kind", "tensor") != "tensor":
            raise InvalidInputError(
                f"input {spec['name']!r} is a {spec.get('kind')}, not a tensor: synthetic inputs cannot be made; "
                "upload evaluation data or add reference data on the Models page"
            )
        dims = _dims(spec.get("shape") or [], feature_names if single else None, preprocessing)
        count = rows
        if dims and count * int(np.prod(dims)) > _TENSOR_VALUES:
            count = max(1, _TENSOR_VALUES // int(np.prod(dims)))
        feeds[spec["name"]] = _values(rng, spec.get("dtype", "float32"), [count, *dims])
    if feeds and len({len(v) for v in feeds.values()}) > 1:  # every input the same number of rows
        least = min(len(v) for v in feeds.values())
        feeds = {k: v[:least] for k, v in feeds.items()}
    return feeds


def _dims(shape: list[Any], feature_names: list[str] | None, prep: dict[str, Any] | None) -> list[int]:
    """The non-batch dimensions, symbolic ones filled from the feature names, the image size or 1."""
    tail = list(shape[1:])
    if len(shape) == 2 and not isinstance(tail[0], int):
        return [len(feature_names) if feature_names else 1]
    if len(shape) == 4:
        width, height = (prep or {}).get("size") or [_IMAGE_SIDE, _IMAGE_SIDE]
        nhwc = (prep or {}).get("layout") == "NHWC"
        fills = [height, width, 3] if nhwc else [3, height, width]
        return [d if isinstance(d, int) and d > 0 else int(f) for d, f in zip(tail, fills, strict=True)]
    return [d if isinstance(d, int) and d > 0 else 1 for d in tail]


def _values(rng: np.random.Generator, dtype: str, shape: list[int]) -> np.ndarray:
    if dtype == "string":
        return np.full(shape, "", dtype=object)
    if dtype == "bool":
        return rng.random(shape) < 0.5
    target = numpy_dtype(dtype)
    if target.kind in "iu":
        return rng.integers(0, 4, size=shape).astype(target)
    if len(shape) >= 4:
        return rng.random(shape, dtype=np.float32).astype(target)
    return rng.standard_normal(shape).astype(target)
