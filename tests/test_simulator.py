"""Tests of the simulated workspace: its REST wire protocol through the real databricks-sdk, and its model
(determinism, a world that keeps moving, ground truth that matches what the API shows)."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import InvalidParameterValue, NotFound, Unauthenticated
from databricks.sdk.service.compute import ListClustersFilterBy, State

from databricks_sim import SimulatedWorkspace, SimulatorServer
from databricks_sim.truth import Ledger
from sql_helpers import FakeClock

pytestmark = pytest.mark.integration

T0 = 1_790_000_000.0   # a fixed "now" for injected-clock tests (2026-09-21)
ACTIVE = {"QUEUED", "PENDING", "RUNNING", "TERMINATING"}



@pytest.fixture(scope="module")
def server():
    srv = SimulatorServer(seed=1).start()
    yield srv
    srv.shutdown()


@pytest.fixture(scope="module")
def w(server) -> WorkspaceClient:
    return WorkspaceClient(host=server.url, token=server.token)


@pytest.fixture
def paused(server):
    requests.post(f"{server.url}/simulator/pause").raise_for_status()
    try:
        yield server
    finally:
        requests.post(f"{server.url}/simulator/resume").raise_for_status()


def api(server, path: str, method: str = "GET", token: str | None = None, **kwargs) -> requests.Response:
    headers = {"Authorization": f"Bearer {token or server.token}"}
    return requests.request(method, server.url + path, headers=headers, timeout=10, **kwargs)


def first_end(run) -> tuple[int, str]:
    """When a run first ended and how, read here from the API for this test only: the ORIGINAL entry of a repaired
    run's repair_history, else the run; the result_state, else the life_cycle_state (SKIPPED, INTERNAL_ERROR)."""
    original = next((h for h in run.repair_history or [] if h.type.value == "ORIGINAL"), run)
    state = original.state
    return original.end_time, (state.result_state or state.life_cycle_state).value


# ----------------------------------------------------------------------------------------- inventory & clusters

def test_workspace_has_the_promised_inventory(w):
    clusters = list(w.clusters.list())
    assert len(clusters) >= 20
    assert {c.cluster_source.value for c in clusters} >= {"UI", "API", "JOB", "SQL", "PIPELINE"}
    assert sum(c.state == State.RUNNING for c in clusters) >= 2
    assert len(list(w.jobs.list())) >= 50
    assert len(list(w.warehouses.list())) >= 5


def test_cluster_state_and_source_filters(w):
    running = list(w.clusters.list(filter_by=ListClustersFilterBy(cluster_states=[State.RUNNING])))
    terminated = list(w.clusters.list(filter_by=ListClustersFilterBy(cluster_states=[State.TERMINATED])))
    assert running and terminated
    assert all(c.state == State.RUNNING for c in running)
    assert all(c.state == State.TERMINATED for c in terminated)
    assert not {c.cluster_id for c in running} & {c.cluster_id for c in terminated}
    from databricks.sdk.service.compute import ClusterSource
    ui = list(w.clusters.list(filter_by=ListClustersFilterBy(cluster_sources=[ClusterSource.UI])))
    assert ui and all(c.cluster_source == ClusterSource.UI for c in ui)


def test_cluster_pages_are_disjoint_and_complete(server, paused):
    def walk(page_size):
        ids, token, pages = [], None, 0
        while True:
            params = {"page_size": page_size, **({"page_token": token} if token else {})}
            body = api(server, "/api/2.1/clusters/list", params=params).json()
            ids += [c["cluster_id"] for c in body["clusters"]]
            pages += 1
            token = body.get("next_page_token")
            if token is None:
                return ids, pages
            assert token and len(body["clusters"]) == page_size

    small, pages = walk(7)
    big, _ = walk(100)
    assert len(small) == len(set(small))
    assert set(small) == set(big)
    assert pages == math.ceil(len(small) / 7)


