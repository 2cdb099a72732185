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
after the token and the concurrency slot are checked, never before.

The handlers are coroutines on the server's event loop (``server.py``).  What
may block runs in threads: a token the cache cannot answer, metadata and
readiness (database reads, a model load), and every ModelInfer that is not
known to be cheap, at most ``PORTAL_API_INFER_THREADS`` at once (the others wait
for their turn holding their slot), as over HTTP.  A ModelInfer known to be
cheap (``ApiContext.cheap``: requests of its size took under
``PORTAL_API_INLINE_MS`` of CPU, to a loaded model whose work its input's size
bounds, ``ApiContext.inline_safe``) runs on the loop: for a small model the
hand-off to a thread and back costs more than the run.  When the client's
deadline passes or it cancels while its run is in a thread, the run is stopped
(``RunOptions.terminate``), and the call keeps its slot and stays in flight
until the run has stopped, so the limits count every run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from ...errors import AuthenticationError, InvalidInputError, NotFoundError, PortalError
from ...storage.registry import ModelVersion
from ...serving.signature import tensor_inputs
from ..context import ApiContext, Call, Offload
from ..limits import Deadline
from ..tensors import InferRequest
from ..routes.v2 import model_metadata_doc, model_ready_doc, server_metadata, server_ready
from .codec import decode_model_infer, encode_model_infer
from .door import Exchange, RequestIds, Slots, bearer_token, finish, log_internal, status_of
from .tokencache import TokenCache

__all__ = ["SERVICE", "Service"]

SERVICE = "inference.GRPCInferenceService"
Run = Callable[["Service", Call | None, Any, "_Turn"], Awaitable[Any]]
_IO_THREADS = 4  # token checks, metadata and readiness: database reads, off the event loop


@dataclass(frozen=True)
class _Method:
    name: str
    request: str  # the message class's name in the generated module
    run: Run
    guarded: bool  # needs a token and takes a concurrency slot


