"""Compressed variants of six real architectures: size, speed and agreement against each parent.

Run: .venv/bin/python bench/compression.py [--home DIR] [--image-size 160] [--threads 1] [--only digits,mlp]
     [--train-seconds 30] [--tolerance 0.01]

Builds, in one run: the demo digits CNN (portal.demo, registered through the real
ingest), an MLP and a random forest trained on breast cancer, a small transformer
encoder, and torchvision's mobilenet_v3_small and resnet18 (random weights);
creates the variant of EVERY method (the opt-in ones too: distill trains a
student for ``--train-seconds``, int8-budgeted searches for the fastest int8
within ``--tolerance``), timing each build, then measures them all with
``portal.compress.variants.compare`` (which reuses the variants just built) and
prints, per model and method, the size ratio, the speedup at batch 1 and 32
(parent p50 / variant p50, measured interleaved in one child process), the
top-1 agreement, the verdict and the seconds the build took; then the variant
the portal recommends. Every figure is a ratio against the parent measured in
the same run on the same machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from _common import table  # noqa: E402

from portal import Portal  # noqa: E402
from portal.compress.measure import environment  # noqa: E402
from portal.compress.methods import METHODS, REGISTRY  # noqa: E402
from portal.compress.variants import Comparison, compare, create_variant  # noqa: E402
from portal.errors import InvalidInputError, InvalidModelError  # noqa: E402

warnings.filterwarnings("ignore")


# -- models --------------------------------------------------------------------------------
def _export(torch: Any, module: Any, example: Any, path: Path) -> Path:
    """TorchScript-based ONNX export (opset 17, dynamic batch): fast and stable for these modules."""
    module.eval()
    torch.onnx.export(module, (example,), str(path), input_names=["x"], output_names=["logits"], opset_version=17,
                      dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)
    return path


def add_digits(portal: Portal, work: Path) -> tuple[str, dict[str, Any]]:
    from portal.demo import build_demo_sources

    source = next(s for s in build_demo_sources(work / "demo") if s.name == "digits")
    version = portal.register(source.path, "digits", input_shape=source.input_shape, task=source.task,
                              feature_names=source.feature_names, class_labels=source.class_labels,
                              preprocessing=source.preprocessing, reference=source.reference)
    return version.ref, {}  # evaluated and calibrated on its reference data (200 digits with labels)


def add_mlp(portal: Portal, work: Path, hidden: int = 512) -> tuple[str, dict[str, Any]]:
    import torch
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer(as_frame=True)
    x = bunch.data.to_numpy(np.float32)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(30, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, hidden),
                              torch.nn.ReLU(), torch.nn.Linear(hidden, 2))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    xs, ys = torch.from_numpy(x), torch.from_numpy(bunch.target.to_numpy())
    for _ in range(60):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(xs), ys).backward()
        optimizer.step()
    path = _export(torch, net, torch.zeros(2, 30), work / "mlp.onnx")
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(30)]).assign(target=bunch.target.astype(str).to_numpy())
    version = portal.register(path, "mlp", task="classification", class_labels=["0", "1"],
                              feature_names=[f"f{i}" for i in range(30)], reference=frame)
    return version.ref, {"data": frame.sample(n=400, random_state=0), "label_column": "target"}


def add_forest(portal: Portal, work: Path) -> tuple[str, dict[str, Any]]:
    """A random forest (100 trees) on breast cancer, converted with skl2onnx: only distill can shrink it."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier
    from skl2onnx import to_onnx

    bunch = load_breast_cancer(as_frame=True)
    x = bunch.data.to_numpy(np.float32)
    forest = RandomForestClassifier(n_estimators=100, random_state=0).fit(x, bunch.target.to_numpy())
    path = work / "forest.onnx"
    path.write_bytes(to_onnx(forest, x[:1], options={id(forest): {"zipmap": False}}).SerializeToString())
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(30)])
    reference = frame.assign(target=bunch.target.astype(str).to_numpy())
    version = portal.register(path, "forest", task="classification", class_labels=["0", "1"],
                              feature_names=list(frame.columns), reference=reference)
    return version.ref, {"data": reference.sample(n=400, random_state=0), "label_column": "target"}


