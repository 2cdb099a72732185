"""LIME on images: superpixels switched on and off, a weighted ridge fit per class.

lime's ``LimeImageExplainer.explain_instance`` runs as it is, with three inputs
of ours. Segmentation is SLIC (scikit-image) on a min-max scaled copy, with about
``lime_segments`` superpixels: lime's default quickshift finds one or two
segments in an 8 × 8 digit. A switched-off superpixel takes its mean colour
(lime's ``hide_color=None``). And the perturbed images are built with one array
operation per batch instead of lime's pixel loop and progress bar, from the very
same random draws, so the result is lime's to the bit. The images themselves
are checked and laid out by :class:`~portal.explain.images.ImageJob`.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from functools import cached_property
from typing import Any

import numpy as np

from ..errors import InvalidInputError, PortalError
from ..services import ModelServices
from .cache import cache_for, library_version, make_key
from .data import hash_array
from .images import ImageJob
from .job import ExplainJob
from .lime import fit_samples, lime_translate
from .lime_types import LimeImageExplanation
from .model import ModelFunction, OutputPicker, Progress, measure_latency
from .types import Estimate, ExplainSettings

__all__ = ["LimeImageJob", "superpixels"]

FORMAT = 1
DEFAULT_SAMPLES = 1000  # lime's own default
KERNEL_WIDTH = 0.25  # lime's own default for images (cosine distances of on/off vectors)
MAX_CALL_BYTES = 64 * 1024**2
# lime's work per image (segmentation, set-up, one ridge fit per class) and per sample
# (masking, distance), measured with the digits demo model on two busy cores
SECONDS_PER_IMAGE = 0.02
SECONDS_PER_SAMPLE = 20e-6

Function = Callable[[np.ndarray], np.ndarray]


def superpixels(image: np.ndarray, count: int) -> np.ndarray:
    """H × W labels 0 … k − 1 of about ``count`` SLIC superpixels of an H × W × C image (C = 1 or 3)."""
    from skimage.segmentation import slic

    rgb = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image
    low, high = float(rgb.min()), float(rgb.max())
    scaled = (rgb - low) / (high - low) if high > low else np.zeros_like(rgb)
    labels = slic(scaled, n_segments=count, compactness=10, start_label=0, channel_axis=-1)
    return np.unique(labels, return_inverse=True)[1].reshape(labels.shape)


def default_segments(height: int, width: int) -> int:
    return int(min(50, max(4, height * width // 4)))


@functools.cache
def _explainer_class() -> type:
    from lime.lime_image import LimeImageExplainer

    class Explainer(LimeImageExplainer):  # type: ignore[misc]
        """lime's explainer with its perturbed images built per batch (same draws, same images)."""

        def data_labels(self, image: np.ndarray, fudged_image: np.ndarray, segments: np.ndarray,
                        classifier_fn: Function, num_samples: int, batch_size: int = 10) -> tuple[Any, Any]:
            n_features = np.unique(segments).shape[0]
            data = self.random_state.randint(0, 2, num_samples * n_features).reshape((num_samples, n_features))
            data[0, :] = 1
            labels = []
            for start in range(0, num_samples, batch_size):
                keep = data[start : start + batch_size][:, segments].astype(bool)[..., None]
                labels.append(classifier_fn(np.where(keep, image, fudged_image)))
            return data, np.concatenate(labels)

    return Explainer


class _Recorder:
    """Keeps every fit lime makes (lime keeps only the last class's R² and surrogate value)."""

    def __init__(self, base: Any) -> None:
        self.base = base
        self.fits: list[tuple[Any, ...]] = []

    def explain_instance_with_data(self, *args: Any, **kwargs: Any) -> Any:
        fit = self.base.explain_instance_with_data(*args, **kwargs)
        self.fits.append(fit)
        return fit


