"""Unit tests for the metric store: cycles apply atomically, counters persist, damaged state files are survived."""

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from databricks_exporter import metrics as m
from databricks_exporter.cardinality import CardinalityGuard
from databricks_exporter.cycle import Cycle
from databricks_exporter.exposition import Renderer
from databricks_exporter.files import write_atomically
from databricks_exporter.store import MetricStore


def committed(store, owner="1/jobs", state=None, **emits):
    cycle = Cycle("1")
    for job_id, result in emits.get("runs", []):
        cycle.inc(m.JOB_RUNS, job_id=job_id, result_state=result, trigger="PERIODIC")
    for job_id, seconds in emits.get("durations", []):
        cycle.observe(m.JOB_RUN_DURATION, seconds, job_id=job_id)
    for job_id in emits.get("jobs", []):
        cycle.gauge(m.JOB_INFO, 1, job_id=job_id, job_name=f"job {job_id}", schedule_paused="false")
    store.commit(owner, cycle, state)
    return cycle


def test_counters_add_up_and_gauges_are_replaced_each_cycle():
    store = MetricStore()
    committed(store, runs=[("7", "SUCCESS"), ("7", "SUCCESS"), ("8", "FAILED")], jobs=["7", "8"])
    committed(store, runs=[("7", "SUCCESS")], jobs=["7"])
    assert store.value("databricks_job_runs_total", workspace_id="1", job_id="7", result_state="SUCCESS",
                       trigger="PERIODIC") == 3
    assert store.value("databricks_job_info", workspace_id="1", job_id="7", job_name="job 7",
                       schedule_paused="false") == 1
    # job 8 vanished from the second cycle's gauges, so it leaves /metrics; its counter stays.
    assert store.value("databricks_job_info", workspace_id="1", job_id="8", job_name="job 8",
                       schedule_paused="false") is None
    assert store.value("databricks_job_runs_total", workspace_id="1", job_id="8", result_state="FAILED",
                       trigger="PERIODIC") == 1


def test_wrong_labels_are_rejected():
    with pytest.raises(ValueError, match="takes labels"):
        Cycle("1").inc(m.JOB_RUNS, job_id="1")


def test_counters_histograms_and_cursor_survive_a_restart(tmp_path):
    path = str(tmp_path / "state.json")
    store = MetricStore(path)
    committed(store, state={"cursor": 42}, runs=[("7", "SUCCESS")], durations=[("7", 45), ("7", 4000)])
    again = MetricStore(path)
    assert "loaded" in again.load()
    assert again.state("1/jobs") == {"cursor": 42}
    assert again.value("databricks_job_runs_total", workspace_id="1", job_id="7", result_state="SUCCESS",
                       trigger="PERIODIC") == 1
    hist = again.value("databricks_job_run_duration_seconds", workspace_id="1", job_id="7")
    assert hist.count == 2 and hist.sum == 4045
    assert dict(hist.cumulative(m.JOB_RUN_DURATION))[60] == 1


@pytest.mark.parametrize("content", ["{\"version\": 1, \"count", "not json", "[]", "{\"version\": 0}", ""])
def test_damaged_state_file_starts_afresh_and_is_kept_aside(tmp_path, content, caplog):
    path = tmp_path / "state.json"
    path.write_text(content)
    store = MetricStore(str(path))
    assert "damaged" in store.load()
    assert store.state("1/jobs") == {}
    assert (tmp_path / "state.json.corrupt").read_text() == content
    assert "damaged" in caplog.text


