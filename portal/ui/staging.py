"""The upload page's state: one staged upload per browser session, kept across reruns.

A file the uploader holds is checked once (in the sandbox); the resulting
``StagedModel`` waits in session state until the user registers or cancels it,
and a refusal is remembered so a rerun does not check the same bytes again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from .. import views
from ..core import Portal, StagedModel
from ..core.registering import is_generic_name
from ..errors import InputShapeRequiredError, PortalError
from ..ingest.metadata import infer_task
from ..storage.registry import TASKS
from . import keys

__all__ = [
    "Failure",
    "Staged",
    "failure_for",
    "forget",
    "new_uploader_key",
    "prepare",
    "registration_fields",
    "show_stages",
    "stage_text",
    "staged_for",
    "uploader_key",
]

log = logging.getLogger("portal.ui")

_STAGE_TEXT = {
    "received": "Received the file",
    "validated": "Validated in the sandbox",
    "converted": "Converted to ONNX",
    "loaded": "Loaded in onnxruntime and ran once on synthetic input",
    "registered": "Registered",
}


@dataclass
class Staged:
    """A checked upload and the stages it went through."""

    token: str
    model: StagedModel
    stages: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Failure:
    """Why the upload with ``token`` was refused."""

    token: str
    message: str
    needs_shape: bool = False


def stage_text(stage: str) -> str:
    return _STAGE_TEXT.get(stage, stage.replace("_", " ").capitalize())


def uploader_key() -> str:
    return f"{keys.UPLOAD_FILE}{st.session_state.setdefault(keys.UPLOAD_NONCE, 0)}"


def new_uploader_key() -> None:
    """Give the file uploader a fresh key, so it renders empty on the next run."""
    st.session_state[keys.UPLOAD_NONCE] = st.session_state.get(keys.UPLOAD_NONCE, 0) + 1


def staged_for(token: str) -> Staged | None:
    staged = st.session_state.get(keys.STAGED)
    return staged if staged is not None and staged.token == token else None


def failure_for(token: str) -> Failure | None:
    failure = st.session_state.get(keys.UPLOAD_FAILURE)
    return failure if failure is not None and failure.token == token else None


def forget(portal: Portal, *, keep: str | None = None) -> None:
    """Discard the staged upload and the remembered refusal, unless they belong to ``keep``."""
    staged = st.session_state.get(keys.STAGED)
    if staged is not None and staged.token != keep:
        portal.discard(staged.model)
        del st.session_state[keys.STAGED]
    failure = st.session_state.get(keys.UPLOAD_FAILURE)
    if failure is not None and failure.token != keep:
        del st.session_state[keys.UPLOAD_FAILURE]


def prepare(portal: Portal, uploaded: Any, token: str, *, input_shape: Sequence[int] | None = None) -> Staged | None:
    """Check ``uploaded`` in the sandbox with a live stage list; remember the outcome."""
    stages: list[str] = []

    def progress(stage: str) -> None:
        text = stage_text(stage)
        if stage == "received":
            text += f" ({views.format_bytes(uploaded.size)})"
        stages.append(text)
        st.write(f":material/check: {text}")

    failure: Failure | None = None
    box = st.empty()  # the live check; on success it gives way to show_stages' summary (one "passed" line)
    with box.status(f"Checking **{uploaded.name}** …", expanded=True) as status:
        try:
            uploaded.seek(0)
            model = portal.prepare(uploaded, filename=uploaded.name, input_shape=input_shape, progress=progress)
        except InputShapeRequiredError as exc:
            failure = Failure(token, exc.message, needs_shape=True)
        except PortalError as exc:
            failure = Failure(token, exc.message)
        except Exception as exc:  # a refusal must read as a message, whatever went wrong
            log.exception("unexpected error while checking an upload")
            failure = Failure(token, f"Unexpected error while checking the file ({type(exc).__name__}): {exc}")
        if failure is not None:
            status.update(label=f"**{uploaded.name}** was refused", state="error", expanded=False)
            st.session_state[keys.UPLOAD_FAILURE] = failure
            return None
    box.empty()
    staged = Staged(token, model, stages)
    st.session_state[keys.STAGED] = staged
    st.session_state.pop(keys.UPLOAD_FAILURE, None)
    return staged


def show_stages(staged: Staged) -> None:
    """The finished stage list of a staged upload (collapsed)."""
    with st.status(f"**{staged.model.filename}** passed every check", state="complete", expanded=False):
        for text in staged.stages:
            st.write(f":material/check: {text}")


def _names_area(col: Any, label: str, values: list[str] | None, key: str, help_text: str,
                signature: dict[str, Any], kind: str) -> list[str]:
    """A text area of names with a live count checked against the signature."""
    text = col.text_area(label, value="\n".join(values or []), key=key, height=150, help=help_text)
    names = views.parse_list(text)
    note, fits = views.names_note(names, signature, kind=kind)
    col.caption(note if fits else f":orange[{note}]")
    return names


def registration_fields(portal: Portal, staged: Staged) -> tuple[str, dict[str, Any]]:
    """The name and metadata fields of a staged upload, prefilled from what ingest found."""
    suggested, report = staged.model.suggested, staged.model.report
    field = f"upload.{staged.token}."
    default = suggested.get("name") or views.suggest_name(staged.model.filename)
    generic = is_generic_name(default)
    name = st.text_input("Name", value="" if generic else default, key=field + "name",
                         placeholder="e.g. churn-classifier" if generic else None,
                         help="Letters, digits, '.', '_' or '-'. An existing name gets a new version.")
    if generic and not name.strip():
        st.info(f"The file is called **{staged.model.filename}**, which says nothing about the model: "
                "type a name that does (it names every version, alias and URL of the model).",
                icon=":material/edit:")
    if name in {m.name for m in portal.list_models()}:
        st.info(f"**{name}** exists: this upload becomes its next version (the earlier versions stay).",
                icon=":material/info:")
    description = st.text_area("Description (markdown; shown as the model card)", height=120,
                               value=suggested.get("description", ""), key=field + "description")
    cols = st.columns(2)
    tags = cols[0].text_input("Tags", value=", ".join(suggested.get("tags") or []), key=field + "tags",
                              placeholder="churn, tabular, production-candidate", help="Comma separated")
    task = suggested.get("task") or infer_task(report.info)
    task = cols[1].selectbox("Task", TASKS, index=TASKS.index(task if task in TASKS else "other"), key=field + "task")
    cols = st.columns(2)
    signature = report.info["signature"]
    features = _names_area(cols[0], "Feature names", suggested.get("feature_names"), field + "features",
                           "One per line or comma separated, in the order the model takes them", signature, "features")
    labels = _names_area(cols[1], "Class labels", suggested.get("class_labels"), field + "labels",
                         "One per line or comma separated, in the order of the model's scores", signature, "labels")
    return name, {
        "description": description.strip() or None,
        "tags": views.parse_list(tags) or None,
        "task": task,
        "feature_names": features or None,
        "class_labels": labels or None,
    }
