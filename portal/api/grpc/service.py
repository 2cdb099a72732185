"""``inference.GRPCInferenceService``: the six methods of the Open Inference Protocol's gRPC binding.

ServerLive, ServerReady and ServerMetadata need no token (like ``/v2/health/*``
and ``/v2``); ModelReady, ModelMetadata and ModelInfer need a viewer's, and
answer exactly as their REST routes do, through the same functions
(``portal.api.routes.v2`` and ``ApiContext.infer``): names, versions and aliases
resolve the same way, a private model of someone else is NOT_FOUND, predictions
go to the same log (source ``grpc``) and metrics (``protocol="grpc"``).
Triton's other methods (repository, statistics, shared memory...) answer
UNIMPLEMENTED.

Every method is registered as stream-unary, which a unary client cannot tell
apart on the wire, so the handler decides when to read the request message:
after the token and the concurrency slot are checked, never before.  At most
``PORTAL_API_INFER_THREADS`` calls run their model at once (the others wait for
their turn holding their slot), as over HTTP: more threads than that only take
turns at the GIL.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from ...errors import AuthenticationError, InvalidInputError, NotFoundError, PortalError
from ...storage.registry import ModelVersion
from ...serving.signature import tensor_inputs
from ..context import ApiContext, Call
from ..limits import Deadline
from ..tensors import InferRequest
from ..routes.v2 import model_metadata_doc, model_ready_doc, server_metadata, server_ready
from .codec import decode_model_infer, encode_model_infer
from .door import Exchange, ReadTimer, RequestIds, Slots, authenticate, finish, log_internal, status_of
from .tokencache import TokenCache

__all__ = ["SERVICE", "Service"]

SERVICE = "inference.GRPCInferenceService"
Run = Callable[["Service", Call | None, Any, grpc.ServicerContext], Any]


@dataclass(frozen=True)
class _Method:
    name: str
    request: str  # the message class's name in the generated module
    run: Run
    guarded: bool  # needs a token and takes a concurrency slot


class Service:
    """The servicer: ``handlers()`` are what a ``grpc.Server`` registers under ``SERVICE``.

    Args:
        ctx: the API context the HTTP app serves (portal, users, limits, metrics).
        pb: the generated messages module (``inference_pb2``).
    """

    def __init__(self, ctx: ApiContext, pb: Any) -> None:
        self.ctx = ctx
        self.pb = pb
        self.slots = Slots(ctx.settings.max_concurrency)
        self.running = threading.BoundedSemaphore(max(1, ctx.settings.infer_threads))
        self.reader = ReadTimer(ctx.settings.body_timeout_seconds,
                                on_fire=ctx.metrics.grpc_rejected.labels("slow_body").inc)
        self.tokens = TokenCache(ctx.auth, ctx.portal.registry.engine)
        self.request_ids = RequestIds()

    def close(self) -> None:
        self.reader.close()
        self.tokens.close()

    def handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        return {m.name: grpc.stream_unary_rpc_method_handler(functools.partial(self._serve, m)) for m in _METHODS}

    # -- one call -----------------------------------------------------------------------
    def _serve(self, method: _Method, requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        start = time.perf_counter()
        metadata = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
        ex = Exchange.start(method.name, metadata, context, self.request_ids)
        self.ctx.metrics.grpc_in_flight.inc()
        try:
            answer, message = self._answer(method, requests, context, metadata, ex)
        finally:
            self.ctx.metrics.grpc_in_flight.dec()
            finish(self.ctx, ex, time.perf_counter() - start)
        if answer is None:
            context.abort(ex.code, message)  # raises
        return answer

    def _answer(self, method: _Method, requests: Iterator[bytes], context: grpc.ServicerContext,
                metadata: dict[str, str], ex: Exchange) -> tuple[bytes | None, str]:
        call = None
        try:
            if method.guarded:
                call = self._admit(metadata, ex)
                try:
                    request = self._read(method, requests, context, ex)
                    with self.running:
                        response = method.run(self, call, request, context)
                finally:
                    self.slots.give()
            else:
                response = method.run(self, None, self._read(method, requests, context, ex), context)
            data: bytes = response.SerializeToString()
            ex.bytes_out = len(data)
            return data, ""
        except grpc.RpcError:
            ex.code = grpc.StatusCode.CANCELLED  # the client left, or its message stopped arriving
            raise
        except PortalError as exc:
            ex.code = status_of(exc)
            if ex.code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.DATA_LOSS):
                log_internal(ex, exc, exc.message)
            return None, exc.message
        except Exception as exc:
            ex.code = grpc.StatusCode.INTERNAL
            return None, log_internal(ex, exc)
        finally:
            if call is not None:
                ex.model, ex.version = call.state.get("model"), call.state.get("model_version")

    def _admit(self, metadata: dict[str, str], ex: Exchange) -> Call:
        """The caller, holding a slot; refused before the message is read."""
        try:
            user = authenticate(self.tokens, metadata)
        except AuthenticationError:
            self.ctx.metrics.grpc_rejected.labels("unauthenticated").inc()
            raise
        ex.user = user.name
        if not self.slots.take():
            self.ctx.metrics.grpc_rejected.labels("busy").inc()
            ex.code = grpc.StatusCode.RESOURCE_EXHAUSTED
            raise _Busy(f"the server is busy ({self.slots.limit} gRPC calls in flight); retry in "
                        f"{self.ctx.settings.retry_after_seconds} s")
        return Call(user, source="grpc")

    def _read(self, method: _Method, requests: Iterator[bytes], context: grpc.ServicerContext, ex: Exchange) -> Any:
        with self.reader.guard(context):
            raw = next(requests, None)
        kind = getattr(self.pb, method.request)
        if raw is None:
            raise InvalidInputError(f"no request message arrived; send one {method.request}")
        ex.bytes_in = len(raw)
        try:
            return kind.FromString(raw)
        except DecodeError:
            raise InvalidInputError(
                f"the request is not a valid {method.request} message (protobuf could not parse its "
                f"{len(raw):,} bytes); send the message of the Open Inference Protocol's {method.name}"
            ) from None

    # -- the methods ----------------------------------------------------------------------
    def server_live(self, call: Call | None, request: Any, context: grpc.ServicerContext) -> Any:
        return self.pb.ServerLiveResponse(live=True)

    def server_ready(self, call: Call | None, request: Any, context: grpc.ServicerContext) -> Any:
        return self.pb.ServerReadyResponse(ready=server_ready(self.ctx)["ready"])

    def server_metadata(self, call: Call | None, request: Any, context: grpc.ServicerContext) -> Any:
        return self.pb.ServerMetadataResponse(**server_metadata())

    def model_ready(self, call: Call | None, request: Any, context: grpc.ServicerContext) -> Any:
        assert call is not None
        try:
            model_ready_doc(self.ctx, call, request.name, request.version or None)
        except NotFoundError:
            return self.pb.ModelReadyResponse(ready=False)  # as Triton: not an error, a model that is not there
        return self.pb.ModelReadyResponse(ready=True)

    def model_metadata(self, call: Call | None, request: Any, context: grpc.ServicerContext) -> Any:
        assert call is not None
        doc = model_metadata_doc(self.ctx, call, request.name, request.version or None)
        tensor = self.pb.ModelMetadataResponse.TensorMetadata
        return self.pb.ModelMetadataResponse(
            name=doc["name"], versions=doc["versions"], platform=doc["platform"],
            inputs=[tensor(**t) for t in doc["inputs"]], outputs=[tensor(**t) for t in doc["outputs"]],
        )

    def model_infer(self, call: Call | None, request: Any, context: grpc.ServicerContext) -> Any:
        assert call is not None

        def decode(resolved: ModelVersion) -> InferRequest:
            signature = resolved.signature
            return decode_model_infer(request, inputs=tensor_inputs(signature),
                                      output_names=[o["name"] for o in signature["outputs"]])

        resolved, parsed, prediction = self.ctx.infer(
            call, request.model_name, request.model_version or None, decode,
            on_deadline=functools.partial(_stop_with_call, context),
        )
        response = self.pb.ModelInferResponse(model_name=resolved.name, model_version=str(resolved.version),
                                              id=request.id)
        return encode_model_infer(response, prediction.outputs, parsed.outputs, raw=parsed.binary_output)


class _Busy(PortalError):
    """No concurrency slot is free (RESOURCE_EXHAUSTED over gRPC)."""

    status = 429


def _stop_with_call(context: grpc.ServicerContext, deadline: Deadline) -> None:
    """Stop the run when the call ends first: the client's deadline passed, or it cancelled."""

    def stop() -> None:
        deadline.fired = True
        deadline.run_options.terminate = True  # harmless once the run is over (the call ended normally)

    if not context.add_callback(stop):
        stop()  # the call is already over


_METHODS = (
    _Method("ServerLive", "ServerLiveRequest", Service.server_live, guarded=False),
    _Method("ServerReady", "ServerReadyRequest", Service.server_ready, guarded=False),
    _Method("ServerMetadata", "ServerMetadataRequest", Service.server_metadata, guarded=False),
    _Method("ModelReady", "ModelReadyRequest", Service.model_ready, guarded=True),
    _Method("ModelMetadata", "ModelMetadataRequest", Service.model_metadata, guarded=True),
    _Method("ModelInfer", "ModelInferRequest", Service.model_infer, guarded=True),
)
