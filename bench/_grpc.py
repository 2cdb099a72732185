"""The gRPC side of ``bench/load.py --grpc``: request bodies and the minimal grpcio + onnxruntime server.

The minimal server is what a "serve this ONNX model over gRPC" example looks
like: the same generated messages as the portal (``portal/api/grpc``), one
already-open onnxruntime session with one intra-op thread (as the portal's
sessions have), raw contents in and out, no token, no checks, no log, no
metrics.  It runs in its own process, like every server of the benchmark.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np

METHOD = "/inference.GRPCInferenceService/ModelInfer"
READY = "/inference.GRPCInferenceService/ServerReady"
MINIMAL_THREADS = 64


def infer_request(model: str, name: str, x: np.ndarray, output: str) -> bytes:
    """A serialized ``ModelInferRequest`` with ``x`` as raw contents (what tritonclient.grpc sends)."""
    from portal.api.grpc.server import load_messages

    pb = load_messages()
    request = pb.ModelInferRequest(model_name=model)
    request.inputs.add(name=name, datatype="FP32", shape=x.shape)
    request.outputs.add(name=output)
    request.raw_input_contents.append(np.ascontiguousarray(x, dtype="<f4").tobytes())
    return request.SerializeToString()


def check_response(data: bytes, output: str, expected: np.ndarray) -> None:
    """Fail unless ``data`` is a ``ModelInferResponse`` whose ``output`` equals ``expected``."""
    from portal.api.grpc.server import load_messages

    response = load_messages().ModelInferResponse.FromString(data)
    (tensor,) = [t for t in response.outputs if t.name == output]
    got = np.frombuffer(response.raw_output_contents[0], dtype="<f4").reshape(tuple(tensor.shape))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def http_binary_body(name: str, x: np.ndarray, output: str) -> tuple[bytes, dict[str, str]]:
    """An OIP v2 HTTP body with Triton's binary tensor extension (tritonclient.http's default), and its headers."""
    raw = np.ascontiguousarray(x, dtype="<f4").tobytes()
    head = json.dumps({
        "inputs": [{"name": name, "datatype": "FP32", "shape": list(x.shape), "parameters": {"binary_data_size": len(raw)}}],
        "outputs": [{"name": output, "parameters": {"binary_data": True}}],
    }).encode()
    return head + raw, {"content-type": "application/octet-stream", "inference-header-content-length": str(len(head))}


def serve_minimal(model_path: str, port: int) -> None:
    """The minimal gRPC server on 127.0.0.1:``port`` (blocks)."""
    import grpc
    import onnxruntime as ort

    from portal.api.grpc import inference_pb2 as pb
    from portal.api.grpc import inference_pb2_grpc as pb_grpc

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    outputs = [o.name for o in session.get_outputs()]

    class Minimal(pb_grpc.GRPCInferenceServiceServicer):
        def ServerReady(self, request: object, context: object) -> object:  # noqa: N802 - the protocol's name
            return pb.ServerReadyResponse(ready=True)

        def ModelInfer(self, request: pb.ModelInferRequest, context: object) -> object:  # noqa: N802
            feeds = {t.name: np.frombuffer(raw, dtype="<f4").reshape(tuple(t.shape))
                     for t, raw in zip(request.inputs, request.raw_input_contents, strict=True)}
            wanted = [o.name for o in request.outputs] or outputs
            values = session.run(wanted, feeds)
            response = pb.ModelInferResponse(model_name=request.model_name, model_version="1", id=request.id)
            for name, value in zip(wanted, values, strict=True):
                response.outputs.add(name=name, datatype="FP32", shape=value.shape)
                response.raw_output_contents.append(value.astype("<f4").tobytes())
            return response

    server = grpc.server(ThreadPoolExecutor(max_workers=MINIMAL_THREADS),
                         options=[("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)])
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(Minimal(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()
