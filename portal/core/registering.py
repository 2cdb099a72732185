"""Uploads into versions: receive and validate in the sandbox (staged), then register.

An upload is received under the size limit and checked by :mod:`portal.ingest`
in a sandbox before anything is registered; the staged result waits for the
user's confirmation (the browser) or is registered at once (the CLI, the API).
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pandas as pd

from ..errors import InvalidInputError
from ..storage.refs import check_name
from ..storage.registry import ModelVersion
from ..storage.store import receive_stream
from .access import Access
from .reference import reference_table, store_reference

__all__ = ["GENERIC_NAMES", "Progress", "Registering", "Source", "StagedModel", "is_generic_name", "suggest_name"]

Source = str | Path | bytes | BinaryIO
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


GENERIC_NAMES = frozenset({
    "model", "models", "export", "exported", "saved-model", "saved_model", "savedmodel", "onnx", "onnx-model",
    "onnx_model", "net", "network", "checkpoint", "weights", "pipeline", "output",
    "upload", "final", "best", "best-model", "best_model", "untitled", "file", "test", "tmp",
})
"""File stems that say nothing about the model: the Upload page asks for a real name instead."""


def is_generic_name(name: str) -> bool:
    """Whether ``name`` (e.g. ``model``, ``export``, ``saved_model``) says nothing about the model."""
    return name.strip().lower().replace(" ", "-") in GENERIC_NAMES


def suggest_name(filename: str) -> str:
    """A valid model name from an upload's file name (``My Model.v2.onnx`` → ``My-Model``)."""
    stem = filename.replace("\\", "/").rsplit("/", 1)[-1].split(".")[0]
    clean = "".join(c if c.isalnum() or c in "-_" else "-" for c in stem).strip("-_")
    return clean[:64] or "model"


class Registering(Access):
    """Staging an upload, registering it as the next version of a model, and discarding it."""

    def prepare(
        self,
        source: Source,
        *,
        filename: str | None = None,
        input_shape: Sequence[int] | None = None,
        progress: Progress | None = None,
    ) -> StagedModel:
        """Receive and validate an upload in the sandbox; nothing is registered yet."""
        from ..ingest import ingest_file

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
        from ..ingest.metadata import build_version_meta
        from ..serving.images import check_preprocessing

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
        if meta.get("preprocessing") is not None:  # checked here: ingest sits below serving's image rules
            meta["preprocessing"] = check_preprocessing(meta["preprocessing"], staged.report.info["signature"])
        if not staged.report.model_path.is_file():
            raise InvalidInputError("this upload is no longer staged (it expired or was discarded); upload the file again")
        # checked before anything is kept: bad reference data stores nothing and keeps the upload staged
        frame = self._reference_table(reference, staged.report.info["signature"], meta) if reference is not None else None
        blob = self.store.adopt(staged.report.model_path)
        ref_blob = store_reference(self.store, frame) if frame is not None else None
        version = self.registry.add_version(
            name, blob_sha=blob.sha256, size_bytes=blob.size, source_format=staged.report.source_format,
            info=staged.report.info, meta=meta, actor=actor, parent=parent, method=method,
            method_params=method_params, reference_sha=ref_blob, model_fields=model_fields,
            owner_id=self.user.id if self.user is not None else None,
        )
        self.store.ensure(staged.report.model_path, blob)
        self.invalidate()
        return version

    def _reference_table(self, reference: Any, signature: dict[str, Any], meta: dict[str, Any]) -> pd.DataFrame:
        """Reference data (a table, or images for an image model) checked against ``signature``."""
        return reference_table(
            reference, signature=signature, feature_names=meta.get("feature_names"),
            preprocessing=meta.get("preprocessing"), max_pixels=self.settings.max_image_pixels,
            max_bytes=self.settings.max_upload_bytes,
        )
