"""The simulated workspace's SQL side through the real clients: databricks-sql-connector over Thrift/HTTPS, the
databricks-sdk Statement Execution API and query history, and system tables that agree with what the REST API
shows (job tags and ids, running clusters and their nodes, warehouses), with late and corrected billing records."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
from databricks.sdk.errors import InvalidParameterValue, NotFound
from databricks.sdk.service.sql import (Disposition, ExecuteStatementRequestOnWaitTimeout, Format, QueryFilter,
                                        QueryStatus, StatementParameterListItem, StatementState, TimeRange)
from databricks.sql.exc import RequestError, ServerOperationError
from sql_helpers import FakeClock, T0, connect, sdk, sql_server, ticking, warehouse_in

from conftest import http_get

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def clock():
    return FakeClock()


@pytest.fixture(scope="module")
def server(clock):
    server = sql_server(clock, sql_options={"chunk_rows": 7})
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def running(server):
    return warehouse_in(server, "RUNNING")


@pytest.fixture(scope="module")
def cursor(server, running):
    connection = connect(server, running.id)
    with connection.cursor(arraysize=50) as cursor:
        yield cursor
    connection.close()


def rows(cursor, statement: str) -> list[dict]:
    cursor.execute(statement)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


# -- the Thrift protocol ----------------------------------------------------------------------------------------

def test_types_come_back_as_databricks_returns_them(cursor):
    row = rows(cursor, "SELECT 1 AS i, CAST(2 AS BIGINT) AS b, 2.5D AS d, CAST('1.50' AS DECIMAL(10,2)) AS dec, "
                       "'x' AS s, true AS t, DATE '2026-01-02' AS day, TIMESTAMP '2026-01-02 03:04:05' AS ts, "
                       "CAST(NULL AS STRING) AS n, map('a', 1) AS m, named_struct('k', 'v') AS st")[0]
    assert row["i"] == 1 and row["b"] == 2 and row["d"] == 2.5 and row["dec"] == Decimal("1.50")
    assert row["s"] == "x" and row["t"] is True and row["day"] == dt.date(2026, 1, 2) and row["n"] is None
    assert row["ts"].replace(tzinfo=None) == dt.datetime(2026, 1, 2, 3, 4, 5)
    assert json.loads(row["m"]) == {"a": 1} and json.loads(row["st"]) == {"k": "v"}
    types = {d[0]: d[1] for d in cursor.description}
    assert types["dec"] == "decimal" and types["day"] == "date" and types["ts"] == "timestamp"


def test_current_date_is_simulated_now_and_decimal_products_follow_spark(cursor, clock):
    row = rows(cursor, "SELECT current_date() AS today, CAST(123.4567 AS DECIMAL(38,18)) * "
                       "CAST(250.5 AS DECIMAL(38,18)) AS product")[0]
    assert row["today"] == dt.datetime.fromtimestamp(clock(), dt.timezone.utc).date()
    # DuckDB alone would make this a DECIMAL(38,36) and overflow; Databricks gives DECIMAL(38,6).
    assert row["product"] == Decimal("30925.903350")


def test_results_larger_than_a_batch_are_fetched_in_order(cursor):
    # arraysize 50: the first batch comes with ExecuteStatement, the rest through FetchResults.
    result = rows(cursor, "SELECT statement_id, start_time FROM system.query.history ORDER BY start_time, "
                          "statement_id LIMIT 180")
    assert len(result) == 180 and len({r["statement_id"] for r in result}) == 180
    assert [r["start_time"] for r in result] == sorted(r["start_time"] for r in result)


def test_sql_errors_are_server_operation_errors(cursor):
    with pytest.raises(ServerOperationError, match="TABLE_OR_VIEW_NOT_FOUND"):
        cursor.execute("SELECT * FROM system.billing.no_such_table")
    with pytest.raises(ServerOperationError, match="PARSE_SYNTAX_ERROR"):
        cursor.execute("SELEC 1")
    assert rows(cursor, "SELECT 2 AS two") == [{"two": 2}]       # the session survives


def test_wrong_credential_unknown_warehouse_and_untrusted_certificate_fail(server, running):
    with pytest.raises(RequestError):
        connect(server, running.id, access_token="dapi-wrong", _retry_stop_after_attempts_count=1)
    with pytest.raises(RequestError):
        connect(server, "0123456789abcdef", _retry_stop_after_attempts_count=1)
    # Without the CA bundle the simulator's certificate is not trusted (the connector lets urllib3's error through).
    with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED"):
        connect(server, running.id, _tls_trusted_ca_file=None, _retry_stop_after_attempts_count=1)


def test_oauth_m2m_credentials_work_for_sql(server, running):
    from databricks.sdk.core import Config

    config = Config(host=server.url, client_id=server.client_id, client_secret=server.client_secret)
    connection = connect(server, running.id, access_token=None, credentials_provider=lambda: config.authenticate)
    with connection.cursor() as cursor:
        cursor.execute("SELECT 7 AS seven")
        assert cursor.fetchall()[0][0] == 7
    connection.close()


def test_a_statement_on_a_stopped_warehouse_starts_it(server, clock):
    warehouse = warehouse_in(server, "STOPPED", serverless=True)
    w = sdk(server)
    assert w.warehouses.get(warehouse.id).state.value == "STOPPED"
    connection = connect(server, warehouse.id)
    with ticking(clock, step=0.5), connection.cursor() as cursor:
        cursor.execute("SELECT 1 AS one")
        assert cursor.fetchall()[0][0] == 1
    connection.close()
    assert w.warehouses.get(warehouse.id).state.value == "RUNNING"
    # The statement waited in the provisioning queue, and the history says so.
    page = w.query_history.list(filter_by=QueryFilter(warehouse_ids=[warehouse.id]), include_metrics=True,
                                max_results=5)
    mine = [q for q in page.res if q.query_text == "SELECT 1 AS one"]
    assert mine and mine[0].metrics.provisioning_queue_start_timestamp == mine[0].query_start_time_ms
    assert mine[0].client_application == "Databricks SQL Connector for Python"


# -- the Statement Execution API --------------------------------------------------------------------------------

def test_statement_execution_api_inline_chunks(server, running):
    w = sdk(server)
    response = w.statement_execution.execute_statement(
        statement="SELECT sku_name, price_start_time, pricing.default AS price FROM system.billing.list_prices "
                  "ORDER BY sku_name, price_start_time", warehouse_id=running.id, wait_timeout="10s",
        disposition=Disposition.INLINE, format=Format.JSON_ARRAY)
    assert response.status.state == StatementState.SUCCEEDED
    manifest = response.manifest
    assert manifest.total_row_count > 7 and manifest.total_chunk_count == -(-manifest.total_row_count // 7)
    assert [c.name for c in manifest.schema.columns] == ["sku_name", "price_start_time", "price"]
    assert manifest.schema.columns[2].type_name.value == "DECIMAL" and manifest.schema.columns[2].type_scale == 18
    data = list(response.result.data_array)
    index = response.result.next_chunk_index
    while index is not None:
        chunk = w.statement_execution.get_statement_result_chunk_n(response.statement_id, index)
        data.extend(chunk.data_array)
        index = chunk.next_chunk_index
    assert len(data) == manifest.total_row_count
    assert all(isinstance(v, str) for row in data for v in row)       # JSON_ARRAY values are strings
    assert w.statement_execution.get_statement(response.statement_id).status.state == StatementState.SUCCEEDED


def test_statement_execution_api_parameters_failures_and_validation(server, running):
    w = sdk(server)
    response = w.statement_execution.execute_statement(
        statement="SELECT :n + 1 AS n", warehouse_id=running.id,
        parameters=[StatementParameterListItem(name="n", value="41", type="INT")])
    assert response.result.data_array == [["42"]]
    failed = w.statement_execution.execute_statement(statement="SELECT * FROM nowhere", warehouse_id=running.id)
    assert failed.status.state == StatementState.FAILED and "TABLE_OR_VIEW_NOT_FOUND" in failed.status.error.message
    with pytest.raises(InvalidParameterValue):
        w.statement_execution.execute_statement(statement="SELECT 1", warehouse_id=running.id, wait_timeout="3s")
    with pytest.raises(NotFound):
        w.statement_execution.execute_statement(statement="SELECT 1", warehouse_id="0000000000000000")
    with pytest.raises(NotFound):
        w.statement_execution.get_statement("00000000-0000-0000-0000-000000000000")


def test_statement_execution_api_pending_poll_and_cancel(server, clock):
    w = sdk(server)
    stopped = [wh for wh in server.workspace.warehouses
               if wh.state_at(server.workspace.now_ms())[1] == "STOPPED" and not wh.serverless]
    if not stopped:
        pytest.skip("no stopped classic warehouse at this moment of the simulation")
    pending = w.statement_execution.execute_statement(statement="SELECT 1", warehouse_id=stopped[0].id,
                                                      wait_timeout="0s")
    assert pending.status.state == StatementState.PENDING
    assert w.warehouses.get(stopped[0].id).state.value == "STARTING"
    w.statement_execution.cancel_execution(pending.statement_id)
    assert w.statement_execution.get_statement(pending.statement_id).status.state == StatementState.CANCELED
    waited = w.statement_execution.execute_statement(
        statement="SELECT 2", warehouse_id=stopped[0].id, wait_timeout="5s",
        on_wait_timeout=ExecuteStatementRequestOnWaitTimeout.CONTINUE)
    assert waited.status.state == StatementState.PENDING
    clock.advance(400)           # a classic warehouse starts within 2-5 minutes
    assert w.statement_execution.get_statement(waited.statement_id).status.state == StatementState.SUCCEEDED


# -- query history ------------------------------------------------------------------------------------------------

def test_query_history_pages_newest_first_with_filters(server, clock):
    w = sdk(server)
    now = int(clock() * 1000)
    time_range = TimeRange(start_time_ms=now - 3_600_000, end_time_ms=now)
    seen, token, pages = [], None, 0
    while True:
        page = w.query_history.list(filter_by=QueryFilter(query_start_time_range=time_range), max_results=250,
                                    page_token=token)
        seen.extend(page.res)
        pages += 1
        token = page.next_page_token
        if not page.has_next_page:
            assert token is None
            break
    assert pages >= 2 and len({q.query_id for q in seen}) == len(seen)
    starts = [(q.query_start_time_ms, q.query_id) for q in seen]
    assert starts == sorted(starts, reverse=True)
    assert all(now - 3_600_000 <= s <= now for s, _ in starts)
    finished = w.query_history.list(filter_by=QueryFilter(query_start_time_range=time_range,
                                                          statuses=[QueryStatus.FAILED]), max_results=100)
    assert finished.res and {q.status for q in finished.res} == {QueryStatus.FAILED}
    assert all(q.error_message for q in finished.res)
    one = seen[0].warehouse_id
    only = w.query_history.list(filter_by=QueryFilter(warehouse_ids=[one]), max_results=50)
    assert {q.warehouse_id for q in only.res} == {one}
    with pytest.raises(InvalidParameterValue):
        w.query_history.list(max_results=1000)


def test_query_history_metrics_show_load_spill_cache_and_queueing(server, clock):
    w = sdk(server)
    now = int(clock() * 1000)
    queries, token = [], None
    while True:
        page = w.query_history.list(filter_by=QueryFilter(query_start_time_range=TimeRange(
            start_time_ms=now - 6 * 3_600_000, end_time_ms=now), statuses=[QueryStatus.FINISHED]),
            include_metrics=True, max_results=999, page_token=token)
        queries.extend(page.res)
        token = page.next_page_token
        if not page.has_next_page:
            break
    assert len(queries) > 500
    assert any(q.metrics.result_from_cache for q in queries)
    assert any((q.metrics.spill_to_disk_bytes or 0) > 0 for q in queries)
    assert any(q.metrics.overloading_queue_start_timestamp for q in queries)
    assert any(q.duration > 300_000 for q in queries)                 # slower than 5 minutes
    assert all(q.duration == q.query_end_time_ms - q.query_start_time_ms for q in queries)


# -- system tables agree with the REST API --------------------------------------------------------------------

def test_job_usage_carries_the_job_id_and_its_tags(server, cursor):
    jobs = {str(j.job_id): j.settings.tags for j in sdk(server).jobs.list()}
    result = rows(cursor, "SELECT usage_metadata.job_id AS job_id, custom_tags['team'] AS team, "
                          "custom_tags['cost_center'] AS cost_center, billing_origin_product AS product, "
                          "COUNT(*) AS n FROM system.billing.usage WHERE usage_metadata.job_id IS NOT NULL "
                          "AND workspace_id = '1234567890123456' GROUP BY ALL")
    assert len({r["job_id"] for r in result}) >= 20
    # One-time runs (runs/submit) are billed under one job_id, their stream's, which jobs/list does not show.
    one_time = {str(server.workspace.job_set.one_time.job_id)}
    assert {r["job_id"] for r in result} & one_time
    for r in result:
        assert r["product"] == "JOBS" and (r["job_id"] in jobs or r["job_id"] in one_time)
        if r["job_id"] in jobs:
            assert (r["team"], r["cost_center"]) == (jobs[r["job_id"]]["team"], jobs[r["job_id"]]["cost_center"])


def test_warehouse_usage_is_attributed_to_the_warehouses(server, cursor):
    warehouses = {wh.id for wh in sdk(server).warehouses.list()}
    result = rows(cursor, "SELECT DISTINCT usage_metadata.warehouse_id AS warehouse_id FROM system.billing.usage "
                          "WHERE billing_origin_product = 'SQL' AND workspace_id = '1234567890123456'")
    assert {r["warehouse_id"] for r in result} == warehouses


def test_node_timeline_has_a_row_per_node_of_running_clusters(server, cursor, clock):
    from databricks.sdk.service.compute import ListClustersFilterBy, State

    w = sdk(server)
    running = {c.cluster_id: c for c in w.clusters.list(filter_by=ListClustersFilterBy(
        cluster_states=[State.RUNNING]))}
    since = dt.datetime.fromtimestamp(clock() - 600, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    result = rows(cursor, "SELECT cluster_id, end_time, COUNT(*) AS nodes, COUNT(DISTINCT instance_id) AS instances, "
                          "SUM(CASE WHEN driver THEN 1 ELSE 0 END) AS drivers FROM system.compute.node_timeline "
                          f"WHERE end_time > TIMESTAMP '{since}' GROUP BY ALL")
    clusters = {r["cluster_id"] for r in result}
    assert clusters and clusters <= set(running) | {r["cluster_id"] for r in result if r["cluster_id"] not in running
                                                    and w.clusters.get(r["cluster_id"]).state != State.RUNNING}
    latest = {}
    for r in result:
        assert r["drivers"] == 1 and r["nodes"] == r["instances"]
        latest[r["cluster_id"]] = max(latest.get(r["cluster_id"], r["end_time"]), r["end_time"])
    # The newest minute of a cluster still running has its driver and every executor the REST API lists.
    instances = rows(cursor, "SELECT cluster_id, end_time, instance_id FROM system.compute.node_timeline "
                             f"WHERE end_time > TIMESTAMP '{since}'")
    checked = 0
    for cluster_id, cluster in running.items():
        if cluster_id not in latest or not cluster.executors:
            continue
        newest = {r["instance_id"] for r in instances if r["cluster_id"] == cluster_id and
                  r["end_time"] == latest[cluster_id]}
        expected = {cluster.driver.instance_id} | {e.instance_id for e in cluster.executors}
        if len(expected) == len(newest):          # not resized in the last minute or two
            assert newest == expected
            checked += 1
    assert checked >= 3


def test_billing_records_arrive_late_and_some_days_are_restated(server, cursor, clock):
    now = dt.datetime.fromtimestamp(clock(), dt.timezone.utc)
    latest = rows(cursor, "SELECT MAX(usage_end_time) AS latest FROM system.billing.usage")[0]["latest"]
    lag = now - latest.replace(tzinfo=dt.timezone.utc)
    assert dt.timedelta(hours=2) <= lag <= dt.timedelta(hours=3, minutes=20)
    kinds = rows(cursor, "SELECT usage_date, record_type, COUNT(*) AS n, SUM(usage_quantity) AS q "
                         "FROM system.billing.usage GROUP BY ALL")
    restated = {r["usage_date"] for r in kinds if r["record_type"] == "RESTATEMENT"}
    assert restated and restated == {r["usage_date"] for r in kinds if r["record_type"] == "RETRACTION"}
    for day in restated:
        retracted = sum(r["q"] for r in kinds if r["usage_date"] == day and r["record_type"] == "RETRACTION")
        assert retracted < 0


def test_list_prices_change_during_the_history(cursor):
    prices = rows(cursor, "SELECT sku_name, price_start_time, price_end_time, pricing.default AS price "
                          "FROM system.billing.list_prices ORDER BY sku_name, price_start_time")
    changed = [p for p in prices if p["price_end_time"] is not None]
    assert changed
    for old in changed:
        new = [p for p in prices if p["sku_name"] == old["sku_name"] and p["price_start_time"] == old["price_end_time"]]
        assert new and new[0]["price"] != old["price"]


def test_warehouse_events_follow_the_warehouse_states(cursor):
    events = rows(cursor, "SELECT warehouse_id, event_type, cluster_count, event_time FROM "
                          "system.compute.warehouse_events ORDER BY warehouse_id, event_time")
    assert {e["event_type"] for e in events} >= {"STARTING", "RUNNING", "STOPPING", "STOPPED", "SCALED_UP",
                                                  "SCALED_DOWN"}


def test_truth_has_billing_by_day_and_completed_queries(server, clock):
    truth = json.loads(http_get(f"{server.url}/simulator/truth?since={clock() - 3600}")[2])
    days = truth["billing"]["workspaces"]["1234567890123456"]
    closed = [d for d, v in days.items() if v["complete"]]
    assert len(closed) >= 30 and all(days[d]["list_cost"] > 0 for d in closed)
    assert any(v["restated"] for v in days.values()) and any(v["price_change"] for v in days.values())
    assert truth["queries"]["total"] > 100 and set(truth["queries"]["by_warehouse"]) <= {
        w.id for w in server.workspace.warehouses}
    assert T0 > 0
