"""Predict: the input mode follows the picked version's signature."""

from __future__ import annotations

import streamlit as st

from portal import views
from portal.ui.predict_panels import batch_panel, form_panel, image_panel, tensor_panel
from portal.ui.session import current_portal
from portal.ui.widgets import picked_version, show_flash

portal = current_portal()
show_flash()
version = picked_version(portal, title="Predict")
mode = views.input_mode(version)

st.title(f"Predict with {version.ref}")
details = [version.task, f"{len(version.signature['inputs'])} input(s)", views.format_bytes(version.size_bytes)]
if version.aliases:
    details.append(", ".join(f"@{a}" for a in version.aliases))
st.caption(" · ".join(details) + " · pick another model or version in the sidebar")

if mode == "image":
    image_panel(portal, version)
elif mode == "tabular":
    form_tab, batch_tab = st.tabs(["Form", "Batch file"])
    with form_tab:
        form_panel(portal, version)
    with batch_tab:
        batch_panel(portal, version)
else:
    tensor_panel(portal, version)
