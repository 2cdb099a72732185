"""Portal predict overhead vs raw onnxruntime, prediction log on vs off, cache hit vs cold load, CSV scoring.

Run: .venv/bin/python bench/predict_overhead.py [--rows 1000000] [--log-only]
Every figure is a ratio against a baseline measured in the same run.
Targets (issue #2): ≤ 1.10× raw at batch ≥ 64, ≤ 100 µs added at batch 1,
CSV scoring ≥ 0.7× raw throughput with memory bounded by the chunk size (issue #19's
comparison with whole-file pandas / pyarrow scripts is bench/batch_scoring.py).
Target (issue #7): the prediction log costs at most 5% of predict throughput
(a portal with the log on vs an identical one with PORTAL_MONITOR=off, same
store and model, interleaved rounds).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).parent))
from _common import interleaved, mlp, paired_ratio, table  # noqa: E402

from portal import Portal  # noqa: E402
from portal.ingest.modelinfo import describe_model  # noqa: E402


def _register(portal: Portal, model: onnx.ModelProto, name: str, **meta) -> None:
    data = model.SerializeToString()
    blob = portal.store.put_bytes(data)
    portal.registry.add_version(name, blob_sha=blob.sha256, size_bytes=blob.size, source_format="onnx",
                                info=describe_model(model, size_bytes=len(data)), meta=meta,
                                model_fields={"task": "classification"})


def overhead_rows(portal: Portal) -> list[list[object]]:
    rows = []
    cases = [("mlp", "x", (30,), [1, 64, 4096])]
    if "digits" in portal.registry.model_names():
        cases.append(("digits", portal.get("digits").signature["inputs"][0]["name"], (1, 8, 8), [1, 256]))
    rng = np.random.default_rng(0)
    for name, input_name, shape, batches in cases:
        version = portal.get(name)
        session = portal.session(version).session
        for batch in batches:
            x = rng.random((batch, *shape), dtype=np.float32)
            feeds = {input_name: x}
            raw, ours = interleaved(lambda: session.run(None, feeds), lambda: portal.predict(name, feeds))
            rows.append([name, batch, f"{raw * 1e6:,.1f}", f"{ours * 1e6:,.1f}", f"{ours / raw:.3f}",
                         f"{(ours - raw) * 1e6:+.1f}"])
    return rows


LOG_BUDGET = 1.05  # issue #7: the log may cost at most 5%


def log_rows(home: Path, *, rounds: int) -> tuple[list[list[object]], bool]:
    """Portal.predict with the prediction log on vs an identical portal with the log off, same model."""
    on = Portal.open(home, check=False)
    off = Portal.open(home, check=False, monitor=False)
    assert on.monitor is not None and off.monitor is None
    # one onnxruntime session for both: two sessions of the same model differ by a few % on their own
    # (each has its own thread pool, whose idle threads spin), which is not the log's doing
    off.cache = on.cache
    rows, ok = [], True
    rng = np.random.default_rng(2)
    try:
        for batch in (1, 64, 4096):
            frame = {"x": rng.random((batch, 30), dtype=np.float32)}
            t_off, t_on, ratio = paired_ratio(lambda: off.predict("mlp", frame), lambda: on.predict("mlp", frame),
                                              rounds=rounds)
            passed = ratio <= LOG_BUDGET
            ok &= passed
            rows.append([batch, f"{batch / t_off:,.0f}", f"{batch / t_on:,.0f}", f"{t_off * 1e6:,.1f}",
                         f"{t_on * 1e6:,.1f}", f"{ratio:.3f}", "PASS" if passed else "FAIL"])
        on.monitor.flush()
        rows.append(["log", f"{on.monitor.written:,} rows written", f"{on.monitor.dropped:,} dropped", "", "", "", ""])
    finally:
        on.close()
        off.close()
    return rows, ok


def cache_rows(portal: Portal) -> list[list[object]]:
    version = portal.get("mlp")
    x = {"x": np.ones((1, 30), np.float32)}
    cold = []
    for _ in range(5):
        portal.cache.clear()
        t0 = time.perf_counter()
        portal.predict(version, x)
        cold.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    for _ in range(200):
        portal.predict(version, x)
    hit = (time.perf_counter() - t0) / 200
    cold_s = float(np.median(cold))
    return [["mlp cold load + predict", f"{cold_s * 1e3:.2f} ms"], ["mlp cache hit predict", f"{hit * 1e6:.1f} µs"],
            ["cold / hit", f"{cold_s / hit:.0f}×"]]


_CHILD = r"""
import json, resource, sys, time
import numpy as np
mode, home, csv_path, rows = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
t0 = time.perf_counter()
if mode == "portal":
    from portal import Portal
    from portal.serving.batch import session_config
    p = Portal.open(home)
    p.session(p.get("mlp"), config=session_config())  # loaded before the clock, like the raw session
    t0 = time.perf_counter()
    p.predict_file("mlp", csv_path, csv_path + ".out.csv")
