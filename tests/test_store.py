"""Unit tests for the metric store: cycles apply atomically, counters persist, damaged state files are survived."""

import json
import os
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


@pytest.mark.parametrize("content", ["{\"version\": 1, \"count", "not json", "[]", "{\"version\": 99}", ""])
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
