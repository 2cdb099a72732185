"""Models from elsewhere (issue 14, items 1-3): onnx's own test models and an skl2onnx pipeline.

* graphs whose zero-filled test run fails (an input carries a shape or split lengths) are
  test-run with better synthetic inputs, or registered with a warning when none runs;
* inputs with different first dimensions go to the model as given when the signature
  declares no shared batch dimension;
* a file's ``malic acid`` feeds the model's ``malic_acid`` (normalised names), and the
  Predict page maps columns that still do not match.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pandas as pd
import pytest
from onnx import TensorProto, helper, numpy_helper
from ui_fixtures import (  # noqa: F401  (fixtures)
    assert_clean,
    button,
    empty_home,
    new_app,
    select_model,
    texts,
)

from portal import InvalidInputError, Portal
from portal.ingest.testrun import untested_warning

SIMPLE = Path(os.path.dirname(onnx.__file__)) / "backend" / "test" / "data" / "simple"
BUNDLED = [f"test_expand_shape_model{i}" for i in range(1, 5)] + [f"test_sequence_model{i}" for i in range(1, 9)]


def _tensors(folder: Path, prefix: str) -> list[tuple[str, np.ndarray]]:
    found = []
    for path in sorted(folder.glob(f"{prefix}_*.pb"), key=lambda p: int(p.stem.split("_")[1])):
        tensor = TensorProto()
        tensor.ParseFromString(path.read_bytes())
        found.append((tensor.name, numpy_helper.to_array(tensor)))
    return found


def _bundled_case(name: str) -> tuple[Path, dict[str, np.ndarray], list[np.ndarray]]:
    folder = SIMPLE / name
    model = onnx.load(str(folder / "model.onnx"))
    inits = {i.name for i in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in inits]
    inputs = _tensors(folder / "test_data_set_0", "input")
    feeds = {tensor_name or names[i]: value for i, (tensor_name, value) in enumerate(inputs)}
    return folder / "model.onnx", feeds, [value for _, value in _tensors(folder / "test_data_set_0", "output")]


# -- item 1: models whose zero-filled test run fails ----------------------------------------
@pytest.mark.parametrize("name", BUNDLED)
def test_onnx_bundled_model_registers_and_predicts_its_expected_outputs(portal: Portal, name: str) -> None:
    path, feeds, expected = _bundled_case(name)
    version = portal.register(path, name.replace("_", "-"))
    assert version.info["test_run"]["ran"] is True  # every one of them runs on some synthetic input
    assert untested_warning(version.info) is None
    prediction = portal.predict(version.ref, feeds)
    got = list(prediction.outputs.values())
    assert len(got) == len(expected)
    for value, want in zip(got, expected, strict=True):
        np.testing.assert_allclose(value, want, rtol=1e-6)


@pytest.mark.parametrize(("name", "inputs"), [
    ("test_expand_shape_model1", "one-filled inputs (batch 1)"),
    ("test_sequence_model8", "one-filled inputs, symbolic dimensions 3"),
    ("test_sequence_model1", "zero-filled inputs (batch 1)"),
])
def test_the_test_run_says_which_synthetic_inputs_ran(portal: Portal, name: str, inputs: str) -> None:
    version = portal.register(SIMPLE / name / "model.onnx", "m")
    assert version.info["test_run"] == {"ran": True, "inputs": inputs}


def test_a_variant_of_a_model_zeros_do_not_run_is_checked_like_its_parent(portal: Portal) -> None:
    path, feeds, expected = _bundled_case("test_expand_shape_model1")
    portal.register(path, "expand")
    variant = portal.variants.create("expand", "optimized")
    assert variant.info["test_run"] == {"ran": True, "inputs": "one-filled inputs (batch 1)"}
    got = list(portal.predict(variant.ref, feeds).outputs.values())
    np.testing.assert_allclose(got[0], expected[0], rtol=1e-6)


def split_model() -> onnx.ModelProto:
    """``Split`` of a fixed 7-vector by lengths given as an input: no synthetic input adds up to 7."""
    graph = helper.make_graph(
        [helper.make_node("Split", ["x", "lengths"], ["head", "tail"], axis=0)], "split",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [7]),
         helper.make_tensor_value_info("lengths", TensorProto.INT64, [2])],
        [helper.make_tensor_value_info("head", TensorProto.FLOAT, [None]),
         helper.make_tensor_value_info("tail", TensorProto.FLOAT, [None])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def test_a_model_no_synthetic_input_runs_is_registered_with_a_warning(portal: Portal, tmp_path: Path) -> None:
    path = tmp_path / "split.onnx"
    onnx.save(split_model(), str(path))
    staged = portal.prepare(path)
    assert any("could not be test-run" in w and "split" in w.lower() for w in staged.report.warnings)
    version = portal.register(staged, "split")
    run = version.info["test_run"]
    assert run["ran"] is False and "zero-filled inputs (batch 1) failed" in run["reason"]
    warning = untested_warning(version.info)
    assert warning is not None and warning.startswith("This model could not be test-run: no synthetic input ran")
    # the model is genuine: real inputs (of different first dimensions, item 2) run
    x = np.arange(7, dtype=np.float32)
    outputs = portal.predict("split", {"x": x, "lengths": np.array([3, 4])}).outputs
    np.testing.assert_array_equal(outputs["head"], x[:3])
    np.testing.assert_array_equal(outputs["tail"], x[3:])


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PORTAL_HOME=str(home))
    return subprocess.run([sys.executable, "-m", "portal.cli", *args], capture_output=True, text=True, env=env,
                          timeout=180)


def test_cli_register_and_show_print_the_warning(portal_home: Path, tmp_path: Path) -> None:
    path = tmp_path / "split.onnx"
    onnx.save(split_model(), str(path))
    done = _cli(portal_home, "register", str(path), "--name", "split")
    assert done.returncode == 0, done.stderr
    assert "warning:    This model could not be test-run: no synthetic input ran" in done.stdout
    shown = _cli(portal_home, "show", "split", "--json")
    assert json.loads(shown.stdout)["warnings"][0].startswith("This model could not be test-run")


def test_rest_upload_answer_carries_the_warning(tmp_path: Path) -> None:
    from api_fixtures import make_users
    from fastapi.testclient import TestClient

    from portal.api import ApiSettings, create_app

    portal = Portal.open(tmp_path / "home")
    tokens = make_users(portal)
    try:
        with TestClient(create_app(portal, settings=ApiSettings(inline_seconds=0))) as client:
            ok = client.post("/api/models", files={"file": ("split.onnx", split_model().SerializeToString())},
                             data={"name": "split"}, headers=tokens.headers("analyst"))
            tested = client.post("/api/models", files={"file": ("e.onnx", (SIMPLE / BUNDLED[0] / "model.onnx")
                                                                   .read_bytes())},
                                 data={"name": "expand"}, headers=tokens.headers("analyst"))
    finally:
        portal.close()
    assert ok.status_code == 201, ok.text
    assert ok.json()["warnings"][0].startswith("This model could not be test-run: no synthetic input ran")
    assert tested.status_code == 201 and tested.json()["warnings"] == []


def test_upload_and_models_pages_show_the_warning(empty_home: Path) -> None:
    at = new_app("app_pages/upload.py")
    uploader = next(u for u in at.file_uploader if u.label.startswith("Drag and drop"))
    uploader.set_value(("split.onnx", split_model().SerializeToString(), "application/octet-stream"))
    at.run()
    assert_clean(at)
    assert any("could not be test-run" in w for w in texts(at.warning))
    portal = Portal.open(empty_home)
    try:
        portal.register(SIMPLE / BUNDLED[0] / "model.onnx", "expand")
        portal.register(split_model().SerializeToString(), "split", filename="split.onnx")
    finally:
        portal.close()
    models = select_model(new_app("app_pages/models.py"), "split")
    assert_clean(models)
    assert any("could not be test-run" in w for w in texts(models.warning))
    other = select_model(new_app("app_pages/models.py"), "expand")
    assert not any("could not be test-run" in w for w in texts(other.warning))


# -- item 3: column names spelled differently -------------------------------------------------
@pytest.fixture(scope="module")
def wine(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An skl2onnx pipeline fitted on load_wine with ``malic acid`` (skl2onnx names its input ``malic_acid``)."""
    from skl2onnx import to_onnx
    from sklearn.datasets import load_wine
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = load_wine(as_frame=True)
    frame = data.data.rename(columns={"malic_acid": "malic acid"}).astype(np.float32)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(frame, data.target)
    onx = to_onnx(model, frame[:1], options={"zipmap": False}, target_opset=17)
    root = tmp_path_factory.mktemp("wine")
    (root / "wine.onnx").write_bytes(onx.SerializeToString())
    frame.to_csv(root / "wine.csv", index=False)
    return {"path": root / "wine.onnx", "csv": root / "wine.csv", "frame": frame, "sklearn": model,
            "inputs": [i.name for i in onx.graph.input]}


