"""The serving collectors against the simulated workspace, through the real SDK (list and metrics export) and the real
SQL connector (system.serving.*): endpoint states as the list says them, per-minute request and error counts added
once per minute and equal to the simulator's ledger across overlapping polls, latency quantiles from the export's
histogram, token counts equal to the ledger, and the serving_errors scenario seen as 5xx and latency."""

from __future__ import annotations

import json
import urllib.request

import pytest
from sql_helpers import (  # noqa: F401 (clock and server are fixtures)
    by, clock, collector, connected, run_cycle, samples, server, warehouse_in,
)

from conftest import http_get
from databricks_exporter.collectors.serving import parse_export, quantile
from databricks_exporter.store import MetricStore

pytestmark = pytest.mark.integration
FRAUD = ("fraud-scoring", "fraud_model-12")


def truth(server, since: float) -> dict:
    return json.loads(http_get(f"{server.url}/simulator/truth?since={since}")[2])


def flat(tree: dict, depth: int = 2) -> dict[tuple, float]:
    """{a: {b: n}} as {(a, b): n}."""
    out = {}
    for key, value in tree.items():
        if depth == 1:
            out[(key,)] = value
        else:
            out.update({(key, *k): v for k, v in flat(value, depth - 1).items()})
    return out


def counters(store: MetricStore, name: str, **match) -> dict[tuple, float]:
    """(endpoint, served entity) -> value, of the series that have counted something (errors start at 0)."""
    return {(labels["endpoint_name"], labels["served_entity"]): value for labels, value in samples(store, name)
            if all(labels.get(k) == v for k, v in match.items()) and value}


@pytest.fixture(scope="module")
def workspace(server):
    workspace = connected(server, warehouse_in(server, "RUNNING").id)
    yield workspace
    workspace.sql.close()


def test_quantile_interpolates_within_the_bucket_like_histogram_quantile():
    buckets = [(0.1, 10.0), (0.5, 90.0), (1.0, 100.0), (float("inf"), 100.0)]
    assert quantile(0.5, buckets) == pytest.approx(0.1 + 0.4 * 40 / 80)
    assert quantile(0.05, buckets) == pytest.approx(0.05)
    assert quantile(0.99, buckets) == pytest.approx(0.5 + 0.5 * 9 / 10)
    assert quantile(0.5, [(0.1, 0.0), (float("inf"), 0.0)]) is None
    assert quantile(0.99, [(0.1, 1.0), (float("inf"), 5.0)]) == 0.1      # in +Inf: the highest finite bound


def test_the_export_parses_whether_the_counts_are_typed_gauge_or_counter():
    text = ("# TYPE request_count_total counter\n"
            'request_count_total{endpoint_name="e",served_model_name="m-1"} 12 1790000040000\n'
            "# TYPE cpu_usage_percentage gauge\n"
            'cpu_usage_percentage{endpoint_name="e",served_model_name="m-1"} 50\n')
    minute = parse_export(text, 1790000100.0)["m-1"]
    assert minute.values == {"request_count_total": 12.0, "cpu_usage_percentage": 50.0}
    assert minute.stamp == 1790000100.0         # the newest stamp of the entity's samples
    with pytest.raises(ValueError):
        parse_export("request_count_total{", 0.0)


def test_endpoint_states_come_from_the_list(workspace, clock):
    store = MetricStore()
    run_cycle(collector("serving", workspace, clock), store)
    assert by(store, "databricks_serving_endpoint_ready", "endpoint_name") == {
        "fraud-scoring": 1, "demand-forecast": 1, "churn-predictor": 1, "recsys-ranker": 0, "llm-chat": 1,
        "partner-embeddings": 1}
    assert by(store, "databricks_serving_endpoint_config_update_state", "state", endpoint_name="recsys-ranker") == {
        "UPDATE_FAILED": 1}
    assert by(store, "databricks_serving_scale_to_zero_enabled", "endpoint_name") == {
        "fraud-scoring": 0, "demand-forecast": 0, "churn-predictor": 1, "recsys-ranker": 0, "partner-embeddings": 0}
    assert by(store, "databricks_serving_endpoint_info", "task", endpoint_name="llm-chat") == {"llm/v1/chat": 1}
    assert by(store, "databricks_serving_provisioned_concurrency", "endpoint_name") == {
        "fraud-scoring": 4, "demand-forecast": 8, "churn-predictor": 0, "recsys-ranker": 0, "llm-chat": 8}
    # Listed, but its export refused: counted, and the others read as usual.
    assert by(store, "databricks_serving_metrics_export_errors_total", "endpoint_name") == {"partner-embeddings": 1}
    assert "partner-embeddings" not in by(store, "databricks_serving_metrics_latest_timestamp_seconds",
                                          "endpoint_name")


