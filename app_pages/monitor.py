"""Monitor: traffic, latency, errors, cache use and input drift of the picked model, from the prediction log."""

from __future__ import annotations

import streamlit as st

from portal.monitor import stats as monitor
from portal.ui.monitor_panels import drift_panel, errors_panel, metric_tiles, pick_scope, pick_window, traffic_panel
from portal.ui.session import current_portal
from portal.ui.widgets import picked_version, show_flash, shown_errors

portal = current_portal()
show_flash()
st.title("Monitor")
version = picked_version(portal)
if portal.monitor is None:
    st.warning("The prediction log is off (`PORTAL_MONITOR=off`): new predictions are not recorded.",
               icon=":material/visibility_off:")
else:
    portal.monitor.flush()  # show the predictions of the last half second too

left, right = st.columns([3, 2])
with left:
    window = pick_window(portal)
with right:
    scope = pick_scope(version)
if window is None:
    st.stop()
with shown_errors(stop=True):
    summary = monitor.summarize(portal, version.name, scope, window)
if summary.empty:
    st.info(f"No predictions of {summary.label} in this time range yet. Predictions from the Predict page, "
            "`portal predict` and the REST API show up here as they happen.", icon=":material/monitoring:")
else:
    metric_tiles(summary)
    traffic_panel(summary)
    errors_panel(summary)
with shown_errors():
    drift_panel(portal, version, window)
