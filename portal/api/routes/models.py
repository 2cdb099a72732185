"""Management routes: list, show, upload, edit, alias, delete and download models.

Every change goes through the ``Portal`` facade with the calling user as the
audit actor.  Analysts change only the models they own; admins any.
"""

from __future__ import annotations

import shutil
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from ...core import Portal, suggest_name
from ...errors import InvalidInputError
from ...ingest.metadata import parse_shape
from ...ingest.testrun import untested_warning
from ...storage.refs import check_alias, check_name
from ...storage.registry import ModelSummary, ModelVersion
from ..context import ApiContext, context
from ..errors import ERROR_RESPONSES
from .upload import receive_upload

__all__ = ["router", "summary_json", "version_json"]

router = APIRouter(prefix="/api", tags=["Models"], responses=ERROR_RESPONSES)  # type: ignore[arg-type]

_UPLOAD_FIELDS = ("name", "description", "task", "tags", "feature_names", "class_labels", "notes", "input_shape")


class ModelEdit(BaseModel):
    """Model-level metadata to change; fields left out stay as they are."""

    model_config = ConfigDict(extra="forbid")
    description: str | None = Field(default=None, max_length=100_000)
    task: Literal["classification", "regression", "other"] | None = None
    tags: list[str] | None = Field(default=None, max_length=64)
    visibility: Literal["private", "shared"] | None = None
    owner: str | None = Field(default=None, max_length=64, description="admins only")


class VersionEdit(BaseModel):
    """Descriptive metadata of one version; fields left out stay as they are."""

    model_config = ConfigDict(extra="forbid")
    feature_names: list[str] | None = Field(default=None, max_length=100_000)
    class_labels: list[str] | None = Field(default=None, max_length=100_000)
    notes: str | None = Field(default=None, max_length=100_000)


class AliasTarget(BaseModel):
    """The version an alias should point at."""

    model_config = ConfigDict(extra="forbid")
    version: int = Field(ge=1, lt=2**31)
    override_gate: bool = Field(default=False, description="move it even though the variant failed its evaluation "
                                "gate (recorded in the audit trail)")


def version_json(v: ModelVersion) -> dict[str, Any]:
    """A version as JSON: identity, metadata and signature."""
    return {
        "ref": v.ref, "name": v.name, "version": v.version, "aliases": list(v.aliases), "task": v.task,
        "description": v.description, "tags": list(v.tags), "owner": v.owner, "size_bytes": v.size_bytes,
        "source_format": v.source_format, "sha256": v.blob_sha, "parent": v.parent, "method": v.method,
        "created_at": v.created_at.isoformat(), "created_by": v.created_by,
        "feature_names": v.feature_names, "class_labels": v.class_labels, "notes": v.meta.get("notes"),
        "signature": v.signature, "opset": v.info.get("opset"), "parameters": v.info.get("parameters"),
        "producer": v.info.get("producer"), "warnings": [w for w in (untested_warning(v.info),) if w],
    }


def summary_json(m: ModelSummary, *, versions: bool = False) -> dict[str, Any]:
    """A model as JSON; with ``versions`` every version in full, else their numbers."""
    return {
        "name": m.name, "description": m.description, "task": m.task, "tags": list(m.tags), "owner": m.owner,
        "visibility": m.visibility, "created_at": m.created_at.isoformat(), "updated_at": m.updated_at.isoformat(),
        "latest": m.latest.version if m.latest else None, "aliases": dict(m.aliases),
        "versions": [version_json(v) for v in m.versions] if versions else [v.version for v in m.versions],
    }


def _scoped(request: Request, action: str) -> tuple[ApiContext, Portal]:
    """The context and the portal acting for the request's user, whose role allows ``action`` at all.

    Ownership and visibility of the model are checked by the portal itself (so
    the API, the UI and the CLI cannot differ).
    """
    ctx = context(request)
    ctx.allow(request, action)
    return ctx, ctx.portal_for(request)


@router.get("/models", summary="List models")
def list_models(request: Request) -> list[dict[str, Any]]:
    _, portal = _scoped(request, "read")
    return [summary_json(m) for m in portal.list_models()]


@router.get("/models/{name}", summary="Show a model and its versions")
def show_model(name: str, request: Request) -> dict[str, Any]:
    _, portal = _scoped(request, "read")
    return summary_json(portal.get_model(check_name(name)), versions=True)


@router.patch("/models/{name}", summary="Edit a model's metadata")
def edit_model(name: str, edit: ModelEdit, request: Request) -> dict[str, Any]:
    ctx, portal = _scoped(request, "read")
    fields = edit.model_dump(exclude_none=True)
    if "owner" in fields:
        portal.get_model(check_name(name))  # 404 before 403 for a model the user cannot see
        ctx.allow(request, "admin")
        ctx.auth.get_user(fields["owner"])  # 404 for an unknown user
    return summary_json(portal.update_model(check_name(name), **fields))


