"""distill: students trained in the sandbox on their parent's outputs, with real models and real sessions.

Documented floors (also in portal/compress/methods/distill.py), agreement of the
student's predicted class with its parent's on held-out rows (rows the student
never saw), measured with a few seconds of training on 2 shared CPU cores:

    50-tree random forest, breast cancer, taught with its 200 reference rows:
        mlp student (auto) 97%, trees student 97% measured  → floor 90% on the other 369 rows
    demo digits CNN, taught with its 200 reference digits:
        small-cnn student (auto) 96% measured                → floor 85% on the other 1,597 digits
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
from tiny import add_model, two_input_model
from ui_fixtures import _DEMO_DONE as DEMO_DONE
from ui_fixtures import demo_store  # noqa: F401  (fixture)

from portal import InvalidInputError, InvalidModelError, Portal
from portal.compress.methods import method, progress_fraction
from portal.compress.variants import compare, create_variant
from portal.demo.data import load_data, reference

FOREST_FLOOR = 0.90
DIGITS_FLOOR = 0.85
SECONDS = 3.0  # training budget: small, so the file runs fast


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, demo_store: Path):
    """A copy of the session's demo store (its digits CNN is digits:1) plus a forest (forest:1, through the real
    skops ingest)."""
    from sklearn.ensemble import RandomForestClassifier

    from portal.demo.files import dump_skops

    work = tmp_path_factory.mktemp("distill")
    shutil.copytree(demo_store, work / "home", ignore=shutil.ignore_patterns(DEMO_DONE, "tmp"))
    portal = Portal.open(work / "home")
    assert portal.get("digits").ref == "digits:1"
    x, y = load_data("breast-cancer")
    forest = RandomForestClassifier(n_estimators=50, random_state=0).fit(x, y)
    path = dump_skops(forest, work / "forest.skops")
    portal.register(path, "forest", task="classification", feature_names=list(x.columns),
                    class_labels=[str(c) for c in forest.classes_], reference=reference("breast-cancer", 0))
    yield portal
    portal.close()


def _held_out(name: str) -> pd.DataFrame:
    """The rows of the data set that are not among the version's 200 reference rows (the training rows)."""
    x, _ = load_data(name)
    return x.drop(index=x.sample(n=200, random_state=0).index)


def _agreement(portal: Portal, parent: str, student: str, rows: pd.DataFrame) -> float:
    want = portal.predict(parent, rows).to_frame()["prediction"]
    got = portal.predict(student, rows).to_frame()["prediction"]
    return float((want == got).mean())


def test_forest_student_is_a_drop_in_variant_above_the_floor(shared: Portal) -> None:
    stages: list[str] = []
    student = create_variant(shared, "forest:1", "distill", train_seconds=SECONDS, progress=stages.append)
    parent = shared.get("forest:1")
    assert (student.parent, student.method) == ("forest:1", "distill")
    assert {k: student.method_params[k] for k in ("student", "train_seconds")} == {"student": "auto",
                                                                                  "train_seconds": SECONDS}
    assert student.signature == parent.signature  # label (string) + probabilities, same input
    stats = student.meta["variant"]["stats"]
    assert stats["student"] == "mlp"  # auto: faster than a student of trees (bench/compression.py)
    assert stats["rows_given"] == 200 and stats["rows_trained"] > 200
    assert 0 < stats["epochs"] <= stats["planned_epochs"]
    assert any("picked automatically: mlp" in n for n in student.meta["variant"]["notes"])
    assert _agreement(shared, "forest:1", student.ref, _held_out("breast-cancer")) >= FOREST_FLOOR
    fractions = [progress_fraction(s) for s in stages if "training the mlp student" in s]
    assert fractions and all(f is not None and 0 <= f <= 1 for f in fractions) and fractions[-1] > 0


def test_forest_trees_student_keeps_string_labels_and_probabilities(shared: Portal) -> None:
    student = create_variant(shared, "forest:1", "distill", student="trees", train_seconds=SECONDS)
    rows = _held_out("breast-cancer")
    frame = shared.predict(student.ref, rows.head(20)).to_frame()
    assert set(frame["prediction"]) <= {"malignant", "benign"}
    probabilities = frame[[c for c in frame.columns if c.startswith("proba_")]].to_numpy()
    assert probabilities.shape == (20, 2) and np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert student.meta["variant"]["stats"]["student"] == "trees"
    assert _agreement(shared, "forest:1", student.ref, rows) >= FOREST_FLOOR


def test_digits_student_is_smaller_and_above_the_floor(shared: Portal) -> None:
    student = create_variant(shared, "digits:1", "distill", train_seconds=2 * SECONDS)
    stats = student.meta["variant"]["stats"]
    assert stats["student"] == "small-cnn" and stats["parameters_student"] < stats["parameters_parent"]
    assert student.signature == shared.get("digits:1").signature  # input [batch, 1, 8, 8], output [batch, 10]
    held = _held_out("digits").to_numpy(np.float32).reshape(-1, 1, 8, 8)
    want = ort.InferenceSession(str(shared.model_path("digits:1"))).run(None, {"input": held})[0].argmax(axis=1)
    got = ort.InferenceSession(str(shared.model_path(student.ref))).run(None, {"input": held})[0].argmax(axis=1)
    assert float((want == got).mean()) >= DIGITS_FLOOR
    frame = shared.predict(student.ref, _held_out("digits").head(5)).to_frame()
    assert list(frame["prediction"]) == [str(d) for d in got[:5]]