class Service:
    """The servicer: ``handlers()`` are what a ``grpc.aio`` server registers under ``SERVICE``.

    Args:
        ctx: the API context the HTTP app serves (portal, users, limits, metrics).
        pb: the generated messages module (``inference_pb2``).
    """

    def __init__(self, ctx: ApiContext, pb: Any) -> None:
        self.ctx = ctx
        self.pb = pb
        self.slots = Slots(ctx.settings.max_concurrency)
        self.runs = ThreadPoolExecutor(max(1, ctx.settings.infer_threads), thread_name_prefix="portal-grpc-run")
        self.io = ThreadPoolExecutor(_IO_THREADS, thread_name_prefix="portal-grpc-io")
        self.tokens = TokenCache(ctx.auth, ctx.portal.registry.engine)
        self.request_ids = RequestIds()

    def close(self) -> None:
        """After the server stopped: runs still going finish in their threads, then the threads end."""
        self.runs.shutdown(wait=False)
        self.io.shutdown(wait=False)
        self.tokens.close()

    def handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        return {m.name: grpc.stream_unary_rpc_method_handler(self._handler(m)) for m in _METHODS}

    def _handler(self, method: _Method) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[bytes]]:
        async def handle(requests: Any, context: grpc.aio.ServicerContext) -> bytes:
            return await self._serve(method, context)

        return handle

    # -- one call -----------------------------------------------------------------------
    async def _serve(self, method: _Method, context: grpc.aio.ServicerContext) -> bytes:
        start = time.perf_counter()
        metadata = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
        ex = Exchange.start(method.name, metadata, context, self.request_ids)
        self.ctx.metrics.grpc_in_flight.inc()
        turn = _Turn(ex)
        try:
            answer, message = await self._answer(method, context, metadata, turn)
        finally:
            turn.end(lambda: self._release(turn, time.perf_counter() - start))
        if answer is None:
            await context.abort(ex.code, message)  # raises
        return answer

    def _release(self, turn: _Turn, seconds: float) -> None:
        """The call is over and its run, if it had one in a thread, has stopped: free its slot, count it."""
        if turn.slot:
            self.slots.give()
        self.ctx.metrics.grpc_in_flight.dec()
        finish(self.ctx, turn.ex, seconds)

    async def _answer(self, method: _Method, context: grpc.aio.ServicerContext, metadata: dict[str, str],
                      turn: _Turn) -> tuple[bytes | None, str]:
        ex, call = turn.ex, None
        try:
            if method.guarded:
                call = await self._admit(metadata, turn)
            request = await self._read(method, context, turn)
            response = await method.run(self, call, request, turn)
            data: bytes = response.SerializeToString()
            ex.bytes_out = len(data)
            return data, ""
        except asyncio.CancelledError:
            ex.code = grpc.StatusCode.CANCELLED  # the client left, or its deadline passed
            raise
        except _Stalled as exc:
            ex.code = grpc.StatusCode.CANCELLED
            return None, exc.message
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

    async def _admit(self, metadata: dict[str, str], turn: _Turn) -> Call:
        """The caller, holding a slot; refused before the message is read."""
        try:
            token = bearer_token(metadata)
            user = self.tokens.cached(token)
            if user is None:  # a database read
                user = await asyncio.get_running_loop().run_in_executor(self.io, self.tokens.user, token)
        except AuthenticationError:
            self.ctx.metrics.grpc_rejected.labels("unauthenticated").inc()
            raise
        turn.ex.user = user.name
        if not self.slots.take():
            self.ctx.metrics.grpc_rejected.labels("busy").inc()
            raise _Busy(f"the server is busy ({self.slots.limit} gRPC calls in flight); retry in "
                        f"{self.ctx.settings.retry_after_seconds} s")
        turn.slot = True
        return Call(user, source="grpc")

    async def _read(self, method: _Method, context: grpc.aio.ServicerContext, turn: _Turn) -> Any:
        timeout = self.ctx.settings.body_timeout_seconds
        try:
            async with asyncio.timeout(timeout):
                raw = await context.read()
        except TimeoutError:
            self.ctx.metrics.grpc_rejected.labels("slow_body").inc()
            raise _Stalled(f"the request message did not arrive within {timeout:g} s; send it at once "
                           "(PORTAL_API_BODY_TIMEOUT_S sets the limit)") from None
        if raw is grpc.aio.EOF or raw is None:
            raise InvalidInputError(f"no request message arrived; send one {method.request}")
        turn.ex.bytes_in = len(raw)
        kind = getattr(self.pb, method.request)
        try:
            return kind.FromString(raw)
        except DecodeError:
            raise InvalidInputError(
                f"the request is not a valid {method.request} message (protobuf could not parse its "
                f"{len(raw):,} bytes); send the message of the Open Inference Protocol's {method.name}"
            ) from None

    async def _in_thread(self, pool: ThreadPoolExecutor, turn: _Turn, func: Callable[..., Any], *args: Any,
                         stop: _Stop | None = None) -> Any:
        """``func(*args)`` in ``pool``; if the call ends first, ``stop`` stops the run, and the call waits for it."""
        future = asyncio.get_running_loop().run_in_executor(pool, func, *args)
        turn.pending = future
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            if stop is not None:
                stop.fire()
            raise

    # -- the methods ----------------------------------------------------------------------
    async def server_live(self, call: Call | None, request: Any, turn: _Turn) -> Any:
        return self.pb.ServerLiveResponse(live=True)

    async def server_ready(self, call: Call | None, request: Any, turn: _Turn) -> Any:
        doc = await self._in_thread(self.io, turn, server_ready, self.ctx)
        return self.pb.ServerReadyResponse(ready=doc["ready"])

    async def server_metadata(self, call: Call | None, request: Any, turn: _Turn) -> Any:
        return self.pb.ServerMetadataResponse(**server_metadata())

    async def model_ready(self, call: Call | None, request: Any, turn: _Turn) -> Any:
        assert call is not None
        try:  # may load the model: a run's thread
            await self._in_thread(self.runs, turn, model_ready_doc, self.ctx, call, request.name,
                                  request.version or None)
        except NotFoundError:
            return self.pb.ModelReadyResponse(ready=False)  # as Triton: not an error, a model that is not there
        return self.pb.ModelReadyResponse(ready=True)

    async def model_metadata(self, call: Call | None, request: Any, turn: _Turn) -> Any:
        assert call is not None
        doc = await self._in_thread(self.io, turn, model_metadata_doc, self.ctx, call, request.name,
                                    request.version or None)
        tensor = self.pb.ModelMetadataResponse.TensorMetadata
        return self.pb.ModelMetadataResponse(
            name=doc["name"], versions=doc["versions"], platform=doc["platform"],
            inputs=[tensor(**t) for t in doc["inputs"]], outputs=[tensor(**t) for t in doc["outputs"]],
        )

    async def model_infer(self, call: Call | None, request: Any, turn: _Turn) -> Any:
        assert call is not None
        key, size = (request.model_name, request.model_version or None), turn.ex.bytes_in
        if self.ctx.cheap(key, size):
            try:
                return self._infer(call, request, key, size, None, inline=True)
            except Offload:
                pass  # not loaded yet, or its work is not bounded by its input's size
        stop = _Stop()
        return await self._in_thread(self.runs, turn, self._infer, call, request, key, size, stop, stop=stop)

    def _infer(self, call: Call, request: Any, key: tuple[str, str | None], size: int, stop: _Stop | None, *,
               inline: bool = False) -> Any:
        started = time.thread_time()

        def decode(resolved: ModelVersion) -> InferRequest:
            if inline and not self.ctx.inline_safe(resolved):
                raise Offload
            signature = resolved.signature
            return decode_model_infer(request, inputs=tensor_inputs(signature),
                                      output_names=[o["name"] for o in signature["outputs"]])

        resolved, parsed, prediction = self.ctx.infer(call, request.model_name, request.model_version or None,
                                                      decode, on_deadline=None if stop is None else stop.attach)
        response = self.pb.ModelInferResponse(model_name=resolved.name, model_version=str(resolved.version),
                                              id=request.id)
        response = encode_model_infer(response, prediction.outputs, parsed.outputs, raw=parsed.binary_output)
        self.ctx.record_cost(key, size, time.thread_time() - started)
        return response


