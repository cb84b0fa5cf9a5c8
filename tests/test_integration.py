"""The exporter as a user runs it: a real subprocess talking to the simulated workspace over HTTP through the real
databricks-sdk, scraped over HTTP, checked by promtool and by the real Prometheus."""

from __future__ import annotations

import gzip
import re
import signal
import subprocess
import sys
import time

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.service.compute import ListClustersFilterBy, State

from conftest import (converge_on_truth, fast_config, http_get, require_binary, run_serve, sigkill_restarts, truth,
                      wait_for)

pytestmark = pytest.mark.integration
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')


def parse(text: str) -> list[tuple[str, dict, float]]:
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = SAMPLE.match(line)
        assert match, line
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(3) or ""))
        samples.append((match.group(1), labels, float(match.group(4))))
    return samples


def total(samples, name, **labels) -> float:
    return sum(v for n, lab, v in samples if n == name and all(lab.get(k) == val for k, val in labels.items()))


def sdk(simulator) -> WorkspaceClient:
    return WorkspaceClient(host=simulator.url, token=simulator.token)


def test_metrics_cover_every_cluster_warehouse_and_job(simulator, exporter_factory):
    exporter = exporter_factory(fast_config()).start()
    w = sdk(simulator)
    samples = parse(exporter.metrics())
    workspace_id = str(w.get_workspace_id())

    alive = {c.cluster_id for c in w.clusters.list(filter_by=ListClustersFilterBy(
        cluster_states=[s for s in State if s != State.TERMINATED]))}
    exported = {lab["cluster_id"] for n, lab, _ in samples if n == "databricks_cluster_info"}
    assert len(alive) >= 3 and exported == alive
    assert {lab.get("workspace_id") for n, lab, _ in samples if n.startswith("databricks_")} - {None} == {workspace_id}
    assert total(samples, "databricks_clusters") == len(alive)

    warehouses = {wh.id for wh in w.warehouses.list()}
    assert {lab["warehouse_id"] for n, lab, _ in samples if n == "databricks_warehouse_info"} == warehouses
    assert total(samples, "databricks_warehouse_state") == len(warehouses)

    jobs = {str(j.job_id) for j in w.jobs.list()}
    assert len(jobs) >= 50
    assert {lab["job_id"] for n, lab, _ in samples if n == "databricks_job_info"} == jobs
    for name in ("databricks_job_run_duration_seconds_count", "databricks_job_run_queue_duration_seconds_bucket",
                 "databricks_exporter_api_requests_total", "databricks_cluster_workers",
                 "databricks_cluster_events_total", "databricks_job_last_success_timestamp_seconds",
                 "databricks_workspace_info", "databricks_exporter_build_info", "databricks_warehouse_health"):
        assert total(samples, name) > 0, name
    for collector in ("clusters", "warehouses", "jobs"):
        assert total(samples, "databricks_exporter_collector_up", collector=collector) == 1
    # Runs keep completing while we watch, and the counter follows.
    before = total(samples, "databricks_job_runs_total")
    wait_for(lambda: total(parse(exporter.metrics()), "databricks_job_runs_total") > before, 150,
             what="databricks_job_runs_total to grow")


def test_exposition_formats_and_promtool(simulator, exporter_factory):
    exporter = exporter_factory(fast_config()).start()
    status, headers, body = http_get(exporter.url + "/metrics", {"Accept-Encoding": "gzip"})
    assert status == 200 and headers["Content-Encoding"] == "gzip"
    text = gzip.decompress(body)
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    status, headers, om = http_get(exporter.url + "/metrics", {"Accept": "application/openmetrics-text"})
    assert headers["Content-Type"].startswith("application/openmetrics-text") and om.endswith(b"# EOF\n")
    promtool = require_binary("promtool")
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True)
    assert result.returncode == 0, result.stdout + result.stderr
    page = http_get(exporter.url + "/")[2].decode()
    assert "/metrics" in page and "jobs" in page and "up" in page and "REST requests a minute" in page
    assert http_get(exporter.url + "/healthz")[0] == 200


def test_real_prometheus_scrapes_the_exporter(simulator, exporter_factory, prometheus_factory):
    exporter = exporter_factory(fast_config()).start()
    prometheus = prometheus_factory([f"127.0.0.1:{exporter.port}"])
    wait_for(lambda: prometheus.query('up{job="databricks"} == 1'), 30, what="a successful scrape")
    jobs = {str(j.job_id) for j in sdk(simulator).jobs.list()}
    result = wait_for(lambda: prometheus.query("count by (job_id) (databricks_job_info)"), 30, what="job info")
    assert {r["metric"]["job_id"] for r in result} == jobs
    result = prometheus.query('sum(databricks_exporter_collector_up{collector=~"clusters|jobs|warehouses"})')
    assert float(result[0]["value"][1]) == 3
    result = prometheus.query("sum(databricks_job_runs_total)")
    assert float(result[0]["value"][1]) > 0


