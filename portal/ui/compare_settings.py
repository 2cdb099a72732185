"""The Compare page's method settings (the methods and the knobs of those ticked) and its live progress.

The methods, their help lines and which run by default come from the method
records (:data:`portal.compress.methods.REGISTRY`); a setting that belongs to one
method (distill's student, int8-budgeted's budget) shows only while it is ticked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from ..compress.methods import DEFAULT_METHODS, METHODS, REGISTRY, progress_fraction
from ..compress.rules import CALIBRATION_METHODS
from ..compress.students.names import STUDENTS
from . import keys

__all__ = ["STUDENTS", "method_help", "method_settings", "progress_writer"]

_STUDENT_HELP = ("auto picks by model kind; mlp or trees (gradient-boosted) for tables; small-cnn, "
                 "mobilenet_v3_small or resnet18 for images")


def method_help() -> dict[str, str]:
    """Each method's help line, from its record."""
    return {name: record.help for name, record in REGISTRY.items()}


def method_settings(*, off: bool) -> tuple[list[str], dict[str, Any]]:
    """The methods ticked and the settings of :func:`portal.compress.variants.compare` that go with them."""
    chosen = list(st.pills("Methods", METHODS, selection_mode="multi", default=list(DEFAULT_METHODS),
                           key=keys.COMPARE_METHODS, disabled=off,
                           help=" · ".join(f"{m}: {h}" for m, h in method_help().items())) or [])
    cols = st.columns(3)
    options: dict[str, Any] = {
        "per_channel": cols[0].checkbox("Per-channel int8", help="One scale per output channel: usually more "
                                        "accurate", disabled=off),
        "calibration_method": cols[1].selectbox("Calibration", CALIBRATION_METHODS, disabled=off,
                                                help="How int8-static and int8-budgeted pick ranges"),
        "sparsity": cols[2].slider("Prune sparsity", 0.05, 0.95, 0.5, step=0.05, disabled=off,
                                   help="Share of weights set to zero"),
    }
    if "distill" in chosen or "int8-budgeted" in chosen:
        cols = st.columns(3)
        if "distill" in chosen:
            options["student"] = cols[0].selectbox("Distill: student", STUDENTS, key=keys.COMPARE_STUDENT,
                                                   help=_STUDENT_HELP, disabled=off)
            options["train_seconds"] = float(cols[1].number_input(
                "Distill: training budget (s)", min_value=5, max_value=3600, value=60, step=5,
                key=keys.COMPARE_TRAIN_SECONDS, disabled=off, help="The student trains for at most this long"))
        if "int8-budgeted" in chosen:
            options["tolerance"] = float(cols[2].number_input(
                "int8-budgeted: agreement loss allowed (%)", min_value=0.0, max_value=50.0, value=1.0, step=0.1,
                format="%.1f", key=keys.COMPARE_BUDGET, disabled=off,
                help="Operators that cost more agreement stay in float until the variant is within this")) / 100
    return chosen, options


def progress_writer() -> Callable[[str], None]:
    """A progress callback: a line carrying a fraction moves a progress bar, any other line is written."""
    bar: Any = None

    def write(line: str) -> None:
        nonlocal bar
        fraction = progress_fraction(line)
        if fraction is None:
            bar = None  # the next long step gets a bar of its own
            st.write(f":material/check: {line}")
            return
        text = line.rsplit(" [", 1)[0]
        if bar is None:
            bar = st.progress(fraction, text=text)
        else:
            bar.progress(fraction, text=text)

    return write
