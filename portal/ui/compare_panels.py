"""Panels of the Compare page: a version's lineage, a new comparison, results and advice, flipped rows, promote.

The library (:mod:`portal.compress.variants`) creates and measures the
variants and stores the figures; these panels choose the methods and data,
and show what was measured and advised.
"""

from __future__ import annotations

import logging
from typing import Any

import streamlit as st

from ..compress import figures as compare_figures
from ..compress import variants
from ..compress.advice import GATE_FAILED
from ..core import Portal
from ..errors import PortalError
from ..serving.dataio import read_input
from ..storage.registry import ModelVersion
from . import keys
from .compare_diff_panels import graph_diff_panel
from .compare_settings import method_help, method_settings, progress_writer
from .gate_panels import gate_notice, gate_results, gate_rules_input, reference_labelled
from .render import chart
from .roles import why_not
from .widgets import flash, pick, shown_errors

__all__ = [
    "METHOD_HELP",
    "TABLE_COLUMNS",
    "flipped_rows_panel",
    "graph_diff_panel",
    "label_choices",
    "lineage_header",
    "new_comparison_panel",
    "picked_comparison",
    "promote_panel",
    "recommendation_card",
    "results_panel",
    "uploads",
    "why_panel",
]

log = logging.getLogger("portal.ui")
_EVERY = "every batch size"
_NONE = "(none)"
_DATA_TYPES = ["csv", "parquet", "npz", "npy", "json", "png", "jpg", "jpeg", "bmp"]

METHOD_HELP = method_help()  # from the method records
TABLE_COLUMNS: dict[str, Any] = {
    "Size": st.column_config.NumberColumn("Size", format="bytes"),
    "Gzip size": st.column_config.NumberColumn("Gzip size", format="bytes", help="Compressed with gzip"),
    "Peak memory": st.column_config.NumberColumn(
        "Peak memory", format="bytes", help="High-water mark of a process that loaded and ran only this model"),
    "Model memory": st.column_config.NumberColumn("Model memory", format="bytes",
                                                  help="Peak memory minus the process before loading the model"),
    "Size ratio": st.column_config.NumberColumn("Size ratio", format="%.2f×"),
    "Agreement": st.column_config.ProgressColumn("Agreement", format="percent", min_value=0.0, max_value=1.0),
    "Throughput rows/s": st.column_config.NumberColumn("Throughput rows/s", format="localized"),
}


def lineage_header(portal: Portal, version: ModelVersion) -> None:
    """The version and, for a variant, its lineage and a button to open its parent."""
    chain = variants.lineage(portal, version.ref)
    lineage = " ← ".join(v.ref + (f" ({v.method})" if v.method else "") for v in chain)
    st.markdown(f"#### {version.ref}" + (f" · variant lineage: {lineage}" if version.parent else ""))
    if version.parent:
        cols = st.columns([4, 1], vertical_alignment="center")
        cols[0].info(f"{version.ref} is a variant of {version.parent} ({version.method}). Compare its parent, or "
                     "compress this variant further (its lineage is kept).", icon=":material/account_tree:")
        if cols[1].button(f"Open {version.parent}", icon=":material/arrow_upward:"):
            pick(version.name, f"v{version.parent.rpartition(':')[2]}")
            st.rerun()


# -- a new comparison -------------------------------------------------------------------
def uploads(files: Any) -> list[tuple[str, bytes]] | None:
    """``(name, bytes)`` of uploaded files; None when there are none."""
    return [(f.name, f.getvalue()) for f in files] if files else None


def label_choices(files: list[tuple[str, bytes]] | None) -> list[str]:
    """The columns of a single uploaded table (candidate label columns); none for anything else."""
    if not files or len(files) != 1 or not files[0][0].lower().endswith((".csv", ".parquet")):
        return []
    try:
        return [str(c) for c in read_input(files[0][1], name=files[0][0]).columns]
    except PortalError:
        return []


def new_comparison_panel(portal: Portal, version: ModelVersion) -> None:
    """Methods, their settings and the data; the button creates the variants and measures them all."""
    st.markdown("**New comparison**")
    create_refused = why_not(portal, "variants", version)
    if create_refused:  # said above the disabled settings, uploaders and button
        st.caption(f":material/lock: {create_refused}")
    off = bool(create_refused)
    chosen, settings = method_settings(off=off)
    cols = st.columns(2)  # uploads belong to the model picked: another model gets empty uploaders
    calibration = uploads(cols[0].file_uploader(
        "Calibration data (optional)", accept_multiple_files=True, key=keys.per_model(keys.COMPARE_CALIBRATION,
        version.name), type=_DATA_TYPES, help="int8-static and int8-budgeted calibrate on it, distill trains on it. "
        "Default: the version's reference data",
        disabled=off))
    evaluation = uploads(cols[1].file_uploader(
        "Evaluation data (optional)", accept_multiple_files=True, key=keys.per_model(keys.COMPARE_DATA, version.name),
        type=_DATA_TYPES, help="Rows to measure on. Default: the version's reference data",
        disabled=off))
    columns = label_choices(evaluation)
    label = st.selectbox("Label column (optional)", [_NONE, *columns], disabled=not columns,
                         help="Scores accuracy (or R² and MAE) against it") if columns else None
    label_column = None if label in (None, _NONE) else label
    labelled = label_column is not None if evaluation else reference_labelled(portal, version)
    gate = gate_rules_input(labelled=labelled, task=version.task, off=off)
    if st.button("Create variants and compare", type="primary", icon=":material/compare_arrows:",
                 disabled=not chosen or off):
        _compare(portal, version, chosen, data=evaluation, calibration=calibration, label_column=label_column,
                 gate=gate, **settings)


