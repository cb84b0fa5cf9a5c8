"""The tables collector against the simulated workspace (real connector over HTTPS): DESCRIBE DETAIL and DESCRIBE
HISTORY read into size, files and the times of the last write, OPTIMIZE and VACUUM, equal to the simulator's
truth; schemas expanded with SHOW TABLES and filtered; unchanged tables not re-read; a stale table exceeding its
SLO; the small-files table; tables that cannot be described skipped and counted; and a bad tables configuration
refused naming the file and the key."""

from __future__ import annotations


import pytest
import yaml
from sql_helpers import (  # noqa: F401 (clock and server are fixtures)
    FakeClock, by, clock, collector, connected, only, run_cycle, samples, sql_server, warehouse_in,
)

from conftest import run_serve, wait_for
from test_integration import parse, total
from databricks_exporter.store import MetricStore

pytestmark = pytest.mark.integration

TABLE_METRICS = ("databricks_table_size_bytes", "databricks_table_files",
                 "databricks_table_last_modified_timestamp_seconds", "databricks_table_last_optimize_timestamp_seconds",
                 "databricks_table_last_vacuum_timestamp_seconds", "databricks_table_freshness_slo_seconds")
SMALL_FILE_BYTES = 32 * 1024 * 1024       # the DatabricksTableSmallFiles thresholds (prometheus/rules/recording.yml)
SMALL_FILES_MIN = 1000


@pytest.fixture
def world():
    """Its own simulator and clock: these tests move time and stop writers."""
    clock = FakeClock()
    server = sql_server(clock)
    workspace = connected(server, warehouse_in(server, "RUNNING").id)
    yield server, workspace, clock
    workspace.sql.close()
    server.shutdown()


def statements(server, prefix: str) -> list[str]:
    return [text for _, text in server.sql.executed if text.startswith(prefix)]


def test_every_table_metric_equals_the_truth(world):
    server, workspace, clock = world
    names = ["main.sales.orders", "main.processed.customer_data", "main.bronze.events"]
    store = MetricStore()
    run_cycle(collector("tables", workspace, clock, tables={n: {"max_staleness": "1h"} for n in names}), store)
    for name in names:
        truth = server.sql.table_truth(name)
        assert by(store, "databricks_table_size_bytes", "table")[name] == truth["size_bytes"]
        assert by(store, "databricks_table_files", "table")[name] == truth["num_files"]
        assert by(store, "databricks_table_last_modified_timestamp_seconds", "table")[name] == truth["last_write"]
        assert by(store, "databricks_table_freshness_slo_seconds", "table")[name] == 3600
        if truth["last_optimize"]:
            assert by(store, "databricks_table_last_optimize_timestamp_seconds", "table")[name] == truth["last_optimize"]
        if truth["last_vacuum"]:
            assert by(store, "databricks_table_last_vacuum_timestamp_seconds", "table")[name] == truth["last_vacuum"]
    # Every metric has a value for at least one table (bronze.events is never optimized nor vacuumed).
    assert all(samples(store, metric) for metric in TABLE_METRICS)
    assert "main.bronze.events" not in by(store, "databricks_table_last_optimize_timestamp_seconds", "table")
    # OPTIMIZE is maintenance: it does not count as a write, though it is the table's last commit.
    assert server.sql.table_truth("main.sales.orders")["last_optimize"] < clock()


def test_the_history_is_read_with_a_limit_and_only_when_the_table_changed(world):
    server, workspace, clock = world
    instance = collector("tables", workspace, clock, tables={"main.sales.orders": None,
                                                             "main.gold.daily_revenue": None}, history_limit=20)
    store = MetricStore()
    run_cycle(instance, store)
    history = statements(server, "DESCRIBE HISTORY")
    assert sorted(history) == ["DESCRIBE HISTORY `main`.`gold`.`daily_revenue` LIMIT 20",
                               "DESCRIBE HISTORY `main`.`sales`.`orders` LIMIT 20"]
    clock.advance(30)         # no commit in 30 s: DETAIL again, HISTORY not
    run_cycle(instance, store)
    assert len(statements(server, "DESCRIBE DETAIL")) == 4 and len(statements(server, "DESCRIBE HISTORY")) == 2
    clock.advance(90)         # orders is written (every 5 minutes) in the meantime, daily_revenue is not
    run_cycle(instance, store)
    assert statements(server, "DESCRIBE HISTORY")[2:] == ["DESCRIBE HISTORY `main`.`sales`.`orders` LIMIT 20"]
    assert by(store, "databricks_table_last_modified_timestamp_seconds", "table")["main.sales.orders"] == \
        server.sql.table_truth("main.sales.orders")["last_write"]


