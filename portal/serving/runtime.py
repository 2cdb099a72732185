"""The shared loader: one onnxruntime session per (blob, options) per process.

``SessionCache`` is LRU-bounded by total model bytes and by count.  Eviction only
drops the cache's reference: a run in flight holds its own reference to the
``LoadedSession`` and finishes normally.  Loads of the same key are serialized
so two threads asking for a cold model load it once.

A model file is checked against its sha256 once, when it is loaded into the
cache (never per prediction): a loader's path is hashed here, a loader's bytes
come from ``BlobStore.read_bytes``, which checks them.  A mismatch raises
``CorruptBlobError`` and nothing is cached.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from . import memlimit
from ..errors import CorruptBlobError, InvalidModelError
from ..ingest.modelinfo import dummy_feeds

__all__ = ["CacheStats", "LoadedSession", "SessionCache", "SessionConfig"]


@dataclass(frozen=True)
class SessionConfig:
    """Options that change how a session runs (part of the cache key)."""

    intra_op_threads: int = 0
    graph_optimization: str = "all"  # "disable" | "basic" | "extended" | "all"
    providers: tuple[str, ...] = ("CPUExecutionProvider",)

    def build(self) -> ort.SessionOptions:
        """The onnxruntime options; under the process's memory ceiling when one is installed (see memlimit)."""
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.intra_op_threads
        options.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[self.graph_optimization]
        memlimit.configure(options)
        return options


@dataclass
class LoadedSession:
    """An open onnxruntime session and what is known about it."""

    key: tuple[str, SessionConfig]
    session: ort.InferenceSession
    size_bytes: int
    load_seconds: float
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    last_used: float = field(default_factory=time.monotonic)

    @cached_property
    def memory_limit(self) -> int:
        """The memory ceiling the session was built under, in bytes (0: none)."""
        return memlimit.session_limit(self.session)

    def run(
        self,
        feeds: dict[str, np.ndarray],
        output_names: list[str] | None = None,
        run_options: ort.RunOptions | None = None,
    ) -> list[Any]:
        """``session.run``; under a memory ceiling, one that gives back what it took.

        Raises:
            MemoryLimitError: the run needed more than the ceiling and was stopped.
        """
        limit = self.memory_limit
        if not limit:
            return self.session.run(output_names, feeds, run_options)
        try:
            values = self.session.run(output_names, feeds, memlimit.shrink_after(run_options))
        except Exception as exc:
            error = memlimit.translate(exc, limit)
            if error is None:
                raise
            raise error from exc
        # outputs are views of arena memory: copied, a Prediction kept by a caller holds none of the
        # shared budget, and the next run's shrink can free the region they were in
        return [v.copy() if isinstance(v, np.ndarray) and v.base is not None else v for v in values]


