"""The job_costs and warehouse_usage collectors against the simulated workspace (real connector over HTTPS, real SDK
over HTTP): a closed day's cost of runs by job and result, the all-purpose bucket and the per-run histogram equal
/simulator/truth; warehouse running, cluster and idle seconds, events and idle cost equal the simulator's own
timeline and query log; counters count each interval and each run once, across a restart too."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sql_helpers import (  # noqa: F401 (clock and server are fixtures)
    FakeClock, T0, by, clock, collector, connected, run_cycle, samples, server, warehouse_in,
)

from conftest import http_get
from databricks_exporter.store import MetricStore

pytestmark = pytest.mark.integration
WORKSPACE = "1234567890123456"


@pytest.fixture(scope="module")
def workspace(server):
    workspace = connected(server, warehouse_in(server, "RUNNING").id)
    yield workspace
    workspace.sql.close()


@pytest.fixture(scope="module")
def truth(server):
    return json.loads(http_get(f"{server.url}/simulator/truth")[2])


def approx(table: dict) -> dict:
    return {k: pytest.approx(v, rel=1e-9, abs=1e-6) for k, v in table.items()}


def the_day_before(t: float) -> str:
    return (dt.datetime.fromtimestamp(t, dt.timezone.utc).date() - dt.timedelta(days=1)).isoformat()


def cost_by_job_and_result(store: MetricStore, period: str) -> dict:
    out = {}
    for labels, value in samples(store, "databricks_job_run_cost"):
        if labels["period"] == period and labels["currency"] == "USD":
            out[(labels["job_id"], labels["result_state"])] = value
    return out


def test_a_closed_day_of_run_costs_equals_the_truth(workspace, truth):
    day = the_day_before(T0)            # the world's first (partial) day: billed completely by now
    assert truth["billing"]["workspaces"][WORKSPACE][day]["complete"]
    expected_day = truth["job_run_cost"]["days"][day]
    store = MetricStore()
    end_of_day = dt.datetime.fromisoformat(day).replace(tzinfo=dt.timezone.utc).timestamp() + 86_399
    run_cycle(collector("job_costs", workspace, FakeClock(end_of_day)), store)

    expected = {(job, result): cost for job, results in expected_day["by_job"].items()
                for result, cost in results.items()}
    expected[("_all_purpose", "UNKNOWN")] = expected_day["all_purpose"]
    assert len(expected) > 50 and expected_day["all_purpose"] > 0
    failed = {k: v for k, v in expected.items() if k[1] == "FAILED"}
    assert failed and sum(failed.values()) > 0.5        # failures cost something on this day
    assert cost_by_job_and_result(store, "day") == approx(expected)
    # Repairs: usage rows of a run that start at or after its first end (hour rows: a repair within the hour of
    # the first end is billed with the original run).
    repairs = by(store, "databricks_job_run_repair_cost", "job_id", period="day")
    assert set(repairs) == {job for job, _ in expected if job != "_all_purpose"}
    assert {k: v for k, v in repairs.items() if v} == approx(expected_day["repairs"])
    print(f"{day}: repairs cost {sum(repairs.values()):.4f} over {len(expected_day['repairs'])} jobs")


def test_each_settled_run_is_observed_once_across_cycles_and_a_restart(workspace, truth):
    settle = 4 * 3600.0
    clock = FakeClock(T0 - 3600)
    store = MetricStore()
    first = collector("job_costs", workspace, clock, lookback=6 * 3600, settle_seconds=settle)
    run_cycle(first, store)
    state = store.state(f"{WORKSPACE}/job_costs")
    start = state["counting_since"] - settle
    clock.advance(1800)
    run_cycle(first, store)
    run_cycle(first, store)                     # nothing new: observes nothing
    clock.advance(1800)                          # a new exporter process, same persisted state
    run_cycle(collector("job_costs", workspace, clock, lookback=6 * 3600, settle_seconds=settle), store)
    end = clock() - settle
    runs = [r for r in truth["job_run_cost"]["runs"].values() if r["ended"] is not None and start <= r["ended"] < end]
    assert len(runs) > 100
    (labels, histogram), = samples(store, "databricks_job_run_cost_per_run")
    assert labels == {"workspace_id": WORKSPACE, "currency": "USD"}
    assert histogram.count == len(runs)
    assert histogram.sum == pytest.approx(sum(r["cost"] for r in runs), rel=1e-9)


def test_warehouse_uptime_and_idleness_equal_the_truth_counted_once(server, workspace):
    clock = FakeClock(T0)
    store = MetricStore()
    instance = collector("warehouse_usage", workspace, clock, lookback=12 * 3600)
    run_cycle(instance, store)
    state = store.state(f"{WORKSPACE}/warehouse_usage")
    start = state["counting_since"] - 7200
    clock.advance(1200)
    run_cycle(instance, store)
    run_cycle(collector("warehouse_usage", workspace, clock, lookback=12 * 3600), store)   # restarted
    end = store.state(f"{WORKSPACE}/warehouse_usage")["counted_until"]
    assert end == (T0 + 1200 - 7200) // 60 * 60
    assert by(store, "databricks_warehouse_usage_settled_timestamp_seconds") == {"": end}
    expected = json.loads(http_get(f"{server.url}/simulator/truth/warehouse-usage?start={start}&end={end}&grace=300")[2])
    expected = expected["warehouses"]
    wanted = {w: t for w, t in expected.items() if t["running_seconds"]}
    assert len(wanted) >= 2 and any(t["idle_seconds"] > 60 for t in wanted.values())
    assert by(store, "databricks_warehouse_running_seconds_total", "warehouse_id") == approx(
        {w: t["running_seconds"] for w, t in wanted.items()})
    assert by(store, "databricks_warehouse_cluster_seconds_total", "warehouse_id") == approx(
        {w: t["cluster_seconds"] for w, t in wanted.items()})
    assert by(store, "databricks_warehouse_idle_seconds_total", "warehouse_id") == approx(
        {w: t["idle_seconds"] for w, t in wanted.items() if t["idle_seconds"]})
    assert by(store, "databricks_warehouse_idle_cost_total", "warehouse_id", currency="USD") == approx(
        {w: t["idle_cost"] for w, t in wanted.items() if t["idle_cost"]})
    events = {(labels["warehouse_id"], labels["event_type"]): value
              for labels, value in samples(store, "databricks_warehouse_events_total")}
    assert events == {(w, kind): n for w, t in expected.items() for kind, n in t["events"].items()}
    assert events
