"""Compare: compressed variants of a version side by side, with advice and one-click promote."""

from __future__ import annotations

import streamlit as st

from portal.ui import current_portal, picked_version, show_flash
from portal.ui.compare_panels import (
    flipped_rows_panel,
    graph_diff_panel,
    lineage_header,
    new_comparison_panel,
    picked_comparison,
    promote_panel,
    results_panel,
    why_panel,
)

portal = current_portal()
show_flash()
st.title("Compare compressed variants")
st.caption("Can this model be served smaller or faster without changing its answers? Create int8 (also within an "
           "accuracy budget), fp16, pruned, optimized and distilled variants, measure them on the same rows, see "
           "what each changed in the graph, and promote the one that fits (past an evaluation gate if you set one).")

version = picked_version(portal)
lineage_header(portal, version)
with st.container(border=True):
    new_comparison_panel(portal, version)

comparison, tolerance = picked_comparison(portal, version)
results_panel(comparison, tolerance)
st.subheader("Why")
why_panel(comparison)
flipped_rows_panel(portal, version, comparison)
st.subheader("Graph diff")
graph_diff_panel(portal, version, comparison)
st.subheader("Promote")
promote_panel(portal, version, comparison)
