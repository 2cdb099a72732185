"""Panels of the Predict page: the version's header, a generated form, a batch file, images, raw tensors."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from .. import figures, views
from ..core import Portal
from ..errors import PortalError
from ..serving.batch import BatchJob
from ..serving.dataio import frame_to_csv_bytes, peek_table, read_input
from ..serving.images import IMAGE_SUFFIXES, describe_preprocessing
from ..serving.predict import ranked_frame
from ..storage.registry import ModelVersion
from ..views import input_mode
from . import keys
from .render import chart, prediction_summary
from .widgets import feature_input, latency_text, result_columns, shown_errors

__all__ = ["batch_panel", "form_panel", "image_panel", "input_mode", "tensor_panel", "version_header"]

_TABLE_ROWS = 10_000
_PREVIEW_ROWS = 20
_GRID = 3
_POLL_S = 0.5  # how often the progress of a running batch job is redrawn


def version_header(version: ModelVersion) -> None:
    """The page title and the version's task, inputs, size and aliases."""
    st.title(f"Predict with {version.ref}")
    details = [version.task, f"{len(version.signature['inputs'])} input(s)", views.format_bytes(version.size_bytes)]
    if version.aliases:
        details.append(", ".join(f"@{a}" for a in version.aliases))
    st.caption(" · ".join(details) + " · pick another model or version in the sidebar")


# -- form ----------------------------------------------------------------------------
def _fill_from_row(fields: Sequence[views.FeatureField], reference: pd.DataFrame, prefix: str) -> None:
    values = views.row_values(fields, reference, int(st.session_state[prefix + keys.FORM_ROW]))
    for name, value in values.items():
        st.session_state[prefix + name] = value


def _reference_row_picker(fields: list[views.FeatureField], reference: pd.DataFrame, prefix: str) -> None:
    cols = st.columns([1, 1, 3], vertical_alignment="bottom")
    row = cols[0].number_input("Reference row", min_value=0, max_value=len(reference) - 1, value=0, step=1,
                               key=prefix + keys.FORM_ROW, help=f"0 to {len(reference) - 1}")
    cols[1].button("Fill from this row", on_click=_fill_from_row, args=(fields, reference, prefix),
                   icon=":material/input:")
    if "target" in reference.columns:
        cols[2].caption(f"Row {row} of the reference data has target **{reference['target'].iloc[int(row)]}**.")


def form_panel(portal: Portal, version: ModelVersion) -> None:
    """A form generated from the signature, defaults from the reference data."""
    reference = portal.reference_frame(version.ref)
    try:
        fields = views.feature_fields(version, reference)
    except PortalError as exc:
        st.info(exc.message, icon=":material/info:")
        return
    prefix = f"{keys.FORM_PREFIX}{version.ref}."
    for field in fields:
        st.session_state.setdefault(prefix + field.name, field.default)
    if reference is not None:
        st.caption("Defaults are the medians (and most frequent categories) of the model's reference data.")
        _reference_row_picker(fields, reference, prefix)
    else:
        st.caption("This version has no reference data, so numbers start at 0: add reference data on the Models "
                   "page (Edit tab) to start from its medians.")
    with st.form(prefix + "form", border=True):
        grid = st.columns(_GRID)
        for i, field in enumerate(fields):
            with grid[i % _GRID]:
                feature_input(field, prefix + field.name)
        submitted = st.form_submit_button("Predict", type="primary", icon=":material/play_arrow:")
    if submitted:
        st.session_state.pop(keys.FORM_RESULT, None)
        row = pd.DataFrame([{f.name: st.session_state[prefix + f.name] for f in fields}])
        with shown_errors():
            prediction = portal.predict(version, row)
            st.session_state[keys.FORM_RESULT] = (version.ref, prediction, prediction.to_frame())
    result = st.session_state.get(keys.FORM_RESULT)
    if result and result[0] == version.ref:
        prediction_summary(result[1], result[2], key=prefix + "topk")


