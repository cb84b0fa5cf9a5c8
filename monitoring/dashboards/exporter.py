"""The exporter itself: is it scraped, does each collector succeed and how fresh is its data, how it uses the
Databricks APIs, and how its push sinks fare."""

from __future__ import annotations

from ..config import JOB_SELECTOR
from .common import (BAD_IF_ANY, MS, RATE, WORKSPACE_NAME, WS, new_dashboard, query, row, stat_panel, table_panel,
                     timeseries_panel)

UID = "databricks-exporter"


def build():
    return new_dashboard(UID, "Health of databricks-exporter: scrapes, each collector's success, cycle time and "
                              "data age per workspace, Databricks API requests by endpoint and status, SQL "
                              "statements, and the push sinks.", [], [
        row("Exporter"),
        stat_panel("Scrape", "none", query(f"min(up{{{JOB_SELECTOR}}})"), w=3,
                   thresholds=[(None, "red"), (1, "green")], mappings={"0": ("DOWN", "red"), "1": ("UP", "green")},
                   description="Whether Prometheus can scrape every exporter target (job databricks)."),
        stat_panel("Version", "none", query("count by (version) (databricks_exporter_build_info)", "{{version}}"),
                   w=3, show_name=True),
        stat_panel("Collectors failing", "short",
                   query(f"count(databricks_exporter_collector_up{{{WS}}} == 0) or vector(0)"), w=3,
                   thresholds=BAD_IF_ANY,
                   description="Failing for 15 minutes fires DatabricksCollectorFailing."),
        stat_panel("Oldest collector data", "s",
                   query(f"max(time() - databricks_exporter_collector_last_success_timestamp_seconds{{{WS}}})"), w=3,
                   thresholds=[(None, "green"), (600, "orange"), (3600, "red")],
                   description="Billing and utilization collectors run every 5 to 15 minutes by default."),
        stat_panel("API error rate", "percentunit",
                   query(f'(sum(rate(databricks_exporter_api_requests_total{{{WS}, status_code!~"2.."}}{RATE})) '
                         "or vector(0)) "
                         f"/ sum(rate(databricks_exporter_api_requests_total{{{WS}}}{RATE}))"), w=3,
                   thresholds=[(None, "green"), (0.01, "orange"), (0.1, "red")],
                   description="Share of Databricks REST responses that were not 2xx (retries included)."),
        stat_panel("Series folded by the cardinality guard", "short",
                   query(f"sum(databricks_exporter_series_dropped{{{WS}}})"), w=3,
                   thresholds=[(None, "green"), (1, "orange")],
                   description="Series the per-collector ceiling folded into \"_other\" in the last cycles; raise "
                               "the ceiling or narrow the collector's include filters."),
        stat_panel("Scrape duration", "s", query(f"max(scrape_duration_seconds{{{JOB_SELECTOR}}})"), w=3,
                   description="/metrics is rendered from the store and never calls Databricks, so it stays fast."),
        stat_panel("Series scraped", "short", query(f"sum(scrape_samples_scraped{{{JOB_SELECTOR}}})"), w=3),
        timeseries_panel("Collector up", "none",
                         query(f"databricks_exporter_collector_up{{{WS}}} {WORKSPACE_NAME}",
                               "{{workspace_name}} {{collector}}"), min_value=0, max_value=1, decimals=0),
        timeseries_panel("Collector cycle duration", "s",
                         query(f"databricks_exporter_collector_duration_seconds{{{WS}}} {WORKSPACE_NAME}",
                               "{{workspace_name}} {{collector}}"),
                         description="A cycle longer than the collector's timeout (its interval by default) "
                                     "counts as failed."),
        timeseries_panel("Data age by collector", "s",
                         query(f"(time() - databricks_exporter_collector_last_success_timestamp_seconds{{{WS}}}) "
                               f"{WORKSPACE_NAME}", "{{workspace_name}} {{collector}}"),
                         query("collector:databricks_exporter_collector_stale_after_seconds:threshold",
                               "{{collector}} stale after"),
                         description="Above its collector's line for 5 minutes fires DatabricksCollectorDataStale."),
        table_panel("Counting since", "dateTimeAsIso",
                    f"databricks_exporter_counting_since_timestamp_seconds{{{WS}}}{MS} {WORKSPACE_NAME}",
                    value="counting since",
                    description="Where exactly-once counting of completed runs began per collector; it survives "
                                "restarts through the state file."),
        row("Databricks REST API"),
        timeseries_panel("REST requests by endpoint", "reqps",
                         query(f"sum by (endpoint) (rate(databricks_exporter_api_requests_total{{{WS}}}{RATE}))",
                               "{{endpoint}}"), stack=True),
        timeseries_panel("REST requests by status", "reqps",
                         query(f"sum by (status_code) (rate(databricks_exporter_api_requests_total{{{WS}}}{RATE}))",
                               "{{status_code}}"), stack=True,
                         description="429 means Databricks rate-limits the exporter: lengthen collector intervals."),
        timeseries_panel("Malformed items skipped", "cpm",
                         query(f"sum by (collector) (rate(databricks_exporter_malformed_items_total{{{WS}}}{RATE})) "
                               "* 60", "{{collector}}"), w=12,
                         description="Runs, clusters or events whose payload the exporter could not understand; an "
                                     "item that stays in a listing is counted again each cycle."),
        timeseries_panel("Forbidden items skipped", "cpm",
                         query(f"sum by (collector) (rate(databricks_exporter_forbidden_items_total{{{WS}}}{RATE})) "
                               "* 60", "{{collector}}"), w=12,
                         description="Runs, pipeline event logs or cluster events the credential may list but not "
                                     "read (403). The exporter log names each item and the permission it needs, "
                                     "once an hour; `databricks-exporter check` lists them."),
        row("SQL warehouse (system tables)"),
        stat_panel("SQL collectors on stale data", "short",
                   query(f"sum(databricks_exporter_sql_data_stale{{{WS}}})"), w=4, h=8,
                   thresholds=[(None, "green"), (1, "orange")],
                   description="Collectors that skipped querying because their warehouse was stopped and "
                               "wake_warehouse is false: their metrics keep the values of their last refresh."),
        timeseries_panel("SQL statements by collector and outcome", "cpm",
                         query(f"sum by (collector, outcome) "
                               f"(rate(databricks_exporter_sql_queries_total{{{WS}}}{RATE})) * 60",
                               "{{collector}} {{outcome}}"), w=10,
                         description="System-table and custom queries sent to the configured SQL warehouse."),
        timeseries_panel("SQL statement duration p90", "s",
                         query("histogram_quantile(0.9, sum by (collector, le) "
                               f"(rate(databricks_exporter_sql_query_duration_seconds_bucket{{{WS}}}{RATE})))",
                               "{{collector}}"), w=10, min_interval="15m",
                         description="SQL collectors run every 5 to 15 minutes, so each point covers at least 15."),
        timeseries_panel("Time since the last system-table read", "s",
                         query(f"(time() - databricks_exporter_sql_last_refresh_timestamp_seconds{{{WS}}}) "
                               f"{WORKSPACE_NAME}", "{{workspace_name}} {{collector}}"), w=24),
        row("What the exporter costs, and whether its counts hold"),
        timeseries_panel("Estimated DBUs of the exporter's SQL by collector", "short",
                         query(f"sum by (collector) (rate(databricks_exporter_sql_estimated_dbus_total{{{WS}}}{RATE})) "
                               "* 3600", "{{collector}}"), stack=True, min_interval="15m",
                         description="DBUs an hour: statement time times the DBU rate of one cluster of the "
                                     "warehouse's size. A warehouse woken or kept awake only for the exporter costs "
                                     "more: see its uptime on the SQL dashboard."),
        timeseries_panel("Warehouse time of the exporter's SQL by collector", "percentunit",
                         query(f"sum by (collector) "
                               f"(rate(databricks_exporter_sql_query_duration_seconds_sum{{{WS}}}{RATE}))",
                               "{{collector}}"), stack=True, min_interval="15m",
                         description="Seconds of statements per second: the share of the time the exporter keeps "
                                     "the warehouse busy."),
        stat_panel("REST requests per second", "reqps",
                   query(f"sum(rate(databricks_exporter_api_requests_total{{{WS}}}{RATE}))"), w=4, h=8,
                   description="Databricks rate-limits REST calls per workspace and endpoint; 429 answers (see "
                               "'REST requests by status') mean the exporter is over a limit."),
        table_panel("Reconciliation with the system tables", "short",
                    f"databricks_exporter_reconciliation_difference{{{WS}}} != 0",
                    value="REST minus table", sort_by="REST minus table", w=10,
                    description="Per closed hour, completed runs (queries) the exporter counted from the REST API "
                                "minus those in job_run_timeline (query.history); only the disagreements are "
                                "listed. Persisting for 15 minutes fires DatabricksReconciliationMismatch."),
        stat_panel("Last reconciled period ended", "dateTimeFromNow",
                   query(f"min(databricks_exporter_reconciled_until_timestamp_seconds{{{WS}}}){MS}"), w=10, h=8,
                   description="A period is reconciled an hour after it closes, once counting covered all of it: "
                               "the first one about two hours after the exporter starts."),
        row("Push sinks"),
        timeseries_panel("Pushes by sink and outcome", "cpm",
                         query("sum by (sink, outcome) (rate(databricks_exporter_push_total[$__rate_interval])) * 60",
                               "{{sink}} {{outcome}}"),
                         description="Only when a CloudWatch or OTLP sink is configured."),
        timeseries_panel("Time since the last successful push", "s",
                         query("time() - databricks_exporter_push_last_success_timestamp_seconds", "{{sink}}")),
    ])
