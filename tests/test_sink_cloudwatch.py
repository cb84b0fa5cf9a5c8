"""The CloudWatch sink against a real local CloudWatch API (moto's server mode, reached by boto3 over HTTP with fake
credentials), read back with ListMetrics and GetMetricData."""

from __future__ import annotations

import datetime
import json
import logging
import math
import re
import time
import urllib.request

import boto3
import pytest
import yaml
from moto.server import ThreadedMotoServer

from databricks_exporter import metrics as m
from databricks_exporter.collectors import COLLECTORS
from databricks_exporter.config import ConfigError, load
from databricks_exporter.sinks import SINKS
from databricks_exporter.sinks.cloudwatch import (DEFAULT_INCLUDE, MAX_REQUEST_BYTES,
                                                   CloudWatchSink, cloudwatch_unit, default_gauge_aggregation)
from databricks_exporter.cycle import Cycle
from databricks_exporter.store import MetricStore

from conftest import StubHandler, fast_config, free_port, serve_stub, wait_for

WS = "1234567890"
FAST_WITHOUT_JOBS = {"clusters": {"interval": "1s"}, "warehouses": {"interval": "1s"}, "jobs": {"enabled": False}}
# Pushes are stamped a minute apart in the recent past, so GetMetricData returns one value per push.
BASE = (int(time.time()) // 60 - 30) * 60


class Clock:
    def __init__(self):
        self.now = BASE + 5.0

    def __call__(self) -> float:
        return self.now

    def next_minute(self) -> None:
        self.now += 60


@pytest.fixture(autouse=True)
def fake_aws(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEFAKEKEY00")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fake/secret+access/key")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_CLOUDWATCH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABRICKS_HOST", "https://example.cloud.databricks.com")


@pytest.fixture(scope="module")
def moto_server():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def moto(moto_server):
    """A CloudWatch with no metrics: moto keeps its backends per process, so each test starts with a reset."""
    urllib.request.urlopen(urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST"), timeout=10)
    return moto_server


def sink_settings(tmp_path, **options):
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump({"sinks": {"cloudwatch": {"enabled": True, **options}}}))
    return load(str(path), COLLECTORS, SINKS).sinks["cloudwatch"]


def make_sink(tmp_path, store, endpoint, clock, state_file=None, **options):
    # moto's server decompresses a gzip request body twice (moto 5.2.1), so the tests send it uncompressed; real
    # CloudWatch takes the compressed body botocore sends by default.
    options = {"endpoint_url": endpoint, "request_compression": False, "max_attempts": 2, "timeout": "5s", **options}
    return CloudWatchSink(sink_settings(tmp_path, **options), store, state_file=state_file, clock=clock)


def cloudwatch(endpoint):
    return boto3.client("cloudwatch", endpoint_url=endpoint, region_name="eu-west-1")


def values(endpoint, name, dims, stat="Sum", namespace="Databricks"):
    """One value per minute that received data, oldest first."""
    result = cloudwatch(endpoint).get_metric_data(
        MetricDataQueries=[{"Id": "q", "MetricStat": {
            "Metric": {"Namespace": namespace, "MetricName": name,
                       "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()]},
            "Period": 60, "Stat": stat}}],
        StartTime=datetime.datetime.fromtimestamp(BASE - 60, datetime.timezone.utc),
        EndTime=datetime.datetime.fromtimestamp(BASE + 3600, datetime.timezone.utc),
        ScanBy="TimestampAscending")
    return result["MetricDataResults"][0]["Values"]


def listed(endpoint, namespace="Databricks"):
    found = []
    for page in cloudwatch(endpoint).get_paginator("list_metrics").paginate(Namespace=namespace):
        found += [(metric["MetricName"], {d["Name"]: d["Value"] for d in metric["Dimensions"]})
                  for metric in page["Metrics"]]
    return found


def collector_finished(store, collector="jobs"):
    """What the engine publishes after a collector's cycle: from now on its new series are news, not backfill."""
    store.set_gauges("status", {m.COLLECTOR_UP: {(WS, collector): 1.0},
                                m.COLLECTOR_LAST_SUCCESS: {(WS, collector): BASE}})


def jobs_cycle(store, runs=(), durations=(), clusters=()):
    cycle = Cycle(WS)
    for job_id, result, amount in runs:
        cycle.inc(m.JOB_RUNS, amount, job_id=job_id, result_state=result, trigger="PERIODIC")
    for job_id, seconds in durations:
        cycle.observe(m.JOB_RUN_DURATION, seconds, job_id=job_id)
    store.commit(f"{WS}/jobs", cycle, {"cursor": 1})
    if clusters:
        cycle = Cycle(WS)
        for state, source in clusters:
            cycle.count_gauge(m.CLUSTERS, state=state, cluster_source=source)
        store.commit(f"{WS}/clusters", cycle, {})


def push_total(store, outcome):
    return store.value("databricks_exporter_push_total", sink="cloudwatch", outcome=outcome)


def test_names_dimensions_units_and_counter_increases_across_pushes(tmp_path, moto):
    store, clock = MetricStore(), Clock()
    jobs_cycle(store, runs=[("7", "SUCCESS", 10)], clusters=[("RUNNING", "JOB"), ("RUNNING", "JOB"), ("PENDING", "UI")])
    collector_finished(store)
    sink = make_sink(tmp_path, store, moto, clock)
    assert sink.push_once(), sink.last_error          # first push: gauges, and the counters' baseline

    clock.next_minute()
    jobs_cycle(store, runs=[("7", "SUCCESS", 3), ("8", "FAILED", 1)])   # job 8 fails for the first time
    assert sink.push_once(), sink.last_error
    clock.next_minute()
    jobs_cycle(store, runs=[("7", "SUCCESS", 2)])
    assert sink.push_once(), sink.last_error

    metrics = listed(moto)
    assert ("databricks_job_runs_total", {"workspace_id": WS, "job_id": "7", "result_state": "SUCCESS"}) in metrics
    # trigger is not a dimension: aggregated away. cluster_source and state are.
    assert ("databricks_clusters", {"workspace_id": WS, "state": "RUNNING", "cluster_source": "JOB"}) in metrics
    assert {name for name, _ in metrics} <= {"databricks_job_runs_total", "databricks_clusters",
                                             "databricks_exporter_collector_up"}

    ok = {"workspace_id": WS, "job_id": "7", "result_state": "SUCCESS"}
    # Never the cumulative 10, 13, 15: the increase since the previous push (nothing at the first).
    assert values(moto, "databricks_job_runs_total", ok) == [3, 2]
    # A series that appears after its collector's first cycle is news: its whole value is the increase.
    failed = {"workspace_id": WS, "job_id": "8", "result_state": "FAILED"}
    assert values(moto, "databricks_job_runs_total", failed) == [1, 0]
    assert values(moto, "databricks_clusters", {"workspace_id": WS, "state": "RUNNING", "cluster_source": "JOB"},
                  stat="Maximum") == [2, 2, 2]   # two RUNNING JOB clusters, summed
    assert values(moto, "databricks_exporter_collector_up", {"workspace_id": WS, "collector": "jobs"},
                  stat="Minimum") == [1, 1, 1]
    assert push_total(store, "success") == 3 and push_total(store, "failure") == 0
    assert store.value("databricks_exporter_push_last_success_timestamp_seconds", sink="cloudwatch") == clock.now


def test_histograms_are_statistic_sets_of_the_new_observations(tmp_path, moto):
    store, clock = MetricStore(), Clock()
    jobs_cycle(store, durations=[("7", 45)])
    collector_finished(store)
    sink = make_sink(tmp_path, store, moto, clock)
    assert sink.push_once()
    clock.next_minute()
    jobs_cycle(store, durations=[("7", 50), ("7", 200), ("7", 4000)])
    assert sink.push_once(), sink.last_error
    clock.next_minute()
    assert sink.push_once()                               # no new runs: no datum (CloudWatch: no data)
    dims = {"workspace_id": WS, "job_id": "7"}
    name = "databricks_job_run_duration_seconds"
    assert values(moto, name, dims, "SampleCount") == [3]
    assert values(moto, name, dims, "Sum") == [4250]
    # Bounds of the lowest and highest buckets that got observations: (30, 60] and (3600, 7200].
    assert values(moto, name, dims, "Minimum") == [30]
    assert values(moto, name, dims, "Maximum") == [7200]
    cw_metric = cloudwatch(moto).list_metrics(Namespace="Databricks", MetricName=name)["Metrics"]
    assert len(cw_metric) == 1


def test_buckets_mode_sends_values_and_counts(tmp_path, moto):
    store, clock = MetricStore(), Clock()
    collector_finished(store)
    sink = make_sink(tmp_path, store, moto, clock, histograms="buckets")
    assert sink.push_once()
    jobs_cycle(store, durations=[("7", 45), ("7", 50), ("7", 100000)])
    datums, _, _ = sink.build(store.families(), datetime.datetime.now(datetime.timezone.utc))
    [datum] = [d.payload for d in datums if d.payload["MetricName"] == "databricks_job_run_duration_seconds"]
    assert datum["Values"] == [45.0, 86400.0] and datum["Counts"] == [2.0, 1.0] and datum["Unit"] == "Seconds"
    clock.next_minute()
    assert sink.push_once(), sink.last_error
    assert values(moto, "databricks_job_run_duration_seconds", {"workspace_id": WS, "job_id": "7"},
                  "SampleCount") == [3]


def test_restart_sends_exactly_the_increase_since_the_last_push(tmp_path, moto):
    """The store persists its counters, the sink its baseline: a restart is neither a spike nor negative."""
    state = str(tmp_path / "state.json")
    store, clock = MetricStore(state), Clock()
    jobs_cycle(store, runs=[("7", "SUCCESS", 100)], durations=[("7", 45)])
    collector_finished(store)
    sink = make_sink(tmp_path, store, moto, clock, state_file=state)
    assert sink.push_once()                                     # baseline 100
    clock.next_minute()
    jobs_cycle(store, runs=[("7", "SUCCESS", 3)])
    assert sink.push_once()                                     # +3
    jobs_cycle(store, runs=[("7", "SUCCESS", 2)], durations=[("7", 50)])   # after the last push, before the crash
    assert (tmp_path / "state.cloudwatch.json").exists()

    # kill -9 and start again: a new store from the state file, a new sink.
    restarted = MetricStore(state)
    assert "loaded" in restarted.load()
    clock.next_minute()
    jobs_cycle(restarted, runs=[("7", "SUCCESS", 4)])           # caught up after the restart
    again = make_sink(tmp_path, restarted, moto, clock, state_file=state)
    assert again.push_once(), again.last_error
    dims = {"workspace_id": WS, "job_id": "7", "result_state": "SUCCESS"}
    assert values(moto, "databricks_job_runs_total", dims) == [3, 6]
    assert values(moto, "databricks_job_run_duration_seconds", {"workspace_id": WS, "job_id": "7"},
                  "SampleCount") == [1]


def test_restart_without_sink_state_sends_no_counter_datum_first(tmp_path, moto):
    state = str(tmp_path / "state.json")
    store, clock = MetricStore(state), Clock()
    jobs_cycle(store, runs=[("7", "SUCCESS", 100)])
    restarted = MetricStore(state)
    restarted.load()
    collector_finished(restarted)
    sink = make_sink(tmp_path, restarted, moto, clock, state_file=state)
    assert sink.push_once()
    clock.next_minute()
    jobs_cycle(restarted, runs=[("7", "SUCCESS", 1)])
    assert sink.push_once()
    # First push: no datum at all (no spike of 100); then +1.
    assert values(moto, "databricks_job_runs_total",
                  {"workspace_id": WS, "job_id": "7", "result_state": "SUCCESS"}) == [1]


def test_first_cycle_backfill_is_baseline_not_news(tmp_path, moto):
    """Runs the collector's first cycle finds in the lookback are history: they land after the sink's first push
    but before the collector has ever finished, so they only become the baseline."""
    store, clock = MetricStore(), Clock()
    sink = make_sink(tmp_path, store, moto, clock)
    assert sink.push_once()                  # the exporter just started: nothing collected yet
    clock.next_minute()
    jobs_cycle(store, runs=[("7", "SUCCESS", 40)])
    collector_finished(store)
    assert sink.push_once()
    clock.next_minute()
    jobs_cycle(store, runs=[("7", "SUCCESS", 1), ("9", "FAILED", 1)])
    assert sink.push_once()
    assert values(moto, "databricks_job_runs_total",
                  {"workspace_id": WS, "job_id": "7", "result_state": "SUCCESS"}) == [1]
    assert values(moto, "databricks_job_runs_total",
                  {"workspace_id": WS, "job_id": "9", "result_state": "FAILED"}) == [1]


def test_a_counter_that_goes_down_was_reset_and_is_never_negative(tmp_path, moto):
    store, clock = MetricStore(), Clock()
    jobs_cycle(store, runs=[("7", "SUCCESS", 50)])
    collector_finished(store)
    sink = make_sink(tmp_path, store, moto, clock)
    assert sink.push_once()
    # The store lost its state (e.g. a damaged state file): the same series counts from zero again.
    sink.store = fresh = MetricStore()
    collector_finished(fresh)
    jobs_cycle(fresh, runs=[("7", "SUCCESS", 4)])
    clock.next_minute()
    assert sink.push_once()
    assert values(moto, "databricks_job_runs_total",
                  {"workspace_id": WS, "job_id": "7", "result_state": "SUCCESS"}) == [4]


def test_more_than_1000_datums_are_batched_by_count_and_by_size(tmp_path, moto):
    store, clock = MetricStore(), Clock()
    cycle = Cycle(WS)
    for i in range(1001):
        cycle.gauge(m.CLUSTER_WORKERS, i % 7, cluster_id=f"c{i:04d}")
    store.commit(f"{WS}/clusters", cycle, {})
    sink = make_sink(tmp_path, store, moto, clock, include=["^databricks_cluster_workers$"],
                     dimensions=["workspace_id", "cluster_id"])
    counts = []
    sink._cloudwatch().meta.events.register(
        "provide-client-params.cloudwatch.PutMetricData", lambda params, **_: counts.append(len(params["MetricData"])))
    assert sink.push_once(), sink.last_error
    assert counts == [1000, 1]
    found = listed(moto)
    assert len(found) == 1001 and ("databricks_cluster_workers", {"workspace_id": WS, "cluster_id": "c1000"}) in found

    # Large dimension values (7 x 1000 characters): the 1 MB limit splits long before 1000 datums.
    store = MetricStore()
    cycle = Cycle(WS)
    for i in range(300):
        cycle.gauge(m.CLUSTER_INFO, 1, cluster_id=f"c{i}", cluster_name="n" * 1000, cluster_source="x" * 1000,
                    node_type="t" * 1000, driver_node_type="d" * 1000, spark_version="s" * 1000,
                    runtime_engine="r" * 1000)
    store.commit(f"{WS}/clusters", cycle, {})
    sink = make_sink(tmp_path, store, moto, clock, include=["^databricks_cluster_info$"],
                     dimensions=list(m.CLUSTER_INFO.labels))
    counts, sizes = [], []
    sink._cloudwatch().meta.events.register(
        "before-call.cloudwatch.PutMetricData", lambda params, **_: sizes.append(len(params["body"])))
    sink._cloudwatch().meta.events.register(
        "provide-client-params.cloudwatch.PutMetricData", lambda params, **_: counts.append(len(params["MetricData"])))
    assert sink.push_once(), sink.last_error
    assert sum(counts) == 300 and len(counts) > 1
    assert max(sizes) < MAX_REQUEST_BYTES


def test_a_failing_endpoint_is_counted_logged_once_and_never_raised(tmp_path, caplog):
    store, clock = MetricStore(), Clock()
    jobs_cycle(store, runs=[("7", "SUCCESS", 1)])
    collector_finished(store)
    closed = f"http://127.0.0.1:{free_port()}"
    sink = make_sink(tmp_path, store, closed, clock, max_attempts=1)
    with caplog.at_level(logging.DEBUG, logger="databricks_exporter"):
        assert sink.push_once() is False
        assert sink.push_once() is False
    assert push_total(store, "failure") == 2 and push_total(store, "success") == 0
    assert store.value("databricks_exporter_push_last_success_timestamp_seconds", sink="cloudwatch") is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name.startswith("databricks_exporter")]
    assert len(warnings) == 1 and "EndpointConnectionError" in warnings[0].getMessage()
    assert "Could not connect" in sink.last_error


class _Throttling(StubHandler):
    """Answers PutMetricData as CloudWatch does when throttled, `throttle` times, then accepts."""
    throttle = 1
    calls: list[str] = []

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).calls.append(self.headers.get("X-Amz-Target", ""))
        if len(type(self).calls) <= type(self).throttle:
            self.reply(400, json.dumps({"__type": "Throttling", "message": "Rate exceeded"}).encode(),
                       "application/x-amz-json-1.0", {"x-amzn-query-error": "Throttling;Sender"})
        else:
            self.reply(200, b"{}", "application/x-amz-json-1.0")


