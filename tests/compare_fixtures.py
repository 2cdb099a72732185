"""The Compare page tests' store: one softmax classifier ``m:1`` over four features, with labelled reference data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from tiny import add_model, softmax_classifier

from portal import Portal

FEATURES = ["a", "b", "c", "d"]
CLASSES = ["red", "green", "blue"]


def reference_frame() -> pd.DataFrame:
    """40 seeded rows of the four features, with a ``target`` column of class labels."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(40, 4)).astype(np.float32), columns=FEATURES)
    return frame.assign(target=["red", "green", "blue", "red"] * 10)


def classifier_store(home: Path, *, labelled: bool = True) -> Portal:
    """A portal at ``home`` holding ``m:1`` (with the reference rows unless ``labelled`` is False)."""
    portal = Portal.open(home)
    add_model(portal, softmax_classifier(), "m", task="classification", feature_names=FEATURES,
              reference=reference_frame() if labelled else None, class_labels=CLASSES)
    return portal
