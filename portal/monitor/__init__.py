"""Monitoring of models in use: the prediction log, and the traffic and input drift read from it.

This package owns what happens to a version after it is registered: every
prediction request is logged (off the hot path, inputs sampled), and from that
log come traffic, latency, error and cache statistics over a time window and
the drift of recent inputs from the version's reference data. It asks the portal
only for what :class:`~portal.services.ModelServices` offers, so it never
imports :mod:`portal.core`; ``Portal.monitoring`` is a :class:`Monitoring` over it.

Modules:

    log        PredictionLog: one row per request, written in batches by a background thread
    stats      TimeRange and TrafficSummary: requests, rows, latency percentiles, errors, cache use
    drift      input drift: per-feature PSI of the sampled recent inputs against the reference data
    service    Monitoring: the functions of stats and drift for one user
    figures    plotly figures of traffic, latency, errors and drift (no streamlit)

The serving process imports :mod:`portal.monitor.log` alone, so this package
imports nothing up front: ``Monitoring``, ``TimeRange``, ``TrafficSummary`` and
``DriftReport`` load their modules (pandas, the SQL queries) on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .drift import DriftReport
    from .service import Monitoring
    from .stats import TimeRange, TrafficSummary

__all__ = ["DriftReport", "Monitoring", "TimeRange", "TrafficSummary"]

_HOMES = {"DriftReport": "drift", "Monitoring": "service", "TimeRange": "stats", "TrafficSummary": "stats"}


def __getattr__(name: str) -> Any:
    """Load a re-exported name's module on first use (PEP 562), so ``portal.monitor.log`` stays light."""
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
