"""Image classifiers from elsewhere: squeezed class scores, softmax only for logits, image settings, labels files."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from PIL import Image
from tiny import add_model, image_model

from portal import InvalidInputError, Portal
from portal.explain.model import OutputPicker
from portal.serving.images import check_preprocessing, describe_preprocessing, image_defaults, parse_labels
from portal.serving.predict import FLAT_NOTE, PROBABILITIES_NOTE, SOFTMAX_NOTE, class_scores, ranked_frame, softmax

SQUEEZENET = Path(os.path.dirname(onnx.__file__)) / "backend/test/data/light/light_squeezenet.onnx"
IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def _png(seed: int, size: tuple[int, int] = (320, 240)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _raw(portal: Portal, ref: str, batch: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(portal.model_path(ref)), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: batch[i : i + 1]})[0] for i in range(len(batch))])


@pytest.fixture(scope="module")
def mobilenet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """torchvision's mobilenet_v3_small with random weights, exported to ONNX with a ``logits`` output."""
    import torch
    import torchvision

    path = tmp_path_factory.mktemp("mobilenet") / "mobilenet_v3_small.onnx"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = torchvision.models.mobilenet_v3_small(weights=None).eval()
    torch.onnx.export(model, (torch.zeros(1, 3, 224, 224),), str(path), input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
                      opset_version=17, dynamo=False)
    return path


@pytest.fixture
def labels_file(tmp_path: Path) -> bytes:
    return "\n".join(f"class {i}" for i in range(1000)).encode() + b"\n"


# -- squeezenet: [1, 1000, 1, 1] probabilities -------------------------------------------
def test_squeezenet_registers_as_a_classifier(portal: Portal) -> None:
    version = portal.register(SQUEEZENET, "squeezenet")
    assert version.signature["outputs"][0]["shape"] == [1, 1000, 1, 1]
    assert version.task == "classification"  # a Softmax over [N, 1000, 1, 1]: scores per class


def test_squeezenet_predicts_a_label_from_the_labels_file_with_probabilities_as_given(
    portal: Portal, labels_file: bytes
) -> None:
    labels = parse_labels(labels_file, name="synset.txt")
    version = portal.register(SQUEEZENET, "squeezenet", class_labels=labels, preprocessing=dict(IMAGENET))
    batch = portal.images_to_array(version, [_png(1), _png(2)])
    prediction = portal.predict(version, batch)
    frame = prediction.to_frame()
    raw = _raw(portal, version.ref, batch).reshape(2, 1000)
    probs = frame[[f"proba_class {i}" for i in range(1000)]].to_numpy()
    np.testing.assert_array_equal(probs, raw)  # no second softmax: exactly onnxruntime's values
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert list(frame["prediction"]) == [labels[i] for i in raw.argmax(axis=1)]
    # onnx's light squeezenet has constant weights: every class scores 0.001, and the note says so
    np.testing.assert_allclose(raw, 1e-3, rtol=1e-4)
    assert prediction.score_note == f"{PROBABILITIES_NOTE}; {FLAT_NOTE}"


def test_wrong_labels_count_is_refused_with_the_class_count(portal: Portal) -> None:
    with pytest.raises(InvalidInputError, match="999 class labels given, but output 'softmaxout_1' has 1000 "
                                                "classes; give exactly 1000 labels"):
        portal.register(SQUEEZENET, "squeezenet", class_labels=[f"c{i}" for i in range(999)])
    assert portal.list_models() == []


# -- mobilenet: [N, 1000] logits -------------------------------------------------------
def test_mobilenet_logits_get_a_softmax(portal: Portal, mobilenet: Path) -> None:
    version = portal.register(mobilenet, "mobilenet")
    version = portal.set_image_settings(version.ref, dict(IMAGENET, resize="center-crop"), classify=True,
                                        class_labels=[f"k{i}" for i in range(1000)])
    assert version.task == "classification" and version.preprocessing["resize"] == "center-crop"
    batch = portal.images_to_array(version, [_png(3), _png(4, (200, 260))])
    prediction = portal.predict(version, batch)
    raw = _raw(portal, version.ref, batch)
    frame = prediction.to_frame()
    probs = frame[[f"proba_k{i}" for i in range(1000)]].to_numpy()
    assert raw.min() < 0  # logits, not probabilities
    np.testing.assert_allclose(probs, softmax(raw.astype(np.float64)), rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)
    # random weights: logits within ~1e-9 of each other, so the probabilities are flat, and the note says so
    assert prediction.score_note == f"{SOFTMAX_NOTE}; {FLAT_NOTE}"


