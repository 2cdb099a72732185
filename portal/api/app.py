"""The FastAPI application: routes, the guard, error handlers, metrics and OpenAPI.

``create_app(portal)`` serves an open ``Portal``; ``app_from_env()`` is the
factory ``portal serve`` and uvicorn workers use, building everything from
``PORTAL_*`` / ``PORTAL_API_*`` environment variables.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from ..config import Settings
from ..core import Portal
from .context import ApiContext, context
from .errors import install_error_handlers
from .guard import Guard, access_logger
from .routes.models import router as models_router
from .routes.predict import router as predict_router
from .settings import ApiSettings
from .routes.users import router as users_router
from .routes.v2 import router as v2_router

__all__ = ["app_from_env", "configure_logging", "create_app"]

_PUBLIC = ("/v2", "/v2/health/live", "/v2/health/ready")
_DESCRIPTION = """\
Every registered model over the **Open Inference Protocol v2** (KServe / Triton REST),
a friendlier records/CSV prediction route, and management routes.

Send `Authorization: Bearer <token>`; an admin makes tokens with `portal tokens create USER`.
Roles: **viewer** (read, infer), **analyst** (also upload; alias, edit and delete own models),
**admin** (everything, users and tokens). Errors are `{"error": "..."}`.
"""


def _metrics(request: Request) -> Response:
    """Prometheus text for any token; models the caller may not see are not named (see ``metrics``)."""
    ctx = context(request)
    ctx.allow(request, "read")
    portal = ctx.portal_for(request)
    visible = None
    if not portal.can("admin"):
        visible = {m.name for m in portal.list_models()}.__contains__
    return Response(ctx.metrics.render(visible=visible), media_type=CONTENT_TYPE_LATEST)


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {})["bearer"] = {"type": "http", "scheme": "bearer"}
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            # validation errors are answered 400 {"error": ...} (documented per route), never 422
            operation.get("responses", {}).pop("422", None)
            if path not in _PUBLIC:
                operation["security"] = [{"bearer": []}]
    for unused in ("HTTPValidationError", "ValidationError"):
        components.get("schemas", {}).pop(unused, None)
    app.openapi_schema = schema
    return schema


def create_app(portal: Portal, *, settings: ApiSettings | None = None, owns_portal: bool = False) -> FastAPI:
    """The REST API over ``portal``.

    Args:
        portal: the open portal to serve (shared registry and session cache).
        settings: limits and batching (default: from the environment).
        owns_portal: close ``portal`` when the app shuts down.
    """
    settings = settings or ApiSettings.from_env()
    ctx = ApiContext(portal, settings)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        grpc_server = _start_grpc(ctx) if settings.grpc_port else None
        try:
            yield
        finally:
            if grpc_server is not None:
                grpc_server.stop()
            ctx.close()
            if owns_portal:
                portal.close()

    app = FastAPI(title="Model Portal", version=_version(), description=_DESCRIPTION, lifespan=lifespan,
                  redirect_slashes=False, docs_url=None)
    _serve_docs(app)
    app.state.ctx = ctx
    install_error_handlers(app)
    app.include_router(v2_router)
    app.include_router(models_router)
    app.include_router(predict_router)
    app.include_router(users_router)
    app.add_api_route("/metrics", _metrics, methods=["GET"], summary="Prometheus metrics", tags=["Observability"],
                      response_class=Response, responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
    app.add_middleware(
        Guard, metrics=ctx.metrics, counter=ctx, authenticate=ctx.authenticate,
        max_concurrency=settings.max_concurrency, retry_after=settings.retry_after_seconds,
        max_body_bytes=settings.max_body_bytes, max_upload_bytes=portal.settings.max_upload_bytes,
        body_timeout=settings.body_timeout_seconds,
    )
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _start_grpc(ctx: ApiContext) -> Any:
    """The Open Inference Protocol's gRPC door on ``PORTAL_API_GRPC_PORT``, over the same context as HTTP."""
    from .grpc import GrpcServer, GrpcStartError  # imported only when served (see portal.api.grpc)

    settings = ctx.settings
    try:
        return GrpcServer(ctx, host=settings.grpc_host, port=settings.grpc_port,
                          reuse_port=settings.grpc_reuse_port).start()
    except GrpcStartError as exc:
        logging.getLogger("portal.api").error("%s", exc.message)
        raise


def _serve_docs(app: FastAPI) -> None:
    """Swagger UI at ``/docs`` from the files of the ``swagger-ui-bundle`` package (no CDN: works offline)."""
    import swagger_ui_bundle
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles

    app.mount("/docs-assets", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-assets")

    def docs() -> Response:
        return get_swagger_ui_html(
            openapi_url="/openapi.json", title=f"{app.title} API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js", swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon-32x32.png",
        )

    app.add_api_route("/docs", docs, methods=["GET"], include_in_schema=False)


def _version() -> str:
    from .routes.v2 import server_version

    return server_version()


def configure_logging(stream: Any = None) -> None:
    """One JSON line per request on ``portal.access``; errors with tracebacks on ``portal.api``."""
    stream = stream or sys.stderr
    for name, level in (("portal.access", logging.INFO), ("portal.api", logging.WARNING)):
        logger = logging.getLogger(name)
        if not logger.handlers:
            handler = logging.StreamHandler(stream)
            handler.setFormatter(logging.Formatter("%(message)s" if name == "portal.access" else
                                                   "%(asctime)s %(levelname)s %(name)s: %(message)s"))
            logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False
    access_logger.disabled = False


def app_from_env() -> FastAPI:
    """The app for ``portal serve`` and each uvicorn worker, configured from the environment."""
    configure_logging()
    portal = Portal.open(settings=Settings.from_env())
    return create_app(portal, settings=ApiSettings.from_env(), owns_portal=True)
