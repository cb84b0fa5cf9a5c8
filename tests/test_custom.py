"""Custom SQL metrics against the simulated workspace (real connector over HTTPS): the example configuration
(examples/custom-metrics.yml in the package, which the demo runs and the docs link to) is valid and each of its
queries gives its series; queries run on their own intervals; a result that cannot be a metric fails its query,
clearly logged; a failing query takes its series away and the collector down in the running exporter; and a bad
query configuration is refused naming the file and the key."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from sql_helpers import (  # noqa: F401 (clock and server are fixtures)
    FakeClock, by, clock, collector, connected, only, run_cycle, server, sql_server, warehouse_in,
)

from conftest import ExporterProcess, require_binary, run_serve, wait_for
from databricks_exporter.cli import DEMO_COLLECTORS, EXAMPLE_CONFIG
from databricks_exporter.store import MetricStore
from test_integration import parse, total

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_QUERIES = DEMO_COLLECTORS["custom"]["queries"]
CHECKS = {"non_null_id", "valid_email", "positive_age"}


@pytest.fixture(scope="module")
def workspace(server):
    workspace = connected(server, warehouse_in(server, "RUNNING").id)
    yield workspace
    workspace.sql.close()


def test_the_example_the_demo_runs_is_a_valid_configuration(monkeypatch):
    from databricks_exporter.collectors import COLLECTORS
    from databricks_exporter.config import load

    monkeypatch.setenv("DATABRICKS_HOST", "https://example.cloud.databricks.com")
    settings = load(str(EXAMPLE_CONFIG), COLLECTORS)
    queries = settings.collectors["custom"].options["queries"]
    assert [q.metric.name for q in queries] == [
        "databricks_custom_data_quality_pass_ratio", "databricks_custom_reconciliation_rows",
        "databricks_custom_data_last_updated_timestamp_seconds", "databricks_custom_customer_rows_ingested_total"]
    assert [q.metric.type for q in queries] == ["gauge", "gauge", "gauge", "counter"]
    assert settings.collectors["tables"].options["tables"]["main.sales.orders"] == 3600


def test_the_docs_link_to_the_example_the_package_ships():
    """The example lives in the package (the demo reads it from any install); every link to it resolves to it."""
    linked = []
    for doc in (ROOT / "README.md", *(ROOT / "docs").glob("*.md")):
        for target in re.findall(r"\]\(([^)#]*custom-metrics\.yml)\)", doc.read_text()):
            linked.append((doc.name, (doc.parent / target).resolve()))
    assert {doc for doc, _ in linked} == {"README.md", "configuration.md"}, linked
    assert all(path == Path(str(EXAMPLE_CONFIG)).resolve() for _, path in linked), linked


def test_every_example_query_gives_its_series_on_the_simulator(server, workspace, clock):
    store = MetricStore()
    cycle = run_cycle(collector("custom", workspace, clock, queries=EXAMPLE_QUERIES), store)
    assert cycle.failures == []
    pass_ratio = by(store, "databricks_custom_data_quality_pass_ratio", "check_name")
    assert set(pass_ratio) == CHECKS and all(0.9 < ratio < 1 for ratio in pass_ratio.values())
    rows = by(store, "databricks_custom_reconciliation_rows", "side")
    assert set(rows) == {"source", "target"} and rows["source"] > 1000
    assert abs(1 - rows["target"] / rows["source"]) < 0.05          # a write or two behind at most
    (last_updated,) = by(store, "databricks_custom_data_last_updated_timestamp_seconds").values()
    assert clock() - 15 * 60 < last_updated <= clock()
    (ingested,) = by(store, "databricks_custom_customer_rows_ingested_total").values()
    direct = workspace.sql.query("SELECT COUNT(*) AS n FROM main.raw.customer_data", "test")[0]["n"]
    assert ingested == direct > 0
    assert by(store, "databricks_exporter_custom_query_success", "query") == {
        q["name"]: 1 for q in EXAMPLE_QUERIES}


def test_check_runs_every_query_and_fails_on_a_broken_one(workspace, clock):
    seen = collector("custom", workspace, clock, queries=EXAMPLE_QUERIES).check()
    assert seen.startswith("ran 4 queries on warehouse ") and seen.endswith("(7 series)"), seen
    broken = collector("custom", workspace, clock, queries=[{"name": "x", "sql": "SELECT 'a' AS v",
                                                             "value_column": "v"}])
    with pytest.raises(Exception, match="query x: .*not a number"):
        broken.check()


def test_queries_run_when_due_and_their_values_stay_in_between():
    clock = FakeClock()
    server = sql_server(clock)
    try:
        workspace = connected(server, warehouse_in(server, "RUNNING").id)
        queries = [{"name": "every_cycle", "sql": "SELECT COUNT(*) AS n FROM main.raw.customer_data",
                    "value_column": "n"},
                   {"name": "every_five_minutes", "interval": "5m",
                    "sql": "SELECT COUNT(*) AS rows_seen FROM main.raw.customer_data", "value_column": "rows_seen"}]
        instance = collector("custom", workspace, clock, queries=queries)
        store = MetricStore()
        values = []
        for _ in range(11):       # 10 minutes of one-minute cycles (the collector's default interval)
            run_cycle(instance, store)
            values.append((by(store, "databricks_custom_every_cycle")[""],
                           by(store, "databricks_custom_every_five_minutes")[""]))
            clock.advance(60)
        sent = [text for _, text in server.sql.executed]
        assert sent.count(queries[0]["sql"]) == 11 and sent.count(queries[1]["sql"]) == 3      # at 0, 5 and 10 min
        fresh, every_five = zip(*values)
        assert fresh[-1] > fresh[0]                                   # the raw table is written every 5 minutes
        assert every_five[:5] == (fresh[0],) * 5 and every_five[5] == fresh[5] and every_five[10] == fresh[10]
        workspace.sql.close()
    finally:
        server.shutdown()


@pytest.mark.parametrize("sql, value_column, labels, reason", [
    ("SELECT 1 AS other", "value", [], "the result has no column value"),
    ("SELECT 1 AS value", "value", ["check_name"], "the result has no column check_name"),
    ("SELECT 'high' AS value", "value", [], "not a number: 'high'"),
    ("SELECT 'a' AS k, 1 AS value UNION ALL SELECT 'a' AS k, 2 AS value", "value", ["k"], "same labels"),
    ("SELECT * FROM main.sales.no_such_table", "value", [], "TABLE_OR_VIEW_NOT_FOUND"),
])
def test_a_result_that_cannot_be_a_metric_fails_its_query_only(workspace, clock, caplog, sql, value_column, labels,
                                                                reason):
    queries = [{"name": "good", "sql": "SELECT 42 AS answer", "value_column": "answer"},
               {"name": "broken", "sql": sql, "value_column": value_column, "label_columns": labels}]
    store = MetricStore()
    cycle = run_cycle(collector("custom", workspace, clock, queries=queries), store)
    assert len(cycle.failures) == 1 and cycle.failures[0].startswith("query broken: ") and \
        reason in cycle.failures[0], cycle.failures
    assert by(store, "databricks_custom_good") == {"": 42} and by(store, "databricks_custom_broken") == {}
    assert by(store, "databricks_exporter_custom_query_success", "query") == {"good": 1, "broken": 0}
    assert any("custom query broken failed" in r.getMessage() and reason in r.getMessage() for r in caplog.records)


def test_a_failing_query_takes_its_series_away_and_the_collector_down(tmp_path):
    """The exporter as users run it: every example metric is served; then the table one query reads is dropped."""
    server = sql_server()     # on the real clock, as the exporter runs
    exporter = None
    try:
        queries = EXAMPLE_QUERIES + [{"name": "daily_revenue_rows", "value_column": "n",
                                      "sql": "SELECT COUNT(*) AS n FROM main.gold.daily_revenue"}]
        exporter = ExporterProcess(tmp_path, server, only("custom", server, warehouse_in(server, "RUNNING").id,
                                                          queries=queries)).start()
        names = {"databricks_custom_" + q["name"] for q in queries}

        def served(want_up: float, want: set[str]):
            text = exporter.metrics()
            samples = parse(text)
            present = {name for name, _, _ in samples if name.startswith("databricks_custom_")}
            up = total(samples, "databricks_exporter_collector_up", collector="custom")
            return text if present == want and up == want_up else None

        text = wait_for(lambda: served(1, names), 60, what="every custom metric, collector up")
        assert "# TYPE databricks_custom_customer_rows_ingested_total counter" in text
        assert "# TYPE databricks_custom_reconciliation_rows gauge" in text
        promtool = require_binary("promtool")
        check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True,
                               timeout=30)
        assert check.returncode == 0, check.stdout + check.stderr

        server.sql.drop_table("main.gold.daily_revenue")
        text = wait_for(lambda: served(0, names - {"databricks_custom_daily_revenue_rows"}), 30,
                        what="the failed query's series gone and the collector down")
        assert total(parse(text), "databricks_exporter_custom_query_success", query="daily_revenue_rows") == 0
        assert any("custom query daily_revenue_rows failed" in line and "[TABLE_OR_VIEW_NOT_FOUND]" in line
                   for line in exporter.log().splitlines())
    finally:
        if exporter:
            exporter.kill()
        server.shutdown()


def bad(**changes) -> dict:
    query = {"name": "rows", "sql": "SELECT 1 AS n", "value_column": "n"}
    query.update(changes)
    return {k: v for k, v in query.items() if v is not None}


@pytest.mark.parametrize("queries, key, reason", [
    ([bad(name="Rows-Count")], "queries[0].name", "lower-case letters"),
    ([bad(name=None)], "queries[0].name", "lower-case letters"),
    ([bad(type="histogram")], "queries[0].type", "gauge or counter"),
    ([bad(type="counter")], "queries[0].name", "ends in _total"),
    ([bad(name="rows_total")], "queries[0].name", "_total is for counters"),
    ([bad(sql="  ")], "queries[0].sql", "SQL statement"),
    ([bad(value_column=None)], "queries[0].value_column", "result column"),
    ([bad(label_columns=["workspace_id"])], "queries[0].label_columns", "set by the exporter"),
    ([bad(label_columns=["n"])], "queries[0].label_columns", "the value column"),
    ([bad(label_columns=["a", "a"])], "queries[0].label_columns", "named twice"),
    ([bad(label_columns=["bad-label"])], "queries[0].label_columns", "not a valid label name"),
    ([bad(interval="often")], "queries[0].interval", "duration"),
    ([bad(), bad()], "queries[1].name", "duplicate query name"),
    ([bad(labels=["x"])], "queries[0].labels", "unknown key"),
    (["SELECT 1"], "queries[0]", "expected a mapping"),
])
def test_bad_custom_config_is_refused_naming_file_and_key(tmp_path, queries, key, reason):
    from databricks_exporter.collectors import COLLECTORS
    from databricks_exporter.config import ConfigError, load

    path = tmp_path / "c.yml"
    path.write_text(yaml.safe_dump({"collectors": {"custom": {"queries": queries}},
                                    "workspaces": [{"host": "http://127.0.0.1:9"}]}))
    with pytest.raises(ConfigError) as error:
        load(str(path), COLLECTORS)
    message = str(error.value)
    assert message.startswith(f"{path}: collectors.custom.{key}: ") and reason in message, message


def test_bad_custom_config_stops_the_exporter_with_exit_code_2(tmp_path):
    path = tmp_path / "c.yml"
    path.write_text(yaml.safe_dump({"collectors": {"custom": {"queries": [bad(type="counter")]}}}))
    result = run_serve("--config.file", str(path))
    assert result.returncode == 2, result.stderr
    assert f"{path}: collectors.custom.queries[0].name: a counter's name ends in _total" in result.stderr