def lime_image(
    function: Function, image: np.ndarray, segments: np.ndarray, *, classes: np.ndarray, samples: int,
    kernel_width: float, batch_size: int, seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Superpixel weights (k × segments), intercepts, R² and surrogate values (k) of one H × W × C image."""
    gray = image.shape[2] == 1
    rgb = np.repeat(image, 3, axis=2) if gray else image

    def classify(batch: np.ndarray) -> np.ndarray:
        return function(batch[..., :1] if gray else batch)

    explainer = _explainer_class()(kernel_width=kernel_width, feature_selection="none", random_state=seed)
    recorder = _Recorder(explainer.base)
    explainer.base = recorder
    count = int(segments.max()) + 1
    try:
        exp = explainer.explain_instance(rgb, classify, labels=tuple(int(c) for c in classes), top_labels=None,
                                         num_features=count, num_samples=samples, batch_size=batch_size,
                                         segmentation_fn=lambda _: segments, random_seed=seed)
    except PortalError:
        raise
    except Exception as exc:
        raise lime_translate(exc) from exc
    weights = np.zeros((len(classes), count))
    for k, c in enumerate(classes):
        for s, w in exp.local_exp[int(c)]:
            weights[k, s] = w
    fits = recorder.fits
    return (weights, np.array([float(f[0]) for f in fits]), np.array([float(f[2]) for f in fits]),
            np.array([float(np.ravel(f[3])[0]) for f in fits]))


class LimeImageJob(ExplainJob):
    """One prepared LIME explanation of images, for their top classes (or the chosen one)."""

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
        self.images_job = ImageJob(services, ref, images, target=target, settings=settings, clock=clock)
        self.version = self.images_job.version
        self.images = self.images_job.images
        if self.images.shape[3] not in (1, 3):
            raise InvalidInputError(
                f"LIME explains grey or RGB images; {self.version.ref} takes {self.images.shape[3]} channels")
        self.settings = settings
        self.clock = clock
        self.segment_count = settings.lime_segments or default_segments(*self.images.shape[1:3])
        self.cache = cache_for(services)
        self.key = make_key({
            "kind": "lime-image", "format": FORMAT, "lime": library_version("lime"),
            "skimage": library_version("scikit-image"), "blob": self.version.blob_sha,
            "labels": self.version.class_labels, "prep": self.version.preprocessing,
            "target": self.images_job.target, "images": hash_array(self.images), "segments": self.segment_count,
            "settings": settings.lime_key(),
        })
        self._hit = self.cache.get(self.key)

    # the images job checked and laid out the images: its picker and function serve LIME too
    @property
    def picker(self) -> OutputPicker:
        return self.images_job.picker

    @property
    def function(self) -> ModelFunction:
        return self.images_job.function

    @property
    def kernel_width(self) -> float:
        return self.settings.lime_kernel_width or KERNEL_WIDTH

    @cached_property
    def estimate(self) -> Estimate:
        n, features = len(self.images), self.segment_count
        if self._hit is not None:
            meta = self._hit[1]
            return Estimate("lime image", n, features, meta["num_samples"], 1, meta["model_rows"], 0.0, 0.0,
                            cached=True, notes=tuple(meta["notes"]))
        latency = measure_latency(self.function, self.images, rows=32)
        per_sample = latency + SECONDS_PER_SAMPLE
        samples, notes = fit_samples(self.settings, n, self.settings.lime_samples or DEFAULT_SAMPLES, per_sample,
                                     SECONDS_PER_IMAGE, "image")
        seconds = n * (SECONDS_PER_IMAGE + samples * per_sample)
        return Estimate("lime image", n, features, samples, 1, n * samples, latency, seconds, notes=tuple(notes))

    def run(self, *, progress: Progress | None = None) -> LimeImageExplanation:
        """Explain each image for its top classes (or the chosen one)."""
        restored = self._restored(LimeImageExplanation, progress)
        if restored is not None:
            return restored
        plan = self.estimate
        start = time.perf_counter()
        outputs = self.function(self.images)
        classes = self.images_job.classes(outputs)
        guard = self._guard(plan.model_rows, progress)
        guarded = self.function.with_guard(guard)
        per_call = MAX_CALL_BYTES // (3 * self.images[0].nbytes)  # lime hands the model RGB copies
        batch = max(1, min(plan.max_evals, self.settings.batch_rows // 16, per_call))
        segments = np.stack([superpixels(image, self.segment_count) for image in self.images])
        width = int(segments.max()) + 1
        n, k = classes.shape
        weights = np.full((n, k, width), np.nan)
        intercepts, scores, local = np.zeros((n, k)), np.zeros((n, k)), np.zeros((n, k))
        for i, image in enumerate(self.images):
            w, intercepts[i], scores[i], local[i] = lime_image(
                guarded, image, segments[i], classes=classes[i], samples=plan.max_evals,
                kernel_width=self.kernel_width, batch_size=batch, seed=self.settings.seed)
            weights[i, :, : w.shape[1]] = w
        result = LimeImageExplanation(
            ref=self.version.ref, output_names=list(self.picker.names), images=self.images,
            segments=segments, weights=weights, class_indices=classes, intercepts=intercepts, scores=scores,
            local_predictions=local, outputs=outputs, num_samples=plan.max_evals, kernel_width=self.kernel_width,
            settings=self.settings, model_rows=guard.rows, seconds=time.perf_counter() - start, key=self.key,
            notes=list(plan.notes),
        )
        return self._stored(result, progress)