# -- batch ---------------------------------------------------------------------------
def _template(version: ModelVersion, reference: pd.DataFrame | None) -> bytes:
    columns = views.input_columns(version)
    if reference is not None and set(columns) <= set(reference.columns):
        return frame_to_csv_bytes(reference[columns].head(5))
    if reference is not None:  # reference data may keep the user's spelling (``malic acid`` for ``malic_acid``)
        match = views.match_columns(version, reference.columns)
        if match.ok and not match.positional:
            found = {model: model for model in columns} | dict(match.normalised)
            return frame_to_csv_bytes(reference[[found[c] for c in columns]].head(5).set_axis(columns, axis=1))
    return frame_to_csv_bytes(pd.DataFrame(columns=columns))


def _pairs(pairs: Sequence[tuple[str, str]]) -> str:
    return ", ".join(f"`{file}` → `{model}`" for model, file in pairs[:20]) + (" …" if len(pairs) > 20 else "")


def _column_mapping(version: ModelVersion, token: str, match: views.ColumnMatch, columns: list[str]) -> dict[str, str]:
    """Select boxes: the file column that holds each model column the file lacks (model column ← file column)."""
    free = [c for c in columns if c in match.extra]
    st.markdown("**Map the missing columns:** pick the file column that holds each column the model needs.")
    grid = st.columns(min(_GRID, len(match.missing)))
    chosen: dict[str, str] = {}
    for i, name in enumerate(match.missing):
        pick = grid[i % len(grid)].selectbox(
            f"{name} ←", [None, *free], format_func=lambda c: "— not in the file —" if c is None else str(c),
            key=f"predict.map.{version.ref}.{token}.{name}", help=f"the file column that holds `{name}`")
        if pick is not None:
            chosen[name] = pick
    if len(set(chosen.values())) != len(chosen):
        st.error("Each file column can feed one model column only; pick different columns.", icon=":material/block:")
        return {}
    return chosen


def _column_report(match: views.ColumnMatch) -> bool:
    if match.normalised:
        st.info(f"Matched {len(match.normalised)} column(s) by name spelled differently (case, spaces, "
                f"punctuation): {_pairs(match.normalised)}", icon=":material/info:")
    if match.mapped:
        st.info(f"Mapped by you: {_pairs(match.mapped)}", icon=":material/info:")
    if match.positional:
        st.info(f"This version has no feature names: the file's {len(match.expected)} columns are used in order.",
                icon=":material/info:")
        return True
    if match.missing:
        listed = ", ".join(f"`{c}`" for c in match.missing[:20]) + (" …" if len(match.missing) > 20 else "")
        st.error(f"The file lacks {len(match.missing)} column(s) the model needs: {listed}", icon=":material/block:")
        return False
    if match.extra:
        listed = ", ".join(f"`{c}`" for c in match.extra[:20]) + (" …" if len(match.extra) > 20 else "")
        st.warning(f"{len(match.extra)} extra column(s) are not used by the model and are kept as they are in "
                   f"the results: {listed}", icon=":material/info:")
    st.success(f"All {len(match.expected)} columns the model needs are there.", icon=":material/check_circle:")
    return True


def _job_state(version: ModelVersion, token: str) -> BatchJob | None:
    """The batch job of this version and file; another one still running is cancelled (the user moved on)."""
    state = st.session_state.get(keys.BATCH_RESULT)
    if not state:
        return None
    job: BatchJob = state[6]
    if state[:2] == (version.ref, token):
        return job
    if not job.done:
        job.cancel()
    return None


@st.fragment(run_every=_POLL_S)
def _job_progress(job: BatchJob, key: str) -> None:
    """Progress and a cancel button, redrawn on a timer while the job runs in its thread."""
    if job.done:
        st.rerun()  # the whole page shows the results
    st.progress(job.fraction, text=f"Predicted {job.rows_done:,} of {job.total_rows:,} rows …")
    if st.button("Cancel", key=key, icon=":material/cancel:"):
        job.cancel()
        job.wait()
        st.rerun()


