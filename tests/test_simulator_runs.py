"""The simulated workspace plays job runs as Databricks runs them: repairs (same run, new task runs, a history),
task retries inside the run, one-time runs, run_type filtering and the permission gaps, with the ledger recording
each repair and retry."""

from __future__ import annotations

import pytest
import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import InvalidState, PermissionDenied
from databricks.sdk.service.jobs import NotebookTask, SubmitTask

from databricks_sim import SimulatedWorkspace, SimulatorServer
from databricks_sim.common import ApiError

pytestmark = pytest.mark.integration

T0 = 1_790_000_000.0
MINUTE, HOUR = 60_000, 3_600_000


class FakeClock:
    def __init__(self, t: float = T0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def world():
    clock = FakeClock()
    ws = SimulatedWorkspace(seed=3, start=T0, clock=clock, permission_gaps=True)
    return clock, ws


def all_runs(ws, **query) -> list[dict]:
    runs, token = [], None
    while True:
        page = ws.list_runs(limit=25, page_token=token, **query)
        runs += page.get("runs", [])
        token = page.get("next_page_token")
        if not token:
            return runs


def failed_multitask(ws, now):
    return next(r for r in reversed(ws.job_set.runs) if r.result == "FAILED" and r.job.multitask and not r.repairs
                and r.run_type == "JOB_RUN" and r.end_ms < now - HOUR and not r.active_at(now)
                and r.job_id != ws.job_set.forbidden_job_id)


def test_a_repair_reruns_the_failed_tasks_inside_the_same_run(world):
    clock, ws = world
    now = ws.now_ms()
    run = failed_multitask(ws, now)
    before = ws.get_run(run.run_id)
    truth = ws.truth(T0 - 60)
    answer = ws.repair_run(run.run_id, rerun_all_failed_tasks=True)

    repairing = ws.get_run(run.run_id)
    assert (repairing["run_id"], repairing["start_time"]) == (before["run_id"], before["start_time"])
    assert repairing["end_time"] == 0 and repairing["status"]["state"] == "RUNNING"
    assert [(h["type"], h.get("id"), h["end_time"]) for h in repairing["repair_history"]] == [
        ("ORIGINAL", None, before["end_time"]), ("REPAIR", answer["repair_id"], 0)]
    assert repairing["repair_history"][0]["state"]["result_state"] == "FAILED"
    # Active again although it started more than an hour ago, longer than any run lasts.
    assert run.run_id in {r["run_id"] for r in all_runs(ws, active_only=True)}
    with pytest.raises(ApiError) as again:
        ws.repair_run(run.run_id, rerun_all_failed_tasks=True, latest_repair_id=answer["repair_id"])
    assert again.value.error_code == "INVALID_STATE"

    clock.t += 3 * 3600
    done = ws.get_run(run.run_id)
    repair = done["repair_history"][1]
    assert done["end_time"] == repair["end_time"] > before["end_time"]
    assert done["state"]["result_state"] == repair["state"]["result_state"] in ("SUCCESS", "FAILED")
    assert done["status"]["termination_details"]["code"] in ("SUCCESS", "RUN_EXECUTION_ERROR")
    assert done["run_duration"] == before["run_duration"] + repair["end_time"] - repair["start_time"]
    new_task_runs = {t["run_id"] for t in done["tasks"]} - {t["run_id"] for t in before["tasks"]}
    assert new_task_runs == set(repair["task_run_ids"]) and new_task_runs
    rerun_keys = {t["task_key"] for t in done["tasks"] if t["run_id"] in new_task_runs}
    failed_keys = {t["task_key"] for t in before["tasks"] if t["state"].get("result_state") != "SUCCESS"}
    assert rerun_keys == failed_keys
    # The ledger: one more repair, ending when the repair ended; the run itself still counted once.
    after = ws.truth(T0 - 60)
    assert after["job_run_repairs"]["total"] >= truth["job_run_repairs"]["total"] + 1
    assert after["job_run_repairs"]["by_job"][str(run.job_id)][repair["state"]["result_state"]] >= 1
    # A second repair must name the latest one.
    with pytest.raises(ApiError) as stale:
        ws.repair_run(run.run_id, rerun_tasks=[sorted(rerun_keys)[0]])
    assert stale.value.error_code == "INVALID_PARAMETER_VALUE"


def test_planned_repairs_come_minutes_or_hours_after_the_run_ended(world):
    _, ws = world
    delays = [run.repairs[0].start_ms - run.end_ms for _, run in ws.job_set.repairs if run.repairs[0].number == 1]
    assert len(delays) > 20
    assert any(d < 30 * MINUTE for d in delays) and any(d >= HOUR for d in delays)
    assert all(run.result == "FAILED" and run.job.multitask for _, run in ws.job_set.repairs[:-1])


def test_a_failed_task_waits_for_its_retry_inside_the_run(world):
    _, ws = world
    run, attempts = next((r, r.job.plan(r).attempts) for r in ws.job_set.runs if r.job.multitask
                         and r.life_cycle == "TERMINATED" and any(a.retry and a.start for a in r.job.plan(r).attempts))
    retry = next(a for a in attempts if a.retry and a.start)
    first = next(a for a in attempts if a.index == retry.index and a.retry == 0)
    waiting = run.job.run_json(run, (first.end + retry.start) // 2, include_tasks=True)
    assert waiting["status"]["state"] == "RUNNING" and waiting["attempt_number"] == 0 and waiting["end_time"] == 0
    task = [t for t in waiting["tasks"] if t["task_key"] == retry.task.key]
    assert [(t["attempt_number"], t["state"]["life_cycle_state"], t["status"]["state"]) for t in task] == [
        (0, "WAITING_FOR_RETRY", "WAITING")]
    retried = run.job.run_json(run, retry.start + 1, include_tasks=True)
    task = [t for t in retried["tasks"] if t["task_key"] == retry.task.key]
    assert [(t["attempt_number"], t["state"].get("result_state")) for t in task] == [(0, "FAILED"), (1, None)]
    assert task[0]["run_id"] != task[1]["run_id"]


def test_one_time_runs_stream_in_with_job_ids_of_their_own(world):
    _, ws = world
    now = ws.now_ms()
    day = [r for r in ws.job_set.runs if now - 24 * HOUR <= r.start_ms and r.run_type != "JOB_RUN"]
    assert 400 <= len(day) <= 600                        # about 500 a day
    assert {r.run_type for r in day} == {"SUBMIT_RUN", "WORKFLOW_RUN"}
    listed = {j.job_id for j in ws.jobs}
    assert len({r.job_id for r in day}) == len(day) and not listed & {r.job_id for r in day}
    page = ws.list_runs(run_type="SUBMIT_RUN", limit=25, start_time_from=now - 24 * HOUR)["runs"]
    assert len(page) == 25 and {r["run_type"] for r in page} == {"SUBMIT_RUN"}
    assert all(r["run_name"] and r["job_id"] not in listed for r in page)
    jobs_only = ws.list_runs(run_type="JOB_RUN", limit=25)["runs"]
    assert {r["run_type"] for r in jobs_only} == {"JOB_RUN"}


@pytest.fixture(scope="module")
def server():
    srv = SimulatorServer(seed=3, permission_gaps=True).start()
    yield srv
    srv.shutdown()


def test_runs_submit_and_repair_over_the_wire(server):
    w = WorkspaceClient(host=server.url, token=server.token)
    run_id = w.jobs.submit(run_name="adf-copy-orders", tasks=[SubmitTask(
        task_key="copy", notebook_task=NotebookTask(notebook_path="/Shared/copy"))]).run_id
    run = w.jobs.get_run(run_id)
    assert (run.run_type.value, run.run_name, run.trigger.value) == ("SUBMIT_RUN", "adf-copy-orders", "ONE_TIME")
    assert run.job_id not in {j.job_id for j in w.jobs.list()}
    with pytest.raises(InvalidState):
        w.jobs.repair_run(run_id, rerun_all_failed_tasks=True)       # still running
    body = requests.post(f"{server.url}/api/2.2/jobs/runs/submit", json={"run_name": "x"},
                         headers={"Authorization": f"Bearer {server.token}"}, timeout=10)
    assert (body.status_code, body.json()["error_code"]) == (400, "INVALID_PARAMETER_VALUE")


def test_permission_gaps_answer_403_with_the_reference_body(server):
    ws = server.workspace
    forbidden = ws.forbidden()
    assert all(len(ids) == 1 for ids in forbidden.values())
    headers = {"Authorization": f"Bearer {server.token}"}
    job_id = int(forbidden["job_ids"][0])
    runs = requests.get(f"{server.url}/api/2.2/jobs/runs/list", params={"job_id": job_id, "limit": 1},
                        headers=headers, timeout=10).json()["runs"]        # listing is allowed
    answers = [
        requests.get(f"{server.url}/api/2.2/jobs/runs/get", params={"run_id": runs[0]["run_id"]}, headers=headers,
                     timeout=10),
        requests.get(f"{server.url}/api/2.0/pipelines/{forbidden['pipeline_ids'][0]}/events", headers=headers,
                     timeout=10),
        requests.post(f"{server.url}/api/2.1/clusters/events", json={"cluster_id": forbidden["cluster_ids"][0]},
                      headers=headers, timeout=10),
    ]
    for answer in answers:
        body = answer.json()
        assert (answer.status_code, body["error_code"]) == (403, "PERMISSION_DENIED")
        assert body["message"] and body["details"][0]["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
    with pytest.raises(PermissionDenied):
        WorkspaceClient(host=server.url, token=server.token).jobs.get_run(runs[0]["run_id"])
    assert SimulatedWorkspace(seed=3).forbidden() == {"job_ids": [], "pipeline_ids": [], "cluster_ids": []}


def test_a_repair_storm_repairs_every_run_that_failed_in_the_last_hour():
    clock = FakeClock()
    ws = SimulatedWorkspace(seed=4, start=T0, clock=clock, history_seconds=4 * 3600)
    now = ws.now_ms()
    failed = {r.run_id for r in ws.job_set.runs if now - HOUR <= r.latest_end_ms() <= now and not r.active_at(now)
              and (r.repairs[-1].result if r.repairs else r.result) == "FAILED"}
    window = ws.scenarios.start("repair_storm")
    assert {int(r) for r in window.targets["run_ids"]} == failed and failed
    assert all(ws.job_set.by_id[r].active_at(now) for r in failed)
