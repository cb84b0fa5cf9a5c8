"""Incident scenarios of the simulated workspace (simulator/scenarios.py): the control endpoints, and that each one
changes the workspace's data (REST answers, system tables, the truth) from its start on, deterministically."""

from __future__ import annotations

import json
import urllib.request
from datetime import timezone

import pytest

from databricks_sim import SimulatedWorkspace
from databricks_sim.scenarios import SCENARIOS
from databricks_sim.sql import SqlService
from sql_helpers import T0, FakeClock


def control(server, method: str, path: str) -> tuple[int, dict]:
    request = urllib.request.Request(server.url + path, method=method, data=b"" if method != "GET" else None)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_scenarios_are_listed_started_and_ended_over_http(simulator):
    status, listed = control(simulator, "GET", "/simulator/scenarios")
    assert status == 200 and {s["name"] for s in listed["scenarios"]} >= {
        "job_failure_storm", "cpu_saturation", "memory_pressure", "expectations_failing", "pipeline_backlog",
        "spend_spike"}
    assert not any(s["active"] for s in listed["scenarios"])

    status, body = control(simulator, "POST", "/simulator/scenarios/volcano")
    assert status == 404 and body["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert "volcano" in body["message"] and "job_failure_storm" in body["message"]
    assert control(simulator, "DELETE", "/simulator/scenarios/volcano")[0] == 404

    status, storm = control(simulator, "POST", "/simulator/scenarios/job_failure_storm")
    assert status == 200 and storm["active"] and 4 <= len(storm["targets"]["job_ids"]) <= 6
    assert control(simulator, "POST", "/simulator/scenarios/job_failure_storm")[1] == storm     # already active
    control(simulator, "POST", "/simulator/scenarios/cpu_saturation")
    active = {s["name"] for s in control(simulator, "GET", "/simulator/scenarios")[1]["scenarios"] if s["active"]}
    assert active == {"job_failure_storm", "cpu_saturation"}

    status, ended = control(simulator, "DELETE", "/simulator/scenarios/cpu_saturation")
    assert status == 200 and [w["name"] for w in ended["ended"]] == ["cpu_saturation"]
    status, ended = control(simulator, "DELETE", "/simulator/scenarios")
    assert [w["name"] for w in ended["ended"]] == ["job_failure_storm"] and ended["ended"][0]["ended_at"]
    listed = control(simulator, "GET", "/simulator/scenarios")[1]["scenarios"]
    assert not any(s["active"] for s in listed)
    storm_entry = next(s for s in listed if s["name"] == "job_failure_storm")
    assert storm_entry["activations"][0]["targets"] == storm["targets"]


def epoch(naive_utc) -> float:
    return naive_utc.replace(tzinfo=timezone.utc).timestamp()


def workspace(clock: FakeClock) -> SimulatedWorkspace:
    return SimulatedWorkspace(seed=7, start=T0, clock=clock, history_seconds=6 * 3600)


def test_a_job_failure_storm_fails_every_run_of_its_jobs_while_it_lasts_and_the_truth_counts_them():
    clock = FakeClock()
    ws = workspace(clock)
    before = ws.truth(T0)["job_runs"]["by_job"]
    targets = ws.scenarios.start("job_failure_storm").targets["job_ids"]
    clock.advance(900)
    ws.scenarios.stop("job_failure_storm")
    clock.advance(900)
    truth = ws.truth(T0)["job_runs"]["by_job"]
    runs = [r for j in ws.jobs if str(j.job_id) in targets for r in j.runs if r.start_ms > T0 * 1000]
    during = [r for r in runs if r.start_ms <= (T0 + 900) * 1000]
    after = [r for r in runs if r.start_ms > (T0 + 900) * 1000]
    assert len(during) >= 10 and all(r.result == "FAILED" for r in during)
    assert any(r.result == "SUCCESS" for r in after)           # the storm is over
    for job_id in targets:
        failed_during = sum(1 for r in during if str(r.job.job_id) == job_id and r.end_ms <= (T0 + 1800) * 1000)
        assert truth[job_id].get("FAILED", 0) >= failed_during > before.get(job_id, {}).get("FAILED", 0)
    # and the REST API says so, as the exporter reads it
    job_id = int(targets[0])
    listed = ws.list_runs(job_id=job_id, completed_only=True, start_time_from=int(T0 * 1000) + 1,
                          start_time_to=int((T0 + 900) * 1000), limit=25)["runs"]
    assert listed and all(r["state"]["result_state"] == "FAILED" for r in listed)


@pytest.mark.parametrize("name, check", [
    ("cpu_saturation", lambda row: row["cpu_user_percent"] + row["cpu_system_percent"] > 95),
    ("memory_pressure", lambda row: row["mem_used_percent"] > 95),
])
def test_node_stress_shows_in_node_timeline_for_its_cluster_only(name, check):
    clock = FakeClock()
    ws = workspace(clock)
    service = SqlService(ws, node_lag_seconds=0)
    try:
        cluster_id = ws.scenarios.start(name).targets["cluster_ids"][0]
        clock.advance(600)
        result = service.tables.execute(
            "SELECT cluster_id, start_time, cpu_user_percent, cpu_system_percent, mem_used_percent "
            "FROM system.compute.node_timeline", ws.now_ms())
        columns = [c for c, _ in result.columns]
        rows = [dict(zip(columns, row)) for row in result.rows]
        stressed = [r for r in rows if epoch(r["start_time"]) > T0]
        mine = [r for r in stressed if r["cluster_id"] == cluster_id]
        assert len(mine) >= 9 and all(check(r) for r in mine)
        others = [r for r in stressed if r["cluster_id"] != cluster_id]
        assert others and not all(check(r) for r in others)
        assert not all(check(r) for r in rows if r["cluster_id"] == cluster_id and epoch(r["start_time"]) < T0)
    finally:
        service.shutdown()


def flow_progress(ws, pipeline_id: str, after_ms: int, flow: int | None = None) -> list[dict]:
    pipeline = ws.pipelines.by_id[pipeline_id]
    ws.pipelines._now()
    return [e[6]["flow_progress"] for e in pipeline.events
            if e[3] == "flow_progress" and after_ms < e[0] <= ws.now_ms() and "metrics" in e[6]["flow_progress"]
            and flow in (None, e[5])]


def test_failing_expectations_and_a_growing_backlog_show_in_the_event_log_from_the_next_update():
    clock = FakeClock()
    ws = workspace(clock)
    failing = ws.scenarios.start("expectations_failing").targets["pipeline_ids"][0]
    backlogged = ws.scenarios.start("pipeline_backlog").targets["pipeline_ids"][0]
    assert failing != backlogged
    clock.advance(1200)
    quality = [p["data_quality"] for p in flow_progress(ws, failing, int(T0 * 1000) + 6 * 60_000)
               if "data_quality" in p]
    passed = sum(e["passed_records"] for q in quality for e in q["expectations"])
    failed = sum(e["failed_records"] for q in quality for e in q["expectations"])
    assert quality and 0.25 < failed / (passed + failed) < 0.45
    lags = [p["metrics"]["backlog_seconds"] for p in flow_progress(ws, backlogged, int(T0 * 1000) + 6 * 60_000, flow=0)
            if "backlog_seconds" in p["metrics"]]
    assert lags and min(lags) > 3600 and max(lags) > min(lags)      # the source flow is an hour behind, and more


def test_a_spend_spike_lands_in_todays_billing_and_in_the_truth():
    clock = FakeClock()
    ws = workspace(clock)
    service = SqlService(ws)
    try:
        today = "SELECT SUM(usage_quantity) FROM system.billing.usage WHERE usage_date = current_date()"
        base = float(service.tables.execute(today, ws.now_ms()).rows[0][0] or 0)
        truth_before = service.truth(0)["billing"]["workspaces"][str(ws.workspace_id)]
        cluster_id = ws.scenarios.start("spend_spike").targets["cluster_ids"][0]
        clock.advance(5)
        spiked = float(service.tables.execute(today, ws.now_ms()).rows[0][0])
        truth = service.truth(0)["billing"]["workspaces"][str(ws.workspace_id)]
        day = max(truth)
        added = truth[day]["list_cost"] - truth_before.get(day, {}).get("list_cost", 0)
        closed = [t["list_cost"] for d, t in truth.items() if d < day][-7:]
        assert spiked > base and added == pytest.approx(2 * max(closed), rel=1e-3)
        by_cluster = service.tables.execute(
            "SELECT SUM(usage_quantity) FROM system.billing.usage WHERE usage_metadata.cluster_id = "
            f"'{cluster_id}' AND usage_date = current_date()", ws.now_ms()).rows[0][0]
        assert float(by_cluster) >= spiked - base
        clock.advance(5)            # billed once per activation
        assert float(service.tables.execute(today, ws.now_ms()).rows[0][0]) == spiked
    finally:
        service.shutdown()


def test_scenarios_are_deterministic_whenever_the_data_is_read():
    """Same seed, same scenario times: the same targets and the same world, whether a client read it every few
    seconds while the scenarios ran (generating data as it went) or only at the end."""
    def world(read_every: float | None) -> tuple:
        clock = FakeClock()
        ws = workspace(clock)
        service = SqlService(ws, node_lag_seconds=0)
        try:
            targets = {name: ws.scenarios.start(name).targets for name in SCENARIOS}
            for _ in range(int(900 / read_every) if read_every else 1):
                clock.advance(read_every or 900)
                if read_every:
                    ws.pipelines._now()
                    ws.list_runs(limit=25)
                    service.tables.refresh(ws.now_ms())
            ws.list_runs(limit=1)
            ws.pipelines._now()
            runs = [(r.run_id, r.outcome) for r in ws.job_set.runs if r.start_ms > T0 * 1000 and r.end_ms <= ws.now_ms()]
            events = [(p.pipeline_id, e[0], e[3], json.dumps(e[6], sort_keys=True)) for p in ws.pipelines.pipelines
                      for e in p.events if T0 * 1000 < e[0] <= ws.now_ms()]
            nodes = service.tables.execute("SELECT cluster_id, instance_id, start_time, cpu_user_percent, "
                                           "mem_used_percent FROM system.compute.node_timeline "
                                           "ORDER BY 1, 2, 3", ws.now_ms()).rows
            # Rows from before the scenarios: how far back the first read reaches is not what is tested here.
            nodes = [row for row in nodes if epoch(row[2]) > T0]
            return targets, runs, events, nodes
        finally:
            service.shutdown()

    often, once = world(read_every=5), world(read_every=None)
    assert often[0] == once[0]
    assert len(often[1]) > 100 and often[1] == once[1]
    assert len(often[2]) > 100 and often[2] == once[2]
    assert len(often[3]) > 100 and often[3] == once[3]


def test_a_stale_table_gets_no_commits_while_it_lasts_and_its_writer_resumes_after():
    clock = FakeClock()
    ws = workspace(clock)
    service = SqlService(ws)
    try:
        table = ws.scenarios.start("table_stale").targets["tables"][0]
        before = service.table_truth(table)
        clock.advance(900)
        during = service.table_truth(table)
        assert during["last_write"] == before["last_write"] and during["versions"] == before["versions"]
        assert service.table_truth("main.raw.customer_data")["last_write"] > T0    # other writers go on
        columns, rows = service.delta.describe_history(table, 1)
        assert dict(zip([c for c, _ in columns], rows[0]))["version"] == before["versions"] - 1
        ws.scenarios.stop("table_stale")
        clock.advance(300)
        assert service.table_truth(table)["last_write"] > T0 + 900
    finally:
        service.shutdown()


def test_failed_run_spend_fails_its_job_and_bills_each_failed_run_at_once():
    clock = FakeClock()
    ws = workspace(clock)
    service = SqlService(ws, timeline_lag_seconds=0)
    try:
        job_id = ws.scenarios.start("failed_run_spend").targets["job_ids"][0]
        clock.advance(900)
        rows = service.tables.execute(
            "SELECT t.run_id, t.result_state, SUM(u.usage_quantity) FROM system.lakeflow.job_run_timeline t "
            "JOIN system.billing.usage u ON u.usage_metadata.job_run_id = t.run_id "
            f"WHERE t.job_id = '{job_id}' AND t.result_state IS NOT NULL AND t.period_end_time > "
            f"TIMESTAMP '{_iso(T0)}' GROUP BY ALL", ws.now_ms()).rows
        assert rows and {r[1] for r in rows} == {"FAILED"}
        assert all(float(r[2]) >= 600 for r in rows)          # billed before the 2-hour billing lag
        truth = service.truth(0)["job_run_cost"]["runs"]
        assert all(truth[r[0]]["result"] == "FAILED" and truth[r[0]]["cost"] >= 600 * 0.15 for r in rows)
    finally:
        service.shutdown()


def test_an_idle_warehouse_runs_on_with_no_query_while_it_lasts():
    clock = FakeClock()
    ws = workspace(clock)
    service = SqlService(ws, history_lag_seconds=0)
    try:
        warehouse_id = ws.scenarios.start("idle_warehouse").targets["warehouse_ids"][0]
        start = ws.now_ms()
        clock.advance(1800)
        now = ws.now_ms()
        queries = service.tables.execute(
            "SELECT compute.warehouse_id, COUNT(*) FROM system.query.history "
            f"WHERE start_time > TIMESTAMP '{_iso(T0)}' GROUP BY ALL", now).rows
        assert warehouse_id not in {r[0] for r in queries} and queries          # others still serve queries
        truth = service.warehouse_usage_truth(start, now)[warehouse_id]
        # Queries that arrived before the start may still run for a while; nothing arrives after it.
        assert truth["running_seconds"] == 1800 and truth["idle_seconds"] > 900 and truth["idle_cost"] > 0
    finally:
        service.shutdown()


def _iso(seconds: float) -> str:
    from datetime import datetime
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