def _show_batch(version: ModelVersion, job: BatchJob) -> None:
    if job.cancelled:
        st.info("Cancelled: no results were kept.", icon=":material/cancel:")
        return
    if job.error is not None:
        st.error(job.error.message, icon=":material/error:")
        return
    preview, spent, rows = job.preview, job.seconds, job.rows_done
    assert preview is not None and job.download is not None
    cols = st.columns(3)
    cols[0].metric("Rows predicted", f"{rows:,}")
    cols[1].metric("Latency", f"{spent * 1e3:,.1f} ms")
    cols[2].metric("Throughput", f"{rows / spent:,.0f} rows/s" if spent > 0 else "—")
    chart(figures.prediction_distribution(preview, task=version.task), key=f"batch.dist.{version.ref}")
    if rows > len(preview):
        st.caption(f"Showing (and charting) the first {len(preview):,} of {rows:,} rows; the download has them all.")
    st.dataframe(preview, hide_index=True, width="stretch", column_config=result_columns(preview))
    download = job.download
    st.download_button("Download results (CSV)", data=lambda: download[:],
                       file_name=f"{Path(job.filename).stem}-predictions.csv", mime="text/csv", type="primary",
                       icon=":material/download:", on_click="ignore")
    st.caption(f"Model {version.ref} · {latency_text(spent, rows)} · cells starting with = + - @ are "
               "escaped so spreadsheets do not run them")


def batch_panel(portal: Portal, version: ModelVersion) -> None:
    """Score a CSV or Parquet file in the background; results joined to the input, charted, downloadable."""
    columns = views.input_columns(version)
    st.caption(f"One row per prediction, with the {len(columns)} column(s) the model takes: "
               + ", ".join(f"`{c}`" for c in columns[:12]) + (" …" if len(columns) > 12 else ""))
    st.download_button("Template CSV", data=_template(version, portal.reference_frame(version.ref)),
                       file_name=f"{version.name}-template.csv", mime="text/csv", icon=":material/table:",
                       on_click="ignore")
    upload = st.file_uploader("CSV or Parquet file", type=["csv", "parquet"], key=f"predict.batch.{version.ref}")
    job = _job_state(version, upload.file_id) if upload is not None else _job_state(version, "")
    if upload is None:
        return
    with shown_errors(stop=True):
        head, total = peek_table(upload.getvalue(), name=upload.name, rows=_PREVIEW_ROWS)
    match = views.match_columns(version, head.columns)
    report = st.container()
    column_map: dict[str, str] = {}
    if match.missing and match.extra:
        column_map = _column_mapping(version, upload.file_id, match, [str(c) for c in head.columns])
        if column_map:
            match = views.match_columns(version, head.columns, column_map=column_map)
    with report:
        if not _column_report(match):
            return
    st.markdown(f"**Preview** ({len(head)} of {total:,} rows)")
    st.dataframe(head, hide_index=True, width="stretch")
    running = job is not None and not job.done
    if st.button(f"Predict {total:,} rows", type="primary", icon=":material/play_arrow:", disabled=running):
        with shown_errors(stop=True):
            job = BatchJob(portal, version, upload.getvalue(), upload.name, preview_rows=_TABLE_ROWS,
                           column_map=column_map).start()
        st.session_state[keys.BATCH_RESULT] = (version.ref, upload.file_id, None, None, None, upload.name, job)
        if total <= portal.settings.chunk_rows:
            job.wait()  # one chunk: done in a moment, and there is no progress to show
        running = not job.done
    if job is None:
        return
    if running:
        _job_progress(job, f"predict.batch.cancel.{version.ref}")
        return
    if job.download is not None:  # the tuple tests and other pages read: preview, seconds, download
        st.session_state[keys.BATCH_RESULT] = (version.ref, upload.file_id, job.preview, job.seconds, job.download,
                                               upload.name, job)
    _show_batch(version, job)


# -- images --------------------------------------------------------------------------
def _predict_images(
    portal: Portal, version: ModelVersion, files: list[Any],
) -> tuple[pd.DataFrame, float, float, pd.DataFrame, str | None]:
    names = [f.name for f in files]
    began = time.perf_counter()
    batch = portal.images_to_array(version, [f.getvalue() for f in files], names=names)
    prepared = time.perf_counter() - began
    prediction = portal.predict(version, batch)
    frame = prediction.to_frame()
    frame.insert(0, "image", names)
    return frame, prepared, prediction.latency_s, ranked_frame(prediction, names), prediction.score_note


