"""HTTP load test: the portal's OIP v2 route against two in-run baselines on the same model.

Run: .venv/bin/python bench/load.py [--model forest|digits-forest|mlp|logreg] [--bursts 7] [--requests 300]
     .venv/bin/python bench/load.py --grpc [--bursts 5]     # gRPC vs HTTP (see the end of this text)

Started in this run, each a uvicorn process on 127.0.0.1 with the same settings
(one worker, h11, no access log except the portal's own JSON one, sent to /dev/null):

    portal           `portal serve`: token check against SQLite, OIP validation, limits,
                     metrics, access log, shared session cache
    portal+batching  the same with adaptive batching on for the model
    portal-log-off   `portal serve` with the prediction log off (PORTAL_MONITOR=off):
                     portal / portal-log-off is the cost of the prediction log
    minimal          a FastAPI endpoint calling an already-open onnxruntime session
                     (onnxruntime's default session options)
    minimal-1t       the same with one intra-op thread, as the portal's sessions have:
                     portal / minimal-1t is the cost of auth, validation, metrics and logs
    load-per-request a FastAPI endpoint that opens the model on every request, like the
                     sample code of many model-serving tutorials

At concurrency 1, 8 and 32 an asyncio httpx client sends the same OIP JSON body
(one row) in short bursts, the servers taking turns burst by burst so that
other work on the machine hits them alike; it prints the median burst
throughput, p50/p95/p99 latency over all bursts, errors (non-200 answers and
broken connections) and the server's CPU time per request (from /proc, which
background load barely moves).  Targets (issue #6): portal ≥ 0.8× minimal,
≥ 20× load-per-request; (issue #7) the prediction log costs at most 5%:
portal / portal-log-off throughput ≥ 0.95 (``--log-only`` runs just those two).
The client shares the machine's cores with the servers.

``--grpc`` (issue #16) compares the doors instead, for a small model (the
30-256-256-2 MLP, one row) and a medium one (torchvision's resnet18 with random
weights, one 3×224×224 image, 602 KB per request): one ``portal serve`` process
answering over gRPC (raw contents, as tritonclient.grpc sends them) and over
HTTP (Triton's binary tensor extension, as tritonclient.http sends it), against
a minimal grpcio + onnxruntime server (``bench/_grpc.py``: same generated
messages, one intra-op thread, no token, checks, log or metrics).  The gRPC
client is grpc.aio over one channel with pre-serialized requests, so client
work is the same for every server.  Target: portal gRPC ≥ 0.8× minimal gRPC.
resnet18 meets it (0.95-0.97×: the model's ~35 ms of CPU dwarfs everything
else); the MLP does not.  With ``--bursts 5 --requests 1000`` on a 2-core
AVX-512 VM (2026-12-06), portal gRPC / minimal gRPC at concurrency 1/8/32:

    door on grpcio's thread-pool server (until 800faca)   0.66-0.71 / 0.40-0.41 / 0.47-0.54
    door on grpc.aio (now)                                0.54-0.65 / 0.59-0.65 / 0.66-0.70

The grpc.aio door serves 1,810-1,860 calls/s at concurrency 8 (1,320 before)
and 1,720-1,760 at 32 (1,110), p99 at 32 29-41 ms (54), server CPU per call
610-810 µs (710-980); at concurrency 1 its extra hops between grpc's poller
thread and the event loop cost a little latency.  The minimal server spends
340-420 µs of CPU per call, almost all of it grpcio's own machinery (its
handler ~20 µs, onnxruntime's run ~11 µs).  A py-spy profile of the portal at
concurrency 8 puts ~160 µs per call in the portal's handler: reading the
message after the token and the slot are checked (~45 µs, a second receive on
the call; reading it first would let clients without a token make the server
hold messages), the inference path ~75 µs (role check and name/alias
resolution, decoding with the REST checks, session cache, timeout watchdog,
prediction-log record, encoding), token cache ~15 µs, metrics and the access
log ~25 µs; the prediction log's writer adds ~16 µs.  0.8× for a model whose
run takes 11 µs would need all of that, which the issue asks for, under ~80 µs
of CPU in Python: not reached.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).parent))
from _common import mlp, table  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
LEVELS = (1, 8, 32)
LOG_BUDGET = 0.95  # issue #7: throughput with the log on ≥ 95% of the throughput with it off
GRPC_GOAL = 0.8  # issue #16: portal gRPC throughput ≥ 0.8× the minimal grpcio + onnxruntime server


# -- the model ---------------------------------------------------------------------
def build_model(kind: str) -> onnx.ModelProto:
    """A real model trained here on a data set scikit-learn ships.

    ``forest``: 100 trees on breast cancer (30 features, 0.16 MB, loads in ~5-10 ms);
    ``digits-forest``: 200 trees on digits (64 features, 7.5 MB, loads in ~150 ms);
    ``logreg``: scaler + logistic regression on breast cancer; ``mlp``: a 30-256-256-2 MLP.
    """
    if kind == "mlp":
        return mlp()
    from sklearn.datasets import load_breast_cancer, load_digits
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from skl2onnx import to_onnx

    x, y = load_digits(return_X_y=True) if kind == "digits-forest" else load_breast_cancer(return_X_y=True)
    x = x.astype(np.float32)
    if kind in ("forest", "digits-forest"):
        est = RandomForestClassifier(n_estimators=100 if kind == "forest" else 200, random_state=0).fit(x, y)
        return to_onnx(est, x[:1], options={id(est): {"zipmap": False}})
    clf = LogisticRegression(max_iter=2000)
    pipe = make_pipeline(StandardScaler(), clf).fit(x, y)
    return to_onnx(pipe, x[:1], options={id(clf): {"zipmap": False}})


def register(home: Path, model: onnx.ModelProto) -> str:
    """Register the model and an admin token in a fresh portal home; return the token."""
    from portal import Portal
    from portal.accounts.auth import Auth
    from portal.ingest.modelinfo import describe_model

    portal = Portal.open(home)
    data = model.SerializeToString()
    blob = portal.store.put_bytes(data)
    portal.registry.add_version("bench", blob_sha=blob.sha256, size_bytes=blob.size, source_format="onnx",
                                info=describe_model(model, size_bytes=len(data)), actor="bench")
    auth = Auth(portal.registry)
    auth.add_user("bench", "viewer", actor="bench")
    token = auth.create_token("bench", actor="bench").secret
    portal.close()
    return token


# -- the baselines (run in their own process) ------------------------------------------
def baseline_app(kind: str, model_path: str) -> object:
    """``minimal``: one session opened at start, onnxruntime's default options;
    ``minimal-1t``: the same with one intra-op thread (what the portal uses by default);
    ``load-per-request``: the model opened on every request."""
    import onnxruntime as ort
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    app = FastAPI()
    options = ort.SessionOptions()
    if kind == "minimal-1t":
        options.intra_op_num_threads = 1
    shared = None
    if kind != "load-per-request":
        shared = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])

    def run(doc: dict) -> dict:
        session = shared or ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
        tensor = doc["inputs"][0]
        x = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
        values = session.run(None, {session.get_inputs()[0].name: x})
        return {"outputs": [{"name": o.name, "shape": list(v.shape), "data": v.reshape(-1).tolist()}
                            for o, v in zip(session.get_outputs(), values)]}

    @app.post("/v2/models/bench/infer")
    def infer(doc: dict) -> JSONResponse:
        return JSONResponse(run(doc))

    @app.get("/v2/health/ready")
    def ready() -> dict:
        return {"ready": True}

    return app


def serve_baseline(kind: str, model_path: str, port: int) -> None:
    import uvicorn

    uvicorn.run(baseline_app(kind, model_path), host="127.0.0.1", port=port, access_log=False, log_level="warning")


# -- servers ----------------------------------------------------------------------------
@dataclass
class Server:
    """One door to drive: ``url`` (HTTP) or ``target`` (gRPC), with the request it sends."""

    name: str
    proc: subprocess.Popen
    url: str
    headers: dict[str, str]
    kind: str = "http"  # "http" | "grpc"
    body: bytes | None = None  # the request this door sends (default: the run's JSON body)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(name: str, command: list[str], env: dict[str, str], headers: dict[str, str]) -> Server:
    port = _free_port()
    proc = subprocess.Popen([*command, "--port", str(port)], cwd=REPO, env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                return Server(name, proc, url, headers)
        except httpx.TransportError:
            try:
                proc.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                pass
    proc.kill()
    raise RuntimeError(f"{name} did not start")


# -- load -------------------------------------------------------------------------------
def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its threads (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Burst:
    seconds: float
    latencies: list[float]
    errors: int
    cpu: float  # server CPU seconds used during the burst


async def _drive(server: Server, body: bytes, concurrency: int, total: int) -> Burst:
    latencies: list[float] = []
    errors = 0
    remaining = total
    headers = {"content-type": "application/json", **server.headers}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=120) as client:

        async def worker() -> None:
            nonlocal remaining, errors
            while remaining > 0:
                remaining -= 1
                t0 = time.perf_counter()
                try:
                    response = await client.post("/v2/models/bench/infer", content=body, headers=headers)
                    ok = response.status_code == 200
                except httpx.TransportError:
                    ok = False
                latencies.append(time.perf_counter() - t0)
                errors += not ok

        cpu0 = _cpu_seconds(server.proc.pid)
        start_time = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - start_time
        cpu = _cpu_seconds(server.proc.pid) - cpu0
    return Burst(seconds, latencies, errors, cpu)


async def _drive_grpc(server: Server, body: bytes, concurrency: int, total: int) -> Burst:
    """Like ``_drive`` over gRPC: ``concurrency`` callers on one channel (HTTP/2 streams), bytes as they are."""
    import grpc
    from _grpc import METHOD

    latencies: list[float] = []
    errors = 0
    remaining = total
    metadata = tuple(server.headers.items())
    options = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
    async with grpc.aio.insecure_channel(server.url, options=options) as channel:
        call = channel.unary_unary(METHOD)

        async def worker() -> None:
            nonlocal remaining, errors
            while remaining > 0:
                remaining -= 1
                t0 = time.perf_counter()
                try:
                    await call(body, metadata=metadata, timeout=120)
                    ok = True
                except grpc.aio.AioRpcError:
                    ok = False
                latencies.append(time.perf_counter() - t0)
                errors += not ok

        cpu0 = _cpu_seconds(server.proc.pid)
        start_time = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - start_time
        cpu = _cpu_seconds(server.proc.pid) - cpu0
    return Burst(seconds, latencies, errors, cpu)


def drive(server: Server, body: bytes, concurrency: int, total: int) -> Burst:
    body = server.body if server.body is not None else body
    run = _drive_grpc if server.kind == "grpc" else _drive
    return asyncio.run(run(server, body, concurrency, total))


@dataclass
class Result:
    """All bursts of one server at one concurrency level."""

    server: str
    concurrency: int
    bursts: list[Burst]

    @property
    def requests(self) -> int:
        return sum(len(b.latencies) for b in self.bursts)

    @property
    def errors(self) -> int:
        return sum(b.errors for b in self.bursts)

    @property
    def throughput(self) -> float:
        """Median over bursts: the bursts of all servers are interleaved, so a burst
        slowed by other work on the machine does not decide the figure."""
        return statistics.median(len(b.latencies) / b.seconds for b in self.bursts)

    @property
    def cpu_per_request(self) -> float:
        return statistics.median(b.cpu / len(b.latencies) for b in self.bursts)

    def pct(self, q: float) -> float:
        return float(np.percentile([x for b in self.bursts for x in b.latencies], q) * 1000)


def paired(results: dict[str, Result], a: str, b: str) -> float:
    """Median of the throughput ratios of bursts run back to back: background load
    on a shared machine moves both sides of a pair alike."""
    pairs = zip(results[a].bursts, results[b].bursts, strict=False)
    return statistics.median((len(x.latencies) / x.seconds) / (len(y.latencies) / y.seconds) for x, y in pairs)


def measure(servers: list[Server], body: bytes, level: int, *, bursts: int, requests: int, slow: int) -> dict[str, Result]:
    results = {s.name: Result(s.name, level, []) for s in servers}
    for i in range(bursts):
        for server in servers:
            if server.name == "load-per-request" and i >= max(1, bursts // 3):
                continue  # a few bursts are plenty for a server this slow
            count = slow if server.name == "load-per-request" else requests
            results[server.name].bursts.append(drive(server, body, level, count))
    return results


# -- gRPC vs HTTP (issue #16) -------------------------------------------------------------
def build_grpc_model(kind: str) -> tuple[onnx.ModelProto, tuple[int, ...]]:
    """``mlp`` (small) or ``resnet18`` (medium, random weights), and the shape of one request's input."""
    if kind == "mlp":
        return mlp(), (1, 30)
    import io
    import warnings

    import torch
    import torchvision

    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.zeros(1, 3, 224, 224)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(model, (x,), buffer, dynamo=False, opset_version=17, input_names=["x"],
                          output_names=["logits"], dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}})
    return onnx.load_from_string(buffer.getvalue()), (1, 3, 224, 224)


