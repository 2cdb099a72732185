"""Upload: drop a model file, read the validation report, register it."""

from __future__ import annotations

import streamlit as st

from portal.ui import current_portal, show_flash, why_not
from portal.ui.upload_panels import intro, register_panel, registered_notice, report_panel, staged_upload

portal = current_portal()
show_flash()
st.title("Upload a model")
intro(portal)

refused = why_not(portal, "upload")
if refused:
    st.warning(refused, icon=":material/lock:")
    st.stop()

registered_notice()
staged = staged_upload(portal)
report_panel(staged)
st.subheader("Register")
register_panel(portal, staged)
