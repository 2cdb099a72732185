"""Widgets shared by the pages: the sidebar model picker, errors, flash messages."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import streamlit as st

from ..core import Portal
from ..errors import PortalError
from ..storage.registry import ModelSummary, ModelVersion
from ..views import FeatureField, variant_text
from . import keys

__all__ = [
    "COLUMNS",
    "feature_input",
    "result_columns",
    "flash",
    "latency_text",
    "listed_models",
    "model_picker",
    "pick",
    "picked_model",
    "picked_ref",
    "picked_version",
    "show_flash",
    "shown_errors",
    "version_key",
]

log = logging.getLogger("portal.ui")


def feature_input(field: FeatureField, key: str) -> None:
    """The input widget of one form field (Predict form, what-if editor), its value in ``key``."""
    if field.kind == "category":
        st.selectbox(field.name, field.options, key=key)
    elif field.kind == "text":
        st.text_input(field.name, key=key)
    elif field.kind == "boolean":
        st.checkbox(field.name, key=key)
    elif field.kind == "integer":
        st.number_input(field.name, step=1, key=key)
    else:
        st.number_input(field.name, step=None, format="%.6g", key=key)


LATEST = "latest"

# column formats shared by every table of models and versions
COLUMNS: dict[str, Any] = {
    "Size": st.column_config.NumberColumn("Size", format="bytes", help="Size of the ONNX file"),
    "Registered": st.column_config.DatetimeColumn("Registered", format="YYYY-MM-DD HH:mm"),
    "Updated": st.column_config.DatetimeColumn("Updated", format="YYYY-MM-DD HH:mm"),
    "Parameters": st.column_config.TextColumn("Parameters", help="Numbers stored as weight tensors (— when a "
                                              "converter keeps them in node attributes)"),
    "Description": st.column_config.TextColumn("Description", width="large"),
    "Tags": st.column_config.TextColumn("Tags", width="medium"),
    "Model": st.column_config.TextColumn("Model", width="medium"),
    "Aliases": st.column_config.TextColumn("Aliases", width=130),
}


def result_columns(frame: Any) -> dict[str, Any]:
    """Column formats for a results table: probabilities and confidence as percentages."""
    config = dict(COLUMNS)
    for column in frame.columns:
        name = str(column)
        if name.startswith("proba_") or name in ("confidence", "confidence_predicted"):
            config[name] = st.column_config.NumberColumn(name, format="percent")
    return config


# -- model picker ------------------------------------------------------------------
def pick(name: str, version: str = LATEST) -> None:
    """Ask the sidebar picker to show ``name`` (``version``: "latest", "@alias" or "v3").

    Applied on the next run, before the picker renders (a rendered widget's value
    cannot be changed); callers that are not callbacks follow it with ``st.rerun()``.
    """
    st.session_state[keys.PENDING_PICK] = (name, version)


def _version_choices(model: ModelSummary) -> list[str]:
    return [LATEST, *(f"@{a}" for a in model.aliases), *(f"v{v.version}" for v in model.versions)]


def _version_label(model: ModelSummary, choice: str) -> str:
    """``latest (v1)``, ``@fast (v3: int8-dynamic of iris:1)``, ``v3 (int8-dynamic of iris:1)``: variants say so."""
    numbers = {v.version: v for v in model.versions}
    if choice == LATEST:
        return f"latest (v{model.latest.version})" if model.latest else LATEST
    if choice.startswith("@"):
        number = model.aliases.get(choice[1:])
        target = numbers.get(number) if number is not None else None
        variant = f": {variant_text(target)}" if target is not None and target.is_variant else ""
        return f"{choice} (v{number if number is not None else '?'}{variant})"
    version = numbers.get(int(choice[1:])) if choice[1:].isdigit() else None
    return f"{choice} ({variant_text(version)})" if version is not None and version.is_variant else choice


def version_key(name: str) -> str:
    """Session-state key of the version picker shown for model ``name``."""
    return keys.VERSION + name


def _apply_pending(names: list[str]) -> None:
    pending = st.session_state.pop(keys.PENDING_PICK, None)
    if pending and pending[0] in names:
        st.session_state[keys.MODEL] = pending[0]
        st.session_state[version_key(pending[0])] = pending[1]


def listed_models(portal: Portal) -> list[ModelSummary]:
    """The registry's models as the sidebar listed them at the start of this run.

    Every page action that writes to the registry ends with ``st.rerun()``, so
    the list is never older than the run; it saves pages a second full listing.
    """
    models = st.session_state.get(keys.MODELS)
    return list(models) if models is not None else portal.list_models()


def model_picker(portal: Portal) -> ModelSummary | None:
    """Render the sidebar's model and version pickers; return the picked model."""
    listing = portal.list_models()
    st.session_state[keys.MODELS] = listing
    models = {m.name: m for m in listing}
    names = sorted(models, key=str.lower)
    _apply_pending(names)
    if not names:
        st.session_state.pop(keys.MODEL, None)
        st.caption("No models registered yet.")
        return None
    if st.session_state.get(keys.MODEL) not in models:
        st.session_state[keys.MODEL] = names[0]
    name = st.selectbox("Model", names, key=keys.MODEL, help="Used by the Models and Predict pages")
    model = models[name]
    choices = _version_choices(model)
    key = version_key(name)
    if st.session_state.get(key) not in choices:
        st.session_state[key] = LATEST
    # One widget per model: the browser would keep showing the old model's labels
    # if one keyed selectbox changed its options under an unchanged value.
    st.selectbox("Version", choices, key=key, format_func=lambda c: _version_label(model, c),
                 help="A version number, an alias, or the latest version: the newest upload (variants made by "
                      "Compare are picked by their number or an alias)")
    return model


