"""Open Inference Protocol v2 (KServe / Triton REST): health, metadata, readiness, infer.

A version segment may be a number or an alias (``/v2/models/churn/versions/production/infer``).
Health routes and the server metadata need no token; the rest need a viewer.  The
infer routes come first: routes are matched in order and they are the hot path.
``server_metadata``, ``model_metadata_doc`` and ``model_ready_doc`` also answer
the gRPC door (``portal.api.grpc``), and both doors infer through ``ApiContext.infer``.
"""

from __future__ import annotations

import functools
import json
import time
from importlib import metadata
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ...storage.refs import check_name
from ...storage.registry import ModelVersion
from ...serving.signature import tensor_inputs
from ..context import AnyRequest, ApiContext, Offload, context
from ..errors import ERROR_RESPONSES
from .predict import media_type
from ..tensors import InferRequest, decode_infer_request, encode_outputs, tensor_metadata

__all__ = ["model_metadata_doc", "model_ready_doc", "router", "server_metadata", "server_ready", "server_version"]

router = APIRouter(tags=["Open Inference Protocol v2"])

_DATATYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
              "FP16", "FP32", "FP64", "BYTES"]
_TENSOR_META = {"type": "object", "properties": {
    "name": {"type": "string"}, "datatype": {"type": "string"},
    "shape": {"type": "array", "items": {"type": "integer"}}}}
_REQUEST_TENSOR = {
    "type": "object",
    "required": ["name", "datatype", "shape", "data"],
    "properties": {
        "name": {"type": "string"},
        "datatype": {"type": "string", "enum": _DATATYPES},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "parameters": {"type": "object"},
        "data": {"type": "array", "description": "row-major values, flat or nested", "items": {}},
    },
}
_INFER_DOC = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {
            "schema": {
                "type": "object",
                "required": ["inputs"],
                "properties": {
                    "id": {"type": "string"},
                    "parameters": {"type": "object"},
                    "inputs": {"type": "array", "minItems": 1, "items": _REQUEST_TENSOR},
                    "outputs": {"type": "array", "items": {
                        "type": "object", "required": ["name"],
                        "properties": {"name": {"type": "string"}, "parameters": {"type": "object"}}}},
                },
            },
            "example": {"id": "42", "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4],
                                                "data": [5.1, 3.5, 1.4, 0.2]}]},
        }},
    }
}
_INFER_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    200: {"description": "Output tensors", "content": {"application/json": {"schema": {
        "type": "object", "properties": {
            "model_name": {"type": "string"}, "model_version": {"type": "string"}, "id": {"type": "string"},
            "outputs": {"type": "array", "items": {**_TENSOR_META, "properties": {
                **_TENSOR_META["properties"], "data": {"type": "array", "items": {}}}}}}}}}},
    415: {"description": "Neither JSON nor binary tensor data"},
    504: {"description": "Inference ran past the time limit and was stopped"},
}
_METADATA_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    200: {"description": "Model metadata", "content": {"application/json": {"schema": {
        "type": "object", "properties": {
            "name": {"type": "string"}, "versions": {"type": "array", "items": {"type": "string"}},
            "platform": {"type": "string"},
            "inputs": {"type": "array", "items": _TENSOR_META},
            "outputs": {"type": "array", "items": _TENSOR_META}}}}}},
}


@functools.cache
def server_version() -> str:
    """The installed model-portal package's version ("unknown" when it is not installed)."""
    try:
        return metadata.version("model-portal")
    except metadata.PackageNotFoundError:
        return "unknown"


def _infer(request: Request, name: str, version: str | None, body: bytes, *, inline: bool = False) -> Response:
    ctx = context(request)
    started = time.thread_time()

    def decode(resolved: ModelVersion) -> InferRequest:
        if inline and not ctx.inline_safe(resolved):
            raise Offload  # a load, or a graph whose work the request's values decide: never on the event loop
        media_type(request, accepted=("application/json", "application/octet-stream"))
        signature = resolved.signature
        return decode_infer_request(
            body, inputs=tensor_inputs(signature), output_names=[o["name"] for o in signature["outputs"]],
            header_length=request.headers.get("inference-header-content-length"),
        )

    resolved, parsed, prediction = ctx.infer(request, name, version, decode)
    entries, binary = encode_outputs(prediction.outputs, parsed.outputs, binary_default=parsed.binary_output)
    doc: dict[str, Any] = {"model_name": resolved.name, "model_version": str(resolved.version)}
    if parsed.id is not None:
        doc["id"] = parsed.id
    doc["outputs"] = entries
    head = json.dumps(doc, separators=(",", ":")).encode()
    ctx.record_cost((name, version), len(body), time.thread_time() - started)
    if not binary:
        return Response(head, media_type="application/json")
    return Response(head + binary, media_type="application/octet-stream",
                    headers={"Inference-Header-Content-Length": str(len(head))})


