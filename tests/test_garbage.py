"""Garbage in: property-based tests feed malformed and unexpected payloads to the collectors' parsing. Nothing may
escape as a crash; bad items are skipped and counted once each, the cycle still commits, counters stay sane."""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from decimal import Decimal
from types import SimpleNamespace


from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from databricks_exporter.collectors.clusters import ClustersCollector
from databricks_exporter.collectors.custom import query_from_config
from databricks_exporter.collectors.jobs import JobsCollector
from databricks_exporter.collectors.tables import WatchedSchema
from databricks_exporter.collectors.warehouses import WarehousesCollector
from databricks_exporter import metrics as m
from databricks_exporter.config import CollectorSettings
from databricks_exporter.cycle import Cycle
from databricks_exporter.store import MetricStore
from databricks_exporter.sources.rest import RestSource

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
# caplog is shared by the examples of one test; each example clears it first.
WITH_LOGS = settings(FAST, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@FAST
@given(jobs=st.lists(records(["job_id", "settings"]), max_size=4), runs=st.lists(records(RUN_KEYS), max_size=6),
       single=records(RUN_KEYS))
def test_jobs_collector_survives_garbage(jobs, runs, single):
    client = SimpleNamespace(jobs=SimpleNamespace(
        list=lambda limit=100: iter(Obj(j) for j in jobs),
        list_runs=lambda limit=25, **kw: iter(Obj(r) for r in runs),
        get_run=lambda run_id: Obj(single)))
    options = {"include": [], "exclude": [], "task_metrics": True, "listing_margin": 0.0, "max_run_duration": 3600.0}
    collector = JobsCollector(SimpleNamespace(rest=RestSource(client)), settings_for("jobs", **options), 3600, lambda: 1e9)
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
        events=lambda cluster_id, **kw: iter(Obj(e) for e in events)))
    collector = ClustersCollector(SimpleNamespace(rest=RestSource(client)),
                                  settings_for("clusters", events=True, events_max_age=0.0), 3600, lambda: 1e9)
    store = MetricStore()
    for _ in range(2):
        run_cycle(collector, store)
    assert_sane(store)


@FAST
@given(warehouses=st.lists(records(WAREHOUSE_KEYS), max_size=5))
def test_warehouses_collector_survives_garbage(warehouses):
    client = SimpleNamespace(warehouses=SimpleNamespace(list=lambda: iter(Obj(w) for w in warehouses)))
    collector = WarehousesCollector(SimpleNamespace(rest=RestSource(client)), settings_for("warehouses", include=[], exclude=[]),
                                    3600, lambda: 1e9)
    cycle = run_cycle(collector, MetricStore())
    assert cycle.malformed <= len(warehouses)


def test_a_malformed_run_is_skipped_once_and_the_good_ones_count():
    good = {"run_id": 1, "job_id": 7, "start_time": 1e12, "end_time": 1e12 + 5000,
            "state": {"life_cycle_state": "TERMINATED", "result_state": "SUCCESS"}, "trigger": "PERIODIC"}
    bad = {"run_id": 2, "job_id": 7, "start_time": "yesterday", "end_time": 3}
    # Job 7 is listed: a run of a job not in jobs/list would count as a one-time run.
    client = SimpleNamespace(jobs=SimpleNamespace(
        list=lambda limit=100: iter([Obj({"job_id": 7, "settings": {"name": "etl"}})]),
        list_runs=lambda limit=25, active_only=False, **kw:
        iter([] if active_only else [Obj(good), Obj(bad)]), get_run=lambda run_id: Obj(good)))
    options = {"include": [], "exclude": [], "task_metrics": False, "listing_margin": 0.0, "max_run_duration": 3600.0}
    collector = JobsCollector(SimpleNamespace(rest=RestSource(client)), settings_for("jobs", **options), 3600, lambda: 1e9)
    store = MetricStore()
    cycle = run_cycle(collector, store)
    assert cycle.malformed == 1 and cycle.first_malformed.startswith("run: ValueError"), cycle.first_malformed
    assert store.value("databricks_job_runs_total", workspace_id="1", job_id="7", result_state="SUCCESS",
                       trigger="PERIODIC") == 1