else:
    import onnxruntime as ort, pyarrow.csv as pacsv
    from portal import Portal
    p = Portal.open(home)
    session = ort.InferenceSession(str(p.model_path("mlp")))
    x = np.load(csv_path + ".npy")
    t0 = time.perf_counter()
    for start in range(0, len(x), 65536):
        session.run(None, {"x": x[start:start + 65536]})
elapsed = time.perf_counter() - t0
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork + exec
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1]
print(json.dumps({"seconds": elapsed, "peak_mb": int(hwm) / 1024}))
"""


def _child(mode: str, home: Path, csv_path: Path, rows: int) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD, mode, str(home), str(csv_path), str(rows)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def csv_rows(home: Path, rows: int) -> list[list[object]]:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    results = []
    for n in sorted({rows // 5, rows}):
        x = np.random.default_rng(1).random((n, 30), dtype=np.float32)
        path = home / f"bench_{n}.csv"
        pacsv.write_csv(pa.table({f"f{i}": x[:, i] for i in range(30)}), path)
        np.save(str(path) + ".npy", x)
        raw = _child("raw", home, path, n)
        ours = _child("portal", home, path, n)
        results.append([n, f"{path.stat().st_size / 1e6:.0f} MB", f"{n / raw['seconds']:,.0f}",
                        f"{n / ours['seconds']:,.0f}", f"{raw['seconds'] / ours['seconds']:.2f}",
                        f"{raw['peak_mb']:.0f}", f"{ours['peak_mb']:.0f}"])
        for f in (path, Path(str(path) + ".npy"), Path(str(path) + ".out.csv")):
            f.unlink(missing_ok=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--no-demo", action="store_true", help="skip the digits CNN (no torch needed)")
    parser.add_argument("--log-only", action="store_true", help="only the prediction log on vs off comparison")
    parser.add_argument("--log-rounds", type=int, default=15, help="interleaved rounds of the log on/off comparison")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        portal = Portal.open(home)
        features = [f"f{i}" for i in range(30)]
        _register(portal, mlp(), "mlp", feature_names=features, class_labels=["no", "yes"])
        print("== prediction log on vs off: Portal.predict throughput (mlp, same store, interleaved A/B rounds; "
              f"ratio = median of per-round time ratios on/off, budget ≤ {LOG_BUDGET:.2f})")
        log_table, log_ok = log_rows(home, rounds=args.log_rounds)
        print(table(log_table, ["batch", "off rows/s", "on rows/s", "off µs", "on µs", "on/off", "≤ 5%"]))
        print(f"prediction log overhead: {'PASS' if log_ok else 'FAIL'}\n", flush=True)
        if args.log_only:
            return
        if not args.no_demo:
            portal.load_demo()
        print("== Portal.predict vs raw InferenceSession.run (same open session, interleaved A/B)")
        print(table(overhead_rows(portal), ["model", "batch", "raw µs", "portal µs", "ratio", "added µs"]))
        print("\n== session cache")
        print(table(cache_rows(portal), ["case", "time"]))
        print(f"\n== CSV scoring end to end ({args.rows:,} × 30) vs raw ORT on the in-memory array, chunks of 65,536")
        print(table(csv_rows(home, args.rows),
                    ["rows", "csv size", "raw rows/s", "portal rows/s", "portal/raw", "raw peak MB", "portal peak MB"]))


if __name__ == "__main__":
    main()
