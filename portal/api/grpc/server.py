"""The gRPC server next to the HTTP app, in the same process, over the same ``ApiContext``.

A ``grpc.aio`` server on an event loop of its own, in a thread of its own (the
HTTP app's loop belongs to uvicorn): the handlers are coroutines that hand to
threads only what may block (``service.py``).  Against grpcio's thread-pool
server, that saves a thread hand-off per call and the GIL contention of dozens
of threads (``bench/load.py --grpc`` has the figures).  Its limits are the HTTP
app's settings: messages up to ``PORTAL_API_MAX_BODY_MB`` (gRPC answers
RESOURCE_EXHAUSTED above it, before the handler runs),
``PORTAL_API_MAX_CONCURRENCY`` calls at once, the inference timeout and the
body timeout.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from typing import Any

import grpc

from ...errors import PortalError
from ..context import ApiContext
from .service import SERVICE, Service

__all__ = ["GrpcServer", "GrpcStartError", "grpc_port_error", "load_messages"]

_log = logging.getLogger("portal.api")
# calls beyond the concurrency slots that gRPC lets in, so that one over the limit hears why (not a bare refusal)
_SPARE_CALLS = 8
_STOP_GRACE_S = 5.0


class GrpcStartError(PortalError, RuntimeError):
    """The gRPC server could not start (its port is taken, or the generated code cannot load)."""


def grpc_port_error(address: str) -> str:
    """The message for a gRPC address that cannot be bound."""
    return (f"cannot serve gRPC on {address}: the port is in use, or the address is not one of this machine's; "
            "pick another port with --grpc-port (PORTAL_API_GRPC_PORT), or turn gRPC off with --grpc-port 0")


def load_messages() -> Any:
    """The generated ``inference_pb2`` module.

    Raises:
        GrpcStartError: another module already registered the ``inference.*``
            messages (``tritonclient.grpc`` does: a client and this server cannot
            share one process).
    """
    try:
        from . import inference_pb2
    except TypeError as exc:  # protobuf: "duplicate symbol 'inference.ServerLiveRequest'"
        raise GrpcStartError(
            f"cannot load the gRPC messages: {exc}; another module in this process (tritonclient.grpc?) "
            "defines the same 'inference' protobuf package: run the client in another process"
        ) from exc
    return inference_pb2


class GrpcServer:
    """Serve ``ctx``'s models over the Open Inference Protocol's gRPC binding on ``host:port``.

    Args:
        ctx: the HTTP app's context (``app.state.ctx``): one portal, one set of metrics.
        host, port: where to listen (port 0: any free port, see ``port`` after ``start``).
        reuse_port: share the port with other processes (``SO_REUSEPORT``, for ``--workers``).
    """

    def __init__(self, ctx: ApiContext, *, host: str, port: int, reuse_port: bool = False) -> None:
        self.ctx = ctx
        self.host = host
        self.port = port
        self.reuse_port = reuse_port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: grpc.aio.Server | None = None
        self._service: Service | None = None
        self._stopped: asyncio.Event | None = None

    def start(self) -> GrpcServer:
        """Bind and start serving (in a thread of its own, with its own event loop).

        Raises:
            GrpcStartError: the address cannot be bound, or the generated code cannot load.
        """
        self._service = Service(self.ctx, load_messages())
        bound: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, args=(bound,), name="portal-grpc", daemon=True)
        self._thread.start()
        try:
            self.port = bound.result()
        except BaseException:
            self._thread.join()
            self._thread = None
            self._service.close()
            self._service = None
            raise
        return self

    def _run(self, bound: concurrent.futures.Future[int]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(bound))
        except BaseException as exc:  # noqa: BLE001 - handed to start()'s caller
            if not bound.done():
                bound.set_exception(exc)
            else:
                _log.error("the gRPC server stopped on an error", exc_info=exc)
        finally:
            loop.close()

    async def _serve(self, bound: concurrent.futures.Future[int]) -> None:
        assert self._service is not None
        settings = self.ctx.settings
        server = grpc.aio.server(
            maximum_concurrent_rpcs=settings.max_concurrency + _SPARE_CALLS,
            options=[
                ("grpc.max_receive_message_length", settings.max_body_bytes),
                ("grpc.max_send_message_length", -1),
                ("grpc.so_reuseport", 1 if self.reuse_port else 0),
            ],
        )
        handlers = self._service.handlers()
        server.add_registered_method_handlers(SERVICE, handlers)
        # the other methods of Triton's service (and anything else) answer UNIMPLEMENTED
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        address = f"[{self.host}]:{self.port}" if ":" in self.host and not self.host.startswith("[") else \
            f"{self.host}:{self.port}"
        try:
            port = server.add_insecure_port(address)
        except RuntimeError:  # grpcio raises where older versions returned 0
            port = 0
        if not port:
            await server.stop(None)
            raise GrpcStartError(grpc_port_error(address))
        await server.start()
        self._server, self._stopped = server, asyncio.Event()
        bound.set_result(port)
        await self._stopped.wait()

    def stop(self, grace: float = _STOP_GRACE_S) -> None:
        """Stop accepting calls; give those in flight ``grace`` seconds."""
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(self._shutdown(grace), loop).result(grace + 10)
            except (concurrent.futures.TimeoutError, RuntimeError):
                _log.warning("the gRPC server did not stop within %g s", grace + 10)
            thread.join(grace + 10)
        self._loop = self._thread = self._server = None
        if self._service is not None:
            self._service.close()
            self._service = None

    async def _shutdown(self, grace: float) -> None:
        if self._server is not None:
            await self._server.stop(grace)
        if self._stopped is not None:
            self._stopped.set()
