"""The Compare page's graph diff: a parent and one variant side by side, node by node.

The diff itself comes from the library (:func:`portal.compress.diffs.graph_diff`, computed
in the sandboxed child); these panels show its counts by operator type, the changed
nodes grouped by fate, and an int8-budgeted variant's sensitivity report.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from ..compress.comparison import Comparison
from ..compress.graphdiff import FATES, GraphDiff
from ..core import Portal
from ..storage.registry import ModelVersion
from . import keys
from .render import chart
from .widgets import shown_errors

__all__ = ["budget_report", "graph_diff_panel", "op_count_frame"]

_FATE_TITLES = {
    "quantized": "Quantized", "excluded": "Kept in float (excluded)", "fused": "Fused", "pruned": "Pruned",
    "converted": "Converted to float16", "replaced": "Replaced by the student", "removed": "Removed",
    "unchanged": "Unchanged",
}
_FATE_ICONS = {"quantized": ":material/compress:", "excluded": ":material/do_not_disturb_on:",
               "fused": ":material/merge:", "pruned": ":material/content_cut:", "converted": ":material/swap_horiz:",
               "replaced": ":material/school:",
               "removed": ":material/delete:"}


def graph_diff_panel(portal: Portal, version: ModelVersion, comparison: Comparison) -> None:
    """Pick a variant (the recommended one first), then its graph beside its parent's."""
    methods = {m.ref: m.method or "" for m in comparison.measurements[1:]}
    if not methods:
        st.caption(":material/info: No variant in this comparison, so there is no graph to compare.")
        return
    refs, best = list(methods), comparison.advice.best
    ref = st.selectbox("Variant", refs, index=refs.index(best) if best in refs else 0, key=keys.COMPARE_DIFF,
                       format_func=lambda r: f"{r} ({methods[r]})" + (" · recommended" if r == best else ""))
    diff: GraphDiff | None = None
    with shown_errors():
        with st.spinner(f"Comparing the graph of {ref} with {version.ref} …"):
            diff = portal.variants.diff(ref)
        variant = portal.get(ref)
    if diff is None:
        return
    _counts_row(diff)
    left, right = st.columns(2)
    parent_ref = variant.parent or version.ref
    left.markdown(f"**Parent {parent_ref}** · {diff.node_count[0]} nodes")
    right.markdown(f"**Variant {ref}** ({variant.method}) · {diff.node_count[1]} nodes")
    frame = op_count_frame(diff)
    left.dataframe(frame[frame["Parent"] > 0][["Operator", "Parent"]], hide_index=True, width="stretch")
    shown = frame[(frame["Variant"] > 0) | (frame["Δ"] != 0)][["Operator", "Variant", "Δ"]]  # and what it lost
    right.dataframe(shown.style.map(_delta_color, subset=["Δ"]), hide_index=True, width="stretch")
    chart(op_count_chart(diff, parent_ref, ref), key=f"compare.diff.ops.{ref}")
    _changed_nodes(diff)
    stats = (variant.meta.get("variant") or {}).get("stats") or {}
    if stats.get("budget"):
        budget_report(stats["budget"])


def _counts_row(diff: GraphDiff) -> None:
    shown = [f for f in FATES if diff.fates.get(f)] + (["added"] if diff.fates.get("added") else [])
    cols = st.columns(max(1, len(shown)))
    for col, fate in zip(cols, shown, strict=False):
        col.metric(_FATE_TITLES.get(fate, "Added").split(" (")[0], diff.fates[fate])
    st.caption(diff.summary())


def op_count_frame(diff: GraphDiff) -> pd.DataFrame:
    """Operator, parent count, variant count and the change, changed operators first."""
    return pd.DataFrame(diff.op_counts(), columns=["Operator", "Parent", "Variant", "Δ"])


def _delta_color(value: Any) -> str:
    if not isinstance(value, int | float) or value == 0:
        return ""
    return "color: #059669; font-weight: 600" if value < 0 else "color: #dc2626; font-weight: 600"


