"""Every metric the exporter can serve, defined once: collectors emit these, docs/metrics.md is generated from them."""

from __future__ import annotations

from dataclasses import dataclass

GAUGE, COUNTER, HISTOGRAM = "gauge", "counter", "histogram"

# Batch jobs run from seconds to a day; the buckets cover that range with enough resolution around
# the minutes-to-hours band where SLAs live.
JOB_DURATION_BUCKETS = (10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400)
QUEUE_DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200)


@dataclass(frozen=True)
class Metric:
    name: str
    type: str
    help: str
    labels: tuple[str, ...]
    unit: str = ""
    source: str = ""
    collector: str = "exporter"
    buckets: tuple[float, ...] = ()

    @property
    def sample_name(self) -> str:
        """Name of the sample line in the text format (counters carry _total in their family name already)."""
        return self.name


REGISTRY: dict[str, Metric] = {}


def define(name, type, help, labels, unit="", source="", collector="exporter", buckets=()) -> Metric:
    if name in REGISTRY:
        raise ValueError(f"metric {name} defined twice")
    if type == COUNTER and not name.endswith("_total"):
        raise ValueError(f"counter {name} must end in _total")
    metric = Metric(name, type, help, tuple(labels), unit, source, collector, tuple(buckets))
    REGISTRY[name] = metric
    return metric


WS = ("workspace_id",)

# --- the exporter itself -------------------------------------------------------------------------
BUILD_INFO = define(
    "databricks_exporter_build_info", GAUGE, "Build of the exporter; always 1.", ("version", "python_version"))
WORKSPACE_INFO = define(
    "databricks_workspace_info", GAUGE, "A watched workspace; always 1.",
    ("workspace_id", "workspace_name", "host"), source="GET /.well-known/databricks-config, SCIM Me")
COLLECTOR_UP = define(
    "databricks_exporter_collector_up", GAUGE,
    "Whether the collector's last cycle succeeded (1) or failed or timed out (0).", WS + ("collector",))
COLLECTOR_DURATION = define(
    "databricks_exporter_collector_duration_seconds", GAUGE,
    "How long the collector's last cycle took.", WS + ("collector",), unit="seconds")
COLLECTOR_LAST_SUCCESS = define(
    "databricks_exporter_collector_last_success_timestamp_seconds", GAUGE,
    "When the collector's last successful cycle ended.", WS + ("collector",), unit="seconds")
COUNTING_SINCE = define(
    "databricks_exporter_counting_since_timestamp_seconds", GAUGE,
    "Where exactly-once counting of completed work began for this collector (persisted across restarts).",
    WS + ("collector",), unit="seconds")
API_REQUESTS = define(
    "databricks_exporter_api_requests_total", COUNTER,
    "Requests sent to the Databricks REST API, by endpoint (ids replaced by placeholders) and HTTP status.",
    WS + ("endpoint", "status_code"))

MALFORMED_ITEMS = define(
    "databricks_exporter_malformed_items_total", COUNTER,
    "Items (runs, clusters, events, ...) skipped because their payload could not be understood; an item that stays "
    "in a listing is skipped, and counted, again each cycle.",
    WS + ("collector",))
SERIES_DROPPED = define(
    "databricks_exporter_series_dropped", GAUGE,
    "Series the cardinality guard folded into entity \"_other\" (or dropped) in the collector's last cycle, because "
    "the collector's series ceiling was reached (cardinality.max_series_per_collector / _per_workspace).",
    WS + ("collector",))

# --- clusters -----------------------------------------------------------------------------------
_CL = dict(collector="clusters", source="GET /api/2.1/clusters/list")
CLUSTERS = define(
    "databricks_clusters", GAUGE, "Clusters that are not terminated, by state and source.",
    WS + ("state", "cluster_source"), **_CL)
CLUSTER_INFO = define(
    "databricks_cluster_info", GAUGE, "A cluster that is not terminated; always 1.",
    WS + ("cluster_id", "cluster_name", "cluster_source", "node_type", "driver_node_type", "spark_version",
          "runtime_engine"), **_CL)
CLUSTER_STATE = define(
    "databricks_cluster_state", GAUGE, "The cluster's current state (1 for the current state).",
    WS + ("cluster_id", "state"), **_CL)
CLUSTER_WORKERS = define(
    "databricks_cluster_workers", GAUGE, "Worker nodes the cluster has now (executors, or num_workers).",
    WS + ("cluster_id",), **_CL)
CLUSTER_AUTOSCALE_MIN = define(
    "databricks_cluster_autoscale_min_workers", GAUGE, "Autoscaling lower bound (absent for fixed-size clusters).",
    WS + ("cluster_id",), **_CL)
CLUSTER_AUTOSCALE_MAX = define(
    "databricks_cluster_autoscale_max_workers", GAUGE, "Autoscaling upper bound (absent for fixed-size clusters).",
    WS + ("cluster_id",), **_CL)
CLUSTER_CORES = define(
    "databricks_cluster_cores", GAUGE, "CPU cores of the whole cluster.", WS + ("cluster_id",), **_CL)
CLUSTER_MEMORY = define(
    "databricks_cluster_memory_bytes", GAUGE, "Memory of the whole cluster.", WS + ("cluster_id",),
    unit="bytes", **_CL)
