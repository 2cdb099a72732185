"""The cost of checking a model file's sha256 when the session cache loads it (issue 13).

Run: .venv/bin/python bench/blob_verify.py [--rounds 9] [--big-mb 100] [--home DIR]

Models: the four demo models, registered here through the real ingest (about 30 s; or
``--home`` a store that already has them), and a MatMul with one float32 initializer
of about ``--big-mb`` MB built with onnx.helper.  Each is loaded cold through
``portal.serving.runtime.SessionCache`` (a fresh cache every time, warm-up run included: what
the first prediction of a model pays) three ways, in rotating order round by round so
that other work on the machine hits them alike:

    unchecked      the path handed to onnxruntime, no hash (the code before issue 13)
    checked        the file hashed, then its path handed to onnxruntime (what the portal does)
    checked-bytes  the file read once, hashed, and those bytes handed to onnxruntime

Figures are ratios against ``unchecked`` in the same run (median of the per-round
ratios), and the megabytes onnxruntime's Python session keeps alive after the load (a
model given as bytes is held for the session's lifetime).  For the big model it also
times ``BlobStore.read_bytes`` of an encrypted store (decrypt + hash) against decrypt
only.  Files are read from the page cache; no thresholds.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import platform
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).parent))
from _common import table  # noqa: E402

from portal import Portal  # noqa: E402
from portal.serving import runtime  # noqa: E402
from portal.storage.crypto import BlobCipher, generate_key  # noqa: E402
from portal.ingest.modelinfo import describe_model  # noqa: E402
from portal.storage.store import BlobStore  # noqa: E402

FLAGS = ("sha_ni", "aes", "vaes", "avx2", "avx512f", "avx512vl")
VARIANTS = ("unchecked", "checked", "checked-bytes")


# -- the machine ---------------------------------------------------------------------
def machine() -> str:
    """CPU model, the flags that decide hashing speed, cores, load and library versions."""
    model, flags = platform.processor() or "?", set()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    shown = " ".join(f"{f}={'yes' if f in flags else 'no'}" for f in FLAGS)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"CPU: {model}; {shown}\n{cores} usable cores, load average {os.getloadavg()[0]:.1f} at start\n"
            f"Python {platform.python_version()}, onnxruntime {ort.__version__}, {ssl.OPENSSL_VERSION} (hashlib)")


# -- the models ----------------------------------------------------------------------
def big_model(path: Path, megabytes: int) -> Path:
    """x[N, n] @ W[n, n] with W float32 random, ``n`` chosen for about ``megabytes`` MB."""
    n = int((megabytes * 1e6 / 4) ** 0.5)
    weights = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])], "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", n])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", n])],
        [numpy_helper.from_array(weights, "W")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    return path


def demo_models(home: Path) -> list[tuple[str, Path, dict]]:
    """(ref, blob path, signature) of the demo models in ``home``, registering them if needed."""
    portal = Portal.open(home)
    try:
        portal.load_demo(progress=lambda name: print(f"  registering demo model {name}", flush=True))
        found = []
        for summary in portal.list_models():
            version = portal.get(summary.name)
            found.append((version.ref, portal.store.path(version.blob_sha), version.signature))
        return found
    finally:
        portal.close()


# -- the measurement -----------------------------------------------------------------
@contextlib.contextmanager
def unchecked() -> Iterator[None]:
    """The load path without the hash: the code as it was before issue 13."""
    check = runtime._check_file
    runtime._check_file = lambda path, sha256: None
    try:
        yield
    finally:
        runtime._check_file = check


def read_checked(path: Path, sha: str) -> bytes:
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != sha:
        raise AssertionError(f"{path} does not hash to its name")
    return data


def cold_load(variant: str, path: Path, sha: str, signature: dict) -> runtime.LoadedSession:
    cache = runtime.SessionCache(max_bytes=2**40, max_count=4)
    config = runtime.SessionConfig(intra_op_threads=1)
    size = path.stat().st_size
    if variant == "checked-bytes":
        return cache.get(sha, lambda: read_checked(path, sha), size_bytes=size, signature=signature, config=config)
    with unchecked() if variant == "unchecked" else contextlib.nullcontext():
        return cache.get(sha, lambda: path, size_bytes=size, signature=signature, config=config)


def block(func: Callable[[], object], *, min_seconds: float) -> float:
    """Mean seconds per call over at least ``min_seconds`` (and at least one call)."""
    calls, start = 0, time.perf_counter()
    while calls == 0 or time.perf_counter() - start < min_seconds:
        func()
        calls += 1
    return (time.perf_counter() - start) / calls


def compare(funcs: dict[str, Callable[[], object]], *, rounds: int, min_seconds: float) -> dict[str, tuple[float, float]]:
    """Per name: median seconds per call and median per-round ratio against the first name."""
    names = list(funcs)
    times: dict[str, list[float]] = {n: [] for n in names}
    for name in names:
        funcs[name]()  # warm the page cache and onnxruntime's first-use costs
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name].append(block(funcs[name], min_seconds=min_seconds))
    base = times[names[0]]
    return {n: (statistics.median(t), statistics.median(b / a for a, b in zip(base, t))) for n, t in times.items()}


def kept_mb(path: Path, sha: str, signature: dict, variant: str) -> float:
    session = cold_load(variant, path, sha, signature).session
    return len(getattr(session, "_model_bytes", None) or b"") / 1e6


def size_text(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.1f} kB"


def measure_model(ref: str, path: Path, signature: dict, *, rounds: int, min_seconds: float) -> list[list[object]]:
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    funcs = {v: (lambda v=v: cold_load(v, path, sha, signature)) for v in VARIANTS}
    results = compare(funcs, rounds=rounds, min_seconds=min_seconds)
    size = size_text(path.stat().st_size)
    return [[ref, size, v, f"{results[v][0] * 1e3:.2f}", f"{results[v][1]:.3f}",
             f"{kept_mb(path, sha, signature, v):.3f}"] for v in VARIANTS]


def measure_encrypted(path: Path, *, rounds: int, tmp: Path) -> list[list[object]]:
    store = BlobStore(tmp / "enc-store", cipher=BlobCipher(generate_key()))
    sha = store.put_file(path).sha256
    results = compare({"decrypt only": lambda: store._plaintext(sha), "read_bytes (decrypt + sha256)":
                       lambda: store.read_bytes(sha)}, rounds=rounds, min_seconds=0.3)
    return [[name, f"{t * 1e3:.1f}", f"{ratio:.3f}"] for name, (t, ratio) in results.items()]


def hash_throughput(path: Path) -> float:
    data = path.read_bytes()
    seconds = min(block(lambda: hashlib.sha256(data).digest(), min_seconds=0.3) for _ in range(3))
    return len(data) / seconds / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--big-mb", type=int, default=100)
    parser.add_argument("--home", type=Path, help="a store holding the demo models (default: a new one, built here)")
    args = parser.parse_args()
    print(machine(), flush=True)
    with tempfile.TemporaryDirectory(prefix="blob-verify-") as tmp_name:
        tmp = Path(tmp_name)
        print("building models ...", flush=True)
        models = demo_models(args.home or tmp / "home")
        big = big_model(tmp / "big.onnx", args.big_mb)
        models.append((f"matmul-{args.big_mb}MB", big, describe_model(onnx.load(big, load_external_data=False))["signature"]))
        print(f"sha256 of {big.stat().st_size / 1e6:.0f} MB in memory: {hash_throughput(big):.2f} GB/s\n", flush=True)
        rows = []
        for ref, path, signature in models:
            print(f"  timing {ref} ...", flush=True)
            rows += measure_model(ref, path, signature, rounds=args.rounds, min_seconds=0.3)
        print("\n# cold load through SessionCache (fresh cache each time, warm-up run included), "
              f"{args.rounds} rounds interleaved\n")
        print(table(rows, ["model", "size", "load", "median ms", "x unchecked", "MB kept by ort after load"]))
        print("\n# encrypted store, big model: BlobStore.read_bytes, interleaved\n")
        print(table(measure_encrypted(big, rounds=args.rounds, tmp=tmp), ["read", "median ms", "x decrypt only"]))


if __name__ == "__main__":
    main()
