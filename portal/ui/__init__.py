"""Streamlit-facing helpers: the only modules in ``portal`` that import streamlit.

``get_portal`` is the app's one ``@st.cache_resource``; ``keys`` names every
session-state key; ``widgets`` and ``render`` are shared by the pages.
"""

from __future__ import annotations

from . import keys
from .resources import get_portal

__all__ = ["get_portal", "keys"]
