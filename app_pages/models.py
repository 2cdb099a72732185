"""Models: search the registry; for one model its card, versions, aliases, edits, comparison."""

from __future__ import annotations

import streamlit as st

from portal import views
from portal.errors import PortalError
from portal.storage.export import export_zip, triton_config
from portal.ui import keys
from portal.ui.manage import aliases_panel, compare_panel, delete_panel, edit_panel, versions_panel, visibility_panel
from portal.ui.render import version_details, version_summary
from portal.ui.session import current_portal
from portal.ui.widgets import COLUMNS, listed_models, pick, picked_model, picked_ref, show_flash, shown_errors

portal = current_portal()
show_flash()
st.title("Models")

models = listed_models(portal)
if not models:
    st.info("No models yet. Drag a model file onto **Upload**, or load the demo models from **Home**.",
            icon=":material/lightbulb:")
    st.page_link("app_pages/upload.py", label="Upload a model", icon=":material/upload_file:")
    st.stop()


def open_selected_row() -> None:
    rows = st.session_state[keys.MODEL_TABLE].selection.rows
    names = st.session_state.get(keys.MODEL_TABLE_NAMES, [])
    if rows and rows[0] < len(names):
        pick(names[rows[0]])


cols = st.columns([3, 1])
query = cols[0].text_input("Search", placeholder="name, tag, task, alias or words of the description",
                           label_visibility="collapsed")
sort = cols[1].selectbox("Sort by", ["Name", "Last updated", "Most versions", "Largest"],
                         label_visibility="collapsed")
table = views.search_models(models, query, sort=sort)
st.session_state[keys.MODEL_TABLE_NAMES] = table["Model"].tolist()
st.dataframe(table, hide_index=True, width="stretch", column_config=COLUMNS, key=keys.MODEL_TABLE,
             on_select=open_selected_row, selection_mode="single-row")
st.caption(f"{len(table)} of {len(models)} models · click a row (or use the sidebar) to open a model · "
           "click a column header to sort")

name, ref = picked_model(), picked_ref()
model = next((m for m in models if m.name == name), None)
if model is None or ref is None:
    st.stop()
with shown_errors(stop=True):
    version = portal.get(ref)

st.divider()
st.header(name)
badges = [f":blue-badge[{model.task}]"] + [f":gray-badge[{tag}]" for tag in model.tags]
badges += [f":green-badge[@{a} → v{n}]" for a, n in model.aliases.items()]
st.markdown(" ".join(badges))
visibility_panel(portal, model)

overview, versions, aliases, edit, compare, delete = st.tabs(
    ["Overview", f"Versions ({len(model.versions)})", "Aliases", "Edit", "Compare", "Delete"]
)
with overview:
    left, right = st.columns([3, 2], gap="large")
    with left, st.container(border=True):
        st.markdown(views.demote_headings(model.description) if model.description
                    else "_No description yet: add a model card in the Edit tab._")
    with right:
        aliases_text = "".join(f" · @{a}" for a in version.aliases)
        st.markdown(f"#### Version {version.version}{aliases_text}")
        st.caption(f"Registered {version.created_at:%Y-%m-%d %H:%M} by {version.created_by or '?'}"
                   + (f" · variant of {version.parent} ({version.method})" if version.parent else ""))
        version_summary(version)
        st.download_button(
            "Download ONNX", data=lambda: portal.model_bytes(version),
            file_name=f"{version.name}-v{version.version}.onnx", mime="application/octet-stream",
            icon=":material/download:", on_click="ignore",
        )
        cols = st.columns([1, 2], vertical_alignment="bottom")
        fmt = cols[0].selectbox("Export for", ["Triton", "KServe"], key=f"export.format.{name}",
                                help="A Triton model repository (config.pbtxt + model.onnx); KServe adds an "
                                     "InferenceService manifest")
        try:
            triton_config(version)  # cheap: says whether Triton can serve it before anything is zipped
        except PortalError as exc:
            cols[1].caption(f"No {fmt} export: {exc.message}")
        else:
            cols[1].download_button(
                f"Download {fmt} export", data=lambda: export_zip(portal, version.ref, fmt=fmt.lower()),
                file_name=f"{version.name}-v{version.version}-{fmt.lower()}.zip", mime="application/zip",
                icon=":material/deployed_code:", on_click="ignore", key=f"export.download.{name}",
            )
    version_details(version)
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