def test_each_minute_is_counted_once_and_equals_the_ledger(workspace, clock):
    since = clock()
    instance = collector("serving", workspace, clock, lookback=0)
    store = MetricStore()
    for _ in range(16):              # 8 minutes, polled every 30 s: every minute is seen twice
        run_cycle(instance, store)
        clock.advance(30)
    run_cycle(instance, store)
    expected = truth(workspace_server(workspace), since)["serving"]
    # partner-embeddings serves too, but its export is refused to the exporter: its traffic cannot be counted.
    expected = {kind: {e: v for e, v in tree.items() if e != "partner-embeddings"} for kind, tree in expected.items()}
    requests = flat(expected["requests"])
    assert sum(requests.values()) > 2000
    assert counters(store, "databricks_serving_requests_total") == requests
    for status in ("4xx", "5xx"):
        assert counters(store, "databricks_serving_request_errors_total", status_class=status) == flat(
            expected.get(status, {}))


def test_token_counts_equal_the_ledger_across_overlapping_reads(workspace, clock):
    instance = collector("serving_usage", workspace, clock, lookback=3600)
    store = MetricStore()
    run_cycle(instance, store)
    since = instance.counting_since(store.state(f"{workspace.workspace_id}/serving_usage"))
    for _ in range(2):
        clock.advance(300)
        run_cycle(instance, store)
        expected = truth(workspace_server(workspace), since)["serving"]
        assert counters(store, "databricks_serving_tokens_total", direction="input") == flat(
            expected["input_tokens"])
        assert counters(store, "databricks_serving_tokens_total", direction="output") == flat(
            expected["output_tokens"])
        assert by(store, "databricks_serving_usage_requests_total") == {"": sum(
            flat(expected["usage_requests"]).values())}
    assert sum(flat(expected["input_tokens"]).values()) > 10_000


def test_serving_errors_shows_as_5xx_and_latency_on_its_endpoint(workspace, clock, server):
    store = MetricStore()
    instance = collector("serving", workspace, clock, lookback=0)
    run_cycle(instance, store)
    before = by(store, "databricks_serving_request_latency_seconds", "endpoint_name", percentile="50")
    assert before["fraud-scoring"] < 0.1
    request = urllib.request.Request(f"{server.url}/simulator/scenarios/serving_errors", method="POST", data=b"")
    targets = json.loads(urllib.request.urlopen(request, timeout=10).read())["targets"]
    assert targets == {"endpoint_names": ["fraud-scoring"]}
    try:
        since = clock() + 120        # minutes that began after the scenario did
        for _ in range(8):
            clock.advance(30)
            run_cycle(instance, store)
        after = by(store, "databricks_serving_request_latency_seconds", "endpoint_name", percentile="50")
        assert 0.25 < after["fraud-scoring"] < 1.0            # the median of 400 ms, within its bucket
        others = by(store, "databricks_serving_request_latency_seconds", "served_entity", percentile="50",
                    endpoint_name="demand-forecast")
        assert len(others) == 2 and max(others.values()) < 0.25     # the other endpoints unchanged
        expected = truth(server, since)["serving"]
        fraud_5xx = flat(expected["5xx"])[FRAUD]
        assert fraud_5xx >= 0.2 * flat(expected["requests"])[FRAUD]
    finally:
        urllib.request.urlopen(urllib.request.Request(f"{server.url}/simulator/scenarios", method="DELETE"),
                               timeout=10)


def workspace_server(workspace):
    return _SERVER[0]


_SERVER: list = []


@pytest.fixture(scope="module", autouse=True)
def _remember(server):
    _SERVER[:] = [server]


def test_error_series_exist_at_zero_before_the_first_error(workspace, clock):
    """Prometheus sees a counter's first increment only if the series existed before it."""
    store = MetricStore()
    run_cycle(collector("serving", workspace, clock), store)
    errors = {(labels["endpoint_name"], labels["status_class"]) for labels, _ in
              samples(store, "databricks_serving_request_errors_total")}
    assert {("churn-predictor", "5xx"), ("recsys-ranker", "4xx"), ("fraud-scoring", "5xx")} <= errors
    assert by(store, "databricks_serving_request_errors_total", endpoint_name="churn-predictor") == {"": 0}
