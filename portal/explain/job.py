"""What the four explanation jobs share: SHAP and LIME, of table rows and of images.

A job is prepared cheaply (check the input, hash it, look its key up in the
cache). The model function and its output picker are built on first use, and
``run`` opens with :meth:`ExplainJob._restored` (the cached result, when there is
one) and ends with :meth:`ExplainJob._stored` (cache it, report "done").
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import Any, TypeVar

import numpy as np

from ..services import ModelServices
from ..storage.registry import ModelVersion
from .cache import CachedResult, ExplainCache
from .model import Guard, ModelFunction, OutputPicker, Progress
from .types import ExplainSettings

__all__ = ["ExplainJob"]

R = TypeVar("R", bound=CachedResult)


class ExplainJob:
    """Base of :class:`TabularJob`, :class:`ImageJob`, :class:`LimeJob` and :class:`LimeImageJob`.

    Subclasses set these attributes in ``__init__`` and say, in :meth:`_model_inputs`,
    how their rows or images reach the model.
    """

    services: ModelServices
    version: ModelVersion
    settings: ExplainSettings
    clock: Callable[[], float]
    cache: ExplainCache
    key: str
    _hit: tuple[dict[str, np.ndarray], dict[str, Any]] | None

    def _model_inputs(self) -> tuple[Callable[[np.ndarray], Any], np.ndarray]:
        """How a batch in explanation space becomes the model's feeds, and the rows (or images) explained."""
        raise NotImplementedError

    # -- model ------------------------------------------------------------------------
    @cached_property
    def picker(self) -> OutputPicker:
        to_feeds, explained = self._model_inputs()
        return OutputPicker.build(self.version, self.services.predict(self.version, to_feeds(explained), log=False))

    @cached_property
    def function(self) -> ModelFunction:
        to_feeds, _ = self._model_inputs()
        return ModelFunction(self.services, self.version, to_feeds, self.picker)

    @property
    def cached(self) -> bool:
        return self._hit is not None

    def _outputs(self) -> tuple[list[str], bool]:
        """The names of the model's explained outputs and whether it is a classifier (cached ones first)."""
        if self._hit is not None:
            return self._hit[1]["output_names"], self._hit[1]["classifier"]
        return list(self.picker.names), self.picker.classifier

    # -- run --------------------------------------------------------------------------
    def _restored(self, kind: type[R], progress: Progress | None) -> R | None:
        """The cached result as a ``kind`` under this job's ref (reported loaded), or None when not cached."""
        if self._hit is None:
            return None
        result = kind.restore(*self._hit, settings=self.settings, key=self.key)
        result.ref = self.version.ref
        if progress:
            progress(1.0, "loaded from the cache")
        return result

    def _guard(self, expected_rows: int, progress: Progress | None) -> Guard:
        """A guard of this job's hard budget, reporting progress against ``expected_rows`` model rows."""
        return Guard(max_rows=self.settings.max_model_rows, max_seconds=self.settings.max_seconds,
                     expected_rows=expected_rows, progress=progress, clock=self.clock)

    def _stored(self, result: R, progress: Progress | None) -> R:
        """``result``, once cached under this job's key (reported done)."""
        self.cache.put(self.key, *result.to_cache())
        if progress:
            progress(1.0, "done")
        return result
