"""The one place that calls shap: explainers over a plain function, and the start-up warm-up.

shap compiles its numba kernels the first time each one runs in a process
(~10 s on two cores). :func:`warm_up_shap` runs tiny explanations through the
very same calls, with the same array types (float64 inputs, 2-D float64
outputs), in a daemon thread, so the first user never waits for the compiler.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import PortalError

__all__ = ["ExplanationError", "image_values", "is_warm", "shap_version", "tabular_values", "warm_up_shap"]

log = logging.getLogger("portal.explain")

# Process-wide on purpose: PermutationExplainer seeds NumPy's *global* RNG, so two
# runs interleaving their shuffles would each lose their determinism.
_LOCK = threading.Lock()
# numba's compiled kernels are process-wide too; warming once is enough.
_WARMED = threading.Event()
_WARMING = threading.Lock()  # guards _THREAD
_THREAD: list[threading.Thread] = []  # the warm-up thread, once started

Function = Callable[[np.ndarray], np.ndarray]


class ExplanationError(PortalError):
    """shap failed on a model or data the portal accepted."""

    status = 500


@functools.lru_cache(maxsize=1)
def shap_version() -> str:
    """The installed shap's version (part of every SHAP cache key: another release may explain differently)."""
    from importlib.metadata import version

    return version("shap")


def _translate(exc: Exception) -> ExplanationError:
    first = str(exc).strip().split("\n")[0][:300]
    return ExplanationError(f"SHAP could not explain this model: {type(exc).__name__}: {first}")


def tabular_values(
    function: Function,
    rows: np.ndarray,
    background: np.ndarray,
    *,
    explainer: str,
    max_evals: int,
    batch_size: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """SHAP values (rows × features × outputs) and base values (rows × outputs)."""
    import shap

    masker = shap.maskers.Independent(background, max_samples=len(background))
    values, base = [], []
    with _LOCK:
        try:
            if explainer == "exact":
                shap_explainer: Any = shap.ExactExplainer(function, masker)
            else:
                shap_explainer = shap.PermutationExplainer(function, masker, seed=seed)
            # One row per call: shap 0.51's Explainer.__call__ reuses its ``main_effects``
            # flag as a list, so from the second row of a call on it also computes
            # main effects nobody asked for (up to half a permutation more model rows).
            for i in range(len(rows)):
                result = shap_explainer(rows[i : i + 1], max_evals=max_evals, batch_size=batch_size, silent=True)
                values.append(np.asarray(result.values, dtype=np.float64).reshape(rows.shape[1], -1))
                base.append(np.asarray(result.base_values, dtype=np.float64).reshape(-1))
        except PortalError:
            raise
        except Exception as exc:  # shap raises ValueError, AssertionError, numba errors...
            raise _translate(exc) from exc
    return np.stack(values), np.stack(base)


def image_values(
    function: Function,
    image: np.ndarray,
    *,
    blur: int,
    max_evals: int,
    batch_size: int,
    outputs: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """SHAP values (H × W × C × k) and base values (k) of one image (H × W × C) for ``outputs``."""
    import shap

    masker = shap.maskers.Image(f"blur({blur},{blur})", image.shape)
    with _LOCK:
        try:
            result = shap.PartitionExplainer(function, masker)(
                image[None], max_evals=max_evals, batch_size=batch_size, outputs=outputs, silent=True
            )
        except PortalError:
            raise
        except Exception as exc:
            raise _translate(exc) from exc
    values = np.asarray(result.values, dtype=np.float64).reshape(*image.shape, len(outputs))
    return values, np.asarray(result.base_values, dtype=np.float64).reshape(len(outputs))


# -- warm-up ---------------------------------------------------------------------------
def _toy(batch: np.ndarray) -> np.ndarray:
    flat = batch.reshape(len(batch), -1)
    score = flat @ np.linspace(-1.0, 1.0, flat.shape[1])
    return np.stack([score, -score], axis=1)


def _warm_up() -> float:
    start = time.perf_counter()
    rng = np.random.default_rng(0)
    background = rng.normal(size=(8, 12))
    rows = rng.normal(size=(1, 12))
    tabular_values(_toy, rows[:, :3], background[:, :3], explainer="exact", max_evals=8, batch_size=4, seed=0)
    tabular_values(_toy, rows, background, explainer="permutation", max_evals=25, batch_size=4, seed=0)
    image = rng.random(size=(8, 8, 1))
    image_values(_toy, image, blur=4, max_evals=40, batch_size=10, outputs=np.array([0, 1]))
    return time.perf_counter() - start


def is_warm() -> bool:
    """Whether shap's kernels are compiled in this process."""
    return _WARMED.is_set()


def warm_up_shap(*, wait: bool = False) -> threading.Thread | None:
    """Import shap and compile its kernels in a daemon thread (once per process).

    Returns the warm-up thread (the running one when called again meanwhile), or
    None when shap is already warm; ``wait=True`` joins it.
    """
    if _WARMED.is_set():
        return None
    with _WARMING:
        if not _THREAD or not (_THREAD[0].is_alive() or _WARMED.is_set()):
            _THREAD[:] = [threading.Thread(target=_work, name="portal-shap-warm-up", daemon=True)]
            _THREAD[0].start()
        thread = _THREAD[0]
    if wait:
        thread.join()
    return thread


def _work() -> None:
    try:
        seconds = _warm_up()
    except Exception:  # a failed warm-up only costs the first user the compile time
        log.exception("shap warm-up failed")
        return
    _WARMED.set()
    log.info("shap warmed up in %.1f s", seconds)