def test_skl2onnx_renames_the_columns(wine: dict[str, Any]) -> None:
    assert "malic_acid" in wine["inputs"] and "malic acid" in wine["frame"].columns
    assert "od280_od315_of_diluted_wines" in wine["inputs"]  # sanitised too: load_wine names it od280/od315...


def test_a_table_with_the_original_names_predicts_and_says_which_matched(portal: Portal, wine: dict[str, Any]) -> None:
    portal.register(wine["path"], "wine", task="classification")
    prediction = portal.predict("wine", wine["frame"])
    assert dict(prediction.matched_columns) == {"malic_acid": "malic acid",
                                                "od280_od315_of_diluted_wines": "od280/od315_of_diluted_wines"}
    expected = wine["sklearn"].predict(wine["frame"])
    assert (prediction.to_frame()["prediction"].astype(int).to_numpy() == expected).mean() > 0.99


def test_a_csv_with_the_original_names_is_scored_by_the_batch_path(portal: Portal, wine: dict[str, Any],
                                                                  tmp_path: Path) -> None:
    portal.register(wine["path"], "wine", task="classification")
    out = tmp_path / "scored.csv"
    portal.predict_file("wine", wine["csv"], out)
    scored = pd.read_csv(out)
    assert len(scored) == len(wine["frame"])
    direct = portal.predict("wine", wine["frame"]).to_frame()
    assert list(scored["prediction"]) == list(direct["prediction"].astype(int))


