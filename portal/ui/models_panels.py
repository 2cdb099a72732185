"""Panels of the Models page: the search table, then for one model its card, versions, aliases, edits, comparison.

Every action re-checks with :func:`.roles.why_not` before it is offered; the
library refuses it again if a page is bypassed.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import streamlit as st

from .. import figures, views
from ..core import Portal
from ..errors import PortalError
from ..storage.export import export_zip, triton_config
from ..storage.refs import ModelRef
from ..storage.registry import TASKS, ModelSummary, ModelVersion
from . import keys
from .gate_panels import gate_notice, override_checkbox
from .image_settings import image_settings_panel
from .reference_data import reference_data_panel
from .render import chart, version_details, version_summary
from .roles import why_not
from .widgets import COLUMNS, flash, pick, picked_model, picked_ref, shown_errors

__all__ = [
    "aliases_panel",
    "compare_panel",
    "delete_panel",
    "edit_panel",
    "model_header",
    "model_table",
    "no_models",
    "opened_model",
    "overview_panel",
    "versions_panel",
    "visibility_panel",
]

_KEEP = "keep"
_REMOVE = "remove"


# -- the registry's models ------------------------------------------------------------
def no_models() -> None:
    """An empty registry (for this user): where models come from."""
    st.info("No models yet. Drag a model file onto **Upload**, or load the demo models from **Home**.",
            icon=":material/lightbulb:")
    st.page_link("app_pages/upload.py", label="Upload a model", icon=":material/upload_file:")


def _open_selected_row() -> None:
    rows = st.session_state[keys.MODEL_TABLE].selection.rows
    names = st.session_state.get(keys.MODEL_TABLE_NAMES, [])
    if rows and rows[0] < len(names):
        pick(names[rows[0]])


def model_table(models: Sequence[ModelSummary]) -> None:
    """Search and sort the models; clicking a row opens that model."""
    cols = st.columns([3, 1])
    query = cols[0].text_input("Search", placeholder="name, tag, task, alias or words of the description",
                               label_visibility="collapsed")
    sort = cols[1].selectbox("Sort by", ["Name", "Last updated", "Most versions", "Largest"],
                             label_visibility="collapsed")
    table = views.search_models(models, query, sort=sort)
    st.session_state[keys.MODEL_TABLE_NAMES] = table["Model"].tolist()
    st.dataframe(table, hide_index=True, width="stretch", column_config=COLUMNS, key=keys.MODEL_TABLE,
                 on_select=_open_selected_row, selection_mode="single-row")
    st.caption(f"{len(table)} of {len(models)} models · click a row (or use the sidebar) to open a model · "
               "click a column header to sort")


def opened_model(portal: Portal, models: Sequence[ModelSummary]) -> tuple[ModelSummary, ModelVersion]:
    """The model and version picked in the sidebar; the page stops when none is."""
    name, ref = picked_model(), picked_ref()
    model = next((m for m in models if m.name == name), None)
    if model is None or ref is None:
        st.stop()
    with shown_errors(stop=True):
        return model, portal.get(ref)
    raise AssertionError("unreachable: shown_errors(stop=True) stops the page")


# -- one model -------------------------------------------------------------------------
def model_header(portal: Portal, model: ModelSummary) -> None:
    """The model's name, task, tags and aliases, its owner and visibility."""
    st.header(model.name)
    badges = [f":blue-badge[{model.task}]"] + [f":gray-badge[{tag}]" for tag in model.tags]
    badges += [f":green-badge[@{a} → v{n}]" for a, n in model.aliases.items()]
    st.markdown(" ".join(badges))
    visibility_panel(portal, model)


def overview_panel(portal: Portal, model: ModelSummary, version: ModelVersion) -> None:
    """The model card beside the version's facts and downloads; the version's signature below."""
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
        _export(portal, model.name, version)
    version_details(version)


def _export(portal: Portal, name: str, version: ModelVersion) -> None:
    """A Triton or KServe export of the version, zipped when downloaded; or why Triton cannot serve it."""
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


# -- tabs of one model -----------------------------------------------------------------
def _open_ref(ref: str) -> None:
    parsed = ModelRef.parse(ref)
    pick(parsed.name, f"v{parsed.version}" if parsed.version else "latest")


def versions_panel(portal: Portal, model: ModelSummary) -> None:
    """Every version with its aliases, parent and variants; buttons to open the linked ones."""
    variants = {v.ref: portal.registry.dependents(v.ref) for v in model.versions}
    st.dataframe(views.versions_frame(model, variants), hide_index=True, width="stretch", column_config=COLUMNS)
    links = sorted({v.parent for v in model.versions if v.parent} | {r for refs in variants.values() for r in refs})
    if links:
        st.caption("Parents and variants:")
        cols = st.columns(min(len(links), 6))
        for i, ref in enumerate(links):
            cols[i % len(cols)].button(f"Open {ref}", key=f"link.{ref}", on_click=_open_ref, args=(ref,),
                                       icon=":material/call_split:")


