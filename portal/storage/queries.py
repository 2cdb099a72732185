"""Reading registry rows inside an open session, and turning them into records.

Every function takes the caller's :class:`~sqlalchemy.orm.Session`, so a write
transaction reads what it is about to change; :func:`all_models` reads the whole
registry in five queries, whatever its size.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import NotFoundError
from .db import AliasRow, ModelRow, UserRow, VersionRow
from .records import ModelSummary, ModelVersion
from .refs import ModelRef

__all__ = ["all_models", "model_row", "owner_name", "summary_record", "user_id", "version_record", "version_row"]


def owner_name(s: Session, model: ModelRow) -> str:
    """The name of the model's owner, "" when nobody owns it."""
    owner = s.get(UserRow, model.owner_id) if model.owner_id is not None else None
    return owner.name if owner is not None else ""


def _record(row: VersionRow, model: ModelRow, *, owner: str, parent: str | None,
            aliases: Sequence[str]) -> ModelVersion:
    return ModelVersion(
        name=model.name, version=row.number, blob_sha=row.blob_sha, size_bytes=row.size_bytes,
        source_format=row.source_format, info=row.info, meta=dict(row.meta or {}),
        description=model.description, task=model.task, tags=tuple(model.tags or ()),
        owner=owner, parent=parent, method=row.method, method_params=dict(row.method_params or {}),
        reference_sha=row.reference_sha, created_at=row.created_at, created_by=row.created_by,
        aliases=tuple(aliases), visibility=model.visibility, model_id=model.id, owner_id=model.owner_id,
    )


def _summary(model: ModelRow, *, owner: str, versions: Sequence[ModelVersion],
             aliases: dict[str, int]) -> ModelSummary:
    return ModelSummary(
        name=model.name, description=model.description, task=model.task, tags=tuple(model.tags or ()),
        owner=owner, visibility=model.visibility, created_at=model.created_at, updated_at=model.updated_at,
        versions=tuple(versions), aliases=aliases, next_version=model.next_version, model_id=model.id,
        owner_id=model.owner_id,
    )


def version_record(s: Session, row: VersionRow, model: ModelRow) -> ModelVersion:
    """The record of version ``row`` of ``model``, with its parent's reference and its aliases."""
    parent = None
    if row.parent_id is not None:
        prow = s.get(VersionRow, row.parent_id)
        if prow is not None:
            pmodel = model if prow.model_id == model.id else s.get(ModelRow, prow.model_id)
            parent = f"{pmodel.name}:{prow.number}" if pmodel else None
    aliases = s.scalars(select(AliasRow.name).where(AliasRow.version_id == row.id)).all()
    return _record(row, model, owner=owner_name(s, model), parent=parent, aliases=sorted(aliases))


def summary_record(s: Session, model: ModelRow) -> ModelSummary:
    """The record of ``model`` with its versions, newest first, and its aliases."""
    rows = s.scalars(
        select(VersionRow).where(VersionRow.model_id == model.id).order_by(VersionRow.number.desc())
    ).all()
    aliases = s.execute(
        select(AliasRow.name, VersionRow.number)
        .join(VersionRow, AliasRow.version_id == VersionRow.id)
        .where(AliasRow.model_id == model.id)
    ).all()
    return _summary(model, owner=owner_name(s, model), versions=[version_record(s, r, model) for r in rows],
                    aliases={a: n for a, n in sorted(aliases)})


def all_models(s: Session) -> list[ModelSummary]:
    """Every model with its versions and aliases, by name."""
    models = s.scalars(select(ModelRow).order_by(ModelRow.name)).all()
    user_names = dict(s.execute(select(UserRow.id, UserRow.name)).tuples().all())
    rows = s.scalars(select(VersionRow).order_by(VersionRow.model_id, VersionRow.number.desc())).all()
    alias_rows = s.execute(select(AliasRow.model_id, AliasRow.name, AliasRow.version_id)).all()
    by_id = {m.id: m for m in models}
    number = {r.id: (r.model_id, r.number) for r in rows}
    version_aliases: dict[int, list[str]] = {}
    model_aliases: dict[int, dict[str, int]] = {}
    for model_id, alias, version_id in sorted(alias_rows, key=lambda a: a[1]):
        version_aliases.setdefault(version_id, []).append(alias)
        model_aliases.setdefault(model_id, {})[alias] = number[version_id][1]
    owners = {m.id: user_names.get(m.owner_id, "") if m.owner_id is not None else "" for m in models}
    versions: dict[int, list[ModelVersion]] = {}
    for r in rows:
        parent = None
        if r.parent_id in number:
            pmodel, pnumber = number[r.parent_id]
            parent = f"{by_id[pmodel].name}:{pnumber}"
        versions.setdefault(r.model_id, []).append(_record(
            r, by_id[r.model_id], owner=owners[r.model_id], parent=parent, aliases=version_aliases.get(r.id, ())))
    return [_summary(m, owner=owners[m.id], versions=versions.get(m.id, ()), aliases=model_aliases.get(m.id, {}))
            for m in models]


def model_row(s: Session, name: str) -> ModelRow:
    """The row of the model ``name``.

    Raises:
        NotFoundError: no such model.
    """
    model = s.scalar(select(ModelRow).where(ModelRow.name == name))
    if model is None:
        raise NotFoundError(f"no model named {name!r}; `portal list` shows the registered models")
    return model


def version_row(s: Session, ref: ModelRef) -> tuple[ModelRow, VersionRow]:
    """The model and version rows ``ref`` points at (a number, an alias, or the latest version).

    "Latest" is the newest uploaded version: a variant is reached only by its number or
    an alias (one pointed at a variant resolves to it), unless the model holds nothing else.

    Raises:
        NotFoundError: no such model, version or alias, or a model without versions.
    """
    model = model_row(s, ref.name)
    query = select(VersionRow).where(VersionRow.model_id == model.id)
    if ref.version is not None:
        row = s.scalar(query.where(VersionRow.number == ref.version))
        missing = f"model {ref.name!r} has no version {ref.version}"
    elif ref.alias is not None:
        alias = s.scalar(select(AliasRow).where(AliasRow.model_id == model.id, AliasRow.name == ref.alias))
        row = s.get(VersionRow, alias.version_id) if alias else None
        missing = f"model {ref.name!r} has no alias {ref.alias!r}"
    else:  # the newest upload, never a variant (see records.latest_of); only variants left: the newest one
        newest = query.order_by(VersionRow.number.desc()).limit(1)
        row = s.scalar(newest.where(VersionRow.method.is_(None))) or s.scalar(newest)
        missing = f"model {ref.name!r} has no versions"
    if row is None:
        raise NotFoundError(missing)
    return model, row


def user_id(s: Session, name: str) -> int:
    """The id of the user ``name``.

    Raises:
        NotFoundError: no such user.
    """
    found = s.scalar(select(UserRow.id).where(UserRow.name == name))
    if found is None:
        raise NotFoundError(f"no user named {str(name)[:64]!r}; `portal users list` shows them")
    return found
