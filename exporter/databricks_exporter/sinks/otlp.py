"""OTLP sink: the store's families as OpenTelemetry metrics (counters as monotonic cumulative sums, gauges as gauges,
histograms as explicit-bucket histograms with the /metrics buckets), exported over OTLP/HTTP, or gRPC when asked.

The SDK's instruments cannot take cumulative values from a snapshot, so MetricsData is built here from the families
and handed to the SDK's OTLP exporter, which does the encoding, headers, TLS, compression and retries.

Series keep their /metrics names and labels (workspace_id included), so queries written against /metrics work on
the backend too. They are grouped into one resource per workspace, with databricks.workspace.id set, so backends that
key on resources (Datadog hosts, Honeycomb datasets, Grafana Cloud target_info) see one entity per workspace; the
exporter's own series without a workspace form a resource of their own. Cumulative points start at the collector's
counting_since when the store knows it (persisted, so stable across restarts), else at the exporter's start."""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
import time
import urllib.parse
from typing import Any

import requests

from .. import __version__
from .. import metrics as m
from ..config import ConfigError, expand_env
from ..cycle import Family
from .base import PROCESS_START, MetricFilter, PushError, Sink, describe, register

log = logging.getLogger(__name__)

PROTOCOLS = ("http/protobuf", "grpc")
COMPRESSIONS = ("none", "gzip", "deflate")
WORKSPACE_ATTRIBUTE = "databricks.workspace.id"
SCOPE = "databricks_exporter"
# Loggers the SDK's exporters report failures on; during our own exports their records become our one log line.
SDK_LOGGERS = ("opentelemetry.exporter.otlp.proto.http.metric_exporter",
               "opentelemetry.exporter.otlp.proto.grpc.exporter",
               "opentelemetry.exporter.otlp.proto.grpc.metric_exporter")


def otel_unit(metric: m.Metric) -> str:
    """UCUM units as OpenTelemetry spells them."""
    if metric.unit == "seconds":
        return "s"
    if metric.unit == "bytes":
        return "By"
    if metric.name.endswith("_ratio"):
        return "1"
    return ""


def grpc_available() -> bool:
    try:
        return importlib.util.find_spec("opentelemetry.exporter.otlp.proto.grpc") is not None
    except ModuleNotFoundError:
        return False


class _CaptureSdkLogs(logging.Filter):
    """Swallows the SDK exporter's own log records while this sink exports, keeping their text as the failure
    reason: the sink logs a failure once per change, the SDK would log it on every push and every retry."""

    def __init__(self):
        super().__init__()
        self.thread: int | None = None
        self.messages: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.thread != self.thread:
            return True
        self.messages.append(record.getMessage())
        return False


class _ObservedSession(requests.Session):
    """Remembers how the last request ended, because the SDK's exporter reports only success or failure."""
    last_outcome = ""

    def send(self, request, **kwargs):
        try:
            response = super().send(request, **kwargs)
        except Exception as exc:
            self.last_outcome = describe(exc)
            raise
        self.last_outcome = f"HTTP {response.status_code} {response.reason}".strip()
        return response


