"""SessionCache: sharing, LRU bounds, thread safety, eviction while running."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from tiny import softmax_classifier

from portal.ingest.modelinfo import describe_model
from portal.serving.runtime import SessionCache


def _blob(seed):
    model = softmax_classifier(seed=seed)
    data = model.SerializeToString()
    return f"{seed:064x}", data, describe_model(model)["signature"]


def test_one_session_per_blob_and_lru_by_count():
    cache = SessionCache(max_bytes=10**9, max_count=2)
    blobs = [_blob(i) for i in range(3)]
    for sha, data, sig in blobs:
        cache.get(sha, lambda d=data: d, size_bytes=len(data), signature=sig)
    assert [k for k, _ in cache.loaded()] == [blobs[1][0], blobs[2][0]]
    assert cache.stats().evictions == 1


def test_lru_by_bytes_keeps_most_recent():
    blobs = [_blob(i) for i in range(3)]
    size = len(blobs[0][1])
    cache = SessionCache(max_bytes=2 * size + 1, max_count=10)
    for sha, data, sig in blobs[:2]:
        cache.get(sha, lambda d=data: d, size_bytes=size, signature=sig)
    cache.get(blobs[0][0], lambda: blobs[0][1], size_bytes=size)  # touch 0
    cache.get(blobs[2][0], lambda: blobs[2][1], size_bytes=size)
    assert {k for k, _ in cache.loaded()} == {blobs[0][0], blobs[2][0]}


def test_concurrent_cold_gets_load_once():
    sha, data, sig = _blob(7)
    cache = SessionCache(max_bytes=10**9, max_count=4)
    calls = []
    gate = threading.Barrier(8)

    def loader():
        calls.append(1)
        return data

    def get(_):
        gate.wait(timeout=10)
        return cache.get(sha, loader, size_bytes=len(data), signature=sig)

    with ThreadPoolExecutor(8) as pool:
        sessions = list(pool.map(get, range(8)))
    assert len(calls) == 1 and len({id(s) for s in sessions}) == 1
    assert cache.stats().loads == 1


def test_evicted_session_keeps_working_for_its_holder():
    sha, data, sig = _blob(1)
    cache = SessionCache(max_bytes=10**9, max_count=1)
    held = cache.get(sha, lambda: data, size_bytes=len(data), signature=sig)
    other_sha, other, other_sig = _blob(2)
    cache.get(other_sha, lambda: other, size_bytes=len(other), signature=other_sig)
    assert sha not in [k for k, _ in cache.loaded()]
    out = held.run({"x": np.ones((2, 4), np.float32)})
    assert out[0].shape == (2, 3)


def test_discard_drops_sessions_of_a_blob():
    sha, data, sig = _blob(3)
    cache = SessionCache(max_bytes=10**9, max_count=4)
    cache.get(sha, lambda: data, size_bytes=len(data), signature=sig)
    assert cache.discard(sha) == 1 and cache.loaded() == []
