"""The pipelines collector: unit tests of its event handling on a small in-memory stand-in for the SDK (behind the
real REST source), then the
exporter as a subprocess against the simulated workspace over HTTP (every metric has values, the event log is read
only as the API allows and never twice, expectation records and updates counted exactly once across SIGKILL)."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import NotFound
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import converge_on_truth, http_get, post, sigkill_restarts, truth, wait_for
from databricks_exporter import metrics as m
from databricks_exporter.collectors.pipelines import PipelinesCollector, event_time_ms, number
from databricks_exporter.config import CollectorSettings
from databricks_exporter.sources.rest import RestSource, iso_ms
from databricks_exporter.cardinality import CardinalityGuard
from databricks_exporter.cycle import Cycle
from databricks_exporter.store import MetricStore
from test_garbage import records, values
from test_integration import parse, total

PIPELINE_METRICS = [metric for metric in m.REGISTRY.values() if metric.collector == "pipelines"]
QUIET = ("IDLE", "FAILED", "DELETED")


# ------------------------------------------------------------------------------------------------ unit

class Obj(dict):
    def as_dict(self):
        return dict(self)


class FakePipelinesApi:
    """list_pipelines / get / list_updates / get_update over a dict, and the raw events endpoint with the real
    rules (no event_type filter, page_token only with max_results), recording every call."""

    def __init__(self):
        self.status = {"pipeline_id": "p1", "name": "orders", "state": "RUNNING", "health": "HEALTHY",
                       "latest_updates": [{"update_id": "u1", "state": "RUNNING",
                                           "creation_time": "2026-01-01T00:00:00.000Z"}]}
        self.events: list[dict] = []
        self.updates = {"u0": Obj(update_id="u0", cause="JOB_TASK", creation_time=1_000_000)}
        self.calls: list[tuple] = []

    # the SDK's pipelines API
    def list_pipelines(self, max_results=None):
        self.calls.append(("list",))
        return iter([Obj(self.status)])

    def get(self, pipeline_id):
        self.calls.append(("get", pipeline_id))
        return Obj(spec={"continuous": True, "serverless": False, "development": False})

    def list_updates(self, pipeline_id, max_results=None):
        self.calls.append(("list_updates", pipeline_id))
        return SimpleNamespace(updates=[u for k, u in self.updates.items() if k != "old"])

    def get_update(self, pipeline_id, update_id):
        self.calls.append(("get_update", update_id))
        if update_id not in self.updates:
            raise NotFound("no such update")
        return SimpleNamespace(update=self.updates[update_id])

    # api_client.do
    def do(self, method, path, query=None):
        self.calls.append(("events", dict(query)))
        assert "event_type" not in json.dumps(query)
        if "page_token" in query:
            assert set(query) == {"page_token", "max_results"}
            lo, start = json.loads(query["page_token"])
        else:
            assert query["order_by"] == "timestamp asc"
            lo, start = event_time_ms(query["filter"].split("'")[1]), 0
        matching = [e for e in self.events if event_time_ms(e["timestamp"]) >= lo]
        matching.sort(key=lambda e: e["timestamp"])
        page = matching[start:start + 2]        # tiny pages, so paging is exercised
        out = {"events": page}
        if start + 2 < len(matching):
            out["next_page_token"] = json.dumps([lo, start + 2])
        return out

    def add(self, ms, kind, details, update_id="u1", level="INFO", flow=None):
        origin = {"pipeline_id": "p1", "update_id": update_id}
        if flow:
            origin.update(flow_name=flow, dataset_name=flow)
        self.events.append({"id": f"e{len(self.events)}", "timestamp": iso_ms(ms), "event_type": kind,
                            "level": level, "origin": origin, "details": {kind: details}})


def make_collector(api: FakePipelinesApi, now_s: float, lookback: float = 600):
    client = SimpleNamespace(pipelines=api, api_client=api)
    options = {key: default for key, (_, default) in PipelinesCollector.options.items()}
    settings = CollectorSettings("pipelines", True, 60, 60, options)
    return PipelinesCollector(SimpleNamespace(rest=RestSource(client)), settings, lookback, clock=lambda: now_s)


def run(collector, store, state):
    cycle = Cycle("ws")
    collector.collect(cycle, state)
    store.commit("ws/pipelines", cycle, state)


def test_numbers_and_timestamps_as_the_event_log_spells_them():
    assert number("12") == 12 and number(3) == 3 and number("0.5") == 0.5
    assert number(None) is None and number("n/a") is None and number(True) is None and number("nan") is None
    assert event_time_ms("2024-05-01T12:00:00.123Z") == 1714564800123
    assert event_time_ms("2024-05-01T14:00:00.123+02:00") == 1714564800123
    assert event_time_ms(1714564800123) == 1714564800123 and event_time_ms("garbage") is None
    assert iso_ms(1714564800123.9) == "2024-05-01T12:00:00.123Z"


def test_event_log_counted_once_with_causes_gauges_and_no_rereads():
    now_ms = 1_800_000_000_000
    api = FakePipelinesApi()
    since = now_ms - 600_000
    # Before counting began: bookkeeping only.
    api.add(since - 5_000, "flow_progress", {"status": "RUNNING", "metrics": {"num_output_rows": 99}}, flow="f")
    api.add(since - 4_000, "create_update", {"cause": "USER_ACTION"}, update_id="u1")
    # u0 was created before the window: its cause comes from the updates API.
    api.add(since + 1_000, "update_progress", {"state": "FAILED"}, update_id="u0", level="ERROR")
    api.add(since + 1_000, "update_progress", {"state": "FAILED"}, update_id="u0", level="ERROR")  # repeated
    api.add(since + 2_000, "flow_progress", {
        "status": "RUNNING",
        "metrics": {"num_output_rows": "90", "backlog_bytes": "2048", "backlog_seconds": 12.5},
        "data_quality": {"dropped_records": "10", "expectations": [
            {"name": "valid_id", "dataset": "f", "passed_records": "90", "failed_records": "10"}]}},
        level="METRICS", flow="f")
    api.add(since + 3_000, "flow_progress", {"status": "FAILED"}, level="ERROR", flow="f")
    api.add(since + 4_000, "cluster_resources", {"num_executors": "4", "avg_task_slot_utilization": "0.75"},
            level="METRICS")
    store, state = MetricStore(), {}
    collector = make_collector(api, now_ms / 1000)
    run(collector, store, state)

    def value(name, **labels):
        return store.value(name, workspace_id="ws", pipeline_id="p1", **labels)

    assert value("databricks_pipeline_updates_total", state="FAILED", cause="JOB_TASK") == 1
    assert value("databricks_pipeline_update_duration_seconds", ).count == 1
    assert value("databricks_pipeline_flow_output_rows_total", flow_name="f") == 90
    assert value("databricks_pipeline_flow_failures_total", flow_name="f") == 1
    assert value("databricks_pipeline_dropped_records_total", dataset="f") == 10
    assert value("databricks_pipeline_expectation_records_total", dataset="f", expectation="valid_id",
                 outcome="passed") == 90
    assert value("databricks_pipeline_flow_backlog_bytes", flow_name="f") == 2048
    assert value("databricks_pipeline_flow_backlog_seconds", flow_name="f") == 12.5
    assert value("databricks_pipeline_executors") == 4
    assert value("databricks_pipeline_task_slot_utilization_ratio") == 0.75
    assert value("databricks_pipeline_events_total", level="ERROR") == 3
    assert value("databricks_pipeline_info", pipeline_name="orders", continuous="true", serverless="false",
                 development="false") == 1

    # u1 ends; its cause is the one its create_update event gave, before the window.
    api.add(since + 10_000, "update_progress", {"state": "COMPLETED"}, update_id="u1")
    run(collector, store, state)
    assert value("databricks_pipeline_updates_total", state="COMPLETED", cause="USER_ACTION") == 1
    assert value("databricks_pipeline_last_success_timestamp_seconds") == (since + 10_000) / 1000
    assert value("databricks_pipeline_flow_output_rows_total", flow_name="f") == 90   # nothing twice

    # Now quiet: read once more to the end, then never while nothing changes.
    api.status.update(state="IDLE", latest_updates=[{"update_id": "u1", "state": "COMPLETED",
                                                      "creation_time": "2026-01-01T00:00:00.000Z"}])
    run(collector, store, state)
    reads = sum(1 for c in api.calls if c[0] == "events")
    for _ in range(3):
        run(collector, store, state)
    assert sum(1 for c in api.calls if c[0] == "events") == reads
    assert value("databricks_pipeline_executors") == 0
    assert value("databricks_pipeline_task_slot_utilization_ratio") is None
    assert sum(1 for c in api.calls if c[0] == "get") == 1                     # the spec is cached
    assert [c for c in api.calls if c[0] == "list_updates"] == [("list_updates", "p1")]

    # A new update shows up in the list: read again, from where the cursor stopped.
    api.status.update(state="RUNNING", latest_updates=[{"update_id": "u2", "state": "RUNNING",
                                                         "creation_time": "2026-01-01T01:00:00.000Z"}])
    api.add(since + 20_000, "update_progress", {"state": "CANCELED"}, update_id="u2")
    run(collector, store, state)
    assert value("databricks_pipeline_updates_total", state="CANCELED", cause="UNKNOWN") == 1
    assert ("get_update", "u2") in api.calls

    # A restart: a new collector over the persisted state counts nothing again.
    again = make_collector(api, now_ms / 1000)
    run(again, store, json.loads(json.dumps(state)))
    assert value("databricks_pipeline_updates_total", state="FAILED", cause="JOB_TASK") == 1
    assert value("databricks_pipeline_expectation_records_total", dataset="f", expectation="valid_id",
                 outcome="failed") == 10


def test_deleted_pipelines_disappear_with_their_counters():
    now_ms = 1_800_000_000_000
    api = FakePipelinesApi()
    api.add(now_ms - 1000, "flow_progress", {"status": "FAILED"}, level="ERROR", flow="f")
    store, state = MetricStore(), {}
    collector = make_collector(api, now_ms / 1000)
    run(collector, store, state)
    assert store.value("databricks_pipeline_flow_failures_total", workspace_id="ws", pipeline_id="p1",
                       flow_name="f") == 1
    api.list_pipelines = lambda max_results=None: iter([])
    run(collector, store, state)
    assert state["pipelines"] == {}
    assert not [f for f in store.families() if f.metric.collector == "pipelines"]


def test_counters_folded_by_the_cardinality_guard_keep_adding_up():
    """Over the series ceiling, a pipeline's counters fold into pipeline_id="_other"; dropping the counters of
    deleted pipelines must not drop that aggregate, or its counters would reset every cycle."""
    now_ms = 1_800_000_000_000
    api = FakePipelinesApi()
    store, state = MetricStore(), {}
    collector = make_collector(api, now_ms / 1000)
    for i in range(3):
        api.add(now_ms - 1000 + i, "flow_progress", {"status": "FAILED"}, level="ERROR", flow="f")
        cycle = Cycle("ws")
        collector.collect(cycle, state)
        store.commit("ws/pipelines", cycle, state, CardinalityGuard(3))
    assert store.value("databricks_pipeline_flow_failures_total", workspace_id="ws", pipeline_id="_other",
                       flow_name="f") == 3


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(statuses=st.lists(records(["pipeline_id", "name", "state", "health", "latest_updates"]), max_size=3),
       events=st.lists(records(["id", "timestamp", "event_type", "level", "origin", "details"]) | st.builds(
           lambda kind, details, ts, origin: {"id": str(ts), "timestamp": ts, "event_type": kind, "origin": origin,
                                             "details": {kind: details}},
           st.sampled_from(["flow_progress", "update_progress", "create_update", "cluster_resources"]),
           values, st.integers(1_799_999_000_000, 1_800_000_000_000),
           st.fixed_dictionaries({"update_id": values, "flow_name": values})), max_size=8))
def test_the_collector_survives_garbage(statuses, events):
    """Malformed statuses and events are skipped and counted; the cycle commits and the state stays persistable."""
    api = FakePipelinesApi()
    api.list_pipelines = lambda max_results=None: iter(Obj(s) for s in statuses)
    api.do = lambda method, path, query=None: {"events": events}
    store, state = MetricStore(), {}
    collector = make_collector(api, 1_800_000_000)
    for _ in range(2):
        cycle = Cycle("ws")
        collector.collect(cycle, state)
        store.commit("ws/pipelines", cycle, state)
        json.dumps(state)
    for family in store.families():
        if family.metric.type == m.COUNTER:
            assert all(value >= 0 and not math.isnan(value) for _, value in family.samples)


# ------------------------------------------------------------------------------------------------ integration

def only_pipelines(**pipelines) -> dict:
    return {"collectors": {"clusters": {"enabled": False}, "warehouses": {"enabled": False},
                           "jobs": {"enabled": False}, "pipelines": {"interval": "1s", **pipelines}}}


def event_requests(simulator) -> list[dict]:
    return json.loads(http_get(f"{simulator.url}/simulator/pipeline-event-requests")[2])["requests"]


def list_requests(simulator) -> int:
    return simulator.request_counts().get("GET /api/2.0/pipelines", 0)


@pytest.mark.integration
def test_every_pipeline_metric_has_values_and_the_event_log_is_read_as_the_api_allows(simulator,
                                                                                       exporter_factory):
    # Six hours of history always hold flow failures (schema drift, a broken checkpoint).
    exporter = exporter_factory({"lookback": "6h", **only_pipelines(max_event_pages=100)}).start()
    samples = parse(exporter.metrics())
    for metric in PIPELINE_METRICS:
        name = metric.name + ("_count" if metric.type == m.HISTOGRAM else "")
        assert any(n == name for n, _, _ in samples), f"{metric.name} has no samples"
    w = WorkspaceClient(host=simulator.url, token=simulator.token)
    listed = {p.pipeline_id: p for p in w.pipelines.list_pipelines()}
    info = {lab["pipeline_id"]: lab for n, lab, _ in samples if n == "databricks_pipeline_info"}
    assert set(info) == set(listed) and len(info) >= 8
    for pipeline_id, labels in info.items():
        spec = w.pipelines.get(pipeline_id).spec
        assert labels["continuous"] == str(bool(spec.continuous)).lower()
        assert labels["serverless"] == str(bool(spec.serverless)).lower()
        assert labels["development"] == str(bool(spec.development)).lower()
        assert labels["pipeline_name"] == listed[pipeline_id].name
    assert total(samples, "databricks_pipeline_state") == len(listed)
    assert total(samples, "databricks_pipeline_updates_total", state="FAILED") > 0
    assert total(samples, "databricks_pipeline_flow_failures_total") > 0
    assert total(samples, "databricks_pipeline_expectation_records_total", outcome="failed") > 0
    assert total(samples, "databricks_pipeline_expectation_records_total", outcome="passed") > 0
    assert total(samples, "databricks_pipeline_flow_output_rows_total") > 0
    assert total(samples, "databricks_exporter_collector_up", collector="pipelines") == 1

    # Only what the API allows: never an event_type filter, a page_token only with max_results, no 400s.
    requests = event_requests(simulator)
    assert requests and all(r["status"] == 200 for r in requests), [r for r in requests if r["status"] != 200]
    assert not [r for r in requests if "event_type" in json.dumps(r["query"])]
    for r in requests:
        if "page_token" in r["query"]:
            assert set(r["query"]) == {"page_token", "max_results"}, r
        else:
            assert r["query"]["order_by"] == ["timestamp asc"] and r["query"]["filter"][0].startswith("timestamp >=")

    # With the world paused, a quiet pipeline's events are not fetched again; a running one's reads return only
    # the few events of the overlap margin, once per cycle.
    post(simulator, "/simulator/pause")     # the simulator fixture ends with the test: no resume needed
    cycles_before = list_requests(simulator)
    wait_for(lambda: list_requests(simulator) >= cycles_before + 2, 30, what="two cycles to settle")
    statuses = {p.pipeline_id: p.state.value for p in w.pipelines.list_pipelines()}
    first, counts_at = len(event_requests(simulator)), simulator.request_counts()
    cycles_at = counts_at["GET /api/2.0/pipelines"]
    wait_for(lambda: list_requests(simulator) >= cycles_at + 4, 30, what="four idle cycles", interval=0.05)
    idle = event_requests(simulator)[first:]
    counts = simulator.request_counts()
    cycles = counts["GET /api/2.0/pipelines"] - cycles_at
    others = {k: n - counts_at.get(k, 0) for k, n in counts.items()
              if k.startswith("GET /api/2.0/pipelines/") and not k.endswith("/events") and n - counts_at.get(k, 0)}
    per_pipeline: dict[str, list[int]] = {}
    for r in idle:
        per_pipeline.setdefault(r["pipeline_id"], []).append(r["returned"])
    quiet = [p for p, s in statuses.items() if s in QUIET]
    assert quiet and not [p for p in quiet if p in per_pipeline], (quiet, per_pipeline)
    for pipeline_id, returned in per_pipeline.items():
        assert statuses[pipeline_id] not in QUIET
        assert len(returned) <= cycles + 1 and max(returned) <= 25, (pipeline_id, returned)
    assert not others, others     # no get, no updates list in steady state
    print(f"\nsteady state, {cycles} cycles: {cycles} list requests, {len(idle)} events requests "
          f"({len(per_pipeline)} running pipelines of {len(statuses)}, returning {sum(map(sum, per_pipeline.values()))}"
          f" events in all), other pipeline requests {others}")


def counted(exporter) -> tuple[dict, dict, dict, dict, float]:
    samples = parse(exporter.metrics())
    expectations, updates, dropped, rows = {}, {}, {}, {}
    for name, labels, value in samples:
        if name == "databricks_pipeline_expectation_records_total" and value:
            key = (labels["pipeline_id"], labels["dataset"], labels["expectation"], labels["outcome"])
            expectations[key] = expectations.get(key, 0) + value
        elif name == "databricks_pipeline_updates_total" and value:
            key = (labels["pipeline_id"], labels["state"])
            updates[key] = updates.get(key, 0) + value
        elif name == "databricks_pipeline_dropped_records_total" and value:
            dropped[(labels["pipeline_id"], labels["dataset"])] = value
        elif name == "databricks_pipeline_flow_output_rows_total" and value:
            rows[(labels["pipeline_id"], labels["flow_name"])] = value
    since = total(samples, "databricks_exporter_counting_since_timestamp_seconds", collector="pipelines")
    return expectations, updates, dropped, rows, since


def from_truth(truth: dict) -> tuple[dict, dict, dict, dict]:
    """What counted() should see, from the simulated workspace's ledger."""
    expectations = {(p, d, e, outcome): n
                    for p, datasets in truth["pipeline_expectation_records"]["by_pipeline"].items()
                    for d, exps in datasets.items() for e, outcomes in exps.items()
                    for outcome, n in outcomes.items() if n}
    updates = {(p, s): n for p, states in truth["pipeline_updates"]["by_pipeline"].items()
               for s, n in states.items()}
    dropped = {(p, d): n for p, per in truth["pipeline_dropped_records"].items() for d, n in per.items() if n}
    rows = {(p, f): n for p, per in truth["pipeline_flow_output_rows"].items() for f, n in per.items() if n}
    return expectations, updates, dropped, rows


