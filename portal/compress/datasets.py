"""Evaluation and calibration sets for variants: feeds checked against a version's signature.

Accepted forms of ``data``: None (the version's reference data), a DataFrame, a
CSV / Parquet / JSON / npz / npy file, an image file or a folder of images, a
list of image paths or of ``(filename, bytes)`` uploads, a dict of arrays by
input name, or one array. Tables may hold a label column (kept apart, never fed
to the model) and, for an image model, one column per pixel (or one tensor column,
see :mod:`portal.serving.reference`). With ``synthetic=True`` a version without
reference data is measured on inputs generated from its signature
(:mod:`.synthetic`): such a set is flagged ``synthetic`` and has no labels.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InvalidInputError, PortalError
from ..serving.dataio import read_input
from ..serving.images import IMAGE_SUFFIXES
from ..serving.reference import tensor_of
from ..services import ModelServices
from ..storage.registry import ModelVersion
from .synthetic import SYNTHETIC_SOURCE, synthetic_feeds, synthetic_rows

__all__ = ["DataSet", "load_data"]

_LABEL_GUESSES = ("target", "label")


@dataclass(frozen=True)
class DataSet:
    """Feeds for a version, the labels if any, and where they came from."""

    arrays: dict[str, np.ndarray]
    rows: int
    labels: np.ndarray | None
    label_column: str | None
    source: str
    sha: str  # of the feeds and labels: two runs on the same rows share it
    synthetic: bool = False  # generated from the signature: speed, size and agreement only, no accuracy

    def describe(self) -> dict[str, Any]:
        return {"sha": self.sha, "rows": self.rows, "source": self.source, "label_column": self.label_column,
                "synthetic": self.synthetic}


def load_data(
    services: ModelServices,
    version: ModelVersion,
    data: Any,
    *,
    purpose: str,
    label_column: str | None = None,
    max_rows: int | None = None,
    spread: bool = False,
    synthetic: bool = False,
) -> DataSet:
    """Read ``data`` into feeds for ``version`` (see the module docstring for the forms).

    Args:
        purpose: "evaluation" or "calibration", used in messages.
        max_rows: keep at most this many rows: the first ones, or evenly spread with ``spread``.
        synthetic: with no ``data`` and no reference data, generate inputs from the signature
            (else that is an error).

    Raises:
        InvalidInputError: no data, empty data, wrong columns, shape or types (the message says which).
    """
    if synthetic and data is None and services.reference_frame(version.ref) is None:
        return _synthetic(version)
    source, raw = _read(services, version, data, purpose)
    if label_column is None and data is None and isinstance(raw, pd.DataFrame):
        label_column = _guess_label(raw, version)
    try:
        arrays, labels = _feeds(services, version, raw, label_column)
    except PortalError as exc:
        raise type(exc)(f"{purpose} data ({source}): {exc.message}") from None
    rows = len(next(iter(arrays.values())))
    if rows == 0:
        raise InvalidInputError(f"the {purpose} set ({source}) is empty; give at least one row")
    if max_rows is not None and rows > max_rows:
        keep = np.linspace(0, rows - 1, max_rows).round().astype(int) if spread else np.arange(max_rows)
        arrays = {k: v[keep] for k, v in arrays.items()}
        labels = labels[keep] if labels is not None else None
        source = f"{source}, {max_rows} of {rows} rows"
        rows = max_rows
    return DataSet(arrays, rows, labels, label_column if labels is not None else None, source, _digest(arrays, labels))


def _synthetic(version: ModelVersion) -> DataSet:
    arrays = synthetic_feeds(version.signature, rows=synthetic_rows(version.signature),
                             feature_names=version.feature_names, preprocessing=version.preprocessing)
    rows = len(next(iter(arrays.values())))
    return DataSet(arrays, rows, None, None, SYNTHETIC_SOURCE, _digest(arrays, None), synthetic=True)


def _read(services: ModelServices, version: ModelVersion, data: Any, purpose: str) -> tuple[str, Any]:
    if data is None:
        frame = services.reference_frame(version.ref)
        if frame is None:
            raise InvalidInputError(
                f"no {purpose} data: {version.ref} has no reference data; upload a CSV, Parquet or npz file "
                "(or images), or add reference data to the version on the Models page (Edit tab)"
            )
        return f"reference data of {version.ref}", frame
    if isinstance(data, (str, Path)):
        path = Path(data)
        if path.is_dir():
            images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not images:
                raise InvalidInputError(
                    f"the {purpose} folder {path.name!r} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            return f"{len(images)} images in {path.name}", services.images_to_array(version, images)
        if not path.is_file():
            raise InvalidInputError(f"no such {purpose} file: {path}")
        if path.suffix.lower() in IMAGE_SUFFIXES:
            return path.name, services.images_to_array(version, [path])
        return path.name, read_input(path)
    if isinstance(data, (list, tuple)) and data and isinstance(data[0], (tuple, str, Path, bytes)):
        return _read_many(services, version, data, purpose)
    return f"{type(data).__name__} given in memory", data


def _read_many(services: ModelServices, version: ModelVersion, items: Sequence[Any], purpose: str) -> tuple[str, Any]:
    named = [(item[0], item[1]) if isinstance(item, tuple) else (Path(item).name, item) for item in items]
    images = [n for n, _ in named if Path(str(n)).suffix.lower() in IMAGE_SUFFIXES]
    if len(images) == len(named):
        array = services.images_to_array(version, [c for _, c in named], [str(n) for n, _ in named])
        return f"{len(named)} images", array
    if len(named) == 1:
        name, content = named[0]
        return str(name), read_input(content, name=str(name)) if isinstance(content, bytes) else read_input(content)
    raise InvalidInputError(
        f"{purpose} data: give one table or array file (CSV, Parquet, npz), or images only "
        f"(not a mix of {len(named)} files)"
    )


def _guess_label(frame: pd.DataFrame, version: ModelVersion) -> str | None:
    features = set(version.feature_names or ()) | {s["name"] for s in version.signature["inputs"]}
    return next((c for c in _LABEL_GUESSES if c in frame.columns and c not in features), None)


def _feeds(
    services: ModelServices, version: ModelVersion, raw: Any, label_column: str | None
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    labels = None
    if label_column is not None:
        if isinstance(raw, pd.DataFrame) and label_column in raw.columns:
            labels = raw[label_column].to_numpy()
            raw = raw.drop(columns=[label_column])
        elif isinstance(raw, dict) and label_column in raw:
            raw = dict(raw)
            labels = np.asarray(raw.pop(label_column))
        else:
            raise InvalidInputError(f"no label column {label_column!r} in the data")
    if isinstance(raw, pd.DataFrame):
        if raw.empty:
            raise InvalidInputError("the table has no rows")
        tensor = tensor_of(raw)
        if tensor is not None:
            return {version.signature["inputs"][0]["name"]: tensor}, labels
        image = _pixel_columns(version, raw)
        if image is not None:
            return image, labels
    feeds = services.coerce(version, raw, extra_columns="ignore")
    return dict(feeds.arrays), labels


def _pixel_columns(version: ModelVersion, frame: pd.DataFrame) -> dict[str, np.ndarray] | None:
    """A table with one column per value of a single fixed-shape tensor input (e.g. 64 pixels of 1×8×8)."""
    inputs = version.signature["inputs"]
    if len(inputs) != 1 or not inputs[0].get("shape") or len(inputs[0]["shape"]) <= 2:
        return None
    spec = inputs[0]
    tail = spec["shape"][1:]
    if not all(isinstance(d, int) for d in tail):
        return None
    width = int(np.prod(tail))
    names = version.feature_names if version.feature_names and len(version.feature_names) == width else None
    if names is None:
        if len(frame.columns) != width:
            raise InvalidInputError(
                f"input {spec['name']!r} takes {width} values per row ({'×'.join(map(str, tail))}); the table has "
                f"{len(frame.columns)} columns"
            )
        names = list(frame.columns)
    missing = [c for c in names if c not in frame.columns]
    if missing:
        listed = ", ".join(map(repr, missing[:8]))
        raise InvalidInputError(f"missing column(s) {listed}; the model needs {len(names)} pixel columns")
    try:
        values = frame[list(names)].to_numpy(dtype=np.dtype(spec["dtype"]))
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"the pixel columns must be numbers: {exc}") from None
    if not np.isfinite(values).all():
        raise InvalidInputError("the pixel columns hold missing or infinite values; fill or drop those rows")
    return {spec["name"]: values.reshape(len(frame), *tail)}


def _digest(arrays: dict[str, np.ndarray], labels: np.ndarray | None) -> str:
    digest = hashlib.sha256()
    for name in sorted(arrays):
        value = arrays[name]
        digest.update(f"{name}|{value.dtype}|{value.shape}".encode())
        digest.update(value.astype(str).tobytes() if value.dtype == object else np.ascontiguousarray(value).tobytes())
    if labels is not None:
        digest.update(np.asarray(labels).astype(str).tobytes())
    return digest.hexdigest()