@register
class OtlpSink(Sink):
    name = "otlp"
    options = {
        "protocol": ("str", None),            # default: OTEL_EXPORTER_OTLP_[METRICS_]PROTOCOL, else http/protobuf
        "endpoint": ("str", None),            # default: OTEL_EXPORTER_OTLP_[METRICS_]ENDPOINT
        "headers": ("dict", {}),              # merged over OTEL_EXPORTER_OTLP_[METRICS_]HEADERS
        "timeout": ("duration", None),        # default: OTEL_EXPORTER_OTLP_[METRICS_]TIMEOUT, else 10s
        "compression": ("str", None),         # none | gzip | deflate
        "certificate": ("str", None),         # CA bundle for the server's certificate
        "client_certificate": ("str", None),  # mutual TLS
        "client_key": ("str", None),
        "insecure": ("bool", None),           # gRPC only: no TLS
        "include": ("regex_list", []),        # default: every metric, as on /metrics
        "exclude": ("regex_list", []),
        "resource_attributes": ("dict", {}),
    }

    @classmethod
    def validate_options(cls, options, error):
        protocol = options["protocol"] or os.environ.get("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL") \
            or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf"
        if protocol not in PROTOCOLS:
            raise error(f"must be one of {', '.join(PROTOCOLS)}, got {protocol!r}", "protocol")
        if protocol == "grpc" and not grpc_available():
            raise error("grpc needs the opentelemetry-exporter-otlp-proto-grpc package "
                        "(pip install opentelemetry-exporter-otlp-proto-grpc), or use http/protobuf", "protocol")
        options["protocol"] = protocol
        if options["insecure"] is not None and protocol != "grpc":
            raise error("applies to grpc only; for http/protobuf the endpoint's scheme (http:// or https://) "
                        "decides TLS", "insecure")
        endpoint = options["endpoint"]
        if endpoint and protocol == "http/protobuf" and urllib.parse.urlsplit(endpoint).scheme not in ("http", "https"):
            raise error(f"expected an http:// or https:// URL, got {endpoint!r}", "endpoint")
        if options["compression"] is not None and options["compression"] not in COMPRESSIONS:
            raise error(f"must be one of {', '.join(COMPRESSIONS)}, got {options['compression']!r}", "compression")
        if options["timeout"] is not None and options["timeout"] <= 0:
            raise error("must be greater than zero", "timeout")
        for key in ("headers", "resource_attributes"):
            try:
                # ${VAR} works in these mappings' values as in any other value, so API keys stay out of the file.
                options[key] = {name: expand_env(value, f"{key}.{name}") for name, value in options[key].items()}
            except ConfigError as exc:
                raise error(str(exc), key) from None

    def __init__(self, settings, store, state_file=None, clock=time.time):
        super().__init__(settings, store, state_file, clock)
        from ..logs import REDACT

        options = settings.options
        self.filter = MetricFilter(list(options["include"]), list(options["exclude"]))
        self.headers: dict[str, str] = dict(options["headers"])
        for value in self.headers.values():
            REDACT.add(value)   # API keys travel in headers
        self._exporter = None
        self._session: _ObservedSession | None = None
        self._capture = _CaptureSdkLogs()
        for name in SDK_LOGGERS:
            logging.getLogger(name).addFilter(self._capture)
        self._resource_cache: dict[str | None, Any] = {}

    # --- building MetricsData ----------------------------------------------------------------------
    def _resource(self, workspace_id: str | None):
        from opentelemetry.sdk.resources import OTELResourceDetector, Resource

        if workspace_id not in self._resource_cache:
            # Ours, then the standard environment (OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME), then the config.
            attributes: dict[str, Any] = {"service.name": "databricks-exporter", "service.version": __version__}
            attributes.update(OTELResourceDetector().detect().attributes)
            attributes.update(self.settings.options["resource_attributes"])
            if workspace_id is not None:
                attributes[WORKSPACE_ATTRIBUTE] = workspace_id
            self._resource_cache[workspace_id] = Resource.create(attributes)
        return self._resource_cache[workspace_id]

    @staticmethod
    def _counting_since(families: list[Family]) -> dict[tuple[str, str], int]:
        starts = {}
        for family in families:
            if family.metric is m.COUNTING_SINCE:
                for values, value in family.samples:
                    labels = dict(zip(family.metric.labels, values))
                    starts[(labels["workspace_id"], labels["collector"])] = int(value * 1e9)
        return starts

    def build(self, families: list[Family]):
        """MetricsData for one snapshot: one ResourceMetrics per workspace, one Metric per family in each."""
        from opentelemetry.sdk.metrics.export import (AggregationTemporality, Gauge, Histogram, HistogramDataPoint,
                                                      Metric, MetricsData, NumberDataPoint, ResourceMetrics,
                                                      ScopeMetrics, Sum)
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope

        now = int(self.clock() * 1e9)
        process_start = min(int(PROCESS_START * 1e9), now)
        starts = self._counting_since(families)
        # workspace_id (None: not workspace-scoped) -> metric -> data points
        grouped: dict[str | None, dict[m.Metric, list]] = {}
        for family in families:
            metric = family.metric
            if not self.filter(metric.name):
                continue
            for values, value in family.samples:
                attributes = dict(zip(metric.labels, values))
                workspace_id = attributes.get("workspace_id")
                start = min(starts.get((workspace_id, metric.collector), process_start), now)
                if metric.type == m.HISTOGRAM:
                    point = HistogramDataPoint(
                        attributes=attributes, start_time_unix_nano=start, time_unix_nano=now,
                        count=value.count, sum=value.sum, bucket_counts=list(value.counts),
                        explicit_bounds=list(metric.buckets), min=None, max=None)
                else:
                    point = NumberDataPoint(attributes=attributes, time_unix_nano=now, value=float(value),
                                            start_time_unix_nano=start if metric.type == m.COUNTER else 0)
                grouped.setdefault(workspace_id, {}).setdefault(metric, []).append(point)

        cumulative = AggregationTemporality.CUMULATIVE
        scope = InstrumentationScope(SCOPE, __version__)
        resource_metrics = []
        for workspace_id in sorted(grouped, key=lambda ws: (ws is not None, ws or "")):
            metrics = []
            for metric, points in grouped[workspace_id].items():
                if metric.type == m.COUNTER:
                    data = Sum(data_points=points, aggregation_temporality=cumulative, is_monotonic=True)
                elif metric.type == m.HISTOGRAM:
                    data = Histogram(data_points=points, aggregation_temporality=cumulative)
                else:
                    data = Gauge(data_points=points)
                metrics.append(Metric(name=metric.name, description=metric.help, unit=otel_unit(metric), data=data))
            resource_metrics.append(ResourceMetrics(
                resource=self._resource(workspace_id),
                scope_metrics=[ScopeMetrics(scope=scope, metrics=metrics, schema_url="")], schema_url=""))
        return MetricsData(resource_metrics=resource_metrics), sum(
            len(points) for by_metric in grouped.values() for points in by_metric.values())

    # --- sending -----------------------------------------------------------------------------------
    def _make_exporter(self):
        options = self.settings.options
        if options["protocol"] == "grpc":
            return self._make_grpc_exporter(options)
        from opentelemetry.exporter.otlp.proto.http import Compression
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        endpoint = options["endpoint"]
        if endpoint and urllib.parse.urlsplit(endpoint).path in ("", "/"):
            # A base URL, like OTEL_EXPORTER_OTLP_ENDPOINT: the signal's path is appended.
            endpoint = endpoint.rstrip("/") + "/v1/metrics"
        compression = {"gzip": Compression.Gzip, "deflate": Compression.Deflate,
                       "none": Compression.NoCompression}.get(options["compression"] or "")
        self._session = _ObservedSession()
        return OTLPMetricExporter(
            endpoint=endpoint, headers=self.headers or None, timeout=options["timeout"], compression=compression,
            certificate_file=options["certificate"], client_certificate_file=options["client_certificate"],
            client_key_file=options["client_key"], session=self._session)

    def _make_grpc_exporter(self, options):
        import grpc
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        credentials = None
        if options["certificate"] or options["client_certificate"]:
            def read(path):
                if not path:
                    return None
                with open(path, "rb") as handle:
                    return handle.read()
            credentials = grpc.ssl_channel_credentials(
                root_certificates=read(options["certificate"]), private_key=read(options["client_key"]),
                certificate_chain=read(options["client_certificate"]))
        compression = {"gzip": grpc.Compression.Gzip, "deflate": grpc.Compression.Deflate,
                       "none": grpc.Compression.NoCompression}.get(options["compression"] or "")
        return OTLPMetricExporter(
            endpoint=options["endpoint"], insecure=options["insecure"], credentials=credentials,
            headers=self.headers or None, timeout=options["timeout"], compression=compression)

    def push(self, families: list[Family]) -> dict[str, Any]:
        from opentelemetry.sdk.metrics.export import MetricExportResult

        data, points = self.build(families)
        if self._exporter is None:
            self._exporter = self._make_exporter()
        self._capture.thread, self._capture.messages = threading.get_ident(), []
        if self._session is not None:
            self._session.last_outcome = ""
        try:
            result = self._exporter.export(data, timeout_millis=(self.settings.options["timeout"] or 10) * 1000)
        finally:
            self._capture.thread = None
        if result != MetricExportResult.SUCCESS:
            # What the endpoint answered (or why it could not be reached), then what the exporter gave up on.
            reasons = [self._session.last_outcome] if self._session is not None and self._session.last_outcome \
                else []
            reasons += self._capture.messages[-1:]
            raise PushError(f"OTLP export of {points} points failed: "
                            f"{'; '.join(reasons) or 'the exporter reported a failure'}")
        return {"points": points, "resources": len(data.resource_metrics)}

    def close(self) -> None:
        for name in SDK_LOGGERS:
            logging.getLogger(name).removeFilter(self._capture)
        if self._exporter is not None:
            self._exporter.shutdown()
