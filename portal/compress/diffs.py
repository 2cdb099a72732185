"""The graph diff of a stored variant: from its metadata, or computed in the sandboxed child on demand.

    graph_diff(services, "mlp:3")     → GraphDiff of mlp:3 against its parent mlp:1

A variant built since graph diffs exist carries its diff in
``version.meta["variant"]["diff"]`` (the child that built it computed it). An
older one gets it from a ``diff`` job of :mod:`portal.compress._worker`, which
reads only the two model files; the answer is kept in-process by the two files'
hashes. Access is that of reading both versions.
"""

from __future__ import annotations

import shutil
import threading
from typing import Any

from ..errors import InvalidInputError, NotFoundError
from ..ingest.sandbox import run_worker
from ..services import ModelServices
from .graphdiff import GraphDiff

__all__ = ["graph_diff"]

_WORKER = "portal.compress._worker"
_CACHE: dict[tuple[str, str], GraphDiff] = {}  # (parent sha, variant sha) → diff: both blobs are immutable
_LOCK = threading.Lock()
_CACHE_SIZE = 64


def graph_diff(services: ModelServices, ref: str, *, progress: Any = None) -> GraphDiff:
    """What the method of the variant ``ref`` changed in its parent's graph.

    Raises:
        NotFoundError / PermissionDeniedError: the variant (or its parent) is not one this user may read.
        InvalidInputError: ``ref`` is not a variant, or its parent was deleted.
        InvalidModelError: a model file cannot be read as an ONNX graph.
        CorruptBlobError: a model file changed since it was stored.
    """
    version = services.get(ref)
    if not version.parent:
        raise InvalidInputError(f"{version.ref} is not a variant: it has no parent to compare its graph with; "
                                "pick a version made by a compression method")
    try:
        parent = services.get(version.parent)
    except NotFoundError:
        raise InvalidInputError(f"the parent {version.parent} of {version.ref} was deleted, so there is no graph to "
                                "compare it with") from None
    stored = (version.meta.get("variant") or {}).get("diff")
    if stored:
        return GraphDiff.from_json(stored)
    key = (parent.blob_sha, version.blob_sha)
    with _LOCK:
        cached = _CACHE.get(key)
    if cached is not None:
        return cached
    diff = _compute(services, parent.ref, version.ref, version.method, dict(version.method_params),
                    (version.meta.get("variant") or {}).get("stats") or {}, progress)
    with _LOCK:
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = diff
    return diff


def _compute(services: ModelServices, parent_ref: str, ref: str, method: str | None, params: dict[str, Any],
             stats: dict[str, Any], progress: Any) -> GraphDiff:
    parent_path = str(services.model_path(parent_ref).resolve())  # verified: a changed file is refused here
    variant_path = str(services.model_path(ref).resolve())
    scratch = services.store.make_staging_dir("diff").resolve()
    try:
        job = {"kind": "diff", "parent": parent_path, "variant": variant_path, "method": method,
               "params": params, "stats": stats}
        result = run_worker(job, scratch=scratch, settings=services.settings, progress=progress, worker=_WORKER,
                            activity=f"comparing the graph of {ref} with {parent_ref}",
                            reads=[parent_path, variant_path])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return GraphDiff.from_json(result["diff"])
