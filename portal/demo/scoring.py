"""Held-out scores of the demo models: accuracy and macro F1, or R², MAE and RMSE."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["classification_metrics", "regression_metrics", "score"]


def score(task: str, y_true: pd.Series, predictions: np.ndarray) -> float:
    """Accuracy for classifiers, R² for regressors."""
    from sklearn.metrics import accuracy_score, r2_score

    if task == "regression":
        return float(r2_score(y_true, predictions))
    return float(accuracy_score(np.asarray(y_true, dtype=object), np.asarray(predictions, dtype=object)))


def classification_metrics(y_true: pd.Series, predictions: np.ndarray) -> dict[str, float]:
    """Accuracy and macro F1 on the held-out split."""
    from sklearn.metrics import f1_score

    y_true_arr = np.asarray(y_true, dtype=object)
    return {
        "accuracy": score("classification", y_true, predictions),
        "macro_f1": float(f1_score(y_true_arr, np.asarray(predictions, dtype=object), average="macro")),
    }


def regression_metrics(y_true: pd.Series, predictions: np.ndarray) -> dict[str, float]:
    """R², MAE and RMSE on the held-out split."""
    from sklearn.metrics import mean_absolute_error, root_mean_squared_error

    return {
        "r2": score("regression", y_true, predictions),
        "mae": float(mean_absolute_error(y_true, predictions)),
        "rmse": float(root_mean_squared_error(y_true, predictions)),
    }
