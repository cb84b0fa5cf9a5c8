"""SQL warehouses and the queries they run: state, scaling, health, outcomes, latency, queueing, I/O and spill."""

from __future__ import annotations

from .common import (CURRENCY, RATE, WAREHOUSE_NAME, WS, info_variable, new_dashboard, query, row, stat_panel, table_panel,
                     timeseries_panel)

UID = "databricks-sql"

WH = f'{WS}, warehouse_id=~"$warehouse"'


def per_warehouse_rate(metric: str, scale: str = "") -> str:
    return f"sum by (warehouse_name) (rate({metric}{{{WH}}}{RATE}) {WAREHOUSE_NAME}){scale}"


def quantile(q: float, metric: str) -> str:
    return (f"histogram_quantile({q}, sum by (workspace_id, warehouse_id, le) (rate({metric}_bucket{{{WH}}}{RATE}))) "
            f"{WAREHOUSE_NAME}")


def build():
    warehouse = info_variable("warehouse", "Warehouse", "databricks_warehouse_info", "warehouse_id",
                              "warehouse_name", multi=True)
    return new_dashboard(UID, "Databricks SQL warehouses and their queries (query history): state, clusters "
                              "against the maximum, health, outcomes, latency, queueing, bytes read and spilled.",
                         [warehouse], [
        row("Warehouses"),
        stat_panel("Warehouses running", "short",
                   query(f'count(databricks_warehouse_state{{{WH}, state="RUNNING"}} == 1) or vector(0)')),
        stat_panel("Warehouse clusters running", "short", query(f"sum(databricks_warehouse_clusters{{{WH}}})")),
        stat_panel("Unhealthy warehouses", "short",
                   query(f'count(databricks_warehouse_health{{{WH}, status!="HEALTHY"}} == 1) or vector(0)'),
                   thresholds=[(None, "green"), (1, "red")],
                   description="DEGRADED for 10 minutes fires a warning, FAILED a critical alert."),
        stat_panel("Queries per minute", "cpm", query(f"sum(rate(databricks_queries_total{{{WH}}}{RATE})) * 60")),
        stat_panel("Query error rate (1h)", "percentunit",
                   query(f'sum(workspace_warehouse:databricks_queries:increase1h{{{WH}, status="FAILED"}}) '
                         f"/ (sum(workspace_warehouse:databricks_queries:increase1h{{{WH}}}) > 0)"),
                   thresholds=[(None, "green"), (0.05, "red")],
                   description="Failed over all queries that ended in the last hour (FINISHED, FAILED, CANCELED)."),
        stat_panel("Queries over 5 minutes (1h)", "short",
                   query(f"sum(workspace_warehouse:databricks_queries_over_5m:increase1h{{{WH}}})"),
                   decimals=0, thresholds=[(None, "green"), (1, "orange")]),
        table_panel("Warehouses now", "short",
                    f"databricks_warehouse_clusters{{{WH}}} "
                    "* on(workspace_id, warehouse_id) group_left(state) (databricks_warehouse_state == 1) "
                    "* on(workspace_id, warehouse_id) group_left(warehouse_name, cluster_size, warehouse_type, "
                    "serverless) databricks_warehouse_info",
                    value="clusters running", sort_by="clusters running"),
        timeseries_panel("Clusters against the maximum", "short",
                         query(f"databricks_warehouse_clusters{{{WH}}} {WAREHOUSE_NAME}", "{{warehouse_name}}"),
                         query(f"databricks_warehouse_max_clusters{{{WH}}} {WAREHOUSE_NAME}",
                               "{{warehouse_name}} max"),
                         description="A warehouse at its maximum queues the queries it cannot place."),
        row("Uptime and idle cost (system tables)"),
        timeseries_panel("Warehouse uptime and idle time (1h)", "s",
                         query(f"workspace_warehouse:databricks_warehouse_running_seconds:increase1h{{{WH}}} "
                               f"{WAREHOUSE_NAME}", "{{warehouse_name}} running"),
                         query(f"workspace_warehouse:databricks_warehouse_idle_seconds:increase1h{{{WH}}} "
                               f"{WAREHOUSE_NAME}", "{{warehouse_name}} idle"),
                         description="Seconds running, and running with no query in flight for 5 minutes, in the "
                                     "last hour the exporter has counted: from system.compute.warehouse_events and "
                                     "system.query.history, counted once the history has settled (two hours late "
                                     "by default)."),
        timeseries_panel("Cluster-seconds (1h)", "s",
                         query(f"workspace_warehouse:databricks_warehouse_cluster_seconds:increase1h{{{WH}}} "
                               f"{WAREHOUSE_NAME}", "{{warehouse_name}}"), stack=True,
                         description="Running seconds times the warehouse's cluster count: what it is billed for."),
        table_panel("Idle cost by warehouse (1h)", CURRENCY,
                    f"workspace_warehouse:databricks_warehouse_idle_cost:increase1h{{{WH}}} {WAREHOUSE_NAME}",
                    value="idle cost", sort_by="idle cost",
                    description="List cost of idle cluster-seconds in the last counted hour; over 5 fires "
                                "DatabricksWarehouseIdleSpend."),
        timeseries_panel("Starts, stops and scaling (1h)", "short",
                         query(f"sum by (event_type) (workspace_warehouse:databricks_warehouse_events:increase1h"
                               f"{{{WH}}})", "{{event_type}}"), stack=True, decimals=0),
        row("Queries"),
        timeseries_panel("Queries by status", "cpm",
                         query(f"sum by (status) (rate(databricks_queries_total{{{WH}}}{RATE})) * 60", "{{status}}"),
                         stack=True, w=8),
        timeseries_panel("Error rate (1h) by warehouse", "percentunit",
                         query(f"workspace_warehouse:databricks_queries:error_ratio1h{{{WH}}} {WAREHOUSE_NAME}",
                               "{{warehouse_name}}"),
                         query('databricks:alert_threshold{threshold="query_error_ratio"}', "alert threshold"),
                         w=8, min_value=0),
        timeseries_panel("Queued and running queries", "short",
                         query(f"sum by (warehouse_name, status) (databricks_queries_active{{{WH}}} "
                               f"{WAREHOUSE_NAME})", "{{warehouse_name}} {{status}}"), w=8,
                         description="Queries queued for 15 minutes without a break fire DatabricksWarehouseQueueing."),
        timeseries_panel("Query duration p50", "s",
                         query(quantile(0.5, "databricks_query_duration_seconds"), "{{warehouse_name}}"), w=8),
        timeseries_panel("Query duration p99", "s",
                         query(quantile(0.99, "databricks_query_duration_seconds"), "{{warehouse_name}}"), w=8),
        timeseries_panel("Queue time p90", "s",
                         query(quantile(0.9, "databricks_query_queue_duration_seconds"), "{{warehouse_name}}"), w=8),
        timeseries_panel("Queries over 5 minutes (1h) by warehouse", "short",
                         query(f"workspace_warehouse:databricks_queries_over_5m:increase1h{{{WH}}} {WAREHOUSE_NAME}",
                               "{{warehouse_name}}"), w=8, decimals=0),
        timeseries_panel("Result cache hits", "percentunit",
                         query(f"sum by (warehouse_name) (rate(databricks_query_result_cache_hits_total{{{WH}}}{RATE}) "
                               f"{WAREHOUSE_NAME}) / sum by (warehouse_name) "
                               f"(rate(databricks_queries_total{{{WH}}}{RATE}) {WAREHOUSE_NAME})",
                               "{{warehouse_name}}"), w=8, min_value=0, max_value=1,
                         description="Queries answered from the result cache, over all queries that ended."),
        timeseries_panel("Rows read and produced", "rowsps",
                         query(per_warehouse_rate("databricks_query_read_rows_total"), "{{warehouse_name}} read"),
                         query(per_warehouse_rate("databricks_query_produced_rows_total"),
                               "{{warehouse_name}} produced"), w=8),
        timeseries_panel("Bytes read", "Bps",
                         query(per_warehouse_rate("databricks_query_read_bytes_total"), "{{warehouse_name}}"), w=12),
        timeseries_panel("Bytes spilled to disk", "Bps",
                         query(per_warehouse_rate("databricks_query_spilled_bytes_total"), "{{warehouse_name}}"),
                         w=12, description="Spill means the warehouse size is too small for the queries' joins "
                                           "and aggregations."),
    ])
