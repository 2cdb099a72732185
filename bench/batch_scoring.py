"""Batch scoring: Portal.predict_file vs whole-file pandas and pyarrow scripts, and peak RSS by file size.

Run: .venv/bin/python bench/batch_scoring.py [--rows 1000000] [--rounds 3] [--rss-rows 200000,1000000,5000000]

Target (issue #19): ``predict_file`` at ≥ 1.0× the faster of two hand-written whole-file scripts
(pandas read → onnxruntime → pandas write; pyarrow read → onnxruntime → pyarrow write), CSV in and
out and Parquet in and out, measured side by side in one run; its peak memory flat across 200k, 1M
and 5M rows.  The scripts get every advantage the pipeline has: the columns parsed as float32
(pyarrow), the same onnxruntime run size, a session using every core, and the same result table
(prediction, proba_*, confidence); only the overlap of parse, inference and write differs.

Every configuration runs in its own child process, interleaved over rounds (A B C A B C ...), and
reports seconds from the first byte read to the output closed plus its peak RSS from VmHWM
(``ru_maxrss`` is carried over from the parent across fork + exec).  Ratios are baseline /
predict_file: above 1 means predict_file is faster.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import mlp, table  # noqa: E402

FEATURES = [f"f{i}" for i in range(30)]
LABELS = ["no", "yes"]
TARGET = 1.0

_CHILD = r"""
import json, sys, time
mode, fmt, home, src, out = sys.argv[1:6]
import numpy as np, onnxruntime as ort, pyarrow as pa, pyarrow.csv as pacsv, pyarrow.parquet as pq, pandas as pd
from portal import Portal
from portal.serving.batch import RUN_BYTES, session_config
p = Portal.open(home, check=False)
version = p.get("mlp")
features = version.feature_names
labels = np.asarray(version.class_labels, dtype=object)
run = max(64, RUN_BYTES // (4 * len(features)))  # the run size predict_file picks for 30 float32 columns
if mode == "predict_file":
    p.session(version, config=session_config())  # loaded before the clock starts, like the scripts' session
else:
    session = ort.InferenceSession(str(p.model_path("mlp")), providers=["CPUExecutionProvider"])
    session.run(None, {"x": np.zeros((1, len(features)), np.float32)})

def infer(x):
    return np.concatenate([session.run(None, {"x": x[s:s + run]})[0] for s in range(0, len(x), run)])

t0 = time.perf_counter()
if mode == "predict_file":
    p.predict_file(version, src, out)
elif mode == "pandas":
    frame = pd.read_csv(src) if fmt == "csv" else pd.read_parquet(src)
    probs = infer(frame[features].to_numpy(np.float32))
    result = pd.DataFrame({"prediction": labels[probs.argmax(axis=1)], "proba_no": probs[:, 0],
                           "proba_yes": probs[:, 1], "confidence": probs.max(axis=1)})
    result.to_csv(out, index=False) if fmt == "csv" else result.to_parquet(out, index=False)
else:
    if fmt == "csv":
        types = {c: pa.float32() for c in features}
        data = pacsv.read_csv(src, convert_options=pacsv.ConvertOptions(column_types=types))
    else:
        data = pq.read_table(src, columns=features)
    x = np.asarray(data.select(features).to_tensor(row_major=True), dtype=np.float32)
    probs = infer(x)
    result = pa.table({"prediction": pa.array(list(labels)).take(pa.array(probs.argmax(axis=1))),
                       "proba_no": probs[:, 0], "proba_yes": probs[:, 1], "confidence": probs.max(axis=1)})
    pacsv.write_csv(result, out) if fmt == "csv" else pq.write_table(result, out)
seconds = time.perf_counter() - t0
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")][0].split()[1]
print(json.dumps({"seconds": seconds, "peak_mb": int(hwm) / 1024}))
"""


def _child(mode: str, fmt: str, home: Path, src: Path, out: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run([sys.executable, "-c", _CHILD, mode, fmt, str(home), str(src), str(out)],
                          capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parents[1])
    out.unlink(missing_ok=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        raise RuntimeError(f"{mode} {fmt} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])


def _register(home: Path) -> None:
    from portal import Portal
    from portal.ingest.modelinfo import describe_model

    portal = Portal.open(home)
    model = mlp()
    data = model.SerializeToString()
    blob = portal.store.put_bytes(data)
    portal.registry.add_version("mlp", blob_sha=blob.sha256, size_bytes=blob.size, source_format="onnx",
                                info=describe_model(model, size_bytes=len(data)),
                                meta={"feature_names": FEATURES, "class_labels": LABELS},
                                model_fields={"task": "classification"})
    portal.close()


def _write_inputs(folder: Path, rows: int, *, parquet: bool) -> tuple[Path, Path | None]:
    """``rows`` × 30 random float32 values as CSV (and Parquet), written 500k rows at a time."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    schema = pa.schema([(c, pa.float32()) for c in FEATURES])
    csv_path, parquet_path = folder / f"in_{rows}.csv", folder / f"in_{rows}.parquet" if parquet else None
    rng = np.random.default_rng(1)
    with pacsv.CSVWriter(str(csv_path), schema) as csv_out:
        pq_out = pq.ParquetWriter(str(parquet_path), schema) if parquet_path else None
        for start in range(0, rows, 500_000):
            x = rng.random((min(500_000, rows - start), len(FEATURES)), dtype=np.float32)
            part = pa.table({c: x[:, i] for i, c in enumerate(FEATURES)}, schema=schema)
            csv_out.write_table(part)
            if pq_out is not None:
                pq_out.write_table(part)
        if pq_out is not None:
            pq_out.close()
    return csv_path, parquet_path


def _cpu() -> list[str]:
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    simd = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile") if f in flags]
    return [f"CPU: {model}, {os.cpu_count()} cores, {' '.join(simd) or 'no AVX2'}",
            f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())} (a shared machine: other "
            "work comes and goes, so compare only figures of this run)"]