def test_the_cli_predict_notes_the_matched_columns(portal_home: Path, wine: dict[str, Any]) -> None:
    portal = Portal.open(portal_home)
    portal.register(wine["path"], "wine", task="classification")
    portal.close()
    done = _cli(portal_home, "predict", "wine", "--input", str(wine["csv"]))
    assert done.returncode == 0, done.stderr
    assert "note: column 'malic acid' feeds 'malic_acid' (matched by normalised name)" in done.stderr


def test_rest_predict_answer_lists_the_matched_columns(tmp_path: Path, wine: dict[str, Any]) -> None:
    from api_fixtures import make_users
    from fastapi.testclient import TestClient

    from portal.api import ApiSettings, create_app

    portal = Portal.open(tmp_path / "home")
    tokens = make_users(portal)
    portal.register(wine["path"], "wine", task="classification")
    records = wine["frame"].head(3).to_dict(orient="records")
    try:
        with TestClient(create_app(portal, settings=ApiSettings(inline_seconds=0))) as client:
            answer = client.post("/api/models/wine/predict", json=records, headers=tokens.headers("analyst"))
    finally:
        portal.close()
    assert answer.status_code == 200, answer.text
    assert answer.json()["matched_columns"]["malic_acid"] == "malic acid"
    assert len(answer.json()["predictions"]) == 3


