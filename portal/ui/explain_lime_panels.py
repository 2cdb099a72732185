"""LIME panels of the Explain page (one row, many rows, what-if, images) and SHAP vs LIME agreement.

The panels have the names and arguments of their SHAP twins in :mod:`.explain_shap_panels`,
so :mod:`.explain_panels` picks a module by method.

Same flow as the SHAP panels: a job is built (cheap), a cached result shows at
once, otherwise the estimate is shown and the run starts on a click.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pandas as pd
import streamlit as st

from ..explain import lime_figures as lf
from ..core import Portal
from ..serving.dataio import frame_to_csv_bytes
from ..explain import (
    ExplainSettings,
    LimeImageJob,
    LimeJob,
    LimeTabularExplanation,
    agreement_jobs,
    explain_agreement,
)
from ..explain.agreement import AgreementReport
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
)
from .render import chart
from .widgets import shown_errors

__all__ = ["agreement_panel", "image_panel", "many_rows_panel", "one_row_panel", "whatif_panel"]

_PREDICTED = "predicted class"
_HEADINGS = {"spearman": "rank correlation", "top_k_overlap": "top-k overlap", "sign_agreement": "same direction",
             "lime_r2": "LIME R²", "shap_top": "SHAP top", "lime_top": "LIME top"}
WEAK_FIT = 0.5  # a local R² below this: LIME's straight line explains little of the model around the row


def _target(version: ModelVersion, key: str) -> str | None:
    """LIME explains one class per row: the predicted one, or the one chosen here (before running)."""
    labels = version.class_labels or []
    if version.task != "classification" or not labels:
        return None
    choice = st.selectbox("Class to explain", [_PREDICTED, *labels], key=key,
                          help="default: each row's predicted class")
    return None if choice == _PREDICTED else choice


def _source(expl: Any) -> str:
    return result_source(expl)


def _downloads(expl: LimeTabularExplanation, key: str) -> None:
    name = expl.ref.replace(":", "-")
    cols = st.columns(2)
    cols[0].download_button("LIME weights (CSV)", data=lf.lime_csv(expl), file_name=f"{name}-lime.csv",
                            mime="text/csv", icon=":material/download:", on_click="ignore", key=key + ".csv")
    cols[1].download_button("Report (HTML)", data=lf.lime_report(expl), file_name=f"{name}-lime.html",
                            mime="text/html", icon=":material/description:", on_click="ignore", key=key + ".html")


# -- tabular ----------------------------------------------------------------------------
def _row_result(expl: LimeTabularExplanation, *, key: str, label: str, was: float | None = None) -> None:
    output = float(expl.model_outputs[0])
    cols = st.columns(4)
    delta = None if was is None else f"{output - was:+.4g}"
    cols[0].metric(f"Output ({expl.targets[0]})", f"{output:.4g}", delta=delta)
    cols[1].metric("LIME surrogate", f"{expl.local_predictions[0]:.4g}",
                   help="the local straight line at this row: intercept + the weights of the conditions that hold")
    cols[2].metric("Intercept", f"{expl.intercepts[0]:.4g}")
    cols[3].metric("Local R²", f"{expl.scores[0]:.3f}",
                   help="how well LIME's straight line fits the model's answers around this row (1 = perfectly)")
    if expl.scores[0] < WEAK_FIT:
        st.warning(f"LIME's local fit is weak here (R² {expl.scores[0]:.2f}): a straight line explains little of "
                   "the model around this row, so read its weights as rough directions.", icon=":material/show_chart:")
    chart(lf.lime_weights(expl, 0, label=label), key=key)
    st.caption(f"{expl.describe_method()}; {_source(expl)} · {expl.model_rows:,} model evaluations")
    st.caption(expl.training.describe().replace("Background:", "Sampled from the statistics of"))


def one_row_panel(portal: Portal, version: ModelVersion, rows: pd.DataFrame, background: Any,
                       settings: ExplainSettings) -> None:
    """LIME's weights of one row's feature conditions, with intercept, surrogate value and local R²."""
    index = int(st.number_input("Row", min_value=0, max_value=len(rows) - 1, value=0, step=1, key=keys.EXPLAIN + "row"))
    target = _target(version, keys.EXPLAIN_LIME + "row.target")
    with shown_errors():
        job = LimeJob(portal, version, rows.iloc[[index]], background=background, target=target, settings=settings)
        expl = explained(job, key=keys.EXPLAIN_LIME + "row.run", label="Explain this row with LIME")
        if expl is None:
            return
        _row_result(expl, key=keys.EXPLAIN_LIME + "row.chart", label=f"row {index}")
        _downloads(expl, keys.EXPLAIN_LIME + "row.download")


def many_rows_panel(portal: Portal, version: ModelVersion, rows: pd.DataFrame, background: Any,
                         settings: ExplainSettings) -> None:
    """Mean |LIME weight| per feature, and every row's fit."""
    top = min(len(rows), 500)
    count = st.slider("Rows to explain (from the top)", min_value=1, max_value=top, value=min(top, 50),
                      key=keys.EXPLAIN + "many.count") if top > 1 else 1
    target = _target(version, keys.EXPLAIN_LIME + "many.target")
    with shown_errors():
        job = LimeJob(portal, version, rows.head(count), background=background, target=target, settings=settings)
        expl = explained(job, key=keys.EXPLAIN_LIME + "many.run", label=f"Explain {count} rows with LIME")
        if expl is None:
            return
        chart(lf.lime_importance(expl), key=keys.EXPLAIN_LIME + "many.importance")
        table = expl.to_frame()[["row", "explained", "model_output", "local_prediction", "intercept", "local_r2"]]
        table["top conditions"] = [", ".join(expl.conditions[i][j] for j in abs(expl.weights[i]).argsort()[::-1][:3])
                                   for i in range(len(table))]
        st.dataframe(table, hide_index=True, width="stretch")
        st.caption(f"{expl.describe_method()}; {_source(expl)} · {expl.model_rows:,} model evaluations")
        _downloads(expl, keys.EXPLAIN_LIME + "many.download")


