"""Tests for portal.demo: the demo model sources and their conversion to ONNX."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
from PIL import Image, ImageOps

from portal.demo import (
    DIGITS_PREPROCESSING,
    TARGET,
    DemoSource,
    build_demo_sources,
    load_skops,
    verify_demo_source,
)

REPO = Path(__file__).resolve().parents[1]
NAMES = ["breast-cancer", "diabetes", "digits", "wine"]
THRESHOLDS = {"breast-cancer": 0.93, "diabetes": 0.3, "digits": 0.95, "wine": 0.9}
SKOPS_NAMES = ["breast-cancer", "diabetes", "wine"]
WINE_STRINGS = {"alcohol_band", "hue_band"}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, DemoSource]]:
    dest = tmp_path_factory.mktemp("demo")
    return dest, {src.name: src for src in build_demo_sources(dest, seed=0)}


@pytest.fixture(scope="module")
def sources(built: tuple[Path, dict[str, DemoSource]]) -> dict[str, DemoSource]:
    return built[1]


def _features(src: DemoSource) -> pd.DataFrame:
    assert src.feature_names is not None
    return src.reference[src.feature_names]


def _digit_images(src: DemoSource) -> Any:
    import torch

    pixels = _features(src).to_numpy(np.float32, copy=True)
    return torch.from_numpy(pixels.reshape(-1, *(src.input_shape or [])[1:]))


def _torch_logits(path: Path, images: Any) -> np.ndarray:
    import torch

    with torch.no_grad():
        return torch.export.load(path).module()(images).numpy()


def _predictions(src: DemoSource) -> np.ndarray:
    if src.name == "digits":
        return _torch_logits(src.path, _digit_images(src))
    return np.asarray(load_skops(src.path).predict(_features(src)))


def _preprocess(path: Path, spec: dict[str, Any]) -> np.ndarray:
    """The documented image pipeline: mode, invert auto, resize, /255, scale, normalise."""
    image = Image.open(path).convert(spec["mode"])
    brightness = np.asarray(image, dtype=np.float32).mean() / 255.0
    if spec["invert"] is True or (spec["invert"] == "auto" and brightness > 0.5):
        image = ImageOps.invert(image)
    image = image.resize(tuple(spec["size"]))
    x = np.asarray(image, dtype=np.float32) / 255.0 * spec["scale"]
    x = (x - np.float32(spec["mean"][0])) / np.float32(spec["std"][0])
    return x[None, None, :, :]


def _onnx_session(model: Any) -> ort.InferenceSession:
    data = model if isinstance(model, (str, bytes)) else model.SerializeToString()
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"])


def _wine_initial_types(frame: pd.DataFrame) -> list[tuple[str, Any]]:
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    return [
        (c, StringTensorType([None, 1]) if c in WINE_STRINGS else FloatTensorType([None, 1]))
        for c in frame.columns
    ]


def _wine_feeds(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    return {
        c: frame[[c]].to_numpy(dtype=object) if c in WINE_STRINGS else frame[[c]].to_numpy(np.float32)
        for c in frame.columns
    }


# --- files and metadata -------------------------------------------------------


def test_builds_the_four_sources_in_order(sources: dict[str, DemoSource]) -> None:
    assert list(sources) == NAMES


@pytest.mark.parametrize(
    ("name", "suffix"),
    [("breast-cancer", ".skops"), ("diabetes", ".skops"), ("digits", ".pt2"), ("wine", ".skops")],
)
def test_source_file_exists_with_upload_format(
    sources: dict[str, DemoSource], name: str, suffix: str
) -> None:
    src = sources[name]
    assert src.path.is_file() and src.path.suffix == suffix and src.path.stat().st_size > 0


def test_no_temp_files_left_behind(built: tuple[Path, dict[str, DemoSource]]) -> None:
    dest = built[0]
    assert not [p for p in dest.rglob(".*")]


@pytest.mark.parametrize("name", SKOPS_NAMES)
def test_feature_names_match_skops_model(sources: dict[str, DemoSource], name: str) -> None:
    src = sources[name]
    model = load_skops(src.path)
    assert src.feature_names == list(model.feature_names_in_)
    assert len(src.feature_names) == model.n_features_in_


def test_digits_features_fill_the_input_shape(sources: dict[str, DemoSource]) -> None:
    src = sources["digits"]
    assert src.input_shape == [1, 1, 8, 8]
    assert src.feature_names == [f"pixel_{i}" for i in range(64)]


@pytest.mark.parametrize("name", NAMES)
def test_reference_columns_are_features_plus_target(sources: dict[str, DemoSource], name: str) -> None:
    src = sources[name]
    assert list(src.reference.columns) == [*(src.feature_names or []), TARGET]
    assert 150 <= len(src.reference) <= 200


@pytest.mark.parametrize("name", ["breast-cancer", "wine"])
def test_class_labels_are_the_model_classes_in_order(sources: dict[str, DemoSource], name: str) -> None:
    src = sources[name]
    assert src.class_labels == list(load_skops(src.path).classes_)


def test_class_label_counts(sources: dict[str, DemoSource]) -> None:
    counts = {name: len(src.class_labels or []) for name, src in sources.items()}
    assert counts == {"breast-cancer": 2, "diabetes": 0, "digits": 10, "wine": 3}


def test_breast_cancer_labels_are_the_data_set_names(sources: dict[str, DemoSource]) -> None:
    assert set(sources["breast-cancer"].class_labels or []) == {"malignant", "benign"}


@pytest.mark.parametrize("name", ["breast-cancer", "digits", "wine"])
def test_reference_targets_are_class_labels(sources: dict[str, DemoSource], name: str) -> None:
    src = sources[name]
    assert set(src.reference[TARGET]) <= set(src.class_labels or [])


def test_wine_has_string_and_numeric_columns(sources: dict[str, DemoSource]) -> None:
    frame = _features(sources["wine"])
    strings = {c for c in frame.columns if frame[c].map(type).eq(str).all()}
    assert strings == WINE_STRINGS
    assert set(frame["alcohol_band"]) == {"low", "medium", "high"}
    assert len(frame.columns) == 15


def test_tasks(sources: dict[str, DemoSource]) -> None:
    tasks = {name: src.task for name, src in sources.items()}
    assert tasks == {
        "breast-cancer": "classification",
        "diabetes": "regression",
        "digits": "classification",
        "wine": "classification",
    }


def test_digits_preprocessing_is_the_documented_spec(sources: dict[str, DemoSource]) -> None:
    assert sources["digits"].preprocessing == DIGITS_PREPROCESSING
    assert DIGITS_PREPROCESSING["invert"] == "auto" and DIGITS_PREPROCESSING["softmax"] is True


# --- scores -------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_held_out_score_over_threshold(sources: dict[str, DemoSource], name: str) -> None:
    assert verify_demo_source(sources[name]) >= THRESHOLDS[name]


@pytest.mark.parametrize("name", NAMES)
def test_verify_recomputes_the_recorded_metric(sources: dict[str, DemoSource], name: str) -> None:
    src = sources[name]
    key = "r2" if src.task == "regression" else "accuracy"
    assert verify_demo_source(src) == pytest.approx(src.metrics[key])


@pytest.mark.parametrize("name", NAMES)
def test_description_shows_the_measured_metric(sources: dict[str, DemoSource], name: str) -> None:
    src = sources[name]
    key = "r2" if src.task == "regression" else "accuracy"
    assert src.description.startswith("# ")
    assert f"| {key} | {src.metrics[key]:.4f} |" in src.description


def test_verify_rejects_an_unknown_name(sources: dict[str, DemoSource]) -> None:
    src = sources["wine"]
    renamed = DemoSource(**{**src.__dict__, "name": "iris"})
    with pytest.raises(ValueError, match="unknown demo source 'iris'"):
        verify_demo_source(renamed)


# --- digit sample images ------------------------------------------------------


def test_digit_samples_cover_every_label(built: tuple[Path, dict[str, DemoSource]]) -> None:
    names = sorted(p.name for p in (built[0] / "digits_samples").glob("digit_*.png"))
    assert {n.split("_")[1] for n in names} == {str(d) for d in range(10)}


def test_digit_samples_are_dark_ink_on_white(built: tuple[Path, dict[str, DemoSource]]) -> None:
    for path in (built[0] / "digits_samples").glob("*.png"):
        image = Image.open(path)
        assert image.size == (64, 64)
        assert np.asarray(image.convert("L")).mean() > 127


def test_digit_samples_classify_through_documented_preprocessing(
    built: tuple[Path, dict[str, DemoSource]],
) -> None:
    import torch

    dest, sources = built
    src = sources["digits"]
    assert src.preprocessing is not None
    paths = sorted((dest / "digits_samples").glob("digit_*.png"))
    batch = torch.from_numpy(np.concatenate([_preprocess(p, src.preprocessing) for p in paths]))
    predicted = [(src.class_labels or [])[i] for i in _torch_logits(src.path, batch).argmax(axis=1)]
    expected = [p.name.split("_")[1] for p in paths]
    assert np.mean([a == b for a, b in zip(predicted, expected, strict=True)]) >= 0.8


# --- determinism and import cost ----------------------------------------------


def test_same_seed_gives_same_reference_and_predictions(
    sources: dict[str, DemoSource], tmp_path: Path
) -> None:
    again = {src.name: src for src in build_demo_sources(tmp_path, seed=0)}
    for name in NAMES:
        pd.testing.assert_frame_equal(again[name].reference, sources[name].reference)
        np.testing.assert_array_equal(_predictions(again[name]), _predictions(sources[name]))
        assert again[name].description == sources[name].description


def test_importing_the_module_does_not_import_torch() -> None:
    code = "import sys, portal.demo; sys.exit('torch' in sys.modules or 'sklearn' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    assert subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO).returncode == 0


# --- conversion to ONNX (what ingest does) ------------------------------------


def test_breast_cancer_converts_to_onnx_exactly(sources: dict[str, DemoSource]) -> None:
    from skl2onnx import to_onnx

    src = sources["breast-cancer"]
    model, x = load_skops(src.path), _features(src).to_numpy(np.float32)
    session = _onnx_session(to_onnx(model, x[:1], options={"zipmap": False}, target_opset=18))
    label, probabilities = session.run(None, {session.get_inputs()[0].name: x})
    np.testing.assert_array_equal(label, model.predict(_features(src)))
    np.testing.assert_allclose(probabilities, model.predict_proba(_features(src)), atol=1e-5)


def test_diabetes_converts_to_onnx_within_float32(sources: dict[str, DemoSource]) -> None:
    from skl2onnx import to_onnx

    src = sources["diabetes"]
    model, x = load_skops(src.path), _features(src).to_numpy(np.float32)
    session = _onnx_session(to_onnx(model, x[:1], target_opset=18))
    (predicted,) = session.run(None, {session.get_inputs()[0].name: x})
    np.testing.assert_allclose(predicted.ravel(), model.predict(_features(src)), rtol=1e-4)


def test_wine_converts_with_one_input_per_column(sources: dict[str, DemoSource]) -> None:
    from skl2onnx import to_onnx

    src = sources["wine"]
    model, frame = load_skops(src.path), _features(src)
    onx = to_onnx(model, initial_types=_wine_initial_types(frame), options={"zipmap": False}, target_opset=18)
    session = _onnx_session(onx)
    assert [i.name for i in session.get_inputs()] == src.feature_names
    label, probabilities = session.run(None, _wine_feeds(frame))
    np.testing.assert_array_equal(label, model.predict(frame))
    np.testing.assert_allclose(probabilities, model.predict_proba(frame), atol=1e-5)


def test_digits_pt2_exports_to_onnx_with_dynamic_batch(
    sources: dict[str, DemoSource], tmp_path: Path
) -> None:
    import torch

    src = sources["digits"]
    images = _digit_images(src)
    target = tmp_path / "digits.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.load(src.path)
        torch.onnx.export(program, (images[:2],), target, dynamo=True, external_data=False, opset_version=18)
    session = _onnx_session(str(target))
    name = session.get_inputs()[0].name
    (logits,) = session.run(None, {name: images.numpy()})
    np.testing.assert_allclose(logits, _torch_logits(src.path, images), atol=1e-4)
    assert session.run(None, {name: images[:1].numpy()})[0].shape == (1, 10)
    assert _torch_logits(src.path, images[:1]).shape == (1, 10)
