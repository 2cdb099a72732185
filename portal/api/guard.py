"""The outermost ASGI layer: request ids, authentication, limits, metrics, access log, last-resort errors.

Per request, in order: a request id (the client's ``X-Request-ID`` when it is
sane, else a new one); the size of the headers (431); the bearer token (401;
on ``/api/...``, ``/v2/models/...`` and ``/metrics``, the routes that need one); the body
limit, answered from ``Content-Length`` (413); the concurrency limit (503 +
``Retry-After``; health and ``/metrics`` are outside it); then the app.  All of
these are answered from the headers alone, before a byte of the body is read,
so a client without a valid token never holds a slot.  While the app reads the
body, the limit is enforced again (a chunked body is counted) and each piece
must arrive within the body timeout (408), so a stalled client gives its slot
back.  Whatever happens, one JSON access-log line and the metrics are written,
and an exception no handler took becomes ``{"error": "internal error, see server log (request id ...)"}``
with a 500; the traceback goes to the server log only.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import PortalError
from .metrics import ApiMetrics

__all__ = ["BodyTimeoutError", "BodyTooLargeError", "Guard", "access_logger"]

access_logger = logging.getLogger("portal.access")
_log = logging.getLogger("portal.api")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_UNLIMITED = ("/v2/health/", "/metrics")
# the paths of every route that needs a token, checked here before the request takes a slot; the
# others (health, /v2, the docs, unknown paths) never read a body, so they are answered at once
_PROTECTED_PREFIXES = ("/api/", "/v2/models/")
_PROTECTED = frozenset({"/metrics"})
_DIGITS = re.compile(r"[0-9]+")  # not str.isdigit(): it accepts "²", which int() refuses
_CLOSE = (b"connection", b"close")
_MAX_LOGGED_PATH = 300
_IDLE_GAP_SECONDS = 0.0002
# uvicorn's httptools parser has no header limit of its own (h11's is 16 KiB); browsers
# and proxies stay far below this
MAX_HEADER_BYTES = 64 * 1024


class BodyTooLargeError(HTTPException):
    """The request body is over the limit (raised while the body is read)."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=_too_large(limit))


