"""Garbage in: property-based tests feed malformed and unexpected payloads to the collectors' parsing. Nothing may
escape as a crash; bad items are skipped and counted once each, the cycle still commits, counters stay sane."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from databricks_exporter.collectors.clusters import ClustersCollector
from databricks_exporter.collectors.jobs import JobsCollector
from databricks_exporter.collectors.warehouses import WarehousesCollector
from databricks_exporter.config import CollectorSettings
from databricks_exporter.store import Cycle, MetricStore

scalars = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=8)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                         max_size=3), max_leaves=8)


def records(keys: list[str]):
    """Dicts that mostly use the real field names, with values of any type, sometimes missing."""
    return st.dictionaries(st.sampled_from(keys), values, max_size=len(keys)) | \
        st.fixed_dictionaries({k: values for k in keys[:3]})


RUN_KEYS = ["run_id", "job_id", "start_time", "end_time", "state", "status", "trigger", "tasks", "run_duration",
            "queue_duration", "attempt_number", "setup_duration"]
CLUSTER_KEYS = ["cluster_id", "state", "cluster_source", "executors", "num_workers", "autoscale", "cluster_cores",
                "cluster_memory_mb", "start_time", "terminated_time", "termination_reason", "cluster_name"]
WAREHOUSE_KEYS = ["id", "name", "state", "num_clusters", "min_num_clusters", "max_num_clusters", "health",
                  "cluster_size", "enable_serverless_compute"]


class Obj:
    def __init__(self, data):
        self.data = data

    def as_dict(self):
        return self.data


def settings_for(name, **options):
    return CollectorSettings(name, True, 60, 60, options)


def run_cycle(collector, store: MetricStore) -> Cycle:
    cycle = Cycle("1")
    state = store.state(f"1/{collector.name}")
    collector.collect(cycle, state)
    store.commit(f"1/{collector.name}", cycle, state)
    json.dumps(state)   # the state must stay persistable
    return cycle


def assert_sane(store: MetricStore) -> None:
    for family in store.families():
        for _, value in family.samples:
            if family.metric.type == "counter":
                assert value >= 0 and not math.isnan(value)


FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(jobs=st.lists(records(["job_id", "settings"]), max_size=4), runs=st.lists(records(RUN_KEYS), max_size=6),
       single=records(RUN_KEYS))
def test_jobs_collector_survives_garbage(jobs, runs, single):
    client = SimpleNamespace(jobs=SimpleNamespace(
        list=lambda limit=100: iter(Obj(j) for j in jobs),
        list_runs=lambda limit=25, **kw: iter(Obj(r) for r in runs),
        get_run=lambda run_id: Obj(single)))
    options = {"include": [], "exclude": [], "task_metrics": True, "listing_margin": 0.0, "max_run_duration": 3600.0}
    collector = JobsCollector(SimpleNamespace(client=client), settings_for("jobs", **options), 3600, lambda: 1e9)
    store = MetricStore()
    for _ in range(2):
        cycle = run_cycle(collector, store)
        assert 0 <= cycle.malformed <= len(jobs) + 2 * len(runs) + len(runs) + 1
    assert_sane(store)


@FAST
@given(clusters=st.lists(records(CLUSTER_KEYS), max_size=5), terminated=st.lists(records(CLUSTER_KEYS), max_size=3),
       events=st.lists(st.fixed_dictionaries({"timestamp": values, "type": values}), max_size=5))
def test_clusters_collector_survives_garbage(clusters, terminated, events):
    def listing(filter_by=None, **kw):
        states = [getattr(s, "value", s) for s in (filter_by.cluster_states or [])]
        return iter(Obj(c) for c in (terminated if states == ["TERMINATED"] else clusters))

    client = SimpleNamespace(clusters=SimpleNamespace(
        list=listing, get=lambda cluster_id: Obj(terminated[0] if terminated else {}),
        events=lambda cluster_id, **kw: iter(SimpleNamespace(**e) for e in events)))
    collector = ClustersCollector(SimpleNamespace(client=client),
                                  settings_for("clusters", events=True, events_max_age=0.0), 3600, lambda: 1e9)
    store = MetricStore()
    for _ in range(2):
        run_cycle(collector, store)
    assert_sane(store)


@FAST
@given(warehouses=st.lists(records(WAREHOUSE_KEYS), max_size=5))
def test_warehouses_collector_survives_garbage(warehouses):
    client = SimpleNamespace(warehouses=SimpleNamespace(list=lambda: iter(Obj(w) for w in warehouses)))
    collector = WarehousesCollector(SimpleNamespace(client=client), settings_for("warehouses", include=[], exclude=[]),
                                    3600, lambda: 1e9)
    cycle = run_cycle(collector, MetricStore())
    assert cycle.malformed <= len(warehouses)


def test_a_malformed_run_is_skipped_once_and_the_good_ones_count():
    good = {"run_id": 1, "job_id": 7, "start_time": 1e12, "end_time": 1e12 + 5000,
            "state": {"life_cycle_state": "TERMINATED", "result_state": "SUCCESS"}, "trigger": "PERIODIC"}
    bad = {"run_id": 2, "job_id": 7, "start_time": "yesterday", "end_time": 3}
    client = SimpleNamespace(jobs=SimpleNamespace(
        list=lambda limit=100: iter([]), list_runs=lambda limit=25, active_only=False, **kw:
        iter([] if active_only else [Obj(good), Obj(bad)]), get_run=lambda run_id: Obj(good)))
    options = {"include": [], "exclude": [], "task_metrics": False, "listing_margin": 0.0, "max_run_duration": 3600.0}
    collector = JobsCollector(SimpleNamespace(client=client), settings_for("jobs", **options), 3600, lambda: 1e9)
    store = MetricStore()
    cycle = run_cycle(collector, store)
    assert cycle.malformed == 1 and cycle.first_malformed.startswith("run: ValueError"), cycle.first_malformed
    assert store.value("databricks_job_runs_total", workspace_id="1", job_id="7", result_state="SUCCESS",
                       trigger="PERIODIC") == 1
