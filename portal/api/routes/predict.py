"""The friendly prediction route: JSON records or CSV in, the same kind out.

Uses the same coercion as the UI and the CLI (column names, feature names,
safe casts), so a CSV that works on the Predict page works here.  A CSV body
goes through the streamed batch pipeline (:mod:`portal.serving.batch`): the body is
spooled to a file under the body limit, scored chunk by chunk into a second
file, and the answer is streamed from it, so memory stays bounded by the chunk
size.  The scoring finishes before the first byte is sent, so a bad row
anywhere in the body is still a 4xx naming its line and column, never a 200
cut short.
"""

from __future__ import annotations

import functools
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, Literal

import anyio.to_thread
import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse

from ...errors import InvalidInputError, UnsupportedFormatError
from ...storage.registry import ModelVersion
from ..context import context
from ..errors import ERROR_RESPONSES
from ..tensors import parse_json

__all__ = ["media_type", "router", "to_json"]

router = APIRouter(prefix="/api", tags=["Predict"], responses=ERROR_RESPONSES)  # type: ignore[arg-type]

_SCALARS = (str, int, float, bool, type(None))
_RECORDS_SCHEMA = {
    "oneOf": [
        {"type": "array", "items": {"type": "object"}, "minItems": 1},
        {"type": "object", "required": ["records"],
         "properties": {"records": {"type": "array", "items": {"type": "object"}, "minItems": 1}}},
    ]
}
_PREDICT_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": _RECORDS_SCHEMA,
                                 "example": [{"sepal_length": 5.1, "sepal_width": 3.5}]},
            "text/csv": {"schema": {"type": "string"}, "example": "sepal_length,sepal_width\n5.1,3.5\n"},
        },
    }
}
_PREDICT_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    200: {
        "description": "Predictions, as JSON for a JSON request and as CSV for a CSV request",
        "content": {
            "application/json": {"schema": {"type": "object", "properties": {
                "model": {"type": "string"}, "rows": {"type": "integer"},
                "predictions": {"type": "array", "items": {"type": "object"}},
                "unused_columns": {"type": "array", "items": {"type": "string"}},
                "matched_columns": {"type": "object", "additionalProperties": {"type": "string"},
                                    "description": "model column: the request's column matched by normalised name"},
            }}},
            "text/csv": {"schema": {"type": "string"}},
        },
    },
    415: {"description": "Neither JSON nor CSV", "content": {"application/json": {"schema": {
        "type": "object", "properties": {"error": {"type": "string"}}}}}},
}


def media_type(request: Request, *, accepted: tuple[str, ...]) -> str:
    """The request's media type if it is one of ``accepted`` (no Content-Type counts as JSON).

    Raises:
        UnsupportedFormatError: any other Content-Type (415).
    """
    raw = request.headers.get("content-type")
    kind = (raw or "application/json").split(";")[0].strip().lower()
    if kind not in accepted:
        raise UnsupportedFormatError(f"unsupported Content-Type {kind[:60]!r}: send {' or '.join(accepted)}")
    return kind


def _default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    return value


def to_json(doc: Any) -> bytes:
    """Compact JSON that accepts numpy scalars."""
    return json.dumps(doc, separators=(",", ":"), default=_default, allow_nan=False).encode()


def _records(body: bytes) -> list[dict[str, Any]]:
    doc = parse_json(body)
    if isinstance(doc, dict) and set(doc) == {"records"}:
        doc = doc["records"]
    if not isinstance(doc, list) or not doc or not all(isinstance(r, dict) for r in doc):
        raise InvalidInputError('send a non-empty list of records (objects), or {"records": [...]}')
    for i, record in enumerate(doc):
        for key, value in record.items():
            if not isinstance(value, _SCALARS):
                raise InvalidInputError(
                    f"record {i}, column {key[:100]!r}: expected a number, text, true/false or null, "
                    f"got {type(value).__name__}"
                )
    return doc


def _predict(request: Request, ref: str, body: bytes, extra_columns: str) -> Response:
    ctx = context(request)
    ctx.allow(request, "infer")
    media_type(request, accepted=("application/json", "text/csv"))  # text/csv went to _predict_csv
    version = ctx.resolve(request, ref)
    data = _records(body)
    prediction = ctx.predict(version, data, rows=len(data), extra_columns=extra_columns,
                             caller=request.scope["state"]["user"])
    records = [{k: _finite(v) for k, v in r.items()} for r in prediction.to_records()]
    doc = {"model": version.ref, "rows": prediction.rows, "predictions": records,
           "unused_columns": list(prediction.unused_columns), "matched_columns": dict(prediction.matched_columns)}
    return Response(to_json(doc), media_type="application/json")


# -- CSV: spooled in, scored by the batch pipeline, streamed out ---------------------------------------
_SPOOL_BYTES = 1 << 20  # request pieces are gathered into writes of this size, off the event loop
_STREAM_BYTES = 1 << 20


def _csv_version(request: Request, ref: str) -> ModelVersion:
    ctx = context(request)
    ctx.allow(request, "infer")
    return ctx.resolve(request, ref)


async def _spool(request: Request, path: Path) -> None:
    """Write the request body to ``path``; the Guard stops it past the body limit (413)."""
    with open(path, "wb") as sink:
        pending = bytearray()
        async for piece in request.stream():
            pending += piece
            if len(pending) >= _SPOOL_BYTES:
                await anyio.to_thread.run_sync(sink.write, bytes(pending))
                pending.clear()
        if pending:
            await anyio.to_thread.run_sync(sink.write, bytes(pending))


def _blocks(stream: BinaryIO) -> Iterator[bytes]:
    try:
        while block := stream.read(_STREAM_BYTES):
            yield block
    finally:
        stream.close()


async def _predict_csv(request: Request, ref: str, extra_columns: str) -> Response:
    ctx = context(request)
    version = await ctx.run(_csv_version, request, ref)  # who and which model, before any body is stored
    folder = ctx.portal.store.make_staging_dir("predict")
    try:
        source, output = folder / "request.csv", folder / "results.csv"
        await _spool(request, source)
        await ctx.run(functools.partial(ctx.score, version, source, output, caller=request.scope["state"]["user"],
                                        extra_columns=extra_columns))
        answer = open(output, "rb")  # noqa: SIM115 - closed by _blocks when the answer is sent
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # the open answer keeps its bytes until it is closed
    return StreamingResponse(_blocks(answer), media_type="text/csv")


@router.post("/models/{ref}/predict", summary="Predict on JSON records or CSV (answered in kind)",
             openapi_extra=_PREDICT_DOC, responses=_PREDICT_RESPONSES)
async def predict(
    ref: str,
    request: Request,
    extra_columns: Literal["error", "ignore"] = Query("error", description="refuse or drop columns the model does not use"),
) -> Response:
    """``ref`` is ``name``, ``name:3`` or ``name@alias``. A CSV body is streamed through the batch pipeline."""
    raw = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if raw == "text/csv":
        return await _predict_csv(request, ref, extra_columns)
    body = await request.body()
    return await context(request).run(_predict, request, ref, body, extra_columns)
