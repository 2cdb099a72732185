"""The Open Inference Protocol over gRPC, with the official Triton client (tritonclient.grpc), unchanged.

A real ``portal serve`` on 127.0.0.1 serves gRPC next to HTTP.  Metadata,
readiness, FP32 and BYTES inference (raw contents, as the client sends them,
and typed contents crafted with the protocol's messages), a multi-input model
with a string column, versions and aliases, tokens and private models, the
limits (message size, rows, concurrency, timeouts, a stalled message), the
metrics and the prediction log, and a pass of hostile requests, each answered
with a gRPC status and a clear message, the server still ready afterwards.

This module imports ``tritonclient.grpc`` (whose generated messages share the
``inference`` protobuf package with the server's): it never imports
``portal.api.grpc``; the server runs in its own process.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import grpc
import httpx
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from typer.testing import CliRunner

from api_fixtures import Server, Tokens, add_model, iris_model, make_users, serve, slow_model, text_model
from portal import Portal
from portal.monitor import stats as mon

tgrpc = pytest.importorskip("tritonclient.grpc")
service_pb2 = pytest.importorskip("tritonclient.grpc.service_pb2")
service_pb2_grpc = pytest.importorskip("tritonclient.grpc.service_pb2_grpc")
InferenceServerException = pytest.importorskip("tritonclient.utils").InferenceServerException

MAX_ROWS = 1000
LIMITS = {"PORTAL_API_MAX_BODY_MB": "1", "PORTAL_API_MAX_BATCH_ROWS": str(MAX_ROWS), "PORTAL_API_INFER_TIMEOUT_S": "5"}
NUMERIC = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
METHOD = "/inference.GRPCInferenceService/ModelInfer"


# -- the models ---------------------------------------------------------------------------------
def flowers_model() -> onnx.ModelProto:
    """Four FP32 columns and a BYTES ``color`` column ([N, 1] each) → label (BYTES) and class probabilities."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    import factories

    frame, target = factories.iris_frame(with_color=True)
    frame.columns = [*NUMERIC, "color"]
    labels = np.array(["setosa", "versicolor", "virginica"])[target.to_numpy()]
    pre = ColumnTransformer([("num", StandardScaler(), NUMERIC), ("cat", OneHotEncoder(handle_unknown="ignore"), ["color"])])
    model = Pipeline([("pre", pre), ("clf", LogisticRegression(max_iter=500))]).fit(frame, labels)
    types = [(c, FloatTensorType([None, 1])) for c in NUMERIC] + [("color", StringTensorType([None, 1]))]
    return convert_sklearn(model, initial_types=types, target_opset={"": 17, "ai.onnx.ml": 3})


def flowers_rows(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(n)
    feeds = {c: rng.uniform(0.5, 7.0, size=(n, 1)).astype(np.float32) for c in NUMERIC}
    feeds["color"] = np.array([["red", "green", "blue", "mauve"][i % 4] for i in range(n)], dtype=object).reshape(n, 1)
    return feeds


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Any:
    home = tmp_path_factory.mktemp("grpc-home")
    portal = Portal.open(home)
    try:
        tokens = make_users(portal)
        add_model(portal, "iris", iris_model(), owner="analyst")
        add_model(portal, "iris", iris_model(), owner="analyst")
        portal.set_alias("iris:1", "production", actor="test")
        add_model(portal, "text", text_model(), owner="analyst")
        flowers = flowers_model()
        add_model(portal, "flowers", flowers, owner="analyst")
        add_model(portal, "drafts", iris_model(), owner="analyst")
        portal.registry.update_model("drafts", actor="test", visibility="private")
        add_model(portal, "slow", slow_model(), owner="analyst")
        add_model(portal, "expand", slow_model(layers=16), owner="analyst")  # cheap, or seconds: an input decides
    finally:
        portal.close()
    for server in serve(home, env=LIMITS, grpc=True):
        yield home, tokens, server, flowers
        assert "Traceback" not in server.log()


@pytest.fixture(scope="module")
def triton(world: Any) -> Any:
    _, _, server, _ = world
    client = tgrpc.InferenceServerClient(server.grpc_target)
    yield client
    client.close()


@pytest.fixture(scope="module")
def stub(world: Any) -> Any:
    _, _, server, _ = world
    with grpc.insecure_channel(server.grpc_target) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel), channel


