"""Tabs that stay on the tab the user was on when an action reruns the page.

Plain ``st.tabs`` keep the open tab in the browser only: when a rerun puts an
element above them (a flash message after "Point alias" or "Revoke") the
browser draws them as new tabs, opened on the first one. Tabs with a ``key``
and ``on_change="rerun"`` report the open tab to the server, which sends it
back on every run. Streamlit identifies such tabs by their labels too, so a
label that counts something ("Versions (3)") would reopen the first tab when
the count changes: the open tab is also remembered by its position here, and
handed to the tabs through session state on every run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import streamlit as st

__all__ = ["kept_tabs"]


def kept_tabs(labels: Sequence[str], *, key: str) -> Sequence[Any]:
    """``st.tabs(labels)`` that reopen, after any rerun, the tab that was open (by label, else by position).

    Every tab's content is still rendered on every run; ``st.session_state[key]``
    holds the open tab's label, and setting it before this call opens that tab.
    """
    labels = list(labels)
    position_key = key + ".position"
    chosen = st.session_state.get(key)
    if chosen in labels:
        position = labels.index(chosen)
    else:  # a label changed (a count in it), or the tabs are new to this session
        position = min(int(st.session_state.get(position_key, 0)), len(labels) - 1)
    st.session_state[position_key] = position
    # Set on every run: tabs with other labels are another widget to Streamlit, which would open its first tab.
    st.session_state[key] = labels[position]
    return st.tabs(labels, key=key, on_change="rerun")
