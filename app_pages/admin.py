"""Admin: users, API tokens and the audit log (admins only; every change is audited)."""

from __future__ import annotations

import streamlit as st

from portal.ui import current_portal, show_flash, why_not
from portal.ui.admin_panels import admin_tabs

portal = current_portal()
show_flash()
st.title("Admin")
refused = why_not(portal, "admin")
if refused:
    st.error(f"The Admin page is for admins. {refused}", icon=":material/block:")
    st.stop()
st.caption("Users of the portal and the REST API, their API tokens, and the audit trail of every change.")
admin_tabs(portal)