class BodyTimeoutError(HTTPException):
    """The next piece of the request body did not arrive in time (raised while the body is read)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            status_code=408,
            detail=f"the request body stopped arriving: nothing came for {seconds:g} s; send the whole body "
                   "without pausing (PORTAL_API_BODY_TIMEOUT_S sets the limit)",
        )


def _too_large(limit: int) -> str:
    return (
        f"request body is larger than the limit of {limit:,} bytes; send less data per request "
        "(PORTAL_API_MAX_BODY_MB, or PORTAL_MAX_UPLOAD_MB for uploads, raise the limits)"
    )


@dataclass
class _Exchange:
    """What the guard learns about one request while it is served."""

    request_id: str
    status: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    started: bool = False
    close: bool = False  # end the connection after the response (the body was not read to its end)


def _protected(path: str) -> bool:
    return path in _PROTECTED or path.startswith(_PROTECTED_PREFIXES)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


async def _send_json(send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]]) -> None:
    payload = json.dumps(body).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()), *headers],
    })
    await send({"type": "http.response.body", "body": payload})


class Guard:
    """Request id, authentication, concurrency and body limits, metrics, access log and the 500 of last resort.

    Args:
        authenticate: the user of an ``Authorization`` header (None: no header);
            raises a ``PortalError`` (401) for a missing or invalid token.
        body_timeout: seconds to wait for each piece of a request body.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: ApiMetrics,
        counter: Any,
        authenticate: Callable[[str | None], Awaitable[Any]],
        max_concurrency: int,
        retry_after: int,
        max_body_bytes: int,
        max_upload_bytes: int,
        body_timeout: float,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.authenticate = authenticate
        self.max_concurrency = max_concurrency
        self.retry_after = retry_after
        self.max_body_bytes = max_body_bytes
        self.max_upload_bytes = max_upload_bytes
        self.body_timeout = body_timeout
        self.counter = counter  # its ``in_flight`` is the requests inside the limit, now

    def _limit_for(self, scope: Scope) -> int:
        if scope["method"] == "POST" and scope["path"] == "/api/models":
            return self.max_upload_bytes + 1024 * 1024  # multipart framing and form fields
        return self.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        given = _header(scope, b"x-request-id")
        ex = _Exchange(given if given and _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex)
        state = scope.setdefault("state", {})
        state["request_id"] = ex.request_id
        try:
            if await self._admit(scope, send, ex):
                await self._serve(scope, receive, send, ex, counted=not scope["path"].startswith(_UNLIMITED))
        finally:
            self._finish(scope, ex, time.perf_counter() - start)

    async def _admit(self, scope: Scope, send: Send, ex: _Exchange) -> bool:
        """Answer whatever the headers alone refuse (431, 401, 400, 413, 503); True to serve the request."""
        header_bytes = sum(len(key) + len(value) for key, value in scope.get("headers", ()))
        if header_bytes > MAX_HEADER_BYTES:
            self.metrics.rejected.labels("too_large").inc()
            await self._refuse(send, ex, 431, f"the request headers take {header_bytes:,} bytes, over the limit of "
                               f"{MAX_HEADER_BYTES:,}; send shorter headers", [_CLOSE])
            return False
        if _protected(scope["path"]) and not await self._authenticated(scope, send, ex):
            return False
        limit = self._limit_for(scope)
        length = _header(scope, b"content-length")
        if length is not None:
            length = length.strip()
            if not _DIGITS.fullmatch(length):
                await self._refuse(send, ex, 400, "invalid Content-Length header: send the body's size in bytes, "
                                   "written with the digits 0-9", [_CLOSE])
                return False
            if len(length) > 18 or int(length) > limit:
                self.metrics.rejected.labels("too_large").inc()
                await self._refuse(send, ex, 413, _too_large(limit), [_CLOSE])
                return False
        if not scope["path"].startswith(_UNLIMITED) and self.counter.in_flight >= self.max_concurrency:
            self.metrics.rejected.labels("busy").inc()
            await self._refuse(send, ex, 503, f"the server is busy ({self.max_concurrency} requests in flight); "
                               f"retry in {self.retry_after} s",
                               [(b"retry-after", str(self.retry_after).encode()), _CLOSE])
            return False
        return True

    async def _authenticated(self, scope: Scope, send: Send, ex: _Exchange) -> bool:
        """Check the bearer token before the request takes a slot; False once refused (401)."""
        try:
            user = await self.authenticate(_header(scope, b"authorization"))
        except PortalError as exc:
            self.metrics.rejected.labels("unauthenticated").inc()
            extra = [(b"www-authenticate", b"Bearer")] if exc.status == 401 else []
            await self._refuse(send, ex, exc.status, exc.message, [*extra, _CLOSE])
            return False
        except Exception:
            _log.exception("authentication failed in %s %s (request id %s)", scope["method"], scope["path"][:200],
                           ex.request_id)
            await self._refuse(send, ex, 500, f"internal error, see server log (request id {ex.request_id})", [_CLOSE])
            return False
        state = scope["state"]
        state["user"] = user.name
        state["portal_user"] = user
        return True

    async def _serve(self, scope: Scope, receive: Receive, send: Send, ex: _Exchange, *, counted: bool) -> None:
        limit = self._limit_for(scope)
        body_done = False

        async def counting_receive() -> Message:
            nonlocal body_done
            if body_done:  # after the body only a disconnect comes, whenever the client leaves
                return await receive()
            try:
                with anyio.fail_after(self.body_timeout):
                    message = await receive()
            except TimeoutError:
                self.metrics.rejected.labels("slow_body").inc()
                ex.close = True
                raise BodyTimeoutError(self.body_timeout) from None
            if message["type"] != "http.request":
                body_done = True
                return message
            body_done = not message.get("more_body", False)
            ex.bytes_in += len(message.get("body", b""))
            if ex.bytes_in > limit:
                self.metrics.rejected.labels("too_large").inc()
                ex.close = True
                raise BodyTooLargeError(limit)
            return message

        async def watching_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                ex.started = True
                ex.status = message["status"]
                extra = [(b"x-request-id", ex.request_id.encode()), *([_CLOSE] if ex.close else [])]
                message["headers"] = [*message.get("headers", ()), *extra]
            elif message["type"] == "http.response.body":
                ex.bytes_out += len(message.get("body", b""))
            await send(message)

        if counted:
            # "idle": nothing in flight, and nothing finished in the last moment either. Under
            # load the next request is read the instant the last one ends, so it is not idle.
            now = time.perf_counter()
            scope["state"]["arrived_idle"] = (
                self.counter.in_flight == 0 and now - self.counter.idle_since > _IDLE_GAP_SECONDS
            )
            self.counter.in_flight += 1
        self.metrics.in_flight.inc()
        try:
            await self.app(scope, counting_receive, watching_send)
        except (BodyTooLargeError, BodyTimeoutError) as exc:
            if not ex.started:
                await self._refuse(send, ex, exc.status_code, exc.detail, [_CLOSE])
        except Exception:
            _log.exception("unhandled error in %s %s (request id %s)", scope["method"], scope["path"][:200], ex.request_id)
            if not ex.started:
                await self._refuse(send, ex, 500, f"internal error, see server log (request id {ex.request_id})", [])
        finally:
            if counted:
                self.counter.in_flight -= 1
                if self.counter.in_flight == 0:
                    self.counter.idle_since = time.perf_counter()
            self.metrics.in_flight.dec()

    async def _refuse(self, send: Send, ex: _Exchange, status: int, message: str, headers: list[tuple[bytes, bytes]]) -> None:
        ex.started = True
        ex.status = status
        await _send_json(send, status, {"error": message}, [*headers, (b"x-request-id", ex.request_id.encode())])

    def _finish(self, scope: Scope, ex: _Exchange, seconds: float) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or "(unmatched)"
        state = scope.get("state", {})
        model = state.get("model")
        version = state.get("model_version")
        status = ex.status or 500
        self.metrics.observe(method=scope["method"], route=template, status=status, seconds=seconds,
                             model=model, version=version)
        if access_logger.isEnabledFor(logging.INFO):
            client = scope.get("client") or ("", 0)
            access_logger.info(json.dumps({
                "ts": round(time.time(), 3), "request_id": ex.request_id, "client": client[0],
                "method": scope["method"], "path": scope["path"][:_MAX_LOGGED_PATH], "route": template,
                "status": status, "ms": round(seconds * 1000, 3), "bytes_in": ex.bytes_in,
                "bytes_out": ex.bytes_out, "user": state.get("user"), "model": model, "version": version,
            }, ensure_ascii=True))
