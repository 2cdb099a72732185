"""The ``Portal`` facade: the one object every front door talks to."""

from __future__ import annotations

import contextlib
import copy
import getpass
import io
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd

from .accounts.auth import User, require
from .config import Settings
from .serving.dataio import read_input, write_frame
from .errors import (
    CorruptBlobError,
    InvalidInputError,
    InvalidNameError,
    NotFoundError,
    PermissionDeniedError,
    PortalError,
)
from .serving.images import IMAGE_SUFFIXES, load_image, preprocess_images
from .serving.memlimit import install as install_memory_limit
from .serving.predict import Prediction, run_feeds
from .monitor.log import PredictionLog
from .storage.refs import ModelRef, check_name
from .storage.registry import ModelSummary, ModelVersion, Registry
from .serving.runtime import LoadedSession, SessionCache, SessionConfig
from .serving.signature import FastPlan, Feeds, coerce, fixed_batch
from .storage.store import BlobStore, receive_stream

__all__ = ["Portal", "StagedModel", "suggest_name"]


Source = str | Path | bytes | BinaryIO
DEMO_NAMES = ("breast-cancer", "diabetes", "digits", "wine")
Progress = Callable[[str], None]


@dataclass
class StagedModel:
    """An upload that passed ingest and waits for the user's confirmation."""

    id: str
    workdir: Path
    filename: str
    report: Any  # portal.ingest.IngestReport

    @property
    def info(self) -> dict[str, Any]:
        return self.report.info

    @property
    def suggested(self) -> dict[str, Any]:
        return self.report.suggested


def _default_actor() -> str:
    with contextlib.suppress(Exception):
        return getpass.getuser()
    return "local"


def suggest_name(filename: str) -> str:
    """A valid model name from an upload's file name (``My Model.v2.onnx`` → ``My-Model``)."""
    stem = filename.replace("\\", "/").rsplit("/", 1)[-1].split(".")[0]
    clean = "".join(c if c.isalnum() or c in "-_" else "-" for c in stem).strip("-_")
    return clean[:64] or "model"


