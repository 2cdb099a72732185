"""Soak test: `portal serve` under a mixed load from 16 concurrent clients for a bounded time.

Run: .venv/bin/python bench/soak.py [--seconds 60] [--clients 16] [--warmup 15]

One real `portal serve` on 127.0.0.1 over a fresh SQLite home holding three
models.  Each client loops over a weighted mix of operations until the time is up:

    infer-v2        POST /v2/models/{m}/infer (OIP v2 JSON), one of three models
    predict-records POST /api/models/{m}/predict with JSON records
    list            GET  /api/models
    upload          POST /api/models: a small valid ONNX model under a new name
    upload-bad      POST /api/models: a truncated model, a pickle or text, expecting a 4xx
    delete          DELETE /api/models/{name} of one of this run's own uploads

It prints throughput and p50/p99 latency per operation, the status codes seen,
and the server's resident memory (VmRSS from /proc) after the warm-up and at
the end.  Targets, printed as PASS/FAIL (exit code 1 if one fails): no 5xx, no
error other than the deliberate 4xx, memory growth after the warm-up < 10 %.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import pickle
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import mlp, table  # noqa: E402
from load import Server, _cpu_seconds, start  # noqa: E402

MODELS = {"soak-wide": (30, 256, 2), "soak-mid": (10, 64, 3), "soak-small": (4, 16, 3)}
# weights of the operation mix; uploads start the ingest sandbox, so they stay rare
MIX = {"infer-v2": 45, "predict-records": 20, "list": 15, "upload": 8, "upload-bad": 4, "delete": 8}
EXPECTED = {"infer-v2": {200}, "predict-records": {200}, "list": {200}, "upload": {201}, "delete": {200}}
MAX_GROWTH = 10.0


def setup(home: Path) -> dict[str, str]:
    """Register the served models and an analyst; return headers carrying the analyst's token."""
    from portal import Portal
    from portal.accounts.auth import Auth
    from portal.ingest.modelinfo import describe_model

    portal = Portal.open(home)
    for name, (n_in, hidden, n_out) in MODELS.items():
        model = mlp(n_in, hidden, n_out, seed=len(name))
        data = model.SerializeToString()
        blob = portal.store.put_bytes(data)
        portal.registry.add_version(name, blob_sha=blob.sha256, size_bytes=blob.size, source_format="onnx",
                                    info=describe_model(model, size_bytes=len(data)), actor="soak")
    auth = Auth(portal.registry)
    auth.add_user("soak", "analyst", actor="soak")
    token = auth.create_token("soak", actor="soak").secret
    portal.close()
    return {"Authorization": f"Bearer {token}"}


def _bad_uploads() -> list[tuple[str, bytes]]:
    good = mlp(4, 8, 3, seed=7).SerializeToString()
    return [("truncated.onnx", good[: len(good) // 2]), ("model.pkl", pickle.dumps({"weights": [1.0, 2.0]})),
            ("notes.onnx", b"just some notes, not a model\n" * 10)]


def _good_uploads() -> list[bytes]:
    return [mlp(4, 8, 3, seed=seed).SerializeToString() for seed in range(4)]


def _infer_body(rng: random.Random, n_in: int) -> bytes:
    rows = rng.randint(1, 8)
    data = np.random.default_rng(rng.randrange(2**32)).random((rows, n_in), dtype=np.float32)
    return json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [rows, n_in],
                                   "data": data.reshape(-1).tolist()}]}).encode()


def _records_body(rng: random.Random, n_in: int) -> bytes:
    rows = rng.randint(1, 8)  # the models have no feature names: columns are matched by count
    return json.dumps([{f"f{i}": rng.random() for i in range(n_in)} for _ in range(rows)]).encode()


@dataclass
class Stats:
    """Latencies (seconds) and status codes (or transport error names) per operation."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, Counter[int | str]] = field(default_factory=lambda: defaultdict(Counter))

    def add(self, op: str, seconds: float, status: int | str) -> None:
        self.latencies[op].append(seconds)
        self.statuses[op][status] += 1


class Soak:
    """The clients, the shared list of this run's uploads, and the counters."""

    def __init__(self, server: Server, headers: dict[str, str], *, seed: int) -> None:
        self.server = server
        self.headers = headers
        self.rng = random.Random(seed)
        self.stats = Stats()
        self.uploaded: list[str] = []
        self.names = itertools.count()
        self.good = _good_uploads()
        self.bad = _bad_uploads()

    async def _call(self, client: httpx.AsyncClient, op: str, rng: random.Random) -> int | str | None:
        if op in ("infer-v2", "predict-records"):
            name = rng.choice(list(MODELS))
            n_in = MODELS[name][0]
            if op == "infer-v2":
                response = await client.post(f"/v2/models/{name}/infer", content=_infer_body(rng, n_in),
                                             headers={"Content-Type": "application/json"})
            else:
                response = await client.post(f"/api/models/{name}/predict", content=_records_body(rng, n_in),
                                             headers={"Content-Type": "application/json"})
            return response.status_code
        if op == "list":
            return (await client.get("/api/models")).status_code
        if op == "upload":
            name = f"soak-upload-{next(self.names)}"
            response = await client.post("/api/models", data={"name": name},
                                         files={"file": ("model.onnx", rng.choice(self.good), "application/octet-stream")})
            if response.status_code == 201:
                self.uploaded.append(name)
            return response.status_code
        if op == "upload-bad":
            filename, data = rng.choice(self.bad)
            response = await client.post("/api/models", files={"file": (filename, data, "application/octet-stream")})
            return response.status_code
        if not self.uploaded:
            return None  # nothing of ours to delete yet
        name = self.uploaded.pop(rng.randrange(len(self.uploaded)))
        return (await client.delete(f"/api/models/{name}")).status_code

    async def client(self, client: httpx.AsyncClient, deadline: float, seed: int) -> None:
        rng = random.Random(seed)
        ops, weights = list(MIX), list(MIX.values())
        while time.monotonic() < deadline:
            op = rng.choices(ops, weights)[0]
            started = time.perf_counter()
            try:
                status = await self._call(client, op, rng)
            except httpx.TransportError as exc:
                status = type(exc).__name__
            if status is not None:
                self.stats.add(op, time.perf_counter() - started, status)

    async def run(self, clients: int, seconds: float, warmup: float) -> tuple[float, float]:
        """Drive the load; return VmRSS (bytes) after the warm-up and at the end."""
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(base_url=self.server.url, headers=self.headers, limits=limits,
                                     timeout=120) as client:
            start_time = time.monotonic()
            deadline = start_time + seconds
            tasks = [asyncio.create_task(self.client(client, deadline, seed)) for seed in range(clients)]
            await asyncio.sleep(warmup)  # a fixed point in the run, not a wait for a condition
            warm_rss = vm_rss(self.server.proc.pid)
            await asyncio.gather(*tasks)
            return warm_rss, vm_rss(self.server.proc.pid)


