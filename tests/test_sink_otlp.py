"""The OTLP sink against a local OTLP/HTTP receiver that decodes every export request with opentelemetry-proto."""

from __future__ import annotations

import gzip
import logging
import threading
import time

import pytest
import yaml
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (ExportMetricsServiceRequest,
                                                                          ExportMetricsServiceResponse)
from opentelemetry.proto.metrics.v1.metrics_pb2 import AGGREGATION_TEMPORALITY_CUMULATIVE

from databricks_exporter import __version__
from databricks_exporter import metrics as m
from databricks_exporter.collectors import COLLECTORS
from databricks_exporter.config import ConfigError, load
from databricks_exporter.sinks import SINKS, start_sinks
from databricks_exporter.sinks.otlp import OtlpSink, grpc_available
from databricks_exporter.cycle import Cycle
from databricks_exporter.store import MetricStore

from conftest import StubHandler, fast_config, serve_stub, wait_for

WS = "1234567890"
FAST_WITHOUT_JOBS = {"clusters": {"interval": "1s"}, "warehouses": {"interval": "1s"}, "jobs": {"enabled": False}}
COUNTING_SINCE = 1_700_000_000.0


class Receiver:
    """An OTLP/HTTP metrics endpoint: POST /v1/metrics with a protobuf ExportMetricsServiceRequest."""

    def __init__(self, status: int = 200):
        self.status = status
        self.requests: list[tuple[dict, ExportMetricsServiceRequest]] = []
        receiver = self

        class Handler(StubHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/metrics":
                    self.reply(404)
                    return
                request = ExportMetricsServiceRequest()
                request.ParseFromString(body)
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, request))
                payload = ExportMetricsServiceResponse().SerializeToString() if receiver.status == 200 else b""
                self.reply(receiver.status, payload, "application/x-protobuf")

        self.server = serve_stub(Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_HEADERS",
                 "OTEL_EXPORTER_OTLP_METRICS_HEADERS", "OTEL_EXPORTER_OTLP_PROTOCOL",
                 "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_SERVICE_NAME",
                 "OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_COMPRESSION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABRICKS_HOST", "https://example.cloud.databricks.com")


def sink_settings(tmp_path, **options):
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump({"sinks": {"otlp": {"enabled": True, **options}}}))
    return load(str(path), COLLECTORS, SINKS)


def make_sink(tmp_path, store, **options):
    return OtlpSink(sink_settings(tmp_path, **options).sinks["otlp"], store)


def demo_store() -> MetricStore:
    store = MetricStore()
    cycle = Cycle(WS)
    cycle.inc(m.JOB_RUNS, 3, job_id="7", result_state="SUCCESS", trigger="PERIODIC")
    cycle.inc(m.JOB_RUNS, 1, job_id="7", result_state="FAILED", trigger="PERIODIC")
    for seconds in (45, 50, 4000):
        cycle.observe(m.JOB_RUN_DURATION, seconds, job_id="7")
    cycle.gauge(m.JOB_INFO, 1, job_id="7", job_name="nightly etl", schedule_paused="false")
    store.commit(f"{WS}/jobs", cycle, {"counting_since": COUNTING_SINCE})
    cycle = Cycle(WS)
    cycle.count_gauge(m.CLUSTERS, state="RUNNING", cluster_source="JOB")
    cycle.count_gauge(m.CLUSTERS, state="RUNNING", cluster_source="JOB")
    store.commit(f"{WS}/clusters", cycle, {})
    store.set_gauges("status", {m.COUNTING_SINCE: {(WS, "jobs"): COUNTING_SINCE}})
    store.set_gauges("build", {m.BUILD_INFO: {(__version__, "3.11"): 1.0}})
    return store


def attrs(key_values) -> dict:
    out = {}
    for kv in key_values:
        value = kv.value
        out[kv.key] = getattr(value, value.WhichOneof("value"))
    return out


def by_resource(request: ExportMetricsServiceRequest) -> dict:
    """workspace id (None for the exporter's own resource) -> (resource attributes, {metric name: metric})."""
    out = {}
    for rm in request.resource_metrics:
        resource = attrs(rm.resource.attributes)
        metrics = {metric.name: metric for sm in rm.scope_metrics for metric in sm.metrics}
        out[resource.get("databricks.workspace.id")] = (resource, metrics)
    return out


