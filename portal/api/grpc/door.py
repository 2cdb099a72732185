"""What the gRPC door does around every call, as the HTTP ``Guard`` does around every request.

In order: a request id (the client's ``x-request-id`` metadata when it is sane,
else a new one; sent back in the trailing metadata); the bearer token from the
``authorization`` metadata (UNAUTHENTICATED); a concurrency slot
(RESOURCE_EXHAUSTED); then the request message, which must arrive within
``PORTAL_API_BODY_TIMEOUT_S`` (the call is cancelled otherwise, ``service.py``).  The token and
the slot are checked before a byte of the message is read.  Whatever happens,
the metrics and one JSON access-log line are written, and every error becomes a
gRPC status with a message a user can act on; an unexpected exception becomes
INTERNAL naming the request id, the traceback going to the server log only.
"""

from __future__ import annotations

import itertools
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii

import grpc

from ...errors import AuthenticationError, CorruptBlobError, MemoryLimitError, PortalError
from ..context import ApiContext
from ..guard import access_logger

__all__ = ["Exchange", "RequestIds", "Slots", "bearer_token", "finish", "status_of"]

_log = logging.getLogger("portal.api")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_MAX_LOGGED = 300
_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT, 401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED, 404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.FAILED_PRECONDITION, 413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT, 422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED, 503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


@dataclass
class Exchange:
    """What the door learns about one call while it is served."""

    method: str
    request_id: str
    peer: str
    code: grpc.StatusCode = grpc.StatusCode.OK
    bytes_in: int = 0
    bytes_out: int = 0
    user: str | None = None
    model: str | None = None
    version: str | None = None

    @classmethod
    def start(cls, method: str, metadata: dict[str, str], context: grpc.aio.ServicerContext,
              new_id: Callable[[], str]) -> Exchange:
        given = metadata.get("x-request-id")
        request_id = given if given and _REQUEST_ID.fullmatch(given) else new_id()
        context.set_trailing_metadata((("x-request-id", request_id),))
        return cls(method, request_id, context.peer())


class RequestIds:
    """New request ids: a random prefix per server and a counter, as unique as uuid4's at a tenth of the cost."""

    def __init__(self) -> None:
        self._prefix = uuid.uuid4().hex[:16]
        self._count = itertools.count()

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._count):016x}"


def status_of(exc: PortalError) -> grpc.StatusCode:
    """The gRPC status of a portal error: its HTTP status's counterpart."""
    if isinstance(exc, MemoryLimitError):
        return grpc.StatusCode.RESOURCE_EXHAUSTED  # 422 over HTTP, but it is a resource running out
    if isinstance(exc, CorruptBlobError):
        return grpc.StatusCode.DATA_LOSS
    return _CODES.get(exc.status, grpc.StatusCode.INTERNAL)


def bearer_token(metadata: dict[str, str]) -> str:
    """The token of the ``authorization: Bearer TOKEN`` metadata (checked by ``TokenCache``).

    Raises:
        AuthenticationError: no metadata, or a malformed value.
    """
    header = metadata.get("authorization")
    if not header:
        raise AuthenticationError(
            "missing token: send the metadata 'authorization: Bearer <token>'; an admin makes one with "
            "`portal tokens create USER`"
        )
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise AuthenticationError("use the metadata 'authorization: Bearer <token>'")
    return value.strip()


class Slots:
    """At most ``limit`` calls served at once; the gRPC door's share of ``PORTAL_API_MAX_CONCURRENCY``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.used >= self.limit:
                return False
            self.used += 1
            return True

    def give(self) -> None:
        with self._lock:
            self.used -= 1


def finish(ctx: ApiContext, ex: Exchange, seconds: float) -> None:
    """Record a finished call: metrics, and one JSON line on ``portal.access``."""
    ctx.metrics.observe_grpc(method=ex.method, code=ex.code.name, seconds=seconds, model=ex.model, version=ex.version)
    if access_logger.isEnabledFor(logging.INFO):
        access_logger.info(_access_line(ex, seconds))


def _access_line(ex: Exchange, seconds: float) -> str:
    """The access log's JSON line, as ``json.dumps`` of the REST door's keys would write it, in a third of the time."""
    text = _json_text
    return (
        f'{{"ts": {round(time.time(), 3)!r}, "request_id": {text(ex.request_id)}, '
        f'"client": {text(ex.peer[:_MAX_LOGGED])}, "protocol": "grpc", "method": {text(ex.method)}, '
        f'"path": {text(f"/inference.GRPCInferenceService/{ex.method}")}, "route": {text(ex.method)}, '
        f'"status": {text(ex.code.name)}, "ms": {round(seconds * 1000, 3)!r}, "bytes_in": {int(ex.bytes_in)}, '
        f'"bytes_out": {int(ex.bytes_out)}, "user": {text(ex.user)}, "model": {text(ex.model)}, '
        f'"version": {text(ex.version)}}}'
    )


def _json_text(value: str | None) -> str:
    return "null" if value is None else encode_basestring_ascii(value)


def log_internal(ex: Exchange, exc: BaseException | None, message: str = "") -> str:
    """Log a server-side failure (with its traceback when ``exc`` is given); the message for the client."""
    if exc is not None and not isinstance(exc, PortalError):
        _log.error("unhandled error in gRPC %s (request id %s)", ex.method, ex.request_id, exc_info=exc)
        return f"internal error, see server log (request id {ex.request_id})"
    _log.error("%s (request id %s)", message, ex.request_id)
    return message
