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
from ..explain import figures as xf
from ..explain.tabular import MIN_ROWS_AS_BACKGROUND
from ..serving.dataio import read_table
from ..storage.registry import ModelVersion
from . import keys
from .widgets import feature_input, shown_errors

__all__ = ["data_sources", "explained", "images_zero_notice", "picked_images", "progress_of", "result_source",
           "run_now", "settings_panel", "whatif_inputs", "zero_attributions_notice"]

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
            rows = _uploaded_table("Rows to explain (optional)",  # another model: empty uploaders
                                   keys.per_model(keys.EXPLAIN + "rows_file", version.name),
                                   "CSV or Parquet with the model's columns; default: the reference data")
        with cols[1]:
            background = _uploaded_table("Background (optional)",
                                         keys.per_model(keys.EXPLAIN + "background_file", version.name),
                                         "what 'absent' means for a feature (LIME: its training data); "
                                         "default: the reference data")
    rows = rows if rows is not None else reference
    least = MIN_ROWS_AS_BACKGROUND
    if rows is None:
        st.info(f"This version has no reference data: upload the rows to explain under **Data** (at least {least} "
                "rows serve as their own background), or add reference data on the Models page (Edit tab).",
                icon=":material/upload_file:")
        return None
    if background is None and reference is None and len(rows) < least:
        st.info(f"This version has no reference data, and {len(rows)} row(s) are too few to serve as their own "
                f"background (at least {least}): upload more rows or a background table under **Data**, or add "
                "reference data on the Models page (Edit tab).", icon=":material/info:")
        return None
    rows = rows.reset_index(drop=True)
    if background is None and reference is None:
        st.caption(f"Background: the {len(rows)} rows being explained (this version has no reference data).")
        background = rows  # all of them, also when a tab explains one row or an edited one
    return rows, background


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
                               accept_multiple_files=True, key=keys.per_model(keys.EXPLAIN + "images", version.name))
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
        result = run_now(job, progress=progress_of(bar))
    bar.empty()
    return result


def run_now(job: TabularJob | ImageJob | LimeJob | LimeImageJob, *, progress: Any = None) -> Any:
    """``job.run()``, remembering a result computed here (not a cache hit) for :func:`result_source`."""
    hit = job.cached
    result = job.run(progress=progress)
    if not hit:
        st.session_state.setdefault(keys.COMPUTED_EXPLANATIONS, set()).add(result.key)
    return result


def result_source(expl: Any) -> str:
    """Where the shown result came from: "loaded from the cache" only for a real cache hit.

    A result this browser session computed is read back from the cache on every later
    rerun of the page; it still reads "computed in … s", the time it took.
    """
    if expl.from_cache and expl.key not in st.session_state.get(keys.COMPUTED_EXPLANATIONS, ()):
        return f"loaded from the cache (computed earlier in {expl.seconds:.2f} s)"
    return f"computed in {expl.seconds:.2f} s"


def zero_attributions_notice(values: np.ndarray, outputs: np.ndarray, *, varied: str, method: str = "SHAP") -> bool:
    """Warn, and return True, when attributions are numerically zero (see ``figures.ZERO_ATTRIBUTION``)."""
    if not xf.numerically_zero(values, outputs):
        return False
    st.warning(f"The attributions are numerically zero (largest |{method} value| "
               f"{xf.largest_attribution(values):.1e}): the model's output does not change with the {varied} "
               f"{method} varied, so the figures show no evidence for or against. Check that the model really "
               "uses its input (e.g. its preprocessing, or an output that is constant).",
               icon=":material/exposure_zero:")
    return True


def progress_of(bar: Any) -> Any:
    """A ``progress(fraction, text)`` callback that moves ``bar``."""
    def progress(fraction: float, text: str) -> None:
        bar.progress(min(1.0, fraction), text=text)

    return progress


def images_zero_notice(values: np.ndarray, outputs: np.ndarray, *, method: str = "SHAP") -> None:
    """:func:`zero_attributions_notice` for a batch of images (``values`` and ``outputs`` by image), naming them."""
    zero = [i for i in range(len(outputs)) if xf.numerically_zero(values[i], outputs[i])]
    if len(zero) == len(outputs):
        zero_attributions_notice(values, outputs, varied="pixels", method=method)
    elif zero:
        named = ", ".join(str(i) for i in zero)
        zero_attributions_notice(values[zero], outputs[zero], varied=f"pixels of image(s) {named}", method=method)