@router.post("/v2/models/{name}/infer", summary="Infer with the latest version",
             openapi_extra=_INFER_DOC, responses=_INFER_RESPONSES)
async def infer(name: str, request: Request) -> Response:
    return await _dispatch(request, name, None, await request.body())


@router.post("/v2/models/{name}/versions/{version}/infer", summary="Infer with a version or alias",
             openapi_extra=_INFER_DOC, responses=_INFER_RESPONSES)
async def infer_version(name: str, version: str, request: Request) -> Response:
    return await _dispatch(request, name, version, await request.body())


async def _dispatch(request: Request, name: str, version: str | None, body: bytes) -> Response:
    """Run a cheap request on the event loop when the server is idle, else in a worker thread.

    Handing a request to a thread and back costs more CPU than a small model's
    whole inference; but under load, threads let onnxruntime run on one core
    while the event loop reads the next request on another.  See ``ApiContext.inline``.
    """
    ctx = context(request)
    if ctx.inline((name, version), len(body), arrived_idle=request.scope["state"].get("arrived_idle", False)):
        try:
            return _infer(request, name, version, body, inline=True)
        except Offload:
            pass
    return await ctx.run(_infer, request, name, version, body)


@router.get("/v2", summary="Server metadata")
def server_metadata() -> dict[str, Any]:
    return {"name": "model-portal", "version": server_version(), "extensions": ["binary_tensor_data"]}


@router.get("/v2/health/live", summary="Liveness")
def live() -> dict[str, Any]:
    return {"live": True}


@router.get("/v2/health/ready", summary="Readiness: the registry answers")
def ready(request: Request) -> dict[str, Any]:
    return server_ready(context(request))


def server_ready(ctx: ApiContext) -> dict[str, Any]:
    """``{"ready": True}`` once the registry answers (raises otherwise)."""
    ctx.portal.registry.stats()
    return {"ready": True}


def model_metadata_doc(ctx: ApiContext, request: AnyRequest, name: str, version: str | None) -> dict[str, Any]:
    """The OIP model metadata of ``name`` (``version``: a number, an alias, or None for every version)."""
    ctx.allow(request, "read")
    resolved = ctx.resolve(request, ctx.version_ref(check_name(name), version))
    if version is None:
        versions = [str(v.version) for v in ctx.portal_for(request).get_model(resolved.name).versions]
    else:
        versions = [str(resolved.version)]
    return {
        "name": resolved.name,
        "versions": versions,
        "platform": "onnxruntime_onnx",
        "inputs": [tensor_metadata(s) for s in resolved.signature["inputs"]],
        "outputs": [tensor_metadata(s) for s in resolved.signature["outputs"]],
    }


@router.get("/v2/models/{name}", summary="Model metadata (latest version)", responses=_METADATA_RESPONSES)
def model_metadata(name: str, request: Request) -> dict[str, Any]:
    return model_metadata_doc(context(request), request, name, None)


@router.get("/v2/models/{name}/versions/{version}", summary="Model metadata of a version or alias",
            responses=_METADATA_RESPONSES)
def version_metadata(name: str, version: str, request: Request) -> dict[str, Any]:
    return model_metadata_doc(context(request), request, name, version)


def model_ready_doc(ctx: ApiContext, request: AnyRequest, name: str, version: str | None) -> dict[str, Any]:
    """Load (and warm) the version ``name`` / ``version`` names; its name, version and ``ready``."""
    ctx.allow(request, "read")
    resolved = ctx.resolve(request, ctx.version_ref(check_name(name), version))
    ctx.session(resolved)  # loads (and warms) the model if it is not loaded yet
    return {"name": resolved.name, "version": str(resolved.version), "ready": True}


@router.get("/v2/models/{name}/ready", summary="Model readiness (loads the model)", responses=ERROR_RESPONSES)  # type: ignore[arg-type]
def model_ready(name: str, request: Request) -> dict[str, Any]:
    return model_ready_doc(context(request), request, name, None)


@router.get("/v2/models/{name}/versions/{version}/ready", summary="Readiness of a version or alias",
            responses=ERROR_RESPONSES)  # type: ignore[arg-type]
def version_ready(name: str, version: str, request: Request) -> dict[str, Any]:
    return model_ready_doc(context(request), request, name, version)