def test_cluster_details_are_consistent(w):
    clusters = list(w.clusters.list())
    for c in clusters:
        assert c.cluster_id.count("-") == 2 and len(c.cluster_id) == 20
        if c.state == State.RUNNING:
            assert c.driver is not None and len(c.executors or []) == c.num_workers
            assert c.cluster_cores and c.cluster_memory_mb and c.start_time
        if c.state == State.TERMINATED:
            assert c.terminated_time and c.termination_reason.code and c.termination_reason.type
    reasons = {c.termination_reason.code.value for c in clusters if c.termination_reason}
    assert "JOB_FINISHED" in reasons
    autoscaled = [c for c in clusters if c.autoscale]
    assert autoscaled
    one = clusters[0]
    assert w.clusters.get(one.cluster_id).cluster_name == one.cluster_name
    with pytest.raises(NotFound):     # 400 INVALID_PARAMETER_VALUE on the wire; the SDK maps it
        w.clusters.get("0000-000000-missing0")


def test_cluster_events_follow_next_page(server, w, paused):
    busiest = max(server.workspace.clusters, key=lambda c: len(c.events)).spec.cluster_id
    everything = api(server, "/api/2.1/clusters/events", "POST", json={"cluster_id": busiest, "page_size": 500}).json()
    assert "next_page" not in everything
    assert everything["total_count"] == len(everything["events"]) >= 20
    stamps = [e["timestamp"] for e in everything["events"]]
    assert stamps == sorted(stamps, reverse=True)   # DESC by default

    before = server.request_counts().get("POST /api/2.1/clusters/events", 0)
    paged = list(w.clusters.events(busiest, page_size=7))
    calls = server.request_counts()["POST /api/2.1/clusters/events"] - before
    assert [(e.timestamp, e.type.value) for e in paged] == [(e["timestamp"], e["type"]) for e in everything["events"]]
    assert calls == math.ceil(len(paged) / 7)

    types = {e["type"] for e in everything["events"]}
    assert "RUNNING" in types and types & {"RESIZING", "RESTARTING", "AUTOSCALING_STATS_REPORT"}
    first_page = api(server, "/api/2.1/clusters/events", "POST", json={"cluster_id": busiest, "page_size": 7}).json()
    assert first_page["next_page"]["cluster_id"] == busiest and first_page["next_page"]["offset"] == 7

    resized = list(w.clusters.events(busiest, event_types=[paged[0].type]))
    assert resized and all(e.type == paged[0].type for e in resized)
    with pytest.raises(InvalidParameterValue):
        list(w.clusters.events(busiest, page_size=501))


def test_cluster_lifecycle_over_two_days():
    clock = FakeClock(T0)
    ws = SimulatedWorkspace(seed=4, start=T0, clock=clock, n_jobs=1)
    clock.advance(2 * 86400)
    now = ws.now_ms()
    events = [e for c in ws.clusters for e in c.events_between(0, now)]
    assert {"CREATING", "STARTING", "RUNNING", "DRIVER_HEALTHY", "RESIZING", "UPSIZE_COMPLETED", "RESTARTING",
            "AUTOSCALING_STATS_REPORT", "INIT_SCRIPTS_STARTED", "DRIVER_NOT_RESPONDING", "TERMINATING"} <= \
        {e[1] for e in events}
    reasons = {(e[4]["reason"]["code"], e[4]["reason"]["type"]) for e in events if e[1] == "TERMINATING"}
    assert {("INACTIVITY", "SUCCESS"), ("USER_REQUEST", "SUCCESS"), ("DRIVER_UNREACHABLE", "SERVICE_FAULT"),
            ("CLOUD_PROVIDER_LAUNCH_FAILURE", "CLOUD_FAILURE")} <= reasons
    for cluster in ws.clusters:    # each state change (and each new state message) is announced by its event
        running = [ts for ts, state, _, _ in cluster.transitions if state == "RUNNING" and ts <= now]
        announced = {e[0] for e in cluster.events if e[1] in ("RUNNING", "UPSIZE_COMPLETED", "RESIZING",
                                                              "DRIVER_NOT_RESPONDING")}
        assert set(running) <= announced
    unresponsive = {e[0] for c in ws.clusters for e in c.events if e[1] == "DRIVER_NOT_RESPONDING" and e[0] <= now}
    assert unresponsive and all(
        c.state_at(ts)[1] == "Driver is up but is not responsive, likely due to GC." for c in ws.clusters
        for ts, kind, *_ in c.events if kind == "DRIVER_NOT_RESPONDING" and ts <= now)


# ------------------------------------------------------------------------------------------------------ jobs