class Portal:
    """Registry + blob store + session cache, behind one API.

    Open with :meth:`open`; share one instance per process (it is thread-safe).

    Who may do what is decided here, so the UI, the CLI and the API cannot
    differ: :meth:`as_user` gives a view of the same portal (same registry,
    store, caches and prediction log) that acts for one signed-in user and
    checks their role, the model's owner and its visibility on every call
    (see :mod:`portal.accounts.auth`).  The unscoped portal (``user is None``) is the
    local operator: the CLI without a token, ``PORTAL_AUTH=off``, the demo
    loader and maintenance tasks, who can read the files anyway.
    """

    user: User | None = None
    source: str = "library"

    def __init__(self, settings: Settings, *, registry: Registry | None = None, actor: str | None = None) -> None:
        self.settings = settings
        self.home = settings.home
        self.home.mkdir(parents=True, exist_ok=True)
        self.store = BlobStore(self.home, cipher=_cipher(settings), fs=_blob_fs(settings))
        self.registry = registry or Registry.open(settings.resolved_db_url)
        self.cache = SessionCache(max_bytes=settings.cache_bytes, max_count=settings.cache_count)
        install_memory_limit(settings.predict_memory_bytes)  # for the whole process, like onnxruntime's env
        self.actor = actor or _default_actor()
        self.monitor: PredictionLog | None = PredictionLog(
            self.registry.engine, sample_rows=settings.log_sample_rows,
            sample_interval=settings.log_sample_interval_seconds, retention_days=settings.log_retention_days,
        ) if settings.monitor else None
        self._refs: dict[str, tuple[float, ModelVersion]] = {}
        self._refs_lock = threading.Lock()
        self._frames: dict[str, pd.DataFrame] = {}
        self._plans: dict[str, tuple[FastPlan | None, int | None]] = {}

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
            from dataclasses import replace

            settings = replace(settings, home=Path(home))
        portal = cls(settings)
        if check:
            portal.fsck(repair=True)
        return portal

    # -- who ----------------------------------------------------------------
    def as_user(self, user: User | None, *, source: str | None = None) -> Portal:
        """This portal acting for ``user`` (None: the unrestricted local operator).

        The view shares everything with this portal; ``source`` (ui, cli, api)
        labels its predictions in the log.
        """
        view = copy.copy(self)
        view.user = user
        view.actor = user.name if user is not None else self.actor
        if source is not None:
            view.source = source
        return view

    def can(self, action: str, model: ModelVersion | ModelSummary | None = None) -> bool:
        """Whether the current user may do ``action`` (on ``model``): for pages to hide what is refused."""
        try:
            self.check(action, model)
        except PortalError:
            return False
        return True

    def check(self, action: str, model: ModelVersion | ModelSummary | None = None) -> None:
        """Raise unless the current user may do ``action`` (on ``model``).

        Raises:
            NotFoundError: ``model`` is private to someone else (it is not even listed).
            PermissionDeniedError: the role, or ownership of ``model``, does not allow it.
        """
        user = self.user
        if user is None:
            return
        if model is not None and not self._visible(model):
            raise NotFoundError(f"no model named {model.name!r}; `portal list` shows the registered models")
        if model is None:
            require(user, action)
        else:
            require(user, action, model_owner=model.owner, model_owner_id=model.owner_id)

    def _visible(self, model: ModelVersion | ModelSummary) -> bool:
        # by user id, never by name: a user deleted and re-created under the same name owns nothing of the old one's
        user = self.user
        return (
            user is None or user.role == "admin" or model.visibility != "private"
            or (model.owner_id is not None and model.owner_id == user.id)
        )

    def _check_visible(self, model: ModelVersion | ModelSummary) -> None:
        if not self._visible(model):
            raise NotFoundError(f"no model named {model.name!r}; `portal list` shows the registered models")

    def check_upload_to(self, name: str | None) -> None:
        """Refuse an upload to ``name`` the user may not add to; a name they cannot see is "taken".

        Names are one namespace (SECURITY.md): whether a name exists is visible to anyone who
        may upload, nothing else about it; every door gives this same answer.
        """
        existing = self.find_model(name) if name else None
        if existing is not None and not self._visible(existing):
            self.check("upload")  # a viewer learns nothing: the role is refused first
            raise PermissionDeniedError(f"the name {name!r} is taken; pick another name")
        self.check("upload", existing)

    def find_model(self, name: str) -> ModelSummary | None:
        """The model ``name`` (unfiltered by visibility), or None: for checks before an upload."""
        try:
            return self.registry.get_model(name)
        except NotFoundError:
            return None

    def rotate_key(self, new_key: str | None, *, actor: str | None = None) -> int:
        """Re-encrypt every blob with ``new_key`` (None: decrypt the store); return how many."""
        from .storage.crypto import BlobCipher

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
        from .storage.fsck import GRACE_SECONDS, fsck

        if repair:
            self.check("admin")
        return fsck(self.store, self.registry, repair=repair, verify=verify,
                    grace_seconds=GRACE_SECONDS if grace_seconds is None else grace_seconds)

    def close(self) -> None:
        if self.monitor is not None:
            self.monitor.close()
        self.cache.clear()
        self.registry.close()

    # -- lookup -------------------------------------------------------------
    def invalidate(self) -> None:
        """Forget resolved references after the registry changed (a new version, a moved alias)."""
        with self._refs_lock:
            self._refs.clear()

    def get(self, ref: str | ModelRef | ModelVersion) -> ModelVersion:
        """The version ``ref`` points at (cached for ``ref_ttl_seconds``).

        A ``ModelVersion`` already resolved is returned as it is, once the current
        user is checked to see it.
        """
        if isinstance(ref, ModelVersion):
            version = ref
            if self.user is not None:
                self._check_visible(version)
            return version
        key = str(ref)
        now = time.monotonic()
        hit = self._refs.get(key)
        if hit is not None and hit[0] > now:
            version = hit[1]
        else:
            version = self.registry.resolve(ref)
            with self._refs_lock:
                self._refs[key] = (now + self.settings.ref_ttl_seconds, version)
        if self.user is not None:
            self._check_visible(version)
        return version

    def list_models(self) -> list[ModelSummary]:
        """The models the current user may see."""
        models = self.registry.list_models()
        return models if self.user is None else [m for m in models if self._visible(m)]

    def get_model(self, name: str) -> ModelSummary:
        summary = self.registry.get_model(name)
        if self.user is not None:
            self._check_visible(summary)
        return summary

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

    # -- ingest -------------------------------------------------------------
    def prepare(
        self,
        source: Source,
        *,
        filename: str | None = None,
        input_shape: Sequence[int] | None = None,
        progress: Progress | None = None,
    ) -> StagedModel:
        """Receive and validate an upload in the sandbox; nothing is registered yet."""
        from .ingest import ingest_file

        self.check("upload")
        filename = filename or (Path(source).name if isinstance(source, (str, Path)) else "upload")
        workdir = self.store.make_staging_dir("upload")
        try:
            upload = workdir / "upload.bin"
            self._receive(source, upload)
            if progress:
                progress("received")
            report = ingest_file(upload, workdir, settings=self.settings, input_shape=input_shape, progress=progress)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        return StagedModel(id=workdir.name, workdir=workdir, filename=Path(filename).name, report=report)

    def _receive(self, source: Source, dest: Path) -> None:
        limit = self.settings.max_upload_bytes
        if isinstance(source, (bytes, bytearray)):
            receive_stream(io.BytesIO(source), dest, limit=limit)
        elif isinstance(source, (str, Path)):
            path = Path(source)
            if not path.is_file():
                raise InvalidInputError(f"no such file: {path}")
            with open(path, "rb") as fh:
                receive_stream(fh, dest, limit=limit)
        else:
            receive_stream(source, dest, limit=limit)

    def discard(self, staged: StagedModel) -> None:
        """Forget a staged upload and remove its files."""
        shutil.rmtree(staged.workdir, ignore_errors=True)

    def register(
        self,
        source: Source | StagedModel,
        name: str | None = None,
        *,
        filename: str | None = None,
        input_shape: Sequence[int] | None = None,
        progress: Progress | None = None,
        **metadata: Any,
    ) -> ModelVersion:
        """Ingest ``source`` and register it as the next version of ``name``.

        Metadata keywords: description, tags, task, feature_names, class_labels,
        preprocessing, reference (DataFrame or CSV/Parquet path), actor.
        """
        if name is not None:
            check_name(name)  # a bad name is refused before the sandbox runs
        if self.user is not None:
            target = name or (suggest_name(source.filename) if isinstance(source, StagedModel) else None)
            self.check_upload_to(target)
        given = isinstance(source, StagedModel)
        staged = source if given else self.prepare(
            source, filename=filename, input_shape=input_shape, progress=progress
        )
        try:
            version = self._register_staged(staged, name, metadata)
        except InvalidInputError:
            # a refused name or metadata: a staged upload stays so the user can fix and retry
            if not given:
                self.discard(staged)
            raise
        except BaseException:
            self.discard(staged)
            raise
        self.discard(staged)
        if progress:
            progress("registered")
        return version

    def _register_staged(self, staged: StagedModel, name: str | None, metadata: dict[str, Any]) -> ModelVersion:
        from .ingest.metadata import build_version_meta

        name = check_name(name or suggest_name(staged.filename))
        if self.user is not None:
            self.check_upload_to(name)
        actor = self.actor if self.user is not None else (metadata.pop("actor", None) or self.actor)
        metadata.pop("actor", None)
        reference = metadata.pop("reference", None)
        parent = metadata.pop("parent", None)
        method = metadata.pop("method", None)
        method_params = metadata.pop("method_params", None)
        model_fields, meta = build_version_meta(staged.report, metadata)
        if not staged.report.model_path.is_file():
            raise InvalidInputError("this upload is no longer staged (it expired or was discarded); upload the file again")
        blob = self.store.adopt(staged.report.model_path)
        ref_blob = self._store_reference(reference, staged.report.info["signature"], meta) if reference is not None else None
        version = self.registry.add_version(
            name, blob_sha=blob.sha256, size_bytes=blob.size, source_format=staged.report.source_format,
            info=staged.report.info, meta=meta, actor=actor, parent=parent, method=method,
            method_params=method_params, reference_sha=ref_blob, model_fields=model_fields,
            owner_id=self.user.id if self.user is not None else None,
        )
        self.store.ensure(staged.report.model_path, blob)
        self.invalidate()
        return version

    def _store_reference(self, reference: Any, signature: dict[str, Any], meta: dict[str, Any]) -> str:
        frame = reference if isinstance(reference, pd.DataFrame) else read_input(reference)
        if not isinstance(frame, pd.DataFrame) or frame.empty:
            raise InvalidInputError("reference data must be a non-empty table (DataFrame, CSV or Parquet)")
        frame = frame.copy()
        frame.columns = [str(c) for c in frame.columns]
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        return self.store.put_bytes(buffer.getvalue()).sha256

    # -- registry writes ------------------------------------------------------
    def _actor(self, actor: str | None) -> str:
        # a signed-in user is always the actor of their own changes
        return self.actor if self.user is not None else (actor or self.actor)

    def _require_model(self, action: str, name: str) -> None:
        if self.user is not None:
            self.check(action, self.registry.get_model(name))

    def set_alias(self, ref: str | ModelRef, alias: str, *, actor: str | None = None) -> ModelVersion:
        self._require_model("alias", ModelRef.parse(ref).name)
        version = self.registry.set_alias(ref, alias, actor=self._actor(actor))
        self.invalidate()
        return version

    def remove_alias(self, name: str, alias: str, *, actor: str | None = None) -> None:
        self._require_model("alias", name)
        self.registry.remove_alias(name, alias, actor=self._actor(actor))
        self.invalidate()

    def update_model(self, name: str, *, actor: str | None = None, **fields: Any) -> ModelSummary:
        self._require_model("edit", name)
        if self.user is not None and fields.get("owner") is not None:
            self.check("admin")
        summary = self.registry.update_model(name, actor=self._actor(actor), **fields)
        self.invalidate()
        return summary

    def update_version(self, ref: str | ModelRef, *, actor: str | None = None, **fields: Any) -> ModelVersion:
        self._require_model("edit", ModelRef.parse(ref).name)
        version = self.registry.update_version_meta(ref, actor=self._actor(actor), **fields)
        self.invalidate()
        return version

    def delete(self, ref: str | ModelRef, *, force: bool = False, actor: str | None = None) -> list[str]:
        """Delete a version (``name:3``) or a whole model (``name``); return what was deleted.

        Refused while an alias points at it or variants depend on it, unless ``force``.
        The prediction log of what is deleted (callers, counts, sampled inputs) goes with it.
        """
        parsed = ModelRef.parse(ref)
        self._require_model("delete", parsed.name)
        actor = self._actor(actor)
        if parsed.version is None and parsed.alias is None:
            summary = self.registry.delete_model(parsed.name, actor=actor, force=force)
            gone = [v for v in summary.versions]
        else:
            gone = [self.registry.delete_version(parsed, actor=actor, force=force)]
        self.invalidate()
        for version in gone:
            self._collect_blob(version.blob_sha)
            if version.reference_sha:
                self._collect_blob(version.reference_sha)
        return [v.ref for v in gone]

    def _collect_blob(self, sha: str) -> None:
        if not self.registry.blob_in_use(sha):
            self.cache.discard(sha)
            self.store.delete(sha)

    # -- predict --------------------------------------------------------------
    def session(self, version: ModelVersion, *, config: SessionConfig = SessionConfig()) -> LoadedSession:
        """The shared onnxruntime session of ``version``."""
        return self.cache.get(
            version.blob_sha, lambda: self._blob_source(version), size_bytes=version.size_bytes,
            signature=version.signature, config=config, label=version.ref,
        )

    def _blob_source(self, version: ModelVersion) -> Path | bytes:
        try:
            path = self.store.local_path(version.blob_sha)
        except NotFoundError:
            self.invalidate()
            if not self.registry.blob_in_use(version.blob_sha):
                raise NotFoundError(f"{version.ref} was deleted") from None
            raise
        return path if path is not None else self.store.read_bytes(version.blob_sha)

    def coerce(self, ref: str | ModelRef | ModelVersion, data: Any, **options: Any) -> Feeds:
        """The feeds ``predict`` would run for ``data`` (for previews and checks)."""
        return self._coerce(self.get(ref), data, **options)

    def _coerce(self, version: ModelVersion, data: Any, *, allow_nan: bool = False, extra_columns: str = "error") -> Feeds:
        if isinstance(data, (str, Path)):
            data = self._read_file(version, Path(data))
        return coerce(version.signature, data, feature_names=version.feature_names,
                      allow_nan=allow_nan, extra_columns=extra_columns)

    def _read_file(self, version: ModelVersion, path: Path) -> Any:
        if not path.is_file():
            raise InvalidInputError(f"no such file: {path}")
        if path.suffix.lower() in IMAGE_SUFFIXES:
            return self.images_to_array(version, [path])
        return read_input(path)

    def images_to_array(self, ref: str | ModelRef | ModelVersion, images: Sequence[Any], names: Sequence[str] | None = None) -> np.ndarray:
        """Decode and preprocess images (paths, bytes or PIL images) for ``ref``."""
        version = self.get(ref)
        decoded = []
        for i, image in enumerate(images):
            label = names[i] if names else (Path(image).name if isinstance(image, (str, Path)) else f"image {i + 1}")
            if hasattr(image, "convert"):
                decoded.append(image)
            else:
                decoded.append(load_image(image, max_pixels=self.settings.max_image_pixels, name=label))
        return preprocess_images(decoded, version.signature, version.preprocessing)

    def predict(
        self,
        ref: str | ModelRef | ModelVersion,
        data: Any,
        *,
        allow_nan: bool = False,
        extra_columns: str = "error",
        run_options: Any = None,
    ) -> Prediction:
        """Predict with the version ``ref`` on ``data`` (see :func:`portal.serving.signature.coerce`).

        Every call is queued to the prediction log (see :mod:`portal.monitor.log`),
        failures included once the version is known.
        """
        start = time.perf_counter()
        version = self.get(ref)
        feeds = None
        try:
            plan = self._plans.get(version.blob_sha)
            if plan is None:
                plan = self._plans[version.blob_sha] = (FastPlan.build(version.signature), fixed_batch(version.signature))
            fast, fixed = plan
            feeds = fast.feeds(data, allow_nan) if fast is not None else None
            if feeds is None:
                feeds = self._coerce(version, data, allow_nan=allow_nan, extra_columns=extra_columns)
            loaded = self.session(version)
            hit = self.cache.last_hit()
            outputs, keys = run_feeds(loaded, feeds, chunk_rows=self.settings.chunk_rows,
                                      fixed_batch=fixed, run_options=run_options)
        except Exception as exc:
            self.log_prediction(version, rows=feeds.rows if feeds is not None else 0,
                                latency_s=time.perf_counter() - start, error=exc)
            raise
        latency = time.perf_counter() - start
        self.log_prediction(version, rows=feeds.rows, latency_s=latency, feeds=feeds, cache_hit=hit)
        return Prediction(
            ref=version.ref, outputs=outputs, rows=feeds.rows, latency_s=latency,
            task=version.task, class_labels=version.class_labels, output_keys=keys,
            unused_columns=feeds.unused_columns,
            index=data.index if isinstance(data, pd.DataFrame) else None,
        )

    def log_prediction(
        self,
        version: ModelVersion,
        *,
        rows: int,
        latency_s: float,
        error: BaseException | None = None,
        feeds: Feeds | None = None,
        cache_hit: bool | None = None,
        caller: str | None = None,
        source: str | None = None,
    ) -> None:
        """Queue one prediction to the log (:meth:`predict` does; so does the API's own run path).

        ``caller`` and ``source`` default to this portal's actor and source.
        """
        if self.monitor is not None:
            self.monitor.record(version.name, version.version, model_id=version.model_id, caller=caller or self.actor,
                                source=source or self.source, rows=rows,
                                latency_s=latency_s, error=error, feeds=feeds.arrays if feeds is not None else None,
                                feature_names=version.feature_names, cache_hit=cache_hit)

    def predict_file(
        self,
        ref: str | ModelRef,
        path: str | Path,
        output: str | Path | None = None,
        *,
        extra_columns: str = "error",
        progress: Callable[[int], None] | None = None,
        keep_inputs: bool = False,
        cancel: threading.Event | None = None,
    ) -> pd.DataFrame | Prediction:
        """Score a file; CSV and Parquet are streamed (parse, infer and write overlap; memory bounded by the chunk size).

        With ``output`` the results are written there and a one-row summary is
        returned; without it the results table.  A CSV or Parquet output of a
        table is written to a temp file and renamed into place when every row is
        scored, so an error (which names the line and column) or a ``cancel``
        (a ``threading.Event``) leaves nothing under the output name.
        ``keep_inputs`` writes the input columns before the results.  The whole
        file is one entry in the prediction log.  See :mod:`portal.serving.batch`.
        """
        version = self.get(ref)
        path = Path(path)
        if path.suffix.lower() not in (".csv", ".parquet"):
            prediction = self.predict(version, path, extra_columns=extra_columns)
            if output is not None:
                write_frame(prediction.to_frame(), Path(output), outputs=prediction.outputs)
            return prediction
        from .serving.batch import ScoringCancelled, score_file, session_config

        start = time.perf_counter()
        try:
            loaded = self.session(version, config=session_config())
            hit = self.cache.last_hit()
            result = score_file(loaded, version, path, output, chunk_rows=self.settings.chunk_rows,
                                extra_columns=extra_columns, keep_inputs=keep_inputs, cancel=cancel,
                                progress=progress)
        except ScoringCancelled:
            raise  # the user stopped it: not a failed prediction
        except Exception as exc:
            self.log_prediction(version, rows=0, latency_s=time.perf_counter() - start, error=exc)
            raise
        self.log_prediction(version, rows=result.rows, latency_s=result.seconds, feeds=result.sample, cache_hit=hit)
        return pd.DataFrame({"rows": [result.rows]}) if output is not None else result.frame

    # -- variants (see portal.compress.variants) ---------------------------------------
    def create_variant(self, ref: str | ModelRef, method: str, **options: Any) -> ModelVersion:
        """A compressed variant of ``ref`` (int8-dynamic, int8-static, fp16, prune, optimized)."""
        from .compress.variants import create_variant

        return create_variant(self, ref, method, **options)

    def compare(self, ref: str | ModelRef, **options: Any) -> Any:
        """Create and measure variants of ``ref`` against it; returns a ``Comparison`` with advice."""
        from .compress.variants import compare

        return compare(self, ref, **options)

    def load_comparison(self, ref: str | ModelRef, **options: Any) -> Any:
        """The stored comparison of ``ref``, without measuring again (None if never measured)."""
        from .compress.variants import load_comparison

        return load_comparison(self, ref, **options)

    def lineage(self, ref: str | ModelRef) -> list[ModelVersion]:
        """``ref`` and its ancestors, newest first."""
        from .compress.variants import lineage

        return lineage(self, ref)

    # -- demo -----------------------------------------------------------------
    def load_demo(self, *, progress: Progress | None = None) -> list[ModelVersion]:
        """Register the demo models unless they are already there (idempotent)."""
        from .demo import build_demo_sources

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
    from .storage.blobfs import from_url

    return from_url(settings.blob_url)


def _cipher(settings: Settings) -> Any:
    key = settings.encryption_key
    if not key:
        return None
    from .storage.crypto import BlobCipher

    return BlobCipher(key)
