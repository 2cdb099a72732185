"""The portal in a real Chromium: upload, register, batch predict + download, images, screenshots.

Run with ``pytest -m browser`` (needs Debian's ``chromium``; see STACK-NOTES.md).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
from browser_server import Server
from tiny import add_model, softmax_classifier
from ui_fixtures import digit_png, onnx_bytes

from portal import Portal

pytestmark = pytest.mark.browser

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
LABELS = ["setosa", "versicolor", "virginica"]


def _idle(page: Any) -> None:
    """Wait until Streamlit has finished the current script run and drawn its lazy elements."""
    page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for()
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden")
    page.wait_for_function(  # skeletons in a hidden tab stay until it is shown: only visible ones count
        "() => ![...document.querySelectorAll('[data-testid=\"stSkeleton\"]')].some(e => e.offsetParent)"
    )


def _goto(page: Any, server: Server, path: str = "") -> None:
    page.goto(f"{server.url}/{path}")
    page.get_by_role("heading", level=1).first.wait_for()
    _idle(page)


def _shoot(page: Any, folder: Path, name: str) -> None:
    _idle(page)
    page.screenshot(path=str(folder / f"{name}.png"))


def _nav(page: Any, label: str) -> None:
    page.get_by_test_id("stSidebarNav").get_by_text(label, exact=True).click()
    page.get_by_role("heading", level=1).first.wait_for()
    _idle(page)


def _pick_model(page: Any, name: str, *, heading: str) -> None:
    """Choose ``name`` in the sidebar picker and wait for the page heading ``heading``."""
    picker = page.get_by_test_id("stSidebar").get_by_test_id("stSelectbox").first
    picker.click()
    page.get_by_role("option", name=name, exact=True).click()
    page.get_by_role("heading", name=heading, exact=True).wait_for()
    _idle(page)


def _click_table_row(page: Any, index: int) -> None:
    """Click the selection box of row ``index`` of the first table (a canvas: by position)."""
    grid = page.get_by_test_id("stDataFrame").first
    box = grid.bounding_box()
    row_height = 35  # Streamlit's default row height; the header row has the same height
    page.mouse.click(box["x"] + 14, box["y"] + row_height * (index + 1.5))
    _idle(page)


def _type(page: Any, label: str, text: str) -> None:
    field = page.get_by_label(label, exact=True)
    field.fill(text)
    field.press("Tab")  # Streamlit commits text on blur
    _idle(page)


def _expected(frame: pd.DataFrame) -> np.ndarray:
    session = ort.InferenceSession(onnx_bytes(softmax_classifier()), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": frame[FEATURES].to_numpy(np.float32)})[0]


def test_empty_home_tells_what_to_do(empty_server: Server, page: Any, screenshots: Path) -> None:
    _goto(page, empty_server)
    _shoot(page, screenshots, "01-home-empty")
    page.get_by_text("No models yet.").wait_for()
    page.get_by_role("button", name="Load demo models").wait_for()


def test_upload_register_batch_predict_and_download(
    demo_server: Server, page: Any, screenshots: Path, tmp_path: Path
) -> None:
    model_file = tmp_path / "iris-classifier.onnx"
    model_file.write_bytes(onnx_bytes(softmax_classifier()))
    _goto(page, demo_server, "upload")
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(model_file))
    page.get_by_text("Validation report").wait_for()
    _type(page, "Name", "iris")
    _type(page, "Feature names", ", ".join(FEATURES))
    page.get_by_text("4 feature names · the model has 4 columns").wait_for()
    _type(page, "Class labels", ", ".join(LABELS))
    page.get_by_text("3 class labels · the model has 3 classes").wait_for()
    _shoot(page, screenshots, "03-upload-report")
    page.get_by_role("button", name="Register").click()
    page.get_by_text("Registered iris:1. It is selected in the sidebar").wait_for()  # not the status line of the run before
    _shoot(page, screenshots, "04-upload-registered")

    rng = np.random.default_rng(7)
    rows = pd.DataFrame(rng.normal(3, 1, size=(6, 4)).round(3), columns=FEATURES)
    rows.insert(0, "sample_id", [f"s{i}" for i in range(6)])
    csv_file = tmp_path / "flowers.csv"
    rows.to_csv(csv_file, index=False)
    page.get_by_role("link", name="Predict with it").click()
    page.get_by_role("heading", name="Predict with iris:1").wait_for()
    _idle(page)
    page.get_by_role("tab", name="Batch file").click()
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(csv_file))
    page.get_by_text("extra column(s)").wait_for()
    page.get_by_role("button", name="Predict 6 rows").click()
    download_button = page.get_by_role("button", name="Download results (CSV)")
    download_button.wait_for()
    _shoot(page, screenshots, "07-predict-batch")
    with page.expect_download() as pending:
        download_button.click()
    downloaded = pd.read_csv(io.BytesIO(Path(pending.value.path()).read_bytes()))
    assert list(downloaded.columns) == ["sample_id", *FEATURES, "prediction",
                                        *(f"proba_{c}" for c in LABELS), "confidence"]
    probabilities = _expected(rows)
    np.testing.assert_allclose(downloaded[[f"proba_{c}" for c in LABELS]].to_numpy(), probabilities, atol=1e-5)
    assert list(downloaded["prediction"]) == [LABELS[i] for i in probabilities.argmax(axis=1)]
    assert list(downloaded["sample_id"]) == list(rows["sample_id"])


def test_form_prediction(demo_server: Server, page: Any, screenshots: Path) -> None:
    _goto(page, demo_server, "predict")
    _pick_model(page, "wine", heading="Predict with wine:1")
    page.get_by_role("button", name="Predict").first.click()
    page.get_by_text("Confidence").wait_for()
    _shoot(page, screenshots, "06-predict-form")


def test_image_prediction(demo_server: Server, page: Any, screenshots: Path, tmp_path: Path) -> None:
    files = []
    for digit in (2, 5, 8):
        path = tmp_path / f"scan_{digit}.png"
        path.write_bytes(digit_png(digit))
        files.append(str(path))
    _goto(page, demo_server, "predict")
    _pick_model(page, "digits", heading="Predict with digits:1")
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(files)
    page.get_by_text("Preprocessing", exact=True).wait_for()
    page.locator(".js-plotly-plot").nth(2).wait_for()
    _shoot(page, screenshots, "08-predict-images")
    assert page.get_by_text("scan_5.png: top 5").count() >= 1


def _add_flowers(home: Path) -> None:
    """``flowers`` with two versions and @production moved from v1 to v2 (so it can roll back)."""
    portal = Portal.open(home)
    try:
        add_model(portal, softmax_classifier(), "flowers", task="classification", class_labels=LABELS,
                  feature_names=FEATURES)
        add_model(portal, softmax_classifier(n_in=4, n_out=3, seed=9), "flowers", task="classification",
                  class_labels=LABELS, feature_names=FEATURES)
        portal.update_model("flowers", description="# Flowers\n\nTwo versions of a tiny classifier.",
                            tags=["tabular", "tiny"])
        portal.set_alias("flowers:1", "production")
        portal.set_alias("flowers:2", "production")
    finally:
        portal.close()


def test_every_page_with_the_demo_models(demo_server: Server, page: Any, screenshots: Path) -> None:
    _add_flowers(demo_server.home)
    _goto(page, demo_server)
    _shoot(page, screenshots, "02-home")
    _nav(page, "Models")
    _pick_model(page, "flowers", heading="flowers")
    _shoot(page, screenshots, "05-models")
    with page.expect_download() as pending:
        page.get_by_role("button", name="Download ONNX").click()
    assert pending.value.suggested_filename == "flowers-v2.onnx"
    assert Path(pending.value.path()).read_bytes() == onnx_bytes(softmax_classifier(seed=9))
    for tab in ("Versions", "Aliases", "Edit", "Compare", "Delete"):
        page.get_by_role("tab", name=tab).first.click()
        _shoot(page, screenshots, f"05-models-{tab.lower()}")
    page.get_by_role("tab", name="Aliases").first.click()
    page.get_by_role("button", name="Roll back to v1").click()
    page.get_by_text("@production moved back from v2 to v1.").wait_for()
    _click_table_row(page, 0)  # rows are sorted by name: breast-cancer first
    page.get_by_role("heading", name="breast-cancer", exact=True).wait_for()
    _nav(page, "Upload")
    _shoot(page, screenshots, "03-upload-empty")