# --- the SQL-fed collectors: query history, billing rows, node timeline rows ---------------------------------------

QUERY_KEYS = ["query_id", "status", "query_start_time_ms", "query_end_time_ms", "warehouse_id", "statement_type",
              "duration", "metrics", "rows_produced", "endpoint_id"]
QUERY_METRIC_KEYS = ["total_time_ms", "read_bytes", "spill_to_disk_bytes", "rows_read_count", "rows_produced_count",
                     "result_from_cache", "provisioning_queue_start_timestamp", "overloading_queue_start_timestamp",
                     "query_compilation_start_timestamp"]
BILLING_KEYS = ["workspace_id", "usage_date", "sku_name", "billing_origin_product", "usage_unit", "currency_code",
                "job_id", "warehouse_id", "pipeline_id", "tag_0", "tag_1", "usage_quantity", "list_cost"]
NODE_KEYS = ["cluster_id", "driver", "end_time", "nodes", "cpu_percent", "mem_used_percent", "mem_swap_percent",
             "disk_free_bytes", "network_received_bytes", "network_sent_bytes"]
NOW = 1_790_000_000.0
# Result rows carry what the connector returns (dates, datetimes, decimals) besides JSON-ish garbage.
cells = values | st.dates() | st.datetimes() | st.decimals(allow_nan=True, allow_infinity=True) | \
    st.floats(0, 100) | st.sampled_from(["FINISHED", "FAILED", "RUNNING", "USD", "c1", "c2", "2026-09-21"])


def rows(keys: list[str]):
    return st.dictionaries(st.sampled_from(keys), cells, max_size=len(keys)) | \
        st.fixed_dictionaries({k: cells for k in keys})


def queries_payload():
    metrics = st.dictionaries(st.sampled_from(QUERY_METRIC_KEYS), cells, max_size=4)
    return st.lists(rows(QUERY_KEYS) | st.fixed_dictionaries(
        {"query_id": st.text(min_size=1, max_size=4), "status": st.sampled_from(["FINISHED", "RUNNING", "FAILED"]),
         "query_start_time_ms": st.integers(0, int(NOW * 1000)), "metrics": metrics, "warehouse_id": cells}),
        max_size=6)


def sql_collector(name: str, answer, running=()):
    """A SQL collector over a stand-in SQL source answering `answer(statement)`, on a workspace whose running
    clusters are `running`."""
    from sql_helpers import collector

    sql = SimpleNamespace(configured=True, warehouse_id="w", query=lambda statement, _name: answer(statement),
                          warehouse_state=lambda: "RUNNING", record_skip=lambda _name: None)
    clusters = SimpleNamespace(list=lambda filter_by=None, **kw: iter(Obj({"cluster_id": c}) for c in running))
    workspace = SimpleNamespace(rest=RestSource(SimpleNamespace(clusters=clusters)), sql=sql, workspace_id="1",
                                settings=SimpleNamespace(name="ws", index=0))
    return collector(name, workspace, lambda: NOW, lookback=3600)


def assert_not_logged_per_item(caplog, cycles: list[Cycle]) -> None:
    """The engine logs the malformed items once per cycle; the collectors themselves say nothing per item."""
    if any(c.malformed for c in cycles):
        assert not [r for r in caplog.records if r.name.startswith("databricks_exporter.collectors")
                    and r.levelno >= logging.WARNING], [r.getMessage() for r in caplog.records]


@WITH_LOGS
@given(listed=queries_payload(), by_id=queries_payload())
def test_queries_collector_survives_garbage(listed, by_id, caplog):
    def history(filter_by=None, include_metrics=None, max_results=None, page_token=None):
        page = by_id if filter_by is not None and filter_by.statement_ids else listed
        return SimpleNamespace(res=[Obj(q) for q in page], next_page_token=None, has_next_page=False)

    from databricks_exporter.collectors.queries import QueriesCollector
    client = SimpleNamespace(query_history=SimpleNamespace(list=history))
    options = {"listing_margin": 60.0, "max_query_duration": 7200.0}
    collector = QueriesCollector(SimpleNamespace(rest=RestSource(client)), settings_for("queries", **options), 3600,
                                 lambda: NOW)
    store = MetricStore()
    caplog.clear()
    cycles = [run_cycle(collector, store) for _ in range(2)]
    for cycle in cycles:
        assert 0 <= cycle.malformed <= len(listed) + len(by_id)
    assert_sane(store)
    assert_not_logged_per_item(caplog, cycles)


