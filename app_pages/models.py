"""Models: search the registry; for one model its card, versions, aliases, edits, comparison."""

from __future__ import annotations

import streamlit as st

from portal.ui import current_portal, kept_tabs, keys, listed_models, show_flash
from portal.ui.models_panels import (
    aliases_panel,
    compare_panel,
    delete_panel,
    edit_panel,
    model_header,
    model_table,
    no_models,
    opened_model,
    overview_panel,
    versions_panel,
)

portal = current_portal()
show_flash()
st.title("Models")

models = listed_models(portal)
if not models:
    no_models()
    st.stop()

model_table(models)
model, version = opened_model(portal, models)

st.divider()
model_header(portal, model)
overview, versions, aliases, edit, compare, delete = kept_tabs(
    ["Overview", f"Versions ({len(model.versions)})", "Aliases", "Edit", "Compare", "Delete"], key=keys.MODELS_TAB
)
with overview:
    overview_panel(portal, model, version)
with versions:
    versions_panel(portal, model)
with aliases:
    aliases_panel(portal, model)
with edit:
    edit_panel(portal, model, version)
with compare:
    compare_panel(portal, model)
with delete:
    delete_panel(portal, model, version)
