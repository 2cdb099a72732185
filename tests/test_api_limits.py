"""Limits of the REST API under load: concurrency (503 + Retry-After) and inference timeout (504).

A server with a concurrency limit of 2 and a 1.5 s inference timeout serves a
model that needs seconds per call; none of the limits may take the server down.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from api_fixtures import add_model, iris_model, make_users, serve, slow_model
from portal import Portal

SLOW = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 512], "data": [0.01] * 512},
                   {"name": "rows", "datatype": "INT64", "shape": [1, 2], "data": [32768, 1]}]}
QUICK = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    home = tmp_path_factory.mktemp("limits-home")
    portal = Portal.open(home)
    try:
        users = make_users(portal)
        add_model(portal, "slow", slow_model())
        add_model(portal, "iris", iris_model())
        add_model(portal, "expand", slow_model(layers=16))  # cheap or many seconds: the request's values decide
    finally:
        portal.close()
    return home, users


@pytest.fixture(scope="module")
def server(tokens):
    home, _ = tokens
    yield from serve(home, env={"PORTAL_API_MAX_CONCURRENCY": "2", "PORTAL_API_INFER_TIMEOUT_S": "1.5"})


@pytest.fixture(scope="module")
def client(server, tokens):
    with httpx.Client(base_url=server.url, headers=tokens[1].headers("viewer"), timeout=60) as c:
        c.get("/v2/models/slow/ready")  # load it now, so that the timeout measures inference only
        yield c


def test_slow_inference_is_stopped_with_504_and_the_server_goes_on(client):
    start = time.monotonic()
    response = client.post("/v2/models/slow/infer", json=SLOW)
    elapsed = time.monotonic() - start
    assert response.status_code == 504, response.text
    assert "ran past the limit of 1.5 s and was stopped" in response.json()["error"]
    assert elapsed < 10
    assert client.post("/v2/models/iris/infer", json=QUICK).status_code == 200


def test_a_model_whose_work_a_request_decides_never_runs_on_the_event_loop(client):
    """Cheap for 30 requests, then one as small that runs until the timeout: the server answers meanwhile."""
    cheap = {"inputs": [SLOW["inputs"][0], {**SLOW["inputs"][1], "data": [1, 1]}]}
    costly = {"inputs": [SLOW["inputs"][0], {**SLOW["inputs"][1], "data": [131072, 1]}]}  # ~1 TFLOP
    for _ in range(30):  # each alone on an idle server, well under the inline limit: the door learns it is cheap
        assert client.post("/v2/models/expand/infer", json=cheap).status_code == 200
    results: list[int] = []
    thread = threading.Thread(target=lambda: results.append(
        client.post("/v2/models/expand/infer", json=costly).status_code))
    thread.start()
    # on the event loop the run would hold every other request until its 1.5 s timeout; in a thread it does not
    deadline, seen = time.monotonic() + 10, False
    while not seen and thread.is_alive() and time.monotonic() < deadline:
        seen = "portal_http_requests_in_flight 2.0" in client.get("/metrics").text
    running = thread.is_alive()
    thread.join()
    assert seen and running, "the server did not answer while the expensive request ran"
    assert results == [504]


def test_over_the_concurrency_limit_is_503_with_retry_after(client):
    results: list[int] = []

    def slow() -> None:
        results.append(client.post("/v2/models/slow/infer", json=SLOW).status_code)

    threads = [threading.Thread(target=slow) for _ in range(2)]
    for thread in threads:
        thread.start()
    # /metrics is outside the limit; its gauge counts the slow two plus the metrics request itself
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "portal_http_requests_in_flight 3.0" not in client.get("/metrics").text:
        assert all(t.is_alive() for t in threads), results
    refused = client.get("/v2/models/iris")
    for thread in threads:
        thread.join()
    assert refused.status_code == 503, refused.text
    assert refused.headers["retry-after"] == "1"
    assert "busy" in refused.json()["error"]
    assert sorted(results) == [504, 504]
    # health and metrics stay reachable, and the server serves again once the slow ones are gone
    assert client.get("/v2/health/ready").status_code == 200
    assert client.post("/v2/models/iris/infer", json=QUICK).status_code == 200
    metrics = client.get("/metrics").text
    assert 'portal_http_rejected_total{reason="busy"}' in metrics
    assert 'portal_http_rejected_total{reason="timeout"}' in metrics
