"""The demo data sets (bundled with scikit-learn), their held-out splits and reference rows.

Features come back exactly as the models take them, with the target as a
separate series named :data:`TARGET`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

__all__ = ["TARGET", "TEST_SIZE", "WINE_CLASSES", "band_edges", "load_data", "reference", "split"]

TARGET = "target"
TEST_SIZE = 0.25
WINE_CLASSES = ["cultivar_A", "cultivar_B", "cultivar_C"]
_REFERENCE_ROWS = 200
_BANDS = ["low", "medium", "high"]


def load_data(name: str) -> tuple[pd.DataFrame, pd.Series]:
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
    labels = np.asarray(WINE_CLASSES, dtype=object)[bunch.target.to_numpy()]
    return frame, pd.Series(labels, name=TARGET, dtype=object)


def _tertile_bands(values: pd.Series) -> pd.Series:
    """``low`` / ``medium`` / ``high`` by the column's tertiles."""
    return pd.qcut(values, 3, labels=_BANDS).astype(object)


def band_edges(values: pd.Series) -> list[float]:
    """The two tertile cut points that split a column into ``low`` / ``medium`` / ``high``."""
    return [float(v) for v in values.quantile([1 / 3, 2 / 3])]


def split(name: str, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series]:
    """Train/held-out split of a demo data set (stratified for classifiers)."""
    from sklearn.model_selection import train_test_split

    x, y = load_data(name)
    stratify = None if name == "diabetes" else y
    parts = train_test_split(x, y, test_size=TEST_SIZE, random_state=seed, stratify=stratify)
    x_train, x_test, y_train, y_test = parts
    return x_train, x_test, y_train, y_test


def reference(name: str, seed: int) -> pd.DataFrame:
    """About 200 rows of the data set, features plus ``target``."""
    x, y = load_data(name)
    frame = x.assign(**{TARGET: y})
    if len(frame) > _REFERENCE_ROWS:
        frame = frame.sample(n=_REFERENCE_ROWS, random_state=seed)
    return frame.reset_index(drop=True)
