"""The transfer set: the given rows plus augmented ones, which the teacher labels itself.

Few reference rows still train a good student when the teacher labels many
neighbours of them. All draws come from one seeded generator, so equal inputs
give an equal transfer set.

    rows     half gaussian jitter (5% of each column's spread), half mixup of two rows, clipped to the observed range
             (sequences [N, steps, features] alike, each position and feature on its own)
    images   a random horizontal flip, a shift of up to an eighth of the side, and gaussian noise
"""

from __future__ import annotations

import numpy as np

__all__ = ["MAX_TRANSFER_BYTES", "augment_images", "augment_rows", "transfer_size"]

MAX_TRANSFER_BYTES = 256 * 1024 * 1024  # the augmented set stays well inside the sandbox's memory
_MIN_ROWS = {2: 4000, 3: 2000, 4: 2000}  # by the input's rank: rows, sequences, images
_FACTOR = {2: 10, 3: 8, 4: 8}
_MAX_ROWS = 20000


def transfer_size(rows: int, row_bytes: int, rank: int) -> int:
    """How many rows the transfer set holds in all (never fewer than the given rows)."""
    wanted = min(_MAX_ROWS, max(_MIN_ROWS[rank], _FACTOR[rank] * rows))
    return max(rows, min(wanted, MAX_TRANSFER_BYTES // max(1, row_bytes)))


def augment_rows(x: np.ndarray, total: int, rng: np.random.Generator) -> np.ndarray:
    """``x`` followed by ``total - len(x)`` jittered and mixed rows within the observed ranges."""
    extra = total - len(x)
    if extra <= 0:
        return x
    x64 = x.astype(np.float64)
    low, high, spread = x64.min(axis=0), x64.max(axis=0), x64.std(axis=0)
    half = extra // 2
    base = x64[rng.integers(0, len(x), half)]
    jittered = base + rng.normal(size=base.shape) * 0.05 * spread
    a, b = x64[rng.integers(0, len(x), extra - half)], x64[rng.integers(0, len(x), extra - half)]
    lam = rng.uniform(size=(extra - half,) + (1,) * (x.ndim - 1))
    mixed = lam * a + (1 - lam) * b
    new = np.clip(np.concatenate([jittered, mixed]), low, high)
    return np.concatenate([x, new.astype(x.dtype)])


def augment_images(x: np.ndarray, total: int, rng: np.random.Generator) -> np.ndarray:
    """``x`` [N, C, H, W] followed by ``total - len(x)`` flipped, shifted and noisy copies."""
    extra = total - len(x)
    if extra <= 0:
        return x
    new = x[rng.integers(0, len(x), extra)].copy()
    flip = rng.uniform(size=extra) < 0.5
    new[flip] = new[flip][..., ::-1]
    height, width = x.shape[2], x.shape[3]
    reach = (max(1, height // 8), max(1, width // 8))
    fill = new.min(axis=(1, 2, 3))
    for i in range(extra):
        dy, dx = (int(rng.integers(-r, r + 1)) for r in reach)
        new[i] = _shift(new[i], dy, dx, fill[i])
    new += (rng.normal(size=new.shape) * 0.05 * float(x.std())).astype(new.dtype)
    return np.concatenate([x, new])


def _shift(image: np.ndarray, dy: int, dx: int, fill: float) -> np.ndarray:
    """``image`` [C, H, W] moved by (dy, dx) pixels, the uncovered border filled with ``fill``."""
    out = np.roll(image, (dy, dx), axis=(1, 2))
    if dy > 0:
        out[:, :dy] = fill
    elif dy < 0:
        out[:, dy:] = fill
    if dx > 0:
        out[:, :, :dx] = fill
    elif dx < 0:
        out[:, :, dx:] = fill
    return out
