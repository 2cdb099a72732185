"""Explain: why the model answered what it did (SHAP or LIME), for rows, edited rows, images and variants."""

from __future__ import annotations

import streamlit as st

from portal import views
from portal.explain import warm_up_shap
from portal.ui import explain_lime_panels as lime_panels
from portal.ui import explain_panels as shap_panels
from portal.ui.session import current_portal
from portal.ui.widgets import picked_version, show_flash

portal = current_portal()
warm_up_shap()  # a no-op once shap is compiled; otherwise it compiles while the user looks around
show_flash()
st.title("Explain")
version = picked_version(portal)
st.caption(f"Why {version.ref} answers what it does: SHAP attributions (each checked: base value + attributions = "
           "output) or LIME's local straight-line fits, over the portal's own predictions, cached.")
mode = views.input_mode(version)
settings = shap_panels.settings_panel()
if settings is None:
    st.stop()
panels = lime_panels if settings.method == "lime" else shap_panels  # the same panels, by method

if mode == "image":
    panels.image_panel(portal, version, settings)
elif mode == "tabular":
    sources = shap_panels.data_sources(portal, version)
    if sources is None:
        st.stop()
    rows, background = sources
    one, many, whatif, drift, agree = st.tabs(["One row", "Many rows", "What-if", "Variant drift", "SHAP vs LIME"])
    with one:
        panels.one_row_panel(portal, version, rows, background, settings)
    with many:
        panels.many_rows_panel(portal, version, rows, background, settings)
    with whatif:
        panels.whatif_panel(portal, version, rows, background, settings)
    with drift:
        shap_panels.drift_panel(portal, version, rows, background, settings)
    with agree:
        lime_panels.agreement_panel(portal, version, rows, background, settings)
else:
    st.info(f"{version.ref} takes raw tensors; explanations need table columns or images.", icon=":material/info:")
