"""Demo model sources: four small real models in the formats users upload.

Everything is trained here, in seconds, from the data sets that scikit-learn
ships (no download, nothing from a model hub), and saved the way a user would
upload it, so registering the demo goes through the real ingest path:

    breast-cancer   scaler + logistic regression   .skops   string class labels
    diabetes        scaler + ridge regression      .skops   regression
    digits          small CNN on 8x8 images        .pt2     ``torch.export`` archive
    wine            numeric + string columns       .skops   one ONNX input per column

Each model is scored on a held-out split (stratified for classifiers) drawn
with the build seed; the numbers go into its markdown card and
:func:`verify_demo_source` recomputes them from the saved file.

scikit-learn, skops and torch are imported inside the functions that need them
so that importing this module stays cheap (``skops.io`` alone pulls in torch).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "DIGITS_PREPROCESSING",
    "TARGET",
    "DemoSource",
    "build_demo_sources",
    "verify_demo_source",
]

TARGET = "target"
DIGITS_PREPROCESSING: dict[str, Any] = {
    "mode": "L",
    "size": [8, 8],
    "scale": 1.0,
    "mean": [0.0],
    "std": [1.0],
    "invert": "auto",
    "layout": "NCHW",
    "softmax": True,
}
"""How to turn an uploaded image into the digits CNN's input tensor.

In order: ``Image.convert(mode)`` (Pillow mode, ``"L"`` = 8-bit grey);
``"invert": "auto"`` inverts (255 - v) when the image's mean brightness,
on [0, 1], is above 0.5, because the model was trained on light ink on a
dark background and scans are dark ink on white (``True``/``False`` force it);
``Image.resize(size)`` with ``size`` as (W, H) and Pillow's default filter;
ToTensor, i.e. divide by 255 to [0, 1]; multiply by ``scale``; then
``(x - mean) / std`` per channel; ``layout`` orders the axes of the batch
(N, C, H, W). ``"softmax": True`` says the outputs are logits: apply a
softmax to show probabilities.
"""

_TEST_SIZE = 0.25
_REFERENCE_ROWS = 200
_SAMPLES_PER_DIGIT = 2
_BATCH = 32
_SAMPLE_PIXELS = 64
_WINE_CLASSES = ["cultivar_A", "cultivar_B", "cultivar_C"]
_BANDS = ["low", "medium", "high"]


@dataclass(frozen=True)
class DemoSource:
    """One demo model file plus everything the portal registers with it.

    For classifiers ``class_labels`` are in the order of the model's
    probability (or logit) columns and the reference ``target`` column holds
    those labels; for the regressor it holds the numeric target. Digits
    features are the 64 pixels row-major, reshaped to ``input_shape``.
    """

    name: str
    path: Path
    description: str
    task: str
    feature_names: list[str] | None
    class_labels: list[str] | None
    tags: list[str]
    reference: pd.DataFrame
    input_shape: list[int] | None = None
    preprocessing: dict[str, Any] | None = None
    seed: int = 0
    metrics: dict[str, float] = field(default_factory=dict)


def build_demo_sources(dest: Path, *, seed: int = 0) -> list[DemoSource]:
    """Train the four demo models and write their files (and digit PNGs) into ``dest``."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    return [
        _build_breast_cancer(dest, seed),
        _build_diabetes(dest, seed),
        _build_digits(dest, seed),
        _build_wine(dest, seed),
    ]


def verify_demo_source(src: DemoSource) -> float:
    """Held-out score of the saved file: accuracy, or R² for the regressor."""
    _, x_test, _, y_test = _split(src.name, src.seed)
    if src.name == "digits":
        predictions: np.ndarray = _predict_torch(src.path, x_test, src.class_labels or [])
    else:
        predictions = _load_skops(src.path).predict(x_test)
    return _score(src.task, y_test, predictions)


# --- data ---------------------------------------------------------------------


def _load_data(name: str) -> tuple[pd.DataFrame, pd.Series]:
    """Features exactly as the model takes them, and the target."""
    loaders: dict[str, Callable[[], tuple[pd.DataFrame, pd.Series]]] = {
        "breast-cancer": _breast_cancer_data,
        "diabetes": _diabetes_data,
        "digits": _digits_data,
        "wine": _wine_data,
    }
    try:
        return loaders[name]()
    except KeyError:
        raise ValueError(f"unknown demo source {name!r}, expected one of {sorted(loaders)}") from None


