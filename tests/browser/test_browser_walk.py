"""A new analyst's first hour, in one Chromium session against a real ``streamlit`` server (issue 14).

The walk starts from an empty store with the files a new user would bring, all built here
from third-party sources (:mod:`walk_material`): an skl2onnx pipeline whose ``malic acid``
became ``malic_acid``, with a string column and reference data; onnx's bundled squeezenet
and expand-shape models; a torchvision mobilenet; a second skl2onnx pipeline without
reference data for Compare and Explain.  Every step asserts what the user sees, is timed,
and leaves a screenshot (``test-output/screenshots/walk-NN-*.png``); the step table goes to
``test-output/walk-steps.md``.  No request may leave 127.0.0.1.

Run with ``pytest -m browser tests/browser/test_browser_walk.py`` (needs Debian's ``chromium``).
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import pytest
from browser_server import REPO, Server
from test_browser import _goto, _idle, _nav, _shoot
from walk_material import CULTIVARS, IMAGENET_MEAN, IMAGENET_STD, Material, build

pytestmark = [pytest.mark.browser, pytest.mark.slow]

STEPS_FILE = REPO / "test-output" / "walk-steps.md"
LONG_MS = 300_000  # creating and measuring variants, or a first SHAP run, on two busy cores


class Walk:
    """Times each step, shoots the page after it, and keeps the table of steps."""

    def __init__(self, page: Any, screenshots: Path) -> None:
        self.page, self.screenshots = page, screenshots
        self.rows: list[tuple[int, str, str, float, bool]] = []

    @contextmanager
    def step(self, slug: str, what: str) -> Iterator[None]:
        number = len(self.rows) + 1
        began = time.monotonic()
        passed = False
        try:
            yield
            passed = True
        finally:
            seconds = time.monotonic() - began
            self.rows.append((number, slug, what, seconds, passed))
            try:
                _shoot(self.page, self.screenshots, f"walk-{number:02d}-{slug}")
            except Exception:  # a failed step may leave the page mid-run: shoot what there is
                self.page.screenshot(path=str(self.screenshots / f"walk-{number:02d}-{slug}.png"))

    def shot(self, what: str) -> None:
        """A screenshot inside the running step (``walk-NN-what.png``)."""
        _shoot(self.page, self.screenshots, f"walk-{len(self.rows) + 1:02d}-{what}")

    def table(self) -> str:
        lines = ["| # | step | what the user sees | seconds | pass |", "|---|---|---|---:|---|"]
        lines += [f"| {n} | {slug} | {what} | {s:.1f} | {'yes' if ok else 'NO'} |"
                  for n, slug, what, s, ok in self.rows]
        lines.append(f"| | total | | {sum(r[3] for r in self.rows):.1f} | |")
        return "\n".join(lines) + "\n"


def _calm(page: Any) -> None:
    """Idle, and no element of an earlier run left on the page (Streamlit keeps them, greyed, until the rerun ends)."""
    _idle(page)
    page.wait_for_function("() => !document.querySelector('[data-stale=\"true\"]')")


def _type(page: Any, label: str, text: str) -> None:
    """Type into the field labelled ``label`` once the page is calm; Tab commits it (Streamlit commits on blur)."""
    _calm(page)
    page.get_by_label(label, exact=True).last.fill(text)
    page.keyboard.press("Tab")
    _calm(page)


def _uploader(page: Any, label: str) -> Any:
    """The file input of the uploader labelled ``label``."""
    return page.get_by_test_id("stFileUploader").filter(has_text=label).locator('input[type="file"]')


def _pick(page: Any, name: str) -> None:
    """Choose model ``name`` in the sidebar picker."""
    page.get_by_test_id("stSidebar").get_by_test_id("stSelectbox").first.click()
    page.get_by_role("option", name=name, exact=True).click()
    _calm(page)


def _title(page: Any) -> str:
    return str(page.get_by_role("heading", level=1).first.inner_text()).strip()


def _download(page: Any, label: str) -> tuple[str, bytes]:
    with page.expect_download() as pending:
        page.get_by_role("button", name=label).click()
    return pending.value.suggested_filename, Path(pending.value.path()).read_bytes()


def _main(page: Any) -> str:
    return str(page.get_by_test_id("stMain").inner_text())


def _alerts(page: Any) -> list[str]:
    return [str(t) for t in page.get_by_test_id("stAlert").all_inner_texts()]


def _cut_tiles(page: Any) -> list[str]:
    return page.evaluate("""() => [...document.querySelectorAll('[data-testid="stMetricValue"]')]
        .filter(v => [v, ...v.querySelectorAll('*')].some(e => e.scrollWidth > e.clientWidth + 1))
        .map(v => v.innerText)""")


def _go(page: Any, label: str, heading: str) -> None:
    """Open page ``label`` from the sidebar and wait for its own title (the old one stays until it is drawn)."""
    _nav(page, label)
    page.get_by_role("heading", name=heading, level=1).wait_for()
    _calm(page)


def _upload_model(page: Any, model: Path, name: str) -> None:
    _go(page, "Upload", "Upload a model")
    page.locator('[data-testid="stFileUploader"] input[type="file"]').first.set_input_files(str(model))
    page.get_by_text("Validation report").wait_for()
    _calm(page)
    assert page.get_by_text("passed every check").count() <= 1  # said once (item 13)
    if name:
        _type(page, "Name", name)


def _register(page: Any, ref: str) -> None:
    page.get_by_role("button", name="Register").click()
    page.get_by_text(f"Registered {ref}. It is selected in the sidebar").wait_for()
    _calm(page)


def _see(page: Any, text: str) -> None:
    """Wait for ``text``; when it does not come, fail with what the page says instead (CI keeps no screenshots)."""
    try:
        page.get_by_text(text).wait_for()
    except Exception as exc:
        raise AssertionError(f"{text!r} did not show; alerts: {_alerts(page)}; page:\n{_main(page)[-3000:]}") from exc


def _image_settings(page: Any, labels: Path) -> None:
    page.get_by_text("Image settings").first.wait_for()
    _type(page, "Mean", IMAGENET_MEAN)
    _type(page, "Std", IMAGENET_STD)
    _uploader(page, "Labels file").set_input_files(str(labels))
    _see(page, f"1000 labels read from {labels.name} · the model has 1000 classes")
    _calm(page)


def _predict_png(page: Any, material: Material, ref: str, note: str) -> pd.DataFrame:
    """Drop the PNG on the Predict page of ``ref``; the preprocessing, top classes and note show; download."""
    page.get_by_role("link", name="Predict with it").click()
    page.get_by_role("heading", name=f"Predict with {ref}").wait_for()
    _calm(page)
    statement = page.get_by_text("Preprocessing applied: resized to 224×224")
    statement.wait_for()
    assert "normalised with mean [0.485, 0.456, 0.406] and std [0.229, 0.224, 0.225]" in statement.inner_text()
    _uploader(page, "Drop one or several images").set_input_files(str(material.png))
    page.get_by_text(f"{material.png.name}: top 5").wait_for()
    page.get_by_text(note).wait_for()
    _calm(page)
    name, data = _download(page, "Download image predictions (CSV)")
    assert name == f"{ref.replace(':', '-v')}-image-predictions.csv"
    ranked = pd.read_csv(io.BytesIO(data))
    assert list(ranked.columns) == ["file", "class", "score", "top_5"] and list(ranked["file"]) == ["house.png"]
    top = str(ranked["class"].iloc[0])
    assert top.startswith("imagenet class ") and 0.0 < float(ranked["score"].iloc[0]) <= 1.0
    assert page.locator(".js-plotly-plot").get_by_text(top, exact=True).count() >= 1  # the class label shows
    return ranked


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> Material:
    return build(tmp_path_factory.mktemp("walk-material"))


def test_a_new_analysts_first_hour(empty_server: Server, page: Any, screenshots: Path, material: Material) -> None:
    urls: list[str] = []
    page.context.on("request", lambda request: urls.append(request.url))
    walk = Walk(page, screenshots)
    try:
        _walk(page, empty_server, material, walk, urls)
    finally:
        table = walk.table()
        STEPS_FILE.parent.mkdir(parents=True, exist_ok=True)
        STEPS_FILE.write_text("# The analyst's walk (tests/browser/test_browser_walk.py)\n\n" + table)
        print("\n" + table)


def _walk(page: Any, server: Server, material: Material, walk: Walk, urls: list[str]) -> None:
    frame = material.wine_frame
    with walk.step("home-empty", "empty store: says what to do"):
        _goto(page, server)
        page.get_by_text("No models yet.").wait_for()

    with walk.step("upload-wine", "skl2onnx wine pipeline as model.onnx: asks for a real name; reference CSV; "
                                  "registered"):
        _upload_model(page, material.wine_model, "")
        page.get_by_text("which says nothing about the model").wait_for()
        assert page.get_by_label("Name", exact=True).input_value() == ""
        assert page.get_by_role("button", name="Register").is_disabled()
        _type(page, "Name", "wine")
        _type(page, "Class labels", ", ".join(CULTIVARS))
        page.get_by_text("3 class labels · the model has 3 classes").wait_for()
        _uploader(page, "Reference data (optional)").set_input_files(str(material.wine_reference))
        page.get_by_text(material.wine_reference.name).wait_for()
        _calm(page)
        walk.shot("wine-form")
        _register(page, "wine:1")

    with walk.step("predict-wine", "form at reference medians; CSV with 'malic acid' matched by normalised name; "
                                   "results downloaded"):
        page.get_by_role("link", name="Predict with it").click()
        page.get_by_role("heading", name="Predict with wine:1").wait_for()
        _calm(page)
        page.get_by_text("Defaults are the medians").wait_for()
        for model_column, file_column in [("malic_acid", "malic acid"), ("alcohol", "alcohol"),
                                          ("od280_od315_of_diluted_wines", "od280/od315_of_diluted_wines")]:
            shown = float(page.get_by_label(model_column, exact=True).input_value())
            assert shown == pytest.approx(float(np.median(frame[file_column])), rel=1e-5), model_column
        band = page.get_by_role("combobox", name="alcohol_band").input_value()
        assert band == frame["alcohol band"].mode().iloc[0] == "mid"
        page.get_by_role("button", name="Predict", exact=True).click()
        page.get_by_text("Confidence").first.wait_for()
        _calm(page)
        page.get_by_role("tab", name="Batch file").click()
        _uploader(page, "CSV or Parquet file").set_input_files(str(material.wine_batch))
        matched = page.get_by_test_id("stAlert").filter(has_text="by name spelled differently")
        matched.wait_for()
        said = matched.inner_text()
        assert "Matched 3 column(s)" in said
        for pair in ("malic acid → malic_acid", "alcohol band → alcohol_band",
                     "od280/od315_of_diluted_wines → od280_od315_of_diluted_wines"):
            assert pair in said, said
        page.get_by_text("All 14 columns the model needs are there.").wait_for()
        page.get_by_role("button", name="Predict 40 rows").click()
        page.get_by_role("button", name="Download results (CSV)").wait_for()
        _calm(page)
        name, data = _download(page, "Download results (CSV)")
        assert name == "cellar-predictions.csv"
        scored = pd.read_csv(io.BytesIO(data))
        assert list(scored["prediction"]) == material.wine_expected  # what scikit-learn says for these rows
        assert list(scored["bottle"]) == [f"b{i:02d}" for i in range(40)]
        assert "malic acid" in scored.columns  # the file's own spelling is kept in the results

    with walk.step("upload-squeezenet", "onnx's light_squeezenet: image settings and a 1,000-line labels file"):
        _upload_model(page, material.squeezenet, "squeezenet")
        page.get_by_text("Image settings").first.wait_for()
        _calm(page)
        assert page.get_by_role("radio", name="image classification").last.is_checked()
        _image_settings(page, material.labels)
        walk.shot("squeezenet-form")
        _register(page, "squeezenet:1")

    with walk.step("predict-squeezenet", "PNG: class label, preprocessing statement, probabilities as given; "
                                         "download"):
        _predict_png(page, material, "squeezenet:1", "outputs are probabilities: shown as given")

    if material.mobilenet is not None:
        with walk.step("mobilenet", "torchvision mobilenet_v3_small (random weights): softmax applied to logits"):
            _upload_model(page, material.mobilenet, "mobilenet")
            _image_settings(page, material.labels)
            walk.shot("mobilenet-form")
            _register(page, "mobilenet:1")
            _predict_png(page, material, "mobilenet:1", "softmax applied to logits")

    with walk.step("upload-expand-shape", "onnx's test_expand_shape_model1 (model.onnx) registers, no refusal"):
        _upload_model(page, material.expand_shape, "")
        page.get_by_text("which says nothing about the model").wait_for()
        _type(page, "Name", "expand-shape")
        assert not [a for a in _alerts(page) if "failed" in a or "refused" in a.lower()], _alerts(page)
        walk.shot("expand-shape-form")
        _register(page, "expand-shape:1")

    with walk.step("upload-wine-mlp", "a second skl2onnx pipeline, no reference data"):
        _upload_model(page, material.mlp_model, "wine-mlp")
        _type(page, "Class labels", ", ".join(CULTIVARS))
        walk.shot("wine-mlp-form")
        _register(page, "wine-mlp:1")

    with walk.step("compare", "no extra files: synthetic inputs said; a recommendation card with its reasons"):
        _go(page, "Compare", "Compare compressed variants")
        page.get_by_role("heading", name="wine-mlp:1").wait_for()
        page.get_by_role("button", name="Create variants and compare").click()
        page.get_by_text("the figures are stored").or_(page.get_by_text("The comparison failed")).first.wait_for(
            timeout=LONG_MS)
        assert page.get_by_text("Compared 5 method(s) on wine-mlp:1; the figures are stored.").count() == 1, \
            _alerts(page)
        _calm(page)
        page.get_by_text("synthetic inputs generated from the signature").first.wait_for()
        page.get_by_role("heading", name="Why", exact=True).wait_for()
        main = _main(page)
        assert "rows of synthetic inputs generated from the signature (no reference data)" in main
        card = main.split("every batch size", 1)[1].split("\nMeasured ", 1)[0]  # the recommendation card
        assert "wine-mlp:1" in card, card
        assert "Why:" in card or any(f" · {s}: " in card for s in ("no gain", "slower", "too close to call")), card

    with walk.step("latest-after-compare", "a fresh session defaults to the uploaded wine-mlp:1; the versions "
                                           "picker and table mark the variants"):
        _goto(page, server, "predict")
        _pick(page, "wine-mlp")
        page.get_by_role("heading", name=re.compile(r"^Predict with wine-mlp:\d+$"), level=1).wait_for()
        assert _title(page) == "Predict with wine-mlp:1"  # the uploaded version, not a variant
        version_box = page.get_by_test_id("stSidebar").get_by_role("combobox", name="Version")
        assert version_box.input_value() == "latest (v1)"
        _go(page, "Models", "Models")
        page.get_by_role("heading", name="wine-mlp", exact=True).wait_for()
        page.get_by_role("tab", name="Versions").first.click()
        _calm(page)
        version_box.click()  # the picker says which versions are variants
        page.get_by_role("option").first.wait_for()
        options = [str(o).strip() for o in page.get_by_role("option").all_inner_texts()]
        page.keyboard.press("Escape")
        assert options[0] == "latest (v1)" and "v1" in options, options
        assert {"v2 (prune of wine-mlp:1)", "v3 (optimized of wine-mlp:1)"} <= set(options), options
        _calm(page)
        assert page.get_by_role("button", name="Open wine-mlp:2").count() == 1

    with walk.step("explain", "a 16-row CSV, no background: the rows are the background; SHAP explains a row"):
        _go(page, "Explain", "Explain")
        page.get_by_text("This version has no reference data: upload the rows to explain").wait_for()
        _uploader(page, "Rows to explain (optional)").set_input_files(str(material.mlp_rows))
        page.get_by_text("Background: the 16 rows being explained (this version has no reference data).").wait_for()
        _calm(page)
        page.get_by_role("button", name="Explain this row").click()
        page.get_by_text("Additivity check").first.wait_for(timeout=LONG_MS)
        _calm(page)

    with walk.step("monitor", "only the walk's real predictions are counted; tiles not cut"):
        _go(page, "Monitor", "Monitor")
        _pick(page, "wine")
        page.get_by_test_id("stMetricValue").first.wait_for()
        tiles = dict(zip(page.get_by_test_id("stMetricLabel").all_inner_texts(),
                         page.get_by_test_id("stMetricValue").all_inner_texts(), strict=True))
        assert tiles["Requests"] == "2" and tiles["Rows"] == "41", tiles  # the form's row and the 40 of the CSV
        assert tiles["Error rate"] == "0.0%", tiles
        assert _cut_tiles(page) == []
        walk.shot("monitor-wine")
        _pick(page, "wine-mlp")
        page.get_by_text("all versions of wine-mlp", exact=True).click()
        _calm(page)
        main = _main(page)
        shown = dict(zip(page.get_by_test_id("stMetricLabel").all_inner_texts(),
                         page.get_by_test_id("stMetricValue").all_inner_texts(), strict=True))
        assert shown.get("Requests", "0") == "0", (shown, main[:800])  # Compare and SHAP ran it: no traffic
        assert _cut_tiles(page) == []

    with walk.step("offline", "every request of the walk went to 127.0.0.1"):
        assert len(urls) > 50  # the recording saw the app's scripts, fonts and websocket
        foreign = [u for u in urls if not u.startswith(("data:", "blob:")) and urlsplit(u).hostname != "127.0.0.1"]
        assert foreign == []
