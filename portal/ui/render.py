"""Renderers shared by the pages: signature tables, reports, version facts, results."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from .. import figures
from .. import views
from ..ingest.testrun import untested_warning
from ..serving.predict import Prediction
from ..storage.registry import ModelVersion
from .widgets import latency_text, result_columns

__all__ = [
    "chart",
    "prediction_summary",
    "signature_table",
    "validation_report",
    "version_details",
    "version_summary",
]


def chart(fig: Any, *, key: str | None = None) -> None:
    """A plotly figure at full width, without plotly's floating toolbar clutter."""
    if fig is not None:
        st.plotly_chart(fig, width="stretch", key=key, config={"displaylogo": False, "displayModeBar": "hover"})


def signature_table(signature: dict[str, Any]) -> None:
    st.dataframe(views.signature_frame(signature), hide_index=True, width="stretch")


def _opset_text(info: dict[str, Any]) -> str:
    opset = info.get("opset") or {}
    main = opset.get("ai.onnx") or opset.get("")
    return str(main) if main is not None else ", ".join(f"{d} {v}" for d, v in opset.items()) or "—"


def _facts(info: dict[str, Any], source_format: str, size: int, *, per_row: int = 5) -> None:
    items = [
        ("Uploaded as", source_format, None),
        ("ONNX size", views.format_bytes(size), None),
        ("Parameters", views.format_parameters(info),
         "Numbers stored as weight tensors; converters that keep coefficients in node attributes show —"),
        ("Nodes", f"{int(info.get('node_count', 0)):,}", None),
        ("Opset", _opset_text(info), "Version of the default ONNX operator set"),
    ]
    for start in range(0, len(items), per_row):
        for col, (label, value, help_text) in zip(st.columns(per_row), items[start : start + per_row], strict=False):
            col.metric(label, value, help=help_text)
    extra_domains = {d: v for d, v in (info.get("opset") or {}).items() if d not in ("ai.onnx", "")}
    details = [f"IR version {info.get('ir_version', '?')}"]
    if info.get("producer"):
        details.append(f"produced by {info['producer']}")
    if extra_domains:
        details.append("extra opsets: " + ", ".join(f"{d} {v}" for d, v in extra_domains.items()))
    st.caption(" · ".join(details))


def validation_report(report: Any) -> None:
    """What ingest found: facts, inputs/outputs, operators, warnings."""
    info = report.info
    _facts(info, report.source_format, int(info.get("size_bytes") or 0))
    st.markdown("**Inputs and outputs**")
    signature_table(info["signature"])
    if info.get("operators"):
        chart(figures.operator_histogram(info["operators"]), key="upload-operators")
    notes, warnings = views.split_conversion_notes(list(getattr(report, "warnings", None) or []))
    for note in notes:  # how the file was converted: information, nothing to act on
        st.info(note, icon=":material/info:")
    for warning in warnings:
        st.warning(warning, icon=":material/warning:")
    if not warnings:
        ran = (info.get("test_run") or {}).get("inputs", "zero-filled inputs (batch 1)")
        st.success(f"No warnings: the model loaded in the sandbox and ran once on {ran}.",
                   icon=":material/check_circle:")


def version_summary(version: ModelVersion) -> None:
    """The facts of one version in a narrow column."""
    _facts(version.info, version.source_format, version.size_bytes, per_row=2)


def version_details(version: ModelVersion) -> None:
    """Signature, names and preprocessing of one version."""
    untested = untested_warning(version.info)
    if untested:
        st.warning(untested, icon=":material/warning:")
    st.markdown("**Inputs and outputs**")
    signature_table(version.signature)
    lines = []
    if version.feature_names:
        lines.append(f"**Feature names** ({len(version.feature_names)}): " + ", ".join(version.feature_names))
    if version.class_labels:
        lines.append(f"**Class labels** ({len(version.class_labels)}): " + ", ".join(version.class_labels))
    if version.preprocessing:
        prep = version.preprocessing
        lines.append("**Image preprocessing:** " + ", ".join(f"{k} = {v}" for k, v in prep.items()))
    for line in lines:
        st.markdown(line)


def prediction_summary(prediction: Prediction, frame: pd.DataFrame, *, key: str) -> None:
    """One predicted row: the answer as a metric, the top classes as a chart, the table."""
    row = frame.iloc[0]
    cols = st.columns([1, 1, 2])
    if "prediction" in frame.columns:
        value = row["prediction"]
        shown = f"{value:,.4g}" if isinstance(value, (float, int)) and not isinstance(value, bool) else str(value)
        cols[0].metric("Prediction", shown)
    if "confidence" in frame.columns:
        cols[1].metric("Confidence", f"{float(row['confidence']):.1%}")
    cols[2].metric("Latency", f"{prediction.latency_s * 1e3:.1f} ms")
    top = views.top_classes(row.to_dict())
    if top:
        chart(figures.top_k_bar(top, title="Most probable classes"), key=key)
    st.dataframe(frame, hide_index=True, width="stretch", column_config=result_columns(frame))
    st.caption(f"Model {prediction.ref} · {latency_text(prediction.latency_s, prediction.rows)}")
