"""The gRPC server next to the HTTP app, in the same process, over the same ``ApiContext``.

A ``grpc.server`` with a thread pool: a call runs start to end on one pool
thread (token, slot, message, prediction, answer), so there is no hand-off per
call.  Its limits are the HTTP app's settings: messages up to
``PORTAL_API_MAX_BODY_MB`` (gRPC answers RESOURCE_EXHAUSTED above it, before
the handler runs), ``PORTAL_API_MAX_CONCURRENCY`` calls at once, the inference
timeout and the body timeout.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc

from ...errors import PortalError
from ..context import ApiContext
from .service import SERVICE, Service

__all__ = ["GrpcServer", "GrpcStartError", "grpc_port_error", "load_messages"]

_log = logging.getLogger("portal.api")
# threads beyond the concurrency slots, so a call over the limit is refused at once (not queued)
_SPARE_THREADS = 8
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
        self._server: grpc.Server | None = None
        self._service: Service | None = None

    def start(self) -> GrpcServer:
        """Bind and start serving.

        Raises:
            GrpcStartError: the address cannot be bound, or the generated code cannot load.
        """
        settings = self.ctx.settings
        self._service = Service(self.ctx, load_messages())
        threads = settings.max_concurrency + _SPARE_THREADS
        server = grpc.server(
            ThreadPoolExecutor(max_workers=threads, thread_name_prefix="portal-grpc"),
            maximum_concurrent_rpcs=threads,
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
            bound = server.add_insecure_port(address)
        except RuntimeError:  # grpcio raises where older versions returned 0
            bound = 0
        if not bound:
            self._service.close()
            raise GrpcStartError(grpc_port_error(address))
        self.port = bound
        server.start()
        self._server = server
        return self

    def stop(self, grace: float = _STOP_GRACE_S) -> None:
        """Stop accepting calls; give those in flight ``grace`` seconds."""
        if self._server is not None:
            self._server.stop(grace).wait()
            self._server = None
        if self._service is not None:
            self._service.close()
            self._service = None