def test_jobs_have_schedules_tags_and_tasks(w, server):
    jobs = list(w.jobs.list(expand_tasks=True))
    assert len({j.job_id for j in jobs}) == len(jobs) >= 50
    schedules = [j.settings.schedule for j in jobs if j.settings.schedule]
    assert any(s.pause_status.value == "PAUSED" for s in schedules)
    assert any(s.quartz_cron_expression == "0 * * * * ?" for s in schedules)
    assert len(schedules) < len(jobs)   # some jobs run only when triggered by hand
    assert all({"team", "cost_center"} <= set(j.settings.tags) for j in jobs)
    multitask = [j for j in jobs if len(j.settings.tasks) > 1]
    assert multitask and all(any(t.depends_on for t in j.settings.tasks) for j in multitask)
    assert all(j.settings.queue is not None and j.settings.max_concurrent_runs for j in jobs)
    assert not list(w.jobs.list())[0].settings.tasks     # tasks only with expand_tasks
    got = w.jobs.get(multitask[0].job_id)
    assert [t.task_key for t in got.settings.tasks] == [t.task_key for t in multitask[0].settings.tasks]
    assert [j.job_id for j in w.jobs.list(limit=7)] == [j.job_id for j in jobs]
    assert api(server, "/api/2.2/jobs/list", params={"limit": 101}).json()["error_code"] == "INVALID_PARAMETER_VALUE"
    named = list(w.jobs.list(name=jobs[3].settings.name.upper()))
    assert [j.job_id for j in named] == [jobs[3].job_id]


def test_run_pages_of_25_end_without_a_token(server, paused):
    since = int((server.workspace.now() - 2 * 3600) * 1000)
    seen, token, pages = [], None, 0
    while True:
        params = {"limit": 25, "start_time_from": since, "expand_tasks": "true"}
        if token:
            params["page_token"] = token
        body = api(server, "/api/2.2/jobs/runs/list", params=params).json()
        runs = body.get("runs", [])
        pages += 1
        assert len(runs) <= 25
        seen += runs
        token = body.get("next_page_token")
        assert body["has_more"] == (token is not None)
        if token is None:
            break
        assert len(runs) == 25
    ids = [r["run_id"] for r in seen]
    assert len(ids) == len(set(ids)) > 100
    keys = [(r["start_time"], r["run_id"]) for r in seen]
    assert keys == sorted(keys, reverse=True)
    assert all(r["start_time"] >= since for r in seen)
    assert pages == math.ceil(len(seen) / 25)


def test_run_list_parameter_rules(w, server):
    with pytest.raises(InvalidParameterValue):
        next(iter(w.jobs.list_runs(limit=26)))
    with pytest.raises(InvalidParameterValue):
        next(iter(w.jobs.list_runs(active_only=True, completed_only=True)))
    assert len(api(server, "/api/2.2/jobs/runs/list", params={"limit": 0}).json()["runs"]) == 25
    assert len(api(server, "/api/2.2/jobs/runs/list").json()["runs"]) == 20


def test_active_and_completed_filters(w, server, paused):
    active = list(w.jobs.list_runs(active_only=True))
    assert active, "a workspace with per-minute jobs always has something running"
    assert all(r.state.life_cycle_state.value in ACTIVE and r.end_time == 0 for r in active)
    # Complete as well as correct: every unfinished run of the unfiltered list is there.
    recent = int(server.workspace.now() * 1000) - server.workspace.job_set.max_run_span_ms - 60_000
    unfinished = {r.run_id for r in w.jobs.list_runs(start_time_from=recent) if r.end_time == 0}
    assert {r.run_id for r in active} == unfinished
    since = int((server.workspace.now() - 1800) * 1000)
    completed = list(w.jobs.list_runs(completed_only=True, start_time_from=since))
    assert completed and all(r.end_time >= r.start_time and r.state.life_cycle_state.value not in ACTIVE
                             for r in completed)
    job_id = completed[0].job_id
    assert {r.job_id for r in w.jobs.list_runs(job_id=job_id, start_time_from=since)} == {job_id}


