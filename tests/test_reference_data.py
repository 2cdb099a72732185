"""Reference data added after registration, checked against the signature; defaults when there is none.

Issue 14 item 4: the Register form and the Models page take reference data (tables or
images); without any, Explain uses the rows being explained as background, Compare
measures on synthetic inputs (flagged), and the CLI works without extra files.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from explain_models import frame, linear, names
from tiny import add_model, image_model, softmax_classifier
from ui_fixtures import digit_png

from portal import Portal
from portal.compress.datasets import load_data
from portal.compress.synthetic import SYNTHETIC_SOURCE
from portal.compress.variants import NO_CALIBRATION, compare
from portal.core.registering import is_generic_name
from portal.demo import DIGITS_PREPROCESSING
from portal.errors import InvalidInputError
from portal.explain.tabular import MIN_ROWS_AS_BACKGROUND
from portal.serving.reference import MAX_PIXEL_COLUMNS, images_frame, tensor_of
from portal.views import format_parameters, split_conversion_notes

WEIGHTS = np.array([1.0, -2.0, 0.5, 3.0], np.float32)


@pytest.fixture
def store(portal: Portal) -> Portal:
    add_model(portal, linear(WEIGHTS), "lin", task="regression", feature_names=names(4))
    add_model(portal, image_model(), "img", task="classification", preprocessing=dict(DIGITS_PREPROCESSING),
              class_labels=[str(d) for d in range(10)])
    return portal


def _blobs(portal: Portal) -> set[str]:
    return set(portal.store.iter_blobs())


# -- adding reference data -----------------------------------------------------------------
def test_reference_data_with_a_missing_column_is_refused_and_nothing_is_stored(store: Portal) -> None:
    before = _blobs(store)
    bad = frame(20, names(4), seed=1).drop(columns=["f2"])
    with pytest.raises(InvalidInputError, match=r"missing column\(s\) 'f2'.*nothing was stored"):
        store.set_reference_data("lin", bad)
    assert store.get("lin").reference_sha is None
    assert _blobs(store) == before


def test_reference_data_from_a_csv_upload_is_kept_with_its_extra_columns(store: Portal) -> None:
    table = frame(30, names(4), seed=2).assign(target=np.arange(30.0))
    version = store.set_reference_data("lin", ("train.csv", table.to_csv(index=False).encode()))
    kept = store.reference_frame(version.ref)
    assert list(kept.columns) == [*names(4), "target"] and len(kept) == 30
    np.testing.assert_allclose(kept["f3"].to_numpy(), table["f3"].to_numpy(), rtol=1e-6)  # float32 through CSV text


def test_replacing_reference_data_collects_the_old_blob(store: Portal) -> None:
    first = store.set_reference_data("lin", frame(20, names(4), seed=3)).reference_sha
    second = store.set_reference_data("lin", frame(25, names(4), seed=4)).reference_sha
    assert first != second and first not in _blobs(store) and second in _blobs(store)
    assert len(store.reference_frame("lin")) == 25


def test_images_become_pixel_columns_of_the_model_input(store: Portal) -> None:
    version = store.set_reference_data("img", [("three.png", digit_png(3)), ("seven.png", digit_png(7))])
    kept = store.reference_frame(version.ref)
    assert kept.shape == (2, 64)
    expected = store.images_to_array("img", [digit_png(3), digit_png(7)])
    np.testing.assert_allclose(kept.to_numpy(np.float32), expected.reshape(2, 64), atol=1e-6)
    data = load_data(store, store.get("img"), None, purpose="evaluation")
    assert data.arrays["x"].shape == (2, 1, 8, 8) and not data.synthetic


def test_a_zip_of_images_is_opened(store: Portal) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for digit in (1, 2, 3):
            archive.writestr(f"scans/{digit}.png", digit_png(digit))
        archive.writestr("scans/readme.txt", "not an image")
    version = store.set_reference_data("img", [("scans.zip", buffer.getvalue())])
    assert len(store.reference_frame(version.ref)) == 3


def test_images_for_a_table_model_are_refused(store: Portal) -> None:
    with pytest.raises(InvalidInputError, match="takes table rows, not images"):
        store.set_reference_data("lin", [("three.png", digit_png(3))])
    assert store.get("lin").reference_sha is None


def test_big_image_tensors_are_kept_in_one_column_and_read_back_exactly() -> None:
    batch = np.random.default_rng(0).random((3, 3, 48, 48), dtype=np.float32)
    assert 3 * 48 * 48 > MAX_PIXEL_COLUMNS
    table = images_frame(batch)
    assert list(table.columns) == ["tensor[3x48x48]"]
    buffer = io.BytesIO()
    table.to_parquet(buffer, index=False)
    back = tensor_of(pd.read_parquet(io.BytesIO(buffer.getvalue())))
    assert back is not None and back.shape == batch.shape and np.array_equal(back, batch)


def test_register_with_bad_reference_data_registers_nothing_and_keeps_the_upload(portal: Portal,
                                                                                  tmp_path: Path) -> None:
    path = tmp_path / "iris.onnx"
    path.write_bytes(softmax_classifier().SerializeToString())
    staged = portal.prepare(path)
    bad = pd.DataFrame({"a": [1.0], "b": [2.0]})
    with pytest.raises(InvalidInputError, match="the reference data does not fit the model"):
        portal.register(staged, "iris", feature_names=["a", "b", "c", "d"], reference=bad)
    assert portal.list_models() == [] and staged.report.model_path.is_file()
    good = pd.DataFrame({c: [1.0, 2.0] for c in "abcd"})
    version = portal.register(staged, "iris", feature_names=["a", "b", "c", "d"], reference=good)
    assert len(portal.reference_frame(version.ref)) == 2


# -- defaults without reference data ---------------------------------------------------------
def test_explain_uses_the_rows_as_background_when_there_are_enough(store: Portal) -> None:
    rows = frame(MIN_ROWS_AS_BACKGROUND + 2, names(4), seed=5)
    result = store.explain.rows("lin", rows)
    assert result.background.rows == len(rows)
    assert result.background.describe().startswith(f"Background: the {len(rows)} rows being explained")
    # a linear model's SHAP values against its own rows as background: w * (x - mean(x))
    expected = (rows.to_numpy() - rows.to_numpy().mean(axis=0)) * WEIGHTS
    np.testing.assert_allclose(np.asarray(result.values).reshape(expected.shape), expected, atol=1e-4)


def test_explain_with_too_few_rows_and_no_reference_says_what_to_add(store: Portal) -> None:
    with pytest.raises(InvalidInputError, match=r"only 3 row\(s\) to explain.*Models page"):
        store.explain.rows("lin", frame(3, names(4), seed=6))


def test_evaluation_data_is_synthetic_only_when_asked_and_there_is_no_reference(store: Portal) -> None:
    version = store.get("lin")
    with pytest.raises(InvalidInputError, match="no evaluation data: lin:1 has no reference data"):
        load_data(store, version, None, purpose="evaluation")
    data = load_data(store, version, None, purpose="evaluation", synthetic=True)
    assert data.synthetic and data.source == SYNTHETIC_SOURCE and data.labels is None
    assert data.arrays["x"].shape == (256, 4) and data.arrays["x"].dtype == np.float32
    assert data.describe()["synthetic"] is True
    again = load_data(store, version, None, purpose="evaluation", synthetic=True)
    assert again.sha == data.sha  # seeded: two comparisons measure the same inputs
    image = load_data(store, store.get("img"), None, purpose="evaluation", synthetic=True)
    assert image.arrays["x"].shape == (32, 1, 8, 8) and 0 <= image.arrays["x"].min() < image.arrays["x"].max() < 1
    store.set_reference_data("lin", frame(20, names(4), seed=7))
    real = load_data(store, store.get("lin"), None, purpose="evaluation", synthetic=True)
    assert not real.synthetic and real.rows == 20


def test_compare_without_data_measures_on_flagged_synthetic_inputs(store: Portal) -> None:
    result = compare(store, "lin", methods=["fp16", "int8-static"], budget_seconds=0.2)
    assert result.run.dataset["synthetic"] is True and result.run.dataset["rows"] == 256
    assert result.refused == {"int8-static": NO_CALIBRATION}
    assert any("synthetic inputs" in note and "no accuracy" in note for note in result.notes)
    variant = next(m for m in result.run.measurements if m.method == "fp16")
    assert variant.labels == {} and variant.agreement  # agreement measured, no accuracy claimed


# -- the CLI without extra files ---------------------------------------------------------------
def _cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PORTAL_HOME=str(home))
    return subprocess.run([sys.executable, "-m", "portal.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_cli_explain_needs_only_the_rows(store: Portal, tmp_path: Path) -> None:
    rows = tmp_path / "rows.csv"
    frame(12, names(4), seed=8).to_csv(rows, index=False)
    done = _cli(store.home, "explain", "lin", "--input", str(rows), "--rows", "12", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["background"].startswith("Background: the 12 rows being explained")


def test_cli_compare_needs_no_files(store: Portal) -> None:
    done = _cli(store.home, "compare", "lin", "--methods", "fp16")
    assert done.returncode == 0, done.stderr
    assert "SYNTHETIC" in done.stdout and "256 rows of synthetic inputs" in done.stdout


# -- page text helpers (item 13) ------------------------------------------------------------------
def test_generic_file_names_are_recognised() -> None:
    assert all(is_generic_name(n) for n in ("model", "Model", "export", "saved_model", "onnx"))
    assert not any(is_generic_name(n) for n in ("classifier", "churn-v2", "resnet18"))


def test_parameters_are_formatted_one_way() -> None:
    assert format_parameters({"parameters": 1234567}) == "1,234,567"
    assert format_parameters({"parameters": 0}) == format_parameters({}) == "—"


def test_conversion_notes_are_told_apart_from_warnings() -> None:
    notes, warnings = split_conversion_notes([
        "converted from scikit-learn Pipeline with skl2onnx (classifier, opset 17)",
        "converted from .pt2 with input shapes [[1, 3]]; the batch dimension could not be made dynamic, so ...",
        "the model could not be test-run",
    ])
    assert notes == ["converted from scikit-learn Pipeline with skl2onnx (classifier, opset 17)"]
    assert len(warnings) == 2