@pytest.mark.integration
def test_expectation_records_and_updates_counted_exactly_once_across_sigkill_restarts(simulator,
                                                                                        exporter_factory):
    exporter = exporter_factory(only_pipelines()).start()
    first_since = counted(exporter)[4]
    assert first_since > 0
    # Cycles run every second: the kill is likely mid-cycle; batches and updates complete while the exporter is down.
    sigkill_restarts(exporter, [(2, 3)], then=2)
    ledger = {}

    def expected():
        ledger.update(truth(simulator, first_since))
        return (*from_truth(ledger), first_since)

    got, _ = converge_on_truth(simulator, lambda: counted(exporter), expected,
                               what="pipeline counters to equal the truth")
    assert ledger["pipeline_updates"]["total"] > 0 and ledger["pipeline_expectation_records"]["by_outcome"]["failed"]
    reported = {o: sum(n for k, n in got[0].items() if k[3] == o) for o in ("passed", "failed")}
    assert reported == ledger["pipeline_expectation_records"]["by_outcome"]
    print(f"\nsince {first_since:.3f}: exporter expectation records {reported}, truth "
          f"{ledger['pipeline_expectation_records']['by_outcome']}; updates {sum(got[1].values()):.0f} "
          f"by state {ledger['pipeline_updates']['by_state']}")