def test_run_shapes_match_the_api(server, w):
    """Find one run of each interesting kind in the model and read it back through the SDK."""
    ws = server.workspace
    now = ws.now_ms()
    done = [r for r in ws.job_set.runs if r.end_ms <= now]

    def fetch(pred):
        run = next(r for r in reversed(done) if pred(r))
        return w.jobs.get_run(run.run_id)

    skipped = fetch(lambda r: r.life_cycle == "SKIPPED")
    assert skipped.state.life_cycle_state.value == "SKIPPED" and skipped.state.result_state is None
    assert skipped.status.termination_details.code.value == "MAX_CONCURRENT_RUNS_EXCEEDED"

    retry = fetch(lambda r: r.kind == 1)
    assert retry.attempt_number == 1 and retry.trigger.value == "RETRY"
    assert retry.original_attempt_run_id != retry.run_id
    assert w.jobs.get_run(retry.original_attempt_run_id).state.result_state.value in ("FAILED", "TIMEDOUT")

    task_retry = fetch(lambda r: r.job.multitask and len(r.job.plan(r).attempts) > len(r.job.tasks))
    keys = Counter(t.task_key for t in task_retry.tasks)
    retried = [t for t in task_retry.tasks if keys[t.task_key] == 2]
    assert sorted(t.attempt_number for t in retried) == [0, 1]
    assert task_retry.setup_duration == 0 and task_retry.run_duration > 0

    queued = fetch(lambda r: r.queue_reason is not None)
    assert queued.queue_duration > 0

    internal = fetch(lambda r: r.life_cycle == "INTERNAL_ERROR")
    assert internal.state.result_state is None and first_end(internal)[1] == "INTERNAL_ERROR"

    failed = fetch(lambda r: r.result == "FAILED" and r.job.multitask and not r.repairs)   # not being repaired now
    assert failed.status.termination_details.code.value in ("RUN_EXECUTION_ERROR", "LIBRARY_INSTALLATION_ERROR",
                                                            "CLUSTER_ERROR")
    assert any(t.state.result_state.value == "FAILED" for t in failed.tasks)

    single = fetch(lambda r: not r.job.multitask and r.result == "SUCCESS" and r.queue_reason is None)
    assert single.setup_duration + single.execution_duration + single.cleanup_duration == single.run_duration
    assert single.end_time - single.start_time == single.run_duration

    for result in ("TIMEDOUT", "CANCELED"):
        assert fetch(lambda r: r.result == result).state.user_cancelled_or_timedout

    with pytest.raises(NotFound):
        w.jobs.get_run(123)
    with pytest.raises(NotFound):
        w.jobs.get(123)
    raw = api(server, "/api/2.2/jobs/runs/get", params={"run_id": 123})
    assert (raw.status_code, raw.json()["error_code"]) == (400, "INVALID_PARAMETER_VALUE")


# ------------------------------------------------------------------------------------------------ warehouses

def test_warehouses(w):
    warehouses = list(w.warehouses.list())
    for wh in warehouses:
        assert wh.min_num_clusters <= wh.max_num_clusters
        assert wh.health.status is not None and wh.cluster_size and wh.warehouse_type
        if wh.state.value == "RUNNING":
            assert wh.min_num_clusters <= wh.num_clusters <= wh.max_num_clusters
        if wh.state.value == "STOPPED":
            assert wh.num_clusters == 0
        assert {t.key for t in wh.tags.custom_tags} >= {"team", "cost_center"}
    assert any(wh.enable_serverless_compute for wh in warehouses)
    assert w.warehouses.get(warehouses[0].id).name == warehouses[0].name
    with pytest.raises(NotFound):
        w.warehouses.get("doesnotexist")


def test_warehouses_start_scale_stop_and_degrade():
    clock = FakeClock(T0)
    ws = SimulatedWorkspace(seed=3, start=T0, clock=clock, n_jobs=1, n_warehouses=8)
    clock.advance(2 * 86400)
    ws.list_warehouses()
    seen = {(s[1], s[3]) for wh in ws.warehouses for s in wh.transitions}
    assert {("STARTING", "HEALTHY"), ("RUNNING", "HEALTHY"), ("STOPPING", "HEALTHY"), ("STOPPED", "HEALTHY"),
            ("RUNNING", "DEGRADED")} <= seen
    assert any(len({s[2] for s in wh.transitions if s[1] == "RUNNING"}) > 1 for wh in ws.warehouses)


# ------------------------------------------------------------------------------------------------------- auth