@router.delete("/models/{name}", summary="Delete a model and all its versions")
def delete_model(name: str, request: Request, force: bool = Query(False)) -> dict[str, Any]:
    _, portal = _scoped(request, "read")
    return {"deleted": portal.delete(check_name(name), force=force)}


@router.get("/models/{name}/versions/{version}", summary="Show a version (number or alias)")
def show_version(name: str, version: str, request: Request) -> dict[str, Any]:
    ctx, _ = _scoped(request, "read")
    return version_json(ctx.resolve(request, ctx.version_ref(check_name(name), version)))


@router.patch("/models/{name}/versions/{version}", summary="Edit a version's feature names, class labels or notes")
def edit_version(name: str, version: str, edit: VersionEdit, request: Request) -> dict[str, Any]:
    ctx, portal = _scoped(request, "read")
    ref = ctx.version_ref(check_name(name), version)
    return version_json(portal.update_version(ref, **edit.model_dump(exclude_none=True)))


@router.delete("/models/{name}/versions/{version}", summary="Delete one version")
def delete_version(name: str, version: str, request: Request, force: bool = Query(False)) -> dict[str, Any]:
    ctx, portal = _scoped(request, "read")
    resolved = portal.get(ctx.version_ref(check_name(name), version))
    return {"deleted": portal.delete(resolved.ref, force=force)}


@router.get(
    "/models/{name}/versions/{version}/file", summary="Download a version's ONNX file",
    response_class=FileResponse,
    responses={200: {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}},
)
def download_version(name: str, version: str, request: Request) -> Response:
    ctx, portal = _scoped(request, "read")
    resolved = ctx.resolve(request, ctx.version_ref(check_name(name), version))
    filename = f"{resolved.name}-v{resolved.version}.onnx"
    path = portal.store.local_path(resolved.blob_sha)
    if path is None:  # an encrypted (or remote) store: decrypted into memory only
        return Response(portal.model_bytes(resolved), media_type="application/octet-stream",
                        headers={"Content-Disposition": f'attachment; filename="{filename}"'})
    return FileResponse(path, media_type="application/octet-stream", filename=filename)


@router.put("/models/{name}/aliases/{alias}", summary="Point an alias at a version")
def set_alias(name: str, alias: str, target: AliasTarget, request: Request) -> dict[str, Any]:
    _, portal = _scoped(request, "read")
    check_alias(alias)
    return version_json(portal.set_alias(f"{check_name(name)}:{target.version}", alias,
                                         override_gate=target.override_gate))


@router.delete("/models/{name}/aliases/{alias}", summary="Remove an alias")
def remove_alias(name: str, alias: str, request: Request) -> dict[str, Any]:
    _, portal = _scoped(request, "read")
    portal.remove_alias(check_name(name), alias)
    return {"removed": f"{name}@{alias}"}


_UPLOAD_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary",
                                 "description": ".onnx, .zip bundle, .pt2, TorchScript or .skops"},
                        "name": {"type": "string", "description": "model name (default: from the file name)"},
                        "description": {"type": "string"}, "task": {"type": "string"},
                        "tags": {"type": "string", "description": "comma-separated"},
                        "feature_names": {"type": "string", "description": "comma-separated"},
                        "class_labels": {"type": "string", "description": "comma-separated"},
                        "notes": {"type": "string"},
                        "input_shape": {"type": "string", "description": "PyTorch input shape, e.g. 1,3,224,224"},
                    },
                }
            }
        },
    }
}


@router.post("/models", summary="Upload a model (multipart); registers the next version", status_code=201,
             openapi_extra=_UPLOAD_DOC)
async def upload_model(request: Request) -> dict[str, Any]:
    ctx = context(request)
    await run_in_threadpool(ctx.allow, request, "upload")
    workdir = ctx.portal.store.make_staging_dir("api-upload")
    try:
        dest = workdir / "upload.bin"
        upload = await receive_upload(request.headers.get("content-type", ""), request.stream(), dest,
                                      max_file_bytes=ctx.portal.settings.max_upload_bytes)
        version = await run_in_threadpool(_register, ctx, request, upload.fields, upload.filename or "upload", dest)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return version_json(version)


def _register(ctx: ApiContext, request: Request, fields: dict[str, str], filename: str, path: Any) -> ModelVersion:
    unknown = sorted(set(fields) - set(_UPLOAD_FIELDS))
    if unknown:
        raise InvalidInputError(f"unknown form field(s) {', '.join(unknown)[:200]}; accepted: {', '.join(_UPLOAD_FIELDS)}")
    name = check_name(fields.get("name") or suggest_name(filename))
    portal = ctx.portal_for(request)
    portal.check_upload_to(name)  # before the body is ingested; register checks again
    meta = {k: v for k, v in fields.items() if k not in ("name", "input_shape") and v != ""}
    shape = parse_shape(fields.get("input_shape"), what="input_shape", required=False)
    return portal.register(path, name, filename=filename, input_shape=shape, **meta)