def test_throttling_is_retried_with_backoff(tmp_path):
    _Throttling.calls = []
    server = serve_stub(_Throttling)
    try:
        store = MetricStore()
        collector_finished(store)
        sink = make_sink(tmp_path, store, f"http://127.0.0.1:{server.server_port}", Clock(), max_attempts=3)
        assert sink.push_once(), sink.last_error
        assert len(_Throttling.calls) == 2
        assert sink._cloudwatch().meta.config.retries == {"mode": "standard", "total_max_attempts": 3}
    finally:
        server.shutdown()


@pytest.mark.parametrize("options, key, reason", [
    ({"dimensions": [f"l{i}" for i in range(31)]}, "sinks.cloudwatch.dimensions", "at most 30"),
    ({"storage_resolution": 5}, "sinks.cloudwatch.storage_resolution", "60"),
    ({"namespace": "AWS/EC2"}, "sinks.cloudwatch.namespace", "AWS/"),
    ({"histograms": "quantiles"}, "sinks.cloudwatch.histograms", "statistics or buckets"),
    ({"gauge_aggregation": {"databricks_clusters": "median"}}, "sinks.cloudwatch.gauge_aggregation", "median"),
    ({"dimension": ["job_id"]}, "sinks.cloudwatch.dimension", "unknown key"),
])
def test_bad_options_name_the_key(tmp_path, options, key, reason):
    with pytest.raises(ConfigError) as error:
        sink_settings(tmp_path, **options)
    assert key in str(error.value) and reason in str(error.value), str(error.value)