def test_discovery_endpoints(server, w):
    meta = requests.get(f"{server.url}/.well-known/databricks-config").json()
    assert meta["workspace_id"] == "1234567890123456" and meta["oidc_endpoint"] == f"{server.url}/oidc"
    discovery = requests.get(meta["oidc_endpoint"] + "/.well-known/oauth-authorization-server").json()
    assert discovery["token_endpoint"] == f"{server.url}/oidc/v1/token"
    assert w.get_workspace_id() == 1234567890123456
    assert w.current_user.me().user_name


def test_wrong_token_is_rejected_without_echoing_it(server, caplog):
    secret = "dapi-wrong-but-secret-4242"
    caplog.set_level(logging.DEBUG)
    w = WorkspaceClient(host=server.url, token=secret)
    with pytest.raises(Unauthenticated) as e:
        w.current_user.me()
    assert secret not in str(e.value)
    response = api(server, "/api/2.2/jobs/list", token=secret)
    assert response.status_code == 401 and response.json()["error_code"] == "UNAUTHENTICATED"
    assert secret not in response.text
    assert requests.get(f"{server.url}/api/2.2/jobs/list").status_code == 401
    assert secret not in caplog.text
    assert "simulator request" in caplog.text     # requests are logged, just not their credentials


def test_oauth_m2m(server):
    w = WorkspaceClient(host=server.url, client_id=server.client_id, client_secret=server.client_secret,
                        auth_type="oauth-m2m")
    assert w.current_user.me().user_name == server.client_id
    assert len(list(w.warehouses.list())) >= 5
    bad = requests.post(f"{server.url}/oidc/v1/token", data={"grant_type": "client_credentials", "scope": "all-apis"},
                        auth=(server.client_id, "wrong"))
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"
    form = requests.post(f"{server.url}/oidc/v1/token",
                         data={"grant_type": "client_credentials", "client_id": server.client_id,
                               "client_secret": server.client_secret})
    assert form.json()["token_type"] == "Bearer"
    assert api(server, "/api/2.0/sql/warehouses", token=form.json()["access_token"]).status_code == 200


def test_unknown_paths_and_methods(server):
    missing = api(server, "/api/2.0/does/not/exist")
    assert missing.status_code == 404 and missing.json()["error_code"] == "ENDPOINT_NOT_FOUND"
    wrong = api(server, "/api/2.1/clusters/list", "POST", json={})
    assert wrong.status_code == 405 and wrong.json()["message"] and wrong.headers["Allow"] == "GET"


# -------------------------------------------------------------------------------------- truth, time, requests

def test_truth_matches_an_independent_count_through_the_sdk(server, w, paused):
    ws = server.workspace
    now = ws.now()
    since = now - 600
    truth = requests.get(f"{server.url}/simulator/truth", params={"since": since}).json()
    assert truth["now"] == pytest.approx(now, abs=0.01)
    # Any run that ended after `since` started at most one maximum run span earlier.
    start_from = int(since * 1000) - ws.job_set.max_run_span_ms - 60_000
    counted: dict[str, Counter] = {}
    for run in w.jobs.list_runs(start_time_from=start_from):
        ended, result = first_end(run)
        if ended >= since * 1000:
            counted.setdefault(str(run.job_id), Counter())[result] += 1
    assert truth["job_runs"]["total"] == sum(sum(c.values()) for c in counted.values()) > 20
    assert truth["job_runs"]["by_job"] == {job: dict(c) for job, c in counted.items()}


def test_pause_freezes_the_world_and_resume_continues(server):
    url = server.url
    requests.post(f"{url}/simulator/pause").raise_for_status()
    try:
        first = requests.get(f"{url}/simulator/truth", params={"since": 0}).json()
        page = api(server, "/api/2.2/jobs/runs/list").json()
        time.sleep(0.6)
        assert requests.get(f"{url}/simulator/truth", params={"since": 0}).json() == first
        assert api(server, "/api/2.2/jobs/runs/list").json() == page
    finally:
        requests.post(f"{url}/simulator/resume").raise_for_status()
    time.sleep(0.2)
    after = requests.get(f"{url}/simulator/truth", params={"since": 0}).json()
    # Simulated time resumes where it stopped instead of jumping over the pause.
    assert first["now"] < after["now"] < first["now"] + 1.0


