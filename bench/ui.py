"""Streamlit UI benchmark: page render times on a 50-model store, and the cost of an upload.

Run: .venv/bin/python bench/ui.py [--models 50] [--sessions 3] [--upload-mb 100]

1. A store with ``--models`` registered models (tabular MLPs of different sizes,
   every fifth with a second version and an alias), written straight through
   the registry so building it takes seconds.  For each page, ``--sessions``
   fresh AppTest sessions: the time of the page's first render in the session
   (the portal object is already cached, as in a running server), median and
   max.  The very first run of the process (imports, opening the store) is
   shown separately.
2. A ``--upload-mb`` MB ONNX file (one Gemm with a random, incompressible
   initializer): the time from dropping it on the Upload page (AppTest file
   uploader) to its registration, and the same through ``Portal.register``,
   against the in-run baseline of hashing the file with SHA-256 and copying it
   on the same filesystem.  The ratio is the portal's overhead: reading the
   upload, the sandboxed check (parse, onnxruntime load, one run on dummy
   input) and the content-addressed store.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).parent))
from _common import mlp, table  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "streamlit_app.py"
PAGES = ["app_pages/home.py", "app_pages/upload.py", "app_pages/models.py", "app_pages/predict.py"]


# -- the store -----------------------------------------------------------------------
def build_store(home: Path, count: int) -> None:
    """``count`` models registered through store + registry (no sandbox: this times the UI)."""
    from portal import Portal
    from portal.ingest.modelinfo import describe_model

    portal = Portal.open(home)
    try:
        for i in range(count):
            name = f"model-{i:02d}"
            for version in range(2 if i % 5 == 0 else 1):
                model = mlp(n_in=4 + i % 12, hidden=16 + 8 * (i % 7), n_out=2 + i % 4, seed=i * 10 + version)
                data = model.SerializeToString()
                blob = portal.store.put_bytes(data)
                features = [f"f{j}" for j in range(4 + i % 12)]
                portal.registry.add_version(
                    name, blob_sha=blob.sha256, size_bytes=blob.size, source_format="onnx",
                    info=describe_model(model, size_bytes=len(data)), meta={"feature_names": features},
                    actor="bench", model_fields={"task": "classification", "tags": ["bench", f"group-{i % 3}"],
                                                 "description": f"# Model {i}\n\nA benchmark MLP."},
                )
            if i % 5 == 0:
                portal.set_alias(f"{name}:1", "production")
    finally:
        portal.close()


def _clear_cache() -> None:
    import streamlit as st

    st.cache_resource.clear()


def time_pages(sessions: int) -> tuple[float, list[list[object]]]:
    """The process's first run, then per page the first render in fresh sessions."""
    from streamlit.testing.v1 import AppTest

    start = time.perf_counter()
    AppTest.from_file(str(APP), default_timeout=300).run()
    cold = time.perf_counter() - start
    rows = []
    for page in PAGES:
        times = []
        for _ in range(sessions):
            at = AppTest.from_file(str(APP), default_timeout=300)
            at.run()
            at.switch_page(page)
            start = time.perf_counter()
            at.run()
            times.append(time.perf_counter() - start)
            if at.exception:
                raise RuntimeError(f"{page}: {at.exception[0].value}")
        rows.append([page, f"{statistics.median(times) * 1e3:.0f} ms", f"{max(times) * 1e3:.0f} ms"])
    return cold, rows


# -- the upload ----------------------------------------------------------------------
def big_model(megabytes: int) -> onnx.ModelProto:
    """x[N, n] → y[N, n] through one Gemm whose n×n float32 weight is about ``megabytes`` MB."""
    n = int((megabytes * 1024**2 / 4) ** 0.5)
    weight = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "W"], ["y"])], "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", n])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", n])],
        [numpy_helper.from_array(weight, "W")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def hash_and_copy(path: Path, dest_dir: Path) -> float:
    """Baseline: SHA-256 of the file, then a copy on the same filesystem."""
    start = time.perf_counter()
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    shutil.copyfile(path, dest_dir / digest.hexdigest())
    elapsed = time.perf_counter() - start
    (dest_dir / digest.hexdigest()).unlink()
    return elapsed


def upload_through_ui(path: Path) -> float:
    """Drop the file on the Upload page, fill the name, click Register; seconds until registered."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=600)
    at.run()
    at.switch_page("app_pages/upload.py")
    at.run()
    data = path.read_bytes()  # the browser's bytes, already in the server's memory when the upload lands
    start = time.perf_counter()
    at.file_uploader[0].set_value((path.name, data, "application/octet-stream"))
    at.run()
    if at.error or at.exception:
        raise RuntimeError(f"upload refused: {[e.value for e in [*at.error, *at.exception]]}")
    next(w for w in at.text_input if w.label == "Name").set_value("big-ui")
    at.run()
    next(b for b in at.button if b.label == "Register").click()
    at.run()
    elapsed = time.perf_counter() - start
    if not any("Registered" in s.value for s in at.success):
        raise RuntimeError(f"not registered: {[e.value for e in [*at.error, *at.exception]]}")
    return elapsed


def upload_through_library(home: Path, path: Path) -> float:
    from portal import Portal

    portal = Portal.open(home)
    try:
        start = time.perf_counter()
        portal.register(path, "big-lib")
        return time.perf_counter() - start
    finally:
        portal.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, default=50)
    parser.add_argument("--sessions", type=int, default=3)
    parser.add_argument("--upload-mb", type=int, default=100)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-ui-") as tmp:
        home = Path(tmp) / "home"
        os.environ["PORTAL_HOME"] = str(home)
        start = time.perf_counter()
        build_store(home, args.models)
        print(f"store: {args.models} models built in {time.perf_counter() - start:.1f} s\n")

        cold, rows = time_pages(args.sessions)
        print(f"first run of the process (imports, open the store, Home): {cold * 1e3:.0f} ms")
        print(f"first render of each page in a new session ({args.sessions} sessions):")
        print(table(rows, ["page", "median", "max"]))

        model_path = Path(tmp) / "big.onnx"
        onnx.save(big_model(args.upload_mb), model_path)
        size_mb = model_path.stat().st_size / 1024**2
        scratch = home / "tmp"
        scratch.mkdir(parents=True, exist_ok=True)
        baseline = min(hash_and_copy(model_path, scratch) for _ in range(3))
        ui = upload_through_ui(model_path)
        _clear_cache()
        library = upload_through_library(home, model_path)
        print(f"\nupload of a {size_mb:.0f} MB ONNX file until it is registered:")
        print(table([
            ["hash (SHA-256) + copy, baseline", f"{baseline:.2f} s", "1.0×"],
            ["Upload page (AppTest): drop → report → Register", f"{ui:.2f} s", f"{ui / baseline:.1f}×"],
            ["Portal.register(path)", f"{library:.2f} s", f"{library / baseline:.1f}×"],
        ], ["path", "time", "vs baseline"]))
        _clear_cache()


if __name__ == "__main__":
    main()