def whatif_panel(portal: Portal, version: ModelVersion, rows: pd.DataFrame, background: Any,
                      settings: ExplainSettings) -> None:
    """Edit a row's values; its prediction and LIME weights follow."""
    inputs = whatif_inputs(version, rows)
    if inputs is None:
        return
    edited, loaded = inputs
    with shown_errors():
        job = LimeJob(portal, version, edited, background=background, settings=settings)
        expl = run_now(job) if job.cached or job.estimate.seconds <= 5 else explained(
            job, key=keys.EXPLAIN_LIME + "whatif.run", label="Explain the edited row with LIME")
        if expl is None:
            return
        start = LimeJob(portal, version, rows.iloc[[loaded]], background=background, settings=settings)
        was = float(start.function(start.rows)[0, expl.target_index[0]])
        _row_result(expl, key=keys.EXPLAIN_LIME + "whatif.chart", label="the edited row", was=was)
        st.caption(f"The change is relative to row {loaded} as it was.")


# -- images -----------------------------------------------------------------------------
def image_panel(portal: Portal, version: ModelVersion, settings: ExplainSettings) -> None:
    """Images cut into superpixels, each coloured by its LIME weight for the top classes."""
    picked = picked_images(portal, version)
    if picked is None:
        return
    images, top = picked
    with shown_errors():
        job = LimeImageJob(portal, version, images, settings=replace(settings, top_classes=top))
        expl = explained(job, key=keys.EXPLAIN_LIME + "image.run", label="Explain the image(s) with LIME")
        if expl is None:
            return
        images_zero_notice(expl.weights[:, :top], expl.outputs, method="LIME")
        for i in range(len(expl.outputs)):
            chart(lf.lime_superpixels(expl, i, max_classes=top), key=f"{keys.EXPLAIN_LIME}image.chart.{i}")
        st.caption(f"LIME: {expl.num_samples:,} samples per image, superpixels switched off to their mean colour, "
                   f"kernel width {expl.kernel_width:g}; {_source(expl)} · {expl.model_rows:,} model evaluations")
        st.download_button("Report (HTML)", data=lf.lime_report(expl), icon=":material/description:",
                           file_name=f"{expl.ref.replace(':', '-')}-lime.html", mime="text/html",
                           on_click="ignore", key=keys.EXPLAIN_LIME + "image.html")


