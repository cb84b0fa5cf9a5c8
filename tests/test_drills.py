"""Drills: the exporter under damage, as an operator would meet it. Each drill is bounded in time."""

from __future__ import annotations

import json
import random
import time

import pytest

from conftest import converge_on_truth, fast_config, sigkill_restarts, truth, wait_for
from test_integration import parse, total

pytestmark = pytest.mark.integration


@pytest.fixture
def simulator():
    """The drills' workspace plays the permission gaps (one job's runs/get, one pipeline's events and one cluster's
    events answer 403), as the served simulator does."""
    from databricks_sim.server import SimulatorServer

    server = SimulatorServer(port=0, seed=7, permission_gaps=True).start()
    yield server
    server.shutdown()


def post_json(url: str, body: dict | None = None, token: str | None = None) -> dict:
    import urllib.request

    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, method="POST", data=json.dumps(body or {}).encode(), headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"{}")


def repair_a_short_failed_run(simulator) -> int:
    """Repair (runs/repair) the recently failed multitask run whose tasks are quickest, on warm compute; its run_id."""
    ws = simulator.workspace
    now = ws.now_ms()
    forbidden = ws.forbidden()["job_ids"]
    runs = [r for r in ws.job_set.runs if r.job.multitask and r.job.compute != "job_cluster"
            and (r.repairs[-1].result if r.repairs else r.result) == "FAILED" and not r.active_at(now)
            and now - 7_200_000 < r.latest_end_ms() and r.run_type == "JOB_RUN" and str(r.job_id) not in forbidden]
    run = min(runs, key=lambda r: sum(t.median_ms for t in r.job.tasks))
    post_json(f"{simulator.url}/api/2.2/jobs/runs/repair", {
        "run_id": run.run_id, "rerun_all_failed_tasks": True,
        "latest_repair_id": run.repairs[-1].repair_id if run.repairs else None}, simulator.token)
    return run.run_id


RESULTS = ("SUCCESS", "FAILED", "TIMEDOUT", "CANCELED", "SKIPPED", "INTERNAL_ERROR")


def without(truth: dict, pipeline_id: str) -> tuple[int, int, int]:
    """Pipeline updates, passed and failed expectation records in the truth, less one pipeline's."""
    updates = truth["pipeline_updates"]["total"] - sum(truth["pipeline_updates"]["by_pipeline"].get(pipeline_id, {})
                                                       .values())
    records = truth["pipeline_expectation_records"]
    mine = [counts for datasets in records["by_pipeline"].get(pipeline_id, {}).values() for counts in datasets.values()]
    return (updates, records["by_outcome"]["passed"] - sum(c["passed"] for c in mine),
            records["by_outcome"]["failed"] - sum(c["failed"] for c in mine))


@pytest.mark.parametrize("content", [b'{"version": 1, "collectors": {"1/jobs": {"runs"', b"\x00\xff garbage",
                                     b"", b'{"version": 1, "counters": {"databricks_job_runs_total": [["x"]]}}'])
def test_a_damaged_state_file_means_a_warning_and_a_fresh_start(exporter_factory, content):
    exporter = exporter_factory(fast_config())
    exporter.state_file.write_bytes(content)
    started = time.time()
    exporter.start()
    samples = parse(exporter.metrics())
    since = total(samples, "databricks_exporter_counting_since_timestamp_seconds", collector="jobs")
    assert abs(since - (started - 3600)) < 60          # counting starts afresh from the lookback
    assert total(samples, "databricks_exporter_collector_up") >= 3
    assert "damaged" in exporter.log() and exporter.state_file.with_suffix(".json.corrupt").exists()
    # and the fresh state it writes is whole JSON again
    wait_for(lambda: json.loads(exporter.state_file.read_text()).get("version") == 1, 20, what="a new state file")


