"""Explain: why the model answered what it did (SHAP or LIME), for rows, edited rows, images and variants."""

from __future__ import annotations

import streamlit as st

from portal.ui import current_portal, picked_version, show_flash
from portal.ui.explain_panels import explanation_panels, settings_panel, warm_up_shap

portal = current_portal()
warm_up_shap()  # a no-op once shap is compiled; otherwise it compiles while the user looks around
show_flash()
st.title("Explain")
version = picked_version(portal)
st.caption(f"Why {version.ref} answers what it does: SHAP attributions (each checked: base value + attributions = "
           "output) or LIME's local straight-line fits, over the portal's own predictions, cached.")
settings = settings_panel()
if settings is None:
    st.stop()
explanation_panels(portal, version, settings)
