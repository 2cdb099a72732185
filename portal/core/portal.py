"""The ``Portal`` facade: the one object every front door talks to."""

from __future__ import annotations

import contextlib
import getpass
import io
import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..config import Settings
from ..errors import CorruptBlobError, PortalError
from ..monitor.log import PredictionLog
from ..serving.memlimit import install as install_memory_limit
from ..serving.pipeline import Pipeline
from ..serving.runtime import SessionCache
from ..storage.refs import ModelRef
from ..storage.registry import ModelVersion, Registry
from ..storage.store import BlobStore
from .editing import Editing
from .predicting import Predicting
from .registering import Progress, Registering

if TYPE_CHECKING:
    from ..compress import Variants
    from ..explain import Explanations
    from ..monitor import Monitoring

__all__ = ["DEMO_NAMES", "Portal"]

DEMO_NAMES = ("breast-cancer", "diabetes", "digits", "wine")


def _default_actor() -> str:
    with contextlib.suppress(Exception):
        return getpass.getuser()
    return "local"


class Portal(Registering, Editing, Predicting):
    """Registry + blob store + session cache, behind one API.

    Open with :meth:`open`; share one instance per process (it is thread-safe).

    Who may do what is decided here, so the UI, the CLI and the API cannot
    differ: :meth:`as_user` gives a view of the same portal (same registry,
    store, caches and prediction log) that acts for one signed-in user and
    checks their role, the model's owner and its visibility on every call
    (see :mod:`portal.accounts.auth`).  The unscoped portal (``user is None``) is the
    local operator: the CLI without a token, ``PORTAL_AUTH=off``, the demo
    loader and maintenance tasks, who can read the files anyway.

    The feature packages hang off it as services scoped to the same user:
    :attr:`variants` (compression), :attr:`explain` and :attr:`monitoring`.
    """

    def __init__(self, settings: Settings, *, registry: Registry | None = None, actor: str | None = None) -> None:
        self.settings = settings
        self.home = settings.home
        self.home.mkdir(parents=True, exist_ok=True)
        self.store = BlobStore(self.home, cipher=_cipher(settings), fs=_blob_fs(settings))
        self.registry = registry or Registry.open(settings.resolved_db_url)
        install_memory_limit(settings.predict_memory_bytes)  # for the whole process, like onnxruntime's env
        self.actor = actor or _default_actor()
        log = PredictionLog(
            self.registry.engine, sample_rows=settings.log_sample_rows,
            sample_interval=settings.log_sample_interval_seconds, retention_days=settings.log_retention_days,
        ) if settings.monitor else None
        self.pipeline = Pipeline(
            SessionCache(max_bytes=settings.cache_bytes, max_count=settings.cache_count), self._blob_source,
            chunk_rows=settings.chunk_rows, max_image_pixels=settings.max_image_pixels, log=log,
        )
        self._refs: dict[str, tuple[float, ModelVersion]] = {}
        self._refs_lock = threading.Lock()
        self._frames: dict[str, pd.DataFrame] = {}

    @classmethod
    def open(
        cls, home: str | Path | None = None, *, settings: Settings | None = None, check: bool = True, **overrides: Any
    ) -> Portal:
        """Open (creating if needed) the store at ``home`` (default ``$PORTAL_HOME`` or ``./model_cache``).

        With ``check`` (the default) a quick :func:`portal.storage.fsck.fsck` collects debris
        a crash may have left (never a referenced blob).
        """
        if settings is None:
            settings = Settings.from_env(**({"home": Path(home)} if home is not None else {}), **overrides)
        elif home is not None:
            settings = replace(settings, home=Path(home))
        portal = cls(settings)
        if check:
            portal.fsck(repair=True)
        return portal

    # -- the feature packages, for the current user ------------------------------
    @property
    def variants(self) -> Variants:
        """Compressed variants of this user's versions: create, compare, lineage (see :mod:`portal.compress`)."""
        from ..compress import Variants

        return Variants(self)

    @property
    def explain(self) -> Explanations:
        """SHAP and LIME explanations of this user's versions (see :mod:`portal.explain`)."""
        from ..explain import Explanations

        return Explanations(self)

    @property
    def monitoring(self) -> Monitoring:
        """Traffic, latency and input drift of this user's versions (see :mod:`portal.monitor`)."""
        from ..monitor import Monitoring

        return Monitoring(self)

    # -- the store ------------------------------------------------------------------
    def model_path(self, ref: str | ModelRef) -> Path:
        """Local path of the version's ONNX file (read-only).

        On an encrypted store the plaintext never touches the disk: use :meth:`model_bytes`.
        """
        version = self.get(ref)
        path = self.store.local_path(version.blob_sha)
        if path is None:
            raise PortalError(f"the store is encrypted; read {version.ref} with model_bytes() instead of a path")
        if not self.store.verify(version.blob_sha):  # variants and measurements build on this file
            raise CorruptBlobError.for_blob(version.blob_sha, label=version.ref)
        return path

    def model_bytes(self, ref: str | ModelRef) -> bytes:
        """The version's ONNX file content (decrypted in memory on an encrypted store)."""
        version = self.get(ref)
        return self.store.read_bytes(version.blob_sha)

    def reference_frame(self, ref: str | ModelRef) -> pd.DataFrame | None:
        """The version's reference data set, if it has one."""
        version = self.get(ref)
        sha = version.reference_sha
        if not sha:
            return None
        if sha not in self._frames:
            self._frames[sha] = pd.read_parquet(io.BytesIO(self.store.read_bytes(sha)))
        return self._frames[sha].copy()

    def rotate_key(self, new_key: str | None, *, actor: str | None = None) -> int:
        """Re-encrypt every blob with ``new_key`` (None: decrypt the store); return how many."""
        from ..storage.crypto import BlobCipher

        self.check("admin")
        new_cipher = BlobCipher(new_key) if new_key else None
        count = 0
        for sha in list(self.store.iter_blobs()):
            self.store.rewrite(sha, new_cipher)
            count += 1
        self.store.cipher = new_cipher
        self.cache.clear()
        self.registry.record(actor or self.actor, "store.rotate_key", str(self.home),
                             {"blobs": count, "encrypted": new_cipher is not None})
        return count

    def fsck(self, *, repair: bool = True, verify: bool = False, grace_seconds: float | None = None) -> Any:
        """Check that registry rows and blob files agree; see :mod:`portal.storage.fsck`."""
        from ..storage.fsck import GRACE_SECONDS, fsck

        if repair:
            self.check("admin")
        return fsck(self.store, self.registry, repair=repair, verify=verify,
                    grace_seconds=GRACE_SECONDS if grace_seconds is None else grace_seconds)

    def close(self) -> None:
        """Write the queued prediction log, drop the sessions and close the database."""
        if self.monitor is not None:
            self.monitor.close()
        self.cache.clear()
        self.registry.close()

    # -- demo -----------------------------------------------------------------
    def load_demo(self, *, progress: Progress | None = None) -> list[ModelVersion]:
        """Register the demo models unless they are already there (idempotent)."""
        from ..demo import build_demo_sources

        existing = set(self.registry.model_names())
        if existing >= set(DEMO_NAMES):
            return []
        with self.store.staging("demo") as workdir:
            sources = build_demo_sources(workdir)
            added = []
            for src in sources:
                if src.name in existing:
                    continue
                if progress:
                    progress(src.name)
                added.append(self.register(
                    src.path, src.name, input_shape=src.input_shape, description=src.description,
                    task=src.task, tags=src.tags, feature_names=src.feature_names,
                    class_labels=src.class_labels, preprocessing=src.preprocessing,
                    reference=src.reference, actor="demo",
                ))
        return added


def _blob_fs(settings: Settings) -> Any:
    """The blobs' filesystem: ``PORTAL_BLOB_URL`` (any fsspec URL) or ``PORTAL_HOME/blobs``."""
    if not settings.blob_url:
        return None
    from ..storage.blobfs import from_url

    return from_url(settings.blob_url)


def _cipher(settings: Settings) -> Any:
    key = settings.encryption_key
    if not key:
        return None
    from ..storage.crypto import BlobCipher

    return BlobCipher(key)
