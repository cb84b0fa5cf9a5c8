"""Drills: the exporter under damage, as an operator would meet it. Each drill is bounded in time."""

from __future__ import annotations

import json
import random
import time

import pytest

from conftest import converge_on_truth, fast_config, sigkill_restarts, truth, wait_for
from test_integration import parse, total

pytestmark = pytest.mark.integration


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
    """SIGKILL the exporter at random moments, ten times, while the workload runs. The counters the real Prometheus
    scraped (job runs, queries, pipeline updates, expectation records) never reset, and in the end equal the
    simulated workspace's truth since each collector began counting: nothing lost, nothing counted twice."""
    config = fast_config()
    config["collectors"].update({"queries": {"interval": "2s"}, "pipelines": {"interval": "2s"},
                                 "billing": {"enabled": False}, "utilization": {"enabled": False}})
    exporter = exporter_factory(config).start()
    samples = parse(exporter.metrics())
    since = {c: total(samples, "databricks_exporter_counting_since_timestamp_seconds", collector=c)
             for c in ("jobs", "queries", "pipelines")}
    assert all(since.values()), since
    prometheus = prometheus_factory([f"127.0.0.1:{exporter.port}"])
    rng = random.Random(11)
    sigkill_restarts(exporter, [(rng.uniform(0.5, 4.0), rng.uniform(0.0, 2.0)) for _ in range(10)])

    promql = ("sum(databricks_job_runs_total)", "sum(databricks_queries_total)",
              "sum(databricks_pipeline_updates_total)",
              'sum(databricks_pipeline_expectation_records_total{outcome="passed"})',
              'sum(databricks_pipeline_expectation_records_total{outcome="failed"})')

    def expected() -> dict:
        jobs, queries, pipelines = (truth(simulator, since[c]) for c in ("jobs", "queries", "pipelines"))
        records = pipelines["pipeline_expectation_records"]["by_outcome"]
        want = dict(zip(promql, (jobs["job_runs"]["total"], queries["queries"]["total"],
                                 pipelines["pipeline_updates"]["total"], records["passed"], records["failed"])))
        assert all(want.values()), want
        return want

    def scraped() -> dict:
        return {q: float(r[0]["value"][1]) if (r := prometheus.query(q)) else -1 for q in promql}

    got, want = converge_on_truth(simulator, scraped, expected, timeout=90, what="Prometheus to scrape the truth")
    window = int(time.time() - min(since.values())) + 60
    for name in ("databricks_job_runs_total", "databricks_queries_total", "databricks_pipeline_updates_total",
                 "databricks_pipeline_expectation_records_total"):
        assert prometheus.query(f"sum(resets({name}[{window}s])) > 0") == [], name
    print(f"crash drill: Prometheus scraped {got}; truth {want}")