def test_counters_gauges_and_histograms_arrive_as_on_metrics(tmp_path, receiver):
    store = demo_store()
    sink = make_sink(tmp_path, store, endpoint=receiver.url, headers={"x-api-key": "honeycomb-key-123456"})
    assert sink.push_once(), sink.last_error
    [(headers, request)] = receiver.requests
    assert headers["x-api-key"] == "honeycomb-key-123456"
    assert headers["content-type"] == "application/x-protobuf"

    resources = by_resource(request)
    assert set(resources) == {WS, None}
    resource, metrics = resources[WS]
    assert resource["service.name"] == "databricks-exporter"
    assert resource["service.version"] == __version__
    assert resource["databricks.workspace.id"] == WS
    own_resource, own_metrics = resources[None]
    assert "databricks.workspace.id" not in own_resource and "databricks_exporter_build_info" in own_metrics
    assert own_resource["service.name"] == "databricks-exporter"

    runs = metrics["databricks_job_runs_total"]
    assert runs.sum.is_monotonic and runs.sum.aggregation_temporality == AGGREGATION_TEMPORALITY_CUMULATIVE
    points = {attrs(p.attributes)["result_state"]: p for p in runs.sum.data_points}
    assert points["SUCCESS"].as_double == 3 and points["FAILED"].as_double == 1
    assert attrs(points["SUCCESS"].attributes) == {"workspace_id": WS, "job_id": "7", "result_state": "SUCCESS",
                                                   "trigger": "PERIODIC"}
    # Cumulative since the collector began counting (persisted by the store, so stable across restarts).
    assert points["SUCCESS"].start_time_unix_nano == int(COUNTING_SINCE * 1e9)
    assert points["SUCCESS"].time_unix_nano > points["SUCCESS"].start_time_unix_nano
    assert runs.description.startswith("Completed job runs")

    duration = metrics["databricks_job_run_duration_seconds"]
    assert duration.unit == "s"
    assert duration.histogram.aggregation_temporality == AGGREGATION_TEMPORALITY_CUMULATIVE
    [point] = duration.histogram.data_points
    assert list(point.explicit_bounds) == list(m.JOB_DURATION_BUCKETS)
    hist = store.value("databricks_job_run_duration_seconds", workspace_id=WS, job_id="7")
    assert list(point.bucket_counts) == hist.counts and point.count == 3 and point.sum == 4095
    assert not point.HasField("min") and not point.HasField("max")   # not known from buckets

    clusters = metrics["databricks_clusters"]
    assert clusters.WhichOneof("data") == "gauge"
    [point] = clusters.gauge.data_points
    assert point.as_double == 2 and attrs(point.attributes) == {"workspace_id": WS, "state": "RUNNING",
                                                                "cluster_source": "JOB"}
    assert metrics["databricks_job_info"].gauge.data_points[0].as_double == 1
    assert store.value("databricks_exporter_push_total", sink="otlp", outcome="success") == 1


def test_start_times_are_stable_and_values_cumulative_across_pushes(tmp_path, receiver):
    store = demo_store()
    sink = make_sink(tmp_path, store, endpoint=receiver.url + "/v1/metrics",
                     include=["^databricks_(job_runs|cluster_terminations)_total$"])
    cycle = Cycle(WS)
    cycle.inc(m.CLUSTER_TERMINATIONS, cluster_source="JOB", termination_code="SUCCESS", termination_type="SUCCESS")
    store.commit(f"{WS}/clusters", cycle, {})
    assert sink.push_once()
    cycle = Cycle(WS)
    cycle.inc(m.JOB_RUNS, 2, job_id="7", result_state="SUCCESS", trigger="PERIODIC")
    store.commit(f"{WS}/jobs", cycle, {})
    assert sink.push_once()
    first, second = (by_resource(request)[WS][1] for _, request in receiver.requests)
    assert set(first) == {"databricks_job_runs_total", "databricks_cluster_terminations_total"}

    def success(metrics):
        return next(p for p in metrics["databricks_job_runs_total"].sum.data_points
                    if attrs(p.attributes)["result_state"] == "SUCCESS")

    assert (success(first).as_double, success(second).as_double) == (3, 5)
    assert success(first).start_time_unix_nano == success(second).start_time_unix_nano
    # A collector without counting_since: its series started with the exporter.
    terminations = second["databricks_cluster_terminations_total"].sum.data_points[0]
    assert terminations.start_time_unix_nano <= time.time_ns()
    assert terminations.start_time_unix_nano == first["databricks_cluster_terminations_total"].sum.data_points[
        0].start_time_unix_nano


def test_endpoint_headers_and_resource_from_the_standard_environment(tmp_path, receiver, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20env-token-123456,x-team=data")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod,service.namespace=platform")
    monkeypatch.setenv("TEAM", "data-eng")
    sink = make_sink(tmp_path, demo_store(), resource_attributes={"team": "${TEAM}"}, compression="gzip")
    assert sink.push_once(), sink.last_error
    [(headers, request)] = receiver.requests
    assert headers["authorization"] == "Bearer env-token-123456" and headers["x-team"] == "data"
    assert headers["content-encoding"] == "gzip"
    resource, _ = by_resource(request)[WS]
    assert resource["deployment.environment"] == "prod" and resource["team"] == "data-eng"
    assert resource["service.name"] == "databricks-exporter"


def test_a_receiver_answering_503_shows_as_failed_pushes_logged_once(tmp_path, caplog):
    receiver = Receiver(status=503)
    try:
        store = demo_store()
        sink = make_sink(tmp_path, store, endpoint=receiver.url, timeout="0.5s")
        with caplog.at_level(logging.DEBUG):
            assert sink.push_once() is False
            assert sink.push_once() is False
        assert store.value("databricks_exporter_push_total", sink="otlp", outcome="failure") == 2
        assert store.value("databricks_exporter_push_total", sink="otlp", outcome="success") == 0
        assert store.value("databricks_exporter_push_last_success_timestamp_seconds", sink="otlp") is None
        assert "Service Unavailable" in sink.last_error, sink.last_error
        assert len(receiver.requests) >= 2
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        # One line from the sink; the SDK's own per-attempt lines are folded into it.
        assert [r.name for r in warnings] == ["databricks_exporter.sinks.base"], [r.getMessage() for r in warnings]
    finally:
        receiver.stop()