def test_the_ledger_counts_what_ended_inside_the_window_in_whatever_order_it_was_recorded():
    ledger = Ledger()
    ledger.job_run_ended(1, 11, 5_000, "SUCCESS")
    ledger.job_run_ended(2, 21, 1_000, "FAILED")
    ledger.job_run_ended(1, 12, 9_000, "SKIPPED")      # planned ahead: it ends after both windows
    ledger.job_run_ended(1, 13, 2_000, "SUCCESS")
    ledger.job_run_ended(77, 14, 3_000, "FAILED", "SUBMIT_RUN")
    assert ledger.job_runs(1_000, 5_000) == {
        "total": 4, "by_job": {"1": {"SUCCESS": 2}, "2": {"FAILED": 1}, "77": {"FAILED": 1}},
        "by_run_type": {"JOB_RUN": {"SUCCESS": 2, "FAILED": 1}, "SUBMIT_RUN": {"FAILED": 1}}}
    assert ledger.job_runs(1_001, 2_999) == {"total": 1, "by_job": {"1": {"SUCCESS": 1}},
                                             "by_run_type": {"JOB_RUN": {"SUCCESS": 1}}}
    # A repair counts when it ends, however long after its run; a retry with the end of its run.
    ledger.job_run_repaired(2, 21, 901, 4_000, "SUCCESS")
    ledger.job_run_repaired(2, 21, 902, 8_000, "FAILED")
    ledger.job_task_retried(1, 13, "ingest", 2_000)
    ledger.job_task_retried(1, 13, "publish", 2_000)
    assert ledger.job_repairs(1_000, 5_000) == {"total": 1, "by_job": {"2": {"SUCCESS": 1}}}
    assert ledger.job_repairs(1_000, 9_000) == {"total": 2, "by_job": {"2": {"SUCCESS": 1, "FAILED": 1}}}
    assert ledger.job_retries(1_000, 5_000) == {"total": 2, "by_job": {"1": 2}}
    assert ledger.job_retries(2_001, 5_000) == {"total": 0, "by_job": {}}
    ledger.pipeline_update_ended("p1", "u1", 3_000, "FAILED", "SCHEDULED")
    ledger.expectation_records("p1", "orders", "valid_id", 3_000, 90, 10)
    ledger.expectation_records("p1", "orders", "valid_id", 2_500, 5, 0)
    ledger.dropped_records("p1", "orders", 3_000, 10)
    ledger.flow_output_rows("p1", "orders", 3_000, 80)
    assert ledger.pipelines(2_600, 3_000) == {
        "pipeline_updates": {"total": 1, "by_state": {"FAILED": 1}, "by_pipeline": {"p1": {"FAILED": 1}},
                             "by_cause": {"SCHEDULED": {"FAILED": 1}}},
        "pipeline_expectation_records": {"by_outcome": {"passed": 90, "failed": 10},
                                         "by_pipeline": {"p1": {"orders": {"valid_id": {"passed": 90, "failed": 10}}}}},
        "pipeline_dropped_records": {"p1": {"orders": 10}}, "pipeline_flow_output_rows": {"p1": {"orders": 80}}}


def test_the_world_keeps_moving_with_the_clock():
    clock = FakeClock(T0)
    ws = SimulatedWorkspace(seed=2, start=T0, clock=clock, history_seconds=3 * 3600)
    before = {r["run_id"] for r in ws.list_runs(limit=25)["runs"]}
    states_before = {c["cluster_id"]: c["state"] for c in ws.list_clusters()["clusters"]}
    clock.advance(120)
    fresh = ws.list_runs(limit=25, start_time_from=int(T0 * 1000))
    assert fresh["runs"] and not before & {r["run_id"] for r in fresh["runs"]}
    assert all(T0 * 1000 <= r["start_time"] <= (T0 + 120) * 1000 for r in fresh["runs"])
    assert ws.truth(T0)["job_runs"]["total"] >= 5     # several runs complete every minute

    completed = ws.truth(T0)["job_runs"]["total"]
    ws.pause()
    clock.advance(600)
    assert ws.now() == pytest.approx(T0 + 120)
    assert ws.truth(T0)["job_runs"]["total"] == completed
    ws.resume()
    clock.advance(60)
    assert ws.truth(T0)["job_runs"]["total"] > completed
    clock.advance(6 * 3600)
    assert ws.now() == pytest.approx(T0 + 120 + 6 * 3600)
    states_after = {c["cluster_id"]: c["state"] for c in ws.list_clusters()["clusters"]}
    assert any(states_after.get(cid) != state for cid, state in states_before.items())
    # A run seen while it was active later shows its final state.
    old = ws.list_runs(active_only=True, limit=25)["runs"]
    clock.advance(4 * 3600)
    for run in old:
        final = ws.get_run(run["run_id"])
        assert final["end_time"] > 0 and final["state"]["life_cycle_state"] not in ACTIVE
        # A finished run carries a result_state, except the two terminal life cycle states that end without one.
        assert final["state"].get("result_state") or final["state"]["life_cycle_state"] in ("SKIPPED", "INTERNAL_ERROR")


