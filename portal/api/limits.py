"""The per-request inference timeout: one watchdog thread that stops overdue runs.

Each run gets its own ``onnxruntime.RunOptions``; when its deadline passes, the
watchdog sets ``terminate = True`` and onnxruntime abandons the run at its next
node with "Exiting due to terminate flag", which the API answers with 504.
One thread serves every request: no timer thread is started per request.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import onnxruntime as ort

__all__ = ["Deadline", "Watchdog"]


@dataclass
class Deadline:
    """The run options of one guarded run, and whether it was stopped (by the watchdog, or its door)."""

    at: float
    run_options: ort.RunOptions = field(default_factory=ort.RunOptions)
    fired: bool = False

    def stop(self) -> None:
        """Stop the run at onnxruntime's next node (harmless once it is over)."""
        self.fired = True
        self.run_options.terminate = True


class Watchdog:
    """Terminates runs that pass their deadline; all deadlines share one timeout.

    Because every deadline is ``now + timeout``, insertion order is deadline
    order, so an ordered dict is the whole schedule: O(1) to add and to remove;
    and a deadline added while the thread sleeps (at most ``timeout``) is never
    earlier than its wake-up, so adding one never has to wake it.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._pending: OrderedDict[int, Deadline] = OrderedDict()
        self._ids = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def guard(self) -> _Guarded:
        """``with watchdog.guard() as deadline``: a deadline ``timeout`` seconds from now, cancelled when the block exits."""
        return _Guarded(self)

    def _add(self, deadline: Deadline) -> int:
        key = next(self._ids)
        with self._cond:
            if self._thread is None:
                self._start_locked()
            self._pending[key] = deadline
        return key

    def _remove(self, key: int) -> None:
        with self._cond:
            self._pending.pop(key, None)

    def _start_locked(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="portal-watchdog", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        with self._cond:
            while not self._closed:
                if not self._pending:
                    self._cond.wait(self.timeout)
                    continue
                key, first = next(iter(self._pending.items()))
                wait = first.at - time.monotonic()
                if wait > 0:
                    self._cond.wait(min(wait, self.timeout))
                    continue
                first.stop()
                del self._pending[key]

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()


class _Guarded:
    """One guarded block (a class, not a generator: entered on every inference call)."""

    __slots__ = ("deadline", "key", "watchdog")

    def __init__(self, watchdog: Watchdog) -> None:
        self.watchdog = watchdog
        self.deadline = Deadline(at=time.monotonic() + watchdog.timeout)
        self.key = -1

    def __enter__(self) -> Deadline:
        self.key = self.watchdog._add(self.deadline)
        return self.deadline

    def __exit__(self, *exc: object) -> None:
        self.watchdog._remove(self.key)
