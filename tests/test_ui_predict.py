"""The Predict page: the generated form, batch files, images and raw tensors."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
from onnx import TensorProto, helper, numpy_helper
from streamlit.testing.v1 import AppTest
from tiny import add_model
from ui_fixtures import (  # noqa: F401  (fixtures)
    assert_clean,
    button,
    demo_home,
    demo_store,
    digit_png,
    elements_of_type,
    empty_home,
    new_app,
    select_model,
    texts,
    widget,
)

from portal import Portal
from portal.ui import keys


def _predict_page(name: str) -> AppTest:
    at = select_model(new_app("app_pages/predict.py"), name)
    assert_clean(at)
    return at


def _features(home: Path, name: str) -> tuple[list[str], pd.DataFrame]:
    portal = Portal.open(home)
    try:
        version = portal.get(name)
        return version.feature_names or [], portal.reference_frame(name)
    finally:
        portal.close()


def _metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def _drop(at: AppTest, label: str, files: object) -> AppTest:
    next(u for u in at.file_uploader if u.label == label).set_value(files)
    return at.run()


def test_form_predicts_with_reference_defaults(demo_home: Path) -> None:
    at = _predict_page("breast-cancer")
    names, reference = _features(demo_home, "breast-cancer")
    assert widget(at.number_input, "mean radius").value == pytest.approx(reference["mean radius"].median())
    button(at, "Predict").click()
    at.run()
    assert_clean(at)
    assert not at.error
    assert _metric(at, "Prediction") in {"benign", "malignant"}
    assert _metric(at, "Latency").endswith(" ms")
    assert elements_of_type(at, "plotly_chart"), "top-k chart missing"


def test_fill_from_a_reference_row(demo_home: Path) -> None:
    at = _predict_page("breast-cancer")
    names, reference = _features(demo_home, "breast-cancer")
    widget(at.number_input, "Reference row").set_value(7)
    at.run()
    button(at, "Fill from this row").click()
    at.run()
    assert widget(at.number_input, "worst area").value == pytest.approx(reference["worst area"].iloc[7])
    button(at, "Predict").click()
    at.run()
    expected = Portal.open(demo_home).predict("breast-cancer", reference[names].iloc[[7]]).to_frame()
    assert _metric(at, "Prediction") == expected["prediction"].iloc[0]


def test_string_columns_are_select_boxes_of_seen_categories(demo_home: Path) -> None:
    at = _predict_page("wine")
    band = widget(at.selectbox, "alcohol_band")
    assert sorted(band.options) == ["high", "low", "medium"]
    band.select("high")
    button(at, "Predict").click()
    at.run()
    assert_clean(at)
    assert _metric(at, "Prediction").startswith("cultivar_")


def test_batch_csv_is_matched_predicted_joined_and_downloadable(demo_home: Path) -> None:
    names, reference = _features(demo_home, "breast-cancer")
    at = _drop(_predict_page("breast-cancer"), "CSV or Parquet file",
               ("patients.csv", reference.to_csv(index=False).encode(), "text/csv"))
    assert_clean(at)
    assert "`target`" in " ".join(texts(at.warning))  # the extra column is reported, then ignored
    assert "All 30 columns" in " ".join(texts(at.success))
    button(at, "Predict 200 rows").click()
    at.run()
    assert_clean(at)
    assert not at.error
    results = next(d.value for d in at.dataframe if "prediction" in d.value.columns)
    assert list(results.columns[: len(reference.columns)]) == list(reference.columns)
    expected = Portal.open(demo_home).predict("breast-cancer", reference[names]).to_frame()
    assert list(results["prediction"]) == list(expected["prediction"])
    assert (results["prediction"] == results["target"]).mean() > 0.9
    download = at.session_state[keys.BATCH_RESULT][4]
    assert pd.read_csv(io.BytesIO(download)).shape == (200, results.shape[1])
    assert elements_of_type(at, "plotly_chart") and elements_of_type(at, "download_button")


def test_batch_reports_missing_columns(demo_home: Path) -> None:
    _, reference = _features(demo_home, "breast-cancer")
    partial = reference.drop(columns=["mean radius", "worst area"])
    at = _drop(_predict_page("breast-cancer"), "CSV or Parquet file",
               ("partial.csv", partial.to_csv(index=False).encode(), "text/csv"))
    assert_clean(at)
    message = " ".join(texts(at.error))
    assert "lacks 2 column(s)" in message and "`mean radius`" in message and "`worst area`" in message
    assert not [b for b in at.button if b.label.startswith("Predict ")]


def test_batch_parquet_for_a_regressor_shows_a_histogram(demo_home: Path) -> None:
    names, reference = _features(demo_home, "diabetes")
    buffer = io.BytesIO()
    reference[names].to_parquet(buffer)
    at = _drop(_predict_page("diabetes"), "CSV or Parquet file", ("rows.parquet", buffer.getvalue(), "x"))
    button(at, "Predict 200 rows").click()
    at.run()
    assert_clean(at)
    (chart,) = [c for c in elements_of_type(at, "plotly_chart") if "histogram" in c.proto.spec]
    assert chart


def test_unreadable_batch_file_is_an_error_box(demo_home: Path) -> None:
    at = _drop(_predict_page("breast-cancer"), "CSV or Parquet file", ("broken.parquet", b"not parquet", "x"))
    assert_clean(at)
    assert "not a readable Parquet file" in " ".join(texts(at.error))


def test_images_get_top_classes(demo_home: Path) -> None:
    at = _predict_page("digits")
    assert not at.number_input, "an image model must not get a tabular form"
    files = [(f"digit_{d}.png", digit_png(d), "image/png") for d in (0, 3, 7)]
    at = _drop(at, "Drop one or several images", files)
    assert_clean(at)
    assert not at.error
    table = next(d.value for d in at.dataframe if "image" in d.value.columns)
    assert list(table["image"]) == ["digit_0.png", "digit_3.png", "digit_7.png"]
    assert list(table["prediction"]) == ["0", "3", "7"]
    assert len(elements_of_type(at, "plotly_chart")) == 3
    assert _metric(at, "Latency").endswith(" ms")


def test_a_broken_image_is_an_error_box(demo_home: Path) -> None:
    at = _drop(_predict_page("digits"), "Drop one or several images", [("scan.png", b"\x89PNG broken", "image/png")])
    assert_clean(at)
    assert "scan.png" in " ".join(texts(at.error))


def _sequence_model() -> onnx.ModelProto:
    """x[N, 4, 2] → y[N, 1]: a model whose input is neither a table nor an image."""
    w = numpy_helper.from_array(np.ones((8, 1), np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["flat"], axis=1), helper.make_node("MatMul", ["flat", "W"], ["y"])],
        "seq", [helper.make_tensor_value_info("x", TensorProto.INT32, ["N", 4, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])], [w],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_tensor_models_take_npy_files(empty_home: Path) -> None:
    model = _sequence_model()
    model.graph.input[0].type.tensor_type.elem_type = TensorProto.FLOAT
    portal = Portal.open(empty_home)
    add_model(portal, model, "seq", task="regression")
    portal.close()
    buffer = io.BytesIO()
    np.save(buffer, np.arange(16, dtype=np.float32).reshape(2, 4, 2))
    at = _drop(_predict_page("seq"), "Input file", ("x.npy", buffer.getvalue(), "x"))
    assert_clean(at)
    assert list(at.dataframe[0].value["prediction"]) == [28.0, 92.0]
