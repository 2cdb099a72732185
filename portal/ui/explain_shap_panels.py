"""SHAP panels of the Explain page: one row, many rows, what-if, images, variant drift.

The method, settings, data, what-if and image widgets and the run button live
in :mod:`.explain_widgets` (shared with the LIME panels of :mod:`.explain_lime_panels`).

Every panel builds a job (cheap: the data is checked and hashed), shows its
result at once when the explanation is cached, and otherwise shows the time
estimate and runs it on request behind a progress bar. Results live in the
on-disk explanation cache, not in session state, so revisiting is instant.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from ..core import Portal
from ..explain import ExplainSettings, ImageJob, TabularExplanation, TabularJob, explain_drift
from ..explain import figures as xf
from ..explain.drift import drift_jobs
from ..serving.dataio import frame_to_csv_bytes
from ..storage.registry import ModelVersion
from . import keys
from .explain_widgets import (
    explained,
    images_zero_notice,
    picked_images,
    progress_of,
    result_source,
    run_now,
    whatif_inputs,
    zero_attributions_notice,
)
from .render import chart
from .widgets import shown_errors

__all__ = ["drift_panel", "image_panel", "many_rows_panel", "one_row_panel", "variant_drift_panel", "whatif_panel"]

_PREDICTED = "predicted class"
_NONE = "(none)"


# -- results ----------------------------------------------------------------------------
def _target(expl: TabularExplanation, key: str) -> str | None:
    if not expl.classifier:
        if len(expl.output_names) == 1:
            return None
        return st.selectbox("Output to explain", expl.output_names, key=key)
    choice = st.selectbox("Class to explain", [_PREDICTED, *expl.output_names], key=key,
                          help="default: each row's predicted class")
    return None if choice == _PREDICTED else choice


def _additivity(expl: Any) -> None:
    ok = "within" if expl.additive else "**over**"
    st.caption(f"Additivity check: base value + sum of attributions = model output, max error "
               f"{expl.max_additivity_error:.1e} ({ok} tolerance {expl.tolerance:.0e}) · {result_source(expl)} · "
               f"{expl.model_rows:,} model evaluations")


def _downloads(expl: TabularExplanation, target: str | None, rows: list[int], key: str) -> None:
    cols = st.columns(2)
    cols[0].download_button("SHAP values (CSV)", data=xf.shap_csv(expl, target=target),
                            file_name=f"{expl.ref.replace(':', '-')}-shap.csv", mime="text/csv",
                            icon=":material/download:", on_click="ignore", key=key + ".csv")
    cols[1].download_button("Report (HTML)", data=xf.html_report(expl, rows, target=target),
                            file_name=f"{expl.ref.replace(':', '-')}-explanation.html", mime="text/html",
                            icon=":material/description:", on_click="ignore", key=key + ".html")


# -- tabular panels ---------------------------------------------------------------------
def one_row_panel(portal: Portal, version: ModelVersion, rows: pd.DataFrame, background: Any,
                  settings: ExplainSettings) -> None:
    """A waterfall of one row's attributions, with its feature values, output and base value."""
    index = int(st.number_input("Row", min_value=0, max_value=len(rows) - 1, value=0, step=1, key=keys.EXPLAIN + "row"))
    with shown_errors(stop=False):
        job = TabularJob(portal, version, rows.iloc[[index]], background=background, settings=settings)
        expl = explained(job, key=keys.EXPLAIN + "row.run", label="Explain this row")
        if expl is None:
            return
        target = _target(expl, keys.EXPLAIN + "row.target")
        _row_result(expl, target, key=keys.EXPLAIN + "row.chart", label=f"row {index}")
        _downloads(expl, target, [0], keys.EXPLAIN + "row.download")


def _row_result(expl: TabularExplanation, target: str | None, *, key: str, was: float | None = None,
                label: str | None = None) -> None:
    chosen = expl.select(target)
    cols = st.columns(3)
    delta = None if was is None else f"{chosen.outputs[0] - was:+.4g}"
    cols[0].metric(f"Output ({chosen.targets[0]})", f"{chosen.outputs[0]:.4g}", delta=delta)
    cols[1].metric("Base value", f"{chosen.base_values[0]:.4g}", help=expl.background.describe())
    cols[2].metric("Explainer", expl.explainer)
    zero_attributions_notice(chosen.values, chosen.outputs, varied="features")
    chart(xf.waterfall(expl, 0, target=target, label=label), key=key)
    _additivity(expl)
    st.caption(expl.background.describe())


