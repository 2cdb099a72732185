"""The REST API: Open Inference Protocol v2, records/CSV prediction, management routes.

    >>> from portal import Portal
    >>> from portal.api import create_app
    >>> app = create_app(Portal.open())       # serve with uvicorn, or `portal serve`

The outermost layer of the house, over :class:`portal.core.Portal`: HTTP (and
gRPC) in, the portal's verbs, JSON out.

    app         create_app / app_from_env: routes, the guard, error handlers, metrics, OpenAPI
    settings    ApiSettings: the API's limits and switches, from ``PORTAL_API_*``
    context     ApiContext: what every route needs (portal, users, limits, metrics) behind a few verbs
    guard       the outermost ASGI layer: request ids, authentication, limits, access log
    errors      errors become ``{"error": ...}`` responses, with their status and headers
    limits      the per-request inference timeout
    batching    adaptive batching of concurrent small requests to one model
    metrics     Prometheus metrics of one API process
    tensors     Open Inference Protocol tensors: datatypes, request decoding, response encoding
    routes      the REST routes (v2, predict, models, upload, users)
    grpc        the Open Inference Protocol over gRPC, next to HTTP
    ray_serve   the same API as a Ray Serve application, models multiplexed across replicas
"""

from __future__ import annotations

from .app import app_from_env, configure_logging, create_app
from .settings import ApiSettings

__all__ = ["ApiSettings", "app_from_env", "configure_logging", "create_app"]
