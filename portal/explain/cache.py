"""On-disk cache of explanations: one ``.npz`` per key, never unpickled.

A key is the sha256 of everything the result depends on (model blob, rows,
background, settings, library versions), so an entry never goes stale; it is
written to a temp file in the same folder, then ``os.replace``d into place, so a
reader sees a whole entry or none; a damaged entry is dropped and counts as a miss.
:class:`CachedResult` gives every explanation type (SHAP and LIME, rows and
images) the same cache form.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast, get_type_hints

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from ..services import ModelServices
    from .types import ExplainSettings

__all__ = ["CachedResult", "ExplainCache", "cache_for", "library_version", "make_key"]

_META = "__meta__"
# fields of a result that describe the request, not the result: given back by ``restore``'s caller
_REQUEST_FIELDS = ("settings", "key", "from_cache")
R = TypeVar("R", bound="CachedResult")


def make_key(parts: dict[str, Any]) -> str:
    """A stable hash of a JSON-able description of a request."""
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@functools.lru_cache(maxsize=8)
def library_version(name: str) -> str:
    """The installed version of ``name`` (part of keys: another release may explain differently)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "missing"


class ExplainCache:
    """Arrays plus a JSON document per key, under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def get(self, key: str) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        """The entry for ``key``, or None (a damaged entry is removed and counts as a miss)."""
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files if name != _META}
                meta = json.loads(str(data[_META]))
        except (OSError, ValueError, KeyError, EOFError):
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        return arrays, meta

    def put(self, key: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        """Store an entry atomically; a failure leaves no partial file behind."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{key[:12]}.", suffix=".part")
        tmp = Path(tmp_name)
        try:
            payload: dict[str, Any] = {**arrays, _META: np.array(json.dumps(meta, default=str))}
            with os.fdopen(fd, "wb") as handle:
                np.savez(handle, **payload)
            # No fsync: an entry lost or torn by a crash reads as a miss (see get) and is
            # recomputed, so durability is not worth its milliseconds here.
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def clear(self) -> int:
        """Remove every entry; return how many were removed."""
        count = 0
        for path in self.root.glob("*/*.npz"):
            with contextlib.suppress(OSError):
                path.unlink()
                count += 1
        return count


def cache_for(services: ModelServices) -> ExplainCache:
    """The explanation cache under the portal home of ``services``: ``<home>/cache/explain``."""
    return ExplainCache(Path(services.settings.home) / "cache" / "explain")


class CachedResult:
    """The cache form of an explanation dataclass: its arrays, and the rest as JSON.

    Fields typed ``np.ndarray`` are stored as arrays; every other field but
    ``settings``, ``key`` and ``from_cache`` goes into the JSON document, a
    ``pd.DataFrame`` as its columns' lists (restored with the ``feature_names``
    field as its columns) and a dataclass as its dict.
    """

    ref: str  # a field of every result (a job sets it on what it restores)

    def to_cache(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays: dict[str, np.ndarray] = {}
        meta: dict[str, Any] = {}
        for name, hint in _stored_fields(cast(Any, type(self))):  # cast: mypy holds classes unhashable
            value = getattr(self, name)
            if hint is np.ndarray:
                arrays[name] = value
            elif hint is pd.DataFrame:
                meta[name] = {c: value[c].tolist() for c in value.columns}
            elif is_dataclass(hint):
                meta[name] = asdict(value)
            else:
                meta[name] = value
        return arrays, meta

    @classmethod
    def restore(
        cls: type[R], arrays: dict[str, np.ndarray], meta: dict[str, Any], *, settings: ExplainSettings, key: str
    ) -> R:
        values: dict[str, Any] = {}
        for name, hint in _stored_fields(cast(Any, cls)):
            if hint is np.ndarray:
                values[name] = arrays[name]
            elif hint is pd.DataFrame:
                values[name] = pd.DataFrame(meta[name], columns=meta["feature_names"])
            elif is_dataclass(hint):
                values[name] = cast(Any, hint)(**meta[name])
            else:
                values[name] = meta[name]
        values["notes"] = list(values["notes"])  # the result's own list, not the cache document's
        build = cast(Callable[..., R], cls)
        return build(**values, settings=settings, key=key, from_cache=True)


@functools.cache
def _stored_fields(cls: type) -> tuple[tuple[str, Any], ...]:
    """(name, resolved type) of each field of the result dataclass ``cls`` that its cache form holds.

    Cached: resolving the annotations takes longer than the rest of ``restore``.
    """
    hints = get_type_hints(cls)
    return tuple((f.name, hints[f.name]) for f in fields(cast(Any, cls)) if f.name not in _REQUEST_FIELDS)
