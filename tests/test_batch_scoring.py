"""Streamed batch scoring (portal.serving.batch): values, errors, cancel, the browser's job and the REST CSV route."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
from api_fixtures import make_users, serve
from onnx import TensorProto, helper, numpy_helper
from streamlit.testing.v1 import AppTest
from tiny import add_model, image_model, int_input_model, linear_regressor, softmax_classifier, two_input_model
from ui_fixtures import assert_clean, button, empty_home, new_app, select_model, texts  # noqa: F401

from portal import InvalidInputError, Portal
from portal.serving.batch import BatchJob, ScoringCancelled
from portal.ui import keys

FEATURES = ["a", "b", "c", "d"]
LABELS = ["red", "=green", "blue"]


def _raw(portal: Portal, ref: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return ort.InferenceSession(str(portal.model_path(ref)), providers=["CPUExecutionProvider"]).run(None, feeds)


def _frame(rows: int, *, seed: int = 0) -> pd.DataFrame:
    x = np.random.default_rng(seed).normal(size=(rows, 4)).round(4)
    return pd.DataFrame(x, columns=FEATURES)


@pytest.fixture
def small_chunks(portal_home: Path) -> Iterator[Portal]:
    """A portal scoring 7 rows per chunk, with a classifier ``cls`` (one label starts like a formula)."""
    p = Portal.open(portal_home, chunk_rows=7)
    add_model(p, softmax_classifier(), "cls", task="classification", feature_names=FEATURES, class_labels=LABELS)
    yield p
    p.close()


def _write(frame: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path


def _read(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


def _leftovers(folder: Path, *keep: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


# -- values -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("src", "dst"), [(".csv", ".csv"), (".parquet", ".parquet"), (".csv", ".parquet"),
                                          (".parquet", ".csv")])
def test_values_equal_onnxruntime_across_many_chunks(small_chunks: Portal, tmp_path: Path, src: str, dst: str) -> None:
    frame = _frame(100)
    source = _write(frame, tmp_path / f"in{src}")
    summary = small_chunks.predict_file("cls", source, tmp_path / f"out{dst}")
    assert int(summary["rows"].iloc[0]) == 100
    out = _read(tmp_path / f"out{dst}")
    probs = _raw(small_chunks, "cls", {"x": frame.to_numpy(np.float32)})[0]
    np.testing.assert_allclose(out[[f"proba_{c}" for c in LABELS]].to_numpy(), probs, rtol=1e-6)
    expected = [LABELS[i] for i in probs.argmax(axis=1)]
    if dst == ".csv":  # a label that starts like a formula is escaped in a CSV (a spreadsheet would run it)
        expected = ["'" + e if e.startswith("=") else e for e in expected]
    assert list(out["prediction"]) == expected
    assert _leftovers(tmp_path, source.name, f"out{dst}") == ["home"]


def _bool_model() -> onnx.ModelProto:
    """flag[N] bool → Not(flag): a signature only the general (pandas + coerce) path knows."""
    graph = helper.make_graph([helper.make_node("Not", ["flag"], ["flipped"])], "b",
                              [helper.make_tensor_value_info("flag", TensorProto.BOOL, ["N"])],
                              [helper.make_tensor_value_info("flipped", TensorProto.BOOL, ["N"])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _fixed_batch_model() -> onnx.ModelProto:
    return softmax_classifier(batch=1)


CASES = {
    "text and number per column": (two_input_model, {}, lambda rng, n: pd.DataFrame(
        {"num": rng.normal(size=n).round(3), "cat": rng.choice(["u", "-v", "@w"], size=n)})),
    "integers by position": (int_input_model, {}, lambda rng, n: pd.DataFrame(
        rng.integers(-50, 50, size=(n, 2)), columns=["p", "q"])),
    "pixels reshaped to an image": (image_model, {"feature_names": [f"px{i}" for i in range(64)]},
                                    lambda rng, n: pd.DataFrame(rng.random((n, 64)).round(3),
                                                                columns=[f"px{i}" for i in range(64)])),
    "regression by position": (linear_regressor, {"task": "regression"}, lambda rng, n: pd.DataFrame(
        rng.normal(size=(n, 3)).round(3), columns=["u", "v", "w"])),
    "fixed batch of one": (_fixed_batch_model, {"task": "classification", "feature_names": FEATURES},
                           lambda rng, n: _frame(n)),
    "booleans (general path)": (_bool_model, {}, lambda rng, n: pd.DataFrame({"flag": rng.random(n) > 0.5})),
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_kind_of_signature_matches_predict(portal_home: Path, tmp_path: Path, case: str) -> None:
    build, meta, data = CASES[case]
    p = Portal.open(portal_home, chunk_rows=5)
    try:
        add_model(p, build(), "m", **meta)
        frame = data(np.random.default_rng(1), 23)
        _write(frame, tmp_path / "in.csv")
        got = p.predict_file("m", tmp_path / "in.csv")
        expected = p.predict("m", pd.read_csv(tmp_path / "in.csv")).to_frame()
        pd.testing.assert_frame_equal(got.astype(str), expected.reset_index(drop=True).astype(str))
    finally:
        p.close()


def test_keep_inputs_puts_the_input_columns_first_and_escapes_their_text(small_chunks: Portal, tmp_path: Path) -> None:
    frame = _frame(20)
    frame.insert(0, "id", [f"=cmd{i}" if i % 2 else f"s{i}" for i in range(20)])
    frame["score"] = np.arange(20) - 10  # text read from the file: "-2" is a number, not a formula
    frame["prediction"] = "x"  # clashes with a result column
    _write(frame, tmp_path / "in.csv")
    small_chunks.predict_file("cls", tmp_path / "in.csv", tmp_path / "out.csv", extra_columns="ignore",
                              keep_inputs=True)
    out = pd.read_csv(tmp_path / "out.csv")
    assert list(out.columns) == ["id", *FEATURES, "score", "prediction", "prediction_predicted",
                                 *(f"proba_{c}" for c in LABELS), "confidence"]
    assert list(out["id"]) == [f"'=cmd{i}" if i % 2 else f"s{i}" for i in range(20)]
    assert list(out["score"]) == list(range(-10, 10))
    np.testing.assert_allclose(out[FEATURES].to_numpy(), frame[FEATURES].to_numpy())


def test_text_needing_quotes_is_quoted(small_chunks: Portal, tmp_path: Path) -> None:
    frame = _frame(10)
    frame.insert(0, "note", ['say "hi", then go' if i == 8 else "plain" for i in range(10)])
    _write(frame, tmp_path / "in.csv")
    small_chunks.predict_file("cls", tmp_path / "in.csv", tmp_path / "out.csv", extra_columns="ignore",
                              keep_inputs=True)
    assert list(pd.read_csv(tmp_path / "out.csv")["note"]) == list(frame["note"])


# -- errors -------------------------------------------------------------------------------------------
def _rows_with(bad: str, *, rows: int = 2_000, at: int = 1_499, column: int = 1) -> str:
    lines = [",".join(FEATURES)] + ["0.1,0.2,0.3,0.4"] * rows
    cells = lines[at + 1].split(",")
    cells[column] = bad
    lines[at + 1] = ",".join(cells)
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(("bad", "message"), [
    ("abc", "line 1,501, column 'b' expects numbers, got 'abc'"),
    ("", "line 1,501, column 'b' has NaN (a missing value)"),
    ("inf", "line 1,501, column 'b' has an infinite value"),
])
@pytest.mark.parametrize("output", ["out.csv", "out.parquet"])
def test_a_bad_row_names_line_and_column_and_writes_nothing(
    portal_home: Path, tmp_path: Path, bad: str, message: str, output: str
) -> None:
    p = Portal.open(portal_home, chunk_rows=100)
    add_model(p, softmax_classifier(), "cls", task="classification", feature_names=FEATURES)
    (tmp_path / "in.csv").write_text(_rows_with(bad))
    with pytest.raises(InvalidInputError, match=re.escape(message)):
        p.predict_file("cls", tmp_path / "in.csv", tmp_path / output)
    assert _leftovers(tmp_path) == ["home", "in.csv"]  # no output, no temp file
    p.close()


def test_a_bad_cell_in_parquet_names_row_and_column(small_chunks: Portal, tmp_path: Path) -> None:
    frame = _frame(50).astype(str)
    frame.loc[30, "c"] = "n/a?"
    _write(frame, tmp_path / "in.parquet")
    with pytest.raises(InvalidInputError, match=r"row 31, column 'c' expects numbers, got 'n/a\?'"):
        small_chunks.predict_file("cls", tmp_path / "in.parquet", tmp_path / "out.csv")
    assert _leftovers(tmp_path) == ["home", "in.parquet"]


def test_a_malformed_row_names_its_line(small_chunks: Portal, tmp_path: Path) -> None:
    text = _rows_with("0.5", rows=300, at=10).splitlines()
    text[250] += ",9"
    (tmp_path / "in.csv").write_text("\n".join(text) + "\n")
    with pytest.raises(InvalidInputError, match="in.csv is not a readable CSV file: line 251: expected 4 columns, got 5"):
        small_chunks.predict_file("cls", tmp_path / "in.csv", tmp_path / "out.csv")
    assert _leftovers(tmp_path) == ["home", "in.csv"]


def test_a_fractional_count_names_line_and_column(portal: Portal, tmp_path: Path) -> None:
    add_model(portal, int_input_model(), "ints")
    (tmp_path / "in.csv").write_text("p,q\n1,2\n3,4.5\n")
    with pytest.raises(InvalidInputError, match=r"line 3, column 'q' expects integers \(int64\), got 4.5"):
        portal.predict_file("ints", tmp_path / "in.csv", tmp_path / "out.csv")


# -- cancel ---------------------------------------------------------------------------------------------
def test_cancel_stops_the_scoring_and_leaves_no_file(small_chunks: Portal, tmp_path: Path) -> None:
    _write(_frame(500), tmp_path / "in.csv")
    cancel = threading.Event()
    seen: list[int] = []

    def progress(rows: int) -> None:
        seen.append(rows)
        cancel.set()  # after the first chunk

    with pytest.raises(ScoringCancelled):
        small_chunks.predict_file("cls", tmp_path / "in.csv", tmp_path / "out.csv", progress=progress, cancel=cancel)
    assert seen and seen[-1] < 500
    assert _leftovers(tmp_path) == ["home", "in.csv"]


class FakeLog:
    """Stands in for the prediction log: keeps what it is given."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def record(self, *args: Any, **fields: Any) -> None:
        self.records.append(fields)

    def close(self) -> None:
        pass


