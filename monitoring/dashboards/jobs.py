"""Lakeflow Jobs: failure rates, which jobs fail or lag, queueing, and a drill-down into one job ($job)."""

from __future__ import annotations

from .common import (BAD_IF_ANY, CURRENCY, JOB_DRILLDOWN, JOB_FAILURE_RATIO_1H, JOB_LAST_RUN_FAILED, JOB_NAME, MS, RATE,
                     WORKSPACE_NAME, WS, info_variable, new_dashboard, query, row, stat_panel, table_panel,
                     timeseries_panel)

UID = "databricks-jobs"

JOB = f'{WS}, job_id="$job"'
FAILURE_RATIO_STEPS = [(None, "green"), (0.10, "orange"), (0.25, "red")]


def build():
    job = info_variable("job", "Job", "databricks_job_info", "job_id", "job_name", multi=False)
    return new_dashboard(UID, "Databricks jobs: completed runs by result, failure rates as the alerts count them, "
                              "jobs failing or without a recent success, queueing, and one job in detail.", [job], [
        row("Workspace"),
        stat_panel("Failure rate (1h)", "percentunit", query(JOB_FAILURE_RATIO_1H),
                   thresholds=FAILURE_RATIO_STEPS,
                   description="Failed (FAILED, TIMEDOUT, INTERNAL_ERROR) over concluded runs in the last hour; "
                               "cancelled and skipped runs are left out."),
        stat_panel("Failed runs (1h)", "short", query(f"sum(workspace:databricks_job_runs_failed:increase1h{{{WS}}})"),
                   decimals=0, thresholds=[(None, "green"), (1, "orange"), (6, "red")],
                   description="More than 5 in a workspace fires DatabricksJobFailureBurst."),
        stat_panel("Concluded runs (1h)", "short",
                   query(f"sum(workspace:databricks_job_runs_concluded:increase1h{{{WS}}})"), decimals=0),
        stat_panel("Jobs failing", "short", query(f"count({JOB_LAST_RUN_FAILED}) or vector(0)"),
                   thresholds=BAD_IF_ANY),
        stat_panel("Active runs", "short", query(f"sum(databricks_job_runs_active{{{WS}}}) or vector(0)")),
        stat_panel("Runs waiting to start", "short",
                   query(f'sum(databricks_job_runs_active{{{WS}, state=~"QUEUED|PENDING"}}) or vector(0)'),
                   thresholds=[(None, "green"), (1, "orange")],
                   description="Queued or pending runs: concurrency limits, or clusters that cannot start."),
        timeseries_panel("Completed runs by result", "cpm",
                         query(f"sum by (result_state) (rate(databricks_job_runs_total{{{WS}}}{RATE})) * 60",
                               "{{result_state}}"), stack=True),
        timeseries_panel("Repairs by result", "cpm",
                         query(f"sum by (result_state) (rate(databricks_job_run_repairs_total{{{WS}}}{RATE})) * 60",
                               "{{result_state}}"), stack=True,
                         description="Repairs (failed tasks re-run inside the same run), counted when each ends. A "
                                     "repaired run stays counted once among the completed runs, with its first "
                                     "result, so the failure rate is not lowered by repairing."),
        timeseries_panel("Failure rate (1h) by workspace", "percentunit",
                         query(f"workspace:databricks_job_runs:failure_ratio1h{{{WS}}} {WORKSPACE_NAME}",
                               "{{workspace_name}}"),
                         query('databricks:alert_threshold{threshold="job_failure_ratio_warning"}', "warning"),
                         query('databricks:alert_threshold{threshold="job_failure_ratio_critical"}', "critical"),
                         min_value=0,
                         description="The alert also needs at least 10 concluded runs in the hour."),
        timeseries_panel("Active runs by state", "short",
                         query(f"sum by (state) (databricks_job_runs_active{{{WS}}})", "{{state}}"), stack=True),
        timeseries_panel("Queue time of completed runs", "s",
                         query("histogram_quantile(0.5, sum by (le) "
                               f"(rate(databricks_job_run_queue_duration_seconds_bucket{{{WS}}}{RATE})))", "p50"),
                         query("histogram_quantile(0.9, sum by (le) "
                               f"(rate(databricks_job_run_queue_duration_seconds_bucket{{{WS}}}{RATE})))", "p90")),
        row("Jobs"),
        table_panel("Failure rate by job (1h)", "percentunit",
                    f"topk(20, workspace_job:databricks_job_runs:failure_ratio1h{{{WS}}}) {JOB_NAME}",
                    value="failure rate", links={"job_name": JOB_DRILLDOWN}, sort_by="failure rate",
                    description="The 20 jobs with the highest share of failed runs among those that concluded a "
                                "run in the last hour. Click a job for its drill-down."),
        table_panel("Jobs whose last run failed", "dateTimeAsIso",
                    f"({JOB_LAST_RUN_FAILED}){MS} "
                    "* on(workspace_id, job_id) group_left(job_name, schedule_paused) databricks_job_info",
                    value="last failure", links={"job_name": JOB_DRILLDOWN}, sort_by="last failure"),
        table_panel("Slowest jobs (median run, 6h)", "s",
                    f"topk(20, workspace_job:databricks_job_run_duration_seconds:p50_6h{{{WS}}}) {JOB_NAME}",
                    value="median run", links={"job_name": JOB_DRILLDOWN}, sort_by="median run"),
        table_panel("Longest without a success", "dtdurations",
                    f"topk(20, time() - workspace_job:databricks_job_last_success_timestamp_seconds:"
                    f"or_counting_since{{{WS}}}) "
                    "* on(workspace_id, job_id) group_left(job_name, schedule_paused) databricks_job_info",
                    value="since last success", links={"job_name": JOB_DRILLDOWN}, sort_by="since last success",
                    description="A job that has not succeeded since the exporter began counting shows the time "
                                "since then. Scheduled jobs over 24 hours fire DatabricksJobNoRecentSuccess."),
        timeseries_panel("Retries by job", "cpm",
                         query(f"topk(10, sum by (workspace_id, job_id) "
                               f"(rate(databricks_job_run_retries_total{{{WS}}}{RATE}))) * 60 {JOB_NAME}",
                               "{{job_name}}"), w=24,
                         description="Task attempts after the first inside a run, and legacy RETRY runs, of the "
                                     "10 jobs retrying most (one-time runs under _one_time)."),
        row("Cost of runs (system tables)"),
        stat_panel("Failed runs cost today", CURRENCY,
                   query(f"sum(workspace:databricks_job_run_cost_failed_today:sum{{{WS}}}) or vector(0)"),
                   thresholds=[(None, "green"), (100, "orange")],
                   description="List cost of today's usage by runs that ended FAILED, TIMEDOUT or INTERNAL_ERROR; "
                               "over 100 fires DatabricksJobFailedRunSpendHigh. Billing arrives hours late."),
        stat_panel("Repairs cost this month", CURRENCY,
                   query(f'sum(databricks_job_run_repair_cost{{{WS}, period="month"}}) or vector(0)'),
                   description="Usage billed after a run first ended: its repairs."),
        stat_panel("Average cost per run", CURRENCY,
                   query(f"sum(databricks_job_run_cost_per_run_sum{{{WS}}}) "
                         f"/ (sum(databricks_job_run_cost_per_run_count{{{WS}}}) > 0)"),
                   description="Over the runs the exporter has priced since it began counting (a run is priced "
                               "once its billing has settled, 12 hours after it ended)."),
        timeseries_panel("Cost of runs today by result", CURRENCY,
                         query(f'sum by (result_state) (databricks_job_run_cost{{{WS}, period="day"}})',
                               "{{result_state}}"), stack=True, w=6,
                         description="UNKNOWN is the all-purpose bucket: all-purpose cluster hours that ran job "
                                     "runs (billing names no run there). RUNNING: not ended yet."),
        table_panel("Cost of failed runs today by job", CURRENCY,
                    f'topk(20, sum by (workspace_id, job_id) (databricks_job_run_cost{{{WS}, period="day", '
                    f'result_state=~"FAILED|TIMEDOUT|INTERNAL_ERROR"}})) {JOB_NAME}',
                    value="failed cost", links={"job_name": JOB_DRILLDOWN}, sort_by="failed cost", w=9),
        table_panel("Cost of repairs this month by job", CURRENCY,
                    f'topk(20, sum by (workspace_id, job_id) (databricks_job_run_repair_cost{{{WS}, '
                    f'period="month"}})) {JOB_NAME}',
                    value="repair cost", links={"job_name": JOB_DRILLDOWN}, sort_by="repair cost", w=9),
        row("Job: ${job:text}"),
        stat_panel("Last success", "dateTimeFromNow",
                   query(f"max(databricks_job_last_success_timestamp_seconds{{{JOB}}}){MS}")),
        stat_panel("Last failure", "dateTimeFromNow",
                   query(f"max(databricks_job_last_failure_timestamp_seconds{{{JOB}}}){MS}")),
        stat_panel("Job failure rate (1h)", "percentunit",
                   query(f"workspace_job:databricks_job_runs:failure_ratio1h{{{JOB}}}"),
                   thresholds=FAILURE_RATIO_STEPS),
        stat_panel("Median run (6h)", "s", query(f"workspace_job:databricks_job_run_duration_seconds:p50_6h{{{JOB}}}")),
        stat_panel("Median run (7d)", "s", query(f"workspace_job:databricks_job_run_duration_seconds:p50_7d{{{JOB}}}"),
                   description="Twice this, and over 5 minutes, for the 6-hour median fires "
                               "DatabricksJobSlowerThanUsual."),
        stat_panel("Job active runs", "short", query(f"sum(databricks_job_runs_active{{{JOB}}}) or vector(0)")),
        timeseries_panel("Runs in the last hour by result", "short",
                         query(f"sum by (result_state) (workspace_job:databricks_job_runs:increase1h{{{JOB}}})",
                               "{{result_state}}"), w=8, decimals=0),
        timeseries_panel("Run duration", "s",
                         query(f"workspace_job:databricks_job_run_duration_seconds:p50_6h{{{JOB}}}", "median, 6h"),
                         query(f"workspace_job:databricks_job_run_duration_seconds:p50_7d{{{JOB}}}", "median, 7d"),
                         query("histogram_quantile(0.9, sum by (le) "
                               f"(workspace_job_le:databricks_job_run_duration_seconds_bucket:increase1h{{{JOB}}}))",
                               "p90, last hour"), w=8,
                         description="Set the time range to 7 days to see the job's last week."),
        timeseries_panel("Queue time per run", "s",
                         query(f"sum(rate(databricks_job_run_queue_duration_seconds_sum{{{JOB}}}{RATE})) "
                               f"/ sum(rate(databricks_job_run_queue_duration_seconds_count{{{JOB}}}{RATE}))",
                               "average"), w=8, min_interval="1h",
                         description="Average time a run of the job spent queued, per hour (a job runs minutes to "
                                     "hours apart)."),
    ])
