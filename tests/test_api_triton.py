"""The official Triton HTTP client (tritonclient.http) against the portal, unchanged.

Server and model metadata, readiness, and FP32 and BYTES inference, both as
JSON tensors and with Triton's binary tensor extension (the client's default).
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from api_fixtures import add_model, iris_model, make_users, serve, text_model
from portal import Portal

httpclient = pytest.importorskip("tritonclient.http")


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    home = tmp_path_factory.mktemp("triton-home")
    portal = Portal.open(home)
    try:
        tokens = make_users(portal)
        add_model(portal, "iris", iris_model())
        add_model(portal, "iris", iris_model())
        portal.set_alias("iris:1", "production", actor="test")
        add_model(portal, "text", text_model())
    finally:
        portal.close()
    for server in serve(home):
        triton = httpclient.InferenceServerClient(url=server.url.removeprefix("http://"))
        # a fresh dict per call: the client adds Inference-Header-Content-Length to the dict it is given
        yield triton, lambda: tokens.headers("viewer")
        triton.close()


def _expected(x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(iris_model().SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_server_liveness_readiness_and_metadata(client):
    triton, headers = client
    assert triton.is_server_live() and triton.is_server_ready()
    meta = triton.get_server_metadata()
    assert meta["name"] == "model-portal" and "binary_tensor_data" in meta["extensions"]


def test_model_metadata_and_readiness(client):
    triton, headers = client
    meta = triton.get_model_metadata("iris", headers=headers())
    assert meta["platform"] == "onnxruntime_onnx" and meta["versions"] == ["2", "1"]
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    assert triton.get_model_metadata("iris", model_version="production", headers=headers())["versions"] == ["1"]
    assert triton.is_model_ready("iris", headers=headers())
    assert not triton.is_model_ready("nope", headers=headers())


@pytest.mark.parametrize("binary", [False, True])
def test_fp32_inference(client, binary):
    triton, headers = client
    x = np.random.default_rng(1).random((3, 4), dtype=np.float32)
    tensor = httpclient.InferInput("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    result = triton.infer("iris", [tensor], model_version="1", request_id="r1", headers=headers(),
                          outputs=[httpclient.InferRequestedOutput("probs", binary_data=binary)])
    np.testing.assert_allclose(result.as_numpy("probs"), _expected(x), rtol=1e-6)
    response = result.get_response()
    assert (response["model_name"], response["model_version"], response["id"]) == ("iris", "1", "r1")


def test_inference_with_the_clients_defaults(client):
    triton, headers = client
    x = np.ones((1, 4), np.float32)
    tensor = httpclient.InferInput("x", [1, 4], "FP32")
    tensor.set_data_from_numpy(x)
    np.testing.assert_allclose(triton.infer("iris", [tensor], headers=headers()).as_numpy("probs"), _expected(x), rtol=1e-6)


@pytest.mark.parametrize("binary", [False, True])
def test_bytes_inference(client, binary):
    triton, headers = client
    words = np.array(["dog", "cat", "ému", "unknown"], dtype=object)
    tensor = httpclient.InferInput("text", [4], "BYTES")
    tensor.set_data_from_numpy(words, binary_data=binary)
    outputs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in ("label_id", "echo")]
    result = triton.infer("text", [tensor], outputs=outputs, headers=headers())
    assert result.as_numpy("label_id").tolist() == [1, 0, 2, -1]
    echoed = [w.decode() if isinstance(w, bytes) else w for w in result.as_numpy("echo").tolist()]
    assert echoed == ["dog", "cat", "ému", "unknown"]


def test_errors_reach_the_client_as_exceptions(client):
    triton, headers = client
    tensor = httpclient.InferInput("x", [1, 3], "FP32")
    tensor.set_data_from_numpy(np.ones((1, 3), np.float32), binary_data=False)
    with pytest.raises(Exception, match=r"expected shape \[-1, 4\], got \[1, 3\]"):
        triton.infer("iris", [tensor], headers=headers())
    with pytest.raises(Exception, match="missing token"):
        triton.get_model_metadata("iris")