def _alias_row(portal: Portal, model: ModelSummary, alias: str, number: int, *, editable: bool) -> None:
    """One alias: where it points, a rollback to where it pointed before, and removal."""
    events = portal.registry.audit_log(action="alias.set", target=f"{model.name}@{alias}", limit=1)
    previous = views.previous_alias_target(events)
    can_roll_back = previous is not None and previous != number and previous in {v.version for v in model.versions}
    cols = st.columns([2, 2, 2, 4], vertical_alignment="center")
    cols[0].markdown(f"**@{alias}** → v{number}")
    if not editable:
        return
    if can_roll_back and cols[1].button(f"Roll back to v{previous}", key=f"rollback.{alias}", icon=":material/undo:"):
        with shown_errors(stop=True):
            portal.set_alias(f"{model.name}:{previous}", alias)
        flash(f"@{alias} moved back from v{number} to v{previous}.")
        st.rerun()
    if cols[2].button("Remove", key=f"unalias.{alias}", icon=":material/link_off:"):
        with shown_errors(stop=True):
            portal.remove_alias(model.name, alias)
        flash(f"Removed @{alias} (it pointed at v{number}).")
        st.rerun()


def aliases_panel(portal: Portal, model: ModelSummary) -> None:
    """Point an alias at a version (promote), move it back (rollback) or remove it."""
    numbers = [v.version for v in model.versions]
    refused = why_not(portal, "alias", model)
    for alias, number in model.aliases.items():
        _alias_row(portal, model, alias, number, editable=refused is None)
    if not model.aliases:
        st.caption("No aliases yet. An alias such as `production` gives callers a stable name to use.")
    if refused:
        st.caption(f":material/lock: {refused}")
        return
    st.markdown("**Point an alias at a version**")
    cols = st.columns([2, 2, 1], vertical_alignment="bottom")
    alias = cols[0].text_input("Alias", value="production", help="Letters, digits, '_' or '-'",
                               key=f"alias.name.{model.name}")
    number = cols[1].selectbox("Version", numbers, format_func=lambda n: f"v{n}", key=f"alias.version.{model.name}")
    # a variant's evaluation gate is shown before the button; a failed one needs an explicit override
    stored = gate_notice(portal, f"{model.name}:{number}")
    gated = stored is not None and not stored.result.passed
    override = override_checkbox(model.name) if gated else False
    if cols[2].button("Point alias", type="primary", icon=":material/rocket_launch:", disabled=gated and not override,
                      help="Tick the override first: this variant failed its evaluation gate" if gated else None):
        with shown_errors(stop=True):
            portal.set_alias(f"{model.name}:{number}", alias.strip(), override_gate=override)
        flash(f"@{alias.strip()} now points at {model.name}:{number}" + (" (its failed evaluation gate overridden)."
                                                                           if override else "."))
        st.rerun()


def edit_panel(portal: Portal, model: ModelSummary, version: ModelVersion) -> None:
    """Edit the model's card, tags and task, and the version's names."""
    refused = why_not(portal, "edit", model)
    if refused:
        st.caption(f":material/lock: {refused}")
        return
    with st.form(f"edit.{version.ref}"):
        description = st.text_area("Description (markdown model card)", value=model.description, height=220)
        cols = st.columns(2)
        tags = cols[0].text_input("Tags", value=", ".join(model.tags), help="Comma separated")
        task = cols[1].selectbox("Task", TASKS, index=TASKS.index(model.task) if model.task in TASKS else 2)
        st.markdown(f"**Version {version.version}**")
        cols = st.columns(2)
        features = cols[0].text_area("Feature names", value="\n".join(version.feature_names or []), height=150)
        labels = cols[1].text_area("Class labels", value="\n".join(version.class_labels or []), height=150)
        notes = st.text_input("Notes on this version", value=str(version.meta.get("notes") or ""))
        saved = st.form_submit_button("Save changes", type="primary", icon=":material/save:")
    if saved:
        feature_names, class_labels = views.parse_list(features) or None, views.parse_list(labels) or None
        with shown_errors(stop=True):
            views.check_version_edit(version, feature_names, class_labels)
            portal.update_model(model.name, description=description, tags=views.parse_list(tags), task=task)
            portal.update_version(version.ref, feature_names=feature_names, class_labels=class_labels,
                                  notes=notes.strip() or None)
        flash(f"Saved the changes to {model.name} and {version.ref}.")
        st.rerun()
    image_settings_panel(portal, version)
    reference_data_panel(portal, model, version)


