"""`portal serve --ray`: the REST API on a local Ray Serve, models multiplexed across two replicas.

One real server for the module (a child process running the CLI, Ray bound to
127.0.0.1): three tiny classifiers, two model-server replicas holding at most two
models each.  Answers are compared with onnxruntime run directly on the same
models; placement is read from the ``x-portal-replica*`` headers and
``GET /ray/replicas``; the last test SIGKILLs a replica under load.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Iterator

import httpx
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from api_fixtures import Server, add_model, make_users
from onnx import TensorProto, helper, numpy_helper

from portal import Portal
from portal.api.ray_serve import LOADS_HEADER, MODELS_HEADER, REPLICA_HEADER, RaySettings

pytestmark = pytest.mark.slow

MODELS = ("alpha", "beta", "gamma")
PER_REPLICA = 2
FEATURES = ["f0", "f1", "f2", "f3"]
LABELS = ["no", "yes", "maybe"]
X = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], np.float32)


def classifier(seed: int) -> onnx.ModelProto:
    """x FP32 [N, 4] → probs FP32 [N, 3]; each seed gives different weights, so different answers."""
    rng = np.random.default_rng(seed)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "W", "B"], ["z"]), helper.make_node("Softmax", ["z"], ["probs"], axis=1)],
        f"clf{seed}", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(rng.normal(size=(4, 3)).astype(np.float32), "W"),
         numpy_helper.from_array(rng.normal(size=3).astype(np.float32), "B")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def expected(model: onnx.ModelProto) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": X})[0]


@pytest.fixture(scope="module")
def ray_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, str], dict[str, np.ndarray]]]:
    home = tmp_path_factory.mktemp("ray-home")
    portal = Portal.open(home)
    answers = {}
    for seed, name in enumerate(MODELS):
        model = classifier(seed)
        add_model(portal, name, model, task="classification", feature_names=FEATURES, class_labels=LABELS)
        answers[name] = expected(model)
    tokens = make_users(portal)
    portal.close()
    server = Server(home, env={"RAY_USAGE_STATS_ENABLED": "0", "PORTAL_RAY_OBJECT_STORE_MB": "200",
                               "PORTAL_MAX_UPLOAD_MB": "1", "PORTAL_API_MAX_BODY_MB": "1"},
                    args=("--ray", "--replicas", "2", "--models-per-replica", str(PER_REPLICA), "--num-cpus", "2"))
    try:
        yield server, {"viewer": tokens.headers("viewer"), "admin": tokens.headers("admin")}, answers
    finally:
        server.stop()


def infer(client: httpx.Client, name: str, headers: dict[str, str]) -> httpx.Response:
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": list(X.shape), "data": X.reshape(-1).tolist()}]}
    return client.post(f"/v2/models/{name}/infer", json=body, headers=headers)


def replicas(client: httpx.Client, admin: dict[str, str]) -> list[dict]:
    response = client.get("/ray/replicas", headers=admin)
    assert response.status_code == 200, response.text
    return response.json()["replicas"]


def test_answers_equal_onnxruntime_on_both_routes(ray_server):
    server, tokens, answers = ray_server
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for name in MODELS:
            response = infer(client, name, tokens["viewer"])
            assert response.status_code == 200, response.text
            doc = response.json()
            assert (doc["model_name"], doc["model_version"]) == (name, "1")
            np.testing.assert_allclose(np.reshape(doc["outputs"][0]["data"], (2, 3)), answers[name], rtol=1e-6)
            records = [dict(zip(FEATURES, map(float, row), strict=True)) for row in X]
            predicted = client.post(f"/api/models/{name}:1/predict", json=records, headers=tokens["viewer"]).json()
            assert predicted["model"] == f"{name}:1"
            probs = [[row[f"proba_{label}"] for label in LABELS] for row in predicted["predictions"]]
            np.testing.assert_allclose(probs, answers[name], rtol=1e-6)


def test_tokens_are_checked_by_the_replicas(ray_server):
    server, tokens, _ = ray_server
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert infer(client, "alpha", {}).status_code == 401
        assert infer(client, "alpha", {"Authorization": "Bearer not-a-token"}).status_code == 401
        unknown = infer(client, "no-such-model", tokens["viewer"])
        assert unknown.status_code == 404 and "no-such-model" in unknown.json()["error"]
        assert client.get("/ray/replicas", headers=tokens["viewer"]).status_code == 403


def test_a_body_over_every_limit_is_refused_before_it_is_forwarded(ray_server):
    server, tokens, _ = ray_server
    with httpx.Client(base_url=server.url, timeout=30) as client:
        response = client.post("/v2/models/alpha/infer", content=b"0" * (3 * 2**20),
                               headers={**tokens["viewer"], "content-type": "application/json"})
    assert response.status_code == 413 and "larger than the limit" in response.json()["error"]


def _round(client: httpx.Client, viewer: dict[str, str]) -> list[tuple[str, str, list[str], int]]:
    """One request per model: (model, replica, models the replica holds, its load count)."""
    seen = []
    for name in MODELS:
        response = infer(client, name, viewer)
        assert response.status_code == 200, response.text
        held = response.headers[MODELS_HEADER].split(",")
        seen.append((name, response.headers[REPLICA_HEADER], held, int(response.headers[LOADS_HEADER])))
    return seen


def test_models_stick_to_the_replicas_holding_them(ray_server):
    server, tokens, _ = ray_server
    loads: dict[str, int] = {}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        # warm up until a whole round loads nothing new (Serve learns placement asynchronously)
        deadline, quiet = time.monotonic() + 60, 0
        while quiet < 2:
            assert time.monotonic() < deadline, f"placement did not settle: {loads}"
            before = dict(loads)
            for name, replica, held, count in _round(client, tokens["viewer"]):
                assert f"{name}:1" in held and len(held) <= PER_REPLICA
                loads[replica] = count
            quiet = quiet + 1 if loads == before else 0
        served: dict[str, set[str]] = defaultdict(set)
        holding: dict[str, set[str]] = defaultdict(set)
        for _ in range(5):
            for name, replica, held, count in _round(client, tokens["viewer"]):
                assert len(held) <= PER_REPLICA
                assert count == loads[replica], f"{replica} loaded a model again: requests did not stick"
                served[name].add(replica)
                for model in held:
                    holding[model.split(":")[0]].add(replica)
    assert set(served) == set(MODELS)
    for name in MODELS:
        assert served[name] <= holding[name], f"{name} was served by a replica that did not hold it"
    assert len({r for rs in served.values() for r in rs}) == 2, "both replicas should hold models"


def test_a_killed_replica_is_replaced_without_failing_more_than_in_flight(ray_server):
    server, tokens, answers = ray_server
    workers = 2
    with httpx.Client(base_url=server.url, timeout=30) as admin_client:
        before = replicas(admin_client, tokens["admin"])
        assert [r["state"].split(".")[-1] for r in before] == ["RUNNING", "RUNNING"]
        victim = before[0]
        results: list[tuple[int, str]] = []
        stop = threading.Event()

        def load() -> None:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                i = 0
                while not stop.is_set():
                    name = MODELS[i % len(MODELS)]
                    i += 1
                    try:
                        response = infer(client, name, tokens["viewer"])
                    except httpx.TransportError:
                        results.append((0, ""))
                        continue
                    status = response.status_code
                    if status == 200 and not np.allclose(np.reshape(response.json()["outputs"][0]["data"], (2, 3)),
                                                         answers[name], rtol=1e-6):
                        status = -1  # a wrong answer counts as a failure
                    results.append((status, response.headers.get(REPLICA_HEADER, "")))

        threads = [threading.Thread(target=load) for _ in range(workers)]
        for thread in threads:
            thread.start()
        try:
            while len(results) < 20:  # load is flowing
                assert all(t.is_alive() for t in threads)
            os.kill(victim["pid"], signal.SIGKILL)
            killed_at = len(results)
            deadline = time.monotonic() + 90
            while True:
                assert time.monotonic() < deadline, f"replica not replaced: {replicas(admin_client, tokens['admin'])}"
                now = replicas(admin_client, tokens["admin"])
                ids = {r["replica"] for r in now if r["state"].endswith("RUNNING")}
                fresh = ids - {r["replica"] for r in before}
                if len(ids) == 2 and victim["replica"] not in ids and fresh and \
                        any(rep in fresh for _, rep in results[killed_at:]):
                    break
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=60)
    after_kill = results[killed_at:]
    failed = [status for status, _ in after_kill if status != 200]
    assert len(failed) <= workers, f"{len(failed)} failed requests after the kill: {failed}"
    assert {rep for _, rep in after_kill} & fresh, "the new replica never served"
    assert sum(status == 200 for status, _ in after_kill) >= len(after_kill) - workers


def test_settings_from_env_and_options():
    settings = RaySettings.from_env({"PORTAL_RAY_MIN_REPLICAS": "1", "PORTAL_RAY_MAX_REPLICAS": "4",
                                     "PORTAL_RAY_TARGET_ONGOING_REQUESTS": "3"}, port=9000)
    options = settings.server_options()
    assert options["autoscaling_config"] == {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 3.0}
    assert "num_replicas" not in options and settings.port == 9000
    fixed = RaySettings.from_env({}, replicas=3, num_cpus=2).server_options()
    assert fixed["num_replicas"] == 3 and fixed["ray_actor_options"] == {"num_cpus": 2 / 3}
    with pytest.raises(ValueError, match="PORTAL_RAY_REPLICAS must be a whole number"):
        RaySettings.from_env({"PORTAL_RAY_REPLICAS": "two"})
    with pytest.raises(ValueError, match=r"min-replicas \(5\) is more than max-replicas \(2\)"):
        RaySettings.from_env({}, min_replicas=5, max_replicas=2)