CLUSTER_START = define(
    "databricks_cluster_start_timestamp_seconds", GAUGE, "When the cluster last started (or restarted).",
    WS + ("cluster_id",), unit="seconds", **_CL)
CLUSTER_TERMINATIONS = define(
    "databricks_cluster_terminations_total", COUNTER,
    "Clusters seen terminating, by source and termination reason.",
    WS + ("cluster_source", "termination_code", "termination_type"), collector="clusters",
    source="GET /api/2.1/clusters/list, GET /api/2.1/clusters/get")
CLUSTER_EVENTS = define(
    "databricks_cluster_events_total", COUNTER, "Cluster events of clusters that are not terminated, by type.",
    WS + ("cluster_id", "event_type"), collector="clusters", source="POST /api/2.1/clusters/events")

# --- SQL warehouses -----------------------------------------------------------------------------
_WH = dict(collector="warehouses", source="GET /api/2.0/sql/warehouses")
WAREHOUSE_INFO = define(
    "databricks_warehouse_info", GAUGE, "A SQL warehouse; always 1.",
    WS + ("warehouse_id", "warehouse_name", "cluster_size", "warehouse_type", "serverless"), **_WH)
WAREHOUSE_STATE = define(
    "databricks_warehouse_state", GAUGE, "The warehouse's current state (1 for the current state).",
    WS + ("warehouse_id", "state"), **_WH)
WAREHOUSE_CLUSTERS = define(
    "databricks_warehouse_clusters", GAUGE, "Clusters the warehouse runs now.", WS + ("warehouse_id",), **_WH)
WAREHOUSE_MIN_CLUSTERS = define(
    "databricks_warehouse_min_clusters", GAUGE, "Lower bound of the warehouse's scaling.", WS + ("warehouse_id",),
    **_WH)
WAREHOUSE_MAX_CLUSTERS = define(
    "databricks_warehouse_max_clusters", GAUGE, "Upper bound of the warehouse's scaling.", WS + ("warehouse_id",),
    **_WH)
WAREHOUSE_HEALTH = define(
    "databricks_warehouse_health", GAUGE, "The warehouse's health status (1 for the current status).",
    WS + ("warehouse_id", "status"), **_WH)

# --- jobs ---------------------------------------------------------------------------------------
_JOBS = dict(collector="jobs", source="GET /api/2.2/jobs/runs/list")
JOB_INFO = define(
    "databricks_job_info", GAUGE, "A job; always 1. schedule_paused is true, false, or none (no schedule).",
    WS + ("job_id", "job_name", "schedule_paused"), collector="jobs", source="GET /api/2.2/jobs/list")
JOB_RUNS = define(
    "databricks_job_runs_total", COUNTER,
    "Completed job runs, counted once each, by result (result_state, else the life_cycle_state such as SKIPPED) "
    "and trigger.", WS + ("job_id", "result_state", "trigger"), **_JOBS)
JOB_RUN_DURATION = define(
    "databricks_job_run_duration_seconds", HISTOGRAM,
    "Duration of completed job runs, queueing excluded.", WS + ("job_id",), unit="seconds",
    buckets=JOB_DURATION_BUCKETS, **_JOBS)
JOB_RUN_QUEUE_DURATION = define(
    "databricks_job_run_queue_duration_seconds", HISTOGRAM,
    "Time completed job runs spent queued.", WS + ("job_id",), unit="seconds",
    buckets=QUEUE_DURATION_BUCKETS, **_JOBS)
JOB_RUN_RETRIES = define(
    "databricks_job_run_retries_total", COUNTER,
    "Retry attempts in completed job runs: task attempts after the first, and runs that are retries.",
    WS + ("job_id",), **_JOBS)
JOB_RUNS_ACTIVE = define(
    "databricks_job_runs_active", GAUGE, "Job runs not yet finished, by state.",
    WS + ("job_id", "state"), **_JOBS)
JOB_LAST_SUCCESS = define(
    "databricks_job_last_success_timestamp_seconds", GAUGE,
    "When the job's newest successful run ended (among runs the exporter has counted).",
    WS + ("job_id",), unit="seconds", **_JOBS)
JOB_LAST_FAILURE = define(
    "databricks_job_last_failure_timestamp_seconds", GAUGE,
    "When the job's newest failed run (FAILED, TIMEDOUT, INTERNAL_ERROR) ended.",
    WS + ("job_id",), unit="seconds", **_JOBS)
JOB_TASK_RUNS = define(
    "databricks_job_task_runs_total", COUNTER,
    "Completed task runs of completed job runs, by task and result (opt-in: jobs.task_metrics).",
    WS + ("job_id", "task_key", "result_state"), **_JOBS)

# --- push sinks (the exporter itself) ------------------------------------------------------------
PUSH = define(
    "databricks_exporter_push_total", COUNTER,
    "Pushes of the metric store to a sink (cloudwatch, otlp), by outcome (success or failure).",
    ("sink", "outcome"))
PUSH_LAST_SUCCESS = define(
    "databricks_exporter_push_last_success_timestamp_seconds", GAUGE,
    "When the sink's last successful push ended.", ("sink",), unit="seconds")
