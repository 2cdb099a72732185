"""What every part of the ``Portal`` facade shares: its stores, its pipeline and who it acts for.

The parts of :class:`portal.core.Portal` (access, registering, editing,
predicting) are mixins over this state; only :mod:`portal.core.portal` sets it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from ..accounts.auth import User
    from ..config import Settings
    from ..monitor.log import PredictionLog
    from ..serving.pipeline import Pipeline
    from ..serving.runtime import SessionCache
    from ..storage.registry import Registry
    from ..storage.store import BlobStore

__all__ = ["PortalState"]


class PortalState:
    """The portal's shared state; a view for another user (``as_user``) shares all of it."""

    settings: Settings
    registry: Registry
    store: BlobStore
    pipeline: Pipeline
    actor: str
    user: User | None = None
    source: str = "library"

    @property
    def cache(self) -> SessionCache:
        """The process's onnxruntime sessions (the pipeline's)."""
        return self.pipeline.cache

    @cache.setter
    def cache(self, cache: SessionCache) -> None:
        self.pipeline.cache = cache

    @property
    def monitor(self) -> PredictionLog | None:
        """The prediction log every prediction is recorded to (None: off)."""
        return cast("PredictionLog | None", self.pipeline.log)

    @monitor.setter
    def monitor(self, log: PredictionLog | None) -> None:
        self.pipeline.log = log
