"""Prometheus metrics of one API process, in a registry of its own.

Per-model series are labelled only with models that resolved (an unknown name
sent by a client never becomes a label), and routes are labelled with their
template (``/v2/models/{name}/infer``), so the number of series stays bounded.
The per-model request series carry a ``protocol`` label (``http`` or ``grpc``;
gRPC's ``route`` is the method, ``ModelInfer``, and its ``status`` the gRPC
code name, ``OK`` or ``INVALID_ARGUMENT``); each door also has series of its own
(``portal_http_*``, ``portal_grpc_*``).
Each scrape shows the names of the models its caller may see; the series of
every other model (private to someone else, or deleted) are summed under
``model="(hidden)"``, so ``/metrics`` never tells a name to someone who could
not list it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

__all__ = ["HIDDEN", "ApiMetrics"]

HIDDEN = "(hidden)"  # the model label of the series of models the caller may not see

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class _CacheCollector(Collector):
    """Reads the session cache's counters at scrape time."""

    def __init__(self, cache: Any) -> None:
        self.cache = cache

    def collect(self) -> Iterator[Any]:
        stats = self.cache.stats()
        for name, value, doc in (
            ("portal_cache_hits", stats.hits, "Session cache lookups that found a loaded session."),
            ("portal_cache_misses", stats.misses, "Session cache lookups that had to load the model."),
            ("portal_cache_evictions", stats.evictions, "Sessions dropped to stay within the cache budget."),
            ("portal_cache_loads", stats.loads, "Models loaded into onnxruntime."),
            ("portal_cache_load_seconds", stats.load_seconds, "Seconds spent loading models."),
        ):
            yield CounterMetricFamily(name, doc, value=value)
        yield GaugeMetricFamily("portal_cache_loaded_bytes", "Bytes of the models loaded now.", value=stats.bytes)
        yield GaugeMetricFamily("portal_cache_loaded_models", "Sessions loaded now.", value=stats.count)
        yield GaugeMetricFamily("portal_cache_max_bytes", "Byte budget of the session cache.", value=stats.max_bytes)


class _Redacted(Collector):
    """Another collector's metrics with the names of models ``visible`` refuses summed under ``HIDDEN``."""

    def __init__(self, source: CollectorRegistry, visible: Callable[[str], bool]) -> None:
        self.source = source
        self.visible = visible

    def collect(self) -> Iterator[Metric]:
        for family in self.source.collect():
            if not any("model" in sample.labels for sample in family.samples):
                yield family
                continue
            merged: dict[tuple[str, tuple[tuple[str, str], ...]], Sample] = {}
            for sample in family.samples:
                labels = sample.labels
                if "model" in labels and not self.visible(labels["model"]):
                    labels = {**labels, "model": HIDDEN, "version": ""}
                key = (sample.name, tuple(sorted(labels.items())))
                seen = merged.get(key)
                if seen is None:
                    merged[key] = sample._replace(labels=labels, exemplar=None)
                elif sample.name.endswith("_created"):  # a timestamp: the earliest, not a sum
                    merged[key] = seen._replace(value=min(seen.value, sample.value))
                else:
                    merged[key] = seen._replace(value=seen.value + sample.value)
            redacted = Metric(family.name, family.documentation, family.type, family.unit)
            redacted.samples = list(merged.values())
            yield redacted


