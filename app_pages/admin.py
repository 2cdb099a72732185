"""Admin: users, API tokens and the audit log (admins only; every change is audited)."""

from __future__ import annotations

import streamlit as st

from portal.ui import keys
from portal.ui.admin_panels import audit_panel, tokens_panel, users_panel
from portal.ui.roles import why_not
from portal.ui.session import auth, current_portal
from portal.ui.widgets import show_flash

portal = current_portal()
show_flash()
st.title("Admin")
refused = why_not(portal, "admin")
if refused:
    st.error(f"The Admin page is for admins. {refused}", icon=":material/block:")
    st.stop()
st.caption("Users of the portal and the REST API, their API tokens, and the audit trail of every change.")

store = auth(portal)
actor = portal.user or portal.actor  # the admin, checked again by the library on every change
users, tokens, audit = st.tabs(["Users", "API tokens", "Audit log"])
with users:
    users_panel(store, actor)
with tokens:
    tokens_panel(store, actor, st.session_state.get(keys.NEW_SECRET))
with audit:
    audit_panel(portal)
