"""Batch scoring in a real Chromium: a CSV scored in the background with a progress bar, downloaded, and a cancel.

Run with ``pytest -m browser`` (needs Debian's ``chromium``; see STACK-NOTES.md).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
from browser_server import Server
from test_batch_scoring import _slow_model
from test_browser import _goto, _idle, _pick_model
from tiny import add_model, softmax_classifier
from ui_fixtures import onnx_bytes

from portal import Portal

pytestmark = pytest.mark.browser

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
LABELS = ["setosa", "=versicolor", "virginica"]  # one label a spreadsheet would run: escaped in the download


@pytest.fixture(scope="module")
def batch_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A portal scoring 200 rows per chunk, so a file of a few thousand rows runs as a background job."""
    tmp = tmp_path_factory.mktemp("browser-batch")
    home = tmp / "home"
    home.mkdir()
    p = Portal.open(home)
    try:
        add_model(p, softmax_classifier(), "iris", task="classification", feature_names=FEATURES, class_labels=LABELS)
        add_model(p, _slow_model(), "slow", task="regression", feature_names=FEATURES)
    finally:
        p.close()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PORTAL_CHUNK_ROWS", "200")  # the server's environment is copied when it starts
        server = Server(home, tmp / "streamlit.log")
    try:
        yield server
    finally:
        server.stop()
        assert "Traceback" not in server.log.read_text(), server.log.read_text()[-5000:]


def _staged(home: Path) -> list[str]:
    tmp = home / "tmp"
    return sorted(p.name for p in tmp.iterdir()) if tmp.exists() else []


def _batch_tab(page: Any, server: Server, model: str, csv_file: Path, rows: int) -> None:
    _goto(page, server, "predict")
    _pick_model(page, model, heading=f"Predict with {model}:1")
    page.get_by_role("tab", name="Batch file").click()
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(csv_file))
    page.get_by_role("button", name=f"Predict {rows:,} rows").wait_for()
    _idle(page)


def test_large_csv_is_scored_in_the_background_and_downloaded(
    batch_server: Server, page: Any, screenshots: Path, tmp_path: Path
) -> None:
    rng = np.random.default_rng(11)
    rows = pd.DataFrame(rng.normal(3, 1, size=(5_000, 4)).round(3), columns=FEATURES)
    rows.insert(0, "sample_id", [f"s{i}" for i in range(len(rows))])
    csv_file = tmp_path / "flowers.csv"
    rows.to_csv(csv_file, index=False)
    _batch_tab(page, batch_server, "iris", csv_file, len(rows))
    page.get_by_role("button", name="Predict 5,000 rows").click()
    download_button = page.get_by_role("button", name="Download results (CSV)")
    download_button.wait_for()
    _idle(page)
    page.screenshot(path=str(screenshots / "09-predict-batch-background.png"))
    assert page.get_by_text("5,000", exact=True).count() >= 1  # the "Rows predicted" metric
    with page.expect_download() as pending:
        download_button.click()
    assert pending.value.suggested_filename == "flowers-predictions.csv"
    downloaded = pd.read_csv(io.BytesIO(Path(pending.value.path()).read_bytes()))
    assert list(downloaded.columns) == ["sample_id", *FEATURES, "prediction",
                                        *(f"proba_{c}" for c in LABELS), "confidence"]
    session = ort.InferenceSession(onnx_bytes(softmax_classifier()), providers=["CPUExecutionProvider"])
    probabilities = session.run(None, {"x": rows[FEATURES].to_numpy(np.float32)})[0]
    np.testing.assert_allclose(downloaded[[f"proba_{c}" for c in LABELS]].to_numpy(), probabilities, atol=1e-6)
    shown = ["'" + c if c.startswith("=") else c for c in LABELS]
    assert list(downloaded["prediction"]) == [shown[i] for i in probabilities.argmax(axis=1)]
    assert list(downloaded["sample_id"]) == list(rows["sample_id"])
    assert _staged(batch_server.home) == []  # the job's files are gone: the results are mapped in memory


def test_cancel_stops_a_running_job(batch_server: Server, page: Any, screenshots: Path, tmp_path: Path) -> None:
    csv_file = tmp_path / "many.csv"
    pd.DataFrame(np.ones((2_000, 4)), columns=FEATURES).to_csv(csv_file, index=False)
    _batch_tab(page, batch_server, "slow", csv_file, 2_000)
    page.get_by_role("button", name="Predict 2,000 rows").click()
    cancel = page.get_by_role("button", name="Cancel")
    cancel.wait_for()  # the slow model needs minutes for 2,000 rows: the job is running
    page.get_by_test_id("stProgress").wait_for()
    page.screenshot(path=str(screenshots / "10-predict-batch-progress.png"))
    cancel.click()
    page.get_by_text("Cancelled: no results were kept.").wait_for()
    _idle(page)
    page.screenshot(path=str(screenshots / "11-predict-batch-cancelled.png"))
    assert page.get_by_role("button", name="Download results (CSV)").count() == 0
    assert _staged(batch_server.home) == []

