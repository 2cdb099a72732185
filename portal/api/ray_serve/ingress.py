"""The ``PortalIngress`` deployment: resolves the model of a request and forwards it to a ``ModelServer``.

Thin on purpose: it names the canonical ``name:N`` of infer and predict paths
(so Serve routes the request to a replica holding that model), refuses to read a
body over every limit, retries an idempotent request once when its replica died,
and answers ``GET /ray/replicas`` (admin).  Everything else is the model server's.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from ray import exceptions as ray_exceptions
from ray import serve

from .replica import open_portal

__all__ = ["PortalIngress"]

# the paths whose model must be loaded to answer: only these are multiplexed
_INFER = re.compile(r"^/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?/infer$")
_PREDICT = re.compile(r"^/api/models/(?P<ref>[^/]+)/predict$")
# a replica that died under a request: the ingress retries idempotent requests once
_RETRIED = (ray_exceptions.ActorDiedError, ray_exceptions.ActorUnavailableError)


def _hop_headers(request: Any) -> list[tuple[bytes, bytes]]:
    return [(k, v) for k, v in request.headers.raw if k.lower() not in (b"connection", b"keep-alive")]


# The ingress's own routes.  Module level (not built in a function) so that Serve
# pickles the class by reference: FastAPI then reads the route annotations from this
# module in the replica.  No docs routes: /docs and /openapi.json are the portal app's.
_ingress_app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


def _typed(**hints: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a route real (not string) annotations: Serve's class-based view sets a
    ``__signature__`` that FastAPI reads as is, so "Request" would stay a string."""

    def apply(func: Callable[..., Any]) -> Callable[..., Any]:
        hints["return"] = hints.pop("return_", func.__annotations__.get("return"))
        func.__annotations__ = {**func.__annotations__, **hints}
        return func

    return apply


@serve.ingress(_ingress_app)
class PortalIngress:
    """Resolves the model of infer / predict paths and forwards every request to a ModelServer."""

    def __init__(self, server: Any, env: dict[str, str]) -> None:
        from ...accounts.auth import Auth

        from ..settings import ApiSettings

        self.server = server
        self.portal = open_portal(env)
        self.auth = Auth(self.portal.registry)
        # no request may be larger than an upload; past that the body is not even read here
        self.max_body = max(ApiSettings.from_env(env).max_body_bytes, self.portal.settings.max_upload_bytes + 2**20)

    def model_id(self, path: str) -> str:
        """The canonical ``name:N`` an infer / predict path names, or "" (not a model path, unknown)."""
        from ..context import ApiContext
        from ...errors import PortalError

        match = _INFER.match(path)
        if match:
            ref = ApiContext.version_ref(unquote(match["name"]), match["version"] and unquote(match["version"]))
        elif match := _PREDICT.match(path):
            ref = unquote(match["ref"])
        else:
            return ""
        try:
            return str(self.portal.get(ref).ref)
        except PortalError:
            return ""  # the model server answers it (after checking the token: no existence leak)

    @_ingress_app.get("/ray/replicas", include_in_schema=False)
    @_typed(request=Request, return_=None)
    async def replicas(self, request: Request) -> JSONResponse:
        """The model-server replicas Serve runs now (admin only)."""
        from ...accounts.auth import require
        from ...errors import PortalError

        try:
            header = request.headers.get("authorization", "")
            scheme, _, token = header.partition(" ")
            user = await asyncio.to_thread(self.auth.authenticate, token.strip() if scheme.lower() == "bearer" else None)
            require(user, "admin")
        except PortalError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        from portal.api.ray_serve import replica_table  # by name: Serve pickles this class's methods by value

        return JSONResponse({"replicas": await asyncio.to_thread(replica_table)})

    @_ingress_app.api_route("/{path:path}", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
                           include_in_schema=False)
    @_typed(path=str, request=Request, return_=None)
    async def forward(self, path: str, request: Request) -> Response:
        """Forward the request to a model server (the one holding its model, when it names one)."""
        model_id = await asyncio.to_thread(self.model_id, request.url.path)
        length = request.headers.get("content-length", "").strip()
        # too large: forward the headers only, and the replica's Guard answers 413 from Content-Length
        # (0-9 only: str.isdigit() accepts "²", which int() refuses)
        oversized = re.fullmatch(r"[0-9]+", length) is not None and (len(length) > 18 or int(length) > self.max_body)
        message = {
            "method": request.method, "path": request.url.path, "query": request.url.query.encode(),
            "headers": _hop_headers(request), "body": b"" if oversized else await request.body(),
            "client": tuple(request.client) if request.client else ("", 0), "server": ("127.0.0.1", 0),
        }
        # a replica that died under an idempotent request is retried once on another one
        tries = 2 if model_id or request.method in ("GET", "HEAD") else 1
        for attempt in range(tries):
            try:
                status, headers, body = await self.server.options(multiplexed_model_id=model_id).remote(message)
                break
            except _RETRIED:
                if attempt + 1 == tries:
                    raise
        response = Response(content=body, status_code=status)
        # Serve's proxy adds x-request-id itself (the same id: the Guard took it from the request)
        response.raw_headers = [(k, v) for k, v in headers if k != b"x-request-id"]
        return response
