"""The plain frozen records the registry hands out, and the checks of model-level fields.

Never ORM objects: callers cannot hold a database session open through them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidInputError

__all__ = ["TASKS", "AuditEvent", "ModelSummary", "ModelVersion", "check_tags", "check_task", "latest_of"]

TASKS = ("classification", "regression", "other")


@dataclass(frozen=True)
class ModelVersion:
    """One immutable version of a model, with its model-level metadata."""

    name: str
    version: int
    blob_sha: str
    size_bytes: int
    source_format: str
    info: dict[str, Any]
    meta: dict[str, Any]
    description: str
    task: str
    tags: tuple[str, ...]
    owner: str
    parent: str | None
    method: str | None
    method_params: dict[str, Any]
    reference_sha: str | None
    created_at: dt.datetime
    created_by: str
    aliases: tuple[str, ...] = ()
    visibility: str = "shared"
    model_id: int | None = None  # never reused: the prediction log is keyed by it
    owner_id: int | None = None  # the owner's user id (``owner`` is their name, "" when nobody owns it)

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    @property
    def signature(self) -> dict[str, Any]:
        return self.info["signature"]

    @property
    def feature_names(self) -> list[str] | None:
        return self.meta.get("feature_names")

    @property
    def class_labels(self) -> list[str] | None:
        return self.meta.get("class_labels")

    @property
    def preprocessing(self) -> dict[str, Any] | None:
        return self.meta.get("preprocessing")

    @property
    def is_variant(self) -> bool:
        """Whether a compression method made this version (from a parent), rather than an upload."""
        return self.method is not None


@dataclass(frozen=True)
class ModelSummary:
    """A model with its versions (newest first) and aliases."""

    name: str
    description: str
    task: str
    tags: tuple[str, ...]
    owner: str
    visibility: str
    created_at: dt.datetime
    updated_at: dt.datetime
    versions: tuple[ModelVersion, ...]
    aliases: dict[str, int] = field(default_factory=dict)
    next_version: int = 1
    model_id: int | None = None
    owner_id: int | None = None

    @property
    def latest(self) -> ModelVersion | None:
        """The version the bare name resolves to: see :func:`latest_of`."""
        return latest_of(self.versions)


def latest_of(versions: Sequence[ModelVersion]) -> ModelVersion | None:
    """The newest uploaded version of ``versions`` (newest first): what a bare model name means.

    Variants (versions a compression method made) never become "latest": they are
    reached by their number or an alias, so comparing variants does not move what
    ``name`` serves.  A model whose every upload was deleted (only variants left,
    their parent gone) resolves to its newest variant rather than to nothing, so
    the name keeps working until someone registers a new upload.
    """
    uploaded = next((v for v in versions if not v.is_variant), None)
    return uploaded if uploaded is not None else (versions[0] if versions else None)


@dataclass(frozen=True)
class AuditEvent:
    """One line of the append-only audit trail."""

    id: int
    ts: dt.datetime
    actor: str
    action: str
    target: str
    detail: dict[str, Any]


def check_task(task: str) -> str:
    """``task`` if it is one of :data:`TASKS`.

    Raises:
        InvalidInputError: any other task.
    """
    if task not in TASKS:
        raise InvalidInputError(f"invalid task {task!r}: expected one of {', '.join(TASKS)}")
    return task


def check_tags(tags: Sequence[str]) -> list[str]:
    """The tags (a list or one comma-separated string) stripped, without blanks or repeats.

    Raises:
        InvalidInputError: a tag longer than 64 characters or with control characters.
    """
    if isinstance(tags, str):
        tags = [t.strip() for t in tags.split(",")]
    clean = []
    for tag in tags:
        tag = str(tag).strip()
        if not tag:
            continue
        if len(tag) > 64 or any(ord(c) < 32 for c in tag):
            raise InvalidInputError(f"invalid tag {tag[:64]!r}: at most 64 printable characters")
        if tag not in clean:
            clean.append(tag)
    return clean
