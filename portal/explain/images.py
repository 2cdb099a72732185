"""Explaining images: partition explainer with a blur masker, per class.

Images are explained in the model's own input values (after the version's
preprocessing), laid out height × width × channels as shap's image masker
expects; :class:`ImageJob` transposes back to the model's layout for every call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InvalidInputError
from ..serving.images import is_image_signature
from ..services import ModelServices
from ..storage.registry import ModelVersion
from .cache import cache_for, make_key
from .data import hash_array
from .job import ExplainJob
from .model import BudgetExceededError, Progress, measure_latency
from .shap import image_values, shap_version
from .types import Estimate, ExplainSettings, ImageExplanation, output_index

__all__ = ["ImageJob", "image_input", "takes_images"]

FORMAT = 1
DEFAULT_IMAGE_EVALS = 300
MIN_IMAGE_EVALS = 20
# masked images of one model call (float64 in explanation space) stay under this
MAX_CALL_BYTES = 64 * 1024**2
# the partition explainer's own work per evaluation (tree walk, blur): 0.5-1 ms
# measured on two busy cores with the digits demo model
SHAP_SECONDS_PER_IMAGE_EVAL = 6e-4


def image_input(version: ModelVersion) -> dict[str, Any]:
    """The signature's one image input (N × C × H × W or N × H × W × C); refused for a table model."""
    specs = version.signature.get("inputs", [])
    shape = specs[0].get("shape") if specs else None
    if not is_image_signature(version.signature, version.preprocessing) or not shape or len(shape) != 4:
        raise InvalidInputError(f"{version.ref} takes table rows, not images; explain it with rows of a table")
    return specs[0]


def takes_images(version: ModelVersion) -> bool:
    """Whether ``version`` is an image model (explained with :class:`ImageJob`)."""
    try:
        image_input(version)
    except InvalidInputError:
        return False
    return True


def _is_table(data: Any) -> bool:
    if isinstance(data, (pd.DataFrame, Mapping)):
        return True
    return isinstance(data, list) and bool(data) and all(isinstance(r, Mapping) for r in data)