class _Turn:
    """One call's hold on the server: its exchange, its slot, and its run in a thread if it has one."""

    __slots__ = ("ex", "slot", "pending")

    def __init__(self, ex: Exchange) -> None:
        self.ex = ex
        self.slot = False
        self.pending: asyncio.Future[Any] | None = None

    def end(self, release: Callable[[], None]) -> None:
        """``release()`` now, or once the run in a thread has stopped (the call may end first)."""
        pending = self.pending
        if pending is None or pending.done():
            _retrieve(pending)
            release()
            return

        def stopped(future: asyncio.Future[Any]) -> None:
            _retrieve(future)
            release()

        pending.add_done_callback(stopped)


def _retrieve(future: asyncio.Future[Any] | None) -> None:
    """Mark a run's exception as seen (the call that wanted it is gone; asyncio would log it)."""
    if future is not None and not future.cancelled():
        future.exception()


class _Stop:
    """Stops one run when its call ends first, whether the run has started or not."""

    __slots__ = ("deadline", "fired")

    def __init__(self) -> None:
        self.deadline: Deadline | None = None
        self.fired = False

    def attach(self, deadline: Deadline) -> None:
        """The run's deadline, given before the run starts (``ApiContext.predict``'s ``on_deadline``)."""
        self.deadline = deadline
        if self.fired:
            deadline.stop()

    def fire(self) -> None:
        self.fired = True
        if self.deadline is not None:
            self.deadline.stop()


class _Busy(PortalError):
    """No concurrency slot is free (RESOURCE_EXHAUSTED over gRPC)."""

    status = 429


class _Stalled(PortalError):
    """The request message did not arrive in time (the call is CANCELLED)."""

    status = 408


_METHODS = (
    _Method("ServerLive", "ServerLiveRequest", Service.server_live, guarded=False),
    _Method("ServerReady", "ServerReadyRequest", Service.server_ready, guarded=False),
    _Method("ServerMetadata", "ServerMetadataRequest", Service.server_metadata, guarded=False),
    _Method("ModelReady", "ModelReadyRequest", Service.model_ready, guarded=True),
    _Method("ModelMetadata", "ModelMetadataRequest", Service.model_metadata, guarded=True),
    _Method("ModelInfer", "ModelInferRequest", Service.model_infer, guarded=True),
)
