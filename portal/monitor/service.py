""":class:`Monitoring`: the log's statistics and the input drift of models, for one user.

Each method is the function of :mod:`portal.monitor.stats` or
:mod:`portal.monitor.drift` of the same purpose with the
:class:`~portal.services.ModelServices` given (``Portal.monitoring`` is one,
scoped to its signed-in user, who sees the traffic of the models they may see).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..services import ModelServices
from .drift import DriftReport, input_drift, recent_inputs
from .stats import TimeRange, TrafficSummary, logged_versions, now, prune_log, summarize

if TYPE_CHECKING:
    import pandas as pd

    from ..storage.registry import ModelVersion

__all__ = ["Monitoring"]


class Monitoring:
    """Traffic, latency, errors and input drift of the models ``services``' user may see.

        >>> window = portal.monitoring.window("24h")
        >>> portal.monitoring.summary("wine", None, window).describe()
        >>> portal.monitoring.drift("wine", window).describe()
    """

    def __init__(self, services: ModelServices) -> None:
        self.services = services

    def now(self) -> float:
        """:func:`~portal.monitor.stats.now`: the log's clock, in epoch seconds."""
        return now(self.services)

    def window(self, since: str) -> TimeRange:
        """:meth:`TimeRange.parse` up to :meth:`now`: ``24h``, ``7d`` or a UTC date such as ``2026-11-01``."""
        return TimeRange.parse(since, now=self.now())

    def summary(self, model: str, version: int | None, window: TimeRange, **options: Any) -> TrafficSummary:
        """:func:`~portal.monitor.stats.summarize`: traffic of ``model`` (one version, or all when None)."""
        return summarize(self.services, model, version, window, **options)

    def versions(self, model: str) -> list[int]:
        """:func:`~portal.monitor.stats.logged_versions`: versions of ``model`` with rows in the log, newest first."""
        return logged_versions(self.services, model)

    def prune(self, **options: Any) -> int:
        """:func:`~portal.monitor.stats.prune_log`: delete old log rows (admins only); return how many."""
        return prune_log(self.services, **options)

    def recent_inputs(self, version: ModelVersion, window: TimeRange, **options: Any) -> pd.DataFrame:
        """:func:`~portal.monitor.drift.recent_inputs`: the sampled inputs of ``version`` in ``window``."""
        return recent_inputs(self.services, version, window, **options)

    def drift(self, ref: str, window: TimeRange, **options: Any) -> DriftReport:
        """:func:`~portal.monitor.drift.input_drift`: per-feature PSI of recent inputs against the reference data."""
        return input_drift(self.services, ref, window, **options)