def many_rows_panel(portal: Portal, version: ModelVersion, rows: pd.DataFrame, background: Any,
                    settings: ExplainSettings) -> None:
    """Global importance, beeswarm and dependence over many rows."""
    top = min(len(rows), 500)
    count = st.slider("Rows to explain (from the top)", min_value=1, max_value=top, value=min(top, 50),
                      key=keys.EXPLAIN + "many.count") if top > 1 else 1
    with shown_errors():
        job = TabularJob(portal, version, rows.head(count), background=background, settings=settings)
        expl = explained(job, key=keys.EXPLAIN + "many.run", label=f"Explain {count} rows")
        if expl is None:
            return
        target = _target(expl, keys.EXPLAIN + "many.target")
        chosen = expl.select(target)
        zero_attributions_notice(chosen.values, chosen.outputs, varied="features")
        chart(xf.importance_bar(expl, target=target), key=keys.EXPLAIN + "many.importance")
        chart(xf.beeswarm(expl, target=target), key=keys.EXPLAIN + "many.beeswarm")
        _dependence(expl, target)
        _additivity(expl)
        shown = st.multiselect("Rows in the HTML report", list(range(len(expl.outputs))),
                               default=list(range(min(5, len(expl.outputs)))), key=keys.EXPLAIN + "many.report")
        _downloads(expl, target, shown, keys.EXPLAIN + "many.download")


def _dependence(expl: TabularExplanation, target: str | None) -> None:
    order = np.argsort(-np.abs(expl.select(target).values).mean(axis=0), kind="stable")
    names = [expl.feature_names[j] for j in order]
    cols = st.columns(2)
    feature = cols[0].selectbox("Dependence of", names, key=keys.EXPLAIN + "many.feature")
    others = [_NONE, *[n for n in names if n != feature]]
    color = cols[1].selectbox("Coloured by", others, index=min(1, len(others) - 1), key=keys.EXPLAIN + "many.color")
    chart(xf.dependence(expl, feature, color_by=None if color == _NONE else color, target=target),
          key=keys.EXPLAIN + "many.dependence")


def whatif_panel(portal: Portal, version: ModelVersion, rows: pd.DataFrame, background: Any,
                 settings: ExplainSettings) -> None:
    """Edit a row's values; its prediction and waterfall follow."""
    inputs = whatif_inputs(version, rows)
    if inputs is None:
        return
    edited, loaded = inputs
    with shown_errors():
        job = TabularJob(portal, version, edited, background=background, settings=settings)
        expl = run_now(job) if job.cached or job.estimate.seconds <= 5 else explained(
            job, key=keys.EXPLAIN + "whatif.run", label="Explain the edited row")
        if expl is None:
            return
        target = _target(expl, keys.EXPLAIN + "whatif.target")
        start = TabularJob(portal, version, rows.iloc[[loaded]], background=background, settings=settings)
        was = None
        if start.cached or start.estimate.seconds <= 5:
            original = run_now(start)
            was = float(original.select(target if target is not None else expl.select().targets[0]).outputs[0])
        _row_result(expl, target, key=keys.EXPLAIN + "whatif.chart", was=was, label="the edited row")
        if was is not None:
            st.caption(f"The change is relative to row {loaded} as it was.")


# -- images -----------------------------------------------------------------------------
def image_panel(portal: Portal, version: ModelVersion, settings: ExplainSettings) -> None:
    """Images with the attribution heat map of their top classes overlaid."""
    picked = picked_images(portal, version)
    if picked is None:
        return
    images, top = picked
    with shown_errors():
        job = ImageJob(portal, version, images, settings=replace(settings, top_classes=top))
        expl = explained(job, key=keys.EXPLAIN + "image.run", label="Explain the image(s)")
        if expl is None:
            return
        images_zero_notice(expl.values[..., :top], expl.outputs)
        for i in range(len(expl.outputs)):
            chart(xf.image_overlay(expl, i, max_classes=top), key=f"{keys.EXPLAIN}image.chart.{i}")
        _additivity(expl)
        st.download_button("Report (HTML)", data=xf.html_report(expl), icon=":material/description:",
                           file_name=f"{expl.ref.replace(':', '-')}-explanation.html", mime="text/html",
                           on_click="ignore", key=keys.EXPLAIN + "image.html")


