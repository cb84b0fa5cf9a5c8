"""The jobs collector through the real databricks-sdk against the simulated workspace, on a simulated clock that
both share: two hours of a workspace where runs are repaired (minutes later, hours later, all at once in a
repair_storm, through runs/repair), tasks are retried inside their runs, one-time runs are submitted (runs/submit)
and one job's runs answer 403 on runs/get. Every jobs family ends equal to the simulator's own ledger."""

from __future__ import annotations

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import PermissionDenied
from databricks.sdk.service.jobs import NotebookTask, SubmitTask

from databricks_exporter.collectors.jobs import JobsCollector
from databricks_exporter.config import CollectorSettings
from databricks_exporter.cycle import Cycle
from databricks_exporter.sources.rest import RestSource
from databricks_exporter.store import MetricStore
from databricks_sim import SimulatedWorkspace, SimulatorServer

pytestmark = pytest.mark.integration

T0 = 1_790_000_000.0


class FakeClock:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


def total(store: MetricStore, name: str, **match) -> float:
    """The sum of a counter's samples (a histogram's counts) whose labels match."""
    return sum(getattr(value, "count", value) for family in store.families() if family.metric.name == name
               for values, value in family.samples
               if all(dict(zip(family.metric.labels, values)).get(k) == v for k, v in match.items()))


def one_time_series(store: MetricStore) -> list[tuple]:
    """The jobs families' series (a histogram counted once) of job_id _one_time."""
    return sorted((f.metric.name, values) for f in store.families() if f.metric.name.startswith("databricks_job")
                  for values, _ in f.samples if dict(zip(f.metric.labels, values)).get("job_id") == "_one_time")


@pytest.fixture
def world():
    clock = FakeClock(T0)
    ws = SimulatedWorkspace(seed=7, start=T0, clock=clock, permission_gaps=True)
    server = SimulatorServer(workspace=ws).start()
    yield clock, ws, server, WorkspaceClient(host=server.url, token=server.token)
    server.shutdown()


def test_every_jobs_family_equals_the_ledger_through_the_sdk(world):
    clock, ws, server, w = world
    options = {key: default for key, (_, default) in JobsCollector.options.items()}
    collector = JobsCollector(type("Workspace", (), {"rest": RestSource(w)})(),
                              CollectorSettings("jobs", True, 60, 60, options), 3600, clock)
    store = MetricStore()
    forbidden_seen: set[str] = set()

    def cycles(minutes: int) -> None:
        for _ in range(minutes):
            clock.t += 60
            cycle, state = Cycle("1"), store.state("1/jobs")
            collector.collect(cycle, state)
            store.commit("1/jobs", cycle, state)
            forbidden_seen.update(cycle.forbidden_items)

    cycles(60)
    series_after_an_hour = one_time_series(store)

    # Through the SDK: 200 one-time runs, a repair of a failed run, and the 403 of the permission gap.
    submitted = [w.jobs.submit(run_name=f"airflow-load-{k}", tasks=[SubmitTask(
        task_key="load", notebook_task=NotebookTask(notebook_path="/Shared/load"))]).run_id for k in range(200)]
    assert len(set(submitted)) == 200
    run = w.jobs.get_run(submitted[0])
    assert run.run_type.value == "SUBMIT_RUN" and run.run_name == "airflow-load-0"
    assert run.job_id not in {j.job_id for j in w.jobs.list()}
    failed = next(r for r in w.jobs.list_runs(completed_only=True, start_time_from=int((clock.t - 1800) * 1000),
                                              expand_tasks=True)
                  if r.state.result_state and r.state.result_state.value == "FAILED" and len(r.tasks) > 1
                  and not r.repair_history and str(r.job_id) not in ws.forbidden()["job_ids"])
    repair_id = w.jobs.repair_run(failed.run_id, rerun_all_failed_tasks=True).response.repair_id
    repairing = w.jobs.get_run(failed.run_id)
    assert repairing.end_time == 0 and repairing.start_time == failed.start_time
    assert [h.type.value for h in repairing.repair_history] == ["ORIGINAL", "REPAIR"]
    assert repairing.repair_history[1].id == repair_id
    assert failed.run_id in {r.run_id for r in w.jobs.list_runs(active_only=True)}
    forbidden_job = int(ws.forbidden()["job_ids"][0])
    forbidden_run = next(r for r in w.jobs.list_runs(job_id=forbidden_job, start_time_from=int((clock.t - 7200) * 1000)))
    with pytest.raises(PermissionDenied):
        w.jobs.get_run(forbidden_run.run_id)

    cycles(30)
    server.workspace.scenarios.start("repair_storm")
    cycles(150)        # long enough for every submitted run and every repair started to end

    ws.pause()
    since = store.state("1/jobs")["counting_since"]
    truth = ws.truth(since)
    runs = truth["job_runs"]
    one_time = sum(n for run_type, results in runs["by_run_type"].items() if run_type != "JOB_RUN"
                   for n in results.values())
    repairs = truth["job_run_repairs"]
    by_result: dict[str, int] = {}
    for results in runs["by_job"].values():
        for result, n in results.items():
            by_result[result] = by_result.get(result, 0) + n
    repair_results: dict[str, int] = {}
    for results in repairs["by_job"].values():
        for result, n in results.items():
            repair_results[result] = repair_results.get(result, 0) + n
    got = {
        "runs": total(store, "databricks_job_runs_total"),
        "runs by result": {r: total(store, "databricks_job_runs_total", result_state=r) for r in by_result},
        "one-time runs": total(store, "databricks_job_runs_total", job_id="_one_time"),
        "repairs": total(store, "databricks_job_run_repairs_total"),
        "repairs by result": {r: total(store, "databricks_job_run_repairs_total", result_state=r)
                              for r in repair_results},
        "retries": total(store, "databricks_job_run_retries_total"),
        "durations": total(store, "databricks_job_run_duration_seconds"),
    }
    want = {"runs": runs["total"], "runs by result": by_result, "one-time runs": one_time,
            "repairs": repairs["total"], "repairs by result": repair_results,
            "retries": truth["job_run_retries"]["total"], "durations": runs["total"]}
    print(f"\nexporter {got}\ntruth    {want}")
    assert got == want
    assert one_time >= 200 and repairs["total"] >= 20 and truth["job_run_retries"]["total"] > 0
    # 200 submissions made no series of their own: the one-time series are those of the first hour plus one per
    # result, repair result or active state seen for the first time since, a bounded vocabulary (not 200 x 30).
    grown = sorted(set(one_time_series(store)) - set(series_after_an_hour))
    print(f"one-time series: {len(series_after_an_hour)} after an hour, new since: {grown}")
    vocabulary = {"SUCCESS", "FAILED", "TIMEDOUT", "CANCELED", "INTERNAL_ERROR", "SKIPPED", "QUEUED", "PENDING",
                  "RUNNING", "TERMINATING", "BLOCKED", "WAITING"}
    assert len(series_after_an_hour) >= 5 and len(grown) <= 10
    assert all(len(values) == 2 or values[2] in vocabulary for _, values in grown)
    job_ids = {v for f in store.families() if f.metric.name.startswith("databricks_job") and "job_id" in f.metric.labels
               for values, _ in f.samples for k, v in zip(f.metric.labels, values) if k == "job_id"}
    assert job_ids - {str(j.job_id) for j in ws.jobs} == {"_one_time"}
    assert any(item.startswith("run ") for item in forbidden_seen)
