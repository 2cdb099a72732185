"""Predict: the input mode follows the picked version's signature."""

from __future__ import annotations

import streamlit as st

from portal.ui import current_portal, picked_version, show_flash
from portal.ui.predict_panels import batch_panel, form_panel, image_panel, input_mode, tensor_panel, version_header

portal = current_portal()
show_flash()
version = picked_version(portal, title="Predict")
mode = input_mode(version)
version_header(version)

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
