"""Adaptive batching and the inference watchdog, without a server."""

from __future__ import annotations

import threading
import time

import numpy as np
import onnxruntime as ort
import pytest

from api_fixtures import iris_model, slow_model
from portal.api.batching import Batcher, batchable
from portal.api.limits import Deadline, Watchdog
from portal.errors import InferenceTimeoutError
from portal.ingest.modelinfo import describe_model
from portal.serving.signature import Feeds


def _session() -> ort.InferenceSession:
    return ort.InferenceSession(iris_model().SerializeToString(), providers=["CPUExecutionProvider"])


def test_concurrent_requests_share_runs_and_get_their_own_rows():
    session = _session()
    calls: list[int] = []
    gate, started = threading.Event(), threading.Event()

    def run(feeds: Feeds, options):
        calls.append(feeds.rows)
        started.set()
        gate.wait(5)  # hold the first run so that the others queue up behind it
        return {"probs": session.run(None, feeds.arrays, options)[0]}, {}

    batcher = Batcher(run, max_rows=64, max_wait=0.0)
    rng = np.random.default_rng(0)
    inputs = [rng.random((i % 3 + 1, 4), dtype=np.float32) for i in range(9)]
    results: dict[int, np.ndarray] = {}

    def submit(i: int) -> None:
        outputs, _ = batcher.submit(Feeds({"x": inputs[i]}, len(inputs[i])), Deadline(at=time.monotonic() + 30))
        results[i] = outputs["probs"]

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(9)]
    threads[0].start()
    assert started.wait(5)
    for t in threads[1:]:
        t.start()
    with batcher._cond:  # submit() notifies on every arrival
        assert batcher._cond.wait_for(lambda: len(batcher._queue) == 8, timeout=10)
    gate.set()
    for t in threads:
        t.join(10)
    assert len(calls) == 2 and calls[1] == sum(len(x) for x in inputs[1:])  # one run for all eight that queued
    for i, x in enumerate(inputs):
        np.testing.assert_allclose(results[i], session.run(None, {"x": x})[0], rtol=1e-6)


def test_a_lone_request_runs_at_once():
    session = _session()
    batcher = Batcher(lambda f, o: ({"probs": session.run(None, f.arrays)[0]}, {}), max_rows=64, max_wait=0.0)
    start = time.perf_counter()
    batcher.submit(Feeds({"x": np.ones((1, 4), np.float32)}, 1), Deadline(at=time.monotonic() + 30))
    assert time.perf_counter() - start < 0.5


def test_a_failing_batch_fails_each_of_its_requests():
    def run(feeds, options):
        raise ValueError("boom")

    batcher = Batcher(run, max_rows=64, max_wait=0.0)
    with pytest.raises(ValueError, match="boom"):
        batcher.submit(Feeds({"x": np.ones((1, 4), np.float32)}, 1), Deadline(at=time.monotonic() + 30))
    assert batcher._busy is False  # the next request can lead


def test_a_request_queued_past_its_deadline_times_out():
    release, running = threading.Event(), threading.Event()

    def run(feeds, options):
        running.set()
        release.wait(5)
        return {"y": feeds.arrays["x"]}, {}

    batcher = Batcher(run, max_rows=64, max_wait=0.0)
    first = threading.Thread(target=batcher.submit, args=(Feeds({"x": np.ones((1, 4))}, 1), Deadline(at=time.monotonic() + 30)))
    first.start()
    assert running.wait(5)
    with pytest.raises(InferenceTimeoutError):
        batcher.submit(Feeds({"x": np.ones((1, 4))}, 1), Deadline(at=time.monotonic() + 0.05))
    release.set()
    first.join(5)
    assert batcher._queue == []


def test_only_models_with_a_dynamic_batch_axis_are_batchable():
    assert batchable(describe_model(iris_model())["signature"])
    assert not batchable(describe_model(slow_model(layers=1))["signature"])


def test_watchdog_terminates_an_overdue_run_and_leaves_others_alone():
    session = ort.InferenceSession(slow_model(layers=200).SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {"x": np.full((1, 512), 0.01, np.float32), "rows": np.array([[4096, 1]], np.int64)}
    watchdog = Watchdog(timeout=0.3)
    try:
        start = time.monotonic()
        with watchdog.guard() as deadline:
            with pytest.raises(Exception, match="terminate flag"):
                session.run(None, feeds, deadline.run_options)
        assert deadline.fired and time.monotonic() - start < 5
        with watchdog.guard() as quick:
            session.run(None, {"x": feeds["x"], "rows": np.array([[1, 1]], np.int64)}, quick.run_options)
        assert not quick.fired
    finally:
        watchdog.close()


def test_only_known_cheap_small_unbatched_requests_run_on_the_event_loop(tmp_path):
    from portal import Portal
    from portal.api.context import ApiContext
    from portal.api.settings import ApiSettings

    portal = Portal.open(tmp_path / "home")
    try:
        ctx = ApiContext(portal, ApiSettings(batching=frozenset({"batched"})))
        assert not ctx.inline(("iris", None), 100, arrived_idle=True)  # nothing known yet: a thread
        ctx.record_cost(("iris", None), 100, 0.0002)
        assert ctx.inline(("iris", None), 100, arrived_idle=True)
        assert ctx.inline(("iris", None), 120, arrived_idle=True)  # within a factor of 2: same size class
        assert not ctx.inline(("iris", None), 300, arrived_idle=True)  # bigger: measured in a thread first
        assert not ctx.inline(("iris", None), 10 * 1024 * 1024, arrived_idle=True)  # big body
        assert not ctx.inline(("iris", "2"), 100, arrived_idle=True)  # another version segment is another key
        for _ in range(10):
            ctx.record_cost(("iris", None), 100, 0.05)  # it became expensive
        assert not ctx.inline(("iris", None), 100, arrived_idle=True)
        ctx.record_cost(("batched", None), 100, 0.0001)
        assert not ctx.inline(("batched", None), 100, arrived_idle=True)
        ctx.record_cost(("cheap", None), 100, 0.0001)
        assert ctx.inline(("cheap", None), 100, arrived_idle=True)
        assert not ctx.inline(("cheap", None), 100, arrived_idle=False)  # reached a busy server
        ctx.in_flight = 3  # others are being served: a thread, so onnxruntime overlaps with them
        assert not ctx.inline(("cheap", None), 100, arrived_idle=True)
        ctx.close()
    finally:
        portal.close()


@pytest.mark.parametrize(("model", "bounded"), [
    (iris_model(), True),
    (slow_model(layers=2), False),  # Expand to a shape the request gives
])
def test_only_graphs_whose_work_their_input_size_bounds_may_run_on_the_event_loop(model, bounded):
    from portal.api.inline import size_bounded

    assert size_bounded(describe_model(model)) is bounded
    assert not size_bounded({})  # operators not known: a thread
    assert not size_bounded({"operators": {"MatMul": 2, "Loop": 1}})
    assert not size_bounded({"operators": {"MatMul": 2, "com.example.Custom": 1}})
    assert size_bounded({"operators": {"ai.onnx.ml.TreeEnsembleClassifier": 1, "ai.onnx.ml.ZipMap": 1, "Cast": 2}})
