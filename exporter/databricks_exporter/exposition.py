"""Renders the store in the Prometheus text format or OpenMetrics, once per store update rather than once per scrape."""

from __future__ import annotations

import gzip
import threading

from prometheus_client import openmetrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from . import metrics as m
from .store import Family, MetricStore

TEXT = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def _bound(value: float) -> str:
    return "+Inf" if value == float("inf") else repr(float(value))


def to_client_family(family: Family):
    """Our family as a prometheus_client family, so its battle-tested formatters do the escaping and layout."""
    metric = family.metric
    labels = list(metric.labels)
    if metric.type == m.COUNTER:
        out = CounterMetricFamily(metric.name, metric.help, labels=labels)
        for values, value in family.samples:
            out.add_metric(list(values), value)
    elif metric.type == m.HISTOGRAM:
        out = HistogramMetricFamily(metric.name, metric.help, labels=labels, unit=metric.unit)
        for values, hist in family.samples:
            out.add_metric(list(values), [(_bound(b), c) for b, c in hist.cumulative(metric)], hist.sum)
    else:
        out = GaugeMetricFamily(metric.name, metric.help, labels=labels, unit=metric.unit)
        for values, value in family.samples:
            out.add_metric(list(values), value)
    return out


class _Snapshot(Collector):
    def __init__(self, families: list[Family]):
        self._families = families

    def collect(self):
        return [to_client_family(f) for f in self._families]


class Renderer:
    """Caches the rendered exposition (plain and gzipped) per format until the store changes."""

    def __init__(self, store: MetricStore):
        self.store = store
        self._lock = threading.Lock()
        self._cache: dict[tuple[bool, bool], tuple[int, bytes]] = {}

    def render(self, openmetrics_format: bool = False, gzipped: bool = False) -> bytes:
        key = (openmetrics_format, gzipped)
        with self._lock:
            version = self.store.version
            cached = self._cache.get(key)
            if cached and cached[0] == version:
                return cached[1]
            if gzipped:
                body = gzip.compress(self.render_locked(openmetrics_format, version), compresslevel=5)
            else:
                body = self.render_locked(openmetrics_format, version)
            self._cache[key] = (version, body)
            return body

    def render_locked(self, openmetrics_format: bool, version: int) -> bytes:
        cached = self._cache.get((openmetrics_format, False))
        if cached and cached[0] == version:
            return cached[1]
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Snapshot(self.store.families()))
        body = openmetrics.exposition.generate_latest(registry) if openmetrics_format else generate_latest(registry)
        self._cache[(openmetrics_format, False)] = (version, body)
        return body


def wants_openmetrics(accept: str | None) -> bool:
    return bool(accept) and "application/openmetrics-text" in accept
