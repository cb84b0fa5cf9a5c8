"""The one configuration of the monitoring unit: job selector, alert thresholds and `for` durations, links.

In the manner of kubernetes-mixin's config.libsonnet: the alerts, the recording rules, the dashboards and the
runbook links are all produced from these values by `python -m monitoring`. Change a value here, regenerate,
and every file that uses it follows.
"""

from __future__ import annotations

# The scrape job prometheus/prometheus.yml gives the exporter. Only series Prometheus makes itself (up, scrape_*)
# carry it for certain, so only those are selected by it: the exporter's own series are found by their names.
JOB = "databricks"
JOB_SELECTOR = f'job="{JOB}"'

# Every alert's runbook_url is this plus "#" and its name in lower case, the anchor GitHub gives the heading
# "### <AlertName>" in docs/runbook.md.
RUNBOOK_URL = "https://github.com/databricks-exporter/databricks-exporter/blob/main/docs/runbook.md"

# Prefix of every alert's dashboard_url, which is "<this>/d/<uid>". Empty: the annotation is a path, and the
# Alertmanager template (alertmanager/templates/databricks.tmpl, `databricks.grafana_url`) prepends where
# Grafana runs. Set a full URL here only if the template's is emptied.
DASHBOARD_BASE_URL = ""

# Every dashboard, uid -> title after "Databricks / ", in the order of the links bar. Alert annotations and
# bookmarks link to /d/<uid>, so a uid never changes.
DASHBOARDS = {
    "databricks-overview": "Overview",
    "databricks-compute": "Compute",
    "databricks-jobs": "Jobs",
    "databricks-sql": "SQL warehouses",
    "databricks-pipelines": "Pipelines and data quality",
    "databricks-cost": "Cost and budgets",
    "databricks-serving": "Model serving",
    "databricks-security": "Security",
    "databricks-exporter": "Exporter health",
}

# Every tunable alert threshold. Each becomes the constant series databricks:alert_threshold{threshold="<name>"}
# in recording.yml, which the alerts compare against: the values can be graphed, and changed in the generated
# file without a rebuild. docs/runbook.md#thresholds says what each one means. Budgets and table freshness SLOs
# are not here: they come from the exporter's configuration (databricks_budget_limit,
# databricks_table_freshness_slo_seconds).
THRESHOLDS: dict[str, float] = {
    # Exporter
    "reconciliation_difference": 1,
    # Jobs
    "job_failure_ratio_warning": 0.10,
    "job_failure_ratio_critical": 0.25,
    "job_failure_min_runs": 10,
    "job_failed_runs_burst": 5,
    "job_no_success_seconds": 86400,
    "job_slow_factor": 2,
    "job_slow_min_seconds": 300,
    # Compute
    "cluster_cpu_ratio_warning": 0.90,
    "cluster_cpu_ratio_critical": 0.95,
    "cluster_memory_ratio_warning": 0.85,
    "cluster_memory_ratio_critical": 0.90,
    "cluster_idle_cpu_ratio": 0.05,
    # SQL warehouses and queries
    "query_slow_count": 0,
    "query_error_ratio": 0.05,
    "query_error_min_queries": 20,
    "warehouse_queued_queries": 0,
    "warehouse_idle_cost_hourly": 5,          # in the billing currency
    # Pipelines and tables
    "pipeline_expectation_pass_ratio": 0.95,
    "pipeline_drop_ratio": 0.05,
    "pipeline_min_records": 100,
    "pipeline_backlog_seconds": 3600,
    "table_small_file_bytes": 33554432,        # 32 MiB; Delta's target is 128-256 MiB per file
    "table_small_files_min_files": 1000,
    # Cost
    "cost_spike_ratio": 1.5,
    "cost_spike_min_amount": 100,
    "budget_forecast_from_day": 4,
    "billing_stale_seconds": 86400,
    # Model serving
    "serving_5xx_ratio": 0.05,
    "serving_min_requests_5m": 50,
    "serving_latency_p90_seconds": 0.5,           # custom models (endpoints without a task)
    "serving_llm_latency_p90_seconds": 10,        # endpoints with a task (llm/v1/chat, ...): answers take seconds
    # Security
    "failed_logins_15m": 20,
    "job_failed_run_cost_daily": 100,         # in the billing currency
}

# When changes to admin rights are expected (a change process's window), in UTC: Monday to Friday from
# start_hour to end_hour. DatabricksAdminPermissionChange fires for a change outside it. Recorded as the series
# databricks:change_window:open (1 inside the window, absent outside).
CHANGE_WINDOW = {"weekdays": (1, 5), "start_hour": 8, "end_hour": 18}    # day_of_week(): 0 = Sunday

# How old a collector's last success may get before DatabricksCollectorDataStale, about five of its default
# intervals (and never under 10 minutes); recorded as the threshold collector_stale_seconds with a collector
# label. A collector not listed gets "default". Raise a collector's value when its interval is raised.
COLLECTOR_STALE_SECONDS: dict[str, int] = {
    "clusters": 600,
    "warehouses": 600,
    "jobs": 600,
    "queries": 600,
    "pipelines": 600,
    "utilization": 1800,
    "billing": 3600,
    "serving": 600,
    "audit": 3600,
    "serving_usage": 3600,
    "predictive_optimization": 14400,
    "job_costs": 4500,
    "warehouse_usage": 4500,
    "reconciliation": 4500,
    "default": 3600,
}

# How long each alert's condition must hold before it fires (`for:`), by alert name; an alert not listed fires at
# once. PromQL cannot read a duration from a series, so these are written into alerts.yml. Both steps (warning
# and critical) of an alert share its duration. Descriptions that say "for 15 minutes" name these values: change
# both together.
FOR: dict[str, str] = {
    "DatabricksExporterDown": "5m",
    "DatabricksExporterAbsent": "10m",
    "DatabricksCollectorFailing": "15m",
    "DatabricksCollectorDataStale": "5m",
    "DatabricksReconciliationMismatch": "15m",
    "DatabricksJobFailureRateHigh": "5m",
    "DatabricksJobRunsStuckInQueue": "30m",
    "DatabricksClusterCPUHigh": "15m",
    "DatabricksClusterMemoryHigh": "15m",
    "DatabricksClusterIdle": "2h",
    "DatabricksQueryErrorRateHigh": "5m",
    "DatabricksWarehouseQueueing": "15m",
    "DatabricksWarehouseUnhealthy": "10m",
    "DatabricksPipelineFailed": "5m",
    "DatabricksPipelineBacklogHigh": "15m",
    "DatabricksTableStale": "10m",
    "DatabricksTableSmallFiles": "1h",
    "DatabricksServingEndpointErrorRateHigh": "5m",
    "DatabricksServingEndpointLatencyHigh": "10m",
    "DatabricksServingEndpointNotReady": "15m",
}


def runbook_url(alert: str) -> str:
    return f"{RUNBOOK_URL}#{alert.lower()}"


def dashboard_path(uid: str) -> str:
    """Where Grafana serves a dashboard, as links inside Grafana name it."""
    if uid not in DASHBOARDS:
        raise KeyError(f"no dashboard with uid {uid!r} in monitoring.config.DASHBOARDS")
    return f"/d/{uid}"


def dashboard_url(uid: str) -> str:
    """The dashboard as an alert's dashboard_url names it."""
    return DASHBOARD_BASE_URL + dashboard_path(uid)
