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

from portal.ui import get_portal
from portal.ui.widgets import model_picker

st.set_page_config(page_title="Model Portal", page_icon=":material/hub:", layout="wide")

pages = [
    st.Page("app_pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("app_pages/upload.py", title="Upload", icon=":material/upload_file:"),
    st.Page("app_pages/models.py", title="Models", icon=":material/inventory_2:"),
    st.Page("app_pages/predict.py", title="Predict", icon=":material/online_prediction:"),
    st.Page("app_pages/compare.py", title="Compare", icon=":material/compare_arrows:"),
    st.Page("app_pages/explain.py", title="Explain", icon=":material/psychology:"),
]
page = st.navigation(pages)

portal = get_portal()
with st.sidebar:
    model_picker(portal)
    st.caption(f"Store: `{portal.home}`")

page.run()