@pytest.mark.parametrize(("options", "message"), [
    ({"student": "vgg16"}, "invalid student 'vgg16' for distill: expected one of auto, mlp, trees"),
    ({"train_seconds": 0}, "train_seconds must be more than 0 and at most 3600"),
    ({"train_seconds": 4000}, "train_seconds must be more than 0 and at most 3600"),
    ({"train_seconds": "soon"}, "train_seconds must be a number of seconds"),
])
def test_bad_parameters_are_refused_before_any_work(shared: Portal, options: dict, message: str) -> None:
    before = len(shared.get_model("forest").versions)
    with pytest.raises(InvalidInputError, match=message):
        create_variant(shared, "forest:1", "distill", **options)
    assert len(shared.get_model("forest").versions) == before


def test_an_image_student_for_a_tree_ensemble_is_refused_from_its_operators(shared: Portal) -> None:
    with pytest.raises(InvalidModelError, match="resnet18 student does not apply: that student is for images"):
        create_variant(shared, "forest:1", "distill", student="resnet18")


def test_a_rows_student_for_an_image_model_is_refused_by_the_child(shared: Portal) -> None:
    with pytest.raises(InvalidModelError, match=r"the trees student is for rows \[N, features\].*pick small-cnn"):
        create_variant(shared, "digits:1", "distill", student="trees", train_seconds=1)


def test_a_model_with_several_inputs_is_refused_with_what_to_do(portal: Portal) -> None:
    rows = pd.DataFrame({"num": [1.0, 2.0, 3.0], "cat": ["a", "b", "c"]})
    add_model(portal, two_input_model(), "two", reference=rows)
    with pytest.raises(InvalidModelError, match="takes 2 inputs .* export the model with its features in one tensor"):
        create_variant(portal, "two:1", "distill", train_seconds=1)
    assert [v.ref for v in portal.get_model("two").versions] == ["two:1"]


def _sequence_model() -> onnx.ModelProto:
    """x [N, 6, 4] → Flatten → Gemm → Relu → Gemm → Softmax: a classifier of short sequences."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(rng.normal(size=(24, 16)).astype(np.float32), "W1"),
             numpy_helper.from_array(rng.normal(size=(16, 3)).astype(np.float32), "W2")]
    nodes = [helper.make_node("Flatten", ["x"], ["flat"], axis=1), helper.make_node("Gemm", ["flat", "W1"], ["h"]),
             helper.make_node("Relu", ["h"], ["r"]), helper.make_node("Gemm", ["r", "W2"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)]
    graph = helper.make_graph(nodes, "seq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6, 4])],
                              [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 3])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_a_sequence_model_gets_an_mlp_student_over_the_flattened_sequence(portal: Portal) -> None:
    """[N, steps, features] inputs (a transformer's, say): the mlp student flattens them first; floor 80%."""
    add_model(portal, _sequence_model(), "seq", task="classification")
    rng = np.random.default_rng(4)
    train, held_out = (rng.normal(size=(n, 6, 4)).astype(np.float32) for n in (300, 400))
    student = create_variant(portal, "seq:1", "distill", calibration={"x": train}, train_seconds=SECONDS)
    assert student.signature == portal.get("seq:1").signature
    assert student.meta["variant"]["stats"]["student"] == "mlp"
    assert any("flattened sequence" in n for n in student.meta["variant"]["notes"])
    parent = ort.InferenceSession(str(portal.model_path("seq:1")), providers=["CPUExecutionProvider"])
    child = ort.InferenceSession(str(portal.model_path(student.ref)), providers=["CPUExecutionProvider"])
    agree = np.mean(parent.run(None, {"x": held_out})[0].argmax(1) == child.run(None, {"x": held_out})[0].argmax(1))
    assert agree >= 0.80, agree
    with pytest.raises(InvalidModelError, match="only the mlp student learns"):
        create_variant(portal, "seq:1", "distill", student="trees", calibration={"x": train}, train_seconds=1)


def test_compare_measures_the_student_like_any_variant(shared: Portal) -> None:
    comparison = compare(shared, "forest:1", methods=["distill"], train_seconds=SECONDS, budget_seconds=0.1)
    by_method = {m.method: m for m in comparison.run.measurements}
    student = by_method["distill"]
    assert student.params["train_seconds"] == SECONDS and student.size_bytes > 0 and student.latency
    # evaluated on the reference rows, which are the rows it was trained on
    assert student.agreement["rows"] == 200 and student.agreement["top1"] >= FOREST_FLOOR
    assert comparison.run.extra["refused"] == {} and not method("distill").default