def _auth(tokens: Tokens, who: str) -> dict[str, str]:
    return {"authorization": f"Bearer {tokens.by_role[who]}"}


def _meta(tokens: Tokens, who: str) -> tuple[tuple[str, str], ...]:
    return tuple(_auth(tokens, who).items())


def _expected_iris(x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(iris_model().SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def _tensor(name: str, array: np.ndarray, datatype: str) -> Any:
    tensor = tgrpc.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


def _refused(call: Any, code: str, *fragments: str) -> str:
    with pytest.raises(InferenceServerException) as info:
        call()
    assert info.value.status() == f"StatusCode.{code}", info.value
    for fragment in fragments:
        assert fragment in info.value.message(), info.value.message()
    return str(info.value.message())


def _assert_ready(world: Any) -> None:
    _, _, server, _ = world
    client = tgrpc.InferenceServerClient(server.grpc_target)
    try:
        assert client.is_server_live() and client.is_server_ready()
    finally:
        client.close()
    assert httpx.get(f"{server.url}/v2/health/ready", timeout=10).status_code == 200


# -- metadata and readiness -------------------------------------------------------------------------
def test_server_liveness_readiness_and_metadata(triton):
    assert triton.is_server_live() and triton.is_server_ready()
    meta = triton.get_server_metadata(as_json=True)
    assert meta["name"] == "model-portal" and meta["version"]


def test_model_metadata_versions_aliases_and_readiness(world, triton):
    _, tokens, _, _ = world
    headers = _auth(tokens, "viewer")
    meta = triton.get_model_metadata("iris", headers=headers, as_json=True)
    assert (meta["name"], meta["platform"], meta["versions"]) == ("iris", "onnxruntime_onnx", ["2", "1"])
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": ["-1", "4"]}]
    assert meta["outputs"] == [{"name": "probs", "datatype": "FP32", "shape": ["-1", "3"]}]
    assert triton.get_model_metadata("iris", model_version="production", headers=headers).versions == ["1"]
    flowers = triton.get_model_metadata("flowers", headers=headers)
    assert [(t.name, t.datatype, list(t.shape)) for t in flowers.inputs] == [
        *[(c, "FP32", [-1, 1]) for c in NUMERIC], ("color", "BYTES", [-1, 1])]
    assert triton.is_model_ready("iris", headers=headers)
    assert triton.is_model_ready("iris", model_version="production", headers=headers)
    assert not triton.is_model_ready("nope", headers=headers)
    assert not triton.is_model_ready("iris", model_version="7", headers=headers)


# -- inference ---------------------------------------------------------------------------------------
def test_fp32_inference_equals_onnxruntime(world, triton):
    _, tokens, _, _ = world
    x = np.random.default_rng(1).random((5, 4), dtype=np.float32)
    result = triton.infer("iris", [_tensor("x", x, "FP32")], model_version="1", request_id="r1",
                          headers=_auth(tokens, "viewer"), outputs=[tgrpc.InferRequestedOutput("probs")])
    np.testing.assert_allclose(result.as_numpy("probs"), _expected_iris(x), rtol=1e-6)
    response = result.get_response()
    assert (response.model_name, response.model_version, response.id) == ("iris", "1", "r1")
    assert len(response.raw_output_contents) == 1  # raw in, raw out


@pytest.mark.parametrize("version,served", [("", "2"), ("1", "1"), ("2", "2"), ("production", "1")])
def test_versions_and_aliases_resolve_as_over_http(world, triton, version, served):
    _, tokens, _, _ = world
    result = triton.infer("iris", [_tensor("x", np.ones((1, 4), np.float32), "FP32")], model_version=version,
                          headers=_auth(tokens, "viewer"))
    assert result.get_response().model_version == served


def test_bytes_inference_with_a_string_column_among_numbers(world, triton):
    _, tokens, _, flowers = world
    feeds = flowers_rows(6)
    inputs = [_tensor(c, feeds[c], "FP32") for c in NUMERIC] + [_tensor("color", feeds["color"], "BYTES")]
    result = triton.infer("flowers", inputs, headers=_auth(tokens, "viewer"))
    session = ort.InferenceSession(flowers.SerializeToString(), providers=["CPUExecutionProvider"])
    label, probabilities = session.run(None, feeds)
    assert [v.decode() for v in result.as_numpy("output_label").reshape(-1)] == label.tolist()
    expected = np.array([[row[k] for k in ("setosa", "versicolor", "virginica")] for row in probabilities])
    np.testing.assert_allclose(result.as_numpy("output_probability"), expected, rtol=1e-5)


def test_bytes_in_and_out(world, triton):
    _, tokens, _, _ = world
    words = np.array(["dog", "cat", "ému", "", "unknown"], dtype=object)
    result = triton.infer("text", [_tensor("text", words, "BYTES")], headers=_auth(tokens, "viewer"))
    assert result.as_numpy("label_id").tolist() == [1, 0, 2, -1, -1]
    assert [w.decode() for w in result.as_numpy("echo")] == ["dog", "cat", "ému", "", "unknown"]


def test_typed_contents_are_answered_with_typed_contents(world, stub):
    _, tokens, _, _ = world
    grpc_stub, _ = stub
    x = np.random.default_rng(2).random((2, 4), dtype=np.float32)
    request = service_pb2.ModelInferRequest(model_name="iris", model_version="production", id="typed")
    request.inputs.add(name="x", datatype="FP32", shape=[2, 4]).contents.fp32_contents.extend(x.reshape(-1).tolist())
    response = grpc_stub.ModelInfer(request, metadata=_meta(tokens, "viewer"))
    (out,) = response.outputs
    assert (out.name, out.datatype, list(out.shape), response.id) == ("probs", "FP32", [2, 3], "typed")
    assert not response.raw_output_contents
    np.testing.assert_allclose(np.array(out.contents.fp32_contents).reshape(2, 3), _expected_iris(x), rtol=1e-6)
    text = service_pb2.ModelInferRequest(model_name="text")
    text.inputs.add(name="text", datatype="BYTES", shape=[2]).contents.bytes_contents.extend(["ému".encode(), b"dog"])
    text.outputs.add(name="label_id")
    (labels,) = grpc_stub.ModelInfer(text, metadata=_meta(tokens, "viewer")).outputs
    assert (labels.datatype, list(labels.contents.int64_contents)) == ("INT64", [2, 1])


def test_concurrent_clients_each_get_their_own_answers(world):
    _, tokens, server, _ = world
    errors: list[BaseException] = []

    def client(seed: int) -> None:
        triton = tgrpc.InferenceServerClient(server.grpc_target)
        try:
            rng = np.random.default_rng(seed)
            for _ in range(20):
                x = rng.random((int(rng.integers(1, 9)), 4), dtype=np.float32)
                got = triton.infer("iris", [_tensor("x", x, "FP32")], headers=_auth(tokens, "viewer"))
                np.testing.assert_allclose(got.as_numpy("probs"), _expected_iris(x), rtol=1e-6)
        except BaseException as exc:  # noqa: BLE001 - reported below, with the thread's seed
            errors.append(exc)
        finally:
            triton.close()

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[:3]
    _assert_ready(world)


# -- who may do what ----------------------------------------------------------------------------------
@pytest.mark.parametrize("who,fragment", [
    (None, "missing token: send the metadata 'authorization: Bearer <token>'"),
    ("Bearer not-a-token", "invalid or revoked token"),
    ("Basic dXNlcjpwYXNz", "use the metadata 'authorization: Bearer <token>'"),
    ("revoked", "invalid or revoked token"),
    ("deleted", "invalid or revoked token"),  # the token of a user deleted since
])
def test_a_wrong_token_is_unauthenticated(world, triton, who, fragment):
    _, tokens, _, _ = world
    dead = tokens.headers(who).get("Authorization") if who in ("revoked", "deleted") else who
    headers = {"authorization": dead} if dead else {}
    x = _tensor("x", np.ones((1, 4), np.float32), "FP32")
    _refused(lambda: triton.infer("iris", [x], headers=headers), "UNAUTHENTICATED", fragment)
    _refused(lambda: triton.get_model_metadata("iris", headers=headers), "UNAUTHENTICATED", fragment)
    _refused(lambda: triton.is_model_ready("iris", headers=headers), "UNAUTHENTICATED", fragment)


def test_a_token_revoked_or_a_user_disabled_by_another_process_is_refused_on_the_next_call(world, triton):
    # the door remembers checked tokens while the database is unchanged: a change made by the CLI
    # (another process) must still refuse the very next call, as over HTTP
    home, _, _, _ = world
    from portal.accounts.auth import Auth

    portal = Portal.open(home)
    try:
        auth = Auth(portal.registry)
        auth.add_user("short-lived", "viewer", actor="test")
        doomed = auth.create_token("short-lived", actor="test", label="to revoke in use")
        kept = auth.create_token("short-lived", actor="test", label="to disable in use").secret
    finally:
        portal.close()
    x = _tensor("x", np.ones((1, 4), np.float32), "FP32")
    for token in (doomed.secret, kept, doomed.secret, kept):  # served, and remembered
        headers = {"authorization": f"Bearer {token}"}
        np.testing.assert_allclose(triton.infer("iris", [x], headers=headers).as_numpy("probs"),
                                   _expected_iris(np.ones((1, 4), np.float32)), rtol=1e-5)

    def cli(*args: str) -> None:
        done = subprocess.run([sys.executable, "-m", "portal.cli", *args], env={**os.environ, "PORTAL_HOME": str(home)},
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr

    cli("tokens", "revoke", str(doomed.info.id))
    _refused(lambda: triton.infer("iris", [x], headers={"authorization": f"Bearer {doomed.secret}"}),
             "UNAUTHENTICATED", "invalid or revoked token")
    assert triton.infer("iris", [x], headers={"authorization": f"Bearer {kept}"}).as_numpy("probs").shape == (1, 3)
    cli("users", "update", "short-lived", "--disable")
    _refused(lambda: triton.infer("iris", [x], headers={"authorization": f"Bearer {kept}"}),
             "UNAUTHENTICATED", "user 'short-lived' is disabled")


def test_a_private_model_is_not_found_for_others_and_served_to_its_owner(world, triton):
    _, tokens, _, _ = world
    x = _tensor("x", np.ones((1, 4), np.float32), "FP32")
    unknown = _refused(lambda: triton.infer("no-such-model", [x], headers=_auth(tokens, "viewer")), "NOT_FOUND")
    private = _refused(lambda: triton.infer("drafts", [x], headers=_auth(tokens, "viewer")), "NOT_FOUND")
    assert private == unknown.replace("no-such-model", "drafts")  # nothing tells the two apart
    _refused(lambda: triton.get_model_metadata("drafts", headers=_auth(tokens, "viewer")), "NOT_FOUND", "drafts")
    assert not triton.is_model_ready("drafts", headers=_auth(tokens, "viewer"))
    for who in ("analyst", "admin"):  # the owner, and an admin
        assert triton.infer("drafts", [x], headers=_auth(tokens, who)).as_numpy("probs").shape == (1, 3)
        assert triton.is_model_ready("drafts", headers=_auth(tokens, who))


# -- limits ---------------------------------------------------------------------------------------------
def test_a_message_over_the_body_limit_is_resource_exhausted(world, triton):
    _, tokens, _, _ = world
    x = np.zeros((70_000, 4), np.float32)  # 1.1 MB > PORTAL_API_MAX_BODY_MB=1
    _refused(lambda: triton.infer("iris", [_tensor("x", x, "FP32")], headers=_auth(tokens, "viewer")),
             "RESOURCE_EXHAUSTED", "larger than max")
    _assert_ready(world)


def test_rows_over_the_batch_limit_are_resource_exhausted(world, triton):
    _, tokens, _, _ = world
    x = np.zeros((MAX_ROWS + 1, 4), np.float32)
    _refused(lambda: triton.infer("iris", [_tensor("x", x, "FP32")], headers=_auth(tokens, "viewer")),
             "RESOURCE_EXHAUSTED", f"over the limit of {MAX_ROWS:,}")


def test_inference_past_the_time_limit_is_deadline_exceeded(world, triton):
    _, tokens, _, _ = world
    headers = _auth(tokens, "viewer")
    assert triton.is_model_ready("slow", headers=headers)  # loaded now: the limit measures inference
    inputs = [_tensor("x", np.full((1, 512), 0.01, np.float32), "FP32"),
              _tensor("rows", np.array([[32768, 1]], np.int64), "INT64")]
    _refused(lambda: triton.infer("slow", inputs, headers=headers), "DEADLINE_EXCEEDED",
             "ran past the limit of 5 s and was stopped")
    _assert_ready(world)


def test_a_cheap_call_is_answered_while_a_model_whose_work_an_input_decides_runs(world, triton):
    """Cheap calls run on the server's event loop; a graph whose work an input's values decide never does."""
    _, tokens, server, _ = world
    headers = _auth(tokens, "viewer")
    x = _tensor("x", np.full((1, 512), 0.01, np.float32), "FP32")
    for _ in range(30):  # the door learns that calls of this size to "expand" are cheap
        triton.infer("expand", [x, _tensor("rows", np.array([[1, 1]], np.int64), "INT64")], headers=headers)
    costly = [x, _tensor("rows", np.array([[131072, 1]], np.int64), "INT64")]  # ~1 TFLOP, as small a message
    outcome: list[str] = []

    def run() -> None:
        client = tgrpc.InferenceServerClient(server.grpc_target)
        try:
            client.infer("expand", costly, headers=headers)
            outcome.append("OK")
        except InferenceServerException as exc:
            outcome.append(str(exc.status()))
        finally:
            client.close()

    thread = threading.Thread(target=run)
    thread.start()
    _poll(server, "the costly call in flight", lambda: "portal_grpc_requests_in_flight 1.0" in _metrics(server, tokens))
    # on the event loop the costly run would hold this call until its 5 s limit; in a thread it does not
    ones = _tensor("x", np.ones((1, 4), np.float32), "FP32")
    assert triton.infer("iris", [ones], headers=headers).as_numpy("probs").shape == (1, 3)
    running = thread.is_alive()
    thread.join()
    assert running, "the cheap call was answered only after the costly one ended"
    assert outcome == ["StatusCode.DEADLINE_EXCEEDED"]


# -- metrics and the prediction log ------------------------------------------------------------------------
def _poll(server: Server, what: str, check: Any, *, timeout: float = 30) -> Any:
    """``check()`` once it is truthy; waits on the server process between tries (no blind sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"{what}: not seen in {timeout:g} s"
        assert server.proc.poll() is None, server.log()
        try:
            server.proc.wait(timeout=0.1)
        except subprocess.TimeoutExpired:
            pass


def _metrics(server: Server, tokens: Tokens, who: str = "viewer") -> str:
    return httpx.get(f"{server.url}/metrics", headers=tokens.headers(who), timeout=10).text


def test_metrics_and_the_prediction_log_name_the_protocol(world, triton):
    home, tokens, server, _ = world
    x = _tensor("x", np.ones((1, 4), np.float32), "FP32")
    triton.infer("iris", [x], model_version="1", headers=_auth(tokens, "admin"))
    _refused(lambda: triton.infer("iris", [_tensor("x", np.ones((1, 4), np.int64), "INT64")], model_version="1",
                                  headers=_auth(tokens, "viewer")), "INVALID_ARGUMENT")
    text = _metrics(server, tokens)
    assert 'portal_model_requests_total{model="iris",protocol="grpc",route="ModelInfer",status="OK",version="1"}' in text
    assert ('portal_model_errors_total{model="iris",protocol="grpc",route="ModelInfer",status="INVALID_ARGUMENT",'
            'version="1"}') in text
    assert 'portal_grpc_requests_total{code="OK",method="ModelInfer"}' in text
    assert 'portal_inference_duration_seconds_count{model="iris",version="1"}' in text
    assert 'model="drafts"' not in text  # a viewer's scrape never names a private model of someone else
    portal = Portal.open(home)
    try:
        window = mon.TimeRange.last(3600, now=mon.now(portal))

        def logged() -> bool:
            callers = mon.summarize(portal, "iris", 1, window).callers.to_dict("records")
            return ("admin", "grpc") in {(r["caller"], r["source"]) for r in callers}

        _poll(server, "a prediction logged with source 'grpc'", logged)  # written in batches by the server
    finally:
        portal.close()


def test_each_call_has_an_access_log_line_with_its_request_id(world, stub):
    _, tokens, server, _ = world
    grpc_stub, _ = stub
    request = service_pb2.ModelMetadataRequest(name="iris")
    _, call = grpc_stub.ModelMetadata.with_call(request, metadata=(*_meta(tokens, "viewer"), ("x-request-id", "grpc-42")))
    assert ("x-request-id", "grpc-42") in tuple(call.trailing_metadata())
    line = server.access_line("grpc-42")
    assert (line["protocol"], line["method"], line["status"], line["user"], line["model"]) == (
        "grpc", "ModelMetadata", "OK", "viewer", "iris")


# -- hostile requests ------------------------------------------------------------------------------------------
def _iris_request(**override: Any) -> Any:
    request = service_pb2.ModelInferRequest(model_name=override.pop("model", "iris"),
                                            model_version=override.pop("version", ""))
    tensor = request.inputs.add(name=override.pop("name", "x"), datatype=override.pop("datatype", "FP32"),
                                shape=override.pop("shape", [1, 4]))
    raw = override.pop("raw", np.ones((1, 4), np.float32).tobytes())
    if raw is not None:
        request.raw_input_contents.append(raw)
    assert not override, override
    return request, tensor


def _hostile() -> list[tuple[str, Any, str, str]]:
    """(id, request builder, expected code, message fragment)."""
    def build(**kw: Any) -> Any:
        return lambda: _iris_request(**kw)[0]

    def typed(field: str, values: list[Any], **kw: Any) -> Any:
        def make() -> Any:
            request, tensor = _iris_request(raw=None, **kw)
            getattr(tensor.contents, field).extend(values)
            return request
        return make

    def edit(change: Any, **kw: Any) -> Any:
        def make() -> Any:
            request, tensor = _iris_request(**kw)
            change(request, tensor)
            return request
        return make

    def text(raw: bytes, shape: list[int]) -> Any:
        def make() -> Any:
            request = service_pb2.ModelInferRequest(model_name="text")
            request.inputs.add(name="text", datatype="BYTES", shape=shape)
            request.raw_input_contents.append(raw)
            return request
        return make

    bad = "INVALID_ARGUMENT"
    return [
        ("wrong-shape", build(shape=[1, 5], raw=np.ones(5, np.float32).tobytes()), bad, "expected shape [-1, 4], got [1, 5]"),
        ("wrong-rank", build(shape=[4], raw=np.ones(4, np.float32).tobytes()), bad, "expected shape [-1, 4], got [4]"),
        ("negative-shape", build(shape=[-1, 4]), bad, "'shape' must be a list of non-negative integers"),
        ("huge-declared-shape", build(shape=[2**40, 4]), bad, "has too many elements"),
        ("large-shape-tiny-data", build(shape=[100_000_000, 4]), bad, "(1600000000 bytes), got 16 bytes"),
        ("raw-too-short", build(raw=b"\x00" * 12), bad, "the shape holds 4 FP32 values (16 bytes), got 12 bytes"),
        ("raw-too-long", build(raw=b"\x00" * 20), bad, "got 20 bytes"),
        ("wrong-datatype", build(datatype="INT64", raw=np.ones(4, np.int64).tobytes()), bad,
         "expected datatype FP32, got INT64"),
        ("no-datatype", build(datatype=""), bad, "expected datatype FP32, got none"),
        ("unknown-input", build(name="y"), bad, "unknown input 'y'; the model takes 'x'"),
        ("nan", build(raw=np.array([1, np.nan, 3, 4], np.float32).tobytes()), bad, "NaN"),
        ("typed-in-the-wrong-field", typed("int64_contents", [1, 2, 3, 4]), bad,
         "got 0 in contents.fp32_contents (but 4 in contents.int64_contents)"),
        ("typed-too-few", typed("fp32_contents", [1.0, 2.0]), bad, "the shape holds 4 values, got 2"),
        ("raw-and-typed", edit(lambda r, t: t.contents.fp32_contents.extend([1.0] * 4)), bad,
         "either 'contents' or raw_input_contents"),
        ("raw-entries-for-no-input", edit(lambda r, t: r.raw_input_contents.append(b"x")), bad,
         "raw_input_contents has 2 entries for 1 inputs"),
        ("input-twice", edit(lambda r, t: (r.inputs.add().CopyFrom(t), r.raw_input_contents.append(r.raw_input_contents[0]))),
         bad, "input 'x' is given twice"),
        ("no-inputs", lambda: service_pb2.ModelInferRequest(model_name="iris"), bad, "at least one tensor in 'inputs'"),
        ("unknown-output", edit(lambda r, t: r.outputs.add(name="nope")), bad, "unknown output 'nope'; the model gives 'probs'"),
        ("no-model-name", build(model=""), bad, "invalid model name"),
        ("model-name-traversal", build(model="../../etc/passwd"), bad, "invalid model name"),
        ("unicode-digit-version", build(version="²"), bad, "invalid version"),
        ("unknown-model", build(model="nope"), "NOT_FOUND", "no model named 'nope'"),
        ("unknown-version", build(version="99"), "NOT_FOUND", "99"),
        ("unknown-alias", build(version="staging"), "NOT_FOUND", "staging"),
        ("bytes-not-utf8", text(b"\x02\x00\x00\x00\xff\xfe", [1]), bad, "is not UTF-8 text"),
        ("bytes-truncated-length", text(b"\x05\x00", [1]), bad, "truncated BYTES element length"),
        ("bytes-runs-past-the-end", text(b"\xff\xff\xff\x7fabc", [1]), bad, "runs past the end of its data"),
        ("bytes-count-mismatch", text(b"\x01\x00\x00\x00a", [3]), bad, "the shape holds 3 values, got 1 BYTES"),
    ]


@pytest.mark.parametrize("case", _hostile(), ids=lambda c: c[0])
def test_hostile_requests_get_a_clear_status(world, stub, case):
    _, tokens, _, _ = world
    grpc_stub, _ = stub
    _, build, code, fragment = case
    with pytest.raises(grpc.RpcError) as info:
        grpc_stub.ModelInfer(build(), metadata=_meta(tokens, "viewer"), timeout=60)
    assert info.value.code().name == code, info.value.details()
    assert fragment in info.value.details()
    assert "Traceback" not in info.value.details()
    _assert_ready(world)


@pytest.mark.parametrize("body,fragment", [
    (b"\xff\xff\xff\xff", "not a valid ModelInferRequest message"),
    (b"\x2a\x80", "not a valid ModelInferRequest message"),  # a length prefix that runs past the end
    (b"", "invalid model name ''"),  # an empty message is a request with nothing in it
])
def test_bytes_that_are_not_a_message_are_invalid_argument(world, stub, body, fragment):
    _, tokens, _, _ = world
    _, channel = stub
    raw_call = channel.unary_unary(METHOD)  # no serializer: the bytes go as they are
    with pytest.raises(grpc.RpcError) as info:
        raw_call(body, metadata=_meta(tokens, "viewer"), timeout=60)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and fragment in info.value.details()
    _assert_ready(world)


def test_tritons_other_methods_are_unimplemented(world, triton):
    _, tokens, _, _ = world
    _refused(lambda: triton.get_model_repository_index(headers=_auth(tokens, "admin")), "UNIMPLEMENTED")
    _assert_ready(world)


# -- a server with one slot: busy, the client's deadline, a stalled message ------------------------------------
@pytest.fixture(scope="module")
def tight(world: Any) -> Any:
    home, tokens, _, _ = world
    env = {"PORTAL_API_MAX_CONCURRENCY": "1", "PORTAL_API_INFER_TIMEOUT_S": "120", "PORTAL_API_BODY_TIMEOUT_S": "1"}
    for server in serve(home, env=env, grpc=True):
        client = tgrpc.InferenceServerClient(server.grpc_target)
        assert client.is_model_ready("slow", headers=_auth(tokens, "viewer"))  # loaded before anything is timed
        yield server, tokens, client
        client.close()
        assert "Traceback" not in server.log()


def _slow_inputs() -> list[Any]:
    return [_tensor("x", np.full((1, 512), 0.01, np.float32), "FP32"),
            _tensor("rows", np.array([[32768, 1]], np.int64), "INT64")]


def test_over_the_concurrency_limit_is_resource_exhausted_and_the_clients_deadline_stops_the_run(tight):
    server, tokens, client = tight
    outcome: list[str] = []

    def slow() -> None:
        try:
            client.infer("slow", _slow_inputs(), headers=_auth(tokens, "viewer"), client_timeout=5)
        except InferenceServerException as exc:
            outcome.append(str(exc.status()))

    thread = threading.Thread(target=slow)
    thread.start()
    _poll(server, "the slow call in flight", lambda: "portal_grpc_requests_in_flight 1.0" in _metrics(server, tokens))
    x = _tensor("x", np.ones((1, 4), np.float32), "FP32")
    _refused(lambda: client.infer("iris", [x], headers=_auth(tokens, "viewer")), "RESOURCE_EXHAUSTED",
             "the server is busy (1 gRPC calls in flight)")
    thread.join()
    assert outcome == ["StatusCode.DEADLINE_EXCEEDED"]
    # the run is stopped when the client gives up, long before the server's own limit of 120 s
    _poll(server, "the run stopped", lambda: 'portal_grpc_rejected_total{reason="timeout"} 1.0' in _metrics(server, tokens)
          and "portal_grpc_requests_in_flight 0.0" in _metrics(server, tokens), timeout=60)
    assert 'portal_grpc_rejected_total{reason="busy"} 1.0' in _metrics(server, tokens)
    assert client.infer("iris", [x], headers=_auth(tokens, "viewer")).as_numpy("probs").shape == (1, 3)


def test_a_message_that_stops_arriving_is_cancelled_and_frees_its_slot(tight):
    server, tokens, client = tight
    release = threading.Event()

    def stalled() -> Any:
        release.wait(60)  # the client opens the call and never sends the message
        yield b""

    with grpc.insecure_channel(server.grpc_target) as channel:
        call = channel.stream_unary(METHOD)
        try:
            with pytest.raises(grpc.RpcError) as info:
                call(stalled(), metadata=_meta(tokens, "viewer"), timeout=60)
        finally:
            release.set()
    assert info.value.code() == grpc.StatusCode.CANCELLED
    assert 'portal_grpc_rejected_total{reason="slow_body"} 1.0' in _metrics(server, tokens)
    x = _tensor("x", np.ones((1, 4), np.float32), "FP32")
    assert client.infer("iris", [x], headers=_auth(tokens, "viewer")).as_numpy("probs").shape == (1, 3)


# -- the command line -------------------------------------------------------------------------------------------
def test_a_grpc_port_in_use_stops_the_server_with_a_clear_message(world):
    home, _, _, _ = world
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(RuntimeError) as info:
            Server(home, args=("--grpc-port", str(port)))
    assert f"cannot serve gRPC on 127.0.0.1:{port}" in str(info.value)
    assert "--grpc-port 0" in str(info.value)


@pytest.mark.parametrize("args", [["--port", "9000", "--grpc-port", "9000"], ["--grpc-port", "70000"]])
def test_a_bad_grpc_port_is_one_line(args):
    from portal.cli import app

    result = CliRunner().invoke(app, ["serve", *args])
    assert result.exit_code == 1
    assert "--grpc-port must be a free port other than --port" in result.output
