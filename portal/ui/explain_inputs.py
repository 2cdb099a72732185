"""Inputs of the Explain page: the method (SHAP or LIME), the settings of both, and the data."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from ..core import Portal
from ..serving.dataio import read_table
from ..explain import ExplainSettings
from ..storage.registry import ModelVersion
from .widgets import shown_errors

__all__ = ["PREFIX", "data_sources", "settings_panel"]

# session-state keys of the Explain page (widgets)
PREFIX = "explain."
METHOD = PREFIX + "method"
_METHODS = {"shap": "SHAP", "lime": "LIME"}


def settings_panel() -> ExplainSettings | None:
    """The method, then the settings of SHAP and LIME in an expander; None (with the error shown) when invalid."""
    method = st.radio("Method", list(_METHODS), format_func=_METHODS.__getitem__, horizontal=True, key=METHOD,
                      help="SHAP: exact shares of the output per feature; "
                           "LIME: a local straight-line fit around the row")
    with st.expander("Explanation settings", icon=":material/tune:"):
        cols = st.columns(3)
        explainer = cols[0].selectbox("Explainer", ["auto", "exact", "permutation"], key=PREFIX + "explainer",
                                      help="SHAP; auto: exact for up to 10 features, permutation beyond")
        max_evals = cols[1].number_input("Evaluations per row (0 = automatic)", min_value=0, value=0, step=100,
                                         key=PREFIX + "max_evals", help="SHAP")
        seed = cols[2].number_input("Seed", min_value=0, value=0, step=1, key=PREFIX + "seed")
        size = cols[0].number_input("Background rows", min_value=1, max_value=5000, value=100, step=10,
                                    key=PREFIX + "background_size", help="SHAP (LIME takes statistics of them all)")
        summary = cols[1].radio("Summarize background by", ["sample", "kmeans"], horizontal=True,
                                key=PREFIX + "background_method", help="a random sample, or k-means representatives")
        seconds = cols[2].number_input("Time budget (s)", min_value=1, max_value=3600, value=120, step=10,
                                       key=PREFIX + "max_seconds",
                                       help="a run that would take longer is capped or refused")
        lime = _lime_settings()
    with shown_errors():
        return ExplainSettings(explainer=explainer, max_evals=int(max_evals) or None, seed=int(seed),
                               background_size=int(size), background_method=summary, max_seconds=float(seconds),
                               method=method, **lime)
    return None


def _lime_settings() -> dict[str, Any]:
    st.caption("LIME")
    cols = st.columns(4, vertical_alignment="bottom")
    samples = cols[0].number_input("Samples per row or image (0 = lime's default)", min_value=0, value=0, step=500,
                                   key=PREFIX + "lime.samples", help="5000 per row, 1000 per image")
    width = cols[1].number_input("Kernel width (0 = lime's default)", min_value=0.0, value=0.0, step=0.25,
                                 key=PREFIX + "lime.kernel_width", help="rows: 0.75 × √features; images: 0.25")
    segments = cols[2].number_input("Superpixels (0 = automatic)", min_value=0, value=0, step=4,
                                    key=PREFIX + "lime.segments", help="images: about how many SLIC superpixels")
    discretize = cols[3].checkbox("Quartile bins", value=True, key=PREFIX + "lime.discretize",
                                  help="rows: weights of 'feature in this quartile' (lime's default), "
                                       "else per standard deviation")
    return {"lime_samples": int(samples) or None, "lime_kernel_width": float(width) or None,
            "lime_segments": int(segments) or None, "lime_discretize": bool(discretize)}


def _uploaded_table(label: str, key: str, help: str) -> pd.DataFrame | None:
    upload = st.file_uploader(label, type=["csv", "parquet"], key=key, help=help)
    if upload is None:
        return None
    with shown_errors(stop=True):
        return read_table(upload.getvalue(), name=upload.name)
    return None


def data_sources(portal: Portal, version: ModelVersion) -> tuple[pd.DataFrame, Any] | None:
    """The rows to explain and the background (None: the version's reference data)."""
    reference = portal.reference_frame(version.ref)
    if reference is None and version.parent:
        reference = portal.reference_frame(version.parent)
    with st.expander("Data", icon=":material/table:", expanded=reference is None):
        cols = st.columns(2)
        with cols[0]:
            rows = _uploaded_table("Rows to explain (optional)", PREFIX + "rows_file",
                                   "CSV or Parquet with the model's columns; default: the reference data")
        with cols[1]:
            background = _uploaded_table("Background (optional)", PREFIX + "background_file",
                                         "what 'absent' means for a feature (LIME: its training data); "
                                         "default: the reference data")
    rows = rows if rows is not None else reference
    if rows is None:
        st.info("This version has no reference data: upload the rows to explain and a background table under **Data**.",
                icon=":material/upload_file:")
        return None
    if background is None and reference is None:
        st.info("Upload a background table under **Data** (this version has no reference data).",
                icon=":material/info:")
        return None
    return rows.reset_index(drop=True), background
