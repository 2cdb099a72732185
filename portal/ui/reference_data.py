"""Reference data through the UI: an uploader for the Register form and a section of the Models page.

Reference data is what the portal compares against: the predict form's starting
values, Explain's background, Compare's evaluation rows, Monitor's drift baseline.
A tabular model takes a CSV or Parquet table with its columns; an image model
takes images (several files, or a zip) or a table of pixel columns.  The library
checks it against the signature (:mod:`portal.core.reference`); nothing is kept
when it does not fit.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from ..core import Portal
from ..serving.images import IMAGE_SUFFIXES, is_image_signature
from ..storage.registry import ModelSummary, ModelVersion
from . import keys
from .roles import why_not
from .widgets import flash, shown_errors

__all__ = ["reference_data_panel", "reference_upload"]

_TABLES = ["csv", "parquet"]
_IMAGES = [s.lstrip(".") for s in IMAGE_SUFFIXES] + ["zip"]
_USES = ("the predict form's starting values, Explain's background, Compare's evaluation rows and "
         "Monitor's drift baseline")


def reference_upload(signature: dict[str, Any], preprocessing: dict[str, Any] | None, *, key: str,
                     label: str = "Reference data (optional)") -> Any:
    """An uploader for reference data; returns what :meth:`Portal.register` takes as ``reference`` (None: none)."""
    images = is_image_signature(signature, preprocessing)
    what = ("images (several files or a zip), or a table of pixel columns" if images
            else "a CSV or Parquet table with the model's columns (extra columns such as a target are kept)")
    uploads = st.file_uploader(label, type=_TABLES + _IMAGES if images else _TABLES, key=key,
                               accept_multiple_files=images, help=f"{what[0].upper()}{what[1:]}: used for {_USES}.")
    if not uploads:
        return None
    if isinstance(uploads, list):
        return [(u.name, u.getvalue()) for u in uploads]
    return (uploads.name, uploads.getvalue())


def _summary(frame: pd.DataFrame | None) -> str:
    if frame is None:
        return ("No reference data yet. Without it Explain uses the rows being explained as the background "
                "(at least 10), Compare measures on synthetic inputs generated from the signature (no accuracy), "
                "and Monitor has no drift baseline.")
    columns = ", ".join(map(str, frame.columns[:8])) + (f" … (+{len(frame.columns) - 8})" if len(frame.columns) > 8
                                                         else "")
    return f"Reference data: {len(frame):,} rows · columns {columns}. Used for {_USES}."


def reference_data_panel(portal: Portal, model: ModelSummary, version: ModelVersion) -> None:
    """The version's reference data: what it holds, and an upload to add or replace it (owner or admin)."""
    st.markdown(f"**Reference data of {version.ref}**")
    frame = portal.reference_frame(version.ref)
    st.caption(_summary(frame))
    if why_not(portal, "edit", model):
        return
    data = reference_upload(version.signature, version.preprocessing, key=f"{keys.REFERENCE_UPLOAD}{version.ref}",
                            label="Replace the reference data" if frame is not None else "Add reference data")
    if st.button("Save reference data", key=f"{keys.REFERENCE_SAVE}{version.ref}", disabled=data is None,
                 icon=":material/dataset:", type="primary"):
        with shown_errors(stop=True):
            updated = portal.set_reference_data(version.ref, data)
        saved = portal.reference_frame(updated.ref)
        flash(f"Saved {0 if saved is None else len(saved):,} rows of reference data for {updated.ref}.")
        st.rerun()
