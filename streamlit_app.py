"""Model Portal in the browser: page config, navigation and the shared sidebar.

Run with ``portal ui`` (or ``streamlit run streamlit_app.py``).

The pages live in ``app_pages/``, not ``pages/``: Streamlit treats a ``pages/``
folder next to the entry point as a v1 multipage app until ``st.navigation``
has run once in the process, so the first request for ``/upload`` after a
restart would skip this script (no page config, no sidebar), and AppTest
would never rerun this script after its first run.
"""

from __future__ import annotations

import streamlit as st

from portal.ui import get_portal, session
from portal.ui.widgets import model_picker

# The favicon is inline SVG: a ":material/...:" page icon makes the browser fetch it from
# fonts.gstatic.com, and the portal must work on a machine without internet access. (The
# icons inside the page come from the Material Symbols font that Streamlit serves itself.)
FAVICON = """<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" fill="#2563eb" stroke="#2563eb">
<circle cx="12" cy="12" r="4"/><circle cx="12" cy="3.5" r="2.5"/><circle cx="4.5" cy="18" r="2.5"/>
<circle cx="19.5" cy="18" r="2.5"/><path d="M12 6v3M6.5 16.8l2.6-1.6M17.5 16.8l-2.6-1.6" stroke-width="2"/></svg>"""

st.set_page_config(page_title="Model Portal", page_icon=FAVICON, layout="wide")

portal = get_portal()
access = session.check(portal)  # every run: expiry, and a disabled or deleted user is signed out here
admin = access.mode == "off" or getattr(access.user, "role", "") == "admin"

pages = [
    st.Page("app_pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("app_pages/upload.py", title="Upload", icon=":material/upload_file:"),
    st.Page("app_pages/models.py", title="Models", icon=":material/inventory_2:"),
    st.Page("app_pages/predict.py", title="Predict", icon=":material/online_prediction:"),
    st.Page("app_pages/compare.py", title="Compare", icon=":material/compare_arrows:"),
    st.Page("app_pages/explain.py", title="Explain", icon=":material/psychology:"),
    st.Page("app_pages/monitor.py", title="Monitor", icon=":material/monitoring:"),
    # listed for admins only; anyone else who opens /admin gets the page's refusal
    st.Page("app_pages/admin.py", title="Admin", icon=":material/admin_panel_settings:",
            visibility="visible" if admin else "hidden"),
]
page = st.navigation(pages, position="sidebar" if access.allowed else "hidden")

if not access.allowed:
    session.sign_in_page(portal, first_admin=access.mode == "first-admin")
    st.stop()

scoped = session.current_portal()
with st.sidebar:
    session.sidebar(access)
    model_picker(scoped)
    if admin:  # where the files live on the server is for whoever runs the portal
        st.caption(f"Store: `{portal.home}`")

page.run()