def test_distinct_logits_get_a_softmax_note_without_the_flat_warning(portal: Portal) -> None:
    add_model(portal, image_model(channels=3, size=8, classes=4), "tiny", preprocessing={"size": [8, 8]})
    portal.set_image_settings("tiny", {"size": [8, 8], "mode": "RGB"}, classify=True)
    batch = portal.images_to_array("tiny", [_png(5), _png(6)])
    prediction = portal.predict("tiny", batch)
    raw = _raw(portal, "tiny", batch)
    assert np.ptp(softmax(raw.astype(np.float64)), axis=1).min() > 1e-3  # the classes really differ
    assert prediction.score_note == SOFTMAX_NOTE


def test_set_image_settings_refuses_a_wrong_labels_count_and_keeps_the_old_settings(portal: Portal) -> None:
    add_model(portal, image_model(channels=3, size=8, classes=4), "tiny", preprocessing={"size": [8, 8]})
    with pytest.raises(InvalidInputError, match="3 class labels given, but output 'logits' has 4 classes"):
        portal.set_image_settings("tiny", {"size": [8, 8], "mode": "RGB"}, class_labels=["a", "b", "c"])
    assert portal.get("tiny").preprocessing == {"size": [8, 8]} and portal.get("tiny").class_labels is None


# -- the preprocessing steps ------------------------------------------------------------
def _solid(rgb: tuple[int, int, int], size: tuple[int, int] = (6, 4)) -> Image.Image:
    return Image.new("RGB", size, rgb)


def test_bgr_and_0_255_scale_and_nhwc_reach_the_tensor(portal: Portal) -> None:
    add_model(portal, image_model(channels=3, size=4, classes=3), "m")
    nchw = portal.images_to_array("m", [_solid((10, 20, 30))])
    assert nchw.shape == (1, 3, 4, 4)
    np.testing.assert_allclose(nchw[0, :, 0, 0], [10 / 255, 20 / 255, 30 / 255], rtol=1e-6)
    portal.set_image_settings("m", {"size": [4, 4], "channel_order": "BGR", "scale": 255.0,
                                    "mean": [1, 2, 3], "std": [2, 2, 2]})
    bgr = portal.images_to_array("m", [_solid((10, 20, 30))])
    np.testing.assert_allclose(bgr[0, :, 0, 0], [(30 - 1) / 2, (20 - 2) / 2, (10 - 3) / 2], rtol=1e-5)
    prep = check_preprocessing({"size": [4, 4], "layout": "NHWC"})
    from portal.serving.images import preprocess_images

    nhwc = preprocess_images([_solid((10, 20, 30))], {"inputs": [{"name": "x", "shape": [1, 4, 4, 3]}]}, prep)
    assert nhwc.shape == (1, 4, 4, 3)
    np.testing.assert_allclose(nhwc[0, 0, 0], [10 / 255, 20 / 255, 30 / 255], rtol=1e-6)


def test_center_crop_cuts_the_middle_of_a_wide_image() -> None:
    from portal.serving.images import preprocess_images

    image = Image.new("RGB", (300, 100), (255, 0, 0))
    image.paste((0, 0, 255), (75, 0, 225, 100))  # blue middle half, red sides
    signature = {"inputs": [{"name": "x", "shape": [1, 3, 8, 8]}]}
    cropped = preprocess_images([image], signature, {"resize": "center-crop"})
    stretched = preprocess_images([image], signature, {"resize": "stretch"})
    assert cropped[0, 2].min() > 0.9 and cropped[0, 0].max() < 0.1  # all blue
    assert stretched[0, 0, :, 0].min() > 0.9  # the red left edge survives stretching


@pytest.mark.parametrize(("prep", "message"), [
    ({"mean": [0.5, 0.5], "std": [0.2, 0.2]}, "mean has 2 values; give 1 or 3"),
    ({"mean": [0.5]}, "give both a mean and a std"),
    ({"mean": [0.5], "std": [0]}, "std of 0"),
    ({"mean": "a, b", "std": [1]}, "invalid preprocessing mean 'a, b'"),
    ({"channel_order": "GBR"}, "invalid preprocessing channel_order 'GBR': expected one of 'RGB', 'BGR'"),
    ({"size": [0, 224]}, "invalid preprocessing size"),
    ({"colour": "RGB"}, "unknown preprocessing setting colour; accepted: mode, size"),
])
def test_invalid_preprocessing_is_refused_with_what_was_wrong(prep: dict, message: str) -> None:
    signature = {"inputs": [{"name": "x", "shape": [1, 3, 224, 224]}]}
    with pytest.raises(InvalidInputError, match=message.replace("(", r"\(").replace("[", r"\[")):
        check_preprocessing(prep, signature)


