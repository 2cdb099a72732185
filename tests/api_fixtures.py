"""Shared pieces of the REST API tests: tiny real ONNX models, users, a real server.

The server is the real ``portal serve`` command in a child process on
127.0.0.1 and a free port, over a real SQLite file; tests talk to it over HTTP.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from portal import Portal
from portal.accounts.auth import Auth
from portal.ingest.modelinfo import describe_model

REPO = Path(__file__).resolve().parents[1]
ROLES = ("viewer", "analyst", "admin")


# -- models ---------------------------------------------------------------------
def _model(nodes: list[Any], inputs: list[Any], outputs: list[Any], inits: list[Any] = (), ml: bool = False) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid("ai.onnx.ml", 3)] if ml else [])
    model = helper.make_model(graph, opset_imports=opsets, ir_version=8)
    onnx.checker.check_model(model)
    return model


def iris_model() -> onnx.ModelProto:
    """x FP32 [N, 4] → probs FP32 [N, 3] (Gemm + Softmax), like a small classifier."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(size=(4, 3)).astype(np.float32), "W")
    b = numpy_helper.from_array(np.zeros(3, np.float32), "B")
    return _model(
        [helper.make_node("Gemm", ["x", "W", "B"], ["z"]), helper.make_node("Softmax", ["z"], ["probs"], axis=1)],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 3])], [w, b],
    )


def text_model() -> onnx.ModelProto:
    """text BYTES [N] → label_id INT64 [N] (an ai.onnx.ml LabelEncoder) and echo BYTES [N]."""
    encoder = helper.make_node("LabelEncoder", ["text"], ["label_id"], domain="ai.onnx.ml",
                               keys_strings=["cat", "dog", "ému"], values_int64s=[0, 1, 2], default_int64=-1)
    return _model(
        [encoder, helper.make_node("Identity", ["text"], ["echo"])],
        [helper.make_tensor_value_info("text", TensorProto.STRING, ["N"])],
        [helper.make_tensor_value_info("label_id", TensorProto.INT64, ["N"]),
         helper.make_tensor_value_info("echo", TensorProto.STRING, ["N"])], ml=True,
    )


def odd_names_model() -> onnx.ModelProto:
    """Names as TensorFlow exports them: input ``serving/x:0``, output ``out/y:0`` (y = 2x)."""
    two = numpy_helper.from_array(np.array(2.0, np.float32), "two")
    return _model(
        [helper.make_node("Mul", ["serving/x:0", "two"], ["out/y:0"])],
        [helper.make_tensor_value_info("serving/x:0", TensorProto.FLOAT, ["N", 2])],
        [helper.make_tensor_value_info("out/y:0", TensorProto.FLOAT, ["N", 2])], [two],
    )


DTYPE_INPUTS = {
    "b": (TensorProto.BOOL, "BOOL"), "i8": (TensorProto.INT8, "INT8"), "u8": (TensorProto.UINT8, "UINT8"),
    "i32": (TensorProto.INT32, "INT32"), "i64": (TensorProto.INT64, "INT64"),
    "f16": (TensorProto.FLOAT16, "FP16"), "f64": (TensorProto.DOUBLE, "FP64"),
}


def dtypes_model() -> onnx.ModelProto:
    """One input per datatype (BOOL, INT8, UINT8, INT32, INT64, FP16, FP64), each echoed as ``<name>_out``."""
    return _model(
        [helper.make_node("Identity", [n], [f"{n}_out"]) for n in DTYPE_INPUTS],
        [helper.make_tensor_value_info(n, t, ["N", 2]) for n, (t, _) in DTYPE_INPUTS.items()],
        [helper.make_tensor_value_info(f"{n}_out", t, ["N", 2]) for n, (t, _) in DTYPE_INPUTS.items()],
    )


def slow_model(width: int = 512, layers: int = 100) -> onnx.ModelProto:
    """x FP32 [1, width], rows INT64 [1, 2] → y FP32 [1, width].

    x is broadcast to ``rows`` (e.g. [32768, 1]: 1.7 TFLOP, many seconds on any CPU), then
    multiplied ``layers`` times and averaged, so the request stays tiny.  The zero
    ``rows`` of the loader's warm-up cannot broadcast, so loading stays quick.
    """
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(width, width)))
    nodes = [helper.make_node("Reshape", ["rows", "flat"], ["target"]), helper.make_node("Expand", ["x", "target"], ["h"])]
    prev = "h"
    for i in range(layers):
        nodes.append(helper.make_node("MatMul", [prev, "W"], [f"h{i}"]))
        prev = f"h{i}"
    nodes.append(helper.make_node("ReduceMean", [prev], ["y"], axes=[0], keepdims=1))
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width]),
                          helper.make_tensor_value_info("rows", TensorProto.INT64, [1, 2])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, width])],
                  [numpy_helper.from_array(q.astype(np.float32), "W"), numpy_helper.from_array(np.array([-1], np.int64), "flat")])


