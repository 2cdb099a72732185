"""The Open Inference Protocol v2 over gRPC: KServe's and Triton's gRPC clients work unchanged.

``portal serve`` starts a ``GrpcServer`` next to the HTTP app (``--grpc-port``,
8001 by default, 0 for none), in the same process and over the same
``ApiContext``: same tokens (``authorization: Bearer TOKEN`` metadata), roles,
limits, prediction log and ``/metrics``.

    inference.proto          the protocol (KServe's grpc_predict_v2, package ``inference``)
    inference_pb2*.py(i)     code generated from it, checked in (see the .proto for how to regenerate)
    codec.py                 ModelInferRequest / ModelInferResponse ⇄ numpy tensors
    door.py                  token, slots, read timeout, status codes, metrics, access log
    tokencache.py            checked tokens remembered until the database file changes (revocations count at once)
    service.py               the six methods of ``inference.GRPCInferenceService``
    server.py                the ``grpc.server`` and its settings

The generated messages register the protobuf package ``inference``, as
``tritonclient.grpc`` does: the two cannot be imported into one process, so
this package loads them only when a server starts.
"""

from __future__ import annotations

from .server import GrpcServer, GrpcStartError

__all__ = ["GrpcServer", "GrpcStartError"]
