"""What every route needs: the portal, users, limits and metrics, behind a few verbs.

``ApiContext`` lives on ``app.state.ctx``.  Its methods block (database,
onnxruntime), so routes call them from worker threads (``await ctx.run(...)``),
never on the event loop.  They take the HTTP ``Request``, or a ``Call`` for a
request that came through another door (gRPC): both carry the per-request state
(user, scoped portal, model labels) in ``.scope["state"]``.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from starlette.requests import Request

from ..accounts.auth import Auth, User, require
from ..core import Portal
from ..errors import AuthenticationError, InferenceTimeoutError, InvalidNameError, PayloadTooLargeError
from ..serving.predict import Prediction
from ..serving.runtime import LoadedSession, SessionConfig
from ..storage.refs import ModelRef, check_name, is_version_number
from ..storage.registry import ModelVersion
from .batching import Batcher, batchable
from .inline import size_bounded
from .limits import Deadline, Watchdog
from .metrics import ApiMetrics
from .settings import ApiSettings
from .tensors import InferRequest

__all__ = ["ApiContext", "Call", "Offload", "context"]

_MAX_COSTS = 4096
T = TypeVar("T")


class Call:
    """A request that did not come over HTTP (gRPC): the state and headers the verbs below read.

    Args:
        user: the caller, already authenticated by the door.
        source: the prediction log's ``source`` for the call's predictions.
    """

    def __init__(self, user: User, *, source: str) -> None:
        self.scope: dict[str, Any] = {"state": {"user": user.name, "portal_user": user, "source": source}}
        self.headers: dict[str, str] = {}

    @property
    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = self.scope["state"]
        return state


AnyRequest = Request | Call


class Offload(Exception):  # noqa: N818 - a signal, not an error
    """Raised by a request started on the event loop that turns out to need a thread."""


def _terminated(exc: BaseException) -> bool:
    return "terminate flag" in str(exc)


class ApiContext:
    """The portal plus the API's own state: auth, limits, metrics, batchers."""

    def __init__(self, portal: Portal, settings: ApiSettings) -> None:
        self.portal = portal
        self.settings = settings
        self.auth = Auth(portal.registry)
        self.metrics = ApiMetrics(portal.cache)
        self.watchdog = Watchdog(settings.infer_timeout_seconds)
        self.session_config = SessionConfig(intra_op_threads=settings.intra_op_threads)
        self._batchers: dict[str, Batcher] = {}
        self._batchers_lock = threading.Lock()
        self._limiter: anyio.CapacityLimiter | None = None
        self._costs: dict[tuple[str, str | None, int], float] = {}
        self._bounded: dict[str, bool] = {}  # by blob sha: the graph's work is bounded by its input's size
        self._metric_children: dict[tuple[str, int], tuple[Any, Any]] = {}
        self._local_db = portal.registry.engine.dialect.name == "sqlite"
        self.in_flight = 0  # requests being served, kept by the Guard on the event loop
        self.idle_since = 0.0  # when in_flight last dropped to 0 (perf_counter), kept by the Guard

    def close(self) -> None:
        self.watchdog.close()

    def inline(self, key: tuple[str, str | None], body_bytes: int, *, arrived_idle: bool) -> bool:
        """Whether an infer request for ``key`` (name, version segment) may run on the event loop.

        Only when it reached an idle server (see ``Guard``; under load a thread lets
        onnxruntime run on one core while the event loop reads the next request on
        another) and is still alone, and is known to be cheap: the recent CPU cost
        of requests of its size (an average of the thread CPU time of earlier
        requests whose body was within a factor of 2 of this one's, so queueing
        and preemption do not count, and a bigger request is measured in a thread
        first) is under ``inline_seconds``, the body is small, the user database is
        a local SQLite file, and the model is not batched (batching needs requests
        to wait for each other in threads).  The route also needs
        :meth:`inline_safe` once the version is resolved.
        """
        return arrived_idle and self.in_flight <= 1 and self.cheap(key, body_bytes)

    def cheap(self, key: tuple[str, str | None], body_bytes: int) -> bool:
        """Whether requests for ``key`` of this size are known to be cheap (see :meth:`inline`), busy or not."""
        return (
            self._local_db
            and body_bytes <= self.settings.inline_body_bytes
            and self._costs.get((*key, body_bytes.bit_length()), 1.0) < self.settings.inline_seconds
            and key[0] not in self.settings.batching
        )

    def record_cost(self, key: tuple[str, str | None], body_bytes: int, seconds: float) -> None:
        """Fold the CPU seconds of one served request of ``body_bytes`` into ``key``'s running average for its size."""
        bucket = (*key, body_bytes.bit_length())
        old = self._costs.get(bucket)
        if old is None and len(self._costs) >= _MAX_COSTS:
            self._costs.clear()  # names and versions are the callers' to choose: keep the table bounded
        self._costs[bucket] = seconds if old is None else 0.8 * old + 0.2 * seconds

    def inline_safe(self, version: ModelVersion) -> bool:
        """Whether ``version`` may run on the event loop: loaded already, and its work bounded by its input's size.

        Loading takes long; and a graph whose work a request's values decide
        (``portal.api.inline``) may be cheap once and run for the whole timeout
        the next time.
        """
        bounded = self._bounded.get(version.blob_sha)
        if bounded is None:
            bounded = self._bounded[version.blob_sha] = size_bounded(version.info)
        return bounded and self.is_loaded(version)

    def is_loaded(self, version: ModelVersion) -> bool:
        """Whether the version's session is in the cache now (so using it will not load it)."""
        return any(sha == version.blob_sha for sha, _ in self.portal.cache.loaded())

    async def run(self, func: Callable[..., T], *args: Any) -> T:
        """``func(*args)`` in a worker thread, at most ``infer_threads`` at a time."""
        if self._limiter is None:  # made on the event loop, on first use
            self._limiter = anyio.CapacityLimiter(self.settings.infer_threads)
        return await anyio.to_thread.run_sync(functools.partial(func, *args), limiter=self._limiter)

    # -- who --------------------------------------------------------------
    @staticmethod
    def bearer_token(header: str | None) -> str | None:
        """The token of an ``Authorization`` header; None without the header.

        Raises:
            AuthenticationError: a header that is not ``Bearer <token>``.
        """
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise AuthenticationError("use 'Authorization: Bearer <token>'")
        return value.strip()

    async def authenticate(self, header: str | None) -> User:
        """The user of an ``Authorization`` header: the Guard's check before a request takes a slot.

        On a local SQLite file the lookup (one indexed read; WAL, so no writer
        blocks it) runs on the event loop, as inline requests do; on a server
        database, in a worker thread.

        Raises:
            AuthenticationError: no token, a malformed header, an unknown or revoked token, a disabled user.
        """
        token = self.bearer_token(header)
        if self._local_db:
            return self.auth.authenticate(token)
        return await anyio.to_thread.run_sync(self.auth.authenticate, token)

    def user(self, request: AnyRequest) -> User:
        """The user of the request's bearer token, as the Guard found it (else checked against the database now)."""
        state = request.scope.setdefault("state", {})
        user: User | None = state.get("portal_user")
        if user is None:
            user = self.auth.authenticate(self.bearer_token(request.headers.get("authorization")))
            state["user"] = user.name
            state["portal_user"] = user
        return user

    def allow(self, request: AnyRequest, action: str, *, model_owner: str | None = None) -> User:
        """The request's user, if their role allows ``action``."""
        user = self.user(request)
        require(user, action, model_owner=model_owner)
        return user

    def portal_for(self, request: AnyRequest) -> Portal:
        """The portal acting for the request's user: the library checks roles, owners and visibility."""
        state = request.scope.setdefault("state", {})
        scoped = state.get("portal")
        if scoped is None:
            user = state.get("portal_user") or self.user(request)
            scoped = state["portal"] = self.portal.as_user(user, source=state.get("source", "api"))
        return scoped

    # -- what -------------------------------------------------------------
    def resolve(self, request: AnyRequest, ref: str | ModelRef) -> ModelVersion:
        """The version ``ref`` names; labels the request's metrics with it."""
        version = self.portal_for(request).get(ref)
        state = request.scope.setdefault("state", {})
        state["model"] = version.name
        state["model_version"] = str(version.version)
        return version

    @staticmethod
    def version_ref(name: str, version: str | None) -> str:
        """``name``, ``name:3`` or ``name@alias`` from a path's name and version segments.

        Raises:
            InvalidNameError: the segment is neither a number written with 0-9 nor shaped like an alias.
        """
        if version is None:
            return name
        if is_version_number(version):
            return f"{name}:{version}"
        if version[:1].isascii() and version[:1].isalpha():
            return f"{name}@{version}"  # ModelRef.parse checks the rest of the alias
        raise InvalidNameError(
            f"invalid version {version[:80]!r} of model {name!r}: use a version number written with the digits "
            "0-9 (.../versions/3) or an alias (.../versions/production)"
        )

    # -- predict ------------------------------------------------------------
    def infer(
        self, request: AnyRequest, name: str, version: str | None, decode: Callable[[ModelVersion], InferRequest],
        *, on_deadline: Callable[[Deadline], None] | None = None,
    ) -> tuple[ModelVersion, InferRequest, Prediction]:
        """An Open Inference Protocol infer request, whatever its wire format: the one path of HTTP and gRPC.

        Checks the role, resolves ``name`` / ``version`` (a number or an alias) as
        the caller may see them, lets ``decode`` turn the wire body into tensors
        checked against the resolved version's signature, and predicts within the
        limits, logged with the request's ``source``.  Only ``decode`` and the
        encoding of the answer differ between the doors.
        """
        self.allow(request, "infer")
        resolved = self.resolve(request, self.version_ref(check_name(name), version))
        parsed = decode(resolved)
        state = request.scope["state"]
        prediction = self.predict(resolved, parsed.arrays, rows=parsed.rows, caller=state["user"],
                                  source=state.get("source", "api"), on_deadline=on_deadline)
        return resolved, parsed, prediction

    def predict(
        self, version: ModelVersion, data: Any, *, rows: int, extra_columns: str = "error", caller: str = "",
        source: str = "api", on_deadline: Callable[[Deadline], None] | None = None,
    ) -> Prediction:
        """The portal's one predict pipeline within the batch, time and concurrency limits; logged as ``caller``'s.

        Args:
            source: the prediction log's source (``api`` for HTTP, ``grpc``).
            on_deadline: called with the run's deadline before the run starts, so a
                door can stop it early too (gRPC: when the client's deadline passes).

        Raises:
            PayloadTooLargeError: more rows than ``max_batch_rows``.
            InferenceTimeoutError: the run passed ``infer_timeout_seconds``, or ``on_deadline``'s door stopped it.
        """
        limit = self.settings.max_batch_rows
        if rows > limit:
            raise PayloadTooLargeError(f"{rows:,} rows in one request is over the limit of {limit:,}; split the batch")
        start = time.perf_counter()
        with self.watchdog.guard() as deadline:
            if on_deadline is not None:
                on_deadline(deadline)
            batcher = self._batcher(version)
            prediction = self.portal.pipeline.predict(
                version, data, caller=caller, source=source, extra_columns=extra_columns,
                run_options=deadline.run_options, config=self.session_config, rows=rows,
                runner=None if batcher is None else functools.partial(batcher.submit, deadline=deadline),
                on_error=functools.partial(self._timed_out, deadline, source),
            )
        seconds, rows = self._version_metrics(version)
        seconds.observe(time.perf_counter() - start)
        rows.inc(prediction.rows)
        return prediction

    def _version_metrics(self, version: ModelVersion) -> tuple[Any, Any]:
        """The inference-seconds and rows children of ``version``'s labels (``labels()`` costs a lock per call)."""
        key = (version.name, version.version)
        children = self._metric_children.get(key)
        if children is None:
            labels = (version.name, str(version.version))
            children = (self.metrics.inference.labels(*labels), self.metrics.rows.labels(*labels))
            if len(self._metric_children) >= 4096:
                self._metric_children.clear()
            self._metric_children[key] = children
        return children

    def score(self, version: ModelVersion, source: Path, output: Path, *, caller: str, extra_columns: str) -> None:
        """Score the CSV file ``source`` into ``output`` through the batch pipeline, within the row and time limits.

        One entry in the prediction log, as ``caller``'s through the REST door.

        Raises:
            PayloadTooLargeError: more rows than ``max_batch_rows``.
            InferenceTimeoutError: the scoring passed ``infer_timeout_seconds``.
        """
        start = time.perf_counter()
        with self.watchdog.guard() as deadline:
            result = self.portal.pipeline.score(
                version, source, output, caller=caller, source="api", config=self.session_config,
                on_error=functools.partial(self._timed_out, deadline, "api"),
                extra_columns=extra_columns, run_options=deadline.run_options,
                max_rows=self.settings.max_batch_rows, name=source.name,
            )
        labels = (version.name, str(version.version))
        self.metrics.inference.labels(*labels).observe(time.perf_counter() - start)
        self.metrics.rows.labels(*labels).inc(result.rows)

    def _timed_out(self, deadline: Deadline, source: str, exc: Exception) -> Exception:
        """``exc``, or a timeout in its place when the watchdog stopped the run (counted as the door's refusal)."""
        if not (deadline.fired or _terminated(exc)):
            return exc
        self.metrics.rejected_counter(source).labels("timeout").inc()
        return InferenceTimeoutError(
            f"inference ran past the limit of {self.settings.infer_timeout_seconds:g} s and was "
            "stopped; send fewer rows per request (PORTAL_API_INFER_TIMEOUT_S sets the limit)"
        )

    def _batcher(self, version: ModelVersion) -> Batcher | None:
        if version.name not in self.settings.batching or not batchable(version.signature):
            return None
        key = version.blob_sha
        batcher = self._batchers.get(key)
        if batcher is None:
            with self._batchers_lock:
                batcher = self._batchers.get(key)
                if batcher is None:
                    pipeline = self.portal.pipeline
                    batcher = Batcher(
                        lambda feeds, options: pipeline.run(version, feeds, config=self.session_config,
                                                            run_options=options),
                        max_rows=self.settings.batch_max_rows, max_wait=self.settings.batch_wait_seconds,
                        on_batch=self.metrics.batch_rows.labels(version.name, str(version.version)).observe,
                    )
                    self._batchers[key] = batcher
        return batcher

    def session(self, version: ModelVersion) -> LoadedSession:
        """The shared session of ``version``, with the API's session options."""
        return self.portal.session(version, config=self.session_config)


def context(request: Request) -> ApiContext:
    """The ``ApiContext`` of the app serving ``request``."""
    ctx: ApiContext = request.app.state.ctx
    return ctx