class ApiMetrics:
    """The counters, histograms and gauges the API updates."""

    def __init__(self, cache: Any) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._children: dict[tuple[str, str, int, str | None, str | None, str], tuple[Any, ...]] = {}
        self._grpc_children: dict[tuple[str, str, str | None, str | None], tuple[Any, ...]] = {}
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        r.register(_CacheCollector(cache))
        self.requests = Counter(
            "portal_http_requests", "HTTP requests by route and status.", ["method", "route", "status"], registry=r
        )
        self.latency = Histogram(
            "portal_http_request_duration_seconds", "HTTP request latency by route.", ["method", "route"],
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.in_flight = Gauge("portal_http_requests_in_flight", "HTTP requests being served now.", registry=r)
        self.rejected = Counter(
            "portal_http_rejected", "Requests refused by a limit (unauthenticated, too_large, busy, slow_body, timeout).",
            ["reason"], registry=r,
        )
        self.grpc_requests = Counter(
            "portal_grpc_requests", "gRPC calls by method and status code.", ["method", "code"], registry=r
        )
        self.grpc_latency = Histogram(
            "portal_grpc_request_duration_seconds", "gRPC call latency by method.", ["method"],
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.grpc_in_flight = Gauge("portal_grpc_requests_in_flight", "gRPC calls being served now.", registry=r)
        self.grpc_rejected = Counter(
            "portal_grpc_rejected", "gRPC calls refused by a limit (unauthenticated, too_large, busy, slow_body, timeout).",
            ["reason"], registry=r,
        )
        self.model_requests = Counter(
            "portal_model_requests", "Requests per model version, route (gRPC: method), status and protocol.",
            ["model", "version", "route", "status", "protocol"], registry=r,
        )
        self.model_errors = Counter(
            "portal_model_errors", "Failed requests (HTTP status >= 400, gRPC code not OK) per model version and route.",
            ["model", "version", "route", "status", "protocol"], registry=r,
        )
        self.model_latency = Histogram(
            "portal_model_request_duration_seconds", "Request latency per model version, route and protocol.",
            ["model", "version", "route", "protocol"], buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.inference = Histogram(
            "portal_inference_duration_seconds", "Time in onnxruntime per model version.",
            ["model", "version"], buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.rows = Counter("portal_inference_rows", "Rows predicted per model version.", ["model", "version"], registry=r)
        self.batch_rows = Histogram(
            "portal_batch_rows", "Rows per onnxruntime call of adaptively batched models.", ["model", "version"],
            buckets=_BATCH_BUCKETS, registry=r,
        )

    def rejected_counter(self, source: str) -> Counter:
        """The counter of refusals of the door a prediction's ``source`` names (``grpc``, else HTTP)."""
        return self.grpc_rejected if source == "grpc" else self.rejected

    def observe(self, *, method: str, route: str, status: int, seconds: float, model: str | None, version: str | None) -> None:
        """Record one finished HTTP request."""
        key = (method, route, status, model, version, "http")
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = self._make_children(key)
        _observe(children, seconds)

    def observe_grpc(self, *, method: str, code: str, seconds: float, model: str | None, version: str | None) -> None:
        """Record one finished gRPC call (``code``: the status code's name, ``OK`` on success)."""
        key = (method, code, model, version)
        children = self._grpc_children.get(key)
        if children is None:
            door = [self.grpc_requests.labels(method, code), self.grpc_latency.labels(method)]
            children = self._grpc_children[key] = (*door, *self._model_children(model, version, method, code,
                                                                                code != "OK", "grpc"))
        _observe(children, seconds)

    def _make_children(self, key: tuple[str, str, int, str | None, str | None, str]) -> tuple[Any, ...]:
        # labels() costs a lock and a dict lookup per metric; a request touches up to five
        method, route, status, model, version, protocol = key
        code = str(status)
        door = [self.requests.labels(method, route, code), self.latency.labels(method, route)]
        return (*door, *self._model_children(model, version, route, code, status >= 400, protocol))

    def _model_children(self, model: str | None, version: str | None, route: str, code: str, failed: bool,
                        protocol: str) -> list[Any]:
        if model is None:
            return []
        v = version or ""
        children = [self.model_requests.labels(model, v, route, code, protocol),
                    self.model_latency.labels(model, v, route, protocol)]
        if failed:
            children.append(self.model_errors.labels(model, v, route, code, protocol))
        return children

    def render(self, *, visible: Callable[[str], bool] | None = None) -> bytes:
        """The Prometheus text; with ``visible``, models it refuses are summed under ``model="(hidden)"``."""
        if visible is None:
            return generate_latest(self.registry)
        return generate_latest(_Redacted(self.registry, visible))


def _observe(children: tuple[Any, ...], seconds: float) -> None:
    counter, histogram, *per_model = children
    counter.inc()
    histogram.observe(seconds)
    if per_model:
        per_model[0].inc()
        per_model[1].observe(seconds)
        if len(per_model) == 3:
            per_model[2].inc()