def test_the_stale_table_exceeds_its_slo_and_a_stopped_writer_makes_any_table_stale(world):
    server, workspace, clock = world
    slo = 1800
    instance = collector("tables", workspace, clock, schemas={"main.gold": {"max_staleness": "30m"}},
                         tables={"main.sales.orders": {"max_staleness": "30m"}})
    store = MetricStore()
    ages = []
    for step in range(10):
        run_cycle(instance, store)
        last = by(store, "databricks_table_last_modified_timestamp_seconds", "table")
        ages.append({name: clock() - value for name, value in last.items()})
        if step == 1:
            server.sql.stop_table_writes("main.sales.orders")
        clock.advance(240)    # within the warehouse's auto-stop: a stopped one would wait for a clock that stands
    revenue = [age["main.gold.daily_revenue"] for age in ages]
    orders = [age["main.sales.orders"] for age in ages]
    # Its writer's last write is at start + 4 minutes: from then on its age only grows, past the SLO.
    assert max(revenue[:2]) < slo < revenue[-1] and revenue[1:] == sorted(revenue[1:])
    assert max(orders[:2]) < 300 < slo < orders[-1]                           # fresh until its writer stopped
    assert by(store, "databricks_table_freshness_slo_seconds", "table") == {"main.gold.daily_revenue": slo,
                                                                       "main.sales.orders": slo}


def test_the_small_files_table_shows_many_small_files(world):
    _, workspace, clock = world
    store = MetricStore()
    run_cycle(collector("tables", workspace, clock, schemas={"main.bronze": None, "main.sales": None}), store)
    size, files = by(store, "databricks_table_size_bytes", "table"), by(store, "databricks_table_files", "table")
    average = {name: size[name] / files[name] for name in files}
    assert files["main.bronze.events"] >= SMALL_FILES_MIN and average["main.bronze.events"] < SMALL_FILE_BYTES
    assert average["main.sales.orders"] > SMALL_FILE_BYTES         # what the alert must leave alone


def test_schemas_are_expanded_and_filtered_and_named_tables_keep_their_own_slo(world):
    _, workspace, clock = world
    store = MetricStore()
    run_cycle(collector("tables", workspace, clock,
                        schemas={"main.raw": {"max_staleness": "2h"}, "main.processed": {"max_staleness": "2h"},
                                 "main.monitoring": {"exclude": ["quality"]}, "main.sales": {"include": ["^ord"]}},
                        tables={"main.raw.customer_data": {"max_staleness": "15m"}}), store)
    assert sorted(by(store, "databricks_table_files", "table")) == [
        "main.processed.customer_data", "main.raw.customer_data", "main.sales.orders"]
    assert by(store, "databricks_table_freshness_slo_seconds", "table") == {
        "main.processed.customer_data": 7200, "main.raw.customer_data": 900}