def _breast_cancer_data() -> tuple[pd.DataFrame, pd.Series]:
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer(as_frame=True)
    labels = np.asarray(bunch.target_names, dtype=object)[bunch.target.to_numpy()]
    return bunch.data, pd.Series(labels, name=TARGET, dtype=object)


def _diabetes_data() -> tuple[pd.DataFrame, pd.Series]:
    from sklearn.datasets import load_diabetes

    # Unscaled, so a user can type a real age, sex (1/2), BMI, blood pressure.
    bunch = load_diabetes(as_frame=True, scaled=False)
    return bunch.data.astype(np.float64), bunch.target.rename(TARGET).astype(np.float64)


def _digits_data() -> tuple[pd.DataFrame, pd.Series]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pixels = (bunch.data / 16.0).astype(np.float32)
    frame = pd.DataFrame(pixels, columns=[f"pixel_{i}" for i in range(pixels.shape[1])])
    labels = pd.Series([str(d) for d in bunch.target], name=TARGET, dtype=object)
    return frame, labels


def _wine_data() -> tuple[pd.DataFrame, pd.Series]:
    from sklearn.datasets import load_wine

    bunch = load_wine(as_frame=True)
    frame = bunch.data.rename(columns=lambda c: c.replace("/", "_"))
    frame["alcohol_band"] = _tertile_bands(frame["alcohol"])
    frame["hue_band"] = _tertile_bands(frame["hue"])
    labels = np.asarray(_WINE_CLASSES, dtype=object)[bunch.target.to_numpy()]
    return frame, pd.Series(labels, name=TARGET, dtype=object)


def _tertile_bands(values: pd.Series) -> pd.Series:
    """``low`` / ``medium`` / ``high`` by the column's tertiles."""
    return pd.qcut(values, 3, labels=_BANDS).astype(object)


def _band_edges(values: pd.Series) -> list[float]:
    """The two tertile cut points used by :func:`_tertile_bands`."""
    return [float(v) for v in values.quantile([1 / 3, 2 / 3])]


def _split(name: str, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series]:
    """Train/held-out split of a demo data set (stratified for classifiers)."""
    from sklearn.model_selection import train_test_split

    x, y = _load_data(name)
    stratify = None if name == "diabetes" else y
    parts = train_test_split(x, y, test_size=_TEST_SIZE, random_state=seed, stratify=stratify)
    x_train, x_test, y_train, y_test = parts
    return x_train, x_test, y_train, y_test


def _reference(name: str, seed: int) -> pd.DataFrame:
    """About 200 rows of the data set, features plus ``target``."""
    x, y = _load_data(name)
    frame = x.assign(**{TARGET: y})
    if len(frame) > _REFERENCE_ROWS:
        frame = frame.sample(n=_REFERENCE_ROWS, random_state=seed)
    return frame.reset_index(drop=True)


# --- scoring and files --------------------------------------------------------


def _score(task: str, y_true: pd.Series, predictions: np.ndarray) -> float:
    """Accuracy for classifiers, R² for regressors."""
    from sklearn.metrics import accuracy_score, r2_score

    if task == "regression":
        return float(r2_score(y_true, predictions))
    return float(accuracy_score(np.asarray(y_true, dtype=object), np.asarray(predictions, dtype=object)))


def _classification_metrics(y_true: pd.Series, predictions: np.ndarray) -> dict[str, float]:
    """Accuracy and macro F1 on the held-out split."""
    from sklearn.metrics import f1_score

    y_true_arr = np.asarray(y_true, dtype=object)
    return {
        "accuracy": _score("classification", y_true, predictions),
        "macro_f1": float(f1_score(y_true_arr, np.asarray(predictions, dtype=object), average="macro")),
    }


def _regression_metrics(y_true: pd.Series, predictions: np.ndarray) -> dict[str, float]:
    """R², MAE and RMSE on the held-out split."""
    from sklearn.metrics import mean_absolute_error, root_mean_squared_error

    return {
        "r2": _score("regression", y_true, predictions),
        "mae": float(mean_absolute_error(y_true, predictions)),
        "rmse": float(root_mean_squared_error(y_true, predictions)),
    }


@contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """Yield a temp path next to ``path``; move it into place only if the block succeeds."""
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        tmp.chmod(0o644)  # mkstemp makes 0600; these are ordinary shareable files
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _dump_skops(model: Any, path: Path) -> Path:
    """Save a scikit-learn model with skops, atomically."""
    import skops.io

    with _replacing(path) as tmp:
        skops.io.dump(model, tmp)
    return path


def _load_skops(path: Path) -> Any:
    """Load one of *our own* skops files, trusting the types it holds."""
    import skops.io

    return skops.io.load(path, trusted=skops.io.get_untrusted_types(file=path))


def _metrics_table(metrics: dict[str, float]) -> str:
    """Markdown table of metric name and value."""
    rows = [f"| {name} | {value:.4f} |" for name, value in metrics.items()]
    return "\n".join(["| metric | value |", "|---|---|", *rows])


def _card(title: str, body: str, metrics: dict[str, float], n_train: int, n_test: int) -> str:
    """Markdown model card: what it is, then held-out metrics."""
    return (
        f"# {title}\n\n{body.strip()}\n\n"
        f"## Held-out evaluation\n\nTrained on {n_train} rows, scored on {n_test} held-out rows "
        f"({_TEST_SIZE:.0%} split).\n\n{_metrics_table(metrics)}\n\n"
        "Demo model built from a data set bundled with scikit-learn; not for real decisions.\n"
    )


# --- tabular builders ---------------------------------------------------------


def _build_breast_cancer(dest: Path, seed: int) -> DemoSource:
    """Standard scaler + logistic regression, string class labels."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x_train, x_test, y_train, y_test = _split("breast-cancer", seed)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=2000))
    model.fit(x_train, y_train)
    metrics = _classification_metrics(y_test, model.predict(x_test))
    body = (
        "Wisconsin Diagnostic Breast Cancer data (UCI, bundled with scikit-learn): "
        "30 numeric features computed from a digitised image of a fine-needle aspirate "
        "of a breast mass (mean, standard error and worst value of radius, texture, "
        "perimeter, area, smoothness, compactness, concavity, concave points, symmetry "
        "and fractal dimension).\n\n"
        "**Model:** `StandardScaler` → `LogisticRegression(C=0.5)`.\n\n"
        f"**Output:** class label ({', '.join(model.classes_)}) and class probabilities "
        "in that order."
    )
    return DemoSource(
        name="breast-cancer",
        path=_dump_skops(model, dest / "breast-cancer.skops"),
        description=_card("Breast cancer diagnosis", body, metrics, len(x_train), len(x_test)),
        task="classification",
        feature_names=[str(c) for c in model.feature_names_in_],
        class_labels=[str(c) for c in model.classes_],
        tags=["demo", "scikit-learn", "tabular", "binary-classification", "medical"],
        reference=_reference("breast-cancer", seed),
        seed=seed,
        metrics=metrics,
    )


def _build_diabetes(dest: Path, seed: int) -> DemoSource:
    """Standard scaler + ridge regression."""
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x_train, x_test, y_train, y_test = _split("diabetes", seed)
    # Ridge beats gradient boosting on this small, noisy set (R² ~0.45 vs ~0.38 over seeds).
    model = make_pipeline(StandardScaler(), Ridge(alpha=1.0)).fit(x_train, y_train)
    metrics = _regression_metrics(y_test, model.predict(x_test))
    body = (
        "Diabetes data (Efron et al., 2004, bundled with scikit-learn), unscaled: "
        "`age` (years), `sex` (1 or 2), `bmi` (body-mass index), `bp` (mean blood "
        "pressure) and six blood serum measurements `s1`..`s6` (total cholesterol, "
        "LDL, HDL, total/HDL ratio, log of triglycerides, blood sugar).\n\n"
        "**Target:** a quantitative measure of disease progression one year after baseline.\n\n"
        "**Model:** `StandardScaler` → `Ridge(alpha=1.0)`."
    )
    return DemoSource(
        name="diabetes",
        path=_dump_skops(model, dest / "diabetes.skops"),
        description=_card("Diabetes progression", body, metrics, len(x_train), len(x_test)),
        task="regression",
        feature_names=[str(c) for c in model.feature_names_in_],
        class_labels=None,
        tags=["demo", "scikit-learn", "tabular", "regression", "medical"],
        reference=_reference("diabetes", seed),
        seed=seed,
        metrics=metrics,
    )


def _build_wine(dest: Path, seed: int) -> DemoSource:
    """Column transformer over numeric and string columns + logistic regression."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    x_train, x_test, y_train, y_test = _split("wine", seed)
    strings = ["alcohol_band", "hue_band"]
    numbers = [c for c in x_train.columns if c not in strings]
    columns = ColumnTransformer(
        [("num", StandardScaler(), numbers), ("cat", OneHotEncoder(handle_unknown="ignore"), strings)]
    )
    # Not a random forest: its float32 ONNX thresholds flip a tree now and then,
    # so probabilities would differ from scikit-learn's by 1/n_trees.
    classifier = LogisticRegression(C=0.1, max_iter=2000)
    model = Pipeline([("columns", columns), ("classifier", classifier)]).fit(x_train, y_train)
    metrics = _classification_metrics(y_test, model.predict(x_test))
    return DemoSource(
        name="wine",
        path=_dump_skops(model, dest / "wine.skops"),
        description=_card("Wine cultivar", _wine_body(), metrics, len(x_train), len(x_test)),
        task="classification",
        feature_names=[str(c) for c in model.feature_names_in_],
        class_labels=[str(c) for c in model.classes_],
        tags=["demo", "scikit-learn", "tabular", "multiclass-classification", "mixed-types"],
        reference=_reference("wine", seed),
        seed=seed,
        metrics=metrics,
    )