# -- drift ------------------------------------------------------------------------------
def _comparison(portal: Portal, version: ModelVersion, prefix: str) -> str | None:
    if version.parent:
        st.caption(f"{version.ref} is a {version.method or 'derived'} variant of {version.parent}: "
                   "are its answers still made for the same reasons?")
        return version.parent
    others = [v.ref for v in portal.get_model(version.name).versions if v.ref != version.ref]
    if not others:
        st.info("This version is not a variant and has no other versions to compare with. Create compressed "
                "variants on **Compare**, then pick one in the sidebar.", icon=":material/account_tree:")
        return None
    choice = st.selectbox("Compare with", [_NONE, *others], key=prefix + "drift.other",
                          help="this version is not a variant; compare it with another version instead")
    return None if choice == _NONE else choice


def drift_panel(portal: Portal, version: ModelVersion, rows: pd.DataFrame, background: Any,
                settings: ExplainSettings, *, prefix: str = keys.EXPLAIN) -> None:
    """Explanation drift of a variant against its parent: rank correlation, top-k agreement, largest changes."""
    if settings.method == "lime":
        st.caption("Variant drift compares SHAP explanations (the method choice applies to the other tabs).")
    parent = _comparison(portal, version, prefix)
    if parent is None:
        return
    top = min(len(rows), 200)
    count = st.slider("Rows to compare", min_value=1, max_value=top, value=min(top, 20), key=prefix + "drift.count") \
        if top > 1 else 1
    top_k = int(st.number_input("Top-k features", min_value=1, max_value=20, value=5, key=prefix + "drift.k"))
    with shown_errors():
        jobs = drift_jobs(portal, version, parent, rows.head(count), background=background, settings=settings)
        if not all(job.cached for job in jobs):
            seconds = sum(job.estimate.seconds for job in jobs)
            st.caption(f"Estimate: both versions explain {count} row(s), about {seconds:.1f} s in all.")
            if not st.button("Compare explanations", type="primary", key=prefix + "drift.run",
                             icon=":material/difference:"):
                return
        bar = st.progress(0.0, text="Explaining …")
        report = explain_drift(portal, version, parent, rows.head(count), background=background, settings=settings,
                               top_k=top_k, progress=progress_of(bar))
        bar.empty()
        _drift_result(report, prefix)


def variant_drift_panel(portal: Portal, version: ModelVersion, *, prefix: str = keys.COMPARE_EXPLAIN) -> None:
    """For the Compare page: explanation drift of a variant against its parent, on its reference rows."""
    if not version.parent:
        return
    rows = portal.reference_frame(version.ref)
    if rows is None:
        rows = portal.reference_frame(version.parent)
    if rows is None:
        st.info("Explanation drift needs reference data; neither this variant nor its parent has any.",
                icon=":material/info:")
        return
    drift_panel(portal, version, rows.reset_index(drop=True), None, ExplainSettings(), prefix=prefix)


def _drift_result(report: Any, prefix: str) -> None:
    summary = report.summary()
    cols = st.columns(3)
    cols[0].metric("Rank correlation (global)", _ratio(summary["spearman"]),
                   help="Spearman correlation of mean |SHAP| per feature")
    cols[1].metric("Rank correlation (mean per row)", _ratio(summary["mean_row_spearman"]))
    cols[2].metric(f"Top-{report.top_k} agreement", _ratio(summary["mean_row_top_k_agreement"]),
                   help="share of a row's top features that both versions rank in their top k")
    chart(xf.drift_rows(report), key=prefix + "drift.rows")
    chart(xf.drift_importance(report), key=prefix + "drift.importance")
    st.markdown("**Largest attribution changes**")
    st.dataframe(report.changes, hide_index=True, width="stretch")
    st.download_button("Changes (CSV)", data=frame_to_csv_bytes(report.changes), file_name="explanation-drift.csv",
                       mime="text/csv", icon=":material/download:", on_click="ignore", key=prefix + "drift.csv")
    with st.expander("Per row"):
        st.dataframe(report.per_row, hide_index=True, width="stretch")


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
