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

    def one_after_the_other() -> None:
        # torchvision, then shap: two threads importing big packages at once can meet in a circular
        # import, where Python hands one of them a half-initialised module (numba then lost its
        # math typing for the whole process: every SHAP run failed until a restart)
        try:
            warm_up()
        finally:
            warm_up_shap(wait=True)

    threading.Thread(target=one_after_the_other, name="portal-warm-up", daemon=True).start()


def get_portal() -> Portal:
    """The ``Portal`` (registry + session cache) shared by every browser session."""
    return _open_portal(repr(Settings.from_env()))
