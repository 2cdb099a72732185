"""Explain: why the model answered what it did (SHAP), for rows, edited rows, images and variants."""

from __future__ import annotations

import streamlit as st

from portal import views
from portal.explain import warm_up_shap
from portal.ui.explain_panels import (
    data_sources,
    drift_panel,
    image_panel,
    many_rows_panel,
    one_row_panel,
    settings_panel,
    whatif_panel,
)
from portal.ui.session import current_portal
from portal.ui.widgets import picked_version, show_flash

portal = current_portal()
warm_up_shap()  # a no-op once shap is compiled; otherwise it compiles while the user looks around
show_flash()
st.title("Explain")
version = picked_version(portal)
st.caption(f"Why {version.ref} answers what it does: SHAP attributions over the portal's own predictions. "
           "Each explanation is checked (base value + attributions = output) and cached.")
mode = views.input_mode(version)
settings = settings_panel()
if settings is None:
    st.stop()

if mode == "image":
    image_panel(portal, version, settings)
elif mode == "tabular":
    sources = data_sources(portal, version)
    if sources is None:
        st.stop()
    rows, background = sources
    one, many, whatif, drift = st.tabs(["One row", "Many rows", "What-if", "Variant drift"])
    with one:
        one_row_panel(portal, version, rows, background, settings)
    with many:
        many_rows_panel(portal, version, rows, background, settings)
    with whatif:
        whatif_panel(portal, version, rows, background, settings)
    with drift:
        drift_panel(portal, version, rows, background, settings)
else:
    st.info(f"{version.ref} takes raw tensors; explanations need table columns or images.", icon=":material/info:")
