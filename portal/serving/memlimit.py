"""A memory ceiling for predictions: one capped onnxruntime CPU arena per process.

By default every onnxruntime session allocates from its own arena, which grows
as far as a run asks (a graph can size a tensor from its input) and keeps what
it took.  :func:`install` registers one arena with a ``max_mem`` cap in
onnxruntime's process-wide environment.  Sessions built afterwards use it
(:func:`configure`: ``session.use_env_allocators``, and no memory pattern);
each of their runs asks onnxruntime to free the arena's unused regions when it
ends (``memory.enable_memory_arena_shrinkage``) and copies its outputs out of
the arena, so what a run took is given back.  An allocation past the cap fails
inside onnxruntime before any of it is touched, and :func:`translate` turns
that failure into ``MemoryLimitError``.

The cap bounds the process, not one request: predictions running at the same
time share it, so a large prediction can make a concurrent one fail (see
SECURITY.md).  Model weights are not counted (onnxruntime keeps them outside
the arena); inputs and outputs held by Python are not either.
"""

from __future__ import annotations

import re
import threading
import weakref

import onnxruntime as ort

from ..errors import MemoryLimitError

__all__ = ["configure", "install", "session_limit", "shrink_after", "translate"]

_USE_ENV_ALLOCATORS = "session.use_env_allocators"
_SHRINK = "memory.enable_memory_arena_shrinkage"
_LIMIT_KEY = "portal.predict_memory_bytes"  # our own entry: the cap a session was built under
_ARENA_FULL = re.compile(r"Available memory of (\d+) is smaller than requested bytes of (\d+)")
_NO_BUFFER = "Failed to allocate memory for requested buffer"


class _Installed:
    """What this process registered in onnxruntime's environment.

    The one piece of module state in ``portal/``: it mirrors onnxruntime's own
    process-wide environment, which has no call to read its allocators back.
    """

    def __init__(self) -> None:
        self.limit = 0
        self.lock = threading.Lock()


_installed = _Installed()
# run options already set to shrink; asking onnxruntime instead costs ~28 µs a call (it raises when unset)
_shrinking: weakref.WeakSet[ort.RunOptions] = weakref.WeakSet()


def install(limit_bytes: int) -> None:
    """Make sessions built from now on share one arena capped at ``limit_bytes`` (0: no ceiling).

    Sessions built earlier keep the arena they were built with.  Installing the
    limit already installed does nothing; another limit registers a new arena
    (onnxruntime has no call to remove one).
    """
    if limit_bytes < 0:
        raise ValueError(f"limit_bytes must be 0 (off) or positive (not {limit_bytes})")
    with _installed.lock:
        if limit_bytes == _installed.limit:
            return
        if limit_bytes:
            info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
            # the default extend strategy (next power of two) keeps the first 1 MiB region across
            # shrinks, so small models reuse it; kSameAsRequested would free it after every run
            ort.create_and_register_allocator(info, ort.OrtArenaCfg({"max_mem": limit_bytes}))
        _installed.limit = limit_bytes


def configure(options: ort.SessionOptions) -> None:
    """Have the session built with ``options`` allocate from the capped arena, when one is installed."""
    limit = _installed.limit
    if limit:
        # onnxruntime records the memory layout of a session's first run with each input shape and
        # reserves it whole on every later run with that shape; where sizes follow input values (the
        # bomb), one large first run would hold that much of the ceiling in every later run
        options.enable_mem_pattern = False
        options.add_session_config_entry(_USE_ENV_ALLOCATORS, "1")
        options.add_session_config_entry(_LIMIT_KEY, str(limit))


def session_limit(session: ort.InferenceSession) -> int:
    """The ceiling ``session`` was built under, in bytes (0: none)."""
    try:
        return int(session.get_session_options().get_session_config_entry(_LIMIT_KEY))
    except (AttributeError, RuntimeError):  # a session built without one (or not by onnxruntime)
        return 0


def shrink_after(run_options: ort.RunOptions | None) -> ort.RunOptions:
    """``run_options`` (a new one if None) set to free the arena's unused regions when the run ends."""
    if run_options is None:
        options = ort.RunOptions()
    elif run_options in _shrinking:  # a caller's options reused for every chunk: set once (again would warn)
        return run_options
    else:
        options = run_options
        _shrinking.add(options)
    options.add_run_config_entry(_SHRINK, "cpu:0")
    return options


def translate(exc: BaseException, limit_bytes: int) -> MemoryLimitError | None:
    """The ``MemoryLimitError`` for onnxruntime's error ``exc`` if the run hit the ceiling, else None."""
    message = str(exc)
    found = _ARENA_FULL.search(message)
    if found is not None:
        return MemoryLimitError.for_limit(limit_bytes, free_bytes=int(found[1]), asked_bytes=int(found[2]))
    if _NO_BUFFER in message:
        return MemoryLimitError.for_limit(limit_bytes)
    return None
