"""What the portal registers with a demo model: :class:`DemoSource` and its markdown card."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .data import TEST_SIZE

__all__ = ["DemoSource", "card"]


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


def _metrics_table(metrics: dict[str, float]) -> str:
    """Markdown table of metric name and value."""
    rows = [f"| {name} | {value:.4f} |" for name, value in metrics.items()]
    return "\n".join(["| metric | value |", "|---|---|", *rows])


def card(title: str, body: str, metrics: dict[str, float], n_train: int, n_test: int) -> str:
    """Markdown model card: what it is, then held-out metrics."""
    return (
        f"# {title}\n\n{body.strip()}\n\n"
        f"## Held-out evaluation\n\nTrained on {n_train} rows, scored on {n_test} held-out rows "
        f"({TEST_SIZE:.0%} split).\n\n{_metrics_table(metrics)}\n\n"
        "Demo model built from a data set bundled with scikit-learn; not for real decisions.\n"
    )
