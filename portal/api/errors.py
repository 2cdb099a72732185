"""One place where errors become responses: always ``{"error": "..."}``, never a traceback.

``PortalError`` → its ``.status`` (401 with ``WWW-Authenticate``; 429 and 503 with
``Retry-After``, whole seconds); FastAPI's request validation → 400; Starlette
HTTP errors (404 for an unknown route, 405, 413 from the body limit) keep their
status; anything else → 500 with the request id, the traceback in the server log.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ..errors import PortalError, TooManyAttemptsError

__all__ = ["ERROR_RESPONSES", "error_response", "install_error_handlers"]

_log = logging.getLogger("portal.api")

ERROR_SCHEMA = {
    "type": "object",
    "properties": {"error": {"type": "string"}},
    "required": ["error"],
}


def _doc(text: str) -> dict[str, Any]:
    return {"description": text, "content": {"application/json": {"schema": ERROR_SCHEMA}}}


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _doc("Bad request: malformed body, wrong datatype or shape, invalid name"),
    401: _doc("No token, or an invalid or revoked one"),
    403: _doc("The token's role does not allow this"),
    404: _doc("No such model, version, alias, user or token"),
    408: _doc("The request body stopped arriving for PORTAL_API_BODY_TIMEOUT_S seconds"),
    413: _doc("Body or batch over the limit"),
    503: _doc("Too many requests in flight; retry after Retry-After seconds"),
}


def error_response(status: int, message: str, *, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _headers(exc: PortalError) -> dict[str, str] | None:
    """What the status asks for: when to retry (a sign-in lockout, a busy server) or how to authenticate."""
    if isinstance(exc, TooManyAttemptsError):
        return {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
    if exc.status == 503:
        return {"Retry-After": "1"}
    if exc.status == 401:
        return {"WWW-Authenticate": "Bearer"}
    return None


def _portal_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PortalError)
    headers = _headers(exc)
    if exc.status >= 500 and exc.status not in (503, 504):
        _log.error("%s (request id %s)", exc.message, request.scope.get("state", {}).get("request_id", "?"))
    return error_response(exc.status, exc.message, headers=headers)


def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return error_response(400, "invalid request: " + "; ".join(parts))


def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else "request refused"
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no route {request.method} {request.url.path[:200]}; see /docs"
    if exc.status_code >= 500:
        return _internal(request, exc)
    return error_response(exc.status_code, detail, headers=getattr(exc, "headers", None))


def _internal(request: Request, exc: Exception) -> JSONResponse:
    request_id = request.scope.get("state", {}).get("request_id", "?")
    return error_response(500, f"internal error, see server log (request id {request_id})")


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn every error into ``{"error": ...}``."""
    app.add_exception_handler(PortalError, _portal_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _internal)
