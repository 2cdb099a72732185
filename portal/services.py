"""What the feature packages may ask of the portal: :class:`ModelServices`.

``compress``, ``explain`` and ``monitor`` never import :mod:`portal.core`; they
take an object with exactly these members (the :class:`portal.core.Portal`
facade is one, scoped to its signed-in user), so the import graph runs one way:

    storage, ingest, serving  →  services  →  compress, explain, monitor  →  core (Portal)  →  api, cli, ui

Everything here resolves a reference for the current user, checks what they may
do, and hands back plain rows, paths, frames and feeds; none of it is a back door
around the role and visibility rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from .accounts.auth import User
    from .config import Settings
    from .monitor.log import PredictionLog
    from .serving.predict import Prediction
    from .serving.runtime import SessionCache
    from .serving.signature import Feeds
    from .storage.refs import ModelRef
    from .storage.registry import ModelSummary, ModelVersion, Registry
    from .storage.store import BlobStore

__all__ = ["ModelServices"]


class ModelServices(Protocol):
    """The registry, store, session cache and one predict function, seen by one user."""

    settings: Settings
    registry: Registry
    store: BlobStore
    cache: SessionCache
    monitor: PredictionLog | None
    user: User | None
    actor: str

    def get(self, ref: str | ModelRef | ModelVersion) -> ModelVersion:
        """Resolve ``ref`` to a version the current user may see."""

    def get_model(self, name: str) -> ModelSummary:
        """The model ``name`` if the current user may see it."""

    def can(self, action: str, model: ModelVersion | ModelSummary | None = None) -> bool:
        """Whether the current user may do ``action`` (on ``model``)."""

    def check(self, action: str, model: ModelVersion | ModelSummary | None = None) -> None:
        """Raise ``PermissionDeniedError`` unless the current user may do ``action``."""

    def invalidate(self) -> None:
        """Forget resolved references after the registry changed (a new version, a moved alias)."""

    def model_path(self, ref: str | ModelRef) -> Path:
        """A local path to the version's verified model file."""

    def reference_frame(self, ref: str | ModelRef) -> pd.DataFrame | None:
        """The version's reference data, if it has any."""

    def coerce(self, ref: str | ModelRef | ModelVersion, data: Any, **options: Any) -> Feeds:
        """``data`` as the feeds the version's signature asks for."""

    def images_to_array(
        self, ref: str | ModelRef | ModelVersion, images: Sequence[Any], names: Sequence[str] | None = None,
    ) -> np.ndarray:
        """Decode and preprocess images as the version's metadata says."""

    def predict(self, ref: str | ModelRef | ModelVersion, data: Any, **options: Any) -> Prediction:
        """Run the version on ``data`` through the one predict pipeline."""
