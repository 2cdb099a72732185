"""The evaluation gate on the pages: its rules when comparing, its results, and its word before an alias moves.

The library (:mod:`portal.compress.gate`) parses the rules, holds each variant to
them and keeps the results with the comparison; ``Portal.set_alias`` refuses a
variant that failed its latest gated comparison unless told to override the gate.
These panels ask for the rules (only when there are labels to score), show what
the gate decided, and show it again before any alias is moved.
"""

from __future__ import annotations

import streamlit as st

from ..compress import variants
from ..compress.gate import StoredGate, latest_gate
from ..core import Portal
from ..storage.registry import ModelVersion
from . import keys

__all__ = ["gate_notice", "gate_results", "gate_rules_input", "override_checkbox", "reference_labelled"]

_LABEL_COLUMNS = ("target", "label")  # the columns a comparison reads as labels in reference data
_PLACEHOLDER = "accuracy>=parent-0.01\naccuracy>=0.9"


def reference_labelled(portal: Portal, version: ModelVersion) -> bool:
    """Whether the version's reference data carries a label column a comparison scores against."""
    frame = portal.reference_frame(version.ref)
    if frame is None:
        return False
    features = set(version.feature_names or ()) | {s["name"] for s in version.signature["inputs"]}
    return any(c in frame.columns and c not in features for c in _LABEL_COLUMNS)


def gate_rules_input(*, labelled: bool, task: str, off: bool) -> list[str] | None:
    """The gate's rules, one per line (None: no gate); only offered when the evaluation set has labels."""
    metrics = {"classification": "accuracy", "regression": "r2, mae"}.get(task, "accuracy, r2, mae")
    why = "" if labelled else (" Needs labels: pick the label column of the evaluation data, or add reference data "
                               "with a 'target' or 'label' column.")
    text = st.text_area(
        "Evaluation gate (optional): one rule per line", key=keys.COMPARE_GATE, disabled=off or not labelled,
        placeholder=_PLACEHOLDER, height=90,
        help=(f"Thresholds a variant must meet on the labelled rows to be promoted, on {metrics}: absolute "
              "(accuracy>=0.9) or relative to the parent (accuracy>=parent-0.01, mae<=parent*1.05)." + why))
    if not labelled:
        st.caption(f":material/rule: The gate is off.{why}")
        return None
    rules = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return rules or None


def gate_results(comparison: variants.Comparison) -> None:
    """What the gate of this comparison decided for each variant (nothing when it had no gate)."""
    if not comparison.gate_rules:
        return
    with st.container(border=True):
        st.markdown("**Evaluation gate:** " + " · ".join(f"`{r}`" for r in comparison.gate_rules))
        for ref, result in comparison.gate.items():
            if result.passed:
                st.markdown(f":material/check_circle: **{ref}** ({result.method}) passes the gate")
            else:
                st.markdown(f":material/cancel: **{ref}** ({result.method}) fails the gate: {result.reason}")


def gate_notice(portal: Portal, ref: str) -> StoredGate | None:
    """Show the stored gate result of the variant ``ref`` before an alias moves; the result, None if never gated."""
    stored = latest_gate(portal.registry.engine, ref)
    if stored is None:
        return None
    when = f"{stored.measured_at:%Y-%m-%d %H:%M} UTC"
    if stored.result.passed:
        st.success(f"{ref} passed the evaluation gate of the comparison of {stored.parent} ({when}): "
                   f"{'; '.join(stored.rules)}.", icon=":material/verified:")
    else:
        st.error(f"{ref} failed the evaluation gate of the comparison of {stored.parent} ({when}): "
                 f"{stored.result.reason}.", icon=":material/gpp_bad:")
    return stored


def override_checkbox(model: str) -> bool:
    """The explicit consent needed to point an alias at a variant that failed its gate (audited)."""
    return st.checkbox("Override the gate: point the alias at it anyway (recorded in the audit trail)",
                       key=keys.ALIAS_OVERRIDE + model)