def test_units_and_gauge_aggregation_rules():
    ratio = m.Metric("databricks_x_utilization_ratio", m.GAUGE, "", ("workspace_id",))
    assert cloudwatch_unit(ratio) == ("Percent", 100.0)
    assert cloudwatch_unit(m.JOB_RUNS) == ("Count", 1.0)
    assert cloudwatch_unit(m.CLUSTER_MEMORY) == ("Bytes", 1.0)
    assert cloudwatch_unit(m.COLLECTOR_DURATION) == ("Seconds", 1.0)
    assert cloudwatch_unit(m.JOB_LAST_SUCCESS) == ("None", 1.0)
    assert cloudwatch_unit(m.CLUSTERS) == ("None", 1.0)
    assert default_gauge_aggregation(m.CLUSTERS) == "sum"
    assert default_gauge_aggregation(m.JOB_LAST_SUCCESS) == "max"
    assert default_gauge_aggregation(m.COLLECTOR_UP) == "min"


def test_ratios_are_sent_as_percent_and_only_finite_values(tmp_path):
    store = MetricStore()
    ratio = m.Metric("databricks_x_utilization_ratio", m.GAUGE, "", ("workspace_id",))
    store.set_gauges("x", {ratio: {(WS,): 0.25},
                           m.COLLECTOR_DURATION: {(WS, "jobs"): math.nan, (WS, "clusters"): 2.5}})
    sink = make_sink(tmp_path, store, "http://127.0.0.1:1", Clock(), include=["ratio$", "duration"])
    datums, _, _ = sink.build(store.families(), datetime.datetime.now(datetime.timezone.utc))
    # NaN is dropped rather than sent: CloudWatch would refuse the whole request.
    assert sorted((d.payload["MetricName"], d.payload["Value"], d.payload["Unit"]) for d in datums) == [
        ("databricks_exporter_collector_duration_seconds", 2.5, "Seconds"),
        ("databricks_x_utilization_ratio", 25.0, "Percent")]


