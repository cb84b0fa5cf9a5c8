"""The exporter's SQL source against the simulated workspace through the unmodified databricks-sql-connector: the
SDK's credentials (PAT and OAuth M2M) sign SQL too, the CA bundle is honoured, one connection is reused and rebuilt
after a failure, every statement is counted and timed; and every SQL statement the exporter sends runs there."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest
from sql_helpers import (  # noqa: F401 (clock and server are fixtures)
    clock, collector, connected, run_cycle, samples, server, warehouse_in,
)

from databricks_exporter import metrics as m
from databricks_exporter.collectors import COLLECTORS
from databricks_exporter.collectors.system_tables import SystemTableCollector
from databricks_exporter.sources.sql import SqlSource, literal
from databricks_exporter.sources.errors import StatementRejected
from databricks_exporter.store import MetricStore

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def warehouse(server):
    return warehouse_in(server, "RUNNING")


def value(store: MetricStore, name: str, **labels) -> float:
    return sum(v.count if hasattr(v, "count") else v for lab, v in samples(store, name)
               if all(lab.get(k) == val for k, val in labels.items()))


def test_pat_credentials_from_the_sdk_run_sql_and_every_statement_is_counted(server, warehouse):
    store = MetricStore()
    workspace = connected(server, warehouse.id, store)
    source = workspace.sql
    assert isinstance(source, SqlSource) and source.warehouse_running()
    assert source.query("SELECT 1 AS one", "test") == [{"one": 1}]
    with pytest.raises(StatementRejected):
        source.query("SELECT * FROM system.billing.missing", "test")
    assert value(store, "databricks_exporter_sql_queries_total", collector="test", outcome="success") == 1
    assert value(store, "databricks_exporter_sql_queries_total", collector="test", outcome="error") == 1
    assert value(store, "databricks_exporter_sql_query_duration_seconds", collector="test") == 2
    source.close()


def test_oauth_m2m_credentials_from_the_sdk_run_sql(server, warehouse):
    workspace = connected(server, warehouse.id, client_id=server.client_id, client_secret=server.client_secret)
    assert workspace.sql.query("SELECT 'm2m' AS auth", "test") == [{"auth": "m2m"}]
    workspace.sql.close()


def test_one_connection_is_reused_and_rebuilt_after_the_server_forgets_it(server, warehouse):
    state = server._thrift.state
    workspace = connected(server, warehouse.id)
    before = state.opened
    for i in range(5):
        assert workspace.sql.query(f"SELECT {i} AS i", "test") == [{"i": i}]
    assert state.opened == before + 1
    with state.lock:
        state.sessions.clear()              # e.g. the warehouse restarted: the session handle is gone
    assert workspace.sql.query("SELECT 9 AS i", "test") == [{"i": 9}]
    assert state.opened == before + 2
    workspace.sql.close()


def test_without_a_warehouse_the_sql_collectors_have_nothing_to_read(server, clock):
    workspace = connected(server, None)
    store = MetricStore()
    for name in ("billing", "utilization"):
        instance = collector(name, workspace, clock)
        cycle = run_cycle(instance, store)
        assert not cycle.gauges and "no warehouse_id" in instance.check()


def test_literals_escape_the_databricks_way(server, warehouse):
    workspace = connected(server, warehouse.id)
    tricky = "it's a \\ back'slash"
    assert workspace.sql.query(f"SELECT {literal(tricky)} AS s", "test") == [{"s": tricky}]
    workspace.sql.close()


def test_every_sql_statement_the_exporter_sends_runs_on_the_simulator(server, warehouse, clock):
    """Each statement builder of each SQL collector, in every variant it has, runs and returns rows; a new builder
    that this test does not know about fails it."""
    import datetime as dt

    workspace = connected(server, warehouse.id)
    today = dt.datetime.fromtimestamp(clock(), dt.timezone.utc).date()
    billing = collector("billing", workspace, clock)
    utilization = collector("utilization", workspace, clock)
    tables = collector("tables", workspace, clock)
    job_costs = collector("job_costs", workspace, clock)
    usage = collector("warehouse_usage", workspace, clock)
    reconciliation = collector("reconciliation", workspace, clock)
    audit = collector("audit", workspace, clock)
    serving_usage = collector("serving_usage", workspace, clock)
    maintenance = collector("predictive_optimization", workspace, clock)
    ws = workspace.workspace_id
    hour_ago = clock() - 3600
    statements = {
        "billing.billing_statement(workspace)": billing.billing_statement(today.replace(day=1), today, ws),
        "billing.billing_statement(account)": billing.billing_statement(today.replace(day=1), today, None),
        "billing.latest_statement": billing.latest_statement(ws, today - dt.timedelta(days=7)),
        "billing.check_statement": billing.check_statement(),
        "utilization.utilization_statement": utilization.utilization_statement(ws, clock() - 900),
        "utilization.check_statement": utilization.check_statement(),
        "tables.show_tables_statement": tables.show_tables_statement("main.sales"),
        "tables.detail_statement": tables.detail_statement("main.sales.orders"),
        "tables.history_statement": tables.history_statement("main.sales.orders"),
        "job_costs.cost_statement": job_costs.cost_statement(ws, today.replace(day=1), today),
        "job_costs.all_purpose_statement": job_costs.all_purpose_statement(ws, today - dt.timedelta(days=1), today),
        "job_costs.per_run_statement": job_costs.per_run_statement(ws, clock() - 86400, clock() - 43200),
        "job_costs.check_statement": job_costs.check_statement(),
        "warehouse_usage.events_statement": usage.events_statement(ws, clock() - 7200, clock() - 3600),
        "warehouse_usage.queries_statement": usage.queries_statement(ws, clock() - 7200, clock() - 3600),
        "warehouse_usage.prices_statement": usage.prices_statement(ws, clock() - 7200),
        "warehouse_usage.check_statement": usage.check_statement(),
        "reconciliation.table_statement(jobs)": reconciliation.table_statement("jobs", ws, hour_ago - 3600, hour_ago),
        "reconciliation.table_statement(queries)": reconciliation.table_statement("queries", ws, hour_ago - 3600,
                                                                                  hour_ago),
        "reconciliation.check_statement": reconciliation.check_statement(),
        "audit.rows_statement": audit.rows_statement(clock() - 86400),
        "audit.check_statement": audit.check_statement(),
        "serving_usage.rows_statement": serving_usage.rows_statement(clock() - 86400),
        "serving_usage.check_statement": serving_usage.check_statement(),
        "predictive_optimization.rows_statement": maintenance.rows_statement(clock() - 3 * 86400),
        "predictive_optimization.check_statement": maintenance.check_statement(),
    }
    builders = {f"{name}.{attr}" for name, spec in COLLECTORS.items() if issubclass(spec, SystemTableCollector)
                for attr, member in inspect.getmembers(spec, inspect.isfunction) if attr.endswith("_statement")}
    assert builders == {key.split("(")[0] for key in statements}
    for key, statement in statements.items():
        rows = workspace.sql.query(statement, "test")
        assert rows, key
    account = workspace.sql.query(statements["billing.billing_statement(account)"], "test")
    assert {r["workspace_id"] for r in account} == {ws, str(int(ws) + 1)}     # the sibling workspace too
    workspace.sql.close()


@pytest.mark.parametrize("entry, key", [
    ({"warehouse_id": "not/a/warehouse"}, "workspaces[0].warehouse_id"),
    ({"tls_ca_bundle": "/nonexistent/ca.pem"}, "workspaces[0].tls_ca_bundle"),
])
def test_bad_sql_settings_are_refused_naming_file_and_key(tmp_path, entry, key):
    import yaml

    from databricks_exporter.config import ConfigError, load

    path = tmp_path / "c.yml"
    path.write_text(yaml.safe_dump({"workspaces": [{"host": "http://127.0.0.1:9", **entry}]}))
    with pytest.raises(ConfigError) as error:
        load(str(path), COLLECTORS)
    assert str(error.value).startswith(f"{path}: {key}: "), str(error.value)
    env = {"DATABRICKS_TOKEN": "x" * 10, "PATH": "/usr/bin:/bin"}
    if key.endswith("tls_ca_bundle"):       # and the exporter stops with exit code 2, as for any bad key
        result = subprocess.run([sys.executable, "-m", "databricks_exporter", "serve", "--config.file", str(path)],
                                env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 2 and str(path) in result.stderr and key in result.stderr, result.stderr


def test_the_duration_histogram_has_the_buckets_the_issue_asks_for():
    for metric in (m.SQL_QUERY_DURATION, m.QUERY_DURATION, m.QUERY_QUEUE_DURATION):
        assert metric.buckets[0] == 0.05 and metric.buckets[-1] == 3600 and {60, 300} <= set(metric.buckets)