@WITH_LOGS
@given(billing=st.lists(rows(BILLING_KEYS), max_size=6), latest=st.lists(rows(["latest_end_time"]), max_size=2))
def test_billing_collector_survives_garbage(billing, latest, caplog):
    collector = sql_collector("billing", lambda statement: latest if "MAX(usage_end_time)" in statement else billing)
    store = MetricStore()
    caplog.clear()
    cycles = [run_cycle(collector, store) for _ in range(2)]
    for cycle in cycles:
        assert 0 <= cycle.malformed <= len(billing) + 1
        for samples in cycle.gauges.values():
            assert all(math.isfinite(value) for value in samples.values())
    assert_not_logged_per_item(caplog, cycles)


@WITH_LOGS
@given(timeline=st.lists(rows(NODE_KEYS) | st.fixed_dictionaries(
    {"cluster_id": st.sampled_from(["c1", "c2"]), "driver": st.booleans(),
     "end_time": st.datetimes(dt.datetime(2026, 9, 21, 13), dt.datetime(2026, 9, 21, 14, 13)),
     "cpu_percent": cells, "mem_used_percent": cells, "mem_swap_percent": cells,
     "network_received_bytes": cells, "network_sent_bytes": cells}), max_size=8))
def test_utilization_collector_survives_garbage(timeline, caplog):
    collector = sql_collector("utilization", lambda statement: timeline, running=("c1", "c2"))
    store = MetricStore()
    caplog.clear()
    cycles = [run_cycle(collector, store) for _ in range(2)]
    for cycle in cycles:
        assert 0 <= cycle.malformed <= len(timeline)
        for samples in cycle.gauges.values():
            assert all(math.isfinite(value) for value in samples.values())
    assert_sane(store)
    assert_not_logged_per_item(caplog, cycles)


def test_malformed_sql_rows_are_skipped_once_each_and_the_good_ones_count():
    good_query = {"query_id": "q1", "status": "FINISHED", "query_start_time_ms": NOW * 1000 - 5000,
                  "query_end_time_ms": NOW * 1000 - 1000, "warehouse_id": "w1", "statement_type": "SELECT",
                  "metrics": {"read_bytes": 100}}
    bad_query = {"query_id": "q2", "status": "FINISHED", "query_start_time_ms": "soon", "warehouse_id": "w1"}
    # One NaN would stick to the counter for good.
    nan_query = {**good_query, "query_id": "q3", "metrics": {"read_bytes": Decimal("NaN")}}
    client = SimpleNamespace(query_history=SimpleNamespace(list=lambda **kw: SimpleNamespace(
        res=[Obj(good_query), Obj(bad_query), Obj(nan_query)], next_page_token=None, has_next_page=False)))
    from databricks_exporter.collectors.queries import QueriesCollector
    queries = QueriesCollector(SimpleNamespace(rest=RestSource(client)), settings_for(
        "queries", listing_margin=60.0, max_query_duration=7200.0), 3600, lambda: NOW)
    store = MetricStore()
    cycle = run_cycle(queries, store)
    assert cycle.malformed == 2 and cycle.first_malformed.startswith("query: ValueError"), cycle.first_malformed
    assert store.value("databricks_query_read_bytes_total", workspace_id="1", warehouse_id="w1") == 100
    assert store.value("databricks_queries_total", workspace_id="1", warehouse_id="w1", status="FINISHED",
                       statement_type="SELECT") == 1

    day = dt.date.fromtimestamp(NOW)
    billing_rows = [{"workspace_id": "1", "usage_date": day, "sku_name": "JOBS", "billing_origin_product": "JOBS",
                     "usage_unit": "DBU", "currency_code": "USD", "usage_quantity": Decimal("2.5"),
                     "list_cost": Decimal("1.5")},
                    {"workspace_id": "1", "usage_date": day, "sku_name": "JOBS", "usage_quantity": Decimal("NaN")},
                    {"workspace_id": "1", "usage_date": 20260921, "sku_name": "JOBS", "usage_quantity": 1}]
    billing = sql_collector("billing", lambda statement: [] if "MAX(" in statement else billing_rows)
    cycle = run_cycle(billing, MetricStore())
    assert cycle.malformed == 2
    usage = {values: value for values, value in cycle.gauges[m.BILLING_USAGE].items()}
    assert usage == {("1", "JOBS", "JOBS", "DBU", "day"): 2.5, ("1", "JOBS", "JOBS", "DBU", "month"): 2.5}

    end = dt.datetime.fromtimestamp(NOW - 120, dt.timezone.utc)
    timeline = [{"cluster_id": "c1", "driver": True, "end_time": end, "cpu_percent": 50, "mem_used_percent": 20,
                 "mem_swap_percent": 0, "network_received_bytes": 10, "network_sent_bytes": 5},
                {"cluster_id": "c1", "driver": False, "end_time": end, "cpu_percent": 50, "mem_used_percent": 20,
                 "mem_swap_percent": 0, "network_received_bytes": -10, "network_sent_bytes": 5}]
    store = MetricStore()
    cycle = run_cycle(sql_collector("utilization", lambda statement: timeline, running=("c1",)), store)
    assert cycle.malformed == 1
    assert store.value("databricks_cluster_network_received_bytes_total", workspace_id="1", cluster_id="c1",
                       node_role="driver") == 10
    assert store.value("databricks_cluster_network_received_bytes_total", workspace_id="1", cluster_id="c1",
                       node_role="worker") is None