def _compare(portal: Portal, version: ModelVersion, chosen: list[str], **options: Any) -> None:
    """Create and measure the variants behind a live status; a failure reads as a message and stops the page."""
    with st.status(f"Comparing {len(chosen)} method(s) on {version.ref} …", expanded=True) as status:
        try:
            variants.compare(portal, version.ref, methods=chosen, **options, progress=progress_writer())
        except Exception as exc:  # a failure must read as a message, whatever raised it
            if not isinstance(exc, PortalError):
                log.exception("unexpected error while comparing variants")
            status.update(label="The comparison failed", state="error", expanded=True)
            st.error(exc.message if isinstance(exc, PortalError) else
                     f"Unexpected error ({type(exc).__name__}): {exc}. The server log has the details.",
                     icon=":material/error:")
            st.stop()
        status.update(label="Variants created and measured", state="complete", expanded=False)
    flash(f"Compared {len(chosen)} method(s) on {version.ref}; the figures are stored.")
    pick(version.name, f"v{version.version}")  # stay on the version compared, even if it was picked by an alias
    st.rerun()


# -- the stored comparison --------------------------------------------------------------
def picked_comparison(portal: Portal, version: ModelVersion) -> tuple[variants.Comparison, float]:
    """The stored comparison advised for the tolerance, objective and batch size picked here, and the tolerance.

    The page stops (with a hint) when the version has not been compared yet.
    """
    cols = st.columns([2, 2, 3])
    tolerance = cols[0].slider("Tolerance: agreement loss at most", 0.0, 5.0, 1.0, step=0.1, format="%.1f%%",
                               key=keys.COMPARE_TOLERANCE) / 100
    objective = cols[1].segmented_control("Objective", ["latency", "size"], default="latency",
                                          key=keys.COMPARE_OBJECTIVE) or "latency"
    with shown_errors(stop=True):
        comparison = variants.load_comparison(portal, version.ref, tolerance=tolerance, objective=objective)
    if comparison is None:
        refused = why_not(portal, "variants", version)  # then the button is disabled: do not say to press it
        st.info(f"{version.ref} has not been compared yet" + (f". {refused}" if refused else ": tick the methods "
                "and press **Create variants and compare**."), icon=":material/info:")
        st.stop()
    assert comparison is not None
    batches = list(comparison.measurements[0].latency)
    batch_choice = cols[2].segmented_control("Latency that matters", [_EVERY, *(f"batch {b}" for b in batches)],
                                             default=_EVERY, key=keys.COMPARE_BATCH) or _EVERY
    if batch_choice != _EVERY:
        comparison = comparison.with_advice(tolerance=tolerance, objective=objective,
                                            batch=int(batch_choice.split()[1]))
    return comparison, tolerance


def results_panel(comparison: variants.Comparison, tolerance: float) -> None:
    """The advice, where and on what it was measured, the table and a Pareto chart per batch size."""
    advice, env, data = comparison.advice, comparison.run.environment, comparison.run.dataset
    recommendation_card(comparison)
    gate_results(comparison)
    flags = ", ".join(f for f in ("avx2", "avx512", "vnni", "avx512_fp16", "amx") if env.get(f)) or "no AVX2"
    st.caption(f"Measured {comparison.run.created_at:%Y-%m-%d %H:%M} by {comparison.run.created_by} on "
               f"{env.get('cpu')} ({env.get('cores')} cores; {flags}), onnxruntime {env.get('onnxruntime')}, threads "
               f"{env.get('threads') or 'default'} · {data['rows']} rows of {data['source']}"
               + (f", labels: {data['label_column']}" if data.get("label_column") else ""))
    results = comparison.table()
    formats = {c: st.column_config.NumberColumn(c, format="%.2f×", help="Parent p50 / variant p50: above 1 is faster")
               for c in results.columns if c.startswith("Speedup")}
    formats.update({c: st.column_config.NumberColumn(c, format="%.3f") for c in results.columns if " ms " in c})
    formats.update({"Max abs error": st.column_config.NumberColumn("Max abs error", format="%.4f"),
                    "KL divergence": st.column_config.NumberColumn("KL divergence", format="%.2e")})
    st.dataframe(results, hide_index=True, width="stretch", column_config={**TABLE_COLUMNS, **formats})
    statuses = {v.ref: v.status for v in advice.verdicts}
    for batch in comparison.measurements[0].latency:
        chart(compare_figures.pareto_chart(comparison.measurements, batch=batch, best=advice.best, statuses=statuses,
                                           tolerance=tolerance), key=f"compare.pareto.{batch}")