def add_model(portal: Portal, name: str, model: onnx.ModelProto, *, owner: str = "", **meta: Any) -> str:
    """Register ``model`` as the next version of ``name`` directly (no sandbox); return its ref."""
    data = model.SerializeToString()
    blob = portal.store.put_bytes(data)
    task = meta.pop("task", "other")
    version = portal.registry.add_version(
        name, blob_sha=blob.sha256, size_bytes=blob.size, source_format="onnx",
        info=describe_model(model, size_bytes=len(data)), meta=meta, actor=owner, model_fields={"task": task},
    )
    return version.ref


# -- users ------------------------------------------------------------------------
@dataclass
class Tokens:
    """One token per role, plus a revoked one and one of a deleted user."""

    by_role: dict[str, str] = field(default_factory=dict)
    revoked: str = ""
    deleted_user: str = ""

    def headers(self, who: str | None) -> dict[str, str]:
        token = {"revoked": self.revoked, "deleted": self.deleted_user}.get(who or "", self.by_role.get(who or ""))
        return {"Authorization": f"Bearer {token}"} if token else {}


def make_users(portal: Portal) -> Tokens:
    """Users viewer/analyst/admin (named after their roles) with a token each, and two dead tokens."""
    auth = Auth(portal.registry)
    tokens = Tokens()
    for role in ROLES:
        auth.add_user(role, role, actor="test")
        tokens.by_role[role] = auth.create_token(role, actor="test", label="tests").secret
    revoked = auth.create_token("viewer", actor="test", label="to revoke")
    auth.revoke_token(revoked.info.id, actor="test")
    tokens.revoked = revoked.secret
    auth.add_user("leaver", "admin", actor="test")
    tokens.deleted_user = auth.create_token("leaver", actor="test").secret
    auth.delete_user("leaver", actor="test")
    return tokens


# -- the server ------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``portal serve`` in a child process; ``url``, ``log`` (stderr) and ``stop()``.

    With ``grpc=True`` it also serves gRPC on a free port (``grpc_target``); else
    ``--grpc-port 0``, so that test servers never contend for the default 8001.
    """

    def __init__(self, home: Path, *, env: dict[str, str] | None = None, args: tuple[str, ...] = (),
                 grpc: bool = False) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.grpc_port = free_port() if grpc else 0
        self.grpc_target = f"127.0.0.1:{self.grpc_port}"
        if "--grpc-port" not in args:
            args = (*args, "--grpc-port", str(self.grpc_port))
        self.log_path = home / f"server-{self.port}.log"
        full_env = {**os.environ, "PORTAL_HOME": str(home), "PYTHONDONTWRITEBYTECODE": "1", **(env or {})}
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "portal.cli", "serve", "--port", str(self.port), *args],
            cwd=REPO, env=full_env, stdout=self._log, stderr=subprocess.STDOUT,
        )
        self._wait_ready(deadline=time.monotonic() + 60)

    def _wait_ready(self, *, deadline: float) -> None:
        with httpx.Client(timeout=2) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"portal serve exited with {self.proc.returncode}:\n{self.log()}")
                try:
                    if client.get(f"{self.url}/v2/health/ready").status_code == 200:
                        return
                except httpx.TransportError:
                    try:
                        self.proc.wait(timeout=0.05)  # wait on the child, not a blind sleep
                    except subprocess.TimeoutExpired:
                        pass
        self.stop()
        raise RuntimeError(f"portal serve was not ready in time:\n{self.log()}")

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def access_lines(self) -> list[dict[str, Any]]:
        import json

        lines = []
        for line in self.log().splitlines():
            if line.startswith("{"):
                lines.append(json.loads(line))
        return lines

    def access_line(self, request_id: str, *, timeout: float = 10) -> dict[str, Any]:
        """The access-log line of ``request_id``: written just after the response is sent, so wait for it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.access_lines():
                if line["request_id"] == request_id:
                    return line
            try:
                self.proc.wait(timeout=0.02)  # lets the server write; returns at once if it died
            except subprocess.TimeoutExpired:
                pass
        raise AssertionError(f"no access-log line for request {request_id}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def serve(home: Path, **kwargs: Any) -> Iterator[Server]:
    """A generator fixture body: yield a running server, stop it afterwards."""
    server = Server(home, **kwargs)
    try:
        yield server
    finally:
        server.stop()