def vm_rss(pid: int, field_name: str = "VmRSS") -> float:
    """Resident memory of ``pid`` in bytes, from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return float(line.split()[1]) * 1024
    return float("nan")


def report(stats: Stats, seconds: float, warm_rss: float, end_rss: float, peak_rss: float) -> list[tuple[bool, str]]:
    rows = []
    unexpected: Counter[str] = Counter()
    server_errors = 0
    for op in MIX:
        lat = stats.latencies.get(op, [])
        statuses = stats.statuses.get(op, Counter())
        if not lat:
            continue
        for status, count in statuses.items():
            if isinstance(status, int) and status >= 500:
                server_errors += count
            deliberate = op == "upload-bad" and isinstance(status, int) and 400 <= status < 500
            if not deliberate and status not in EXPECTED.get(op, set()):
                unexpected[f"{op} {status}"] += count
        rows.append([op, len(lat), f"{len(lat) / seconds:.1f}", f"{np.percentile(lat, 50) * 1000:.1f}",
                     f"{np.percentile(lat, 99) * 1000:.1f}",
                     ", ".join(f"{s}×{n}" for s, n in sorted(statuses.items(), key=lambda kv: str(kv[0])))])
    print(table(rows, ["operation", "requests", "req/s", "p50 ms", "p99 ms", "statuses"]))
    growth = (end_rss - warm_rss) / warm_rss * 100
    print(f"\nserver RSS: {warm_rss / 2**20:.1f} MiB after the warm-up, {end_rss / 2**20:.1f} MiB at the end "
          f"({growth:+.1f} %); peak {peak_rss / 2**20:.1f} MiB (VmHWM)")
    if unexpected:
        print("unexpected answers: " + ", ".join(f"{k} ×{n}" for k, n in unexpected.most_common()))
    return [
        (server_errors == 0, f"zero 5xx responses ({server_errors})"),
        (not unexpected, f"no errors but the deliberate 4xx ({sum(unexpected.values())} unexpected)"),
        (growth < MAX_GROWTH, f"memory growth after the warm-up < {MAX_GROWTH:.0f} % ({growth:+.1f} %)"),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60, help="length of the run, warm-up included")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--warmup", type=float, default=None, help="seconds before the first RSS reading "
                        "(default: a quarter of the run, at most 15)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    warmup = args.warmup if args.warmup is not None else min(15.0, args.seconds / 4)
    if not 0 < warmup < args.seconds:
        parser.error("--warmup must be between 0 and --seconds")

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # so that `finally` stops the server
    home = Path(tempfile.mkdtemp(prefix="portal-soak-"))
    headers = setup(home)
    server = start("portal", [sys.executable, "-m", "portal.cli", "serve"], {"PORTAL_HOME": str(home)}, headers)
    try:
        print(f"soak: {args.clients} clients for {args.seconds:g} s (RSS baseline after {warmup:g} s) against "
              f"`portal serve` pid {server.proc.pid} on {server.url}; {len(MODELS)} models; "
              f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start", flush=True)
        soak = Soak(server, headers, seed=args.seed)
        cpu0 = _cpu_seconds(server.proc.pid)
        warm_rss, end_rss = asyncio.run(soak.run(args.clients, args.seconds, warmup))
        cpu = _cpu_seconds(server.proc.pid) - cpu0
        peak = vm_rss(server.proc.pid, "VmHWM")
        alive = httpx.get(f"{server.url}/v2/health/ready", timeout=10).status_code
        print(f"server CPU {cpu:.1f} s over the run; /v2/health/ready after the run: {alive}; "
              f"{len(soak.uploaded)} of this run's uploads not deleted yet\n")
        targets = report(soak.stats, args.seconds, warm_rss, end_rss, peak)
        targets.append((alive == 200, f"server still ready after the run ({alive})"))
    finally:
        server.proc.terminate()
        server.proc.wait(timeout=15)
        shutil.rmtree(home, ignore_errors=True)
    print()
    for ok, text in targets:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    return 0 if all(ok for ok, _ in targets) else 1


if __name__ == "__main__":
    sys.exit(main())