def add_transformer(portal: Portal, work: Path, *, seq: int = 32, d_model: int = 256) -> tuple[str, dict[str, Any]]:
    import torch

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layer = torch.nn.TransformerEncoderLayer(d_model, nhead=8, dim_feedforward=4 * d_model, batch_first=True)
            self.encoder = torch.nn.TransformerEncoder(layer, num_layers=4, enable_nested_tensor=False)
            self.head = torch.nn.Linear(d_model, 10)

        def forward(self, x: Any) -> Any:
            return self.head(self.encoder(x).mean(dim=1))

    torch.manual_seed(0)
    path = _export(torch, Encoder(), torch.zeros(2, seq, d_model), work / "transformer.onnx")
    version = portal.register(path, "transformer", task="classification")
    rng = np.random.default_rng(0)
    return version.ref, {"data": {"x": rng.normal(size=(128, seq, d_model)).astype(np.float32)},
                         "calibration": {"x": rng.normal(size=(64, seq, d_model)).astype(np.float32)}}


def add_vision(portal: Portal, work: Path, name: str, size: int) -> tuple[str, dict[str, Any]]:
    import torch
    import torchvision

    torch.manual_seed(0)
    net = getattr(torchvision.models, name)(weights=None)
    path = _export(torch, net, torch.zeros(2, 3, size, size), work / f"{name}.onnx")
    version = portal.register(path, name.replace("_", "-"), task="classification")
    rng = np.random.default_rng(0)
    images = rng.normal(size=(64, 3, size, size)).astype(np.float32)
    return version.ref, {"data": {"x": images}, "calibration": {"x": images[:32]}}


# -- build every variant, timed -------------------------------------------------------------
def build_all(portal: Portal, ref: str, data: dict[str, Any], knobs: dict[str, Any]) -> dict[str, str]:
    """Create each method's variant of ``ref`` as ``compare`` would (so it reuses them): seconds, or the refusal."""
    built: dict[str, str] = {}
    for name in METHODS:
        kwargs = {k: knobs[k] for k in REGISTRY[name].compare_options if k in knobs}
        if REGISTRY[name].calibrated and data.get("calibration") is not None:
            kwargs["calibration"] = data["calibration"]
        t0 = time.perf_counter()
        try:
            create_variant(portal, ref, name, reuse=True, **kwargs)
            built[name] = f"{time.perf_counter() - t0:.1f}"
        except (InvalidInputError, InvalidModelError) as exc:
            built[name] = "refused"
            print(f"... {ref} {name} refused: {exc.message}", file=sys.stderr, flush=True)
            continue
        print(f"... {ref} {name} built in {built[name]} s", file=sys.stderr, flush=True)
    return built


# -- report --------------------------------------------------------------------------------
def rows_for(comparison: Comparison, built: dict[str, str]) -> list[list[object]]:
    parent = comparison.measurements[0]
    rows: list[list[object]] = []
    for m in comparison.measurements[1:]:
        verdict = comparison.advice.verdict(m.ref)
        speed = verdict.speedup if verdict else {}  # median of the paired rounds (parent / variant)
        agree = m.agreement.get("top1")
        accuracy = m.labels.get("accuracy")
        rows.append([comparison.parent, m.method, f"{m.size_bytes / parent.size_bytes:.2f}",
                     f"{speed.get('1', float('nan')):.2f}", f"{speed.get('32', float('nan')):.2f}",
                     "-" if agree is None else f"{agree:.2%}",
                     "-" if accuracy is None else f"{accuracy:.2%} ({parent.labels.get('accuracy', 0):.2%})",
                     verdict.status if verdict else "-", built.get(str(m.method), "-")])
    for method, reason in comparison.refused.items():
        rows.append([comparison.parent, method, "-", "-", "-", "-", "-", "refused: " + reason[:48], "-"])
    return rows