def test_sink_runs_in_the_background_and_stops(tmp_path, receiver):
    settings = sink_settings(tmp_path, endpoint=receiver.url, interval="1s")
    store = demo_store()
    stop = threading.Event()
    sinks = start_sinks(settings, store, stop)
    try:
        assert [s.name for s in sinks] == ["otlp"]
        wait_for(lambda: len(receiver.requests) >= 2, 10, what="two pushes")
    finally:
        stop.set()
        for sink in sinks:
            sink.stop()
    assert not sinks[0]._thread.is_alive()
    assert store.value("databricks_exporter_push_total", sink="otlp", outcome="success") >= 2


def test_disabled_sinks_do_not_start(tmp_path):
    settings = load(None, COLLECTORS, SINKS)
    assert not settings.sinks["otlp"].enabled and not settings.sinks["cloudwatch"].enabled
    assert start_sinks(settings, MetricStore(), threading.Event()) == []


@pytest.mark.parametrize("options, key, reason", [
    ({"protocol": "http/json"}, "sinks.otlp.protocol", "one of"),
    ({"insecure": True}, "sinks.otlp.insecure", "grpc only"),
    ({"endpoint": "collector:4318"}, "sinks.otlp.endpoint", "http://"),
    ({"compression": "zstd"}, "sinks.otlp.compression", "one of"),
    ({"headers": {"x-api-key": "${NOT_SET_ANYWHERE}"}}, "sinks.otlp.headers", "NOT_SET_ANYWHERE"),
    ({"header": {}}, "sinks.otlp.header", "unknown key"),
])
def test_bad_options_name_the_key(tmp_path, options, key, reason):
    with pytest.raises(ConfigError) as error:
        sink_settings(tmp_path, **options)
    assert key in str(error.value) and reason in str(error.value), str(error.value)


@pytest.mark.skipif(grpc_available(), reason="the gRPC exporter is installed")
def test_grpc_without_its_package_is_a_configuration_error(tmp_path):
    with pytest.raises(ConfigError, match="opentelemetry-exporter-otlp-proto-grpc"):
        sink_settings(tmp_path, protocol="grpc")


def test_an_otlp_environment_meant_for_others_does_not_matter_while_the_sink_is_off(tmp_path, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump({"sinks": {"otlp": {"enabled": False}}}))
    assert load(str(path), COLLECTORS, SINKS).sinks["otlp"].enabled is False


@pytest.mark.integration
def test_the_exporter_pushes_the_demo_workspace_over_otlp(receiver, simulator, exporter_factory):
    """`databricks-exporter serve` against the simulated workspace, with the sink on: the demo's metrics arrive."""
    # The jobs collector's first cycle (an hour of backfill) would take most of this file's time budget; the job
    # metrics' shapes are covered above, the path from a running exporter to the receiver here.
    exporter = exporter_factory(fast_config(collectors=FAST_WITHOUT_JOBS, sinks={"otlp": {
        "enabled": True, "interval": "1s", "endpoint": receiver.url, "headers": {"x-api-key": "${OTLP_KEY}"}}}),
        env={"OTLP_KEY": "secret-otlp-key-42"}).start()

    def arrived():
        for headers, request in receiver.requests:
            for workspace_id, (resource, metrics) in by_resource(request).items():
                if workspace_id and {"databricks_cluster_events_total", "databricks_clusters",
                                     "databricks_warehouse_state"} <= set(metrics):
                    return headers, resource, metrics
        return None

    headers, resource, metrics = wait_for(arrived, 20, what="the demo's metrics over OTLP")
    assert headers["x-api-key"] == "secret-otlp-key-42"
    assert resource["service.name"] == "databricks-exporter"
    events = metrics["databricks_cluster_events_total"].sum
    assert events.is_monotonic and sum(p.as_double for p in events.data_points) > 0
    assert resource["databricks.workspace.id"] == attrs(events.data_points[0].attributes)["workspace_id"]
    assert 'databricks_exporter_push_total{outcome="success",sink="otlp"}' in exporter.metrics()
    assert "secret-otlp-key-42" not in exporter.log()


def test_a_sink_that_cannot_even_be_created_is_counted_and_skipped(tmp_path, monkeypatch, receiver):
    settings = sink_settings(tmp_path, endpoint=receiver.url)

    class Broken(OtlpSink):
        def __init__(self, *args, **kwargs):
            raise RuntimeError("no such thing")

    monkeypatch.setitem(SINKS, "otlp", Broken)
    store = MetricStore()
    assert start_sinks(settings, store, threading.Event()) == []
    assert store.value("databricks_exporter_push_total", sink="otlp", outcome="failure") == 1
