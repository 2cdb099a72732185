"""Upload: drop a model file, read the validation report, register it."""

from __future__ import annotations

import streamlit as st

from portal import views
from portal.errors import PortalError
from portal.ui import keys, staging
from portal.ui.render import validation_report
from portal.ui.roles import why_not
from portal.ui.session import current_portal
from portal.ui.widgets import listed_models, pick, show_flash, shown_errors

portal = current_portal()
show_flash()
st.title("Upload a model")
st.caption(
    f"ONNX (`.onnx`), PyTorch (`.pt2` from `torch.export`, TorchScript `.pt`) or scikit-learn (`.skops`), "
    f"up to {views.format_bytes(portal.settings.max_upload_bytes)}. The file is checked and converted in a "
    "sandbox before anything is registered; pickles are refused because loading one can run code."
)

refused = why_not(portal, "upload")
if refused:
    st.warning(refused, icon=":material/lock:")
    st.stop()

just_registered = st.session_state.pop(keys.REGISTERED, None)
if just_registered:
    st.success(f"Registered **{just_registered}**. It is selected in the sidebar.", icon=":material/check_circle:")
    cols = st.columns([1, 1, 3])
    cols[0].page_link("app_pages/models.py", label="Open in Models", icon=":material/inventory_2:")
    cols[1].page_link("app_pages/predict.py", label="Predict with it", icon=":material/online_prediction:")

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
    st.error(failure.message, icon=":material/block:")
    if not failure.needs_shape:
        st.stop()
    st.markdown("This PyTorch file does not say what input it takes. Give the shape of one example batch:")
    shape_text = st.text_input("Input shape", placeholder="1, 3, 224, 224", key=f"upload.shape.{token}",
                               help="Integers separated by commas, batch dimension first")
    if not st.button("Convert with this shape", type="primary", disabled=not shape_text):
        st.stop()
    with shown_errors(stop=True):
        shape = views.parse_shape(shape_text)
    staged = staging.prepare(portal, uploaded, token, input_shape=shape)
    if staged is None:
        st.rerun()

assert staged is not None
staging.show_stages(staged)
report = staged.model.report
st.subheader("Validation report")
validation_report(report)

st.subheader("Register")
name, metadata = staging.registration_fields(portal, staged)

cols = st.columns([1, 1, 4])
existing = next((m for m in listed_models(portal) if m.name == name), None)
name_refused = why_not(portal, "upload", existing) if existing is not None else None
register = cols[0].button("Register", type="primary", icon=":material/library_add:", disabled=bool(name_refused))
if name_refused:
    cols[2].caption(f"{name_refused} Choose another name.")
if cols[1].button("Cancel", icon=":material/delete:", help="Discard this upload"):
    staging.forget(portal)
    staging.new_uploader_key()
    st.rerun()

if register:
    with shown_errors(stop=True):
        views.check_registration(report, name, metadata)
    try:
        with st.status(f"Registering **{name}** …") as status:
            version = portal.register(staged.model, name, **metadata)
            status.update(label=f"Registered **{version.ref}**", state="complete")
    except PortalError as exc:
        st.session_state.pop(keys.STAGED, None)  # register() removed the staged files either way
        st.error(f"{exc.message} (drop the file again to retry)", icon=":material/block:")
        st.stop()
    st.session_state.pop(keys.STAGED, None)
    staging.new_uploader_key()
    st.session_state[keys.REGISTERED] = version.ref
    pick(version.name, f"v{version.version}")
    st.rerun()