def test_tables_that_cannot_be_described_are_counted_and_do_not_fail_the_others(world, caplog):
    server, workspace, clock = world
    instance = collector("tables", workspace, clock, schemas={"main.hr": None},
                         tables={"main.sales.orders": None, "main.sales.dropped_last_week": None,
                                 "main.gold.daily_revenue": None})
    store = MetricStore()
    for _ in range(2):
        run_cycle(instance, store)
    assert by(store, "databricks_table_describe_errors_total", "table") == {
        "main.hr.salaries": 2, "main.sales.dropped_last_week": 2}
    assert sorted(by(store, "databricks_table_files", "table")) == ["main.gold.daily_revenue", "main.sales.orders"]
    warnings = [r.getMessage() for r in caplog.records if "cannot describe" in r.getMessage()]
    assert len(warnings) == 2 and any("INSUFFICIENT_PERMISSIONS" in w for w in warnings)      # once per table
    server.sql.drop_table("main.gold.daily_revenue")
    run_cycle(instance, store)
    assert sorted(by(store, "databricks_table_files", "table")) == ["main.sales.orders"]   # its series went
    assert by(store, "databricks_table_describe_errors_total", "table")["main.gold.daily_revenue"] == 1


def test_check_describes_the_configured_tables(world):
    _, workspace, clock = world
    seen = collector("tables", workspace, clock, schemas={"main.hr": None}, tables={"main.sales.orders": None}).check()
    assert seen.startswith("described 1 tables on warehouse ") and \
        seen.endswith("; could not describe main.hr.salaries"), seen


def test_the_exporter_serves_every_table_metric(tmp_path):
    from conftest import ExporterProcess

    server = sql_server()     # on the real clock, as the exporter runs
    exporter = None
    try:
        config = only("tables", server, warehouse_in(server, "RUNNING").id,
                      tables={"main.sales.orders": {"max_staleness": "1h"}, "main.gold.daily_revenue":
                              {"max_staleness": "30m"}}, schemas={"main.bronze": None})
        exporter = ExporterProcess(tmp_path, server, config).start()

        def served() -> list | None:
            samples = parse(exporter.metrics())
            return samples if {n for n, _, _ in samples} >= set(TABLE_METRICS) else None

        samples = wait_for(served, 60, what="every table metric on /metrics")
        assert total(samples, "databricks_table_files", table="main.bronze.events") >= SMALL_FILES_MIN
        assert total(samples, "databricks_exporter_collector_up", collector="tables") == 1
    finally:
        if exporter:
            exporter.kill()
        server.shutdown()


@pytest.mark.parametrize("tables, key, reason", [
    ({"tables": {"orders": None}}, "collectors.tables.tables[orders]", "catalog.schema.table"),
    ({"tables": {"main.sales.orders": {"max_staleness": "soon"}}},
     "collectors.tables.tables[main.sales.orders].max_staleness", "duration"),
    ({"tables": {"main.sales.orders": {"max_stale": "1h"}}}, "collectors.tables.tables[main.sales.orders].max_stale",
     "unknown key"),
    ({"tables": ["main.sales.orders"]}, "collectors.tables.tables", "expected a mapping"),
    ({"schemas": {"main": None}}, "collectors.tables.schemas[main]", "catalog.schema"),
    ({"schemas": {"main.sales": {"include": ["("]}}}, "collectors.tables.schemas[main.sales].include",
     "regular expression"),
    ({"history_limit": 0}, "collectors.tables.history_limit", "from 1 to 1000"),
])
def test_bad_tables_config_is_refused_naming_file_and_key(tmp_path, tables, key, reason):
    from databricks_exporter.collectors import COLLECTORS
    from databricks_exporter.config import ConfigError, load

    path = tmp_path / "c.yml"
    path.write_text(yaml.safe_dump({"collectors": {"tables": tables}, "workspaces": [{"host": "http://127.0.0.1:9"}]}))
    with pytest.raises(ConfigError) as error:
        load(str(path), COLLECTORS)
    assert str(error.value).startswith(f"{path}: {key}: ") and reason in str(error.value), str(error.value)


def test_bad_tables_config_stops_the_exporter_with_exit_code_2(tmp_path):
    path = tmp_path / "c.yml"
    path.write_text(yaml.safe_dump({"collectors": {"tables": {"tables": {"main.sales.orders": {"max_staleness":
                                                                                             "-5m"}}}}}))
    result = run_serve("--config.file", str(path))
    assert result.returncode == 2, result.stderr
    assert f"{path}: collectors.tables.tables[main.sales.orders].max_staleness:" in result.stderr
