"""Building, starting and stopping the Ray Serve application, and ``portal serve --ray``."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from ray import serve

from .ingress import PortalIngress
from .replica import SERVER_DEPLOYMENT, model_server_class
from .settings import RaySettings

__all__ = ["APP_NAME", "build_app", "replica_table", "run", "serve_cli", "start", "stop"]

APP_NAME = "portal"
# Serve's router gives a replica 0.1 s to say how busy it is; one that answers later is passed
# over for this request, and a multiplexed request then goes to a replica without its model,
# which loads it (seconds) and may evict another: on busy cores that broke stickiness.  Half a
# second is far below a model load.  A local Ray's processes inherit it; on a cluster set it
# on `ray start` (an operator's own value wins).
RAY_DEFAULTS = {"RAY_SERVE_QUEUE_LENGTH_RESPONSE_DEADLINE_S": "0.5", "RAY_USAGE_STATS_ENABLED": "0"}


def replica_table() -> list[dict[str, Any]]:
    """Id, pid, state and actor name of every ModelServer replica, from the Serve controller."""
    from ray.serve.context import _get_global_client

    # serve.status() has no per-replica detail; the controller's instance details do
    details = _get_global_client().get_serve_details()
    app = details.get("applications", {}).get(APP_NAME, {})
    deployment = app.get("deployments", {}).get(SERVER_DEPLOYMENT, {})
    return [{"replica": r.get("replica_id"), "pid": r.get("pid"), "state": str(r.get("state")),
             "actor_name": r.get("actor_name")} for r in deployment.get("replicas", [])]


def _portal_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The ``PORTAL_*`` variables the replicas must see (they may start on other nodes)."""
    env = dict(os.environ if env is None else env)
    return {k: v for k, v in env.items() if k.startswith("PORTAL_")}


def build_app(settings: RaySettings, env: dict[str, str] | None = None) -> Any:
    """The bound Serve application: an ingress over ``ModelServer`` replicas."""
    portal_env = _portal_env(env)
    server = serve.deployment(model_server_class(settings.models_per_replica), name=SERVER_DEPLOYMENT,
                              **settings.server_options())
    ingress = serve.deployment(PortalIngress, name="PortalIngress", num_replicas=settings.ingress_replicas,
                               max_ongoing_requests=max(256, 4 * settings.max_ongoing_requests),
                               ray_actor_options={"num_cpus": 0})
    return ingress.bind(server.bind(portal_env), portal_env)


def start(settings: RaySettings, env: dict[str, str] | None = None) -> None:
    """Start (or join) Ray, then Serve with HTTP on ``settings.host:port``, and deploy the app."""
    for name, value in RAY_DEFAULTS.items():
        os.environ.setdefault(name, value)
    import ray

    if settings.address == "local":
        ray.init(address="local", include_dashboard=False, num_cpus=settings.cpus(),
                 object_store_memory=settings.object_store_mb * 1024**2, _node_ip_address="127.0.0.1",
                 log_to_driver=False, configure_logging=False)
    else:
        ray.init(address=settings.address, log_to_driver=False, configure_logging=False)
    serve.start(http_options={"host": settings.host, "port": settings.port})
    serve.run(build_app(settings, env), name=APP_NAME, route_prefix="/", blocking=False)


def stop() -> None:
    """Take the application down and leave Ray (a local Ray stops with it)."""
    import ray

    try:
        if ray.is_initialized():
            serve.shutdown()
    finally:
        ray.shutdown()


def run(settings: RaySettings, *, on_ready: Callable[[], None] | None = None) -> None:
    """Serve until SIGINT / SIGTERM, then shut Serve and Ray down cleanly."""
    import signal

    done = threading.Event()
    previous: dict[int, Any] = {}
    try:
        start(settings)
        # installed after ray.init, which sets a SIGTERM handler of its own in the driver
        previous = {sig: signal.signal(sig, lambda *_: done.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
        if on_ready is not None:
            on_ready()
        done.wait()
    finally:
        stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve_cli(*, host: str, port: int, batch: list[str] | None, announce: Callable[[str], None],
              **options: Any) -> None:
    """``portal serve --ray``: check the settings, fsck the store once, serve until stopped.

    Raises:
        ValueError: a bad option or ``PORTAL_RAY_*`` / ``PORTAL_API_*`` value (one line for the CLI).
    """
    from ..settings import ApiSettings
    from ...config import Settings
    from ...core import Portal

    if batch:
        known = [n for n in os.environ.get("PORTAL_API_BATCHING", "").split(",") if n]
        os.environ["PORTAL_API_BATCHING"] = ",".join([*known, *batch])
    settings = RaySettings.from_env(host=host, port=port, **options)
    ApiSettings.from_env()
    Portal.open(settings=Settings.from_env()).close()  # fsck once, before any replica opens the store
    scaling = (f"autoscaling {settings.server_options()['autoscaling_config']}" if settings.autoscaling
               else f"{settings.replicas} model-server replica(s)")
    run(settings, on_ready=lambda: announce(
        f"Model Portal API on Ray Serve at http://{host}:{port}  ({scaling}, at most "
        f"{settings.models_per_replica} models loaded per replica; Ctrl+C to stop)"))