def _wine_body() -> str:
    """Card text for the wine model, with the band cut points."""
    x, _ = _wine_data()
    alcohol = ", ".join(f"{v:.2f}" for v in _band_edges(x["alcohol"]))
    hue = ", ".join(f"{v:.2f}" for v in _band_edges(x["hue"]))
    return (
        "Wine recognition data (UCI, bundled with scikit-learn): chemical analysis of "
        "178 wines from three cultivars grown in the same region of Italy. 13 numeric "
        "features (`od280/od315_of_diluted_wines` renamed `od280_od315_of_diluted_wines`) "
        "plus two **string** columns derived from them: `alcohol_band` and `hue_band`, "
        f"`low` / `medium` / `high` split at the tertiles (alcohol {alcohol}; hue {hue}).\n\n"
        "**Model:** `ColumnTransformer(StandardScaler on numbers, "
        "OneHotEncoder(handle_unknown='ignore') on strings)` → "
        "`LogisticRegression(C=0.1)`.\n\n"
        f"**Classes:** {', '.join(_WINE_CLASSES)} (cultivars 1-3)."
    )


# --- digits CNN ---------------------------------------------------------------


def _build_digits(dest: Path, seed: int) -> DemoSource:
    """Small CNN on 8x8 digit images, saved as a ``torch.export`` archive."""
    x_train, x_test, y_train, y_test = _split("digits", seed)
    labels = [str(d) for d in range(10)]
    program = _train_digits_cnn(x_train, y_train, seed)
    path = dest / "digits.pt2"
    _save_program(program, path)
    metrics = _classification_metrics(y_test, _predict_torch(path, x_test, labels))
    _write_digit_samples(dest / "digits_samples", x_test, y_test)
    return DemoSource(
        name="digits",
        path=path if _pytorch_uploads_confined() else _export_onnx(program, dest / "digits.onnx"),
        description=_card("Handwritten digits (8x8)", _DIGITS_BODY, metrics, len(x_train), len(x_test)),
        task="classification",
        feature_names=[str(c) for c in x_train.columns],
        class_labels=labels,
        tags=["demo", "pytorch", "image", "cnn", "multiclass-classification"],
        reference=_reference("digits", seed),
        input_shape=[1, 1, 8, 8],
        preprocessing=dict(DIGITS_PREPROCESSING),
        seed=seed,
        metrics=metrics,
    )