def test_every_default_include_pattern_matches_a_defined_metric():
    for pattern in DEFAULT_INCLUDE:
        assert any(re.search(pattern, name) for name in m.REGISTRY), pattern


@pytest.mark.integration
def test_the_exporter_pushes_the_demo_workspace_to_cloudwatch(moto, simulator, exporter_factory):
    """`databricks-exporter serve` against the simulated workspace, with the sink on: the demo's metrics arrive."""
    # The jobs collector's first cycle (an hour of backfill) would take most of this file's time budget; the job
    # metrics' shapes are covered above, the path from a running exporter to CloudWatch here.
    config = fast_config(collectors=FAST_WITHOUT_JOBS, sinks={"cloudwatch": {
        "enabled": True, "interval": "1s", "endpoint_url": moto, "request_compression": False,
        "include": DEFAULT_INCLUDE + ["^databricks_cluster_events_total$"]}})
    exporter = exporter_factory(config, env={
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLEFAKEKEY00", "AWS_SECRET_ACCESS_KEY": "fake/secret+access/key",
        "AWS_DEFAULT_REGION": "eu-west-1"}).start()

    def arrived():
        names = {name for name, _ in listed(moto)}
        return {"databricks_exporter_collector_up", "databricks_clusters", "databricks_warehouse_clusters",
                "databricks_cluster_events_total"} <= names

    wait_for(arrived, 20, what="the demo's metrics in CloudWatch")
    assert exporter.state_file.with_name("state.cloudwatch.json").exists()
    assert 'databricks_exporter_push_total{outcome="success",sink="cloudwatch"}' in exporter.metrics()
    assert "fake/secret+access/key" not in exporter.log()