# -- agreement --------------------------------------------------------------------------
def agreement_panel(portal: Portal, version: ModelVersion, rows: pd.DataFrame, background: Any,
                    settings: ExplainSettings) -> None:
    """SHAP and LIME on the same rows: rank correlation, top-k overlap, the rows where they disagree most."""
    st.caption("The same rows explained by SHAP and by LIME, with the same background, seed and budget, for each "
               "row's predicted class: do two different explainers tell the same story?")
    top = min(len(rows), 200)
    cols = st.columns(2)
    count = cols[0].slider("Rows to compare", min_value=1, max_value=top, value=min(top, 20),
                           key=keys.EXPLAIN_AGREE + "count") if top > 1 else 1
    features = max(1, rows.shape[1])
    top_k = int(cols[1].number_input("Top-k features", min_value=1, max_value=max(1, min(20, features)),
                                     value=min(5, features), key=keys.EXPLAIN_AGREE + "k"))
    with shown_errors():
        jobs = agreement_jobs(portal, version, rows.head(count), background=background, settings=settings)
        if not all(job.cached for job in jobs):
            shap_s, lime_s = (job.estimate.seconds for job in jobs)
            st.caption(f"Estimate: SHAP about {shap_s:.1f} s, LIME about {lime_s:.1f} s for {count} row(s).")
            if not st.button("Compare SHAP and LIME", type="primary", key=keys.EXPLAIN_AGREE + "run",
                             icon=":material/compare:"):
                return
        bar = st.progress(0.0, text="Explaining …")
        report = explain_agreement(portal, version, rows.head(count), background=background, settings=settings,
                                   top_k=top_k, progress=progress_of(bar))
        bar.empty()
        _agreement_result(report)


def _agreement_result(report: AgreementReport) -> None:
    s = report.summary()
    cols = st.columns(4)
    cols[0].metric("Rank correlation (mean per row)", _ratio(s["mean_row_spearman"]),
                   help="Spearman correlation of |SHAP| and |LIME| over the features of each row, averaged")
    cols[1].metric("Rank correlation (global)", _ratio(s["spearman"]),
                   help="of the mean |SHAP| and mean |LIME| per feature")
    cols[2].metric(f"Top-{report.top_k} overlap (mean per row)", _ratio(s["mean_row_top_k_overlap"]),
                   help="share of a row's top features that both explainers rank in their top k")
    cols[3].metric("Same direction", _ratio(s["mean_sign_agreement"]),
                   help="share of the top features that both push the same way")
    chart(lf.agreement_rows(report), key=keys.EXPLAIN_AGREE + "rows")
    if report.flagged:
        listed = ", ".join(f"row {r}" for r in report.flagged)
        st.warning(f"SHAP and LIME disagree most on {listed} (shaded above).", icon=":material/call_split:")
    else:
        st.success("SHAP and LIME tell much the same story on every row: each rank correlation is at least 0.5 "
                   "and they share at least half their top features.", icon=":material/check_circle:")
    st.info(f"**What disagreement means.** {report.meaning}", icon=":material/lightbulb:")
    st.markdown("**Rows where they disagree most**")
    worst = report.worst(10).drop(columns=["disagreement"]).rename(columns=_HEADINGS)
    st.dataframe(worst, hide_index=True, width="stretch")
    rows = list(report.per_row["row"])
    picked = st.selectbox("Side by side", rows, index=rows.index(report.flagged[0]) if report.flagged else 0,
                          format_func=lambda r: f"row {r}", key=keys.EXPLAIN_AGREE + "row")
    chart(lf.agreement_row(report, int(picked)), key=keys.EXPLAIN_AGREE + "row.chart")
    chart(lf.agreement_importance(report), key=keys.EXPLAIN_AGREE + "importance")
    buttons = st.columns(2)
    buttons[0].download_button("Per row (CSV)", data=frame_to_csv_bytes(report.per_row.drop(columns=["disagreement"])),
                            file_name="shap-vs-lime.csv", mime="text/csv", icon=":material/download:",
                            on_click="ignore", key=keys.EXPLAIN_AGREE + "csv")
    buttons[1].download_button("Report (HTML)", data=lf.lime_report(report), file_name="shap-vs-lime.html",
                            mime="text/html", icon=":material/description:", on_click="ignore",
                            key=keys.EXPLAIN_AGREE + "html")


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
