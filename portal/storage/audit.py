"""The append-only audit trail: one row per change, written in the change's own transaction.

The registry and the account store both add events here (the accounts with
their own clock); :func:`events` reads them back, newest first.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .db import AuditRow, utcnow
from .records import AuditEvent

__all__ = ["add_event", "events"]


def add_event(s: Session, actor: str, action: str, target: str, detail: dict[str, Any], *,
              ts: dt.datetime | None = None) -> None:
    """Add one audit row to the open transaction ``s`` (at ``ts``, default now)."""
    s.add(AuditRow(actor=actor or "", action=action, target=target, detail=detail, ts=ts or utcnow()))


def events(
    s: Session,
    *,
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: int = 1000,
) -> list[AuditEvent]:
    """Audit events, newest first; filters are literal (never SQL patterns).

    ``target`` also matches the versions and aliases of a model (``name:N``, ``name@alias``).
    """
    query = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
    if actor:
        query = query.where(AuditRow.actor == actor)
    if action:
        query = query.where(AuditRow.action == action)
    if target:
        query = query.where(
            (AuditRow.target == target)
            | func.substr(AuditRow.target, 1, len(target) + 1).in_([target + ":", target + "@"])
        )
    if since:
        query = query.where(AuditRow.ts >= since)
    if until:
        query = query.where(AuditRow.ts <= until)
    return [AuditEvent(r.id, r.ts, r.actor, r.action, r.target, dict(r.detail or {})) for r in s.scalars(query).all()]