def check(comparison: Comparison) -> list[str]:
    """Violations of "never recommend a variant slower than its parent"."""
    best = comparison.advice.best
    if best is None:
        return []
    speedup = comparison.advice.verdict(best).speedup
    return [f"{best} is slower at batch {b}" for b, s in speedup.items() if s < 1.0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", type=Path, help="store to use (default: a temporary one)")
    parser.add_argument("--image-size", type=int, default=160,
                        help="input side of the torchvision models (224 is their usual size; ~4 min longer)")
    parser.add_argument("--only", help="comma-separated subset: digits,mlp,transformer,mobilenet,resnet")
    parser.add_argument("--threads", type=int, default=1,
                        help="intra-op threads while timing (default 1: steadiest on a shared machine; 0 = all cores)")
    parser.add_argument("--per-tensor", action="store_true",
                        help="int8 with one scale per tensor (default: per channel)")
    parser.add_argument("--train-seconds", type=float, default=30.0, help="distill: the student's training budget")
    parser.add_argument("--tolerance", type=float, default=0.01,
                        help="int8-budgeted's budget and the advice's: largest agreement loss accepted")
    args = parser.parse_args()
    every = ["digits", "mlp", "forest", "transformer", "mobilenet", "resnet"]
    chosen = set(args.only.split(",")) if args.only else set(every)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        portal = Portal.open(args.home or work / "home")
        env = environment()
        print(f"CPU: {env['cpu']} ({env['cores']} cores) avx2={env['avx2']} avx512={env['avx512']} "
              f"vnni={env['vnni']} · onnxruntime {env['onnxruntime']} · timing threads {args.threads} · "
              f"int8 {'per tensor' if args.per_tensor else 'per channel'}\n")
        builders = [("digits", lambda: add_digits(portal, work)), ("mlp", lambda: add_mlp(portal, work)),
                    ("forest", lambda: add_forest(portal, work)),
                    ("transformer", lambda: add_transformer(portal, work)),
                    ("mobilenet", lambda: add_vision(portal, work, "mobilenet_v3_small", args.image_size)),
                    ("resnet", lambda: add_vision(portal, work, "resnet18", args.image_size))]
        rows, advice, problems = [], [], []
        for key, build in builders:
            if key not in chosen:
                continue
            t0 = time.perf_counter()
            ref, data = build()
            built = time.perf_counter() - t0
            knobs = {"per_channel": not args.per_tensor, "calibration_method": "minmax", "sparsity": 0.5,
                     "tolerance": args.tolerance, "student": "auto", "train_seconds": args.train_seconds}
            made = build_all(portal, ref, data, knobs)
            t0 = time.perf_counter()
            comparison = compare(portal, ref, budget_seconds=2.0, threads=args.threads, methods=list(METHODS),
                                 **knobs, **data)
            seconds = time.perf_counter() - t0
            rows += rows_for(comparison, made)
            advice.append(f"{ref}: {comparison.advice.summary}  [built in {built:.0f} s, compared in {seconds:.0f} s]")
            advice.append(f"{ref} at batch 32 only: {comparison.with_advice(batch=32).advice.summary}")
            problems += check(comparison) + check(comparison.with_advice(batch=32))
            print(f"... {ref} compared in {seconds:.1f} s", file=sys.stderr, flush=True)
        print(table(rows, ["model", "method", "size ×", "speedup b1", "speedup b32", "top-1 agree",
                           "accuracy (parent)", "verdict", "build s"]))
        print("\nspeedup = median over the interleaved rounds of parent time / variant time (> 1: faster); "
              "size × = variant / parent file size; accuracy where the evaluation set has labels; build s = "
              "seconds to create the variant (sandboxed child included)\n")
        print("\n".join(advice))
        print(f"\nrecommendations slower than their parent: {problems or 'none'}")
        print(f"total {time.perf_counter() - start:.0f} s")
        portal.close()


if __name__ == "__main__":
    main()
