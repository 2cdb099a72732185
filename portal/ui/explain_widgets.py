"""Widgets of the Explain page that the SHAP and LIME panels share.

The method and the settings of both, the data (rows to explain, background),
the what-if form, the images to explain, and the run button: a job's result
shows at once when cached, else after a click, with the estimate and a
progress bar.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from .. import views
from ..core import Portal
from ..errors import PortalError
from ..explain import ExplainSettings, ImageJob, LimeImageJob, LimeJob, TabularJob, is_warm
from ..serving.dataio import read_table
from ..storage.registry import ModelVersion
from . import keys
from .widgets import feature_input, shown_errors

__all__ = ["data_sources", "explained", "picked_images", "progress_of", "settings_panel", "whatif_inputs"]

_METHODS = {"shap": "SHAP", "lime": "LIME"}


# -- method, settings and data ------------------------------------------------------------
def settings_panel() -> ExplainSettings | None:
    """The method, then the settings of SHAP and LIME in an expander; None (with the error shown) when invalid."""
    method = st.radio("Method", list(_METHODS), format_func=_METHODS.__getitem__, horizontal=True,
                      key=keys.EXPLAIN_METHOD, help="SHAP: exact shares of the output per feature; "
                                                    "LIME: a local straight-line fit around the row")
    with st.expander("Explanation settings", icon=":material/tune:"):
        cols = st.columns(3)
        explainer = cols[0].selectbox("Explainer", ["auto", "exact", "permutation"], key=keys.EXPLAIN + "explainer",
                                      help="SHAP; auto: exact for up to 10 features, permutation beyond")
        max_evals = cols[1].number_input("Evaluations per row (0 = automatic)", min_value=0, value=0, step=100,
                                         key=keys.EXPLAIN + "max_evals", help="SHAP")
        seed = cols[2].number_input("Seed", min_value=0, value=0, step=1, key=keys.EXPLAIN + "seed")
        size = cols[0].number_input("Background rows", min_value=1, max_value=5000, value=100, step=10,
                                    key=keys.EXPLAIN + "background_size",
                                    help="SHAP (LIME takes statistics of them all)")
        summary = cols[1].radio("Summarize background by", ["sample", "kmeans"], horizontal=True,
                                key=keys.EXPLAIN + "background_method",
                                help="a random sample, or k-means representatives")
        seconds = cols[2].number_input("Time budget (s)", min_value=1, max_value=3600, value=120, step=10,
                                       key=keys.EXPLAIN + "max_seconds",
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
                                   key=keys.EXPLAIN + "lime.samples", help="5000 per row, 1000 per image")
    width = cols[1].number_input("Kernel width (0 = lime's default)", min_value=0.0, value=0.0, step=0.25,
                                 key=keys.EXPLAIN + "lime.kernel_width", help="rows: 0.75 × √features; images: 0.25")
    segments = cols[2].number_input("Superpixels (0 = automatic)", min_value=0, value=0, step=4,
                                    key=keys.EXPLAIN + "lime.segments", help="images: about how many SLIC superpixels")
    discretize = cols[3].checkbox("Quartile bins", value=True, key=keys.EXPLAIN + "lime.discretize",
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
            rows = _uploaded_table("Rows to explain (optional)", keys.EXPLAIN + "rows_file",
                                   "CSV or Parquet with the model's columns; default: the reference data")
        with cols[1]:
            background = _uploaded_table("Background (optional)", keys.EXPLAIN + "background_file",
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


# -- what-if rows and images ------------------------------------------------------------
def _load_row(fields: list[views.FeatureField], rows: pd.DataFrame, prefix: str) -> None:
    index = int(st.session_state[keys.EXPLAIN_WHATIF_FROM])
    for name, value in views.row_values(fields, rows, index).items():
        st.session_state[prefix + name] = value
    st.session_state[keys.EXPLAIN_WHATIF_LOADED] = index


def whatif_inputs(version: ModelVersion, rows: pd.DataFrame) -> tuple[pd.DataFrame, int] | None:
    """The what-if form: the edited row, and the index of the row it started from (shared by SHAP and LIME)."""
    try:
        fields = views.feature_fields(version, rows)
    except PortalError as exc:
        st.info(exc.message, icon=":material/info:")
        return None
    prefix = f"{keys.EXPLAIN_WHATIF}{version.ref}."
    if prefix + fields[0].name not in st.session_state:
        st.session_state[keys.EXPLAIN_WHATIF_FROM] = 0
        _load_row(fields, rows, prefix)
    cols = st.columns([1, 1, 3], vertical_alignment="bottom")
    cols[0].number_input("Start from row", min_value=0, max_value=len(rows) - 1, step=1, key=keys.EXPLAIN_WHATIF_FROM)
    cols[1].button("Load row", on_click=_load_row, args=(fields, rows, prefix), icon=":material/input:")
    with st.form(prefix + "form"):
        grid = st.columns(3)
        for i, field in enumerate(fields):
            with grid[i % 3]:
                feature_input(field, prefix + field.name)
        st.form_submit_button("Update", type="primary", icon=":material/refresh:")
    edited = pd.DataFrame([{f.name: st.session_state[prefix + f.name] for f in fields}])
    return edited, int(st.session_state.get(keys.EXPLAIN_WHATIF_LOADED, 0))


def _reference_images(version: ModelVersion, reference: pd.DataFrame | None, count: int) -> np.ndarray | None:
    """Reference rows of pixel columns as model-input images (the digits demo keeps its images so)."""
    shape = version.signature["inputs"][0].get("shape") or []
    dims = [d for d in shape[1:] if isinstance(d, int)]
    names = version.feature_names or []
    if reference is None or len(dims) != 3 or len(names) != int(np.prod(dims)):
        return None
    if not set(names) <= set(reference.columns):
        return None
    pixels = reference[names].head(count).to_numpy(np.float32)
    return pixels.reshape(len(pixels), *dims)


def picked_images(portal: Portal, version: ModelVersion) -> tuple[Any, int] | None:
    """Dropped images (else a reference image) and how many classes per image to explain."""
    uploads = st.file_uploader("Images", type=["png", "jpg", "jpeg", "bmp", "gif", "tif", "tiff", "webp"],
                               accept_multiple_files=True, key=keys.EXPLAIN + "images")
    reference = _reference_images(version, portal.reference_frame(version.ref), 12)
    images: Any = [u.getvalue() for u in uploads] if uploads else None
    if images is None and reference is not None:
        index = int(st.number_input("Reference image", min_value=0, max_value=len(reference) - 1, value=0,
                                    key=keys.EXPLAIN + "image.row", help="or drop image files above"))
        images = reference[index : index + 1]
    if images is None:
        st.info("Drop one or more images to explain.", icon=":material/image:")
        return None
    classes = len(version.class_labels or []) or 10
    top = st.slider("Classes per image", min_value=1, max_value=min(5, classes), value=min(3, classes),
                    key=keys.EXPLAIN + "image.top")
    return images, top


# -- running ----------------------------------------------------------------------------
def explained(job: TabularJob | ImageJob | LimeJob | LimeImageJob, *, key: str, label: str = "Explain") -> Any:
    """The job's result: at once when cached, else after a click, with the estimate and a progress bar."""
    if job.cached:
        return job.run()
    try:
        plan = job.estimate
    except PortalError as exc:
        st.error(exc.message, icon=":material/timer_off:")
        return None
    st.caption(f"Estimate: {plan.describe()}")
    for note in plan.notes:
        st.info(note, icon=":material/speed:")
    if not st.button(label, key=key, type="primary", icon=":material/psychology:"):
        return None
    waiting = "Explaining … (shap compiles once per server start; this first run waits for it)"
    bar = st.progress(0.0, text="Explaining …" if is_warm() or isinstance(job, (LimeJob, LimeImageJob)) else waiting)
    result = None
    with shown_errors():
        result = job.run(progress=progress_of(bar))
    bar.empty()
    return result


def progress_of(bar: Any) -> Any:
    """A ``progress(fraction, text)`` callback that moves ``bar``."""
    def progress(fraction: float, text: str) -> None:
        bar.progress(min(1.0, fraction), text=text)

    return progress
