"""Predict end to end through the Portal facade on real onnxruntime sessions."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
from PIL import Image
from tiny import add_model, image_model, linear_regressor, softmax_classifier, two_input_model

from portal import InvalidInputError, NotFoundError, Portal

FEATURES = ["a", "b", "c", "d"]


@pytest.fixture
def classifier(portal):
    return add_model(portal, softmax_classifier(), "cls", task="classification",
                     feature_names=FEATURES, class_labels=["red", "green", "blue"])


def _raw(portal, ref, feeds):
    session = ort.InferenceSession(str(portal.model_path(ref)))
    return session.run(None, feeds)


def test_classifier_frame_has_labels_and_probabilities(portal, classifier):
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    frame = portal.predict("cls", pd.DataFrame(x, columns=FEATURES)).to_frame()
    raw = _raw(portal, "cls", {"x": x})[0]
    assert list(frame.columns) == ["prediction", "proba_red", "proba_green", "proba_blue", "confidence"]
    np.testing.assert_allclose(frame[["proba_red", "proba_green", "proba_blue"]].to_numpy(), raw, rtol=1e-6)
    assert list(frame["prediction"]) == [["red", "green", "blue"][i] for i in raw.argmax(axis=1)]


def test_regressor_frame_has_prediction(portal):
    add_model(portal, linear_regressor(), "reg", task="regression")
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    result = portal.predict("reg", {"x": x})
    np.testing.assert_allclose(result.to_frame()["prediction"], _raw(portal, "reg", {"x": x})[0][:, 0])
    assert result.latency_s > 0 and result.rows == 2


def test_large_inputs_run_in_chunks_with_identical_results(portal_home):
    p = Portal.open(portal_home, chunk_rows=7)
    add_model(p, softmax_classifier(), "cls", task="classification")
    x = np.random.default_rng(1).normal(size=(50, 4)).astype(np.float32)
    np.testing.assert_allclose(p.predict("cls", {"x": x}).outputs["probs"], _raw(p, "cls", {"x": x})[0], rtol=1e-6)


def test_fixed_batch_one_model_scores_many_rows(portal):
    add_model(portal, softmax_classifier(batch=1), "fixed", task="classification")
    x = np.random.default_rng(2).normal(size=(4, 4)).astype(np.float32)
    assert portal.predict("fixed", {"x": x}).outputs["probs"].shape == (4, 3)


def test_mixed_string_inputs(portal):
    add_model(portal, two_input_model(), "mixed")
    frame = portal.predict("mixed", [{"num": 1.5, "cat": "u"}, {"num": 2, "cat": "v"}]).to_frame()
    assert list(frame["doubled"]) == [3.0, 4.0] and list(frame["cat_out"]) == ["u", "v"]


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".json", ".npz", ".npy"])
def test_every_file_format_gives_the_same_answer(portal, classifier, tmp_path, suffix):
    x = np.random.default_rng(3).normal(size=(3, 4)).astype(np.float32)
    frame = pd.DataFrame(x, columns=FEATURES)
    path = tmp_path / f"in{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".parquet":
        frame.to_parquet(path)
    elif suffix == ".json":
        path.write_text(json.dumps(frame.to_dict(orient="records")))
    elif suffix == ".npz":
        np.savez(path, x=x)
    else:
        np.save(path, x)
    got = portal.predict("cls", path).outputs["probs"]
    np.testing.assert_allclose(got, _raw(portal, "cls", {"x": x})[0], rtol=1e-5)


def test_npy_with_pickled_objects_is_refused(portal, classifier, tmp_path):
    path = tmp_path / "evil.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InvalidInputError, match="never unpickled"):
        portal.predict("cls", path)


def test_empty_csv_is_refused(portal, classifier, tmp_path):
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(InvalidInputError, match="empty"):
        portal.predict("cls", tmp_path / "e.csv")


def test_predict_file_streams_csv_to_output_with_formula_escaping(portal_home, tmp_path):
    p = Portal.open(portal_home, chunk_rows=10)
    add_model(p, two_input_model(), "mixed")
    frame = pd.DataFrame({"num": np.arange(35, dtype=float), "cat": ["=cmd|' /C calc'!A0"] * 35})
    frame.to_csv(tmp_path / "in.csv", index=False)
    summary = p.predict_file("mixed", tmp_path / "in.csv", tmp_path / "out.csv")
    assert int(summary["rows"].iloc[0]) == 35
    out = pd.read_csv(tmp_path / "out.csv")
    assert len(out) == 35 and out["doubled"].iloc[-1] == 68.0
    assert out["cat_out"].iloc[0].startswith("'=")


def test_failed_streaming_leaves_no_output_file(portal, tmp_path):
    add_model(portal, two_input_model(), "mixed")
    (tmp_path / "in.csv").write_text("num,cat\n1,a\nnot-a-number,b\n")
    with pytest.raises(InvalidInputError, match="column 'num' expects numbers"):
        portal.predict_file("mixed", tmp_path / "in.csv", tmp_path / "out.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "in.csv"]


def test_images_are_preprocessed_from_metadata(portal, tmp_path):
    add_model(portal, image_model(), "img", task="classification",
              preprocessing={"mode": "L", "size": [8, 8], "invert": "auto"})
    Image.new("RGB", (64, 48), "white").save(tmp_path / "white.png")
    batch = portal.images_to_array("img", [tmp_path / "white.png"])
    assert batch.shape == (1, 1, 8, 8) and batch.dtype == np.float32
    np.testing.assert_allclose(batch, 0.0, atol=1e-6)  # white paper inverted to a dark background
    assert portal.predict("img", tmp_path / "white.png").outputs["logits"].shape == (1, 10)


def test_image_errors_are_clear(portal, tmp_path):
    add_model(portal, image_model(), "img", task="classification")
    (tmp_path / "fake.png").write_text("not an image")
    with pytest.raises(InvalidInputError, match="not an image"):
        portal.predict("img", tmp_path / "fake.png")
    Image.new("L", (3000, 3000)).save(tmp_path / "big.png")
    small = Portal.open(portal.home, max_image_pixels=1_000_000)
    with pytest.raises(InvalidInputError, match="over the limit"):
        small.predict("img", tmp_path / "big.png")


def test_tabular_model_given_image_refuses(portal, classifier, tmp_path):
    Image.new("L", (8, 8)).save(tmp_path / "i.png")
    with pytest.raises(InvalidInputError, match="not images"):
        portal.predict("cls", tmp_path / "i.png")


def test_deleted_model_gives_not_found_after_ttl(portal, classifier):
    portal.predict("cls", np.ones((1, 4)))
    portal.delete("cls")
    with pytest.raises(NotFoundError):
        portal.predict("cls", np.ones((1, 4)))


def test_session_is_shared_and_counted(portal, classifier):
    for _ in range(3):
        portal.predict("cls", np.ones((1, 4)))
    stats = portal.cache.stats()
    assert (stats.loads, stats.misses, stats.hits) == (1, 1, 2)


def test_pixel_columns_are_reshaped_to_image_input(portal):
    add_model(portal, image_model(), "img", task="classification",
              feature_names=[f"pixel_{i}" for i in range(64)])
    x = np.random.default_rng(4).random((3, 64)).astype(np.float32)
    got = portal.predict("img", pd.DataFrame(x, columns=[f"pixel_{i}" for i in range(64)])).outputs["logits"]
    np.testing.assert_allclose(got, _raw(portal, "img", {"x": x.reshape(3, 1, 8, 8)})[0], rtol=1e-5)


def test_exif_orientation_is_applied(portal, tmp_path):
    add_model(portal, image_model(size=4), "img4", task="classification",
              preprocessing={"mode": "L", "size": [4, 2], "invert": False})
    image = Image.new("L", (2, 4), 0)
    image.putpixel((0, 0), 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise when displayed
    image.save(tmp_path / "rot.jpg", exif=exif, quality=100)
    loaded = __import__("portal.serving.images", fromlist=["load_image"]).load_image(tmp_path / "rot.jpg", max_pixels=100)
    assert loaded.size == (4, 2)
