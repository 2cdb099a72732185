"""The audit trail for the pages: filters, the table, the CSV export, and what a non-admin may see.

Filters go to :meth:`portal.storage.registry.Registry.audit_log`, which compares them
literally (``%``, ``_`` and quotes are plain characters, never SQL patterns).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import pandas as pd

from ..serving.dataio import frame_to_csv_bytes
from ..storage.registry import AuditEvent, ModelSummary, Registry

__all__ = ["MODEL_ACTIONS", "audit_frame", "audit_csv", "find_events", "model_of", "visible_events"]

MODEL_ACTIONS = ("version.", "variant.", "alias.", "model.")
COLUMNS = ["When", "Who", "What", "Target", "Detail"]


def model_of(event: AuditEvent) -> str | None:
    """The model an event is about (``name``, ``name:3`` or ``name@alias`` targets), or None."""
    if not event.action.startswith(MODEL_ACTIONS):
        return None
    name = event.target
    for sep in ("@", ":"):
        name = name.split(sep, 1)[0]
    return name


def visible_events(events: Sequence[AuditEvent], models: Sequence[ModelSummary], *,
                   everything: bool) -> list[AuditEvent]:
    """The events a user may see: all for an admin, else those about the ``models`` they can see."""
    if everything:
        return list(events)
    names = {m.name for m in models}
    return [e for e in events if model_of(e) in names]


def find_events(registry: Registry, *, who: str = "", action: str = "", model: str = "",
                since: dt.date | None = None, until: dt.date | None = None, limit: int = 1000) -> list[AuditEvent]:
    """Audit events matching every given filter (blank: any), newest first; dates are whole UTC days."""
    start = dt.datetime.combine(since, dt.time.min) if since else None
    end = dt.datetime.combine(until, dt.time.max) if until else None
    return registry.audit_log(actor=who.strip() or None, action=action.strip() or None,
                              target=model.strip() or None, since=start, until=end, limit=limit)


def audit_frame(events: Sequence[AuditEvent]) -> pd.DataFrame:
    """One row per event: when, who, what, target and the detail as ``key=value`` text."""
    rows: list[dict[str, Any]] = [
        {"When": e.ts, "Who": e.actor, "What": e.action, "Target": e.target,
         "Detail": ", ".join(f"{k}={v}" for k, v in sorted(e.detail.items()))}
        for e in events
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def audit_csv(events: Sequence[AuditEvent]) -> bytes:
    """The events as CSV for a download; cells a spreadsheet would run as formulas are escaped."""
    return frame_to_csv_bytes(audit_frame(events))
