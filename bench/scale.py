"""Beyond one machine: Ray Serve replicas vs one process, and the registry on SQLite vs PostgreSQL.

Run: .venv/bin/python bench/scale.py [--bursts 5] [--requests 200] [--concurrency 8] [--iterations 150]

(a) REST throughput, 10 models (30-64-64-2 MLPs, one row per request, models
    taken round-robin), concurrency ``--concurrency``: the single-process
    `portal serve` against `portal serve --ray` with 1 and then 2 model-server
    replicas (each replica may hold all 10 models).  Each Ray configuration is
    started on its own and measured burst by burst, interleaved with the
    single-process server, which stays up the whole run; ratios are medians of
    back-to-back burst pairs (see bench/load.py).
(b) Registry operations per second: one operation is add a version, set an
    alias on it, or resolve the alias (a writer does all three in turn, on its
    own model), with 1 and 8 writer processes, on a SQLite file and on a
    throw-away PostgreSQL 15 started here the way tests/pg.py does.
Everything runs on 127.0.0.1 and shares this machine's cores with the clients.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _common import mlp, table  # noqa: E402
from load import Burst, Result, Server, _free_port, paired  # noqa: E402
from pg import running_postgres  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
N_MODELS = 10


# -- (a) REST --------------------------------------------------------------------------------
def prepare_home(home: Path) -> tuple[str, list[tuple[str, bytes]]]:
    """Register 10 MLPs and a viewer; return the token and (path, body) per model."""
    import json

    from portal import Portal
    from portal.accounts.auth import Auth
    from portal.ingest.modelinfo import describe_model

    portal = Portal.open(home)
    requests = []
    x = np.random.default_rng(0).random((1, 30), dtype=np.float32)
    body = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 30],
                                   "data": x.reshape(-1).tolist()}]}).encode()
    for i in range(N_MODELS):
        model = mlp(30, 64, 2, seed=i)
        data = model.SerializeToString()
        blob = portal.store.put_bytes(data)
        portal.registry.add_version(f"m{i}", blob_sha=blob.sha256, size_bytes=blob.size, source_format="onnx",
                                    info=describe_model(model, size_bytes=len(data)), actor="bench")
        requests.append((f"/v2/models/m{i}/infer", body))
    auth = Auth(portal.registry)
    auth.add_user("bench", "viewer", actor="bench")
    token = auth.create_token("bench", actor="bench").secret
    portal.close()
    return token, requests


def start_server(name: str, args: list[str], env: dict[str, str], token: str, *, wait_s: float = 180) -> Server:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "portal.cli", "serve", "--port", str(port), *args], cwd=REPO,
                            env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                return Server(name, proc, url, {"Authorization": f"Bearer {token}"})
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=0.2)
    proc.kill()
    raise RuntimeError(f"{name} did not start in {wait_s:.0f} s")


def stop_server(server: Server) -> None:
    server.proc.send_signal(signal.SIGTERM)
    try:
        server.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()


async def _drive_mix(server: Server, requests: list[tuple[str, bytes]], concurrency: int, total: int) -> Burst:
    latencies: list[float] = []
    errors = 0
    issued = 0
    headers = {**server.headers, "content-type": "application/json"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=120) as client:

        async def worker() -> None:
            nonlocal issued, errors
            while issued < total:
                path, body = requests[issued % len(requests)]
                issued += 1
                t0 = time.perf_counter()
                try:
                    ok = (await client.post(path, content=body, headers=headers)).status_code == 200
                except httpx.TransportError:
                    ok = False
                latencies.append(time.perf_counter() - t0)
                errors += not ok

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - start
    return Burst(seconds, latencies, errors, float("nan"))


def drive(server: Server, requests: list[tuple[str, bytes]], concurrency: int, total: int) -> Burst:
    return asyncio.run(_drive_mix(server, requests, concurrency, total))


def rest_phase(single: Server, ray: Server, requests: list[tuple[str, bytes]], args: argparse.Namespace) -> dict[str, Result]:
    for server in (single, ray):
        drive(server, requests, args.concurrency, 4 * N_MODELS)  # every model loaded everywhere
    results = {s.name: Result(s.name, args.concurrency, []) for s in (single, ray)}
    for _ in range(args.bursts):
        for server in (single, ray):
            results[server.name].bursts.append(drive(server, requests, args.concurrency, args.requests))
    return results


def run_rest(args: argparse.Namespace) -> None:
    home = Path(tempfile.mkdtemp(prefix="portal-scale-"))
    token, requests = prepare_home(home)
    env = {"PORTAL_HOME": str(home), "PORTAL_API_MAX_CONCURRENCY": "256", "RAY_USAGE_STATS_ENABLED": "0"}
    single = start_server("portal serve", [], env, token)
    rows = []
    try:
        for replicas in (1, 2):
            t0 = time.perf_counter()
            ray = start_server(f"ray, {replicas} replica(s)", ["--ray", "--replicas", str(replicas),
                               "--models-per-replica", str(N_MODELS), "--num-cpus", str(os.cpu_count() or 1)],
                               env, token)
            started = time.perf_counter() - t0
            try:
                results = rest_phase(single, ray, requests, args)
            finally:
                stop_server(ray)
            for r in results.values():
                ratio = 1.0 if r.server == single.name else paired(results, r.server, single.name)
                rows.append([f"{r.server}" + ("" if r.server != single.name else f" (phase {replicas})"),
                             r.requests, r.errors, f"{r.throughput:,.0f}", f"{r.pct(50):.2f}", f"{r.pct(99):.2f}",
                             f"{ratio:.2f}", f"{started:.0f} s" if r.server != single.name else ""])
            print(f"  phase with {replicas} Ray replica(s) done", flush=True)
    finally:
        stop_server(single)
        shutil.rmtree(home, ignore_errors=True)
    print(table(rows, ["server", "requests", "errors", "req/s", "p50 ms", "p99 ms", "× single (paired)", "start-up"]))


# -- (b) registry -----------------------------------------------------------------------------
def _writer(url: str, worker: int, iterations: int, ready: mp.Barrier, out: mp.Queue) -> None:
    from portal.storage.registry import Registry

    registry = Registry.open(url)
    info = {"inputs": [], "outputs": [], "opset": 17}
    name = f"w{worker}"

    def one(i: int) -> None:
        version = registry.add_version(name, blob_sha=uuid.uuid4().hex * 2, size_bytes=1, source_format="onnx",
                                       info=info, actor="bench")
        registry.set_alias(version.ref, "prod", actor="bench")
        assert registry.resolve(f"{name}@prod").version == version.version

    one(-1)  # connect, create the model: not timed
    ready.wait()
    start = time.time()
    for i in range(iterations):
        one(i)
    out.put((start, time.time(), 3 * iterations))
    registry.close()


def registry_rate(url: str, writers: int, iterations: int) -> float:
    ctx = mp.get_context("spawn")
    ready, out = ctx.Barrier(writers), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(url, w, iterations, ready, out)) for w in range(writers)]
    for p in procs:
        p.start()
    results = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        if p.exitcode != 0:
            raise RuntimeError(f"a writer exited with {p.exitcode}")
    wall = max(end for _, end, _ in results) - min(start for start, _, _ in results)
    return sum(ops for _, _, ops in results) / wall


def run_registry(args: argparse.Namespace) -> None:
    import psycopg

    rows = []
    work = Path(tempfile.mkdtemp(prefix="portal-scale-db-"))
    try:
        with running_postgres("portal-pg-bench-") as base:
            for writers in (1, 8):
                iterations = max(10, args.iterations // writers)
                sqlite, pg = [], []
                for round_ in range(args.rounds):  # alternated, so background load hits both alike
                    sqlite.append(registry_rate(f"sqlite:///{work / f'w{writers}-{round_}.db'}", writers, iterations))
                    name = f"bench_{writers}_{round_}"
                    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
                        conn.execute(f'CREATE DATABASE "{name}"')
                    url = f"{base.replace('postgresql://', 'postgresql+psycopg://')}/{name}"
                    pg.append(registry_rate(url, writers, iterations))
                ratio = statistics.median(b / a for a, b in zip(sqlite, pg, strict=True))
                rows.append([writers, 3 * iterations * writers, f"{statistics.median(sqlite):,.0f}",
                             f"{statistics.median(pg):,.0f}", f"{ratio:.2f}"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(table(rows, ["writers", "ops per round", "SQLite ops/s", "PostgreSQL ops/s", "PG / SQLite (paired)"]))
    print(f"(medians of {args.rounds} alternated rounds; PostgreSQL runs with fsync=off as in the tests, "
          "SQLite in WAL mode with its normal fsyncs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bursts", type=int, default=5, help="interleaved bursts per server and phase")
    parser.add_argument("--requests", type=int, default=200, help="requests per burst")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=150,
                        help="add+alias+resolve cycles per round, split among the writers")
    parser.add_argument("--rounds", type=int, default=3, help="alternated SQLite / PostgreSQL rounds")
    parser.add_argument("--skip-rest", action="store_true")
    parser.add_argument("--skip-registry", action="store_true")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # so that `finally` stops the servers
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start; everything on 127.0.0.1", flush=True)
    if not args.skip_rest:
        print(f"\n(a) REST, {N_MODELS} models round-robin, concurrency {args.concurrency}, "
              f"{args.bursts} bursts × {args.requests} requests per server and phase", flush=True)
        run_rest(args)
    if not args.skip_registry:
        print("\n(b) registry: add version / set alias / resolve, each counted as one operation", flush=True)
        run_registry(args)


if __name__ == "__main__":
    main()
