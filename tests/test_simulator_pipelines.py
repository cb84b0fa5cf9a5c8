"""The simulated workspace's Lakeflow Declarative Pipelines (DLT): the list, get, updates and events API and their
rules through the real databricks-sdk over HTTP, and the model behind them (real update states and causes, the
failure scenarios of the DLT operations guide, determinism, a ground truth that matches what the API shows)."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import InvalidParameterValue, NotFound

from databricks_sim import SimulatedWorkspace, SimulatorServer
from databricks_sim.pipelines import (
    STARTUP_STATES,
    TERMINAL_UPDATE_STATES,
    iso_ms,
    parse_filter,
    parse_iso_ms,
)
from sql_helpers import FakeClock

pytestmark = pytest.mark.integration

T0 = 1_790_000_000.0
SMALL = {"n_clusters": 2, "n_jobs": 2, "n_warehouses": 1}   # pipelines only matter here: keep the rest cheap



@pytest.fixture(scope="module")
def server():
    srv = SimulatorServer(seed=5).start()
    requests.post(f"{srv.url}/simulator/pause").raise_for_status()   # a still world: pages cannot shift
    yield srv
    srv.shutdown()


@pytest.fixture(scope="module")
def w(server) -> WorkspaceClient:
    return WorkspaceClient(host=server.url, token=server.token)


@pytest.fixture(scope="module")
def pipelines(w):
    return {p.pipeline_id: p for p in w.pipelines.list_pipelines(max_results=100)}


def events(w, pipeline_id: str, **query) -> dict:
    return w.api_client.do("GET", f"/api/2.0/pipelines/{pipeline_id}/events", query=query)


def all_events(w, pipeline_id: str, page_size: int = 1000, **query) -> list[dict]:
    out, page = [], events(w, pipeline_id, max_results=page_size, **query)
    while True:
        out += page["events"]
        if not page.get("next_page_token"):
            return out
        page = events(w, pipeline_id, page_token=page["next_page_token"], max_results=page_size)


def by_name(server, name: str):
    return next(p for p in server.workspace.pipelines.pipelines if p.spec.name == name)


# ------------------------------------------------------------------------------------------------ inventory

def test_at_least_eight_pipelines_triggered_and_continuous_serverless_and_classic(w, pipelines):
    assert len(pipelines) >= 8
    specs = {pid: w.pipelines.get(pid) for pid in pipelines}
    assert {bool(g.spec.continuous) for g in specs.values()} == {True, False}
    assert {bool(g.spec.serverless) for g in specs.values()} == {True, False}
    for pid, got in specs.items():
        assert got.pipeline_id == pid and got.name == pipelines[pid].name and got.spec.id == pid
        if got.spec.serverless:
            assert not got.spec.clusters
        else:
            assert got.spec.clusters[0].autoscale.max_workers > got.spec.clusters[0].autoscale.min_workers
        assert got.last_modified and got.creator_user_name
    states = {p.state.value for p in pipelines.values()}
    assert "RUNNING" in states and states & {"IDLE", "FAILED"}
    assert {p.health.value for p in pipelines.values()} <= {"HEALTHY", "UNHEALTHY"}
    with pytest.raises(NotFound):
        w.pipelines.get("00000000-0000-0000-0000-000000000000")


def test_list_pages_and_limits(w, server, pipelines):
    assert {p.pipeline_id for p in w.pipelines.list_pipelines(max_results=3)} == set(pipelines)
    body = w.api_client.do("GET", "/api/2.0/pipelines", query={"max_results": 3})
    assert len(body["statuses"]) == 3 and body["next_page_token"]
    with pytest.raises(InvalidParameterValue):
        list(w.pipelines.list_pipelines(max_results=101))
    named = list(w.pipelines.list_pipelines(filter="name LIKE '%orders%'"))
    assert [p.name for p in named] == ["sales_orders_etl"]
    for status in pipelines.values():
        updates = status.latest_updates
        assert updates and all(u.creation_time.endswith("Z") for u in updates)
        assert [u.creation_time for u in updates] == sorted((u.creation_time for u in updates), reverse=True)


# ------------------------------------------------------------------------------------------------ updates

def test_updates_go_through_the_real_states_and_causes(server):
    now = server.workspace.now_ms()
    seen_states, causes, terminal = set(), Counter(), Counter()
    for pipeline in server.workspace.pipelines.pipelines:
        for update in pipeline.updates:
            states = [s for _, s in update.states if _ <= now]
            seen_states.update(states)
            causes[update.cause] += 1
            assert states[0] == "QUEUED"
            order = list(STARTUP_STATES) + ["RESETTING", "RUNNING", "STOPPING"] + list(TERMINAL_UPDATE_STATES)
            assert all(s in order for s in states)
            assert sum(s in TERMINAL_UPDATE_STATES for s in states) <= 1
            assert [ts for ts, _ in update.states] == sorted(ts for ts, _ in update.states)
            if update.end_ms is not None and update.end_ms <= now:
                terminal[update.terminal_state] += 1
            if update.full_refresh and len(states) > 4:
                assert "RESETTING" in states
    assert seen_states >= set(STARTUP_STATES) | {"RUNNING", "STOPPING", "RESETTING", "COMPLETED", "FAILED",
                                                 "CANCELED"}
    assert set(causes) >= {"JOB_TASK", "API_CALL", "USER_ACTION", "RETRY_ON_FAILURE", "SCHEMA_CHANGE"}
    assert set(causes) & {"SERVICE_UPGRADE", "INFRASTRUCTURE_MAINTENANCE"}
    assert all(terminal[s] for s in TERMINAL_UPDATE_STATES)


def test_list_updates_is_one_page_newest_first_with_a_token(w, server):
    pipeline = by_name(server, "sales_orders_etl")
    page = w.pipelines.list_updates(pipeline.pipeline_id, max_results=5)
    assert len(page.updates) == 5 and page.next_page_token
    times = [u.creation_time for u in page.updates]
    assert times == sorted(times, reverse=True)
    second = w.pipelines.list_updates(pipeline.pipeline_id, max_results=5, page_token=page.next_page_token)
    assert second.updates[0].creation_time < times[-1]
    assert not {u.update_id for u in page.updates} & {u.update_id for u in second.updates}
    default = w.pipelines.list_updates(pipeline.pipeline_id)
    assert len(default.updates) == 25
    one = page.updates[0]
    got = w.pipelines.get_update(pipeline.pipeline_id, one.update_id).update
    assert got.update_id == one.update_id and got.state == one.state and got.cause == one.cause
    with pytest.raises(NotFound):
        w.pipelines.get_update(pipeline.pipeline_id, "00000000-0000-0000-0000-000000000000")
    with pytest.raises(InvalidParameterValue):
        w.pipelines.list_updates(pipeline.pipeline_id, max_results=101)


def test_update_states_match_the_event_log(w, server):
    pipeline = by_name(server, "customer_profiles")
    log = all_events(w, pipeline.pipeline_id, order_by="timestamp asc")
    terminal = {e["origin"]["update_id"]: (e["details"]["update_progress"]["state"], e["timestamp"])
                for e in log if e["event_type"] == "update_progress"
                and e["details"]["update_progress"]["state"] in TERMINAL_UPDATE_STATES}
    created = {e["origin"]["update_id"]: e["details"]["create_update"]["cause"]
               for e in log if e["event_type"] == "create_update"}
    page = w.pipelines.list_updates(pipeline.pipeline_id, max_results=100)
    for update in page.updates:
        assert created[update.update_id] == update.cause.value
        if update.state.value in TERMINAL_UPDATE_STATES:
            assert terminal[update.update_id][0] == update.state.value
        else:
            assert update.update_id not in terminal


# ------------------------------------------------------------------------------------------------ events API

def test_event_type_filter_is_rejected(w, pipelines):
    pid = next(iter(pipelines))
    for expression in ("event_type = 'flow_progress'", "level = 'INFO' AND event_type = 'update_progress'",
                       "event_type in ('flow_progress')"):
        with pytest.raises(InvalidParameterValue, match="event_type"):
            events(w, pid, filter=expression)


def test_page_token_travels_alone_with_max_results(w, server, pipelines):
    pid = by_name(server, "clickstream_live").pipeline_id
    first = events(w, pid, max_results=5, filter="level = 'METRICS'", order_by="timestamp asc")
    token = first["next_page_token"]
    for extra in ({"filter": "level = 'METRICS'"}, {"order_by": "timestamp asc"}):
        with pytest.raises(InvalidParameterValue, match="page_token"):
            events(w, pid, page_token=token, max_results=5, **extra)
    second = events(w, pid, page_token=token, max_results=5)
    assert all(e["level"] == "METRICS" for e in second["events"])   # the filter travels inside the token
    assert second["events"][0]["timestamp"] >= first["events"][-1]["timestamp"]
    # The SDK's own iterator re-sends the filter with the token, which the API refuses.
    with pytest.raises(InvalidParameterValue):
        list(w.pipelines.list_pipeline_events(pid, filter="level = 'METRICS'", max_results=5))
    with pytest.raises(InvalidParameterValue):
        events(w, pid, max_results=1001)
    with pytest.raises(InvalidParameterValue):
        events(w, pid, order_by="level asc")
    with pytest.raises(NotFound):
        events(w, "00000000-0000-0000-0000-000000000000")


def test_events_newest_first_by_default_and_pages_are_complete(w, server):
    pid = by_name(server, "payments_stream").pipeline_id
    since = iso_ms(server.workspace.now_ms() - 2 * 3_600_000)
    desc = all_events(w, pid, page_size=37, filter=f"timestamp >= '{since}'")
    asc = all_events(w, pid, page_size=1000, filter=f"timestamp >= '{since}'", order_by="timestamp asc")
    assert [e["id"] for e in desc] == [e["id"] for e in reversed(asc)]
    assert len({e["id"] for e in asc}) == len(asc) > 37
    assert [e["timestamp"] for e in asc] == sorted(e["timestamp"] for e in asc)
    default = events(w, pid, max_results=3)["events"]
    assert default[0]["timestamp"] >= default[-1]["timestamp"] and default[0]["id"] == desc[0]["id"]


def test_filters_on_timestamp_level_id_and_update_id(w, server):
    pid = by_name(server, "sales_orders_etl").pipeline_id
    now = server.workspace.now_ms()
    lo, hi = iso_ms(now - 3_600_000), iso_ms(now - 1_800_000)
    window = all_events(w, pid, filter=f"timestamp >= '{lo}' AND timestamp < '{hi}'")
    assert window and all(lo <= e["timestamp"] < hi for e in window)
    errors = all_events(w, pid, filter="level in ('ERROR', 'WARN') AND timestamp > '2020-01-01T00:00:00Z'")
    assert all(e["level"] in ("ERROR", "WARN") for e in errors)
    one = window[len(window) // 2]
    assert [e["id"] for e in events(w, pid, filter=f"id = '{one['id']}'")["events"]] == [one["id"]]
    update_id = one["origin"]["update_id"]
    of_update = all_events(w, pid, filter=f"update_id = '{update_id}'")
    assert of_update and {e["origin"]["update_id"] for e in of_update} == {update_id}
    assert {e["event_type"] for e in of_update} >= {"create_update", "update_progress", "flow_progress"}


def test_filter_parser_and_timestamps():
    parsed = parse_filter("timestamp > '2024-05-01T12:00:00.123Z' and level='info'")
    assert parsed.lo == parse_iso_ms("2024-05-01T12:00:00.123Z") + 1
    assert parsed.conditions == [("level", "=", {"INFO"})]
    assert parse_iso_ms("2024-05-01T12:00:00Z") == parse_iso_ms("2024-05-01T14:00:00+02:00")
    assert iso_ms(parse_iso_ms("2024-05-01T12:00:00.007Z")) == "2024-05-01T12:00:00.007Z"
    for bad in ("event_type = 'x'", "message = 'x'", "level = 'LOUD'", "timestamp ~ 'x'", "level = 'INFO"):
        with pytest.raises(Exception):
            parse_filter(bad)


def test_event_shapes_as_the_reference_shows(w, server):
    pipeline = by_name(server, "sales_orders_etl")
    log = all_events(w, pipeline.pipeline_id, filter="timestamp > '2020-01-01T00:00:00Z'")
    kinds = Counter(e["event_type"] for e in log)
    assert {"create_update", "update_progress", "flow_progress", "cluster_resources", "flow_definition"} <= set(kinds)
    assert {e["level"] for e in log} >= {"INFO", "METRICS"}
    batch = next(e for e in log
                 if e["event_type"] == "flow_progress" and "data_quality" in e["details"]["flow_progress"])
    origin = batch["origin"]
    assert {"pipeline_id", "pipeline_name", "update_id", "flow_id", "flow_name", "dataset_name",
            "cluster_id"} <= set(origin)
    quality = batch["details"]["flow_progress"]["data_quality"]
    assert {"dropped_records", "expectations"} <= set(quality)
    assert {"name", "dataset", "passed_records", "failed_records"} <= set(quality["expectations"][0])
    metrics = batch["details"]["flow_progress"]["metrics"]
    assert {"num_output_rows", "backlog_bytes", "backlog_records", "backlog_seconds"} <= set(metrics)
    resources = next(e for e in log if e["event_type"] == "cluster_resources" and e["level"] == "METRICS")
    assert {"num_executors", "num_task_slots", "avg_task_slot_utilization"} <= \
        set(resources["details"]["cluster_resources"])
    assert isinstance(metrics["num_output_rows"], int)
    # Odd-numbered pipelines spell numbers as strings, as int64 fields come out of proto JSON.
    odd = by_name(server, "customer_profiles")
    odd_batch = next(e for e in all_events(w, odd.pipeline_id, filter="level = 'METRICS'")
                     if e["event_type"] == "flow_progress")
    assert isinstance(odd_batch["details"]["flow_progress"]["metrics"]["num_output_rows"], str)


# ------------------------------------------------------------------------------------------------ behaviours

def test_failure_scenarios_of_the_operations_guide(server):
    def errors(name):
        return " ".join(exc["message"] for e in by_name(server, name).events if e[8]
                        for exc in e[8]["exceptions"])

    # Schema drift: new columns (an automatic SCHEMA_CHANGE restart fixes them), a changed type (fails until the
    # user's full refresh). Seed 5's day has both.
    drift = errors("customer_profiles")
    assert "UNKNOWN_FIELD_EXCEPTION" in drift and "DELTA_FAILED_TO_MERGE_FIELDS" in drift
    profiles = by_name(server, "customer_profiles")
    assert any(u.full_refresh and u.cause == "USER_ACTION" and u.terminal_state == "COMPLETED"
               for u in profiles.updates)
    assert "checkpoint" in errors("payments_stream")
    payments = by_name(server, "payments_stream")
    assert any(u.full_refresh and u.cause == "USER_ACTION" for u in payments.updates)   # the reset
    assert "EXPECTATION_VIOLATION" in errors("ledger_reconciliation")
    assert "TimeoutException" in " ".join(exc["class_name"] for e in by_name(server, "shipments_cdc").events
                                          if e[8] for exc in e[8]["exceptions"])
    clicks = by_name(server, "clickstream_live")
    lags = [e[6]["flow_progress"]["metrics"]["backlog_seconds"] for e in clicks.events
            if e[3] == "flow_progress" and e[5] == 0 and "metrics" in e[6]["flow_progress"]]
    assert max(lags) > 3600 and min(lags) < max(lags) / 4          # builds a backlog, then drains
    inventory = by_name(server, "inventory_snapshot")
    rates = []
    for e in inventory.events:
        quality = e[6].get("flow_progress", {}).get("data_quality") if e[3] == "flow_progress" else None
        if quality:
            exp = next(x for x in quality["expectations"] if x["name"] == "non_negative_quantity")
            rates.append(exp["failed_records"] / (exp["passed_records"] + exp["failed_records"]))
    assert min(rates) < 0.01 and max(rates) > 0.05                  # drifts past the 95% pass-rate alert


def test_any_six_hours_hold_flow_failures_and_every_terminal_state():
    ws = SimulatedWorkspace(seed=3, clock=FakeClock(T0), **SMALL)
    truth = ws.truth(T0 - 6 * 3600)
    assert truth["pipeline_updates"]["by_state"].get("FAILED", 0) > 0
    failures = sum(1 for p in ws.pipelines.pipelines for e in p.events
                   if e[0] >= (T0 - 6 * 3600) * 1000 and e[3] == "flow_progress"
                   and e[6]["flow_progress"]["status"] == "FAILED")
    assert failures > 0


# ------------------------------------------------------------------------------------------------ model

def test_determinism_by_seed_and_lazy_generation():
    a = SimulatedWorkspace(seed=9, clock=FakeClock(T0), **SMALL)
    b = SimulatedWorkspace(seed=9, clock=FakeClock(T0), **SMALL)
    a.pipelines.list_pipelines()          # a generates everything now; b only when truth asks
    assert a.truth(T0 - 3600) == b.truth(T0 - 3600)
    pid = a.pipelines.pipelines[0].pipeline_id
    query = {"max_results": ["50"], "order_by": ["timestamp asc"],
             "filter": [f"timestamp >= '{iso_ms(int(T0 * 1000) - 600_000)}'"]}
    assert a.pipelines.list_events(pid, query) == b.pipelines.list_events(pid, query)
    c = SimulatedWorkspace(seed=10, clock=FakeClock(T0), **SMALL)
    assert c.truth(T0 - 3600)["pipeline_expectation_records"] != a.truth(T0 - 3600)["pipeline_expectation_records"]


def test_the_pipelines_keep_moving_with_the_clock():
    clock = FakeClock(T0)
    ws = SimulatedWorkspace(seed=4, clock=clock, **SMALL)
    first = {s["pipeline_id"]: s for s in ws.pipelines.list_pipelines(max_results=100)["statuses"]}
    before = ws.truth(T0)
    clock.t += 3 * 3600
    after = ws.truth(T0)
    assert after["pipeline_updates"]["total"] > before["pipeline_updates"]["total"]
    assert after["pipeline_expectation_records"]["by_outcome"]["passed"] > \
        before["pipeline_expectation_records"]["by_outcome"]["passed"]
    later = {s["pipeline_id"]: s for s in ws.pipelines.list_pipelines(max_results=100)["statuses"]}
    assert any(first[p]["latest_updates"][0]["update_id"] != later[p]["latest_updates"][0]["update_id"]
               for p in first)


def test_truth_equals_an_independent_sum_over_the_events_api(w, server):
    now = server.workspace.now()
    since = now - 1800
    truth = requests.get(f"{server.url}/simulator/truth", params={"since": since}, timeout=30).json()
    passed = failed = 0
    updates = Counter()
    for p in w.pipelines.list_pipelines(max_results=100):
        log = all_events(w, p.pipeline_id, filter=f"timestamp >= '{iso_ms(math.ceil(since * 1000))}'")
        for e in log:
            details = e["details"]
            if e["event_type"] == "flow_progress":
                for exp in details["flow_progress"].get("data_quality", {}).get("expectations", []):
                    passed += int(exp["passed_records"])
                    failed += int(exp["failed_records"])
            if e["event_type"] == "update_progress" and details["update_progress"]["state"] in TERMINAL_UPDATE_STATES:
                updates[details["update_progress"]["state"]] += 1
    assert truth["pipeline_expectation_records"]["by_outcome"] == {"passed": passed, "failed": failed}
    assert truth["pipeline_updates"]["by_state"] == dict(updates)
    assert passed > 0 and sum(updates.values()) > 0


def test_event_requests_are_logged_for_tests(server, w):
    pid = next(iter(server.workspace.pipelines.by_id))
    events(w, pid, max_results=2, filter="level = 'INFO'")
    with pytest.raises(InvalidParameterValue):
        events(w, pid, filter="event_type = 'x'")
    log = requests.get(f"{server.url}/simulator/pipeline-event-requests", timeout=10).json()["requests"]
    assert log[-2]["query"]["filter"] == ["level = 'INFO'"] and log[-2]["status"] == 200
    assert log[-1]["status"] == 400 and log[-1]["pipeline_id"] == pid