def test_an_ambiguous_spelling_stays_missing_and_says_why(portal: Portal, wine: dict[str, Any]) -> None:
    portal.register(wine["path"], "wine", task="classification")
    frame = wine["frame"].assign(**{"Malic Acid": wine["frame"]["malic acid"]})
    with pytest.raises(InvalidInputError) as info:
        portal.predict("wine", frame, extra_columns="ignore")
    assert "'malic_acid' could be any of 'malic acid', 'Malic Acid'" in str(info.value)


def test_a_column_map_feeds_a_column_of_another_name(portal: Portal, wine: dict[str, Any]) -> None:
    portal.register(wine["path"], "wine", task="classification")
    frame = wine["frame"].rename(columns={"malic acid": "acid (malic)"})
    with pytest.raises(InvalidInputError, match="missing column"):
        portal.predict("wine", frame)
    mapped = portal.predict("wine", frame, column_map={"malic_acid": "acid (malic)"}).to_frame()
    assert list(mapped["prediction"]) == list(portal.predict("wine", wine["frame"]).to_frame()["prediction"])


def test_predict_page_offers_a_column_mapping_step(empty_home: Path, wine: dict[str, Any]) -> None:
    portal = Portal.open(empty_home)
    portal.register(wine["path"], "wine", task="classification")
    expected = portal.predict("wine", wine["frame"]).to_frame()
    portal.close()
    frame = wine["frame"].rename(columns={"malic acid": "acid"})
    at = select_model(new_app("app_pages/predict.py"), "wine")
    next(u for u in at.file_uploader if u.label == "CSV or Parquet file").set_value(
        ("wine.csv", frame.to_csv(index=False).encode(), "text/csv"))
    at.run()
    assert_clean(at)
    assert "lacks 1 column(s)" in " ".join(texts(at.error))
    assert any("od280/od315_of_diluted_wines" in i for i in texts(at.info))  # matched by spelling, said so
    assert not [b for b in at.button if b.label.startswith("Predict ")]
    mapping = next(s for s in at.selectbox if s.label == "malic_acid ←")
    assert mapping.options == ["— not in the file —", "acid"]
    mapping.select("acid")
    at.run()
    assert_clean(at)
    assert not at.error
    assert any("`acid` → `malic_acid`" in i for i in texts(at.info))
    button(at, f"Predict {len(frame)} rows").click()
    at.run()
    assert_clean(at)
    results = next(d.value for d in at.dataframe if "prediction" in d.value.columns)
    assert list(results["prediction"]) == list(expected["prediction"].astype(results["prediction"].dtype))


def test_batch_download_of_a_mapped_file_has_every_row(empty_home: Path, wine: dict[str, Any]) -> None:
    portal = Portal.open(empty_home)
    portal.register(wine["path"], "wine", task="classification")
    frame = wine["frame"].rename(columns={"malic acid": "acid"})
    out = empty_home / "out.csv"
    path = empty_home / "in.csv"
    frame.to_csv(path, index=False)
    portal.predict_file("wine", path, out, column_map={"malic_acid": "acid"})
    portal.close()
    assert len(pd.read_csv(io.BytesIO(out.read_bytes()))) == len(frame)


# -- item 2: inputs of different first dimensions, through the Predict page -------------------
def test_predict_page_feeds_an_npz_of_different_first_dimensions(empty_home: Path) -> None:
    path, feeds, expected = _bundled_case("test_expand_shape_model3")
    assert len({a.shape[0] for a in feeds.values()}) > 1  # X is [1, 3, 1], shape is [3]
    portal = Portal.open(empty_home)
    portal.register(path, "expand")
    portal.close()
    buffer = io.BytesIO()
    np.savez(buffer, **feeds)
    at = select_model(new_app("app_pages/predict.py"), "expand")
    next(u for u in at.file_uploader if u.label == "Input file").set_value(
        ("inputs.npz", buffer.getvalue(), "application/octet-stream"))
    at.run()
    assert_clean(at)
    assert not at.error
    shown = at.dataframe[0].value
    assert shown.shape[0] == expected[0].shape[0]
    np.testing.assert_allclose(shown.to_numpy(dtype=np.float32), expected[0].reshape(expected[0].shape[0], -1))
