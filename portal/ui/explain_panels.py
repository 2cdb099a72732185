"""The Explain page's panels: SHAP or LIME by the chosen method, one tab per question for a table.

The SHAP panels live in :mod:`.explain_shap_panels` and their LIME twins (same
names and arguments) in :mod:`.explain_lime_panels`; the widgets both share
(method, settings, data, run button) in :mod:`.explain_widgets`.
"""

from __future__ import annotations

from types import ModuleType

import streamlit as st

from .. import views
from ..core import Portal
from ..explain import ExplainSettings, warm_up_shap
from ..storage.registry import ModelVersion
from . import explain_lime_panels as lime_panels
from . import explain_shap_panels as shap_panels
from .explain_widgets import data_sources, settings_panel

__all__ = ["explanation_panels", "settings_panel", "warm_up_shap"]


def explanation_panels(portal: Portal, version: ModelVersion, settings: ExplainSettings) -> None:
    """The panels that fit the version's inputs: images, a table's tabs, or why raw tensors have none."""
    mode = views.input_mode(version)
    panels = lime_panels if settings.method == "lime" else shap_panels  # the same panels, by method
    if mode == "image":
        panels.image_panel(portal, version, settings)
    elif mode == "tabular":
        _tabular_tabs(portal, version, settings, panels)
    else:
        st.info(f"{version.ref} takes raw tensors; explanations need table columns or images.",
                icon=":material/info:")


def _tabular_tabs(portal: Portal, version: ModelVersion, settings: ExplainSettings, panels: ModuleType) -> None:
    sources = data_sources(portal, version)
    if sources is None:
        st.stop()
    rows, background = sources
    one, many, whatif, drift, agree = st.tabs(["One row", "Many rows", "What-if", "Variant drift", "SHAP vs LIME"])
    with one:
        panels.one_row_panel(portal, version, rows, background, settings)
    with many:
        panels.many_rows_panel(portal, version, rows, background, settings)
    with whatif:
        panels.whatif_panel(portal, version, rows, background, settings)
    with drift:
        shap_panels.drift_panel(portal, version, rows, background, settings)
    with agree:
        lime_panels.agreement_panel(portal, version, rows, background, settings)