@dataclass(frozen=True)
class CacheStats:
    """Counters of a SessionCache."""

    hits: int
    misses: int
    evictions: int
    loads: int
    load_seconds: float
    count: int
    bytes: int
    max_count: int
    max_bytes: int

    @property
    def hit_ratio(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


ModelLoader = Callable[[], bytes | Path]
"""Returns the model: a local path (checked against the cache key's sha256 here) or
bytes the loader has already checked (``BlobStore.read_bytes`` does)."""


def _check_file(path: Path, sha256: str) -> None:
    """Refuse ``path`` unless its content hashes to ``sha256``.

    onnxruntime then opens the path itself (a second, page-cache read): handed
    bytes instead, it keeps them alive as long as the session, doubling the
    memory of every cached model (see bench/blob_verify.py for both costs).  The
    file could change between the two reads only by someone who can write
    PORTAL_HOME, and they can rewrite the unauthenticated database anyway.
    """
    with open(path, "rb") as fh:
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
    if digest != sha256:
        raise CorruptBlobError.for_blob(sha256)


class SessionCache:
    """Process-wide LRU of onnxruntime sessions, bounded by bytes and count."""

    def __init__(self, *, max_bytes: int, max_count: int, warm_up: bool = True) -> None:
        self.max_bytes = max_bytes
        self.max_count = max_count
        self.warm_up = warm_up
        self._entries: OrderedDict[tuple[str, SessionConfig], LoadedSession] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[tuple[str, SessionConfig], threading.Lock] = {}
        self._hits = self._misses = self._evictions = self._loads = 0
        self._last = threading.local()
        self._load_seconds = 0.0

    def get(
        self,
        blob_sha: str,
        load: ModelLoader,
        *,
        size_bytes: int,
        signature: dict[str, Any] | None = None,
        config: SessionConfig = SessionConfig(),
        label: str | None = None,
    ) -> LoadedSession:
        """The session for ``blob_sha``, loading it with ``load()`` on a miss.

        Args:
            label: how errors name the model (``name:version``); default its blob's hash.

        Raises:
            CorruptBlobError: the model file does not hash to ``blob_sha`` (nothing is cached).
        """
        key = (blob_sha, config)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                self._hits += 1
                self._last.hit = True
                return entry
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                entry = self._entries.get(key)
                if entry is not None:  # another thread loaded it while we waited
                    self._entries.move_to_end(key)
                    self._hits += 1
                    self._last.hit = True
                    return entry
                self._misses += 1
                self._last.hit = False
            entry = self._load(key, load, size_bytes, signature, label)
            with self._lock:
                self._entries[key] = entry
                self._loads += 1
                self._load_seconds += entry.load_seconds
                self._evict_locked()
                self._key_locks.pop(key, None)
            return entry

    def _load(
        self,
        key: tuple[str, SessionConfig],
        load: ModelLoader,
        size_bytes: int,
        signature: dict[str, Any] | None,
        label: str | None = None,
    ) -> LoadedSession:
        start = time.perf_counter()
        try:
            source = load()
            if isinstance(source, Path):
                _check_file(source, key[0])
        except CorruptBlobError:
            if label is None:
                raise
            raise CorruptBlobError.for_blob(key[0], label=label) from None  # the same error, named
        config = key[1]
        try:
            session = ort.InferenceSession(
                str(source) if isinstance(source, Path) else source,
                sess_options=config.build(),
                providers=list(config.providers),
            )
            if self.warm_up and signature is not None:
                try:
                    session.run(None, dummy_feeds(signature))
                except Exception:  # noqa: BLE001 - warm-up is best effort (e.g. fixed non-zero shapes)
                    pass
        except Exception as exc:
            raise InvalidModelError(f"onnxruntime could not load model {key[0][:12]}: {exc}") from exc
        return LoadedSession(
            key=key,
            session=session,
            size_bytes=size_bytes,
            load_seconds=time.perf_counter() - start,
            input_names=tuple(i.name for i in session.get_inputs()),
            output_names=tuple(o.name for o in session.get_outputs()),
        )

    def _evict_locked(self) -> None:
        total = sum(e.size_bytes for e in self._entries.values())
        while self._entries and (len(self._entries) > self.max_count or total > self.max_bytes):
            if len(self._entries) == 1:
                break  # always keep the one just loaded, even if larger than the budget
            _, old = self._entries.popitem(last=False)
            total -= old.size_bytes
            self._evictions += 1

    def last_hit(self) -> bool | None:
        """Whether this thread's last :meth:`get` found the session loaded (None before any)."""
        return getattr(self._last, "hit", None)

    def discard(self, blob_sha: str) -> int:
        """Drop every session of ``blob_sha`` (runs in flight finish); return how many."""
        with self._lock:
            keys = [k for k in self._entries if k[0] == blob_sha]
            for k in keys:
                del self._entries[k]
            return len(keys)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def loaded(self) -> list[tuple[str, int]]:
        """(blob sha, bytes) of the loaded sessions, least recently used first."""
        with self._lock:
            return [(k[0], e.size_bytes) for k, e in self._entries.items()]

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(
                hits=self._hits, misses=self._misses, evictions=self._evictions, loads=self._loads,
                load_seconds=self._load_seconds, count=len(self._entries),
                bytes=sum(e.size_bytes for e in self._entries.values()),
                max_count=self.max_count, max_bytes=self.max_bytes,
            )
