"""Lakeflow Declarative Pipelines (DLT) and the data they produce: state, updates, flows and backlog, expectations
and drops, and the freshness and file health of the tables the exporter watches."""

from __future__ import annotations

from .common import (BAD_IF_ANY, PIPELINE_NAME, RATE, WS, bargauge_panel, info_variable, new_dashboard, query, row,
                     stat_panel, table_panel, timeseries_panel)

UID = "databricks-pipelines"

PL = f'{WS}, pipeline_id=~"$pipeline"'


def per_flow(metric: str) -> str:
    return f"{metric}{{{PL}}} {PIPELINE_NAME}"


def build():
    pipeline = info_variable("pipeline", "Pipeline", "databricks_pipeline_info", "pipeline_id", "pipeline_name",
                             multi=True)
    return new_dashboard(UID, "Databricks pipelines (DLT event log) and table health: state and updates, rows and "
                              "backlog per flow, expectation pass and drop rates, table freshness and small files.",
                         [pipeline], [
        row("Pipelines"),
        stat_panel("Pipelines FAILED", "short",
                   query(f'count(databricks_pipeline_state{{{PL}, state="FAILED"}} == 1) or vector(0)'),
                   thresholds=BAD_IF_ANY),
        stat_panel("Unhealthy pipelines", "short",
                   query(f"count(databricks_pipeline_healthy{{{PL}}} == 0) or vector(0)"), thresholds=BAD_IF_ANY),
        stat_panel("Failed updates (1h)", "short",
                   query(f'sum(workspace_pipeline:databricks_pipeline_updates:increase1h{{{PL}, state="FAILED"}}) '
                         "or vector(0)"), decimals=0, thresholds=BAD_IF_ANY),
        stat_panel("Executors", "short", query(f"sum(databricks_pipeline_executors{{{PL}}})")),
        stat_panel("Task slot utilization", "percentunit",
                   query(f"avg(databricks_pipeline_task_slot_utilization_ratio{{{PL}}})"),
                   description="Average over the selected pipelines' clusters; near 100% means the pipeline "
                               "needs more executors."),
        stat_panel("Largest backlog", "s", query(f"max(databricks_pipeline_flow_backlog_seconds{{{PL}}})"),
                   thresholds=[(None, "green"), (1800, "orange"), (3600, "red")]),
        table_panel("Pipelines and their state", "short",
                    f"(databricks_pipeline_state{{{PL}}} == 1) "
                    "* on(workspace_id, pipeline_id) group_left(pipeline_name, continuous, serverless) "
                    "databricks_pipeline_info", hide=("Value",), w=12),
        table_panel("Time since last successful update", "dtdurations",
                    f"time() - databricks_pipeline_last_success_timestamp_seconds{{{PL}}} {PIPELINE_NAME}",
                    value="since last success", sort_by="since last success", w=12),
        timeseries_panel("Updates in the last hour by state", "short",
                         query(f"sum by (state) (workspace_pipeline:databricks_pipeline_updates:increase1h{{{PL}}})",
                               "{{state}}"), decimals=0, w=8),
        timeseries_panel("Update duration p90", "s",
                         query("histogram_quantile(0.9, sum by (workspace_id, pipeline_id, le) "
                               f"(rate(databricks_pipeline_update_duration_seconds_bucket{{{PL}}}{RATE}))) "
                               f"{PIPELINE_NAME}", "{{pipeline_name}}"), w=8, min_interval="15m",
                         description="Of the updates that ended in each window of at least 15 minutes: updates "
                                     "end minutes to hours apart."),
        timeseries_panel("Event log by level", "cpm",
                         query(f"sum by (level) (rate(databricks_pipeline_events_total{{{PL}}}{RATE})) * 60",
                               "{{level}}"), w=8, stack=True),
        row("Flows"),
        timeseries_panel("Rows written by flow", "rowsps",
                         query(f"sum by (pipeline_name, flow_name) (rate(databricks_pipeline_flow_output_rows_total"
                               f"{{{PL}}}{RATE}) {PIPELINE_NAME})", "{{pipeline_name}} {{flow_name}}")),
        timeseries_panel("Flow failures", "cpm",
                         query(f"sum by (pipeline_name, flow_name) (rate(databricks_pipeline_flow_failures_total"
                               f"{{{PL}}}{RATE}) {PIPELINE_NAME}) * 60", "{{pipeline_name}} {{flow_name}}")),
        timeseries_panel("Backlog (time)", "s",
                         query(per_flow("databricks_pipeline_flow_backlog_seconds"), "{{pipeline_name}} {{flow_name}}"),
                         query('databricks:alert_threshold{threshold="pipeline_backlog_seconds"}', "alert threshold"),
                         w=6, description="Over an hour for 15 minutes fires DatabricksPipelineBacklogHigh."),
        timeseries_panel("Backlog (records)", "short",
                         query(per_flow("databricks_pipeline_flow_backlog_records"),
                               "{{pipeline_name}} {{flow_name}}"), w=6),
        timeseries_panel("Backlog (bytes)", "bytes",
                         query(per_flow("databricks_pipeline_flow_backlog_bytes"), "{{pipeline_name}} {{flow_name}}"),
                         w=6),
        timeseries_panel("Backlog (files)", "short",
                         query(per_flow("databricks_pipeline_flow_backlog_files"), "{{pipeline_name}} {{flow_name}}"),
                         w=6),
        row("Data quality"),
        timeseries_panel("Expectation pass rate (1h)", "percentunit",
                         query("workspace_pipeline_expectation:databricks_pipeline_expectation_records:pass_ratio1h"
                               f"{{{PL}}} {PIPELINE_NAME}", "{{pipeline_name}} {{dataset}} {{expectation}}"),
                         query('databricks:alert_threshold{threshold="pipeline_expectation_pass_ratio"}',
                               "alert threshold"),
                         max_value=1,
                         description="Passed over judged records per expectation in the last hour; under 95% "
                                     "(with at least 100 records) fires DatabricksPipelineExpectationPassRateLow."),
        timeseries_panel("Dropped records (1h share)", "percentunit",
                         query(f"workspace_pipeline_dataset:databricks_pipeline_dropped_records:ratio1h{{{PL}}} "
                               f"{PIPELINE_NAME}", "{{pipeline_name}} {{dataset}}"),
                         query('databricks:alert_threshold{threshold="pipeline_drop_ratio"}', "alert threshold"),
                         min_value=0,
                         description="Records dropped by expect_or_drop over records that entered the dataset."),
        timeseries_panel("Records failing expectations", "recps",
                         query("sum by (pipeline_name, dataset, expectation) "
                               f'(rate(databricks_pipeline_expectation_records_total{{{PL}, outcome="failed"}}{RATE}) '
                               f"{PIPELINE_NAME})", "{{pipeline_name}} {{dataset}} {{expectation}}"), w=12),
        timeseries_panel("Records dropped", "recps",
                         query(f"sum by (pipeline_name, dataset) (rate(databricks_pipeline_dropped_records_total"
                               f"{{{PL}}}{RATE}) {PIPELINE_NAME})", "{{pipeline_name}} {{dataset}}"), w=12),
        row("Tables"),
        bargauge_panel("Freshness SLO used", "percentunit",
                       query(f"(time() - databricks_table_last_modified_timestamp_seconds{{{WS}}}) "
                             "/ on(workspace_id, table) databricks_table_freshness_slo_seconds", "{{table}}",
                             instant=True),
                       max_value=1, thresholds=[(None, "green"), (0.8, "orange"), (1, "red")],
                       description="Time since the last write over the table's configured maximum staleness; "
                                   "past 100% for 10 minutes fires DatabricksTableStale."),
        table_panel("Time since last write, OPTIMIZE and VACUUM", "dtdurations",
                    f"time() - databricks_table_last_modified_timestamp_seconds{{{WS}}}",
                    f"time() - databricks_table_last_optimize_timestamp_seconds{{{WS}}}",
                    f"time() - databricks_table_last_vacuum_timestamp_seconds{{{WS}}}",
                    value=["since last write", "since last OPTIMIZE", "since last VACUUM"],
                    sort_by="since last write"),
        timeseries_panel("Table size", "bytes",
                         query(f"databricks_table_size_bytes{{{WS}}}", "{{table}}"), w=8),
        timeseries_panel("Files per table", "short",
                         query(f"databricks_table_files{{{WS}}}", "{{table}}"), w=8),
        timeseries_panel("Average file size", "bytes",
                         query(f"databricks_table_size_bytes{{{WS}}} / on(workspace_id, table) "
                               f"(databricks_table_files{{{WS}}} > 0)", "{{table}}"),
                         query('databricks:alert_threshold{threshold="table_small_file_bytes"}',
                               "small-file threshold"),
                         w=8, description="Under 32 MiB per file with over 1000 files fires DatabricksTableSmallFiles: "
                                          "run OPTIMIZE."),
    ])