DETAIL_KEYS = ["name", "lastModified", "numFiles", "sizeInBytes", "createdAt", "format"]
HISTORY_KEYS = ["version", "timestamp", "operation", "operationParameters"]


@WITH_LOGS
@given(detail=st.lists(rows(DETAIL_KEYS) | st.fixed_dictionaries(
    {"lastModified": st.datetimes(dt.datetime(2026, 9, 1), dt.datetime(2026, 9, 21)), "numFiles": cells,
     "sizeInBytes": cells}), min_size=1, max_size=2),
       history=st.lists(rows(HISTORY_KEYS) | st.fixed_dictionaries(
           {"timestamp": st.datetimes(dt.datetime(2026, 9, 1), dt.datetime(2026, 9, 21)),
            "operation": st.sampled_from(["WRITE", "OPTIMIZE", "VACUUM END", "MERGE"]) | cells}), max_size=5),
       listed=st.lists(rows(["tableName", "isTemporary", "database"]), max_size=3))
def test_tables_collector_survives_garbage(detail, history, listed, caplog):
    def answer(statement):
        return {"SHOW": listed, "DESCRIBE DETAIL": detail, "DESCRIBE HISTORY": history}[
            next(k for k in ("SHOW", "DESCRIBE DETAIL", "DESCRIBE HISTORY") if statement.startswith(k))]

    collector = sql_collector("tables", answer)
    collector.explicit.update({"main.sales.orders": 3600.0, "main.sales.customers": None})
    collector.schemas.append(WatchedSchema("main.bronze"))
    store = MetricStore()
    caplog.clear()
    cycles = [run_cycle(collector, store) for _ in range(2)]
    for cycle in cycles:
        assert cycle.failures == []
        for samples in cycle.gauges.values():
            assert all(math.isfinite(value) for value in samples.values())
    assert_not_logged_per_item(caplog, cycles)


@FAST
@given(result=st.lists(rows(["value", "label", "other"]), max_size=4))
def test_custom_collector_survives_garbage(result):
    collector = sql_collector("custom", lambda statement: result)
    collector.queries.append(query_from_config(
        0, {"name": "garbage", "sql": "SELECT 1", "value_column": "value", "label_columns": ["label"]},
        lambda message, key: ValueError(message)))
    store = MetricStore()
    for _ in range(2):
        cycle = run_cycle(collector, store)
        served = cycle.gauges.get(collector.queries[0].metric, {})
        # Either the query's series, each a number, or none and the query counted as failed.
        assert (served and not cycle.failures) or (not served and len(cycle.failures) <= 1)
        assert all(isinstance(value, float) for value in served.values())
