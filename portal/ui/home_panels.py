"""Panels of the Home page: the empty-store welcome, store totals, quick actions, latest uploads, recent activity."""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from .. import views
from ..core import Portal
from ..storage.registry import ModelSummary
from .audit import visible_events
from .widgets import COLUMNS, flash, shown_errors

__all__ = ["DEMO_MODELS", "latest_uploads", "load_demo", "quick_actions", "recent_activity", "store_tiles",
           "welcome"]

DEMO_MODELS = frozenset({"breast-cancer", "diabetes", "digits", "wine"})


def load_demo(portal: Portal) -> None:
    """Build and register the demo models behind a live status, then rerun with a flash message."""
    with st.status("Building the demo models (about a minute)…", expanded=True) as status:
        with shown_errors(stop=True):
            added = portal.load_demo(progress=lambda name: st.write(f"Registering **{name}** …"))
        status.update(label="Demo models ready", state="complete", expanded=False)
    names = ", ".join(v.ref for v in added) or "nothing new (they were already there)"
    flash(f"Demo models loaded: {names}.")
    st.rerun()


def welcome(portal: Portal, upload_refused: str | None) -> None:
    """An empty store: where to upload, and the demo models for those who may upload."""
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
        load_demo(portal)


def store_tiles(models: Sequence[ModelSummary]) -> None:
    """Models, versions, aliases and stored bytes this user can see."""
    cols = st.columns(4)
    cols[0].metric("Models", len(models))  # the models this user can see
    cols[1].metric("Versions", sum(len(m.versions) for m in models))
    cols[2].metric("Aliases", sum(len(m.aliases) for m in models))
    cols[3].metric("Stored ONNX", views.format_bytes(sum(v.size_bytes for m in models for v in m.versions)))


def quick_actions(portal: Portal, models: Sequence[ModelSummary], upload_refused: str | None) -> None:
    """Links to Upload, Models and Predict; the demo models while some are missing."""
    cols = st.columns(4)
    cols[0].page_link("app_pages/upload.py", label="Upload a model", icon=":material/upload_file:")
    cols[1].page_link("app_pages/models.py", label="Browse models", icon=":material/inventory_2:")
    cols[2].page_link("app_pages/predict.py", label="Make predictions", icon=":material/online_prediction:")
    demo_missing = not DEMO_MODELS <= {m.name for m in models}
    if demo_missing and not upload_refused and cols[3].button("Load demo models", icon=":material/science:"):
        load_demo(portal)


def latest_uploads(models: Sequence[ModelSummary]) -> None:
    """The most recently registered versions across the models this user can see."""
    st.dataframe(views.latest_versions(models), hide_index=True, width="stretch", column_config=COLUMNS)


def recent_activity(portal: Portal, models: Sequence[ModelSummary]) -> None:
    """The last eight audit events this user may see (none: nothing shown)."""
    events = visible_events(portal.registry.audit_log(limit=200), models, everything=portal.can("admin"))[:8]
    if not events:
        return
    st.subheader("Recent activity")
    st.dataframe(
        [{"When": e.ts, "Who": e.actor, "What": e.action, "Target": e.target} for e in events],
        hide_index=True, width="stretch",
        column_config={"When": st.column_config.DatetimeColumn("When", format="YYYY-MM-DD HH:mm:ss")},
    )
