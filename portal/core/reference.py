"""Reference data checked against a model before it is kept: tables as given, images as input tensors.

Accepted forms: a DataFrame; a CSV / Parquet path; ``(filename, bytes)``; an image
file, a folder of images or a zip of images; a list of image paths or of
``(filename, bytes)`` uploads (zips among them are opened).  Images are decoded
and preprocessed the way predictions are (see :mod:`portal.serving.reference`
for how they are kept).  A table must hold every column the model needs (extra
columns, e.g. a ``target``, are kept); otherwise the error names the columns.
"""

from __future__ import annotations

import io
import math
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import InvalidInputError, PortalError
from ..serving.dataio import read_input
from ..serving.images import IMAGE_SUFFIXES, is_image_signature, load_image, preprocess_images
from ..serving.reference import images_frame, tensor_of
from ..serving.signature import coerce
from ..storage.store import BlobStore

__all__ = ["MAX_REFERENCE_IMAGES", "reference_table", "store_reference"]

MAX_REFERENCE_IMAGES = 256
_TABLE_SUFFIXES = (".csv", ".parquet", ".tsv", ".txt")
_LABEL_COLUMNS = ("target", "label")


def reference_table(
    data: Any,
    *,
    signature: dict[str, Any],
    feature_names: Sequence[str] | None = None,
    preprocessing: dict[str, Any] | None = None,
    max_pixels: int,
    max_bytes: int,
) -> pd.DataFrame:
    """The reference table to keep for a model with ``signature``, checked against it.

    Raises:
        InvalidInputError: unreadable, empty, or not what the model takes (the message names
            the missing columns or the shape).
    """
    images = _images_in(data, max_bytes)
    if images is not None:
        return _image_table(images, signature, feature_names, preprocessing, max_pixels)
    frame = _table_of(data)
    if frame.empty:
        raise InvalidInputError("the reference data has no rows; give at least one row with the model's columns")
    frame = frame.copy()
    frame.columns = [str(c) for c in frame.columns]
    _check_table(frame, signature, feature_names)
    return frame.reset_index(drop=True)


def store_reference(store: BlobStore, frame: pd.DataFrame) -> str:
    """Keep ``frame`` as a parquet blob; return its SHA-256."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return store.put_bytes(buffer.getvalue()).sha256


# -- reading ------------------------------------------------------------------------------
def _named(item: Any) -> tuple[str, Any]:
    if isinstance(item, tuple) and len(item) == 2:
        return str(item[0]), item[1]
    if isinstance(item, (str, Path)):
        return Path(item).name, Path(item)
    name = getattr(item, "name", None)
    if name is not None and hasattr(item, "getvalue"):  # an uploaded file
        return str(name), item.getvalue()
    raise InvalidInputError(f"cannot read reference data from a {type(item).__name__}")


def _suffix(name: str) -> str:
    return Path(name).suffix.lower()


def _images_in(data: Any, max_bytes: int) -> list[tuple[str, Any]] | None:
    """The images ``data`` names (None: it is a table)."""
    if isinstance(data, pd.DataFrame):
        return None
    if isinstance(data, (str, Path)) and Path(data).is_dir():
        found = sorted(p for p in Path(data).iterdir() if _suffix(p.name) in IMAGE_SUFFIXES)
        if not found:
            raise InvalidInputError(f"the folder {Path(data).name!r} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return [(p.name, p) for p in found]
    items = list(data) if isinstance(data, list) else [data]
    named = [_named(item) for item in items]
    if len(named) == 1 and _suffix(named[0][0]) in _TABLE_SUFFIXES:
        return None
    images: list[tuple[str, Any]] = []
    for name, content in named:
        if _suffix(name) == ".zip":
            images += _zip_images(name, content, max_bytes)
        elif _suffix(name) in IMAGE_SUFFIXES:
            images.append((name, content))
        else:
            raise InvalidInputError(
                f"reference data: {name!r} is neither a table (CSV, Parquet) nor an image or a zip of images; "
                "give one table, or images only"
            )
    return images


def _zip_images(name: str, content: Any, max_bytes: int) -> list[tuple[str, bytes]]:
    raw = content.read_bytes() if isinstance(content, Path) else bytes(content)
    try:
        archive = zipfile.ZipFile(io.BytesIO(raw))
    except zipfile.BadZipFile as exc:
        raise InvalidInputError(f"{name!r} is not a readable zip file: {exc}") from None
    members = [m for m in archive.infolist()
               if not m.is_dir() and _suffix(m.filename) in IMAGE_SUFFIXES and "__MACOSX" not in m.filename]
    if not members:
        raise InvalidInputError(f"{name!r} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    if sum(m.file_size for m in members) > max_bytes:
        raise InvalidInputError(f"the images in {name!r} unpack to more than {max_bytes:,} bytes; send fewer images")
    return [(Path(m.filename).name, archive.read(m)) for m in sorted(members, key=lambda m: m.filename)]


def _table_of(data: Any) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        return data
    items = list(data) if isinstance(data, list) else [data]
    name, content = _named(items[0])
    if isinstance(content, Path) and not content.is_file():
        raise InvalidInputError(f"no such reference data file: {content}")
    frame = read_input(content, name=name) if isinstance(content, (bytes, bytearray)) else read_input(content)
    if not isinstance(frame, pd.DataFrame):
        raise InvalidInputError(f"reference data must be a table (CSV or Parquet), not {name!r}")
    return frame


# -- checking -----------------------------------------------------------------------------
def _image_table(images: list[tuple[str, Any]], signature: dict[str, Any], feature_names: Sequence[str] | None,
                 preprocessing: dict[str, Any] | None, max_pixels: int) -> pd.DataFrame:
    if not is_image_signature(signature, preprocessing):
        raise InvalidInputError(
            "this model takes table rows, not images; give the reference data as a CSV or Parquet table")
    if len(images) > MAX_REFERENCE_IMAGES:
        raise InvalidInputError(
            f"{len(images)} reference images given; the portal keeps at most {MAX_REFERENCE_IMAGES}: send fewer")
    decoded = [load_image(content, max_pixels=max_pixels, name=name) for name, content in images]
    batch = preprocess_images(decoded, signature, preprocessing)
    return images_frame(batch, feature_names)


def _check_table(frame: pd.DataFrame, signature: dict[str, Any], feature_names: Sequence[str] | None) -> None:
    if tensor_of(frame) is not None:
        return
    inputs = signature.get("inputs", [])
    shape = (inputs[0].get("shape") or []) if len(inputs) == 1 else []
    tail = shape[1:]
    if len(shape) > 2 and all(isinstance(d, int) for d in tail) and not feature_names:
        features = [c for c in frame.columns if c not in _LABEL_COLUMNS]
        if len(features) == int(math.prod(tail)):  # one column per pixel, in order (how images are kept)
            return
    try:
        coerce(signature, frame, feature_names=feature_names, allow_nan=True, extra_columns="ignore")
    except PortalError as exc:
        raise InvalidInputError(f"the reference data does not fit the model: {exc.message}; nothing was stored") from None