def _image_scores(files: list[Any], frame: pd.DataFrame, ref: str) -> None:
    shown = files if len(files) <= 4 else []
    if shown:
        cols = st.columns(len(shown))
        for i, (col, upload) in enumerate(zip(cols, shown, strict=True)):
            row = frame.iloc[i]
            col.image(upload.getvalue(), caption=upload.name, width=120)
            top = views.top_classes(row.to_dict())
            if top:
                with col:
                    chart(figures.top_k_bar(top, title=f"{upload.name}: top {len(top)}"), key=f"img.{ref}.{i}")
        return
    choice = st.selectbox("Top classes of", range(len(files)), format_func=lambda i: files[i].name)
    top = views.top_classes(frame.iloc[choice].to_dict())
    if top:
        chart(figures.top_k_bar(top, title=f"{files[choice].name}: top {len(top)}"), key=f"img.{ref}.pick")


def image_panel(portal: Portal, version: ModelVersion) -> None:
    """Drop images; preprocess them as the version says; show the top classes of each."""
    st.caption(describe_preprocessing(version.preprocessing, version.signature))
    types = [s.lstrip(".") for s in IMAGE_SUFFIXES]
    files = st.file_uploader("Drop one or several images", type=types, accept_multiple_files=True,
                             key=f"predict.images.{version.ref}")
    if not files:
        return
    tokens = tuple(f.file_id for f in files)
    cached = st.session_state.get(keys.IMAGE_RESULT)
    if not cached or cached[:2] != (version.ref, tokens):
        with shown_errors(stop=True):
            cached = (version.ref, tokens, *_predict_images(portal, version, files))
        st.session_state[keys.IMAGE_RESULT] = cached
    frame, prepared, latency, ranked, note = cached[2:]
    cols = st.columns(3)
    cols[0].metric("Images", len(files))
    cols[1].metric("Preprocessing", f"{prepared * 1e3:.1f} ms")
    cols[2].metric("Latency", f"{latency * 1e3:.1f} ms")
    _image_scores(files, frame, version.ref)
    if len(files) > 4:
        st.image([f.getvalue() for f in files[:24]], caption=[f.name for f in files[:24]], width=72)
    st.dataframe(frame, hide_index=True, width="stretch", column_config=result_columns(frame))
    st.download_button("Download image predictions (CSV)", data=frame_to_csv_bytes(ranked), mime="text/csv",
                       file_name=f"{version.name}-v{version.version}-image-predictions.csv",
                       icon=":material/download:", on_click="ignore", key=f"predict.images.csv.{version.ref}")
    st.caption(f"Model {version.ref} · {latency_text(latency, len(files))}" + (f" · {note}" if note else ""))


# -- raw tensors ---------------------------------------------------------------------
def tensor_panel(portal: Portal, version: ModelVersion) -> None:
    """Models whose inputs are neither a table nor images: feed .npy, .npz or .json files."""
    st.caption("This model's inputs are tensors: upload a `.npz` with one array per input name, a `.npy` "
               "for a single input, or a `.json` object of arrays.")
    upload = st.file_uploader("Input file", type=["npz", "npy", "json"], key=f"predict.tensor.{version.ref}")
    if upload is None:
        return
    with shown_errors(stop=True):
        data = read_input(upload.getvalue(), name=upload.name)
        prediction = portal.predict(version, data)
        frame = prediction.to_frame()
    st.metric("Latency", f"{prediction.latency_s * 1e3:.1f} ms")
    st.dataframe(frame.head(_TABLE_ROWS), hide_index=True, width="stretch")
    st.download_button("Download results (CSV)", data=frame_to_csv_bytes(frame),
                       file_name=f"{Path(upload.name).stem}-predictions.csv", mime="text/csv", on_click="ignore")
    st.caption(f"Model {version.ref} · {latency_text(prediction.latency_s, prediction.rows)}")
