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
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import unquote

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from ray import exceptions as ray_exceptions
from ray import serve

__all__ = ["RaySettings", "build_app", "replica_table", "run", "serve_cli"]

APP_NAME = "portal"
SERVER_DEPLOYMENT = "ModelServer"
REPLICA_HEADER = "x-portal-replica"
MODELS_HEADER = "x-portal-replica-models"
LOADS_HEADER = "x-portal-replica-loads"

# the paths whose model must be loaded to answer: only these are multiplexed
_INFER = re.compile(r"^/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?/infer$")
_PREDICT = re.compile(r"^/api/models/(?P<ref>[^/]+)/predict$")
# a replica that died under a request: the ingress retries idempotent requests once
_RETRIED = (ray_exceptions.ActorDiedError, ray_exceptions.ActorUnavailableError)


def _env_int(env: dict[str, str], name: str, default: int | None) -> int | None:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    if not re.fullmatch(r"[0-9]{1,18}", raw) or int(raw) < 1:  # not str.isdigit(): it accepts "²", int() refuses it
        raise ValueError(f"{name} must be a whole number of at least 1 (not {raw!r})")
    return int(raw)


def _env_float(env: dict[str, str], name: str, default: float | None) -> float | None:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number (not {raw!r})") from None
    if value <= 0:
        raise ValueError(f"{name} must be positive (not {raw!r})")
    return value


@dataclass(frozen=True)
class RaySettings:
    """How the Ray Serve application runs: replicas, autoscaling and the local Ray.

    ``replicas`` is a fixed count; setting ``min_replicas`` / ``max_replicas`` /
    ``target_ongoing_requests`` turns Serve's autoscaler on instead (min defaults
    to 1, max to ``replicas``, target to Serve's default of 2 requests per replica).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    replicas: int = 1
    min_replicas: int | None = None
    max_replicas: int | None = None
    target_ongoing_requests: float | None = None
    models_per_replica: int = 4
    max_ongoing_requests: int = 32
    ingress_replicas: int = 1
    address: str = "local"
    num_cpus: int | None = None
    object_store_mb: int = 200

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> RaySettings:
        """Read ``PORTAL_RAY_*`` variables; keyword overrides that are not None win."""
        env = dict(os.environ if env is None else env)
        settings = cls(
            replicas=_env_int(env, "PORTAL_RAY_REPLICAS", 1) or 1,
            min_replicas=_env_int(env, "PORTAL_RAY_MIN_REPLICAS", None),
            max_replicas=_env_int(env, "PORTAL_RAY_MAX_REPLICAS", None),
            target_ongoing_requests=_env_float(env, "PORTAL_RAY_TARGET_ONGOING_REQUESTS", None),
            models_per_replica=_env_int(env, "PORTAL_RAY_MODELS_PER_REPLICA", 4) or 4,
            max_ongoing_requests=_env_int(env, "PORTAL_RAY_MAX_ONGOING_REQUESTS", 32) or 32,
            ingress_replicas=_env_int(env, "PORTAL_RAY_INGRESS_REPLICAS", 1) or 1,
            address=(env.get("PORTAL_RAY_ADDRESS") or "local").strip(),
            num_cpus=_env_int(env, "PORTAL_RAY_NUM_CPUS", None),
            object_store_mb=_env_int(env, "PORTAL_RAY_OBJECT_STORE_MB", 200) or 200,
        )
        settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
        settings.check()
        return settings

    @property
    def autoscaling(self) -> bool:
        return any(v is not None for v in (self.min_replicas, self.max_replicas, self.target_ongoing_requests))

    def check(self) -> None:
        """Raise ValueError, naming the option, for settings Serve would refuse later."""
        for name in ("replicas", "models_per_replica", "max_ongoing_requests", "ingress_replicas", "port"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name.replace('_', '-')} must be at least 1 (not {getattr(self, name)})")
        if self.autoscaling:
            low, high = self.min_replicas or 1, self.max_replicas or max(self.replicas, self.min_replicas or 1)
            if low > high:
                raise ValueError(f"min-replicas ({low}) is more than max-replicas ({high})")

    def server_options(self) -> dict[str, Any]:
        """``ModelServer`` deployment options: a replica count or an autoscaling config."""
        options: dict[str, Any] = {"max_ongoing_requests": self.max_ongoing_requests,
                                   "ray_actor_options": {"num_cpus": self._replica_cpus()}}
        if self.autoscaling:
            low = self.min_replicas or 1
            options["autoscaling_config"] = {
                "min_replicas": low,
                "max_replicas": self.max_replicas or max(self.replicas, low),
                "target_ongoing_requests": self.target_ongoing_requests or 2.0,
            }
        else:
            options["num_replicas"] = self.replicas
        return options

    def _replica_cpus(self) -> float:
        # Ray's CPUs are a scheduling budget: a replica asks for its share, so that
        # every replica (and a replacement for a dead one) fits on this machine.
        most = max(self.replicas, self.max_replicas or 0, self.min_replicas or 0)
        return min(1.0, self.cpus() / most)

    def cpus(self) -> int:
        return self.num_cpus or os.cpu_count() or 1


# -- the model server --------------------------------------------------------------------
class _Resident:
    """One model multiplexed into a replica; Serve calls ``__del__`` when it evicts it."""

    def __init__(self, model_id: str, release: Callable[[str, _Resident], None]) -> None:
        self.model_id = model_id
        self._release: Callable[[str, _Resident], None] | None = release

    def __del__(self) -> None:
        release, self._release = self._release, None  # once: Serve calls it, then the GC may
        if release is not None:
            release(self.model_id, self)


def _portal_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The ``PORTAL_*`` variables the replicas must see (they may start on other nodes)."""
    env = dict(os.environ if env is None else env)
    return {k: v for k, v in env.items() if k.startswith("PORTAL_")}