def test_a_file_is_one_entry_in_the_prediction_log(small_chunks: Portal, tmp_path: Path) -> None:
    small_chunks.monitor = log = FakeLog()  # type: ignore[assignment]
    frame = _frame(30)
    _write(frame, tmp_path / "in.csv")
    small_chunks.predict_file("cls", tmp_path / "in.csv", tmp_path / "out.csv")
    (entry,) = log.records
    assert entry["rows"] == 30 and entry["error"] is None
    np.testing.assert_allclose(entry["feeds"]["x"], frame.to_numpy(np.float32)[: len(entry["feeds"]["x"])])
    (tmp_path / "bad.csv").write_text(_rows_with("abc", rows=20, at=10))
    with pytest.raises(InvalidInputError):
        small_chunks.predict_file("cls", tmp_path / "bad.csv", tmp_path / "out2.csv")
    assert "line 12" in str(log.records[-1]["error"])


# -- the browser's job ------------------------------------------------------------------------------
def _staging(portal: Portal) -> list[str]:
    return sorted(p.name for p in portal.store.tmp_root.iterdir())


def test_batch_job_maps_the_results_and_keeps_no_file(small_chunks: Portal) -> None:
    frame = _frame(40)
    before = _staging(small_chunks)
    job = BatchJob(small_chunks, small_chunks.get("cls"), frame.to_csv(index=False).encode(), "flowers.csv").start()
    assert job.wait(timeout=120)
    assert job.error is None and not job.cancelled and job.rows_done == job.total_rows == 40
    assert job.download is not None and job.preview is not None
    out = pd.read_csv(pd.io.common.BytesIO(job.download[:]))
    assert list(out.columns[:4]) == FEATURES and len(out) == 40
    assert _staging(small_chunks) == before