def visibility_panel(portal: Portal, model: ModelSummary) -> None:
    """Owner and visibility of the model; its owner or an admin switches private/shared."""
    private = model.visibility == "private"
    text = ("private: only its owner and admins see it" if private
            else "shared with everyone signed in")
    cols = st.columns([4, 2], vertical_alignment="center")
    cols[0].markdown(f":material/person: Owner **{model.owner or 'nobody'}** · "
                     f"{':material/lock:' if private else ':material/group:'} {text}")
    refused = why_not(portal, "edit", model)
    if refused:
        return
    label = "Share with everyone" if private else "Make private"
    if cols[1].button(label, key=f"visibility.{model.name}", icon=":material/group:" if private else ":material/lock:"):
        with shown_errors(stop=True):
            portal.update_model(model.name, visibility="shared" if private else "private")
        flash(f"{model.name} is now {'shared with everyone signed in' if private else 'private'}.")
        st.rerun()


def compare_panel(portal: Portal, model: ModelSummary) -> None:
    """Two versions side by side: facts, signature, operators."""
    numbers = [v.version for v in model.versions]
    if len(numbers) < 2:
        st.info("This model has one version. Upload another file under the same name to compare versions.")
        return
    cols = st.columns(2)
    left = cols[0].selectbox("Version", numbers, index=1, format_func=lambda n: f"v{n}", key=f"cmp.a.{model.name}")
    right = cols[1].selectbox("with version", numbers, index=0, format_func=lambda n: f"v{n}",
                              key=f"cmp.b.{model.name}")
    first, second = portal.get(f"{model.name}:{left}"), portal.get(f"{model.name}:{right}")
    table = views.compare_versions(first, second)
    st.dataframe(table, hide_index=True, width="stretch", height=35 * (len(table) + 1) + 3)
    labels = [first.ref, second.ref if second.ref != first.ref else f"{second.ref} (again)"]
    ops_a, ops_b = first.info.get("operators") or {}, second.info.get("operators") or {}
    chart(figures.operator_comparison(ops_a, ops_b, labels=labels), key=f"cmp.ops.{model.name}")
    with st.expander("Operator counts"):
        st.dataframe(views.operators_frame(ops_a, ops_b, labels), hide_index=True, width="stretch")


def _alias_action_label(choice: str, alias: str) -> str:
    if choice == _KEEP:
        return "Keep it (the delete is refused)"
    if choice == _REMOVE:
        return f"Remove @{alias}"
    return f"Move @{alias} to {choice}"


def _alias_actions(model: ModelSummary, blocking: dict[str, int], *, keep_versions: list[int]) -> dict[str, str]:
    """One choice per alias that blocks the delete: keep (refuse), remove, or move to a surviving version."""
    actions: dict[str, str] = {}
    for alias, number in blocking.items():
        options = [_KEEP, _REMOVE, *(f"v{n}" for n in keep_versions)]
        choice = st.selectbox(
            f"@{alias} points at v{number}", options, key=f"del.alias.{model.name}.{alias}",
            format_func=functools.partial(_alias_action_label, alias=alias),
        )
        actions[alias] = str(choice)
    return actions


def delete_panel(portal: Portal, model: ModelSummary, version: ModelVersion) -> None:
    """Delete one version or the whole model, behind a confirmation."""
    whole = st.radio("Delete", [f"version {version.version}", "the whole model"], horizontal=True,
                     key=f"del.what.{model.name}") == "the whole model"
    target = model.name if whole else version.ref
    doomed = [v.version for v in model.versions] if whole else [version.version]
    blocking = {a: n for a, n in model.aliases.items() if n in doomed}
    others = [n for n in (v.version for v in model.versions) if n not in doomed]
    actions = {}
    if blocking:
        st.warning("Deleting is refused while an alias points at what you delete: remove or move each alias.",
                   icon=":material/warning:")
        actions = _alias_actions(model, blocking, keep_versions=others)
    dependents = [r for n in doomed for r in portal.registry.dependents(f"{model.name}:{n}")
                  if ModelRef.parse(r).name != model.name or not whole]
    if dependents:
        st.warning(f"Variants depend on it ({', '.join(dependents)}); delete them first.", icon=":material/warning:")
    refused = why_not(portal, "delete", model)
    if refused:
        st.button(f"Delete {target}", type="primary", disabled=True, icon=":material/delete_forever:")
        st.caption(f":material/lock: {refused}")
        return
    confirmed = st.checkbox(f"I understand that deleting **{target}** cannot be undone", key=f"del.ok.{target}")
    if st.button(f"Delete {target}", type="primary", disabled=not confirmed, icon=":material/delete_forever:"):
        kept = [f"@{a} → v{blocking[a]}" for a, action in actions.items() if action == _KEEP]
        if kept:
            st.error(f"Refused: alias {', '.join(kept)} points at {target}; choose to remove or move it first.",
                     icon=":material/block:")
            st.stop()
        with shown_errors(stop=True):
            for alias, action in actions.items():
                if action == _REMOVE:
                    portal.remove_alias(model.name, alias)
                elif action != _KEEP:
                    portal.set_alias(f"{model.name}:{action[1:]}", alias)
            gone = portal.delete(target)
        flash(f"Deleted {', '.join(gone)}.")
        st.rerun()
