"""Limits and switches of the REST API, built once from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

from ..config import MIB, read

__all__ = ["ApiSettings"]


@dataclass(frozen=True)
class ApiSettings:
    """Every limit of the API; sizes in bytes, times in seconds.

    The upload limit is the portal's ``Settings.max_upload_bytes``; this one
    bounds every other request body (inference JSON, CSV).  ``intra_op_threads``
    is onnxruntime's per-run thread count for the API's sessions: 1 (the default)
    lets concurrent requests use the cores instead of every run spinning a
    thread pool; 0 is onnxruntime's default (one thread per core).
    ``infer_threads`` bounds the worker threads that run predictions (twice the
    cores by default): more only fight over the GIL, while a waiting request
    costs nothing on the event loop.  An infer request whose model has cost
    less than ``inline_seconds`` of CPU per request so far, with a body under
    ``inline_body_bytes``, runs on the event loop instead: for such requests the
    hand-off to a thread and back costs more than the work (0 turns this off).
    ``body_timeout_seconds`` is the longest the server waits for the next piece
    of a request body (408 after it), so a stalled client cannot hold a
    concurrency slot.  ``grpc_port`` (0: none) serves the same models over the
    Open Inference Protocol's gRPC binding from the same process, on
    ``grpc_host``; ``portal serve`` sets both (``--grpc-port``, default 8001).
    ``grpc_reuse_port`` lets several worker processes share the gRPC port
    (``SO_REUSEPORT``); off, a port already taken is an error at startup.
    """

    max_body_bytes: int = 64 * MIB
    max_batch_rows: int = 65_536
    max_concurrency: int = 64
    infer_timeout_seconds: float = 30.0
    body_timeout_seconds: float = 30.0
    retry_after_seconds: int = 1
    intra_op_threads: int = 1
    infer_threads: int = field(default_factory=lambda: 2 * (os.cpu_count() or 1))
    inline_seconds: float = 0.001
    inline_body_bytes: int = 64 * 1024
    batching: frozenset[str] = frozenset()
    batch_max_rows: int = 64
    batch_wait_seconds: float = 0.0
    grpc_port: int = 0
    grpc_host: str = "127.0.0.1"
    grpc_reuse_port: bool = False

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: object) -> ApiSettings:
        """Read ``PORTAL_API_*`` variables (see :mod:`portal.config.variables`); keyword overrides win."""
        env = dict(os.environ if env is None else env)
        settings = cls(
            max_body_bytes=int(read(env, "PORTAL_API_MAX_BODY_MB") * MIB),
            max_batch_rows=int(read(env, "PORTAL_API_MAX_BATCH_ROWS")),
            max_concurrency=int(read(env, "PORTAL_API_MAX_CONCURRENCY")),
            infer_timeout_seconds=read(env, "PORTAL_API_INFER_TIMEOUT_S"),
            body_timeout_seconds=read(env, "PORTAL_API_BODY_TIMEOUT_S"),
            intra_op_threads=int(read(env, "PORTAL_API_INTRA_OP_THREADS")),
            infer_threads=int(read(env, "PORTAL_API_INFER_THREADS")),
            inline_seconds=read(env, "PORTAL_API_INLINE_MS") / 1000,
            batching=read(env, "PORTAL_API_BATCHING"),
            batch_max_rows=int(read(env, "PORTAL_API_BATCH_MAX_ROWS")),
            batch_wait_seconds=read(env, "PORTAL_API_BATCH_WAIT_MS") / 1000,
            grpc_port=read(env, "PORTAL_API_GRPC_PORT"),
            grpc_host=read(env, "PORTAL_API_GRPC_HOST"),
            grpc_reuse_port=read(env, "PORTAL_API_GRPC_REUSE_PORT"),
        )
        return replace(settings, **overrides) if overrides else settings  # type: ignore[arg-type]
