"""What the parent and the sandboxed child hand each other: arrays as npz files, without pickles.

Also the gzip size of a file's bytes, which both sides report for a pruned
variant (its raw size does not shrink, its compressed size does).
"""

from __future__ import annotations

import gzip
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["gzip_size", "load_arrays", "save_arrays"]


def gzip_size(data: bytes) -> int:
    """Size of ``data`` after gzip (level 6): what a pruned file costs to ship or archive."""
    return len(gzip.compress(data, compresslevel=6, mtime=0))


def save_arrays(arrays: Mapping[str, np.ndarray], path: Path) -> Path:
    """Save feeds for a child process without pickles (object strings become unicode)."""
    plain: dict[str, Any] = {k: (v.astype(str) if v.dtype == object else v) for k, v in arrays.items()}
    np.savez(path, **plain)
    return path


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    """Arrays saved by the parent (strings travel as unicode and come back as objects)."""
    with np.load(path, allow_pickle=False) as data:
        return {k: (data[k].astype(object) if data[k].dtype.kind == "U" else data[k]) for k in data.files}