def test_atomic_write_leaves_old_file_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "state.json"
    write_atomically(str(path), "old")

    def broken_fsync(fd):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        write_atomically(str(path), "new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_keep_only_forgets_series_of_one_workspace():
    store = MetricStore()
    for ws in ("1", "2"):
        cycle = Cycle(ws)
        for cluster in ("a", "b"):
            cycle.inc(m.CLUSTER_EVENTS, cluster_id=cluster, event_type="RUNNING")
        store.commit(f"{ws}/clusters", cycle, {})
    cycle = Cycle("1")
    cycle.keep_only(m.CLUSTER_EVENTS, lambda labels: labels["cluster_id"] == "a")
    store.commit("1/clusters", cycle, {})
    series = {values for family in store.families() if family.metric is m.CLUSTER_EVENTS
              for values, _ in family.samples}
    assert series == {("1", "a", "RUNNING"), ("2", "a", "RUNNING"), ("2", "b", "RUNNING")}


def test_exposition_is_cached_until_the_store_changes():
    store = MetricStore()
    renderer = Renderer(store)
    committed(store, runs=[("7", "SUCCESS")])
    first = renderer.render()
    assert b'databricks_job_runs_total{job_id="7",result_state="SUCCESS",trigger="PERIODIC",workspace_id="1"} 1.0' \
        in first
    assert renderer.render() is first
    committed(store, runs=[("7", "SUCCESS")])
    assert b"} 2.0" in renderer.render()
    om = renderer.render(openmetrics_format=True)
    assert om.endswith(b"# EOF\n") and b"# TYPE databricks_job_runs counter" in om


def jobs_cycle(jobs):
    cycle = Cycle("1")
    for job in jobs:
        cycle.gauge(m.JOB_INFO, 1, job_id=job, job_name=f"job {job}", schedule_paused="false")
        cycle.inc(m.JOB_RUNS, job_id=job, result_state="SUCCESS", trigger="PERIODIC")
        cycle.count_gauge(m.JOB_RUNS_ACTIVE, job_id=job, state="RUNNING")
    return cycle


def test_cardinality_guard_folds_new_entities_into_other_and_keeps_totals():
    store = MetricStore()
    guard = CardinalityGuard(limit=6)
    state: dict = {}

    assert store.commit("1/jobs", jobs_cycle(["a", "b"]), state, guard) == 0
    folded = store.commit("1/jobs", jobs_cycle(["a", "b", "c", "d"]), state, guard)
    assert folded == 6                                   # c and d: 3 series each
    runs = {values[1]: v for f in store.families() if f.metric is m.JOB_RUNS for values, v in f.samples}
    assert runs == {"a": 2, "b": 2, "_other": 2}         # the total (6 runs) is intact
    info = {values[1] for f in store.families() if f.metric is m.JOB_INFO for values, _ in f.samples}
    assert info == {"a", "b"}                            # info gauges of folded jobs are dropped
    assert store.value("databricks_job_runs_active", workspace_id="1", job_id="_other", state="RUNNING") == 2
    assert store.admitted("1/jobs") == ["a", "b"] and "admitted_entities" not in state
    # admitted jobs keep their place; with more room, the waiting job gets its own series from now on
    assert store.commit("1/jobs", jobs_cycle(["a", "b", "d"]), state, CardinalityGuard(limit=12)) == 0
    assert store.admitted("1/jobs") == ["a", "b", "d"]
    assert store.value("databricks_job_runs_total", workspace_id="1", job_id="d", result_state="SUCCESS",
                       trigger="PERIODIC") == 1


def test_a_state_file_with_the_admitted_entities_in_the_collector_state_loses_nothing(tmp_path):
    # Written by the store of 6d7988f, before the guard had a key of its own, with the first two commits of the test
    # above (and a cursor in the state): jobs a and b admitted, c and d folded into "_other", the list inside the
    # jobs collector's state.
    path = tmp_path / "state.json"
    shutil.copy(Path(__file__).parent / "fixtures" / "state-v1-admitted-in-collector.json", path)
    store = MetricStore(str(path))
    assert store.load() == f"state loaded from {path}"
    assert store.admitted("1/jobs") == ["a", "b"]
    assert store.state("1/jobs") == {"counting_since": 1700000000.0,
                                     "runs": {"watermark": 1700000000000, "seen": {"11": 1700000000000}}}

    def runs():
        return {values[1]: v for f in store.families() if f.metric is m.JOB_RUNS for values, v in f.samples}

    assert runs() == {"a": 2, "b": 2, "_other": 2}
    # Room for two jobs besides "_other": a and b keep theirs, as admitted before; job 0, new (and first by name),
    # folds. Had the list been lost, 0 and a would have been admitted and b folded.
    assert store.commit("1/jobs", jobs_cycle(["0", "a", "b"]), store.state("1/jobs"), CardinalityGuard(7)) == 3
    assert runs() == {"a": 3, "b": 3, "_other": 3}
    saved = json.loads(path.read_text())
    assert saved["admitted_entities"] == {"1/jobs": ["a", "b"]}
    assert "admitted_entities" not in saved["collectors"]["1/jobs"]
    restarted = MetricStore(str(path))
    restarted.load()
    assert restarted.admitted("1/jobs") == ["a", "b"]


def test_the_exporters_own_counters_are_served_only_once_saved(tmp_path):
    # Counted by the exporter itself (API requests), outside any collector cycle: what a scrape serves must be in the
    # file, so that a restart starts from it and increase() sees no drop.
    path = str(tmp_path / "state.json")
    store = MetricStore(path)
    labels = {"workspace_id": "1", "endpoint": "/api/2.1/jobs/runs/list", "status_code": "200"}
    for _ in range(7):
        store.inc(m.API_REQUESTS, labels)
    store.observe(m.SQL_QUERY_DURATION, {"workspace_id": "1", "collector": "billing"}, 0.5)
    renderer = Renderer(store)
    assert b"api_requests_total" not in renderer.render()         # not saved yet, so not served
    assert store.flush()
    served = renderer.render().decode()
    assert 'databricks_exporter_api_requests_total{endpoint="/api/2.1/jobs/runs/list",status_code="200",' \
           'workspace_id="1"} 7.0' in served
    restarted = MetricStore(path)
    restarted.load()
    assert restarted.value("databricks_exporter_api_requests_total", **labels) == 7
    assert restarted.value("databricks_exporter_sql_query_duration_seconds", workspace_id="1",
                           collector="billing").count == 1


def break_directory(directory: Path) -> Path:
    """Make every write into `directory` fail, even as root: the directory moves aside and a plain file takes its
    name (ENOTDIR), as an unmounted or vanished volume would. Returns where the directory went."""
    aside = directory.with_name(directory.name + ".aside")
    directory.rename(aside)
    directory.write_text("")
    return aside


def mend_directory(directory: Path, aside: Path) -> None:
    directory.unlink()
    aside.rename(directory)


def test_a_failed_save_publishes_nothing_and_recovers_when_the_disk_does(tmp_path):
    directory = tmp_path / "state"
    directory.mkdir()
    path = directory / "state.json"
    store = MetricStore(str(path))
    committed(store, state={"cursor": 1}, runs=[("7", "SUCCESS")], jobs=["7"], durations=[("7", 45)])
    renderer = Renderer(store)
    before = renderer.render()
    aside = break_directory(directory)
    labels = {"workspace_id": "1", "endpoint": "/api/2.1/jobs/list", "status_code": "200"}
    store.inc(m.API_REQUESTS, labels)
    with pytest.raises(OSError, match=f"cannot save the state to {re.escape(str(path))}: File exists"):
        committed(store, state={"cursor": 2}, runs=[("7", "SUCCESS"), ("8", "FAILED")], jobs=["8"],
                  durations=[("7", 4000)])
    # Nothing of the failed commit, nor the unsaved request count, is served; the cursor is the saved one.
    assert renderer.render() == before
    assert store.state("1/jobs") == {"cursor": 1}
    assert store.value("databricks_job_runs_total", workspace_id="1", job_id="7", result_state="SUCCESS",
                       trigger="PERIODIC") == 1
    assert store.value("databricks_job_run_duration_seconds", workspace_id="1", job_id="7").count == 1
    mend_directory(directory, aside)
    committed(store, state={"cursor": 2}, runs=[("7", "SUCCESS"), ("8", "FAILED")], jobs=["8"])
    assert store.value("databricks_job_runs_total", workspace_id="1", job_id="7", result_state="SUCCESS",
                       trigger="PERIODIC") == 2
    assert store.value("databricks_exporter_api_requests_total", **labels) == 1
    restarted = MetricStore(str(path))
    restarted.load()
    assert restarted.state("1/jobs") == {"cursor": 2}
    assert restarted.value("databricks_exporter_api_requests_total", **labels) == 1


FIXTURES = Path(__file__).parent / "fixtures"


def test_an_upgrade_from_the_released_format_keeps_every_counter_and_cursor(tmp_path):
    # tests/fixtures/state-v1.json: written by the store of f67d193 (version 1) after one cycle of the clusters,
    # jobs, pipelines and warehouses collectors against the simulator.
    path = tmp_path / "state.json"
    shutil.copy(FIXTURES / "state-v1.json", path)
    old = json.loads(path.read_text())
    store = MetricStore(str(path))
    assert store.load() == f"state loaded from {path}"
    for owner, state in old["collectors"].items():
        assert store.state(owner) == state
    for owner, entities in old["admitted_entities"].items():
        assert store.admitted(owner) == entities
    for name, rows in old["counters"].items():
        metric = m.REGISTRY[name]
        for values, value in rows:
            assert store.value(name, **dict(zip(metric.labels, values))) == value
    assert sum(len(rows) for rows in old["counters"].values()) == 226
    store.save()
    new = json.loads(path.read_text())
    assert new["version"] == 2
    assert {k: v for k, v in new.items() if k != "version"} == {k: v for k, v in old.items() if k != "version"}


def test_a_state_file_from_a_newer_exporter_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "state.json"
    content = '{"version": 3, "collectors": {}, "counters": {}, "histograms": {}, "something_new": 1}'
    path.write_text(content)
    with pytest.raises(ValueError, match=f"state file {re.escape(str(path))} has version 3, written by a newer "
                                         f"exporter \\(this one reads up to version 2\\)"):
        MetricStore(str(path)).load()
    assert path.read_text() == content and not (tmp_path / "state.json.corrupt").exists()


def test_an_entity_without_series_leaves_the_admitted_list():
    store = MetricStore()
    assert store.commit("1/jobs", jobs_cycle(["a", "b"]), {}, CardinalityGuard(limit=100)) == 0
    assert store.admitted("1/jobs") == ["a", "b"]
    # job b's counters are forgotten (deleted longer than the retention) and it has no gauges left
    cycle = jobs_cycle(["a"])
    cycle.keep_only(m.JOB_RUNS, lambda labels: labels["job_id"] != "b")
    cycle.keep_only(m.JOB_RUN_DURATION, lambda labels: labels["job_id"] != "b")
    store.commit("1/jobs", cycle, {}, CardinalityGuard(limit=100))
    store.commit("1/jobs", jobs_cycle(["a"]), {}, CardinalityGuard(limit=100))
    assert store.admitted("1/jobs") == ["a"]