def picked_model() -> str | None:
    """Name of the model picked in the sidebar."""
    return st.session_state.get(keys.MODEL)


def picked_ref() -> str | None:
    """The reference picked in the sidebar: ``name``, ``name:3`` or ``name@alias``."""
    name = picked_model()
    if not name:
        return None
    choice = st.session_state.get(version_key(name), LATEST)
    if choice.startswith("@"):
        return f"{name}{choice}"
    if choice.startswith("v"):
        return f"{name}:{choice[1:]}"
    return name


# -- messages ----------------------------------------------------------------------
def flash(text: str, *, kind: str = "success") -> None:
    """Show ``text`` at the top of the next run (after ``st.rerun()``)."""
    st.session_state[keys.FLASH] = (kind, text)


def show_flash() -> None:
    message = st.session_state.pop(keys.FLASH, None)
    if message:
        kind, text = message
        {"success": st.success, "info": st.info, "warning": st.warning}.get(kind, st.info)(text)


def picked_version(portal: Portal, *, title: str | None = None) -> ModelVersion:
    """The version picked in the sidebar; with nothing to pick, say how to get a model and stop the page.

    ``title`` is shown above that message (pages that title themselves after the version).
    """
    ref = picked_ref()
    if ref is None:
        if title:
            st.title(title)
        st.info("No models yet. Upload one, or load the demo models from **Home**, then pick it in the sidebar.",
                icon=":material/lightbulb:")
        st.page_link("app_pages/home.py", label="Home", icon=":material/home:")
        st.stop()
    with shown_errors(stop=True):
        return portal.get(ref)
    raise AssertionError("unreachable: shown_errors(stop=True) stops the page")


@contextlib.contextmanager
def shown_errors(*, stop: bool = False) -> Iterator[None]:
    """Show a failure of the block as an error box (never a traceback).

    A ``PortalError`` shows its message; anything else is logged with its
    traceback and shown as one line. With ``stop`` the page ends there.
    """
    try:
        yield
    except PortalError as exc:
        st.error(exc.message, icon=":material/error:")
        if stop:
            st.stop()
    except Exception as exc:  # the page must stay usable whatever a library raises
        log.exception("unexpected error in the portal UI")
        st.error(f"Unexpected error ({type(exc).__name__}): {exc}. The server log has the details.",
                 icon=":material/error:")
        if stop:
            st.stop()


def latency_text(seconds: float, rows: int) -> str:
    """``"3 rows in 4.2 ms (1.4 ms per row)"``."""
    per_row = f" ({seconds / rows * 1e3:.2f} ms per row)" if rows > 1 else ""
    return f"{rows:,} row{'s' if rows != 1 else ''} in {seconds * 1e3:.1f} ms{per_row}"