def _snapshot(ws: SimulatedWorkspace) -> str:
    """A digest of what a client sees (a digest so a failure does not make pytest diff megabytes of JSON)."""
    pages, token = [], None
    for _ in range(4):
        page = ws.list_runs(limit=25, expand_tasks=True, page_token=token)
        pages.append(page)
        token = page.get("next_page_token")
    clusters = ws.list_clusters(page_size=100)
    events = ws.cluster_events(ws.clusters[0].spec.cluster_id, page_size=500)
    seen = json.dumps([pages, clusters, events, ws.list_jobs(limit=100, expand_tasks=True), ws.list_warehouses(),
                       ws.truth(T0 - 3600)], sort_keys=True)
    return hashlib.sha256(seen.encode()).hexdigest()


def test_determinism_by_seed_and_independence_from_query_pattern():
    history = 4 * 3600
    stepped_clock, jumped_clock = FakeClock(T0), FakeClock(T0)
    stepped = SimulatedWorkspace(seed=7, start=T0, clock=stepped_clock, history_seconds=history)
    jumped = SimulatedWorkspace(seed=7, start=T0, clock=jumped_clock, history_seconds=history)
    for _ in range(6):      # one is queried every 5 minutes, the other only at the end
        stepped_clock.advance(300)
        _snapshot(stepped)
    jumped_clock.advance(1800)
    assert _snapshot(stepped) == _snapshot(jumped)
    other = SimulatedWorkspace(seed=8, start=T0, clock=FakeClock(T0 + 1800), history_seconds=history)
    assert _snapshot(other) != _snapshot(jumped)


def test_stats_count_requests_by_route(server):
    before = requests.get(f"{server.url}/simulator/stats").json()["requests"]
    for _ in range(3):
        api(server, "/api/2.2/jobs/runs/list", params={"limit": 1})
    api(server, "/api/2.0/sql/warehouses/abc")
    after = requests.get(f"{server.url}/simulator/stats").json()["requests"]
    key = "GET /api/2.2/jobs/runs/list"
    assert after[key] - before.get(key, 0) == 3
    assert after["GET /api/2.0/sql/warehouses/{id}"] - before.get("GET /api/2.0/sql/warehouses/{id}", 0) == 1


def test_concurrent_clients(server):
    errors = []

    def worker():
        try:
            for _ in range(3):
                assert api(server, "/api/2.2/jobs/runs/list", params={"limit": 25}).status_code == 200
                assert api(server, "/api/2.1/clusters/list").status_code == 200
        except Exception as e:  # noqa: BLE001 - collected and reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_quiet_server(server, capfd):
    api(server, "/api/2.2/jobs/list")
    assert "GET /api" not in capfd.readouterr().err


def test_run_prints_connection_lines_and_stops_on_sigterm():
    exporter_dir = Path(__file__).resolve().parents[1] / "exporter"
    env = {**os.environ, "PYTHONPATH": str(exporter_dir)}
    code = "from databricks_sim.server import run; run('127.0.0.1:0', seed=3, token='dapi-cli-test')"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        lines = dict(proc.stdout.readline().strip().split("=", 1) for _ in range(4))
        assert lines["DATABRICKS_HOST"].startswith("http://127.0.0.1:")
        assert lines["DATABRICKS_TOKEN"] == "dapi-cli-test"
        w = WorkspaceClient(host=lines["DATABRICKS_HOST"], client_id=lines["DATABRICKS_CLIENT_ID"],
                            client_secret=lines["DATABRICKS_CLIENT_SECRET"], auth_type="oauth-m2m")
        assert len(list(w.jobs.list(limit=100))) >= 50
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    assert proc.stderr.read() == ""
