"""The utilization collector against the simulated workspace: each running cluster's latest complete minute, averaged
over its driver and its workers, equals what system.compute.node_timeline holds; network bytes are counted minute by
minute exactly once across overlapping cycles; and with wake_warehouse: false a stopped warehouse stays stopped while
the SQL collectors keep their last values, marked stale."""

from __future__ import annotations

from collections import defaultdict

import pytest
from databricks.sdk.service.compute import ListClustersFilterBy, State
from sql_helpers import (  # noqa: F401 (clock and server are fixtures)
    clock, collector, connected, run_cycle, samples, sdk, server, ticking, warehouse_in,
)

from databricks_exporter.store import MetricStore

pytestmark = pytest.mark.integration


def series(store: MetricStore, name: str) -> dict[tuple, float]:
    return {tuple(sorted(labels.items())): value for labels, value in samples(store, name)}


def node_rows(server, since_s: float) -> list[dict]:
    """Every visible node_timeline row that ended after since_s, read straight from the simulator's tables."""
    tables = server.sql.tables
    with server.sql._engine_lock:
        tables.refresh(server.workspace.now_ms())
        cursor = tables.con.execute(
            "SELECT cluster_id, driver, epoch_ms(end_time) / 1000.0 AS end_s, cpu_user_percent, cpu_system_percent, "
            "mem_used_percent, mem_swap_percent, list_min(map_values(disk_free_bytes_per_mount_point)) AS disk, "
            "network_received_bytes AS rx, network_sent_bytes AS tx FROM sim_system.compute.node_timeline "
            "WHERE epoch_ms(end_time) / 1000.0 > ?", [since_s])
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]


def test_gauges_average_the_latest_minute_of_each_running_cluster(server, clock):
    workspace = connected(server, warehouse_in(server, "RUNNING").id)
    store = MetricStore()
    run_cycle(collector("utilization", workspace, clock), store)
    running = {c.cluster_id for c in sdk(server).clusters.list(filter_by=ListClustersFilterBy(
        cluster_states=[State.RUNNING, State.RESIZING]))}
    groups: dict[tuple, dict[float, list]] = defaultdict(lambda: defaultdict(list))
    for row in node_rows(server, clock() - 900):
        groups[(row["cluster_id"], "driver" if row["driver"] else "worker")][row["end_s"]].append(row)
    expected = {}
    for (cluster_id, role), minutes in groups.items():
        if cluster_id not in running:
            continue
        latest = minutes[max(minutes)]
        n = len(latest)
        expected[(cluster_id, role)] = {
            "cpu": sum(r["cpu_user_percent"] + r["cpu_system_percent"] for r in latest) / n / 100,
            "mem": sum(r["mem_used_percent"] for r in latest) / n / 100,
            "swap": sum(r["mem_swap_percent"] for r in latest) / n / 100,
            "disk": sum(r["disk"] for r in latest) / n}
    assert len({c for c, _ in expected}) >= 5
    for name, key in (("databricks_cluster_cpu_utilization_ratio", "cpu"),
                      ("databricks_cluster_memory_utilization_ratio", "mem"),
                      ("databricks_cluster_swap_utilization_ratio", "swap"), ("databricks_cluster_disk_free_bytes",
                                                                             "disk")):
        got = {(lab["cluster_id"], lab["node_role"]): v for lab, v in samples(store, name)}
        assert got == {k: pytest.approx(v[key], rel=1e-9, abs=1e-12) for k, v in expected.items()}, name
    assert all(0 <= v <= 1 for _, v in samples(store, "databricks_cluster_cpu_utilization_ratio"))
    # The idle all-purpose clusters an alert looks for are there, and so are the busy ones.
    cpu = [v for _, v in samples(store, "databricks_cluster_cpu_utilization_ratio")]
    assert min(cpu) < 0.2 and max(cpu) > 0.8
    workspace.sql.close()


def test_network_bytes_are_counted_once_per_minute_across_cycles(server, clock):
    workspace = connected(server, warehouse_in(server, "RUNNING").id)
    store = MetricStore()
    instance = collector("utilization", workspace, clock, lookback=600)
    counting_since = clock() - 600
    for _ in range(4):                  # cycles 4 minutes apart read overlapping 15-minute windows
        run_cycle(instance, store)
        clock.advance(240)
    running = {c.cluster_id for c in sdk(server).clusters.list(filter_by=ListClustersFilterBy(
        cluster_states=[State.RUNNING, State.RESIZING]))}
    clock.advance(-240)                 # back to the moment of the last cycle, for reading the rows it saw
    rx: dict[tuple, float] = defaultdict(float)
    for row in node_rows(server, counting_since):
        rx[(row["cluster_id"], "driver" if row["driver"] else "worker")] += row["rx"]
    clock.advance(240)
    got = {(lab["cluster_id"], lab["node_role"]): v
           for lab, v in samples(store, "databricks_cluster_network_received_bytes_total")}
    # Clusters that stopped running keep their counters for the retention (7 days), so a restart goes on from them.
    assert got and set(got) <= set(rx) and {c for c, _ in got} & running
    # A cluster that ran the whole time has every minute since counting began, each once.
    whole = [k for k in got if k in rx and rx[k] == got[k]]
    assert len(whole) >= 3
    for key, value in got.items():
        assert value <= rx[key]
    workspace.sql.close()


def test_wake_warehouse_false_keeps_a_stopped_warehouse_stopped(server, clock):
    w = sdk(server)
    warehouse = warehouse_in(server, "STOPPED", serverless=True)
    store = MetricStore()
    workspace = connected(server, warehouse.id, store)

    # Awake first: the warehouse starts for the query and the metrics are fresh.
    billing = collector("billing", workspace, clock)
    utilization = collector("utilization", workspace, clock)
    with ticking(clock, step=0.5):
        run_cycle(billing, store)
        run_cycle(utilization, store)
    assert w.warehouses.get(warehouse.id).state.value == "RUNNING"
    fresh = series(store, "databricks_billing_cost")
    assert fresh and series(store, "databricks_exporter_sql_data_stale") == {
        (("collector", "billing"), ("workspace_id", workspace.workspace_id)): 0.0,
        (("collector", "utilization"), ("workspace_id", workspace.workspace_id)): 0.0}
    refreshed = series(store, "databricks_exporter_sql_last_refresh_timestamp_seconds")

    # Left alone, it stops on its own; from now on the collectors must not wake it.
    clock.advance(warehouse.auto_stop_mins * 60 + 120)
    assert w.warehouses.get(warehouse.id).state.value == "STOPPED"
    sent = len(server.sql.executed)
    for instance in (billing, utilization):
        instance.settings.options["wake_warehouse"] = False
    for _ in range(3):
        run_cycle(billing, store)
        run_cycle(utilization, store)
        clock.advance(60)
    assert w.warehouses.get(warehouse.id).state.value == "STOPPED"
    assert len(server.sql.executed) == sent                     # not one statement reached a warehouse
    skipped = {lab["collector"]: v for lab, v in samples(store, "databricks_exporter_sql_queries_total")
               if lab["outcome"] == "skipped"}
    assert skipped == {"billing": 3, "utilization": 3}
    assert set(series(store, "databricks_exporter_sql_data_stale").values()) == {1.0}
    assert series(store, "databricks_billing_cost") == fresh     # the last refresh's values, kept
    assert series(store, "databricks_exporter_sql_last_refresh_timestamp_seconds") == refreshed
    assert "not started" in billing.check() and w.warehouses.get(warehouse.id).state.value == "STOPPED"
    workspace.sql.close()