def test_crash_and_restart_drill(simulator, exporter_factory, prometheus_factory):
    """SIGKILL the exporter at random moments, ten times, while the workload runs: runs repaired (a repair_storm,
    and a repair that starts and ends while the exporter is down), tasks retried inside runs, one-time runs
    submitted, and one job, one pipeline and one cluster answering 403. The counters the real Prometheus scraped
    (job runs, one-time runs, repairs, retries, queries, pipeline updates, expectation records) never reset, and in
    the end equal the simulated workspace's truth since each collector began counting (less what the credential
    may not read: the forbidden pipeline's event log): nothing lost, nothing counted twice."""
    from conftest import http_get

    config = fast_config()
    config["collectors"].update({"queries": {"interval": "2s"}, "pipelines": {"interval": "2s"},
                                 "billing": {"enabled": False}, "utilization": {"enabled": False}})
    exporter = exporter_factory(config).start()
    samples = parse(exporter.metrics())
    since = {c: total(samples, "databricks_exporter_counting_since_timestamp_seconds", collector=c)
             for c in ("jobs", "queries", "pipelines")}
    assert all(since.values()), since
    prometheus = prometheus_factory([f"127.0.0.1:{exporter.port}"])
    post_json(f"{simulator.url}/simulator/scenarios/repair_storm")

    def while_down(n: int) -> None:
        for k in range(5):
            post_json(f"{simulator.url}/api/2.2/jobs/runs/submit", {"run_name": f"drill-{n}-{k}", "tasks": [
                {"task_key": "load", "notebook_task": {"notebook_path": "/Shared/load"}}]}, simulator.token)
        if n == 4:
            # A repair that starts and ends while the exporter is down.
            repaired = repair_a_short_failed_run(simulator)
            wait_for(lambda: json.loads(http_get(f"{simulator.url}/api/2.2/jobs/runs/get?run_id={repaired}", {
                "Authorization": f"Bearer {simulator.token}"})[2])["end_time"], 120, what="the repair to end")

    rng = random.Random(11)
    sigkill_restarts(exporter, [(rng.uniform(0.5, 4.0), rng.uniform(0.0, 2.0)) for _ in range(10)],
                     while_down=while_down)

    def expected() -> dict:
        jobs, queries, pipelines = (truth(simulator, since[c]) for c in ("jobs", "queries", "pipelines"))
        updates, passed, failed = without(pipelines, pipelines["forbidden"]["pipeline_ids"][0])
        by_result: dict[str, int] = {}
        for results in jobs["job_runs"]["by_job"].values():
            for result, n in results.items():
                by_result[result] = by_result.get(result, 0) + n
        want = {
            "sum(databricks_job_runs_total)": jobs["job_runs"]["total"],
            **{f'sum(databricks_job_runs_total{{result_state="{r}"}}) or vector(0)': by_result.get(r, 0)
               for r in RESULTS},
            'sum(databricks_job_runs_total{job_id="_one_time"})': sum(
                n for run_type, results in jobs["job_runs"]["by_run_type"].items() if run_type != "JOB_RUN"
                for n in results.values()),
            "sum(databricks_job_run_repairs_total)": jobs["job_run_repairs"]["total"],
            "sum(databricks_job_run_retries_total)": jobs["job_run_retries"]["total"],
            "sum(databricks_job_run_duration_seconds_count)": jobs["job_runs"]["total"],
            "sum(databricks_queries_total)": queries["queries"]["total"],
            "sum(databricks_pipeline_updates_total)": updates,
            'sum(databricks_pipeline_expectation_records_total{outcome="passed"})': passed,
            'sum(databricks_pipeline_expectation_records_total{outcome="failed"})': failed,
        }
        assert all(v for q, v in want.items() if "vector(0)" not in q), want
        return want

    promql = list(expected())       # the same queries whenever asked; only the truth's values change

    def scraped() -> dict:
        return {q: float(r[0]["value"][1]) if (r := prometheus.query(q)) else -1 for q in promql}

    got, want = converge_on_truth(simulator, scraped, expected, timeout=90, what="Prometheus to scrape the truth")
    window = int(time.time() - min(since.values())) + 60
    for name in ("databricks_job_runs_total", "databricks_job_run_repairs_total",
                 "databricks_job_run_retries_total", "databricks_queries_total", "databricks_pipeline_updates_total",
                 "databricks_pipeline_expectation_records_total"):
        assert prometheus.query(f"sum(resets({name}[{window}s])) > 0") == [], name
    assert prometheus.query("sum(databricks_exporter_forbidden_items_total) > 0"), "the 403 items were noted"
    print(f"crash drill: Prometheus scraped {got}; truth {want}")
