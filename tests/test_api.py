"""The REST API over real HTTP: OIP v2, records/CSV prediction, management, limits, observability.

One ``portal serve`` per module on 127.0.0.1 over a real SQLite file; models are
tiny real ONNX graphs registered directly (upload is tested in test_api_upload).
"""

from __future__ import annotations

import http.client
import json
import socket
import struct
import threading
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from api_fixtures import (
    DTYPE_INPUTS,
    Server,
    add_model,
    dtypes_model,
    iris_model,
    make_users,
    odd_names_model,
    serve,
    text_model,
)
from portal import Portal

MAX_BODY = 1024 * 1024
X = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("api-home")


@pytest.fixture(scope="module")
def tokens(home):
    portal = Portal.open(home)
    try:
        users = make_users(portal)
        add_model(portal, "iris", iris_model(), owner="analyst", task="classification",
                  feature_names=["sl", "sw", "pl", "pw"], class_labels=["setosa", "=HYPERLINK(1)", "virginica"])
        add_model(portal, "iris", iris_model(), owner="analyst", task="classification",
                  feature_names=["sl", "sw", "pl", "pw"], class_labels=["setosa", "=HYPERLINK(1)", "virginica"])
        portal.set_alias("iris:1", "production", actor="test")
        add_model(portal, "formula", iris_model(), task="classification", class_labels=["=A1", "+B2", "@C3"])
        add_model(portal, "text", text_model())
        add_model(portal, "odd", odd_names_model())
        add_model(portal, "dtypes", dtypes_model())
        add_model(portal, "doomed", iris_model(), owner="analyst")
        add_model(portal, "doomed", iris_model(), owner="analyst")
    finally:
        portal.close()
    return users


@pytest.fixture(scope="module")
def server(home, tokens):
    # iris is served with adaptive batching on, every other model without
    yield from serve(home, env={"PORTAL_API_MAX_BODY_MB": str(MAX_BODY / 1024**2), "PORTAL_API_MAX_BATCH_ROWS": "1000",
                                "PORTAL_API_BATCHING": "iris"})