def _open_portal(env: dict[str, str]) -> Any:
    from ..config import Settings
    from ..core import Portal

    # the driver ran fsck once before starting Ray; replicas must not race each other at it
    return Portal.open(settings=Settings.from_env(env), check=False)


def _replica_id() -> str:
    return str(serve.get_replica_context().replica_id.unique_id)


async def _call_asgi(app: Any, request: dict[str, Any]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Serve one buffered request through an ASGI ``app`` in this process."""
    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
        "method": request["method"], "scheme": "http", "path": request["path"],
        "raw_path": request["path"].encode(), "query_string": request["query"], "root_path": "",
        "headers": request["headers"], "client": request["client"], "server": request["server"], "state": {},
    }
    sent = False
    status, headers, chunks = 500, [], []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.Event().wait()  # no disconnect while the app is working
        sent = True
        return {"type": "http.request", "body": request["body"], "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, headers
        if message["type"] == "http.response.start":
            status, headers = message["status"], list(message.get("headers", ()))
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, headers, b"".join(chunks)


def _model_server_class(models_per_replica: int) -> type:
    """The ``ModelServer`` deployment class; Serve needs the model count at decoration time."""

    class ModelServer:
        """The whole ``portal.api`` app in one replica, models multiplexed by canonical ref."""

        def __init__(self, env: dict[str, str]) -> None:
            from .app import configure_logging, create_app
            from .settings import ApiSettings

            configure_logging()
            self.portal = _open_portal(env)
            self.app = create_app(self.portal, settings=ApiSettings.from_env(env))
            self.ctx = self.app.state.ctx
            self.replica = _replica_id()
            self.loads = 0
            self._held: OrderedDict[str, str] = OrderedDict()  # model id -> blob sha, LRU first
            self._lock = threading.Lock()

        @serve.multiplexed(max_num_models_per_replica=models_per_replica)
        async def resident(self, model_id: str) -> _Resident:
            """Load ``model_id`` (``name:N``) into this replica's session cache."""
            version = await self.ctx.run(self.portal.get, model_id)
            await self.ctx.run(self.ctx.session, version)
            with self._lock:
                self._held[model_id] = version.blob_sha
                self.loads += 1
            return _Resident(model_id, self._release)

        def _release(self, model_id: str, _: _Resident) -> None:
            with self._lock:
                sha = self._held.pop(model_id, None)
                shared = sha in self._held.values()
            if sha is not None and not shared:
                self.portal.cache.discard(sha)

        def held(self) -> list[str]:
            with self._lock:
                return list(self._held)

        async def __call__(self, request: dict[str, Any]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
            from ..errors import PortalError

            model_id = serve.get_multiplexed_model_id()
            if model_id:
                try:
                    await self.resident(model_id)
                    with self._lock:
                        if model_id in self._held:
                            self._held.move_to_end(model_id)
                except PortalError:
                    pass  # deleted meanwhile, say: the app answers the request with the right error
            status, headers, body = await _call_asgi(self.app, request)
            headers += [(REPLICA_HEADER.encode(), self.replica.encode()),
                        (MODELS_HEADER.encode(), ",".join(self.held()).encode()),
                        (LOADS_HEADER.encode(), str(self.loads).encode())]
            return status, headers, body

        def __del__(self) -> None:
            ctx, portal = getattr(self, "ctx", None), getattr(self, "portal", None)
            if ctx is not None:
                ctx.close()
            if portal is not None:
                portal.close()

    return ModelServer


# -- the ingress --------------------------------------------------------------------------
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
        from ..accounts.auth import Auth

        from .settings import ApiSettings

        self.server = server
        self.portal = _open_portal(env)
        self.auth = Auth(self.portal.registry)
        # no request may be larger than an upload; past that the body is not even read here
        self.max_body = max(ApiSettings.from_env(env).max_body_bytes, self.portal.settings.max_upload_bytes + 2**20)

    def model_id(self, path: str) -> str:
        """The canonical ``name:N`` an infer / predict path names, or "" (not a model path, unknown)."""
        from .context import ApiContext
        from ..errors import PortalError

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
        from ..accounts.auth import require
        from ..errors import PortalError

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



def replica_table() -> list[dict[str, Any]]:
    """Id, pid, state and actor name of every ModelServer replica, from the Serve controller."""
    from ray.serve.context import _get_global_client

    # serve.status() has no per-replica detail; the controller's instance details do
    details = _get_global_client().get_serve_details()
    app = details.get("applications", {}).get(APP_NAME, {})
    deployment = app.get("deployments", {}).get(SERVER_DEPLOYMENT, {})
    return [{"replica": r.get("replica_id"), "pid": r.get("pid"), "state": str(r.get("state")),
             "actor_name": r.get("actor_name")} for r in deployment.get("replicas", [])]


def build_app(settings: RaySettings, env: dict[str, str] | None = None) -> Any:
    """The bound Serve application: an ingress over ``ModelServer`` replicas."""
    portal_env = _portal_env(env)
    server = serve.deployment(_model_server_class(settings.models_per_replica), name=SERVER_DEPLOYMENT,
                              **settings.server_options())
    ingress = serve.deployment(PortalIngress, name="PortalIngress", num_replicas=settings.ingress_replicas,
                               max_ongoing_requests=max(256, 4 * settings.max_ongoing_requests),
                               ray_actor_options={"num_cpus": 0})
    return ingress.bind(server.bind(portal_env), portal_env)


# -- running it --------------------------------------------------------------------------
def start(settings: RaySettings, env: dict[str, str] | None = None) -> None:
    """Start (or join) Ray, then Serve with HTTP on ``settings.host:port``, and deploy the app."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
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
    from .settings import ApiSettings
    from ..config import Settings
    from ..core import Portal

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
