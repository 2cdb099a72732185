"""The friendly prediction route: JSON records or CSV in, the same kind out.

Uses the same coercion as the UI and the CLI (column names, feature names,
safe casts), so a CSV that works on the Predict page works here.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from ..dataio import frame_to_csv_bytes, read_table
from ..errors import InvalidInputError, UnsupportedFormatError
from .context import context
from .errors import ERROR_RESPONSES
from .tensors import parse_json

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
    kind = media_type(request, accepted=("application/json", "text/csv"))
    version = ctx.resolve(request, ref)
    data: Any = read_table(body, name="request.csv") if kind == "text/csv" else _records(body)
    prediction = ctx.predict(version, data, rows=len(data), extra_columns=extra_columns,
                             caller=request.scope["state"]["user"])
    frame = prediction.to_frame()
    if kind == "text/csv":
        return Response(frame_to_csv_bytes(frame), media_type="text/csv")
    records = [{k: _finite(v) for k, v in r.items()} for r in prediction.to_records()]
    doc = {"model": version.ref, "rows": prediction.rows, "predictions": records,
           "unused_columns": list(prediction.unused_columns)}
    return Response(to_json(doc), media_type="application/json")


@router.post("/models/{ref}/predict", summary="Predict on JSON records or CSV (answered in kind)",
             openapi_extra=_PREDICT_DOC, responses=_PREDICT_RESPONSES)
async def predict(
    ref: str,
    request: Request,
    extra_columns: Literal["error", "ignore"] = Query("error", description="refuse or drop columns the model does not use"),
) -> Response:
    """``ref`` is ``name``, ``name:3`` or ``name@alias``."""
    body = await request.body()
    return await context(request).run(_predict, request, ref, body, extra_columns)