@pytest.fixture(scope="module")
def viewer(server, tokens):
    with httpx.Client(base_url=server.url, headers=tokens.headers("viewer"), timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def admin(server, tokens):
    with httpx.Client(base_url=server.url, headers=tokens.headers("admin"), timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def analyst(server, tokens):
    with httpx.Client(base_url=server.url, headers=tokens.headers("analyst"), timeout=30) as client:
        yield client


def _infer_body(data, *, shape=(2, 4), datatype="FP32", name="x", **extra):
    return {"inputs": [{"name": name, "datatype": datatype, "shape": list(shape), "data": data}], **extra}


def _raw(server: Server, method: str, path: str, *, body: bytes = b"", headers: dict[str, str] | None = None,
         token: str = "") -> tuple[int, dict[str, str], bytes]:
    """A request whose path is sent exactly as written (no normalisation, no re-encoding)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        all_headers = {"Authorization": f"Bearer {token}"} if token else {}
        conn.request(method, path, body=body, headers={**all_headers, **(headers or {})})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def _error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and "Traceback" not in body["error"]
    return body["error"]


def _expected_probs(x: list[list[float]]) -> np.ndarray:
    session = ort.InferenceSession(iris_model().SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": np.asarray(x, np.float32)})[0]


# -- Open Inference Protocol v2 ---------------------------------------------------------
def test_server_metadata_and_health_need_no_token(server):
    assert httpx.get(f"{server.url}/v2").json()["name"] == "model-portal"
    assert httpx.get(f"{server.url}/v2/health/live").json() == {"live": True}
    assert httpx.get(f"{server.url}/v2/health/ready").json() == {"ready": True}


def test_model_metadata_has_oip_datatypes_and_dynamic_dims(viewer):
    meta = viewer.get("/v2/models/iris").json()
    assert meta == {
        "name": "iris", "versions": ["2", "1"], "platform": "onnxruntime_onnx",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": "probs", "datatype": "FP32", "shape": [-1, 3]}],
    }


def test_version_metadata_by_number_and_by_alias(viewer):
    assert viewer.get("/v2/models/iris/versions/2").json()["versions"] == ["2"]
    assert viewer.get("/v2/models/iris/versions/production").json()["versions"] == ["1"]


def test_text_model_metadata_says_bytes(viewer):
    meta = viewer.get("/v2/models/text").json()
    assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert {o["name"]: o["datatype"] for o in meta["outputs"]} == {"label_id": "INT64", "echo": "BYTES"}


def test_model_ready_by_version_and_alias(viewer):
    assert viewer.get("/v2/models/iris/ready").json()["ready"] is True
    assert viewer.get("/v2/models/iris/versions/production/ready").json()["version"] == "1"


def test_infer_matches_onnxruntime_and_echoes_the_id(viewer):
    answer = viewer.post("/v2/models/iris/infer", json=_infer_body(X, id="req-7")).json()
    assert (answer["model_name"], answer["model_version"], answer["id"]) == ("iris", "2", "req-7")
    [out] = answer["outputs"]
    assert (out["name"], out["datatype"], out["shape"]) == ("probs", "FP32", [2, 3])
    np.testing.assert_allclose(np.reshape(out["data"], (2, 3)), _expected_probs(X), rtol=1e-6)


def test_flat_and_nested_data_give_the_same_answer(viewer):
    nested = viewer.post("/v2/models/iris/infer", json=_infer_body(X)).json()
    flat = viewer.post("/v2/models/iris/infer", json=_infer_body([v for row in X for v in row])).json()
    assert nested["outputs"] == flat["outputs"]


def test_infer_by_alias_uses_the_aliased_version(viewer):
    answer = viewer.post("/v2/models/iris/versions/production/infer", json=_infer_body(X)).json()
    assert answer["model_version"] == "1"


def test_requested_outputs_only(viewer):
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["dog"]}],
            "outputs": [{"name": "label_id"}]}
    answer = viewer.post("/v2/models/text/infer", json=body).json()
    assert answer["outputs"] == [{"name": "label_id", "datatype": "INT64", "shape": [1], "data": [1]}]


def test_bytes_in_and_out_keep_unicode(viewer):
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [4], "data": ["cat", "ému", "", "zèbre"]}]}
    outputs = {o["name"]: o for o in viewer.post("/v2/models/text/infer", json=body).json()["outputs"]}
    assert outputs["label_id"]["data"] == [0, 2, -1, -1]
    assert outputs["echo"] == {"name": "echo", "datatype": "BYTES", "shape": [4], "data": ["cat", "ému", "", "zèbre"]}


def test_every_datatype_round_trips(viewer):
    values = {"BOOL": [True, False, False, True], "INT8": [-128, 0, 1, 127], "UINT8": [0, 1, 200, 255],
              "INT32": [-(2**31), 0, 7, 2**31 - 1], "INT64": [-(2**62), 0, 9, 2**62], "FP16": [0.5, -2.0, 1024.0, 0.0],
              "FP64": [0.1, -1e300, 3.5, 2.0]}
    body = {"inputs": [{"name": n, "datatype": t, "shape": [2, 2], "data": values[t]} for n, (_, t) in DTYPE_INPUTS.items()]}
    outputs = {o["name"]: o for o in viewer.post("/v2/models/dtypes/infer", json=body).json()["outputs"]}
    for name, (_, datatype) in DTYPE_INPUTS.items():
        assert outputs[f"{name}_out"] == {"name": f"{name}_out", "datatype": datatype, "shape": [2, 2],
                                          "data": values[datatype]}


def test_input_and_output_names_with_slash_and_colon(viewer):
    body = {"inputs": [{"name": "serving/x:0", "datatype": "FP32", "shape": [1, 2], "data": [1.5, -2]}],
            "outputs": [{"name": "out/y:0"}]}
    assert viewer.get("/v2/models/odd").json()["inputs"][0]["name"] == "serving/x:0"
    answer = viewer.post("/v2/models/odd/infer", json=body).json()
    assert answer["outputs"] == [{"name": "out/y:0", "datatype": "FP32", "shape": [1, 2], "data": [3.0, -4.0]}]


def test_binary_tensor_extension_in_and_out(viewer):
    x = np.asarray(X, np.float32)
    words = [b"dog", "ému".encode()]
    header = json.dumps({
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": 3 + 4 + 4 + 4}}],
        "outputs": [{"name": "label_id", "parameters": {"binary_data": True}}, {"name": "echo"}],
    }).encode()
    payload = b"".join(struct.pack("<I", len(w)) + w for w in words)
    response = viewer.post("/v2/models/text/infer", content=header + payload, headers={
        "Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"})
    assert response.status_code == 200, response.text
    size = int(response.headers["inference-header-content-length"])
    head = json.loads(response.content[:size])
    assert head["outputs"][0]["parameters"] == {"binary_data_size": 16}
    assert np.frombuffer(response.content[size:], "<i8").tolist() == [1, 2]
    assert head["outputs"][1]["data"] == ["dog", "ému"]
    header = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 4],
                                     "parameters": {"binary_data_size": x.nbytes}}]}).encode()
    response = viewer.post("/v2/models/iris/infer", content=header + x.tobytes(),
                           headers={"Inference-Header-Content-Length": str(len(header))})
    np.testing.assert_allclose(np.reshape(response.json()["outputs"][0]["data"], (2, 3)), _expected_probs(X), rtol=1e-6)


def test_concurrent_requests_to_a_batched_model_get_their_own_answers(server, tokens):
    rng = np.random.default_rng(3)
    inputs = [rng.random((i % 4 + 1, 4), dtype=np.float32) for i in range(24)]
    answers: dict[int, np.ndarray] = {}

    def call(i: int) -> None:
        with httpx.Client(base_url=server.url, headers=tokens.headers("viewer"), timeout=30) as client:
            body = _infer_body(inputs[i].tolist(), shape=inputs[i].shape)
            answers[i] = np.reshape(client.post("/v2/models/iris/infer", json=body).json()["outputs"][0]["data"], (-1, 3))

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i, x in enumerate(inputs):
        np.testing.assert_allclose(answers[i], _expected_probs(x.tolist()), rtol=1e-6)
    metrics = httpx.get(f"{server.url}/metrics", headers=tokens.headers("viewer")).text
    assert 'portal_batch_rows_count{model="iris",version="2"}' in metrics


# -- bad input: 4xx with {"error": ...}, never a 500 ------------------------------------------
@pytest.mark.parametrize(("path", "status", "message"), [
    ("/v2/models/nope", 404, "no model named 'nope'"),
    ("/v2/models/iris/versions/9", 404, "has no version 9"),
    ("/v2/models/iris/versions/staging", 404, "has no alias 'staging'"),
    ("/v2/models/iris:2", 400, "invalid model name"),
])
def test_unknown_models_versions_and_aliases(viewer, path, status, message):
    assert message in _error(viewer.get(path), status)
    assert message in _error(viewer.post(path.replace("/versions", "/versions") + "/infer", json=_infer_body(X)), status)


@pytest.mark.parametrize(("body", "message"), [
    (b"{", "malformed JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "malformed JSON: nested too deeply"),
    (b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "malformed JSON: nested too deeply"),
    (b"\xff\xfe", "malformed JSON"),
    (b"[]", "must be a JSON object"),
    (b'{"inputs": []}', "non-empty 'inputs'"),
    (b'{"inputs": [{"name": "x"}]}', "expected datatype FP32, got None"),
    (b'{"inputs": [1]}', "must be an object"),
    (b'{"id": 5, "inputs": []}', "'id' must be a string"),
])
def test_malformed_requests_are_400(viewer, body, message):
    response = viewer.post("/v2/models/iris/infer", content=body, headers={"Content-Type": "application/json"})
    assert message in _error(response, 400)


@pytest.mark.parametrize(("body", "message"), [
    (_infer_body([1] * 8, datatype="INT64"), "input 'x': expected datatype FP32, got INT64"),
    (_infer_body([1] * 10, shape=(2, 5)), "input 'x': expected shape [-1, 4], got [2, 5]"),
    (_infer_body([1] * 8, shape=(8,)), "input 'x': expected shape [-1, 4], got [8]"),
    (_infer_body([1] * 7), "input 'x': the shape holds 8 values, got 7"),
    (_infer_body([[1, 2, 3, 4], [5, 6, 7]]), "input 'x': 'data' must be numbers or strings in nested lists"),
    (_infer_body(["a"] * 8), "input 'x': expected FP32 numbers, got strings"),
    (_infer_body([True] * 8), "input 'x': expected FP32 numbers, got booleans"),
    (_infer_body([None] * 8), "input 'x': expected FP32 numbers, got mixed or null values"),
    (_infer_body("12345678"), "'data' must be a (flat or nested) list"),
    (_infer_body([1] * 8, shape=(2, -4)), "'shape' must be a list of non-negative integers"),
    (_infer_body([1] * 8, name="y"), "unknown input 'y'; the model takes 'x'"),
    ({"inputs": _infer_body(X)["inputs"] * 2}, "input 'x' is given twice"),
    ({**_infer_body(X), "outputs": [{"name": "nope"}]}, "unknown output 'nope'; the model gives 'probs'"),
    (_infer_body([1] * 8, shape=(2**40, 4)), "has too many elements"),
])
def test_wrong_datatype_shape_or_data_is_400_with_expected_and_got(viewer, body, message):
    assert message in _error(viewer.post("/v2/models/iris/infer", json=body), 400)


def test_integer_inputs_refuse_fractions_and_overflow(viewer):
    base = {n: {"name": n, "datatype": t, "shape": [1, 2], "data": [False, False] if t == "BOOL" else [0, 0]}
            for n, (_, t) in DTYPE_INPUTS.items()}
    for name, data, message in [("i32", [1.5, 2], "expected INT32 integers, got fractional values"),
                                ("u8", [-1, 256], "values outside the UINT8 range"),
                                ("i64", [2**70, 1], "expected INT64 numbers, got mixed or null values")]:
        inputs = {**base, name: {**base[name], "data": data}}
        response = viewer.post("/v2/models/dtypes/infer", json={"inputs": list(inputs.values())})
        assert message in _error(response, 400)


def test_missing_input_is_named(viewer):
    body = {"inputs": [{"name": "b", "datatype": "BOOL", "shape": [1, 2], "data": [True, False]}]}
    assert "missing input(s) 'i8', 'u8'" in _error(viewer.post("/v2/models/dtypes/infer", json=body), 400)


def test_unknown_content_type_is_415(viewer):
    response = viewer.post("/v2/models/iris/infer", content=b"x,y\n1,2\n", headers={"Content-Type": "text/csv"})
    assert "unsupported Content-Type 'text/csv'" in _error(response, 415)
    response = viewer.post("/api/models/iris/predict", content=b"<a/>", headers={"Content-Type": "application/xml"})
    _error(response, 415)


def test_body_over_the_limit_is_413(viewer):
    data = [0.5] * (MAX_BODY // 3)
    assert "larger than the limit" in _error(viewer.post("/v2/models/iris/infer", json=_infer_body(data)), 413)


def test_413_is_answered_before_the_body_is_sent(server, tokens):
    # Content-Length says 10 GB and no body byte is ever sent: the answer must still come.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     + f"Authorization: Bearer {tokens.by_role['viewer']}\r\n".encode()
                     + b"Content-Length: 10000000000\r\n\r\n")
        reply = b""
        while chunk := sock.recv(65536):  # the server answers, then closes the connection
            reply += chunk
        reply = reply.decode()
    assert reply.startswith("HTTP/1.1 413") and '"error"' in reply


def test_chunked_body_over_the_limit_is_413(viewer):
    def chunks():
        yield b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": ['
        for _ in range(MAX_BODY // 4096 + 2):
            yield b"1," * 2048
        yield b"1]}]}"

    response = viewer.post("/v2/models/iris/infer", content=chunks(), headers={"Content-Type": "application/json"})
    _error(response, 413)


def test_batch_over_the_row_limit_is_413(viewer):
    response = viewer.post("/v2/models/iris/infer", json=_infer_body([0.0] * 4004, shape=(1001, 4)))
    assert "1,001 rows in one request is over the limit of 1,000" in _error(response, 413)


@pytest.mark.parametrize("path", [
    "/v2/models/../iris", "/v2/models/%2e%2e%2fetc%2fpasswd", "/v2/models/%2e%2e/versions/1",
    "/v2/models/iris%22%3B%20drop", "/v2/models/it's", "/v2/models/a%0D%0ASet-Cookie:%20x=1",
    "/v2/models/iris/versions/%2e%2e%2f1", "/v2/models/iris/versions/1%0D%0Ax", "/api/models/%2e%2e%2f",
    "/api/models/..%2F..%2Fportal.db/versions/1/file", "/api/models/iris/versions/..%2f..%2fportal.db/file",
    "/v2/models/%00", "/v2/models/%ff%fe", "/api/models/iris@%22quoted%22/predict",
])
def test_hostile_names_are_refused_without_500(server, tokens, path):
    for method in ("GET", "POST"):
        status, headers, body = _raw(server, method, path, body=b"[]", token=tokens.by_role["admin"],
                                     headers={"Content-Type": "application/json"})
        assert 400 <= status < 500, (method, path, status, body)
        assert "set-cookie" not in {k.lower() for k in headers}
        assert "error" in json.loads(body)


def test_deeply_nested_json_to_pydantic_and_records_routes_is_400(admin):
    deep = b"[" * 100_000 + b"]" * 100_000
    for path in ("/api/users", "/api/models/iris/predict"):
        response = admin.post(path, content=deep, headers={"Content-Type": "application/json"})
        _error(response, 400)


def test_unknown_route_is_a_json_404(viewer):
    assert "no route GET /v3" in _error(viewer.get("/v3"), 404)


# -- the friendly prediction route ----------------------------------------------------------
def test_predict_json_records_gives_labels_and_probabilities(viewer):
    records = [dict(zip(["sl", "sw", "pl", "pw"], row, strict=True)) for row in X]
    for body in (records, {"records": records}):
        answer = viewer.post("/api/models/iris:2/predict", json=body).json()
        assert (answer["model"], answer["rows"]) == ("iris:2", 2)
        first = answer["predictions"][0]
        assert set(first) == {"prediction", "proba_setosa", "proba_=HYPERLINK(1)", "proba_virginica", "confidence"}
        np.testing.assert_allclose([first["proba_setosa"], first["proba_=HYPERLINK(1)"], first["proba_virginica"]],
                                   _expected_probs(X)[0], rtol=1e-6)


def test_predict_csv_answers_csv(viewer):
    csv = "sl,sw,pl,pw\n" + "\n".join(",".join(str(v) for v in row) for row in X) + "\n"
    response = viewer.post("/api/models/iris@production/predict", content=csv, headers={"Content-Type": "text/csv"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    header, *rows = response.text.strip().splitlines()
    assert header.split(",") == ["prediction", "proba_setosa", "proba_=HYPERLINK(1)", "proba_virginica", "confidence"]
    assert len(rows) == 2
    np.testing.assert_allclose([float(v) for v in rows[1].split(",")[1:4]], _expected_probs(X)[1], rtol=1e-6)


def test_predict_csv_escapes_formulas_in_the_answer(viewer):
    csv = "x_0,x_1,x_2,x_3\n" + "\n".join(",".join(str(v) for v in row) for row in X) + "\n"
    response = viewer.post("/api/models/formula/predict", content=csv, headers={"Content-Type": "text/csv"})
    assert response.status_code == 200, response.text
    header, *rows = response.text.strip().splitlines()
    assert header.split(",")[1:4] == ["proba_=A1", "proba_+B2", "proba_@C3"]
    labels = [row.split(",")[0] for row in rows]
    assert labels and all(label[:2] in ("'=", "'+", "'@") for label in labels)


def test_predict_extra_columns_refused_or_ignored(viewer):
    records = [{"sl": 1, "sw": 2, "pl": 3, "pw": 4, "id": 7}]
    assert "unexpected column(s) 'id'" in _error(viewer.post("/api/models/iris/predict", json=records), 400)
    answer = viewer.post("/api/models/iris/predict?extra_columns=ignore", json=records).json()
    assert answer["unused_columns"] == ["id"] and answer["rows"] == 1


@pytest.mark.parametrize(("body", "message"), [
    ([], "non-empty list of records"),
    ({"rows": []}, "non-empty list of records"),
    ([{"sl": [1, 2], "sw": 1, "pl": 1, "pw": 1}], "record 0, column 'sl': expected a number"),
    ([{"sl": "abc", "sw": 1, "pl": 1, "pw": 1}], "column 'sl' expects numbers, got 'abc'"),
    ([{"sw": 1, "pl": 1, "pw": 1}], "missing column(s) 'sl'"),
])
def test_predict_bad_records_are_400(viewer, body, message):
    assert message in _error(viewer.post("/api/models/iris/predict", json=body), 400)


def test_predict_bad_csv_is_400(viewer):
    response = viewer.post("/api/models/iris/predict", content=b"", headers={"Content-Type": "text/csv"})
    assert "empty" in _error(response, 400)


# -- management -----------------------------------------------------------------------------------
def test_list_and_show_models(viewer):
    names = [m["name"] for m in viewer.get("/api/models").json()]
    assert {"iris", "text", "odd", "dtypes"} <= set(names)
    iris = viewer.get("/api/models/iris").json()
    assert (iris["latest"], iris["aliases"], iris["owner"]) == (2, {"production": 1}, "analyst")
    assert [v["version"] for v in iris["versions"]] == [2, 1]
    version = viewer.get("/api/models/iris/versions/production").json()
    assert (version["ref"], version["class_labels"][0]) == ("iris:1", "setosa")


def test_download_gives_the_registered_onnx_file(viewer, home):
    response = viewer.get("/api/models/iris/versions/1/file")
    assert response.status_code == 200
    assert 'filename="iris-v1.onnx"' in response.headers["content-disposition"]
    assert response.content == iris_model().SerializeToString()
    ort.InferenceSession(response.content, providers=["CPUExecutionProvider"])


def test_owner_edits_metadata_and_it_is_audited(analyst, admin):
    answer = analyst.patch("/api/models/iris", json={"description": "Fisher's iris", "tags": ["demo", "flowers"]})
    assert answer.status_code == 200, answer.text
    assert (answer.json()["description"], answer.json()["tags"]) == ("Fisher's iris", ["demo", "flowers"])
    version = analyst.patch("/api/models/iris/versions/2", json={"notes": "retrained"}).json()
    assert version["notes"] == "retrained"
    audit = admin.get("/api/audit", params={"target": "iris", "actor": "analyst"}).json()
    assert {"model.update", "version.update"} <= {e["action"] for e in audit}


def test_edit_refuses_unknown_fields_and_bad_values(analyst):
    assert "extra" in _error(analyst.patch("/api/models/iris", json={"colour": "red"}), 400).lower()
    assert "task" in _error(analyst.patch("/api/models/iris", json={"task": "poetry"}), 400)


def test_only_an_admin_changes_the_owner(analyst, admin):
    _error(analyst.patch("/api/models/odd", json={"owner": "analyst"}), 403)
    assert admin.patch("/api/models/odd", json={"owner": "analyst"}).json()["owner"] == "analyst"
    assert "no user named 'ghost'" in _error(admin.patch("/api/models/odd", json={"owner": "ghost"}), 404)


def test_alias_set_move_and_remove_are_audited(analyst, admin, viewer):
    assert analyst.put("/api/models/iris/aliases/canary", json={"version": 2}).json()["ref"] == "iris:2"
    assert viewer.post("/v2/models/iris/versions/canary/infer", json=_infer_body(X)).json()["model_version"] == "2"
    assert analyst.put("/api/models/iris/aliases/canary", json={"version": 1}).json()["ref"] == "iris:1"
    assert analyst.delete("/api/models/iris/aliases/canary").json() == {"removed": "iris@canary"}
    _error(viewer.get("/v2/models/iris/versions/canary"), 404)
    actions = [(e["action"], e["actor"]) for e in admin.get("/api/audit", params={"target": "iris@canary"}).json()]
    assert actions == [("alias.remove", "analyst"), ("alias.set", "analyst"), ("alias.set", "analyst")]
    assert "invalid alias" in _error(analyst.put("/api/models/iris/aliases/latest", json={"version": 1}), 400)
    assert "has no version 99" in _error(analyst.put("/api/models/iris/aliases/x", json={"version": 99}), 404)


def test_delete_version_then_model_refuses_aliased_versions(analyst, admin, viewer):
    assert analyst.put("/api/models/doomed/aliases/live", json={"version": 1}).status_code == 200
    assert "alias @live" in _error(analyst.delete("/api/models/doomed/versions/1"), 409)
    assert analyst.delete("/api/models/doomed/versions/2").json() == {"deleted": ["doomed:2"]}
    assert analyst.delete("/api/models/doomed", params={"force": True}).json() == {"deleted": ["doomed:1"]}
    _error(viewer.get("/v2/models/doomed"), 404)
    actions = {e["action"] for e in admin.get("/api/audit", params={"target": "doomed", "actor": "analyst"}).json()}
    assert {"version.delete", "model.delete"} <= actions


# -- observability ---------------------------------------------------------------------------
def test_metrics_have_per_model_series_cache_and_in_flight(viewer):
    viewer.post("/v2/models/iris/versions/1/infer", json=_infer_body(X))
    viewer.post("/v2/models/iris/versions/1/infer", json=_infer_body([1] * 7))
    text = viewer.get("/metrics").text
    assert 'portal_model_requests_total{model="iris",protocol="http",route="/v2/models/{name}/versions/{version}/infer",status="200",version="1"}' in text
    assert 'portal_model_errors_total{model="iris",protocol="http",route="/v2/models/{name}/versions/{version}/infer",status="400",version="1"}' in text
    assert 'portal_model_request_duration_seconds_bucket{le="0.005",model="iris"' in text
    assert 'portal_inference_duration_seconds_count{model="iris",version="1"}' in text
    for name in ("portal_cache_hits_total", "portal_cache_misses_total", "portal_cache_loaded_bytes",
                 "portal_http_requests_in_flight", "portal_http_rejected_total"):
        assert f"\n{name}" in text
    assert 'model="nope"' not in text  # unknown names never become labels


def test_one_json_access_log_line_per_request_with_the_request_id(server, viewer):
    viewer.post("/v2/models/iris/infer", json=_infer_body(X), headers={"X-Request-ID": "trace-123"})
    response = viewer.get("/v2/models/iris/versions/77", headers={"X-Request-ID": "trace-456"})
    assert response.headers["x-request-id"] == "trace-456"
    ok, missing = server.access_line("trace-123"), server.access_line("trace-456")
    assert (ok["status"], ok["route"], ok["model"], ok["version"], ok["user"]) == (
        200, "/v2/models/{name}/infer", "iris", "2", "viewer")
    assert ok["ms"] > 0 and ok["bytes_in"] > 0 and ok["bytes_out"] > 0
    assert (missing["status"], missing["model"]) == (404, None)


def test_request_id_from_the_client_is_sanitised(viewer):
    response = viewer.get("/v2/models/iris", headers={"X-Request-ID": "bad id\twith spaces"})
    assert response.headers["x-request-id"] != "bad id\twith spaces"
    assert len(response.headers["x-request-id"]) == 32


def test_docs_and_openapi_are_served(server):
    page = httpx.get(f"{server.url}/docs")
    assert page.status_code == 200 and "/docs-assets/swagger-ui-bundle.js" in page.text
    assert "cdn." not in page.text  # works offline: the assets are served from the package
    script = httpx.get(f"{server.url}/docs-assets/swagger-ui-bundle.js")
    assert script.status_code == 200 and len(script.content) > 100_000
    spec = httpx.get(f"{server.url}/openapi.json").json()
    assert "/v2/models/{name}/infer" in spec["paths"]
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
