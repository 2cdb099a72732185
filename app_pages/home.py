"""Home: what the portal holds, the latest uploads, and where to go next."""

from __future__ import annotations

import streamlit as st

from portal.ui import current_portal, listed_models, show_flash, why_not
from portal.ui.home_panels import latest_uploads, quick_actions, recent_activity, store_tiles, welcome

portal = current_portal()
show_flash()
st.title("Model Portal")
st.caption("Upload a model, look it up, and get predictions from it, all in the browser.")

models = listed_models(portal)
upload_refused = why_not(portal, "upload")
if not models:
    welcome(portal, upload_refused)
    st.stop()

store_tiles(models)
st.subheader("Quick actions")
quick_actions(portal, models, upload_refused)
st.subheader("Latest uploads")
latest_uploads(models)
recent_activity(portal, models)