class ImageJob(ExplainJob):
    """One prepared explanation of images."""

    def __init__(
        self,
        services: ModelServices,
        ref: Any,
        images: Any,
        *,
        target: str | int | None = None,
        settings: ExplainSettings = ExplainSettings(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.services = services
        self.version = services.get(ref)
        spec = image_input(self.version)
        self.layout = (self.version.preprocessing or {}).get("layout", "NCHW")
        self.input_name = spec["name"]
        self.settings = settings
        self.clock = clock
        self.images = self._to_hwc(self._load(images, spec))
        self.cache = cache_for(services)
        self.target = None if target is None else output_index(target, list(self.picker.names), True)
        height, width = self.images.shape[1:3]
        self.blur = settings.blur or max(2, min(height, width) // 2)
        self.key = make_key({
            "kind": "image", "format": FORMAT, "shap": shap_version(), "blob": self.version.blob_sha,
            "labels": self.version.class_labels, "prep": self.version.preprocessing, "target": self.target,
            "images": hash_array(self.images), "blur": self.blur, "settings": settings.key(),
        })
        self._hit = self.cache.get(self.key)

    def _load(self, images: Any, spec: dict[str, Any]) -> np.ndarray:
        dims = "×".join(str(d) for d in spec["shape"][1:])
        if _is_table(images):
            raise InvalidInputError(f"{self.version.ref} takes images ({dims}), not table rows; give image files")
        if isinstance(images, np.ndarray):
            array = images[None] if images.ndim == 3 else images
            fixed = spec["shape"][1:]
            if array.ndim != 4 or any(isinstance(d, int) and d != g
                                      for d, g in zip(fixed, array.shape[1:], strict=True)):
                raise InvalidInputError(
                    f"{self.version.ref} takes images of shape {dims}, got an array of shape {list(images.shape)}"
                )
            array = array.astype(np.float32)
        else:
            items = list(images) if isinstance(images, (list, tuple)) else [images]
            array = self.services.images_to_array(self.version, items)
        if len(array) == 0:
            raise InvalidInputError("no images given; give at least one image file")
        if not np.isfinite(array).all():
            raise InvalidInputError("the images hold NaN or infinite values; give real images")
        return array

    def _to_hwc(self, batch: np.ndarray) -> np.ndarray:
        hwc = batch if self.layout == "NHWC" else np.transpose(batch, (0, 2, 3, 1))
        return np.ascontiguousarray(hwc, dtype=np.float64)

    def _feeds(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        model = batch if self.layout == "NHWC" else np.transpose(batch, (0, 3, 1, 2))
        return {self.input_name: np.ascontiguousarray(model, dtype=np.float32)}

    def _model_inputs(self) -> tuple[Callable[[np.ndarray], dict[str, np.ndarray]], np.ndarray]:
        return self._feeds, self.images

    @cached_property
    def estimate(self) -> Estimate:
        n, features = len(self.images), int(np.prod(self.images.shape[1:]))
        if self._hit is not None:
            meta = self._hit[1]
            return Estimate("partition", n, features, meta["max_evals"], 1, meta["model_rows"], 0.0, 0.0, cached=True)
        latency = measure_latency(self.function, self.images, rows=32)
        evals = self.settings.max_evals or DEFAULT_IMAGE_EVALS
        per_row = latency + SHAP_SECONDS_PER_IMAGE_EVAL
        limit = min(self.settings.max_model_rows, int(self.settings.max_seconds / per_row))
        notes: list[str] = []
        if n * (evals + 2) > limit:
            fitted = limit // n - 2
            if fitted < MIN_IMAGE_EVALS:
                raise BudgetExceededError(
                    f"explaining {n} image(s) needs at least {n * (MIN_IMAGE_EVALS + 2):,} model evaluations "
                    f"(about {n * (MIN_IMAGE_EVALS + 2) * per_row:.0f} s), over the budget of "
                    f"{self.settings.max_model_rows:,} evaluations / {self.settings.max_seconds:g} s; "
                    "explain fewer images or raise the budget"
                )
            notes.append(f"max_evals capped from {evals:,} to {fitted:,} per image to stay within the budget")
            evals = fitted
        cost = n * (evals + 2)
        return Estimate("partition", n, features, evals, 1, cost, latency, cost * per_row, notes=tuple(notes))

    def classes(self, outputs: np.ndarray) -> np.ndarray:
        """The classes explained for each image: the target, else its ``top_classes`` most probable."""
        if self.target is not None:
            return np.full((len(outputs), 1), self.target, dtype=np.int64)
        k = min(self.settings.top_classes, outputs.shape[1])
        return np.argsort(-outputs, axis=1, kind="stable")[:, :k].astype(np.int64)

    def run(self, *, progress: Progress | None = None) -> ImageExplanation:
        """Explain each image for its top classes (or the chosen one)."""
        restored = self._restored(ImageExplanation, progress)
        if restored is not None:
            return restored
        plan = self.estimate
        start = time.perf_counter()
        outputs = self.function(self.images)
        classes = self.classes(outputs)
        guard = self._guard(plan.model_rows, progress)
        guarded = self.function.with_guard(guard)
        batch = max(1, min(plan.max_evals, self.settings.batch_rows // 16, MAX_CALL_BYTES // self.images[0].nbytes))
        values, bases = [], []
        for i, image in enumerate(self.images):
            v, b = image_values(guarded, image, blur=self.blur, max_evals=plan.max_evals, batch_size=batch,
                                outputs=classes[i])
            values.append(v)
            bases.append(b)
        result = ImageExplanation(
            ref=self.version.ref, output_names=list(self.picker.names), images=self.images,
            values=np.stack(values), class_indices=classes, base_values=np.stack(bases), outputs=outputs,
            max_evals=plan.max_evals, blur=self.blur, settings=self.settings, model_rows=guard.rows,
            seconds=time.perf_counter() - start, key=self.key, notes=list(plan.notes),
        )
        return self._stored(result, progress)
