"""Prediction memory ceiling (issue 13): the latency of each option, and RSS around a memory bomb.

Run: .venv/bin/python bench/memory_ceiling.py [--no-demo] [--rounds 9] [--limit-mb 2048]

Options compared (all on the CPU provider with one intra-op thread, as the REST API runs them;
a pool spinning on both cores of a busy 2-core machine made the ratios swing by 2x):
  off          onnxruntime's default and the portal before issue 13: one arena per session that
               grows as far as a run asks and keeps it (no ceiling) - the baseline of every ratio
  guard        what the portal ships (PORTAL_PREDICT_MEMORY_MB): one process-wide arena capped by
               max_mem (create_and_register_allocator + session.use_env_allocators), shrunk after
               every run (memory.enable_memory_arena_shrinkage), outputs copied out of the arena
  guard-exact  the same with arena_extend_strategy=kSameAsRequested (no 1 MiB region kept)
  shrink       the per-session arena shrunk after every run: memory given back, no ceiling
  no-arena     enable_cpu_mem_arena=False, plain malloc: memory given back, no ceiling
  subprocess   one worker process per model under RLIMIT_AS (model size + limit), feeds and
               outputs pickled over a pipe: a real per-request ceiling
Tables: (1) Portal.predict with the guard on vs off (two portals on one store, interleaved);
(2) session.run of each option vs off (interleaved pairs, median of per-round ratios);
(3) RSS before / after the bomb (2**29 float32 ones = 2 GiB) and after a 512 MiB request, each
option in a fresh child process; (4) contention under the guard: what a run holding most of the
ceiling does to predictions running at the same time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).parent))
from _common import mlp, paired_ratio, table  # noqa: E402

from portal import Portal
from portal.serving import memlimit
from portal.errors import MemoryLimitError  # noqa: E402
from portal.ingest.modelinfo import describe_model  # noqa: E402
from portal.serving.runtime import LoadedSession  # noqa: E402

MIB = 1024 * 1024
OPTIONS = ("off", "guard", "guard-exact", "shrink", "no-arena", "subprocess")
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")
SHRINK = "memory.enable_memory_arena_shrinkage"
Runner = Callable[[dict[str, np.ndarray]], list[Any]]


# -- models ------------------------------------------------------------------------
def bomb() -> onnx.ModelProto:
    """x FP32 [N, 1] → x + sum(ones(int(max(x)))): the input chooses the memory (as in the tests)."""
    one = numpy_helper.from_array(np.array([1.0], np.float32))
    nodes = [helper.make_node("ReduceMax", ["x"], ["m"], keepdims=0),
             helper.make_node("Cast", ["m"], ["n"], to=TensorProto.INT64),
             helper.make_node("Reshape", ["n", "one_dim"], ["shape"]),
             helper.make_node("ConstantOfShape", ["shape"], ["big"], value=one),
             helper.make_node("ReduceSum", ["big"], ["s"], keepdims=1),
             helper.make_node("Add", ["x", "s"], ["y"])]
    graph = helper.make_graph(nodes, "bomb", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])],
                              [numpy_helper.from_array(np.array([1], np.int64), "one_dim")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def digits_bytes(work: Path) -> bytes:
    """The demo digits CNN, built and registered the way ``portal demo`` does."""
    from portal.demo import build_demo_sources

    source = next(s for s in build_demo_sources(work / "demo") if s.name == "digits")
    portal = Portal.open(work / "digits-home", monitor=False)
    try:
        portal.register(source.path, "digits", input_shape=source.input_shape, task=source.task)
        return portal.model_path("digits").read_bytes()
    finally:
        portal.close()


# -- the options ---------------------------------------------------------------------
def _options(*, arena: bool = True) -> ort.SessionOptions:
    options = ort.SessionOptions()  # as SessionConfig(intra_op_threads=1).build() without the ceiling
    options.intra_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_cpu_mem_arena = arena
    return options


def _session(model: bytes, options: ort.SessionOptions) -> ort.InferenceSession:
    return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


def _register_arena(limit_bytes: int, strategy: int) -> None:
    info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
    ort.create_and_register_allocator(info, ort.OrtArenaCfg({"max_mem": limit_bytes, "arena_extend_strategy": strategy}))


def _guarded(model: bytes, limit_bytes: int, *, exact: bool) -> Runner:
    memlimit.install(limit_bytes)
    if exact:  # replace the env arena for the sessions built now; memlimit's own record is unchanged
        _register_arena(limit_bytes, 1)
    options = _options()
    memlimit.configure(options)
    session = _session(model, options)
    if exact:
        _register_arena(limit_bytes, 0)  # what memlimit.install registers, for sessions built later
    loaded = LoadedSession(key=("bench", None), session=session, size_bytes=len(model), load_seconds=0.0,  # type: ignore[arg-type]
                           input_names=(), output_names=())
    assert loaded.memory_limit == limit_bytes
    return lambda feeds: loaded.run(feeds)


def _shrinking(model: bytes) -> Runner:
    session = _session(model, _options())

    def run(feeds: dict[str, np.ndarray]) -> list[Any]:
        options = ort.RunOptions()
        options.add_run_config_entry(SHRINK, "cpu:0")
        return [v.copy() for v in session.run(None, feeds, options)]

    return run


def _worker_main(conn: Any, model: bytes, limit_bytes: int) -> None:
    session = _session(model, _options())
    vm = _status_kib("VmSize") * 1024
    resource.setrlimit(resource.RLIMIT_AS, (vm + limit_bytes, vm + limit_bytes))
    conn.send("ready")
    while (feeds := conn.recv()) is not None:
        try:
            conn.send(("ok", session.run(None, feeds)))
        except Exception as exc:  # noqa: BLE001 - reported to the parent
            conn.send(("error", str(exc).splitlines()[0][-200:]))


class Worker:
    """The out-of-process option: a model in a child under RLIMIT_AS, restarted if it dies."""

    def __init__(self, model: bytes, limit_bytes: int) -> None:
        self.model, self.limit_bytes = model, limit_bytes
        self.restarts = 0
        self._start()

    def _start(self) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, self.model, self.limit_bytes), daemon=True)
        self.proc.start()
        child.close()
        assert self.conn.recv() == "ready"

    def run(self, feeds: dict[str, np.ndarray]) -> list[Any]:
        self.conn.send(feeds)
        try:
            status, value = self.conn.recv()
        except EOFError:
            self.proc.join()
            self.restarts += 1
            self._start()
            raise MemoryError(f"worker died (exit {self.proc.exitcode}); restarted") from None
        if status == "error":
            raise MemoryError(value)
        return value

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(None)
        self.proc.join(timeout=10)


def runner(option: str, model: bytes, limit_bytes: int) -> Runner:
    if option == "off":
        session = _session(model, _options())
        return lambda feeds: session.run(None, feeds)
    if option in ("guard", "guard-exact"):
        return _guarded(model, limit_bytes, exact=option == "guard-exact")
    if option == "shrink":
        return _shrinking(model)
    if option == "no-arena":
        session = _session(model, _options(arena=False))
        return lambda feeds: session.run(None, feeds)
    if option == "subprocess":
        return Worker(model, limit_bytes).run
    raise ValueError(f"option must be one of {', '.join(OPTIONS)} (not {option!r})")


# -- measurements --------------------------------------------------------------------
def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(field + ":"))


def _rss_mb() -> float:
    return _status_kib("VmRSS") / 1024


def _cases(models: dict[str, bytes]) -> list[tuple[str, int, dict[str, np.ndarray]]]:
    rng = np.random.default_rng(0)
    shapes = {"mlp": ("x", (30,)), "digits": ("input", (1, 8, 8))}
    return [(name, batch, {shapes[name][0]: rng.random((batch, *shapes[name][1]), dtype=np.float32)})
            for name in models for batch in (1, 64)]


def portal_rows(models: dict[str, bytes], work: Path, limit_bytes: int, rounds: int) -> list[list[object]]:
    home = work / "home"
    first = Portal.open(home, monitor=False)
    for name, data in models.items():
        model = onnx.load_from_string(data)
        blob = first.store.put_bytes(data)
        first.registry.add_version(name, blob_sha=blob.sha256, size_bytes=blob.size, source_format="onnx",
                                   info=describe_model(model, size_bytes=len(data)), model_fields={"task": "classification"})
    first.close()
    # the ceiling is one per process: each portal's sessions are loaded right after it is opened
    off = Portal.open(home, monitor=False, predict_memory_bytes=0)
    for name in models:
        assert off.session(off.get(name)).memory_limit == 0
    on = Portal.open(home, monitor=False, predict_memory_bytes=limit_bytes)
    for name in models:
        assert on.session(on.get(name)).memory_limit == limit_bytes
    rows = []
    for name, batch, feeds in _cases(models):
        t_off, t_on, ratio = paired_ratio(lambda: off.predict(name, feeds), lambda: on.predict(name, feeds),
                                          rounds=rounds, min_seconds=0.15)
        rows.append([name, batch, f"{t_off * 1e6:,.1f}", f"{t_on * 1e6:,.1f}", f"{ratio:.3f}",
                     f"{(t_on - t_off) * 1e6:+.1f}"])
    off.close()
    on.close()
    return rows


def option_rows(models: dict[str, bytes], limit_bytes: int, rounds: int) -> list[list[object]]:
    runners = {(option, name): runner(option, data, limit_bytes) for option in OPTIONS for name, data in models.items()}
    rows = []
    for name, batch, feeds in _cases(models):
        base = runners[("off", name)]
        expected = base(feeds)[0]
        for option in OPTIONS[1:]:
            run = runners[(option, name)]
            np.testing.assert_allclose(run(feeds)[0], expected, rtol=1e-5, atol=1e-6)
            t_base, t_opt, ratio = paired_ratio(lambda: base(feeds), lambda: run(feeds), rounds=rounds,
                                                min_seconds=0.15)
            rows.append([name, batch, option, f"{t_base * 1e6:,.1f}", f"{t_opt * 1e6:,.1f}", f"{ratio:.3f}"])
    for (option, _), run in runners.items():
        if option == "subprocess":
            run.__self__.close()  # type: ignore[attr-defined]
    return rows


def rss_child(option: str, limit_bytes: int) -> dict[str, Any]:
    """In a fresh process: RSS around the bomb (2 GiB) and a 512 MiB request under ``option``."""
    run = runner(option, bomb().SerializeToString(), limit_bytes)

    def attempt(value: float) -> str:
        try:
            run({"x": np.array([[value]], np.float32)})
            return "ran"
        except (MemoryLimitError, MemoryError) as exc:
            return f"refused ({type(exc).__name__})"

    attempt(3)
    result: dict[str, Any] = {"before": _rss_mb()}
    result["bomb"] = attempt(2**29)
    result["after_bomb"] = _rss_mb()
    result["mid"] = attempt(2**27)
    result["after_mid"] = _rss_mb()
    result["next"] = attempt(3)
    result["after_next"] = _rss_mb()
    result["peak"] = _status_kib("VmHWM") / 1024
    return result


def contention_child(limit_bytes: int) -> dict[str, Any]:
    """Under the guard: a run holding ~75% of the ceiling, and others arriving while it runs."""
    run = runner("guard", bomb().SerializeToString(), limit_bytes)
    quarter = limit_bytes // 4 // 4  # float32 elements in a quarter of the ceiling
    counts = {"half alone ok": 0, "half alone refused": 0, "hog ok": 0, "hog refused": 0,
              "small ok": 0, "small refused": 0, "half ok": 0, "half refused": 0}
    stop = threading.Event()

    def attempt(label: str, value: int) -> None:
        try:
            run({"x": np.array([[value]], np.float32)})
            counts[f"{label} ok"] += 1
        except MemoryLimitError:
            counts[f"{label} refused"] += 1

    def hog() -> None:
        while not stop.is_set():
            attempt("hog", 3 * quarter)

    for _ in range(5):
        attempt("half alone", 2 * quarter)
    thread = threading.Thread(target=hog)
    thread.start()
    try:
        for _ in range(40):
            attempt("small", 1000)
            attempt("half", 2 * quarter)
    finally:
        stop.set()
        thread.join()
    return counts


def _child(kind: str, option: str, limit_bytes: int) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--child", kind, "--option", option,
                          "--limit-mb", str(limit_bytes // MIB)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def rss_rows(limit_bytes: int) -> list[list[object]]:
    rows = []
    for option in OPTIONS:
        r = _child("rss", option, limit_bytes)
        rows.append([option, f"{r['before']:,.0f}", r["bomb"], f"{r['after_bomb']:,.0f}", r["mid"],
                     f"{r['after_mid']:,.0f}", f"{r['after_next']:,.0f}", f"{r['peak']:,.0f}"])
    return rows


def machine() -> str:
    model, flags = platform.processor() or "?", set()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    shown = " ".join(f"{f}={'yes' if f in flags else 'no'}" for f in FLAGS)
    return (f"CPU: {model}, {len(os.sched_getaffinity(0))} cores, {shown}; load {os.getloadavg()[0]:.2f}; "
            f"onnxruntime {ort.__version__}, numpy {np.__version__}, Python {platform.python_version()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-demo", action="store_true", help="skip the digits CNN (no torch needed)")
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds per comparison")
    parser.add_argument("--limit-mb", type=int, default=2048, help="the ceiling (PORTAL_PREDICT_MEMORY_MB)")
    parser.add_argument("--child", choices=("rss", "contention"), help=argparse.SUPPRESS)
    parser.add_argument("--option", default="guard", help=argparse.SUPPRESS)
    args = parser.parse_args()
    limit = args.limit_mb * MIB
    ort.set_default_logger_severity(4)  # the refused runs would each log an error line
    if args.child:
        result = rss_child(args.option, limit) if args.child == "rss" else contention_child(limit)
        print(json.dumps(result))
        return
    print(machine(), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        models = {"mlp": mlp().SerializeToString()}
        if not args.no_demo:
            models["digits"] = digits_bytes(work)
        print(f"\n== (1) Portal.predict, guard on ({args.limit_mb} MiB) vs off, interleaved "
              f"({args.rounds} rounds; ratio = median of per-round on/off)")
        print(table(portal_rows(models, work, limit, args.rounds),
                    ["model", "batch", "off µs", "on µs", "on/off", "added µs"]), flush=True)
        print(f"\n== (2) session.run per option vs off (same inputs, interleaved pairs, {args.rounds} rounds)")
        print(table(option_rows(models, limit, args.rounds),
                    ["model", "batch", "option", "off µs", "option µs", "option/off"]), flush=True)
    print(f"\n== (3) RSS in MiB of a fresh process per option: bomb = 2**29 float32 (2,048 MiB), "
          f"mid = 2**27 (512 MiB), then a small request; ceiling {args.limit_mb} MiB")
    print(table(rss_rows(limit), ["option", "before", "bomb", "after bomb", "512 MiB request", "after it",
                                  "after next", "peak (VmHWM)"]), flush=True)
    print(f"\n== (4) contention under the guard ({args.limit_mb} MiB): one thread loops a run holding 75% of it; "
          "the other runs 40 small (4 KB) and 40 half-ceiling requests meanwhile (after 5 half alone)")
    counts = _child("contention", "guard", limit)
    print(table([[k, v] for k, v in counts.items()], ["", "count"]))


if __name__ == "__main__":
    main()