_DIGITS_BODY = """
Optical recognition of handwritten digits (UCI, bundled with scikit-learn):
1,797 greyscale 8x8 images, ink intensity 0..16 scaled to [0, 1], light ink on
a dark background.

**Model:** PyTorch CNN `Conv2d(1, 16, 3) → ReLU → Conv2d(16, 32, 3) → ReLU →
MaxPool(2) → Linear(512, 10)`, trained 15 epochs with Adam (one-cycle schedule);
saved with `torch.export.save`, batch dimension dynamic.

**Input:** float32 tensor `(N, 1, 8, 8)` in [0, 1]. Images: convert to grey,
invert dark-on-light scans, resize to 8x8, divide by 255.

**Output:** 10 logits for the classes "0".."9" (apply a softmax for probabilities).
"""


def _train_digits_cnn(x_train: pd.DataFrame, y_train: pd.Series, seed: int) -> Any:
    """Train the CNN with a private RNG state and return its exported program."""
    import torch

    images = torch.from_numpy(x_train.to_numpy(np.float32, copy=True).reshape(-1, 1, 8, 8))
    targets = torch.from_numpy(y_train.astype(int).to_numpy(np.int64, copy=True))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _digits_cnn(torch)
        _fit(torch, model, images, targets, seed)
    model.eval()
    batch = torch.export.Dim("batch", min=1)
    example = (torch.zeros(2, 1, 8, 8),)
    return torch.export.export(model, example, dynamic_shapes=({0: batch},))


def _digits_cnn(torch: Any) -> Any:
    """The (untrained) network."""
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 10),
    )


def _fit(torch: Any, model: Any, images: Any, targets: Any, seed: int, *, epochs: int = 15) -> None:
    """Mini-batch Adam with a one-cycle learning rate and a seeded shuffle."""
    generator = torch.Generator().manual_seed(seed)
    steps = epochs * -(-len(images) // _BATCH)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=5e-3, total_steps=steps)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(images), generator=generator).split(_BATCH):
            optimizer.zero_grad()
            loss_fn(model(images[batch]), targets[batch]).backward()
            optimizer.step()
            schedule.step()


def _save_program(program: Any, path: Path) -> None:
    """``torch.export.save``, atomically."""
    import torch

    with _replacing(path) as tmp:
        torch.export.save(program, tmp)


def _pytorch_uploads_confined() -> bool:
    from ..ingest.confine import landlock_abi

    return landlock_abi() >= 1


def _export_onnx(program: Any, path: Path) -> Path:
    """Our own program as ONNX, for a kernel where the portal refuses ``.pt2`` uploads (no Landlock)."""
    import torch

    with _replacing(path) as tmp:
        torch.onnx.export(program, (torch.zeros(2, 1, 8, 8),), str(tmp), dynamo=True, external_data=False,
                          dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
    return path


def _predict_torch(path: Path, x: pd.DataFrame, labels: list[str]) -> np.ndarray:
    """Class labels the saved ``.pt2`` program predicts for pixel rows."""
    import torch

    path = path.with_suffix(".pt2")  # the ONNX fallback sits beside the archive it came from
    module = torch.export.load(path).module()
    images = torch.from_numpy(x.to_numpy(np.float32, copy=True).reshape(-1, 1, 8, 8))
    with torch.no_grad():
        logits = module(images)
    return np.asarray(labels, dtype=object)[logits.argmax(dim=1).numpy()]


def _write_digit_samples(folder: Path, x_test: pd.DataFrame, y_test: pd.Series) -> None:
    """PNG scans of held-out digits: dark ink on white, upscaled, ``digit_<label>_<i>.png``."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    for pixels, label in zip(x_test.to_numpy(np.float32), y_test, strict=True):
        index = counts.get(label, 0)
        if index >= _SAMPLES_PER_DIGIT:
            continue
        counts[label] = index + 1
        ink = np.rint(255.0 * (1.0 - pixels.reshape(8, 8))).astype(np.uint8)
        image = Image.fromarray(ink).resize((_SAMPLE_PIXELS, _SAMPLE_PIXELS), Image.Resampling.BICUBIC)
        path = folder / f"digit_{label}_{index}.png"
        with _replacing(path) as tmp:
            image.save(tmp, format="PNG")
