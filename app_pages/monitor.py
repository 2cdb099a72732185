"""Monitor: traffic, latency, errors, cache use and input drift of the picked model, from the prediction log."""

from __future__ import annotations

import streamlit as st

from portal.ui import current_portal, picked_version, show_flash, shown_errors
from portal.ui.monitor_panels import drift_panel, log_state, pick_scope, pick_window, summary_panels

portal = current_portal()
show_flash()
st.title("Monitor")
version = picked_version(portal)
log_state(portal)

left, right = st.columns([3, 2])
with left:
    window = pick_window(portal)
with right:
    scope = pick_scope(version)
if window is None:
    st.stop()
summary_panels(portal, version, scope, window)
with shown_errors():
    drift_panel(portal, version, window)
