"""The platform at a glance: what is failing, what it costs today against the budgets, what runs, what alerts."""

from __future__ import annotations

from .common import (BAD_IF_ANY, CURRENCY, FIRING_ALERTS, JOB_DRILLDOWN, JOB_FAILURE_RATIO_1H, JOB_LAST_RUN_FAILED,
                     MS, PIPELINE_NAME, RATE, WORKSPACE_NAME, WS, bargauge_panel, new_dashboard, query, row,
                     stat_panel, table_panel, timeseries_panel)

UID = "databricks-overview"


def build():
    return new_dashboard(UID, "The state of the Databricks platform at a glance: failing jobs and pipelines, cost "
                              "today against budget, compute running and the alerts firing.", [], [
        row("Now"),
        stat_panel("Jobs failing", "short",
                   query(f"count({JOB_LAST_RUN_FAILED}) or vector(0)"), thresholds=BAD_IF_ANY,
                   description="Jobs whose newest completed run failed and that have not succeeded since."),
        stat_panel("Job failure rate (1h)", "percentunit", query(JOB_FAILURE_RATIO_1H),
                   thresholds=[(None, "green"), (0.10, "orange"), (0.25, "red")],
                   description="Failed runs over runs that succeeded or failed in the last hour "
                               "(cancelled and skipped runs left out), as the DatabricksJobFailureRateHigh alert "
                               "counts them."),
        stat_panel("Pipelines unhealthy", "short",
                   query(f"count(databricks_pipeline_healthy{{{WS}}} == 0) or vector(0)"), thresholds=BAD_IF_ANY),
        stat_panel("Cost today", CURRENCY, query(f"sum(workspace:databricks_billing_cost_today:sum{{{WS}}})"),
                   description="Spend so far today (UTC) at list price, or after the configured discount. "
                               "Billing data arrives hours late."),
        stat_panel("Clusters running", "short",
                   query(f'sum(databricks_clusters{{{WS}, state="RUNNING"}}) or vector(0)')),
        stat_panel("Alerts firing", "short", query(f"count({FIRING_ALERTS}) or vector(0)"),
                   thresholds=BAD_IF_ANY),
        bargauge_panel("Budgets used today", "percentunit",
                       query('databricks_budget_spend{period="day"} '
                             '/ on(budget, period, currency) databricks_budget_limit{period="day"}', "{{budget}}",
                             instant=True),
                       w=8, h=6, max_value=1, thresholds=[(None, "green"), (0.8, "orange"), (1, "red")],
                       description="Each daily budget's spend so far against its limit (from the exporter's "
                                   "budget configuration)."),
        stat_panel("Warehouses running", "short",
                   query(f'count(databricks_warehouse_state{{{WS}, state="RUNNING"}} == 1) or vector(0)'),
                   w=4, h=6),
        stat_panel("Active job runs", "short", query(f"sum(databricks_job_runs_active{{{WS}}}) or vector(0)"),
                   w=4, h=6),
        stat_panel("Failing collectors", "short",
                   query(f"count(databricks_exporter_collector_up{{{WS}}} == 0) or vector(0)"),
                   thresholds=BAD_IF_ANY, w=4, h=6,
                   description="Collectors whose last cycle failed: their data, and the alerts on it, are stale."),
        stat_panel("Spend this month", CURRENCY, query(f'sum(databricks_billing_cost{{{WS}, period="month"}})'),
                   w=4, h=6),
        row("Needs attention"),
        table_panel("Firing alerts", "short", FIRING_ALERTS, value="firing", hide=("alertstate", "Value"),
                    w=24, h=7, description="Every Databricks alert firing now; the runbook and the dashboard to "
                                           "open are in the alert's annotations."),
        table_panel("Jobs whose last run failed", "dateTimeAsIso",
                    f"({JOB_LAST_RUN_FAILED}){MS} "
                    "* on(workspace_id, job_id) group_left(job_name, schedule_paused) databricks_job_info",
                    value="last failure", links={"job_name": JOB_DRILLDOWN}, sort_by="last failure",
                    description="Click a job for its drill-down."),
        table_panel("Unhealthy pipelines", "short",
                    f"(databricks_pipeline_healthy{{{WS}}} == 0) {PIPELINE_NAME}", value="healthy",
                    description="Pipelines the exporter reports unhealthy (FAILED, or updates failing)."),
        row("Trends"),
        timeseries_panel("Completed job runs by result", "cpm",
                         query(f"sum by (result_state) (rate(databricks_job_runs_total{{{WS}}}{RATE})) * 60",
                               "{{result_state}}"), w=8, stack=True),
        timeseries_panel("Clusters by state", "short",
                         query(f"sum by (state) (databricks_clusters{{{WS}}})", "{{state}}"), w=8, stack=True),
        timeseries_panel("Spend today by workspace", CURRENCY,
                         query(f"sum by (workspace_id) (workspace:databricks_billing_cost_today:sum{{{WS}}}) "
                               f"{WORKSPACE_NAME}", "{{workspace_name}}"), w=8),
    ])
