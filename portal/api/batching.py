"""Adaptive batching: concurrent small requests to one model share one onnxruntime call.

Leader/follower, with no thread of its own: the first request to arrive runs at
once (so a lone request never waits); requests arriving while a run is in
progress queue up, and when the run ends the oldest queued request becomes the
leader and runs everything compatible that queued meanwhile (same inputs,
dtypes and trailing dimensions, at most ``max_rows`` rows), optionally after
waiting up to ``max_wait`` seconds for the batch to fill.  One run per model
is in progress at a time, which is also what keeps two cores from thrashing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InferenceTimeoutError
from ..serving.signature import Feeds
from .limits import Deadline

__all__ = ["Batcher", "batchable"]

Outputs = tuple[dict[str, np.ndarray], dict[str, list[Any]]]
RunFn = Callable[[Feeds, Any], Outputs]


def batchable(signature: dict[str, Any]) -> bool:
    """Whether every input and output has a dynamic first (batch) dimension."""
    for spec in (*signature["inputs"], *signature["outputs"]):
        if spec.get("kind") == "sequence_map":
            continue
        shape = spec.get("shape")
        if spec.get("kind") != "tensor" or not shape or isinstance(shape[0], int):
            return False
    return True


@dataclass(eq=False)
class _Job:
    feeds: Feeds
    wake: threading.Event = field(default_factory=threading.Event)
    lead: bool = False
    taken: bool = False
    result: Outputs | None = None
    error: BaseException | None = None

    def outcome(self) -> Outputs:
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result

    def fits(self, other: _Job) -> bool:
        a, b = self.feeds.arrays, other.feeds.arrays
        return a.keys() == b.keys() and all(
            a[k].dtype == b[k].dtype and a[k].shape[1:] == b[k].shape[1:] and a[k].ndim >= 1 for k in a
        )


class Batcher:
    """Gathers the queued requests of one model version into one run."""

    def __init__(self, run: RunFn, *, max_rows: int, max_wait: float, on_batch: Callable[[int], None] | None = None) -> None:
        self.run = run
        self.max_rows = max_rows
        self.max_wait = max_wait
        self.on_batch = on_batch
        self._cond = threading.Condition()
        self._queue: list[_Job] = []
        self._busy = False

    def submit(self, feeds: Feeds, deadline: Deadline) -> Outputs:
        """Run ``feeds``, possibly together with other requests; return this request's outputs."""
        job = _Job(feeds)
        with self._cond:
            self._queue.append(job)
            job.lead = not self._busy
            self._busy = True
            self._cond.notify_all()
        if not job.lead:
            self._follow(job, deadline)
            if not job.lead:
                return job.outcome()
        self._run_batch(job, deadline)
        return job.outcome()

    def _follow(self, job: _Job, deadline: Deadline) -> None:
        if job.wake.wait(max(0.0, deadline.at - time.monotonic())):
            return
        with self._cond:
            if not job.taken and not job.lead:
                self._queue.remove(job)
                deadline.fired = True
                raise InferenceTimeoutError("the request waited past the inference time limit in the batch queue")
        job.wake.wait()  # taken by a run that is bounded by its own deadline

    def _take_locked(self) -> list[_Job]:
        first = self._queue[0]
        batch, rows = [first], first.feeds.rows
        for other in self._queue[1:]:
            if rows + other.feeds.rows > self.max_rows or not first.fits(other):
                continue
            batch.append(other)
            rows += other.feeds.rows
        for job in batch:
            job.taken = True
            self._queue.remove(job)
        return batch

    def _run_batch(self, leader: _Job, deadline: Deadline) -> None:
        with self._cond:
            if self.max_wait > 0:
                end = time.monotonic() + self.max_wait
                while sum(j.feeds.rows for j in self._queue) < self.max_rows and (left := end - time.monotonic()) > 0:
                    self._cond.wait(left)
            batch = self._take_locked()
        assert batch[0] is leader
        try:
            self._execute(batch, deadline)
        finally:
            with self._cond:
                if self._queue:
                    self._queue[0].lead = True
                    self._queue[0].wake.set()
                else:
                    self._busy = False
            for job in batch[1:]:
                job.wake.set()

    def _execute(self, batch: list[_Job], deadline: Deadline) -> None:
        if self.on_batch is not None:
            self.on_batch(sum(j.feeds.rows for j in batch))
        if len(batch) == 1:
            self._settle(batch[0], lambda: self.run(batch[0].feeds, deadline.run_options))
            return
        names = list(batch[0].feeds.arrays)
        merged = Feeds({n: np.concatenate([j.feeds.arrays[n] for j in batch]) for n in names},
                       sum(j.feeds.rows for j in batch))
        try:
            outputs, keys = self.run(merged, deadline.run_options)
        except BaseException as exc:
            for job in batch:
                job.error = exc
            return
        if any(v.ndim == 0 or v.shape[0] != merged.rows for v in outputs.values()):
            for job in batch:  # an output without a batch axis cannot be split: run one by one
                self._settle(job, lambda job=job: self.run(job.feeds, deadline.run_options))
            return
        start = 0
        for job in batch:
            stop = start + job.feeds.rows
            job.result = ({n: v[start:stop] for n, v in outputs.items()}, keys)
            start = stop

    @staticmethod
    def _settle(job: _Job, call: Callable[[], Outputs]) -> None:
        try:
            job.result = call()
        except BaseException as exc:
            job.error = exc
