"""LIME explanations: portal vs lime called directly, and SHAP vs LIME agreement on the demo models.

Run: .venv/bin/python bench/explain_lime.py [--home DIR] [--rows 10] [--rounds 7]
(``bench/explain.py`` runs it too, after the SHAP figures; ``--lime-only`` skips those.)

Target (issue #17): the portal's LIME ≤ 1.10× lime's own ``LimeTabularExplainer``
called directly with the same configuration on the same onnxruntime session,
per explained row. Every figure is measured in this run against a baseline
measured in this run, in interleaved rounds (rotating order), so drift in the
machine's load hits both alike.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from _common import table  # noqa: E402

from portal import Portal  # noqa: E402
from portal.explain import ExplainSettings, LimeImageJob, LimeJob, clear_cache, explain_agreement  # noqa: E402
from portal.explain.lime_images import KERNEL_WIDTH, superpixels  # noqa: E402

LIME = ExplainSettings(method="lime")
DEMO_TABULAR = ("breast-cancer", "diabetes", "wine")


# -- portal vs lime directly (tabular) ------------------------------------------------------
def _direct(portal: Portal, job: LimeJob, targets: np.ndarray, output: str) -> tuple[float, np.ndarray]:
    """lime's LimeTabularExplainer, configured as the portal does, on the portal's own onnxruntime session."""
    from lime.lime_tabular import LimeTabularExplainer

    session = portal.session(job.version).session
    name = job.version.signature["inputs"][0]["name"]

    def model(x: np.ndarray) -> np.ndarray:
        return session.run([output], {name: x.astype(np.float32)})[0]

    start = time.perf_counter()
    explainer = LimeTabularExplainer(job.training, mode="classification", feature_names=job.codec.feature_names,
                                     discretize_continuous=True, feature_selection="none", random_state=0)
    weights = []
    for i, row in enumerate(job.rows):
        explainer.random_state.seed(0)
        exp = explainer.explain_instance(row, model, labels=(int(targets[i]),), num_features=job.rows.shape[1],
                                         num_samples=job.estimate.max_evals)
        w = np.zeros(job.rows.shape[1])
        for j, v in exp.local_exp[int(targets[i])]:
            w[j] = v
        weights.append(w)
    return time.perf_counter() - start, np.stack(weights)


def _portal_run(portal: Portal, model: str, rows: pd.DataFrame) -> tuple[float, np.ndarray]:
    """The whole portal path: check and hash the data, estimate, explain, cache."""
    clear_cache(portal)
    start = time.perf_counter()
    expl = LimeJob(portal, model, rows, settings=LIME).run()
    return time.perf_counter() - start, expl.weights


def tabular_overhead(portal: Portal, model: str, output: str, frame: pd.DataFrame, rows: int,
                     rounds: int) -> list[list[object]]:
    chosen = frame.head(rows)
    _portal_run(portal, model, chosen)  # load the session, import lime, read the reference data
    clear_cache(portal)
    job = LimeJob(portal, model, chosen, settings=LIME)
    targets = job.targets(job.function(job.rows))
    ours, direct = [], []
    for i in range(rounds):
        runs = [("ours", lambda: _portal_run(portal, model, chosen)), ("direct", lambda: _direct(portal, job, targets,
                                                                                                    output))]
        results = {}
        for name, run in runs[i % 2:] + runs[:i % 2]:
            gc.collect()
            results[name] = run()
        ours.append(results["ours"][0])
        direct.append(results["direct"][0])
        assert np.allclose(results["ours"][1], results["direct"][1], atol=1e-6), "portal and lime disagree"
    ratios = [a / b for a, b in zip(ours, direct, strict=True)]
    plan = job.estimate
    return [
        [f"portal LIME ({plan.max_evals:,} samples per row, quartile bins)", f"{min(ours) / rows * 1e3:.1f} ms",
         f"{min(ours) / min(direct):.3f}×", f"{statistics.median(ratios):.3f}×"],
        ["lime's LimeTabularExplainer directly (same configuration, same session)",
         f"{min(direct) / rows * 1e3:.1f} ms", "1.000×", "1.000×"],
        ["portal's estimate before running", f"{plan.seconds / rows * 1e3:.1f} ms",
         f"{plan.seconds / min(ours):.2f}× actual", ""],
    ]


def tabular_decomposed(portal: Portal, model: str, output: str, frame: pd.DataFrame, rows: int,
                       rounds: int) -> list[list[object]]:
    """The overhead in parts, each robust to a busy machine (as bench/explain.py does for SHAP).

    Per row: lime over the portal's predict function vs over the raw session, in
    pairs of one-row runs in alternating order (median of the pair ratios). Per
    explanation: the work outside lime (checking, hashing, estimating, cache write),
    from full runs with lime's share timed out.
    """
    from lime.lime_tabular import LimeTabularExplainer

    import portal.explain.lime as lime_module

    chosen = frame.head(rows)
    clear_cache(portal)
    job = LimeJob(portal, model, chosen, settings=LIME)
    targets = job.targets(job.function(job.rows))
    session = portal.session(job.version).session
    name = job.version.signature["inputs"][0]["name"]
    samples, features = job.estimate.max_evals, job.rows.shape[1]

    def raw(x: np.ndarray) -> np.ndarray:
        return session.run([output], {name: x.astype(np.float32)})[0]

    explainer = LimeTabularExplainer(job.training, mode="classification", discretize_continuous=True,
                                     feature_selection="none", random_state=0)

    def one_row(function: Any, i: int) -> float:
        start = time.perf_counter()
        explainer.random_state.seed(0)
        explainer.explain_instance(job.rows[i], function, labels=(int(targets[i]),), num_features=features,
                                   num_samples=samples)
        return time.perf_counter() - start

    pairs, direct_rows = [], []
    for k in range(rounds):
        for i in range(rows):
            gc.collect()
            if (k + i) % 2:
                ours, theirs = one_row(job.function, i), one_row(raw, i)
            else:
                theirs, ours = one_row(raw, i), one_row(job.function, i)
            pairs.append(ours / theirs)
            direct_rows.append(theirs)
    inside, timed = [], lime_module.lime_rows

    def timing(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return timed(*args, **kwargs)
        finally:
            inside.append(time.perf_counter() - start)

    lime_module.lime_rows = timing  # bench only: time lime's share of a full portal run
    try:
        outside = [_portal_run(portal, model, chosen)[0] - inside[-1] for _ in range(rounds)]
    finally:
        lime_module.lime_rows = timed
    per_row, fixed = statistics.median(pairs), statistics.median(outside)
    direct_total = statistics.median(direct_rows) * rows
    return [
        ["lime over portal predict vs over the raw session, per row", f"{per_row:.3f}×",
         f"median of {len(pairs)} paired rows"],
        [f"fixed work outside lime per explanation of {rows} rows", f"{fixed * 1e3:.1f} ms",
         f"{fixed / direct_total:.1%} of lime's {direct_total * 1e3:.0f} ms"],
        ["portal vs lime directly, combined", f"{per_row + fixed / direct_total:.3f}×", "target ≤ 1.10×"],
    ]


# -- images ---------------------------------------------------------------------------------
def image_overhead(portal: Portal, count: int, rounds: int) -> list[list[object]]:
    """LIME on digits: the portal (lime's explainer, batched perturbations) vs lime's stock explainer."""
    from lime.lime_image import LimeImageExplainer

    version = portal.get("digits")
    pixels = portal.reference_frame("digits")[version.feature_names].head(count).to_numpy(np.float32)
    images = pixels.reshape(count, 1, 8, 8)
    settings = ExplainSettings(method="lime", top_classes=1)
    job = LimeImageJob(portal, "digits", images, settings=settings)
    session = portal.session(version).session

    def model(batch: np.ndarray) -> np.ndarray:  # lime hands RGB H × W × 3; the model takes N × 1 × 8 × 8
        logits = session.run(None, {"input": np.ascontiguousarray(batch[..., :1].transpose(0, 3, 1, 2),
                                                                  dtype=np.float32)})[0]
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True)

    def direct() -> float:
        start = time.perf_counter()
        for image in job.images:
            segments = superpixels(image, job.segment_count)
            label = int(model(np.repeat(image, 3, axis=2)[None]).argmax())
            LimeImageExplainer(kernel_width=KERNEL_WIDTH, feature_selection="none", random_state=0).explain_instance(
                np.repeat(image, 3, axis=2), model, labels=(label,), top_labels=None, num_features=100,
                num_samples=1000, batch_size=256, segmentation_fn=lambda _, s=segments: s, random_seed=0)
        return time.perf_counter() - start

    def ours() -> float:
        clear_cache(portal)
        start = time.perf_counter()
        LimeImageJob(portal, "digits", images, settings=settings).run()
        return time.perf_counter() - start

    ours()
    mine, theirs = [], []
    for i in range(rounds):
        for name, run in [("ours", ours), ("direct", direct)][i % 2:] + [("ours", ours), ("direct", direct)][:i % 2]:
            gc.collect()
            (mine if name == "ours" else theirs).append(run())
    return [[f"digits, {count} images, 1,000 samples, top class", f"{min(mine) / count * 1e3:.0f} ms",
             f"{min(theirs) / count * 1e3:.0f} ms", f"{min(mine) / min(theirs):.2f}×"]]


# -- agreement on the demo models -----------------------------------------------------------
def ensure_demo(portal: Portal, names: tuple[str, ...]) -> None:
    """Register the demo models of ``names`` that ``portal`` lacks (through the real ingest)."""
    missing = [n for n in names if n not in portal.registry.model_names()]
    if not missing:
        return
    from portal.demo import build_demo_sources

    with tempfile.TemporaryDirectory() as tmp:
        for src in build_demo_sources(Path(tmp)):
            if src.name in missing:
                portal.register(src.path, src.name, input_shape=src.input_shape, task=src.task,
                                feature_names=src.feature_names, class_labels=src.class_labels,
                                preprocessing=src.preprocessing, reference=src.reference)


def agreement(portal: Portal, rows: int, top_k: int) -> list[list[object]]:
    out: list[list[object]] = []
    for name in DEMO_TABULAR:
        frame = portal.reference_frame(name)
        for discretize in (True, False):
            settings = ExplainSettings(method="lime", lime_discretize=discretize)
            clear_cache(portal)
            start = time.perf_counter()
            report = explain_agreement(portal, name, frame.head(rows), settings=settings, top_k=top_k)
            spent = time.perf_counter() - start
            s = report.summary()
            assert report.lime is not None
            out.append([name, "bins" if discretize else "scaled", s["rows"], f"{s['mean_row_spearman']:.3f}",
                        f"{s['spearman']:.3f}", f"{s['mean_row_top_k_overlap']:.3f}", f"{s['mean_sign_agreement']:.3f}",
                        f"{float(np.mean(report.lime.scores)):.2f}", ", ".join(map(str, report.flagged)) or "none",
                        f"{spent:.1f} s"])
    return out


def run(portal: Portal, *, model: str, output: str, frame: pd.DataFrame, rows: int, rounds: int) -> None:
    """Print the LIME tables (``model``: a registered tabular classifier; digits and demo models are added)."""
    from portal.compress.measure import environment

    env = environment()
    print(f"# LIME (lime 0.2.0.1) on {env['cpu']} (avx2={env['avx2']}, avx512={env['avx512']}, vnni={env['vnni']}), "
          f"{env['cores']} cores, onnxruntime {env['onnxruntime']}\n")
    print(f"## portal vs lime called directly: {model}, {rows} rows, {rounds} interleaved rounds "
          "(best: fastest round; ratio: median of per-round ratios)\n")
    print(table(tabular_overhead(portal, model, output, frame, rows, rounds),
                ["path", "best wall per row", "best vs lime", "median ratio"]))
    print("\n## the same comparison, decomposed (robust to a busy machine)\n")
    print(table(tabular_decomposed(portal, model, output, frame, rows, rounds), ["part", "figure", "how"]))
    ensure_demo(portal, (*DEMO_TABULAR, "digits"))
    print("\n## images: portal (lime's explainer, perturbations built per batch) vs lime's stock explainer\n")
    print(table(image_overhead(portal, 4, max(3, rounds // 2)), ["case", "portal per image", "lime per image",
                                                                 "portal / lime"]))
    print(f"\n## SHAP vs LIME on the demo models: first {20} reference rows, top 5 features, seed 0\n")
    print(table(agreement(portal, 20, 5), ["model", "LIME features", "rows", "rank corr. (mean row)",
                                           "rank corr. (global)", "top-5 overlap", "same direction",
                                           "LIME R² (mean)", "rows flagged", "SHAP + LIME time"]))


def main() -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from explain import MODEL, _register_mlp

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", type=Path, help="store to use (may already hold the demo models)")
    parser.add_argument("--rows", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    tmp = tempfile.TemporaryDirectory()
    portal = Portal.open(args.home or Path(tmp.name))
    frame = _register_mlp(portal)
    run(portal, model=MODEL, output="probs", frame=frame, rows=args.rows, rounds=args.rounds)
    portal.close()
    tmp.cleanup()


if __name__ == "__main__":
    main()