def start_minimal_grpc(model_path: Path) -> Server:
    import grpc
    from _grpc import READY

    port = _free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--model-path", str(model_path), "--serve-baseline",
                             "minimal-grpc", "--port", str(port)], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    target = f"127.0.0.1:{port}"
    with grpc.insecure_channel(target) as channel:
        try:
            channel.unary_unary(READY)(b"", timeout=60, wait_for_ready=True)
        except grpc.RpcError:
            proc.kill()
            raise RuntimeError("minimal gRPC did not start") from None
    return Server("minimal gRPC", proc, target, {}, kind="grpc")


def _cpu_flags() -> str:
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split("flags", 1)[1].split("\n", 1)[0].split())
    except (OSError, IndexError):
        return "unknown"
    return " ".join(f for f in ("avx2", "avx512f", "avx512_vnni", "amx_tile") if f in flags) or "no AVX2"


def grpc_doors(kind: str, home: Path) -> tuple[list[Server], np.ndarray, str]:
    """Start the portal (both doors) and the minimal gRPC server for one model; check every door answers right."""
    import onnxruntime as ort
    import grpc
    from _grpc import METHOD, check_response, http_binary_body, infer_request

    model, shape = build_grpc_model(kind)
    model_path = home / "model.onnx"
    onnx.save(model, model_path)
    token = register(home, model)
    name, output = model.graph.input[0].name, model.graph.output[0].name
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    grpc_port = _free_port()
    env = {"PORTAL_HOME": str(home), "PORTAL_API_MAX_CONCURRENCY": "256"}
    portal = start("portal HTTP", [sys.executable, "-m", "portal.cli", "serve", "--grpc-port", str(grpc_port)],
                   env, {"authorization": f"Bearer {token}"})
    http_body, http_headers = http_binary_body(name, x, output)
    portal.body, portal.headers = http_body, {**portal.headers, **http_headers}
    request = infer_request("bench", name, x, output)
    doors = [Server("portal gRPC", portal.proc, f"127.0.0.1:{grpc_port}", {"authorization": f"Bearer {token}"},
                    kind="grpc", body=request), portal]
    doors.append(start_minimal_grpc(model_path))
    minimal = doors[-1]
    minimal.body = request
    expected = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"]).run([output], {name: x})[0]
    for door in (doors[0], minimal):
        with grpc.insecure_channel(door.url, options=[("grpc.max_receive_message_length", -1)]) as channel:
            answer = channel.unary_unary(METHOD)(request, metadata=tuple(door.headers.items()), timeout=60)
            check_response(answer, output, expected)
    reply = httpx.post(f"{portal.url}/v2/models/bench/infer", content=http_body, headers=portal.headers, timeout=60)
    assert reply.status_code == 200, reply.text
    return doors, x, f"{kind} ({len(model.SerializeToString()) / 1e6:.1f} MB, request {x.nbytes:,} bytes)"