def recommendation_card(comparison: variants.Comparison) -> None:
    """The advice and the reason for it: the chosen variant's, or why each variant is not a pick."""
    advice = comparison.advice
    close = any(v.status == "too close to call" for v in advice.verdicts)
    show = st.success if advice.best else st.info if close else st.warning
    with st.container(border=True):
        show(advice.summary, icon=":material/tips_and_updates:")
        for line in advice.why:
            st.markdown(f"**Why:** {line}" if advice.best else f"- {line}")


def why_panel(comparison: variants.Comparison) -> None:
    """Each variant's verdict with its reasons, the methods refused, and the notes of the run."""
    for verdict in comparison.advice.verdicts:
        icon = {"recommended": ":material/star:", "qualifies": ":material/check_circle:"}.get(
            verdict.status, ":material/info:")
        with st.expander(f"{verdict.ref} · {verdict.method} · {verdict.status}", icon=icon,
                         expanded=verdict.status in ("recommended", "slower", "less accurate", "too close to call")):
            for reason in verdict.reasons:
                st.markdown(f"- {reason}")
    for method, reason in comparison.refused.items():
        st.info(f"**{method}** was not created: {reason}", icon=":material/block:")
    for note in comparison.notes:
        st.warning(note, icon=":material/warning:")


def flipped_rows_panel(portal: Portal, version: ModelVersion, comparison: variants.Comparison) -> None:
    """The rows whose predicted class a variant changes, joined to the reference rows they came from."""
    flips = [m for m in comparison.measurements[1:] if m.agreement.get("flipped_count")]
    if not flips:
        return
    st.subheader("Rows whose class changes")
    counts = {m.ref: m.agreement["flipped_count"] for m in flips}
    shown = st.selectbox("Variant", list(counts), key=keys.COMPARE_FLIPPED,
                         format_func=lambda r: f"{r} ({counts[r]} rows)")
    table = comparison.flipped(shown)
    data = comparison.run.dataset
    reference = portal.reference_frame(version.ref) if data["source"] == f"reference data of {version.ref}" else None
    if reference is not None and len(table):
        table = table.join(reference.iloc[table["row"]].reset_index(drop=True))
    st.dataframe(table, hide_index=True, width="stretch")


def promote_panel(portal: Portal, version: ModelVersion, comparison: variants.Comparison) -> None:
    """Point an alias at a variant the advice backs, the recommended one preselected.

    A variant marked "no gain", "too close to call", "slower" or "failed the gate" is not
    offered (it brings nothing on the objective, or its gate forbids it); a "less accurate"
    one is, labelled so. The chosen variant's stored gate result shows before the button,
    and a failed gate disables it. The Models page can still point an alias anywhere,
    deliberately (overriding a failed gate only when told to).
    """
    advice = comparison.advice
    statuses = {v.ref: v.status for v in advice.verdicts}
    choices = [v.ref for v in advice.verdicts if v.promotable]
    best = advice.best
    promote_refused = why_not(portal, "alias", version)
    gated = [v.ref for v in advice.verdicts if v.status == GATE_FAILED]
    if not choices:
        failed = f" {', '.join(gated)} failed the evaluation gate." if gated else ""
        st.caption(":material/info: No variant to promote: each one is slower, no faster, too close to call "
                   f"or failed the gate with these settings.{failed} "
                   "The parent stays what its aliases serve; an alias can still be pointed at any version on the "
                   "**Models** page.")
    elif promote_refused:
        st.caption(f":material/lock: {promote_refused}")
    else:
        target = st.selectbox(
            "Variant", choices, index=choices.index(best) if best in choices else 0, key=keys.COMPARE_PROMOTE,
            format_func=lambda r: f"{r} ({statuses[r]})")
        stored = gate_notice(portal, target)
        blocked = stored is not None and not stored.result.passed
        cols = st.columns([4, 1], vertical_alignment="bottom")
        alias = cols[0].text_input("Alias", value="production", key=keys.COMPARE_ALIAS)
        if cols[1].button("Promote", type="primary", icon=":material/rocket_launch:", disabled=blocked,
                          help="Its evaluation gate failed: it cannot be promoted from here" if blocked else None):
            with shown_errors(stop=True):
                moved = portal.set_alias(target, alias.strip())
            flash(f"@{alias.strip()} now points at {moved.ref}.")
            st.rerun()
