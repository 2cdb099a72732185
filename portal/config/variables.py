"""Every ``PORTAL_*`` variable the settings objects read: its reader, its default and what it does.

Three settings objects read them, each once at the edge: :class:`portal.config.Settings`
(the store, ingest, predictions, accounts, the prediction log),
:class:`portal.api.settings.ApiSettings` (``PORTAL_API_*``, the REST and gRPC
doors) and :class:`portal.api.ray_serve.RaySettings` (``PORTAL_RAY_*``).  Defaults
are in the variable's own unit (MB, minutes, ms); the settings convert them.

Read where they are used instead: ``PORTAL_TOKEN`` (the CLI's ``--token``),
``PORTAL_NEW_ENCRYPTION_KEY`` (``portal rekey``) and ``PORTAL_SANDBOX_LANDLOCK``
(ingest confinement, read in the sandboxed child).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .readers import count, integer, names, non_negative, port, positive, switch, text

__all__ = ["VARIABLES", "Variable", "read"]


@dataclass(frozen=True)
class Variable:
    """One environment variable: ``parse(name, raw)`` reads a set value, ``default`` stands for an unset one."""

    name: str
    parse: Callable[[str, str], Any]
    default: Any
    doc: str


_ALL = [
    # -- the store, ingest and predictions (Settings) --------------------------------------
    Variable("PORTAL_HOME", text, "model_cache", "the store: portal.db, blobs/, tmp/"),
    Variable("PORTAL_DB_URL", text, None, "SQLAlchemy URL of the registry database (unset: SQLite in PORTAL_HOME)"),
    Variable("PORTAL_BLOB_URL", text, None, "fsspec URL to keep blobs on instead of PORTAL_HOME/blobs"),
    Variable("PORTAL_MAX_UPLOAD_MB", integer, 2048, "upload size limit, enforced while streaming"),
    Variable("PORTAL_CACHE_MB", integer, 1024, "size bound of the shared onnxruntime session cache"),
    Variable("PORTAL_CACHE_COUNT", integer, 32, "count bound of the shared onnxruntime session cache"),
    Variable("PORTAL_PREDICT_MEMORY_MB", integer, 2048,
             "ceiling on onnxruntime's working memory for one process's predictions; 0: none"),
    Variable("PORTAL_SANDBOX_MEMORY_MB", integer, 8192, "memory limit of the ingest sandbox"),
    Variable("PORTAL_SANDBOX_CPU_S", integer, 300, "CPU-time limit of the ingest sandbox"),
    Variable("PORTAL_SANDBOX_TIMEOUT_S", integer, 600, "wall-clock limit of the ingest sandbox"),
    Variable("PORTAL_MAX_IMAGE_PIXELS", integer, 40_000_000, "images above this are refused before decoding"),
    Variable("PORTAL_CHUNK_ROWS", integer, 65_536, "rows per onnxruntime call for large inputs"),
    Variable("PORTAL_MAX_ZIP_RATIO", integer, 200, "largest uncompressed / compressed ratio of an uploaded archive"),
    Variable("PORTAL_ENCRYPTION_KEY", text, None, "encrypt blobs at rest (AES-GCM) with this key (`portal keygen`)"),
    # -- accounts and the prediction log (Settings) ----------------------------------------
    Variable("PORTAL_AUTH", switch, True, "off: single-user mode without sign-in (a laptop only)"),
    Variable("PORTAL_SESSION_IDLE_MIN", integer, 30, "a browser session ends after this many idle minutes"),
    Variable("PORTAL_SESSION_MAX_HOURS", integer, 12, "a browser session ends this many hours after sign-in"),
    Variable("PORTAL_MONITOR", switch, True, "the prediction log and the Monitor page"),
    Variable("PORTAL_LOG_RETENTION_DAYS", integer, 30, "prediction log rows older than this are pruned"),
    Variable("PORTAL_LOG_SAMPLE_ROWS", integer, 16, "input rows kept per sampled request (0: keep no inputs)"),
    Variable("PORTAL_LOG_SAMPLE_INTERVAL_MS", integer, 100, "how often one version's inputs are sampled"),
    # -- the REST and gRPC doors (ApiSettings) ----------------------------------------------
    Variable("PORTAL_API_MAX_BODY_MB", positive, 64, "largest request body but an upload"),
    Variable("PORTAL_API_MAX_BATCH_ROWS", positive, 65_536, "most rows of one inference request"),
    Variable("PORTAL_API_MAX_CONCURRENCY", positive, 64, "requests in flight; past it 503 with Retry-After"),
    Variable("PORTAL_API_INFER_TIMEOUT_S", positive, 30.0, "an inference running longer is stopped (504)"),
    Variable("PORTAL_API_BODY_TIMEOUT_S", positive, 30.0, "longest wait for the next piece of a request body (408)"),
    Variable("PORTAL_API_INTRA_OP_THREADS", non_negative, 1, "onnxruntime threads per run; 0: one per core"),
    Variable("PORTAL_API_INFER_THREADS", positive, 2 * (os.cpu_count() or 1),
             "worker threads running predictions (default: twice the cores)"),
    Variable("PORTAL_API_INLINE_MS", non_negative, 1.0,
             "requests of models cheaper than this run on the event loop; 0: never"),
    Variable("PORTAL_API_BATCHING", names, frozenset(), "comma-separated models to batch adaptively"),
    Variable("PORTAL_API_BATCH_MAX_ROWS", positive, 64, "most rows of one adaptive batch"),
    Variable("PORTAL_API_BATCH_WAIT_MS", non_negative, 0.0, "longest wait for more requests to fill a batch"),
    Variable("PORTAL_API_GRPC_PORT", port, 0, "port of the gRPC door; 0: none (`portal serve` sets --grpc-port)"),
    Variable("PORTAL_API_GRPC_HOST", text, "127.0.0.1", "address of the gRPC door"),
    Variable("PORTAL_API_GRPC_REUSE_PORT", switch, False, "let worker processes share the gRPC port (SO_REUSEPORT)"),
    # -- the REST API on Ray Serve (RaySettings) ----------------------------------------------
    Variable("PORTAL_RAY_REPLICAS", count, 1, "model-server replicas (a fixed count)"),
    Variable("PORTAL_RAY_MIN_REPLICAS", count, None, "autoscale, at least this many replicas"),
    Variable("PORTAL_RAY_MAX_REPLICAS", count, None, "autoscale, at most this many replicas"),
    Variable("PORTAL_RAY_TARGET_ONGOING_REQUESTS", positive, None, "autoscale to keep this many requests per replica"),
    Variable("PORTAL_RAY_MODELS_PER_REPLICA", count, 4, "models each replica keeps loaded"),
    Variable("PORTAL_RAY_MAX_ONGOING_REQUESTS", count, 32, "requests one replica takes at once"),
    Variable("PORTAL_RAY_INGRESS_REPLICAS", count, 1, "replicas of the ingress"),
    Variable("PORTAL_RAY_ADDRESS", text, "local", "the Ray cluster to join (`auto`: the running one)"),
    Variable("PORTAL_RAY_NUM_CPUS", count, None, "CPUs of the local Ray (default: all)"),
    Variable("PORTAL_RAY_OBJECT_STORE_MB", count, 200, "object store of the local Ray"),
]

VARIABLES: dict[str, Variable] = {v.name: v for v in _ALL}


def read(env: Mapping[str, str], name: str) -> Any:
    """The value of variable ``name`` in ``env``: its default when unset or blank.

    Raises:
        ValueError: the value is not what the variable takes (one line, naming it).
    """
    variable = VARIABLES[name]
    raw = env.get(name) or ""
    return variable.parse(name, raw) if raw.strip() else variable.default