def counted_runs(exporter) -> tuple[float, dict, float]:
    """(runs counted, {job_id: {result_state: runs}} without zeros, counting since) as /metrics reports them."""
    samples = parse(exporter.metrics())
    by_job: dict[str, dict[str, float]] = {}
    for name, labels, value in samples:
        if name == "databricks_job_runs_total" and value:
            results = by_job.setdefault(labels["job_id"], {})
            results[labels["result_state"]] = results.get(labels["result_state"], 0) + value
    since = total(samples, "databricks_exporter_counting_since_timestamp_seconds", collector="jobs")
    return total(samples, "databricks_job_runs_total"), by_job, since


def test_job_runs_are_counted_exactly_once_across_sigkill_restarts(simulator, exporter_factory):
    exporter = exporter_factory(fast_config()).start()
    first_since = counted_runs(exporter)[2]
    assert first_since > 0
    sigkill_restarts(exporter, [(3, 4)] * 2, then=3)       # runs complete while the exporter is down

    listed = {str(job.job_id) for job in simulator.workspace.jobs}

    def expected():
        # Runs of jobs that jobs/list does not show (one-time runs) count under one job_id, "_one_time".
        runs = truth(simulator, first_since)["job_runs"]
        by_job: dict[str, dict[str, int]] = {}
        for job_id, results in runs["by_job"].items():
            for result, n in results.items():
                folded = by_job.setdefault(job_id if job_id in listed else "_one_time", {})
                folded[result] = folded.get(result, 0) + n
        return runs["total"], by_job, first_since

    _, (runs, _, _) = converge_on_truth(simulator, lambda: counted_runs(exporter), expected,
                                        what="job runs to equal the truth")
    assert runs > 0


def test_the_token_never_appears_anywhere(simulator, exporter_factory, tmp_path):
    exporter = exporter_factory(fast_config(), env={"DATABRICKS_TOKEN": simulator.token}).start("--log.level",
                                                                                                 "debug")
    seen = exporter.metrics() + http_get(exporter.url + "/")[2].decode()
    time.sleep(2)
    exporter.kill(signal.SIGTERM)
    seen += exporter.log()
    assert simulator.token not in seen

    wrong = "dapi-wrong-token-0123456789abcdef"
    env = {**exporter.env, "DATABRICKS_TOKEN": wrong}
    serve = subprocess.run([sys.executable, "-m", "databricks_exporter", "serve", "--log.level", "debug"], env=env,
                           capture_output=True, text=True, timeout=120)
    assert serve.returncode == 2 and "rejected the credential" in serve.stderr, serve.stderr
    once = subprocess.run([sys.executable, "-m", "databricks_exporter", "once", "--no-state", "--log.level", "debug"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert once.returncode == 1 and "Unauthenticated" in once.stderr, once.stderr
    everything = serve.stdout + serve.stderr + once.stdout + once.stderr
    assert wrong not in everything and simulator.token not in everything


def test_once_prints_the_exposition(simulator, tmp_path):
    env = {"DATABRICKS_HOST": simulator.url, "DATABRICKS_TOKEN": simulator.token, "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "databricks_exporter", "once", "--no-state",
                             "--no-collector.clusters"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    samples = parse(result.stdout)
    assert total(samples, "databricks_job_info") >= 50
    assert total(samples, "databricks_cluster_info") == 0
    assert total(samples, "databricks_exporter_collector_up", collector="jobs") == 1


def test_check_reports_each_collector(simulator):
    env = {"DATABRICKS_HOST": simulator.url, "DATABRICKS_TOKEN": simulator.token, "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "databricks_exporter", "check"], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    for collector in ("clusters", "jobs", "warehouses"):
        assert re.search(rf"{collector}\s+OK", result.stdout), result.stdout
    env["DATABRICKS_TOKEN"] = "dapi-not-the-right-one-123456"
    result = subprocess.run([sys.executable, "-m", "databricks_exporter", "check"], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1 and "FAILED" in result.stdout and env["DATABRICKS_TOKEN"] not in result.stdout


@pytest.mark.parametrize("config, key", [
    ("collectors: {jobs: {interval: often}}\n", "collectors.jobs.interval"),
    ("unknown_thing: 1\n", "unknown_thing"),
    ("collectors: {jobs: {include: ['[']}}\n", "collectors.jobs.include"),
])
def test_bad_config_exits_2_naming_the_key(tmp_path, config, key):
    path = tmp_path / "c.yml"
    path.write_text(config)
    result = run_serve("--config.file", str(path))
    assert result.returncode == 2 and str(path) in result.stderr and key in result.stderr, result.stderr


def test_unreachable_host_exits_2(tmp_path):
    env = {"DATABRICKS_HOST": "http://127.0.0.1:9", "DATABRICKS_TOKEN": "dapi-x" * 3, "PATH": "/usr/bin:/bin",
           "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "databricks_exporter", "serve"], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2 and "host: cannot reach http://127.0.0.1:9" in result.stderr, result.stderr
    assert env["DATABRICKS_TOKEN"] not in result.stderr


def test_missing_credential_exits_2(tmp_path):
    env = {"DATABRICKS_HOST": "http://127.0.0.1:9", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "databricks_exporter", "serve"], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and "credential" in result.stderr, result.stderr
