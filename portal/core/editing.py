"""Changes to what is registered: aliases, model and version fields, deletion.

A signed-in user is always the actor of their own changes, and may change only
what their role and ownership allow; every change forgets the resolved
references, and a deletion collects the blobs nothing uses any more.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any

from ..compress.gate import gate_refusal, latest_gate
from ..errors import ConflictError
from ..ingest.metadata import build_version_meta
from ..serving.images import check_preprocessing
from ..storage.refs import ModelRef
from ..storage.registry import ModelSummary, ModelVersion
from .access import Access
from .reference import reference_table, store_reference

__all__ = ["Editing"]


class Editing(Access):
    """Aliases, metadata edits and deletion, checked for the current user."""

    def _actor(self, actor: str | None) -> str:
        # a signed-in user is always the actor of their own changes
        return self.actor if self.user is not None else (actor or self.actor)

    def _require_model(self, action: str, name: str) -> None:
        if self.user is not None:
            self.check(action, self.registry.get_model(name))

    def set_alias(self, ref: str | ModelRef, alias: str, *, actor: str | None = None,
                  override_gate: bool = False) -> ModelVersion:
        """Point ``alias`` of the model at the version ``ref``.

        A variant that failed the evaluation gate of its latest gated comparison
        (:mod:`portal.compress.gate`) is refused, unless ``override_gate``: then the
        audit row of the move records the override.

        Raises:
            ConflictError: the variant failed its evaluation gate (the message names the rules and the date).
        """
        self._require_model("alias", ModelRef.parse(ref).name)
        target = self.registry.resolve(ref)
        detail = None
        stored = latest_gate(self.registry.engine, target.ref) if target.parent else None
        if stored is not None and not stored.result.passed:
            if not override_gate:
                raise ConflictError(gate_refusal(stored))
            detail = {"gate_override": stored.audit()}
        version = self.registry.set_alias(target.ref, alias, actor=self._actor(actor), detail=detail)
        self.invalidate()
        return version

    def remove_alias(self, name: str, alias: str, *, actor: str | None = None) -> None:
        """Remove ``alias`` from the model ``name``."""
        self._require_model("alias", name)
        self.registry.remove_alias(name, alias, actor=self._actor(actor))
        self.invalidate()

    def update_model(self, name: str, *, actor: str | None = None, **fields: Any) -> ModelSummary:
        """Edit model-level metadata (description, task, tags, visibility; the owner: admins only)."""
        self._require_model("edit", name)
        if self.user is not None and fields.get("owner") is not None:
            self.check("admin")
        summary = self.registry.update_model(name, actor=self._actor(actor), **fields)
        self.invalidate()
        return summary

    def update_version(self, ref: str | ModelRef, *, actor: str | None = None, **fields: Any) -> ModelVersion:
        """Edit the version's descriptive metadata (feature names, class labels, notes)."""
        self._require_model("edit", ModelRef.parse(ref).name)
        version = self.registry.update_version_meta(ref, actor=self._actor(actor), **fields)
        self.invalidate()
        return version

    def set_image_settings(
        self, ref: str | ModelRef, preprocessing: Mapping[str, Any], *, class_labels: Sequence[str] | None = None,
        classify: bool = False, actor: str | None = None,
    ) -> ModelVersion:
        """Set the version's image preprocessing and class labels, checked against its signature.

        ``classify`` makes the model a classifier (class label and top-k from its scores).
        """
        version = self.get(ref)
        self._require_model("edit", version.name)
        prep = check_preprocessing(preprocessing, version.signature)
        labels = list(class_labels) if class_labels else None
        build_version_meta(SimpleNamespace(info=version.info, suggested={}),
                           {"class_labels": labels, "task": "classification" if classify else version.task})
        if classify and version.task != "classification":
            self.registry.update_model(version.name, actor=self._actor(actor), task="classification")
        updated = self.registry.update_version_meta(version.ref, actor=self._actor(actor), preprocessing=prep,
                                                    class_labels=labels)
        self.invalidate()
        return updated

    def set_reference_data(self, ref: str | ModelRef, data: Any, *, actor: str | None = None) -> ModelVersion:
        """Keep ``data`` as the version's reference data (replacing any), checked against its signature.

        ``data``: a table (DataFrame, CSV or Parquet) with the model's columns, or, for an
        image model, images (files, ``(name, bytes)`` uploads, a folder or a zip); see
        :mod:`portal.core.reference`. Nothing is stored when the check fails.
        """
        version = self.get(ref)
        self._require_model("edit", version.name)
        frame = reference_table(
            data, signature=version.signature, feature_names=version.feature_names,
            preprocessing=version.preprocessing, max_pixels=self.settings.max_image_pixels,
            max_bytes=self.settings.max_upload_bytes,
        )
        sha = store_reference(self.store, frame)
        try:
            updated, previous = self.registry.set_reference(version.ref, sha, actor=self._actor(actor))
        except BaseException:
            self._collect_blob(sha)  # a version deleted meanwhile: nothing keeps the new blob
            raise
        self.invalidate()
        if previous and previous != sha:
            self._collect_blob(previous)
        return updated

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
