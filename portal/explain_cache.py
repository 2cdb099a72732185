"""On-disk cache of explanations: one ``.npz`` per key, never unpickled.

A key is the sha256 of everything the result depends on (model blob, rows,
background, settings, library versions), so an entry never goes stale; it is
written to a temp file in the same folder, then ``os.replace``d into place, so a
reader sees a whole entry or none; a damaged entry is dropped and counts as a miss.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ExplainCache", "library_version", "make_key"]

_META = "__meta__"


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
