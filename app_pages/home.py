"""Home: what the portal holds, the latest uploads, and where to go next."""

from __future__ import annotations

import streamlit as st

from portal import views
from portal.ui.audit import visible_events
from portal.ui.roles import why_not
from portal.ui.session import current_portal
from portal.ui.widgets import COLUMNS, flash, listed_models, show_flash, shown_errors

portal = current_portal()
show_flash()
st.title("Model Portal")
st.caption("Upload a model, look it up, and get predictions from it, all in the browser.")


def load_demo() -> None:
    with st.status("Building the demo models (about a minute)…", expanded=True) as status:
        with shown_errors(stop=True):
            added = portal.load_demo(progress=lambda name: st.write(f"Registering **{name}** …"))
        status.update(label="Demo models ready", state="complete", expanded=False)
    names = ", ".join(v.ref for v in added) or "nothing new (they were already there)"
    flash(f"Demo models loaded: {names}.")
    st.rerun()


models = listed_models(portal)
upload_refused = why_not(portal, "upload")
if not models:
    st.info(
        "**No models yet.** Drag an `.onnx`, `.pt2`, TorchScript or `.skops` file onto **Upload**, "
        "or load the demo models (breast cancer, diabetes, digits and wine, trained here in seconds).",
        icon=":material/lightbulb:",
    )
    cols = st.columns([1, 1, 3])
    cols[0].page_link("app_pages/upload.py", label="Upload a model", icon=":material/upload_file:")
    if upload_refused:
        st.caption(upload_refused)
    elif cols[1].button("Load demo models", type="primary", icon=":material/science:"):
        load_demo()
    st.stop()

cols = st.columns(4)
cols[0].metric("Models", len(models))  # the models this user can see
cols[1].metric("Versions", sum(len(m.versions) for m in models))
cols[2].metric("Aliases", sum(len(m.aliases) for m in models))
cols[3].metric("Stored ONNX", views.format_bytes(sum(v.size_bytes for m in models for v in m.versions)))

st.subheader("Quick actions")
cols = st.columns(4)
cols[0].page_link("app_pages/upload.py", label="Upload a model", icon=":material/upload_file:")
cols[1].page_link("app_pages/models.py", label="Browse models", icon=":material/inventory_2:")
cols[2].page_link("app_pages/predict.py", label="Make predictions", icon=":material/online_prediction:")
demo_missing = not {"breast-cancer", "diabetes", "digits", "wine"} <= {m.name for m in models}
if demo_missing and not upload_refused and cols[3].button("Load demo models", icon=":material/science:"):
    load_demo()

st.subheader("Latest uploads")
st.dataframe(views.latest_versions(models), hide_index=True, width="stretch", column_config=COLUMNS)

events = visible_events(portal.registry.audit_log(limit=200), models, everything=portal.can("admin"))[:8]
if events:
    st.subheader("Recent activity")
    st.dataframe(
        [{"When": e.ts, "Who": e.actor, "What": e.action, "Target": e.target} for e in events],
        hide_index=True, width="stretch",
        column_config={"When": st.column_config.DatetimeColumn("When", format="YYYY-MM-DD HH:mm:ss")},
    )
