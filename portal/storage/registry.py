"""The model registry: models, immutable numbered versions, aliases, audit.

Rows only; files live in :mod:`portal.storage.store`.  Every public method returns plain
frozen records (:mod:`portal.storage.records`), never ORM objects, so callers cannot hold
a session open.  Reading rows into records is :mod:`portal.storage.queries`; the audit
trail is :mod:`portal.storage.audit`; this module owns the transactions and the writes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator, Mapping
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from ..errors import ConflictError, InvalidInputError, NotFoundError, PermissionDeniedError, PortalError
from .audit import add_event, events
from .db import AliasRow, ModelRow, PredictionRow, UserRow, VersionRow, make_engine, migrate, utcnow
from .queries import all_models, model_row, summary_record, user_id, version_record, version_row
from .records import TASKS, AuditEvent, ModelSummary, ModelVersion, check_tags, check_task
from .refs import ModelRef, check_alias, check_name

__all__ = ["AuditEvent", "ModelSummary", "ModelVersion", "Registry", "TASKS"]

_MODEL_FIELDS = ("description", "task", "tags", "owner", "visibility")
_VERSION_META_FIELDS = ("feature_names", "class_labels", "preprocessing", "notes")


class Registry:
    """Models, versions, aliases and audit events in one SQL database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        migrate(engine)

    @classmethod
    def open(cls, url: str) -> Registry:
        return cls(make_engine(url))

    def close(self) -> None:
        self.engine.dispose()

    # -- sessions ---------------------------------------------------------
    @contextlib.contextmanager
    def _read(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    @contextlib.contextmanager
    def _write(self) -> Iterator[Session]:
        """A write transaction (BEGIN IMMEDIATE on SQLite), committed on success."""
        with Session(self.engine, expire_on_commit=False) as session:
            session.connection(execution_options={"portal_write": True})
            try:
                yield session
                session.commit()
            except IntegrityError as exc:
                session.rollback()
                raise ConflictError(f"the change conflicts with another one: {exc.orig}") from exc
            except OperationalError as exc:
                session.rollback()
                raise PortalError(f"the registry database is unavailable: {exc.orig}") from exc
            except BaseException:
                session.rollback()
                raise

    def write_session(self) -> contextlib.AbstractContextManager[Session]:
        """A write transaction on the registry's database, for modules that own other tables (auth)."""
        return self._write()

    # -- reads ------------------------------------------------------------
    def resolve(self, ref: str | ModelRef) -> ModelVersion:
        """The version a reference points at."""
        parsed = ModelRef.parse(ref)
        with self._read() as s:
            model, row = version_row(s, parsed)
            return version_record(s, row, model)

    def get_model(self, name: str) -> ModelSummary:
        with self._read() as s:
            return summary_record(s, model_row(s, check_name(name)))

    def list_models(self) -> list[ModelSummary]:
        """Every model with its versions and aliases, in five queries whatever the size."""
        with self._read() as s:
            return all_models(s)

    def model_names(self) -> list[str]:
        with self._read() as s:
            return list(s.scalars(select(ModelRow.name).order_by(ModelRow.name)).all())

    def dependents(self, ref: str | ModelRef) -> list[str]:
        """References of the versions whose parent is ``ref``."""
        with self._read() as s:
            _, row = version_row(s, ModelRef.parse(ref))
            children = s.execute(
                select(ModelRow.name, VersionRow.number)
                .join(ModelRow, VersionRow.model_id == ModelRow.id)
                .where(VersionRow.parent_id == row.id)
            ).all()
            return [f"{n}:{v}" for n, v in children]

    def referenced_blobs(self) -> set[str]:
        with self._read() as s:
            blobs = set(s.scalars(select(VersionRow.blob_sha)).all())
            blobs |= {sha for sha in s.scalars(select(VersionRow.reference_sha)).all() if sha}
            return blobs

    def blob_in_use(self, sha: str) -> bool:
        with self._read() as s:
            count = s.scalar(
                select(func.count()).select_from(VersionRow).where(
                    (VersionRow.blob_sha == sha) | (VersionRow.reference_sha == sha)
                )
            )
            return bool(count)

    def stats(self) -> dict[str, int]:
        with self._read() as s:
            return {
                "models": s.scalar(select(func.count()).select_from(ModelRow)) or 0,
                "versions": s.scalar(select(func.count()).select_from(VersionRow)) or 0,
                "aliases": s.scalar(select(func.count()).select_from(AliasRow)) or 0,
            }

    # -- writes -----------------------------------------------------------
    def add_version(
        self,
        name: str,
        *,
        blob_sha: str,
        size_bytes: int,
        source_format: str,
        info: dict[str, Any],
        meta: dict[str, Any] | None = None,
        actor: str = "",
        parent: str | ModelRef | None = None,
        method: str | None = None,
        method_params: dict[str, Any] | None = None,
        reference_sha: str | None = None,
        model_fields: dict[str, Any] | None = None,
        owner_id: int | None = None,
    ) -> ModelVersion:
        """Create the model if needed and add its next version, in one transaction.

        A new model belongs to the user ``owner_id``, or else to the user named
        ``actor`` if there is one (nobody otherwise: the local operator's models).
        """
        check_name(name)
        fields = {k: v for k, v in (model_fields or {}).items() if v is not None}
        if "task" in fields:
            check_task(fields["task"])
        if "tags" in fields:
            fields["tags"] = check_tags(fields["tags"])
        for attempt in range(5):
            try:
                return self._add_version(name, fields, blob_sha, size_bytes, source_format, info, meta, actor,
                                         parent, method, method_params, reference_sha, owner_id)
            except ConflictError:
                # only a race can violate a unique key here (two writers creating the same new
                # model at once on PostgreSQL): the loser retries and finds the model
                if attempt == 4:
                    raise
        raise AssertionError("unreachable")

    def _add_version(self, name, fields, blob_sha, size_bytes, source_format, info, meta, actor,  # noqa: PLR0913
                     parent, method, method_params, reference_sha, owner_id) -> ModelVersion:
        with self._write() as s:
            parent_row = version_row(s, ModelRef.parse(parent))[1] if parent else None
            # FOR UPDATE serializes version numbering on PostgreSQL (SQLite already holds the write lock)
            model = s.scalar(select(ModelRow).where(ModelRow.name == name).with_for_update())
            created = model is None
            if model is None:
                model = ModelRow(name=name, owner_id=self._new_owner(s, actor, owner_id), next_version=1, tags=[],
                                 description="", task="other")
                s.add(model)
            for key, value in fields.items():
                if key == "owner":
                    model.owner_id = user_id(s, value)
                elif key in _MODEL_FIELDS:
                    setattr(model, key, value)
            number = model.next_version
            model.next_version = number + 1
            model.updated_at = utcnow()
            s.flush()
            row = VersionRow(
                model_id=model.id, number=number, blob_sha=blob_sha, size_bytes=size_bytes,
                source_format=source_format, info=info, meta=meta or {},
                parent_id=parent_row.id if parent_row else None, method=method,
                method_params=method_params or {}, reference_sha=reference_sha, created_by=actor,
            )
            s.add(row)
            s.flush()
            detail = {"blob": blob_sha, "size": size_bytes, "format": source_format}
            if created:
                detail["created_model"] = True
            if parent_row is not None:
                detail.update(parent=str(parent), method=method)
            add_event(s, actor, "variant.create" if method else "version.create", f"{name}:{number}", detail)
            return version_record(s, row, model)

    @staticmethod
    def _new_owner(s: Session, actor: str, owner_id: int | None) -> int | None:
        if owner_id is None:
            return s.scalar(select(UserRow.id).where(UserRow.name == actor)) if actor else None
        if s.get(UserRow, owner_id) is None:
            raise PermissionDeniedError(f"user {actor or owner_id!r} no longer exists")
        return owner_id

    def set_alias(self, ref: str | ModelRef, alias: str, *, actor: str = "",
                  detail: Mapping[str, Any] | None = None) -> ModelVersion:
        """Point ``alias`` of the model at the version ``ref`` resolves to (``detail``: more for the audit row)."""
        check_alias(alias)
        with self._write() as s:
            model, row = version_row(s, ModelRef.parse(ref))
            existing = s.scalar(select(AliasRow).where(AliasRow.model_id == model.id, AliasRow.name == alias))
            previous = None
            if existing is None:
                s.add(AliasRow(model_id=model.id, name=alias, version_id=row.id))
            else:
                previous = s.get(VersionRow, existing.version_id).number
                existing.version_id = row.id
                existing.updated_at = utcnow()
            s.flush()
            add_event(s, actor, "alias.set", f"{model.name}@{alias}",
                      {"version": row.number, "previous": previous, **(detail or {})})
            return version_record(s, row, model)

    def remove_alias(self, name: str, alias: str, *, actor: str = "") -> None:
        with self._write() as s:
            model = model_row(s, check_name(name))
            existing = s.scalar(select(AliasRow).where(AliasRow.model_id == model.id, AliasRow.name == alias))
            if existing is None:
                raise NotFoundError(f"model {name!r} has no alias {alias!r}")
            number = s.get(VersionRow, existing.version_id).number
            s.delete(existing)
            add_event(s, actor, "alias.remove", f"{name}@{alias}", {"version": number})

    def update_model(self, name: str, *, actor: str = "", **fields: Any) -> ModelSummary:
        """Edit model-level metadata (description, task, tags, owner, visibility); ``owner`` is a user name."""
        unknown = set(fields) - set(_MODEL_FIELDS)
        if unknown:
            raise InvalidInputError(f"cannot edit {', '.join(sorted(unknown))}: editable are {', '.join(_MODEL_FIELDS)}")
        if fields.get("task") is not None:
            check_task(fields["task"])
        if fields.get("tags") is not None:
            fields["tags"] = check_tags(fields["tags"])
        if fields.get("visibility") not in (None, "private", "shared"):
            raise InvalidInputError("visibility must be 'private' or 'shared'")
        with self._write() as s:
            model = model_row(s, check_name(name))
            changed = {}
            for key, value in fields.items():
                if key == "owner" and value is not None:
                    key, value = "owner_id", user_id(s, value)
                if value is not None and getattr(model, key) != value:
                    changed[key.removesuffix("_id")] = value
                    setattr(model, key, value)
            model.updated_at = utcnow()
            if changed:
                add_event(s, actor, "model.update", name, {"fields": sorted(changed)})
            s.flush()
            return summary_record(s, model)

    def update_version_meta(self, ref: str | ModelRef, *, actor: str = "", **fields: Any) -> ModelVersion:
        """Edit a version's descriptive metadata (feature names, class labels, notes)."""
        unknown = set(fields) - set(_VERSION_META_FIELDS)
        if unknown:
            raise InvalidInputError(
                f"cannot edit {', '.join(sorted(unknown))}: editable are {', '.join(_VERSION_META_FIELDS)}"
            )
        with self._write() as s:
            model, row = version_row(s, ModelRef.parse(ref))
            meta = dict(row.meta or {})
            meta.update({k: v for k, v in fields.items() if v is not None})
            row.meta = meta
            add_event(s, actor, "version.update", f"{model.name}:{row.number}", {"fields": sorted(fields)})
            s.flush()
            return version_record(s, row, model)

    def set_reference(self, ref: str | ModelRef, reference_sha: str | None, *, actor: str = "") -> tuple[ModelVersion, str | None]:
        """Point the version's reference data at the blob ``reference_sha``; return it and the previous blob."""
        with self._write() as s:
            model, row = version_row(s, ModelRef.parse(ref))
            previous, row.reference_sha = row.reference_sha, reference_sha
            add_event(s, actor, "version.reference", f"{model.name}:{row.number}",
                      {"reference": reference_sha, "previous": previous})
            s.flush()
            return version_record(s, row, model), previous

    def delete_version(self, ref: str | ModelRef, *, actor: str = "", force: bool = False) -> ModelVersion:
        """Delete one version; refused while aliases or variants depend on it unless forced."""
        with self._write() as s:
            model, row = version_row(s, ModelRef.parse(ref))
            gone = version_record(s, row, model)
            self._check_free(s, model, [row], force=force)
            self._drop_versions(s, model, [row])
            add_event(s, actor, "version.delete", gone.ref, {"blob": row.blob_sha, "forced": force})
            remaining = s.scalar(select(func.count()).select_from(VersionRow).where(VersionRow.model_id == model.id))
            if not remaining:
                s.delete(model)
                add_event(s, actor, "model.delete", model.name, {"reason": "last version deleted"})
            return gone

    def delete_model(self, name: str, *, actor: str = "", force: bool = False) -> ModelSummary:
        """Delete a model and all its versions."""
        with self._write() as s:
            model = model_row(s, check_name(name))
            summary = summary_record(s, model)
            rows = list(s.scalars(select(VersionRow).where(VersionRow.model_id == model.id)).all())
            self._check_free(s, model, rows, force=force)
            self._drop_versions(s, model, rows)
            s.execute(delete(PredictionRow).where(PredictionRow.model_id == model.id))
            s.delete(model)
            add_event(s, actor, "model.delete", name, {"versions": [r.number for r in rows], "forced": force})
            return summary

    def _check_free(self, s: Session, model: ModelRow, rows: list[VersionRow], *, force: bool) -> None:
        ids = [r.id for r in rows]
        aliases = s.execute(
            select(AliasRow.name, VersionRow.number)
            .join(VersionRow, AliasRow.version_id == VersionRow.id)
            .where(AliasRow.version_id.in_(ids))
        ).all()
        children = s.execute(
            select(ModelRow.name, VersionRow.number)
            .join(ModelRow, VersionRow.model_id == ModelRow.id)
            .where(VersionRow.parent_id.in_(ids), VersionRow.id.not_in(ids))
        ).all()
        if force:
            return
        if aliases:
            listed = ", ".join(f"@{a} → {model.name}:{n}" for a, n in aliases)
            raise ConflictError(
                f"refused: alias {listed} points here; move or remove the alias first, or delete with force"
            )
        if children:
            listed = ", ".join(f"{n}:{v}" for n, v in children)
            raise ConflictError(f"refused: variants depend on it ({listed}); delete them first, or delete with force")

    def _drop_versions(self, s: Session, model: ModelRow, rows: list[VersionRow]) -> None:
        ids = [r.id for r in rows]
        s.execute(delete(AliasRow).where(AliasRow.version_id.in_(ids)))
        for child in s.scalars(select(VersionRow).where(VersionRow.parent_id.in_(ids))).all():
            if child.id not in ids:
                child.parent_id = None  # forced delete: the variant keeps its method but loses the link
                meta = dict(child.meta or {})
                meta["parent_deleted"] = True
                child.meta = meta
        s.flush()
        for row in rows:
            s.delete(row)
        s.flush()
        # The log of a deleted version goes with it: callers, counts and sampled inputs. After
        # the versions: on PostgreSQL that waits for a log write holding them, then sees its rows.
        s.execute(delete(PredictionRow).where(PredictionRow.model_id == model.id,
                                              PredictionRow.version.in_([r.number for r in rows])))

    # -- audit ------------------------------------------------------------
    def record(self, actor: str, action: str, target: str, detail: dict[str, Any] | None = None) -> None:
        """Append one audit event in its own transaction."""
        with self._write() as s:
            add_event(s, actor, action, target, detail or {})

    def audit_log(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        limit: int = 1000,
    ) -> list[AuditEvent]:
        """Audit events, newest first; filters are literal (never SQL patterns)."""
        with self._read() as s:
            return events(s, actor=actor, action=action, target=target, since=since, until=until, limit=limit)
