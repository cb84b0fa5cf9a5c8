"""Model serving endpoints: state, configuration updates and scale-to-zero of every endpoint from the endpoint list,
and each endpoint's own metrics export (requests, 4xx/5xx, latency, CPU, memory, GPU, provisioned concurrency),
parsed with prometheus-client's parser and re-served with workspace_id and endpoint labels.

The export reports the latest complete minute, its request counts being that minute's (gauges despite the `_total`
suffix). Counters here add each minute once, keyed by the sample timestamp, so the collector must run at least once a
minute; minutes it misses (while down) are not counted."""

from __future__ import annotations

import math

from prometheus_client.parser import text_string_to_metric_families

from .. import metrics as m
from ..sources.errors import Forbidden, NotFound
from ..cycle import OTHER, Cycle
from .base import Collector, NameFilter, register

PERCENTILES = (50, 90, 99)
# Metric export name -> (our gauge, scale to base units).
GAUGES = {
    "cpu_usage_percentage": (m.SERVING_CPU, 0.01),
    "mem_usage_percentage": (m.SERVING_MEMORY, 0.01),
    "gpu_usage_percentage": (m.SERVING_GPU, 0.01),
    "gpu_memory_usage_percentage": (m.SERVING_GPU_MEMORY, 0.01),
    "provisioned_concurrent_requests_total": (m.SERVING_CONCURRENCY, 1.0),
}
COUNTS = {"request_count_total": None, "request_4xx_count_total": "4xx", "request_5xx_count_total": "5xx"}
ENTITY_LABELS = ("served_entity_name", "served_model_name")


def quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """The q-quantile of a histogram given as sorted (upper bound, cumulative count) pairs, interpolated linearly
    within the bucket as Prometheus' histogram_quantile does; None without observations."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower          # the highest finite bound, as histogram_quantile answers
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


class Minute:
    """One served entity's samples from one export."""

    def __init__(self):
        self.stamp: float | None = None
        self.values: dict[str, float] = {}
        self.buckets: list[tuple[float, float]] = []


def parse_export(text: str, fallback_stamp: float) -> dict[str, Minute]:
    """served entity -> its minute. Raises ValueError on text that is not Prometheus/OpenMetrics exposition."""
    entities: dict[str, Minute] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            entity = next((sample.labels[k] for k in ENTITY_LABELS if k in sample.labels), "")
            minute = entities.setdefault(entity, Minute())
            stamp = float(sample.timestamp) if sample.timestamp is not None else fallback_stamp
            minute.stamp = stamp if minute.stamp is None else max(minute.stamp, stamp)
            if sample.name == "request_latency_ms_bucket":
                minute.buckets.append((float(sample.labels["le"]) / 1000.0, float(sample.value)))
            elif sample.name in GAUGES or sample.name in COUNTS:
                minute.values[sample.name] = float(sample.value)
    for minute in entities.values():
        minute.buckets.sort()
    return entities


@register
class ServingCollector(Collector):
    name = "serving"
    # The export shows one minute at a time: twice a minute sees every minute.
    default_interval = 30.0
    counts_work = True
    options = {"include": ("regex_list", []), "exclude": ("regex_list", [])}
    permission = ("CAN QUERY or higher on the serving endpoints to watch (CAN VIEW lists them; the metrics export "
                  "needs CAN QUERY); workspace admins see all")

    def check(self) -> str:
        endpoints = self.rest.serving_endpoints()
        if not endpoints:
            return "listed 0 serving endpoints"
        self.rest.serving_endpoint_metrics(endpoints[0]["name"])
        return f"listed {len(endpoints)} serving endpoints and read the metrics export of {endpoints[0]['name']}"

    def collect(self, cycle: Cycle, state: dict) -> None:
        since = self.counting_since(state)
        counted: dict[str, float] = state.setdefault("counted_until", {})   # endpoint/entity -> minute end counted
        wanted = NameFilter(self.settings.options["include"], self.settings.options["exclude"])
        listed: set[str] = set()
        for endpoint in self.rest.serving_endpoints():
            name = endpoint.get("name")
            if not isinstance(name, str) or not name or not wanted(name):
                continue
            listed.add(name)
            with cycle.item("serving endpoint"):
                self._emit_state(cycle, endpoint)
            try:
                entities = parse_export(self.rest.serving_endpoint_metrics(name),
                                        self.clock() // 60 * 60)
            except (NotFound, Forbidden, ValueError):
                # One endpoint's export (no permission, just deleted, garbled) does not hide the others.
                cycle.inc(m.SERVING_METRICS_ERRORS, endpoint_name=name)
                continue
            self._emit_minutes(cycle, name, entities, counted, since)
        for key in [k for k in counted if k.split("/")[0] not in listed]:
            del counted[key]
        for metric in (m.SERVING_REQUESTS, m.SERVING_ERRORS, m.SERVING_METRICS_ERRORS):
            cycle.keep_only(metric, lambda labels: labels["endpoint_name"] in listed
                            or labels["endpoint_name"] == OTHER)

    @staticmethod
    def _emit_state(cycle: Cycle, endpoint: dict) -> None:
        name = endpoint["name"]
        state = endpoint.get("state") or {}
        cycle.gauge(m.SERVING_ENDPOINT_INFO, 1, endpoint_name=name, task=endpoint.get("task") or "")
        cycle.gauge(m.SERVING_ENDPOINT_READY, 1 if state.get("ready") == "READY" else 0, endpoint_name=name)
        if state.get("config_update"):
            cycle.gauge(m.SERVING_CONFIG_UPDATE, 1, endpoint_name=name, state=state["config_update"])
        for entity in (endpoint.get("config") or {}).get("served_entities") or []:
            if "scale_to_zero_enabled" in entity:
                cycle.gauge(m.SERVING_SCALE_TO_ZERO, 1 if entity["scale_to_zero_enabled"] else 0,
                            endpoint_name=name, served_entity=entity.get("name") or "")

    @staticmethod
    def _emit_minutes(cycle: Cycle, name: str, entities: dict[str, Minute], counted: dict[str, float],
                      since: float) -> None:
        latest = None
        for entity, minute in entities.items():
            labels = {"endpoint_name": name, "served_entity": entity}
            for sample_name, (metric, scale) in GAUGES.items():
                if sample_name in minute.values:
                    cycle.gauge(metric, minute.values[sample_name] * scale, **labels)
            for percentile in PERCENTILES:
                value = quantile(percentile / 100, minute.buckets)
                if value is not None:
                    cycle.gauge(m.SERVING_LATENCY, value, percentile=str(percentile), **labels)
            for status in ("4xx", "5xx"):        # so that an entity's first errors are an increase
                cycle.start_at_zero(m.SERVING_ERRORS, status_class=status, **labels)
            if minute.stamp is None:
                continue
            latest = minute.stamp if latest is None else max(latest, minute.stamp)
            key = f"{name}/{entity}"
            if minute.stamp < since or minute.stamp <= counted.get(key, -math.inf):
                continue
            with cycle.item("serving minute"):
                for sample_name, status in COUNTS.items():
                    value = minute.values.get(sample_name, 0.0)
                    if status is None:
                        cycle.inc(m.SERVING_REQUESTS, value, **labels)
                    else:
                        cycle.inc(m.SERVING_ERRORS, value, status_class=status, **labels)
                counted[key] = minute.stamp
        if latest is not None:
            cycle.gauge(m.SERVING_METRICS_LATEST, latest, endpoint_name=name)