def grpc_main(args: argparse.Namespace) -> None:
    print(f"gRPC vs HTTP: {os.cpu_count()} CPUs ({_cpu_flags()}), load average {os.getloadavg()[0]:.1f} at start; "
          "clients and servers share the machine (and other people's work: ratios are paired burst by burst)",
          flush=True)
    rows, verdicts = [], []
    for kind in args.grpc_models.split(","):
        requests = args.medium_requests if kind == "resnet18" else args.requests
        home = Path(tempfile.mkdtemp(prefix="portal-load-grpc-"))
        doors, _, label = grpc_doors(kind, home)
        try:
            for door in doors:
                drive(door, b"", 4, max(8, requests // 3))  # warm-up
            for level in LEVELS:
                results = measure(doors, b"", level, bursts=args.bursts, requests=requests, slow=requests)
                vs_minimal = paired(results, "portal gRPC", "minimal gRPC")
                vs_http = paired(results, "portal gRPC", "portal HTTP")
                verdicts.append(vs_minimal >= GRPC_GOAL)
                print(f"{label}, concurrency {level}: portal gRPC / minimal gRPC {vs_minimal:.2f} "
                      f"({'PASS' if vs_minimal >= GRPC_GOAL else 'FAIL'} against ≥ {GRPC_GOAL}), "
                      f"portal gRPC / portal HTTP {vs_http:.2f}", flush=True)
                for r in results.values():
                    rows.append([kind, r.server, level, r.requests, r.errors, f"{r.throughput:,.1f}",
                                 f"{r.pct(50):.2f}", f"{r.pct(99):.2f}", f"{r.cpu_per_request * 1e6:,.0f}",
                                 f"{paired(results, r.server, 'minimal gRPC'):.2f}"])
        finally:
            for proc in {id(d.proc): d.proc for d in doors}.values():
                proc.terminate()
                proc.wait(timeout=15)
    print()
    print(table(rows, ["model", "server", "conc", "requests", "errors", "req/s", "p50 ms", "p99 ms",
                       "server CPU µs/req", "× minimal gRPC (paired)"]))
    print(f"\nportal gRPC ≥ {GRPC_GOAL}× minimal gRPC at every level: {'PASS' if all(verdicts) else 'FAIL'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("forest", "digits-forest", "mlp", "logreg"), default="forest")
    parser.add_argument("--requests", type=int, default=300, help="requests per burst (fast servers)")
    parser.add_argument("--slow-requests", type=int, default=60, help="requests per burst (load-per-request)")
    parser.add_argument("--bursts", type=int, default=7, help="interleaved bursts per server and level")
    parser.add_argument("--log-only", action="store_true", help="only portal vs portal-log-off (the log's cost)")
    parser.add_argument("--grpc", action="store_true", help="gRPC vs HTTP vs a minimal gRPC server, MLP and resnet18")
    parser.add_argument("--medium-requests", type=int, default=48, help="--grpc: requests per burst (resnet18)")
    parser.add_argument("--grpc-models", default="mlp,resnet18", help="--grpc: the models, of mlp and resnet18")
    parser.add_argument("--serve-baseline", choices=("minimal", "minimal-1t", "load-per-request", "minimal-grpc"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--model-path", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_baseline == "minimal-grpc":
        from _grpc import serve_minimal

        serve_minimal(args.model_path, args.port)
        return
    if args.serve_baseline:
        serve_baseline(args.serve_baseline, args.model_path, args.port)
        return

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # so that `finally` stops the servers
    if args.grpc:
        grpc_main(args)
        return
    home = Path(tempfile.mkdtemp(prefix="portal-load-"))
    model = build_model(args.model)
    model_path = home / "model.onnx"
    onnx.save(model, model_path)
    token = register(home, model)
    n_features = model.graph.input[0].type.tensor_type.shape.dim[1].dim_value
    x = np.random.default_rng(0).random((1, n_features), dtype=np.float32)
    body = json.dumps({"inputs": [{"name": model.graph.input[0].name, "datatype": "FP32", "shape": [1, n_features],
                                   "data": x.reshape(-1).tolist()}]}).encode()
    auth = {"Authorization": f"Bearer {token}"}
    env = {"PORTAL_HOME": str(home), "PORTAL_API_MAX_CONCURRENCY": "256"}
    baseline = [sys.executable, __file__, "--model-path", str(model_path), "--serve-baseline"]
    serve = [sys.executable, "-m", "portal.cli", "serve", "--grpc-port", "0"]  # HTTP only: no two servers on 8001
    servers = [
        start("portal", serve, env, auth),
        start("portal-log-off", serve, {**env, "PORTAL_MONITOR": "off"}, auth),
    ]
    if not args.log_only:
        servers += [
            start("portal+batching", serve, {**env, "PORTAL_API_BATCHING": "bench"}, auth),
            start("minimal", [*baseline, "minimal"], {}, {}),
            start("minimal-1t", [*baseline, "minimal-1t"], {}, {}),
            start("load-per-request", [*baseline, "load-per-request"], {}, {}),
        ]
    baseline_name = "portal-log-off" if args.log_only else "minimal"
    try:
        load = os.getloadavg()[0]
        print(f"model: {args.model} ({len(model.SerializeToString()):,} bytes, input {n_features} float32); "
              f"{os.cpu_count()} CPUs, load average {load:.1f} at start; client and servers on 127.0.0.1", flush=True)
        for server in servers:
            drive(server, body, 4, 100 if server.name != "load-per-request" else 20)  # warm-up
        rows, log_ok = [], True
        for level in LEVELS:
            results = measure(servers, body, level, bursts=args.bursts, requests=args.requests, slow=args.slow_requests)
            log_ratio = paired(results, "portal", "portal-log-off")
            cpu_ratio = results["portal"].cpu_per_request / results["portal-log-off"].cpu_per_request
            log_ok &= log_ratio >= LOG_BUDGET
            print(f"concurrency {level}: prediction log on/off throughput {log_ratio:.3f} "
                  f"({'PASS' if log_ratio >= LOG_BUDGET else 'FAIL'} against ≥ {LOG_BUDGET}), "
                  f"server CPU per request on/off {cpu_ratio:.3f}", flush=True)
            for r in results.values():
                rows.append([r.server, level, r.requests, r.errors, f"{r.throughput:,.0f}", f"{r.pct(50):.2f}",
                             f"{r.pct(95):.2f}", f"{r.pct(99):.2f}", f"{r.cpu_per_request * 1e6:,.0f}",
                             f"{paired(results, r.server, baseline_name):.2f}"])
            if args.log_only:
                continue
            print(f"concurrency {level}: portal/minimal {paired(results, 'portal', 'minimal'):.2f}, "
                  f"portal/minimal-1t {paired(results, 'portal', 'minimal-1t'):.2f}, "
                  f"portal+batching/portal {paired(results, 'portal+batching', 'portal'):.2f}, "
                  f"portal/load-per-request {paired(results, 'portal', 'load-per-request'):.1f} "
                  "(medians of burst-by-burst ratios)", flush=True)
        print()
        print(table(rows, ["server", "conc", "requests", "errors", "req/s", "p50 ms", "p95 ms", "p99 ms",
                           "server CPU µs/req", f"× {baseline_name} (paired)"]))
        print(f"\nprediction log overhead (throughput on/off ≥ {LOG_BUDGET} at every level): "
              f"{'PASS' if log_ok else 'FAIL'}")
    finally:
        for server in servers:
            server.proc.terminate()
        for server in servers:
            server.proc.wait(timeout=15)


if __name__ == "__main__":
    main()
