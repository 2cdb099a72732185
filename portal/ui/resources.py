"""The process-wide ``Portal`` for Streamlit: the one ``@st.cache_resource`` in the app."""

from __future__ import annotations

import streamlit as st

from ..config import Settings
from ..core import Portal

__all__ = ["get_portal"]


def _close(portal: Portal) -> None:
    portal.close()


@st.cache_resource(show_spinner=False, on_release=_close)
def _open_portal(settings_key: str) -> Portal:
    # The key only makes the cache follow a changed environment (tests point
    # PORTAL_HOME elsewhere); one server process normally sees one settings value.
    del settings_key
    portal = Portal.open(settings=Settings.from_env())
    _start_warm_up()
    return portal


def _start_warm_up() -> None:
    """Pay one-off costs (torchvision import, shap's numba compilation) in the background at start."""
    import os
    import threading

    if os.environ.get("PORTAL_WARM_UP", "1") == "0":
        return
    from ..explain import warm_up_shap
    from ..serving.images import warm_up

    threading.Thread(target=warm_up, name="portal-torchvision-warm-up", daemon=True).start()
    warm_up_shap()


def get_portal() -> Portal:
    """The ``Portal`` (registry + session cache) shared by every browser session."""
    return _open_portal(repr(Settings.from_env()))
