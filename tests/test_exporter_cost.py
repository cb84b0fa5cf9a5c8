"""What the exporter itself costs: the warehouse time of its SQL statements priced in DBUs at the rate of the
warehouse's size (the simulator's own rate table), and the footprint line of the landing page."""

from __future__ import annotations

import pytest
from sql_helpers import (  # noqa: F401 (clock and server are fixtures)
    FakeClock, by, clock, collector, connected, run_cycle, server, warehouse_in,
)

from databricks_exporter.store import MetricStore
from databricks_exporter.web import footprint
from databricks_sim.billing import WAREHOUSE_DBU

pytestmark = pytest.mark.integration


def test_sql_statements_are_priced_at_the_warehouses_dbu_rate_per_collector(server, clock):
    warehouse = warehouse_in(server, "RUNNING")
    store = MetricStore()
    workspace = connected(server, warehouse.id, store)
    try:
        for name in ("job_costs", "warehouse_usage"):
            run_cycle(collector(name, workspace, clock), store)
    finally:
        workspace.sql.close()
    dbus = by(store, "databricks_exporter_sql_estimated_dbus_total", "collector")
    assert set(dbus) == {"job_costs", "warehouse_usage"}
    (family,) = [f for f in store.families() if f.metric.name == "databricks_exporter_sql_query_duration_seconds"]
    seconds = {dict(zip(family.metric.labels, values))["collector"]: histogram.sum
               for values, histogram in family.samples}
    for name, value in dbus.items():
        assert value == pytest.approx(seconds[name] * WAREHOUSE_DBU[warehouse.cluster_size] / 3600, rel=1e-9)
        assert value > 0

    totals = footprint(store)
    statements = sum(by(store, "databricks_exporter_sql_queries_total", "collector", outcome="success").values())
    assert totals["statements"] == statements == 6          # three statements a cycle each
    assert totals["dbus"] == pytest.approx(sum(dbus.values()))
    assert totals["sql_seconds"] == pytest.approx(sum(seconds.values()))
    assert totals["requests"] >= 2 and totals["throttled"] == 0     # warehouses get and list, at least
