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
so that importing this package stays cheap (``skops.io`` alone pulls in torch).

    data       the data sets, their held-out splits and reference rows (``TARGET``)
    scoring    accuracy / macro F1, R² / MAE / RMSE on the held-out split
    source     :class:`DemoSource` and the markdown model card
    files      atomic writes, skops dump and load
    tabular    the breast-cancer, diabetes and wine scikit-learn models
    digits     the digits CNN, its image preprocessing and sample scans
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .data import TARGET, split
from .digits import DIGITS_PREPROCESSING, build_digits, predict_torch
from .files import load_skops
from .scoring import score
from .source import DemoSource
from .tabular import build_breast_cancer, build_diabetes, build_wine

__all__ = [
    "DIGITS_PREPROCESSING",
    "TARGET",
    "DemoSource",
    "build_demo_sources",
    "load_skops",
    "verify_demo_source",
]


def build_demo_sources(dest: Path, *, seed: int = 0) -> list[DemoSource]:
    """Train the four demo models and write their files (and digit PNGs) into ``dest``."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    return [
        build_breast_cancer(dest, seed),
        build_diabetes(dest, seed),
        build_digits(dest, seed),
        build_wine(dest, seed),
    ]


def verify_demo_source(src: DemoSource) -> float:
    """Held-out score of the saved file: accuracy, or R² for the regressor."""
    _, x_test, _, y_test = split(src.name, src.seed)
    if src.name == "digits":
        predictions: np.ndarray = predict_torch(src.path, x_test, src.class_labels or [])
    else:
        predictions = load_skops(src.path).predict(x_test)
    return score(src.task, y_test, predictions)