def speed(folder: Path, home: Path, rows: int, rounds: int) -> list[list[object]]:
    csv_path, parquet_path = _write_inputs(folder, rows, parquet=True)
    assert parquet_path is not None
    modes = ["pandas", "pyarrow", "predict_file"]
    seconds: dict[tuple[str, str], list[float]] = {}
    peaks: dict[tuple[str, str], float] = {}
    for _ in range(rounds):
        for fmt, src in (("csv", csv_path), ("parquet", parquet_path)):
            for mode in modes:
                result = _child(mode, fmt, home, src, folder / f"out.{fmt}")
                seconds.setdefault((fmt, mode), []).append(result["seconds"])
                peaks[(fmt, mode)] = max(peaks.get((fmt, mode), 0.0), result["peak_mb"])
    rows_out = []
    for fmt in ("csv", "parquet"):
        med = {m: statistics.median(seconds[(fmt, m)]) for m in modes}
        per_round = [min(a, b) / c for a, b, c in zip(seconds[(fmt, "pandas")], seconds[(fmt, "pyarrow")],
                                                      seconds[(fmt, "predict_file")], strict=True)]
        ratio = min(med["pandas"], med["pyarrow"]) / med["predict_file"]
        rows_out.append([
            f"{fmt} → {fmt}", *(f"{med[m]:.2f} s / {peaks[(fmt, m)]:.0f} MB" for m in modes),
            f"{ratio:.2f}×", f"{statistics.median(per_round):.2f}×", "PASS" if ratio >= TARGET else "FAIL",
        ])
    csv_path.unlink()
    parquet_path.unlink()
    return rows_out


def memory(folder: Path, home: Path, sizes: list[int], baselines: int) -> list[list[object]]:
    rows_out = []
    for rows in sizes:
        src, _ = _write_inputs(folder, rows, parquet=False)
        ours = _child("predict_file", "csv", home, src, folder / "out.csv")
        cells = [f"{rows:,}", f"{src.stat().st_size / 1e6:,.0f} MB", f"{ours['peak_mb']:.0f}",
                 f"{ours['seconds']:.2f}", f"{rows / ours['seconds']:,.0f}"]
        for mode in ("pandas", "pyarrow"):
            if rows <= baselines:
                other = _child(mode, "csv", home, src, folder / "out.csv")
                cells.append(f"{other['peak_mb']:.0f}")
            else:
                cells.append("(skipped)")
        src.unlink()
        rows_out.append(cells)
    return rows_out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the speed comparison")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the speed comparison")
    parser.add_argument("--rss-rows", default="200000,1000000,5000000", help="file sizes of the memory table")
    parser.add_argument("--baseline-rss-max", type=int, default=1_000_000,
                        help="largest file the whole-file scripts also read for the memory table")
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where the input files are written")
    args = parser.parse_args()
    sizes = [int(v) for v in args.rss_rows.split(",") if v]
    need = 330 * max([args.rows, *sizes]) * 2.2  # bytes: the largest CSV, its Parquet copy and the outputs
    free = shutil.disk_usage(args.dir).free
    if free < need:
        raise SystemExit(f"{args.dir} has {free / 1e9:.1f} GB free; this run needs about {need / 1e9:.1f} GB")
    print("\n".join(_cpu()), flush=True)
    with tempfile.TemporaryDirectory(prefix="batch-bench-", dir=args.dir) as tmp:
        folder = Path(tmp)
        home = folder / "home"
        _register(home)
        began = time.perf_counter()
        print(f"\n== {args.rows:,} rows × 30 float32, the 30 → 256 → 256 → 2 MLP: median of {args.rounds} interleaved "
              f"rounds (seconds / peak RSS); ratio = faster script / predict_file, target ≥ {TARGET:.1f}×", flush=True)
        print(table(speed(folder, home, args.rows, args.rounds),
                    ["in → out", "pandas script", "pyarrow script", "predict_file", "ratio (medians)",
                     "ratio (per round)", f"≥ {TARGET:.1f}×"]), flush=True)
        print(f"\n== peak RSS of predict_file (CSV → CSV, chunks of 65,536 rows) by file size; the whole-file scripts "
              f"up to {args.baseline_rss_max:,} rows for comparison", flush=True)
        print(table(memory(folder, home, sizes, args.baseline_rss_max),
                    ["rows", "CSV", "predict_file MB", "seconds", "rows/s", "pandas MB", "pyarrow MB"]))
        print(f"\nload average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}; "
              f"{time.perf_counter() - began:.0f} s in all")


if __name__ == "__main__":
    main()
