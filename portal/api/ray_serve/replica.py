"""The ``ModelServer`` deployment: the whole ``portal.api`` app in one replica, models multiplexed.

Serve calls :meth:`resident` (``@serve.multiplexed``) with the canonical
``name:N`` of a request's model: the replica loads it into its session cache
and keeps at most ``models_per_replica`` of them, least recently used leaving
first.  Every answer says where it ran (the ``x-portal-replica*`` headers).
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ray import serve

if TYPE_CHECKING:
    from ...core import Portal

__all__ = ["LOADS_HEADER", "MODELS_HEADER", "REPLICA_HEADER", "SERVER_DEPLOYMENT", "call_asgi",
           "model_server_class", "open_portal"]

SERVER_DEPLOYMENT = "ModelServer"
REPLICA_HEADER = "x-portal-replica"
MODELS_HEADER = "x-portal-replica-models"
LOADS_HEADER = "x-portal-replica-loads"


class Resident:
    """One model multiplexed into a replica; Serve calls ``__del__`` when it evicts it."""

    def __init__(self, model_id: str, release: Callable[[str, Resident], None]) -> None:
        self.model_id = model_id
        self._release: Callable[[str, Resident], None] | None = release

    def __del__(self) -> None:
        release, self._release = self._release, None  # once: Serve calls it, then the GC may
        if release is not None:
            release(self.model_id, self)


def open_portal(env: dict[str, str]) -> Portal:
    """The portal of a replica, from the driver's ``PORTAL_*`` variables (the shared store)."""
    from ...config import Settings
    from ...core import Portal

    # the driver ran fsck once before starting Ray; replicas must not race each other at it
    return Portal.open(settings=Settings.from_env(env), check=False)


def _replica_id() -> str:
    return str(serve.get_replica_context().replica_id.unique_id)


async def call_asgi(app: Any, request: dict[str, Any]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
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


def model_server_class(models_per_replica: int) -> type:
    """The ``ModelServer`` deployment class; Serve needs the model count at decoration time."""

    class ModelServer:
        """The whole ``portal.api`` app in one replica, models multiplexed by canonical ref."""

        def __init__(self, env: dict[str, str]) -> None:
            from ..app import configure_logging, create_app
            from ..settings import ApiSettings

            configure_logging()
            self.portal = open_portal(env)
            self.app = create_app(self.portal, settings=ApiSettings.from_env(env))
            self.ctx = self.app.state.ctx
            self.replica = _replica_id()
            self.loads = 0
            self._held: OrderedDict[str, str] = OrderedDict()  # model id -> blob sha, LRU first
            self._lock = threading.Lock()

        @serve.multiplexed(max_num_models_per_replica=models_per_replica)
        async def resident(self, model_id: str) -> Resident:
            """Load ``model_id`` (``name:N``) into this replica's session cache."""
            version = await self.ctx.run(self.portal.get, model_id)
            await self.ctx.run(self.ctx.session, version)
            with self._lock:
                self._held[model_id] = version.blob_sha
                self.loads += 1
            return Resident(model_id, self._release)

        def _release(self, model_id: str, _: Resident) -> None:
            with self._lock:
                sha = self._held.pop(model_id, None)
                shared = sha in self._held.values()
            if sha is not None and not shared:
                self.portal.cache.discard(sha)

        def held(self) -> list[str]:
            with self._lock:
                return list(self._held)

        async def __call__(self, request: dict[str, Any]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
            from ...errors import PortalError

            model_id = serve.get_multiplexed_model_id()
            if model_id:
                try:
                    await self.resident(model_id)
                    with self._lock:
                        if model_id in self._held:
                            self._held.move_to_end(model_id)
                except PortalError:
                    pass  # deleted meanwhile, say: the app answers the request with the right error
            status, headers, body = await call_asgi(self.app, request)
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