def op_count_chart(diff: GraphDiff, parent: str, variant: str) -> go.Figure:
    """Grouped bars: nodes per operator type, parent and variant."""
    rows = [r for r in diff.op_counts()][:30]
    ops = [r[0] for r in rows]
    fig = go.Figure([go.Bar(name=parent, x=ops, y=[r[1] for r in rows], marker_color="#94a3b8"),
                     go.Bar(name=variant, x=ops, y=[r[2] for r in rows], marker_color="#7c3aed")])
    fig.update_layout(barmode="group", height=340, margin={"l": 10, "r": 10, "t": 70, "b": 10},
                      title={"text": "Nodes by operator type", "y": 0.97, "yanchor": "top"},
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "right", "x": 1},
                      yaxis_title="nodes")
    return fig


def _changed_nodes(diff: GraphDiff) -> None:
    for fate in FATES[:-1]:
        nodes = diff.of_fate(fate)
        if not nodes:
            continue
        folded = fate in ("fused", "replaced")  # long lists of what moved, rather than what changed
        with st.expander(f"{_FATE_TITLES[fate]} · {len(nodes)}", icon=_FATE_ICONS[fate], expanded=not folded):
            st.dataframe(pd.DataFrame([{"Node": c.name, "Before": c.op_type, "After": c.after or "—",
                                        "Now in": c.into or "—", "Detail": c.detail} for c in nodes]),
                         hide_index=True, width="stretch")
    if diff.added:
        with st.expander(f"Added · {len(diff.added)}", icon=":material/add_circle:", expanded=False):
            st.dataframe(pd.DataFrame([{"Node": a.name, "Operator": a.op_type, "Role": a.detail}
                                       for a in diff.added]), hide_index=True, width="stretch")
    st.caption(f"{diff.unchanged} node(s) unchanged." + (" The lists stop at the first 5,000 nodes; the counts are "
                                                        "complete." if diff.truncated else ""))


def budget_report(budget: Mapping[str, Any]) -> None:
    """int8-budgeted's sensitivity report: the budget, the agreement reached, the nodes kept in float and why."""
    st.markdown("**Sensitivity report (int8-budgeted)**")
    tolerance = float(budget.get("tolerance", 0))
    plain, reached = budget.get("plain_agreement"), budget.get("agreement")
    cols = st.columns(4)
    cols[0].metric("Budget: agreement loss at most", f"{tolerance:.1%}")
    cols[1].metric("All-int8 agreement", "—" if plain is None else f"{float(plain):.1%}")
    cols[2].metric("This variant's agreement", "—" if reached is None else f"{float(reached):.1%}",
                   delta=None if reached is None or plain is None else f"{float(reached) - float(plain):+.1%}")
    cols[3].metric("Nodes quantized", f"{budget.get('quantized', 0)} of {budget.get('quantizable', 0)}")
    excluded = list(budget.get("excluded") or [])
    if excluded:
        st.dataframe(pd.DataFrame([{"Node": e.get("node"), "Operator": e.get("op_type"),
                                    "Agreement loss alone": e.get("loss"), "Why": e.get("reason")}
                                   for e in excluded]), hide_index=True, width="stretch",
                     column_config={"Agreement loss alone": st.column_config.NumberColumn(format="percent")})
    else:
        st.caption("No node had to stay in float: the all-int8 model is within the budget.")
    candidates = list(budget.get("candidates") or [])
    if candidates:
        st.dataframe(pd.DataFrame([{"Nodes kept in float": c.get("excluded"), "Agreement": c.get("agreement"),
                                    "p50 ms": c.get("p50_ms")} for c in candidates]), hide_index=True,
                     width="stretch", column_config={
                         "Agreement": st.column_config.ProgressColumn(format="percent", min_value=0.0, max_value=1.0),
                         "p50 ms": st.column_config.NumberColumn(format="%.3f")})
    if budget.get("seconds") is not None:
        st.caption(f"The search took {float(budget['seconds']):.1f} s.")
