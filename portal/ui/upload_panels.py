"""Panels of the Upload page: what may be uploaded, the uploader, the validation report, the registration form.

The checked upload waits in session state between reruns (:mod:`.staging`)
until the user registers or cancels it.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from .. import views
from ..core import Portal
from ..errors import InvalidInputError, PortalError
from . import keys, staging
from .image_settings import registration_image_settings
from .reference_data import reference_upload
from .render import validation_report
from .roles import why_not
from .staging import Failure, Staged
from .widgets import listed_models, pick, shown_errors

__all__ = ["intro", "registered_notice", "register_panel", "report_panel", "staged_upload"]


def intro(portal: Portal) -> None:
    """The formats and size limit the portal takes, and why pickles are refused."""
    st.caption(
        f"ONNX (`.onnx`), PyTorch (`.pt2` from `torch.export`, TorchScript `.pt`) or scikit-learn (`.skops`), "
        f"up to {views.format_bytes(portal.settings.max_upload_bytes)}. The file is checked and converted in a "
        "sandbox before anything is registered; pickles are refused because loading one can run code."
    )


def registered_notice() -> None:
    """Once, after a registration: what was registered and where to go with it."""
    just_registered = st.session_state.pop(keys.REGISTERED, None)
    if just_registered:
        st.success(f"Registered **{just_registered}**. It is selected in the sidebar.",
                   icon=":material/check_circle:")
        cols = st.columns([1, 1, 3])
        cols[0].page_link("app_pages/models.py", label="Open in Models", icon=":material/inventory_2:")
        cols[1].page_link("app_pages/predict.py", label="Predict with it", icon=":material/online_prediction:")


def staged_upload(portal: Portal) -> Staged:
    """The dropped file, checked once in the sandbox; the page stops while there is none (or it was refused)."""
    uploaded = st.file_uploader("Drag and drop a model file here", key=staging.uploader_key(),
                                max_upload_size=max(1, portal.settings.max_upload_bytes // 1024**2),
                                help="Formats are recognised by content, not by the file name.")
    if uploaded is None:
        staging.forget(portal)
        st.stop()
    token = uploaded.file_id
    staging.forget(portal, keep=token)
    staged = staging.staged_for(token)
    failure = staging.failure_for(token)
    if staged is None and failure is None:
        staged = staging.prepare(portal, uploaded, token)
        failure = staging.failure_for(token)
    if failure is not None:
        staged = _retry_with_shape(portal, uploaded, failure)
    assert staged is not None
    return staged


def _retry_with_shape(portal: Portal, uploaded: Any, failure: Failure) -> Staged:
    """Show the refusal; a PyTorch file without an input shape is converted again with the shape typed here."""
    st.error(failure.message, icon=":material/block:")
    if not failure.needs_shape:
        st.stop()
    st.markdown("This PyTorch file does not say what input it takes. Give the shape of one example batch:")
    shape_text = st.text_input("Input shape", placeholder="1, 3, 224, 224", key=f"upload.shape.{failure.token}",
                               help="Integers separated by commas, batch dimension first")
    if not st.button("Convert with this shape", type="primary", disabled=not shape_text):
        st.stop()
    with shown_errors(stop=True):
        shape = views.parse_shape(shape_text)
    staged = staging.prepare(portal, uploaded, failure.token, input_shape=shape)
    if staged is None:
        st.rerun()
    assert staged is not None
    return staged


def report_panel(staged: Staged) -> None:
    """The stages the upload went through and what ingest found."""
    staging.show_stages(staged)
    st.subheader("Validation report")
    validation_report(staged.model.report)


def register_panel(portal: Portal, staged: Staged) -> None:
    """The name and metadata form, Register and Cancel; registering selects the new version in the sidebar."""
    name, metadata = staging.registration_fields(portal, staged)
    metadata = registration_image_settings(staged.model.report, metadata, key=f"upload.{staged.token}.image.")
    reference = reference_upload(staged.model.report.info["signature"], metadata.get("preprocessing"),
                                             key=f"upload.{staged.token}.reference")
    cols = st.columns([1, 1, 4])
    existing = next((m for m in listed_models(portal) if m.name == name), None)
    name_refused = why_not(portal, "upload", existing) if existing is not None else None
    register = cols[0].button("Register", type="primary", icon=":material/library_add:",
                              disabled=bool(name_refused) or not name.strip())
    if name_refused:
        cols[2].caption(f"{name_refused} Choose another name.")
    if cols[1].button("Cancel", icon=":material/delete:", help="Discard this upload"):
        staging.forget(portal)
        staging.new_uploader_key()
        st.rerun()
    if register:
        _register(portal, staged, name, metadata, reference)


def _register(portal: Portal, staged: Staged, name: str, metadata: dict[str, Any], reference: Any) -> None:
    with shown_errors(stop=True):
        views.check_registration(staged.model.report, name, metadata)
    try:
        with st.status(f"Registering **{name}** …") as status:
            version = portal.register(staged.model, name, reference=reference, **metadata)
            status.update(label=f"Registered **{version.ref}**", state="complete")
    except InvalidInputError as exc:  # a refused name or reference data: the upload stays staged to fix and retry
        st.error(exc.message, icon=":material/block:")
        st.stop()
    except PortalError as exc:
        st.session_state.pop(keys.STAGED, None)  # register() removed the staged files either way
        st.error(f"{exc.message} (drop the file again to retry)", icon=":material/block:")
        st.stop()
    st.session_state.pop(keys.STAGED, None)
    staging.new_uploader_key()
    st.session_state[keys.REGISTERED] = version.ref
    pick(version.name, f"v{version.version}")
    st.rerun()