def test_register_refuses_invalid_preprocessing(portal: Portal) -> None:
    with pytest.raises(InvalidInputError, match="layout 'CHW'"):
        portal.register(SQUEEZENET, "squeezenet", preprocessing={"layout": "CHW"})


def test_defaults_follow_the_input_shape() -> None:
    assert image_defaults({"inputs": [{"shape": [1, 224, 160, 3]}]}) == {
        "mode": "RGB", "size": [160, 224], "layout": "NHWC"}
    assert image_defaults({"inputs": [{"shape": ["N", 1, 28, 28]}]}) == {"mode": "L", "size": [28, 28],
                                                                        "layout": "NCHW"}


def test_the_statement_names_every_step() -> None:
    signature = {"inputs": [{"name": "x", "shape": [1, 3, 224, 224]}]}
    text = describe_preprocessing({"channel_order": "BGR", "scale": 255.0, "resize": "center-crop", **IMAGENET},
                                  signature)
    assert text == ("Preprocessing applied: resized to 224×224 (shorter side scaled, centre cut), BGR channel "
                    "order, pixels kept at 0–255, normalised with mean [0.485, 0.456, 0.406] and std "
                    "[0.229, 0.224, 0.225], layout NCHW.")
    assert "no mean/std normalisation" in describe_preprocessing(None, signature)


# -- labels files, squeezing, the download table ------------------------------------------
def test_labels_files_are_lines_or_a_json_list() -> None:
    assert parse_labels(b"\xef\xbb\xbfcat\n\n dog \nbird\n") == ["cat", "dog", "bird"]
    assert parse_labels(json.dumps(["cat", "dog", 3]).encode()) == ["cat", "dog", "3"]
    with pytest.raises(InvalidInputError, match="labels.json must be a JSON list"):
        parse_labels(b'{"0": "cat"}', name="labels.json")
    with pytest.raises(InvalidInputError, match="looks like JSON but is not valid"):
        parse_labels(b'["cat", ', name="labels.json")
    with pytest.raises(InvalidInputError, match="holds no labels"):
        parse_labels(b"\n \n")
    with pytest.raises(InvalidInputError, match="not UTF-8 text"):
        parse_labels(b"\xff\xfe\x00c")


def test_class_scores_squeeze_singletons_only() -> None:
    assert class_scores(np.zeros((2, 1000, 1, 1), np.float32)).shape == (2, 1000)
    assert class_scores(np.zeros((2, 5), np.float32)).shape == (2, 5)
    assert class_scores(np.zeros((2, 4, 4), np.float32)) is None  # a map, not class scores
    assert class_scores(np.zeros((2, 1, 1), np.float32)) is None  # one value: not classes


def test_ranked_frame_has_file_class_score_and_top_k(portal: Portal) -> None:
    add_model(portal, image_model(channels=3, size=8, classes=4), "tiny", task="classification",
              class_labels=["ant", "bee", "cat", "dog"])
    batch = portal.images_to_array("tiny", [_png(5), _png(6)])
    prediction = portal.predict("tiny", batch)
    frame = ranked_frame(prediction, ["a.png", "b.png"], k=3)
    probs = softmax(_raw(portal, "tiny:1", batch).astype(np.float64))
    assert list(frame.columns) == ["file", "class", "score", "top_3"]
    assert list(frame["file"]) == ["a.png", "b.png"]
    labels = np.array(["ant", "bee", "cat", "dog"])
    assert list(frame["class"]) == list(labels[probs.argmax(axis=1)])
    np.testing.assert_allclose(frame["score"], probs.max(axis=1), rtol=1e-6)
    first = np.argsort(-probs[0])[:3]
    assert frame["top_3"][0] == "; ".join(f"{labels[j]}: {probs[0, j]:.4f}" for j in first)


def test_explain_reads_squeezed_scores_as_classes(portal: Portal, labels_file: bytes) -> None:
    version = portal.register(SQUEEZENET, "squeezenet", class_labels=parse_labels(labels_file))
    prediction = portal.predict(version, portal.images_to_array(version, [_png(7)]))
    picker = OutputPicker.build(version, prediction)
    assert picker.classifier and not picker.softmax and len(picker.names) == 1000 and picker.names[0] == "class 0"
    np.testing.assert_array_equal(picker(prediction), prediction.outputs["softmaxout_1"].reshape(1, 1000))


def test_the_register_forms_label_count_reads_squeezed_outputs(portal: Portal) -> None:
    from portal.views import names_note

    signature = portal.register(SQUEEZENET, "squeezenet").signature
    assert names_note(["a", "b"], signature, kind="labels") == ("2 class labels · the model has 1000 classes", False)
