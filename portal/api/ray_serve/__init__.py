"""The REST API as a Ray Serve application, with models multiplexed across replicas.

Two deployments, one application (``portal``)::

    HTTP ─▶ Serve proxy ─▶ PortalIngress (FastAPI, @serve.ingress; thin)
                              │  resolves name / name:3 / name@alias of an infer or
                              │  predict path to its canonical ``name:N``
                              ▼  handle.options(multiplexed_model_id="name:N")
                           ModelServer × N replicas (autoscaled)
                              runs the unchanged ``portal.api`` app in-process;
                              @serve.multiplexed keeps each replica's most-used
                              models loaded (LRU), Serve routes a model's requests
                              to the replicas that already hold it

Every replica opens the portal from the same ``PORTAL_HOME`` / ``PORTAL_DB_URL``
(the shared store) and checks bearer tokens exactly as ``portal serve`` does, so
the routes, errors, limits and metrics are the plain server's.  Each model-server
response says where it ran: ``x-portal-replica`` (the Serve replica id) and
``x-portal-replica-models`` (the models that replica holds, least recently used
first).  ``GET /ray/replicas`` (admin) lists the replicas Serve runs now.

Modules:

    settings   RaySettings: replicas, autoscaling and the local Ray, from ``PORTAL_RAY_*``
    replica    the ModelServer deployment (the portal app, models multiplexed) and its headers
    ingress    the PortalIngress deployment: names a request's model, forwards it, /ray/replicas
    launch     build_app, start / stop / run, ``portal serve --ray`` (serve_cli), replica_table
"""

from __future__ import annotations

from .launch import APP_NAME, build_app, replica_table, run, serve_cli, start, stop
from .replica import LOADS_HEADER, MODELS_HEADER, REPLICA_HEADER, SERVER_DEPLOYMENT
from .settings import RaySettings

__all__ = [
    "APP_NAME", "LOADS_HEADER", "MODELS_HEADER", "REPLICA_HEADER", "SERVER_DEPLOYMENT", "RaySettings", "build_app",
    "replica_table", "run", "serve_cli", "start", "stop",
]
