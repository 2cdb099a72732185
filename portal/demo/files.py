"""Writing demo files atomically, and saving and loading scikit-learn models with skops."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["dump_skops", "load_skops", "replacing"]


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """Yield a temp path next to ``path``; move it into place only if the block succeeds."""
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        tmp.chmod(0o644)  # mkstemp makes 0600; these are ordinary shareable files
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def dump_skops(model: Any, path: Path) -> Path:
    """Save a scikit-learn model with skops, atomically."""
    import skops.io

    with replacing(path) as tmp:
        skops.io.dump(model, tmp)
    return path


def load_skops(path: Path) -> Any:
    """Load one of *our own* skops files, trusting the types it holds."""
    import skops.io

    return skops.io.load(path, trusted=skops.io.get_untrusted_types(file=path))