def _slow_model(width: int = 2048, layers: int = 60) -> onnx.ModelProto:
    """x[N, 4] → y[N, 1] through ``layers`` MatMuls of width ``width``: seconds per row on any CPU."""
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(width, width)))
    nodes = [helper.make_node("MatMul", ["x", "W0"], ["h"])]
    prev = "h"
    for i in range(layers):
        nodes.append(helper.make_node("MatMul", [prev, "W"], [f"h{i}"]))
        prev = f"h{i}"
    nodes.append(helper.make_node("ReduceMean", [prev], ["y"], axes=[1], keepdims=1))
    graph = helper.make_graph(
        nodes, "slow", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])],
        [numpy_helper.from_array(rng.normal(size=(4, width)).astype(np.float32), "W0"),
         numpy_helper.from_array(q.astype(np.float32), "W")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_cancelled_job_stops_an_onnxruntime_run_in_flight(portal_home: Path) -> None:
    p = Portal.open(portal_home, chunk_rows=4)
    add_model(p, _slow_model(), "slow", task="regression", feature_names=FEATURES)
    before = _staging(p)
    job = BatchJob(p, p.get("slow"), _frame(400).to_csv(index=False).encode(), "many.csv").start()
    job.cancel()
    assert job.wait(timeout=120)
    assert job.cancelled and job.download is None and job.error is None
    assert _staging(p) == before
    p.close()


def _upload(at: AppTest, name: str, data: bytes) -> AppTest:
    next(u for u in at.file_uploader if u.label == "CSV or Parquet file").set_value((name, data, "text/csv"))
    return at.run()


def _poll(at: AppTest, done: Any, *, deadline_s: float = 120) -> AppTest:
    """Rerun the page (what the progress fragment's timer does in a browser) until ``done(at)``."""
    deadline = time.monotonic() + deadline_s
    while not done(at):
        assert time.monotonic() < deadline, "the batch job did not finish"
        at.session_state[keys.BATCH_RESULT][6].wait(timeout=0.5)
        at.run()
    return at


def test_page_scores_a_large_file_in_the_background_with_progress(empty_home: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORTAL_CHUNK_ROWS", "10")
    p = Portal.open(empty_home)
    add_model(p, softmax_classifier(), "cls", task="classification", feature_names=FEATURES, class_labels=LABELS)
    p.close()
    frame = _frame(300)
    at = select_model(new_app("app_pages/predict.py"), "cls")
    at = _upload(at, "rows.csv", frame.to_csv(index=False).encode())
    button(at, "Predict 300 rows").click()
    at.run()
    assert_clean(at)
    at = _poll(at, lambda at: at.session_state[keys.BATCH_RESULT][4] is not None)
    assert_clean(at)
    out = pd.read_csv(pd.io.common.BytesIO(at.session_state[keys.BATCH_RESULT][4][:]))
    probs = _raw(Portal.open(empty_home), "cls", {"x": frame.to_numpy(np.float32)})[0]
    np.testing.assert_allclose(out[[f"proba_{c}" for c in LABELS]].to_numpy(), probs, rtol=1e-6)
    assert [m.value for m in at.metric if m.label == "Rows predicted"] == ["300"]
    predicted = [LABELS[i] for i in probs.argmax(axis=1)]
    assert list(out["prediction"]) == ["'" + p if p.startswith("=") else p for p in predicted]  # the download
    shown = next(d.value for d in at.dataframe if "prediction" in d.value.columns)
    assert list(shown["prediction"]) == predicted and "=green" in predicted  # the page shows the model's labels


def test_page_cancel_button_stops_the_job_and_keeps_nothing(empty_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORTAL_CHUNK_ROWS", "4")
    p = Portal.open(empty_home)
    add_model(p, _slow_model(), "slow", task="regression", feature_names=FEATURES)
    p.close()
    at = select_model(new_app("app_pages/predict.py"), "slow")
    at = _upload(at, "many.csv", _frame(400).to_csv(index=False).encode())
    button(at, "Predict 400 rows").click()
    at.run()
    assert_clean(at)
    job = at.session_state[keys.BATCH_RESULT][6]
    assert not job.done and at.get("progress"), "a 400-row job of the slow model runs for minutes"
    at.button(key="predict.batch.cancel.slow:1").click()
    at.run()
    assert_clean(at)
    assert job.done and job.cancelled
    assert "Cancelled" in " ".join(texts(at.info))
    assert not (empty_home / "tmp").exists() or not list((empty_home / "tmp").iterdir())


# -- REST ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str], Path]]:
    home = tmp_path_factory.mktemp("rest") / "home"
    p = Portal.open(home)
    tokens = make_users(p)
    add_model(p, softmax_classifier(), "cls", task="classification", feature_names=FEATURES, class_labels=LABELS)
    p.close()
    for server in serve(home, env={"PORTAL_CHUNK_ROWS": "500", "PORTAL_API_MAX_BATCH_ROWS": "5000"}):
        yield server.url, tokens.headers("viewer"), home
        assert "Traceback" not in server.log()


def _post_csv(rest: tuple[str, dict[str, str], Path], body: bytes) -> httpx.Response:
    url, headers, _ = rest
    return httpx.post(f"{url}/api/models/cls/predict", content=body, timeout=120,
                      headers={**headers, "Content-Type": "text/csv"})


def test_rest_csv_is_streamed_with_the_same_values(rest: tuple[str, dict[str, str], Path]) -> None:
    frame = _frame(3_000)
    url, headers, home = rest
    with httpx.stream("POST", f"{url}/api/models/cls/predict", content=frame.to_csv(index=False).encode(),
                      headers={**headers, "Content-Type": "text/csv"}, timeout=120) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
        assert response.headers.get("transfer-encoding") == "chunked"
        body = b"".join(response.iter_bytes())
    out = pd.read_csv(pd.io.common.BytesIO(body))
    probs = ort.InferenceSession(softmax_classifier().SerializeToString()).run(None, {"x": frame.to_numpy(np.float32)})[0]
    np.testing.assert_allclose(out[[f"proba_{c}" for c in LABELS]].to_numpy(), probs, rtol=1e-6)
    assert list(out["prediction"])[:3] == [("'" + LABELS[i] if LABELS[i].startswith("=") else LABELS[i])
                                           for i in probs.argmax(axis=1)[:3]]
    assert not list((home / "tmp").iterdir())  # the spooled body and the results are gone


def test_rest_csv_bad_row_is_a_400_naming_line_and_column(rest: tuple[str, dict[str, str], Path]) -> None:
    response = _post_csv(rest, _rows_with("oops", rows=2_000, at=1_799, column=3).encode())
    assert response.status_code == 400
    assert "line 1,801, column 'd' expects numbers, got 'oops'" in response.json()["error"]
    assert not list((rest[2] / "tmp").iterdir())


def test_rest_csv_over_the_row_limit_is_413(rest: tuple[str, dict[str, str], Path]) -> None:
    response = _post_csv(rest, _frame(5_001).to_csv(index=False).encode())
    assert response.status_code == 413 and "over the limit of 5,000" in response.json()["error"]
