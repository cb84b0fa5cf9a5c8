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
FORBIDDEN_ITEMS = define(
    "databricks_exporter_forbidden_items_total", COUNTER,
    "Items (a run, a pipeline's event log, a cluster's events) skipped because the credential may list them but not "
    "read them (403); the rest of the cycle applies. An item still forbidden is skipped, and counted, each time it "
    "is read again.",
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
    "Completed job runs, counted once each at their first terminal state (a later repair changes nothing here), by "
    "result (from status.termination_details, else state: SUCCESS, FAILED, TIMEDOUT, CANCELED, SKIPPED, "
    "INTERNAL_ERROR, ...) and trigger. One-time runs (runs/submit, notebook workflows, any job not in jobs/list) "
    "count under job_id \"_one_time\".", WS + ("job_id", "result_state", "trigger"), **_JOBS)
JOB_RUN_REPAIRS = define(
    "databricks_job_run_repairs_total", COUNTER,
    "Repairs of job runs (runs/repair: failed tasks re-run inside the same run), counted once each when the repair "
    "ends, by its result.", WS + ("job_id", "result_state"), **_JOBS)
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
    "Retries in completed job runs, each counted once with its run: a task attempt after the first inside the run "
    "(multitask format), or the run itself when it is a legacy RETRY run.",
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

# --- pipelines (Lakeflow Declarative Pipelines, DLT) ---------------------------------------------
# Triggered updates take minutes to hours; continuous ones run for days until a restart.
PIPELINE_UPDATE_BUCKETS = (30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200, 86400)
_PL = dict(collector="pipelines", source="GET /api/2.0/pipelines")
_PLE = dict(collector="pipelines", source="GET /api/2.0/pipelines/{id}/events")
PIPELINE_INFO = define(
    "databricks_pipeline_info", GAUGE,
    "A pipeline; always 1. continuous, serverless and development (development mode) are true or false, from "
    "the pipeline's spec.",
    WS + ("pipeline_id", "pipeline_name", "continuous", "serverless", "development"), collector="pipelines",
    source="GET /api/2.0/pipelines, GET /api/2.0/pipelines/{id}")
PIPELINE_STATE = define(
    "databricks_pipeline_state", GAUGE,
    "The pipeline's current state (1 for the current state: IDLE, DEPLOYING, STARTING, RUNNING, STOPPING, "
    "RECOVERING, RESETTING, FAILED, DELETED).", WS + ("pipeline_id", "state"), **_PL)
PIPELINE_HEALTHY = define(
    "databricks_pipeline_healthy", GAUGE, "Whether the pipeline reports itself HEALTHY (1) or UNHEALTHY (0).",
    WS + ("pipeline_id",), **_PL)
PIPELINE_UPDATES = define(
    "databricks_pipeline_updates_total", COUNTER,
    "Pipeline updates that ended, counted once each when their terminal update_progress event (COMPLETED, "
    "FAILED, CANCELED) appears in the event log, by that state and the update's cause.",
    WS + ("pipeline_id", "state", "cause"), **_PLE)
PIPELINE_UPDATE_DURATION = define(
    "databricks_pipeline_update_duration_seconds", HISTOGRAM,
    "Duration of ended pipeline updates, from creation (queueing and cluster start included) to the terminal "
    "state.", WS + ("pipeline_id",), unit="seconds", buckets=PIPELINE_UPDATE_BUCKETS, **_PLE)
PIPELINE_LAST_SUCCESS = define(
    "databricks_pipeline_last_success_timestamp_seconds", GAUGE,
    "When the pipeline's newest COMPLETED update ended (among updates the exporter has counted).",
    WS + ("pipeline_id",), unit="seconds", **_PLE)
PIPELINE_FLOW_OUTPUT_ROWS = define(
    "databricks_pipeline_flow_output_rows_total", COUNTER,
    "Rows the flow wrote: the sum of num_output_rows over its flow_progress events (each reports one batch).",
    WS + ("pipeline_id", "flow_name"), **_PLE)
PIPELINE_FLOW_FAILURES = define(
    "databricks_pipeline_flow_failures_total", COUNTER, "flow_progress events of the flow with status FAILED.",
    WS + ("pipeline_id", "flow_name"), **_PLE)
PIPELINE_FLOW_BACKLOG_BYTES = define(
    "databricks_pipeline_flow_backlog_bytes", GAUGE,
    "Bytes waiting in the streaming flow's source, as of its newest flow_progress event that reported a backlog.",
    WS + ("pipeline_id", "flow_name"), unit="bytes", **_PLE)
PIPELINE_FLOW_BACKLOG_RECORDS = define(
    "databricks_pipeline_flow_backlog_records", GAUGE,
    "Records waiting in the streaming flow's source, as of its newest flow_progress event that reported them.",
    WS + ("pipeline_id", "flow_name"), **_PLE)
PIPELINE_FLOW_BACKLOG_FILES = define(
    "databricks_pipeline_flow_backlog_files", GAUGE,
    "Files waiting in the streaming flow's source (Auto Loader), as of its newest flow_progress event that "
    "reported them.", WS + ("pipeline_id", "flow_name"), **_PLE)
PIPELINE_FLOW_BACKLOG_SECONDS = define(
    "databricks_pipeline_flow_backlog_seconds", GAUGE,
    "How far the streaming flow lags behind its source (processing lag), as of its newest flow_progress event "
    "that reported it.", WS + ("pipeline_id", "flow_name"), unit="seconds", **_PLE)
PIPELINE_DROPPED_RECORDS = define(
    "databricks_pipeline_dropped_records_total", COUNTER,
    "Records dropped by the dataset's expect_or_drop expectations (flow_progress data_quality.dropped_records).",
    WS + ("pipeline_id", "dataset"), **_PLE)
PIPELINE_EXPECTATION_RECORDS = define(
    "databricks_pipeline_expectation_records_total", COUNTER,
    "Records checked by each expectation, by outcome (passed or failed), from flow_progress data_quality; "
    "pass rate = passed / (passed + failed).", WS + ("pipeline_id", "dataset", "expectation", "outcome"), **_PLE)
PIPELINE_EVENTS = define(
    "databricks_pipeline_events_total", COUNTER, "Entries of the pipeline's event log, by level (INFO, WARN, ERROR, "
    "METRICS).", WS + ("pipeline_id", "level"), **_PLE)
PIPELINE_EXECUTORS = define(
    "databricks_pipeline_executors", GAUGE,
    "Executors of the pipeline's compute in its newest cluster_resources event while an update runs; 0 when none "
    "runs.", WS + ("pipeline_id",), **_PLE)
PIPELINE_TASK_SLOT_UTILIZATION = define(
    "databricks_pipeline_task_slot_utilization_ratio", GAUGE,
    "Average task slot utilization (0..1) in the pipeline's newest cluster_resources event, while an update runs.",
    WS + ("pipeline_id",), unit="ratio", **_PLE)

# --- SQL on a warehouse (the exporter itself) ----------------------------------------------------
# From 50 ms (a cached result) to an hour, with 60 s and 300 s among the bounds so "slower than 5 minutes" is a bucket.
QUERY_DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
_SQLX = dict(source="databricks-sql-connector (Thrift) on the configured warehouse_id")
SQL_QUERIES = define(
    "databricks_exporter_sql_queries_total", COUNTER,
    "SQL statements the exporter ran on the workspace's SQL warehouse, by collector and outcome (success, error), "
    "and statements not sent because the warehouse was stopped and wake_warehouse is false (skipped).",
    WS + ("collector", "outcome"), **_SQLX)
SQL_QUERY_DURATION = define(
    "databricks_exporter_sql_query_duration_seconds", HISTOGRAM,
    "How long the exporter's SQL statements took, warehouse start-up and retries included.",
    WS + ("collector",), unit="seconds", buckets=QUERY_DURATION_BUCKETS, **_SQLX)
SQL_ESTIMATED_DBUS = define(
    "databricks_exporter_sql_estimated_dbus_total", COUNTER,
    "What the exporter's own SQL statements cost the warehouse, estimated: their duration times the DBUs per hour of "
    "one cluster of the warehouse's size (Databricks' published rates). A warehouse bills while it runs, so a "
    "warehouse woken or kept awake only for the exporter costs more than this.",
    WS + ("collector",), **_SQLX)
SQL_DATA_STALE = define(
    "databricks_exporter_sql_data_stale", GAUGE,
    "1 when the collector's last cycle did not query (its warehouse was stopped and wake_warehouse is false): its "
    "metrics are the values of its last refresh. 0 after a refresh.", WS + ("collector",), **_SQLX)
SQL_LAST_REFRESH = define(
    "databricks_exporter_sql_last_refresh_timestamp_seconds", GAUGE,
    "When the collector last read its system tables.", WS + ("collector",), unit="seconds", **_SQLX)

# --- billing and budgets ------------------------------------------------------------------------
_BILL = dict(collector="billing", source="system.billing.usage JOIN system.billing.list_prices")
_COST_HELP = ("priced at the list price valid when the usage happened, less the discount configured for the billing "
              "collector (discount, sku_discounts), so what the customer pays; with no discount configured it is the "
              "list cost (see databricks_billing_cost_basis_info). Retractions and restatements are included. "
              "period is day (the current UTC day) or month (the UTC month to date).")
BILLING_USAGE = define(
    "databricks_billing_usage", GAUGE,
    "Usage (DBUs, or the SKU's usage_unit) by SKU and product, retractions and restatements included. period is day "
    "(the current UTC day) or month (the UTC month to date).",
    WS + ("sku_name", "billing_origin_product", "usage_unit", "period"), **_BILL)
BILLING_COST = define(
    "databricks_billing_cost", GAUGE, "Cost by SKU and product, " + _COST_HELP,
    WS + ("sku_name", "billing_origin_product", "currency", "period"), **_BILL)
BILLING_COST_BY_JOB = define(
    "databricks_billing_cost_by_job", GAUGE, "Cost of the job's compute (usage_metadata.job_id), " + _COST_HELP,
    WS + ("job_id", "currency", "period"), **_BILL)
BILLING_COST_BY_WAREHOUSE = define(
    "databricks_billing_cost_by_warehouse", GAUGE,
    "Cost of the SQL warehouse (usage_metadata.warehouse_id), " + _COST_HELP,
    WS + ("warehouse_id", "currency", "period"), **_BILL)
BILLING_COST_BY_PIPELINE = define(
    "databricks_billing_cost_by_pipeline", GAUGE,
    "Cost of the pipeline (usage_metadata.dlt_pipeline_id), " + _COST_HELP,
    WS + ("pipeline_id", "currency", "period"), **_BILL)
BILLING_COST_BY_TAG = define(
    "databricks_billing_cost_by_tag", GAUGE,
    "Cost by the value of each tag key named in billing.tag_keys (custom_tags); usage without the tag has "
    "tag_value=\"\". " + _COST_HELP, WS + ("tag_key", "tag_value", "currency", "period"), **_BILL)
BILLING_LATEST = define(
    "databricks_billing_usage_latest_timestamp_seconds", GAUGE,
    "The newest usage_end_time in system.billing.usage for the workspace: how far the billing feed has arrived.",
    WS, unit="seconds", collector="billing", source="system.billing.usage")
BILLING_FORECAST = define(
    "databricks_billing_month_forecast_cost", GAUGE,
    "The UTC month's cost: the closed days of the month so far plus today and the rest of the month at the average "
    "daily cost of the last 7 closed days (same basis as databricks_billing_cost).",
    WS + ("currency",), **_BILL)
BILLING_COST_BASIS = define(
    "databricks_billing_cost_basis_info", GAUGE,
    "Which cost the billing cost metrics carry: basis=list (list prices) or basis=discounted (list prices less the "
    "configured discounts); always 1.", WS + ("basis",), **_BILL)
BUDGET_LIMIT = define(
    "databricks_budget_limit", GAUGE, "A budget from the configuration (billing.budgets): its amount per period.",
    ("budget", "period", "currency"), collector="billing", source="configuration")
BUDGET_SPEND = define(
    "databricks_budget_spend", GAUGE,
    "Spend against the budget in its current period (UTC day or month to date) over the usage its filters select "
    "(workspaces, tags, products), on the same basis as databricks_billing_cost.",
    ("budget", "period", "currency"), **_BILL)

# --- node utilization ---------------------------------------------------------------------------
_UTIL = dict(collector="utilization", source="system.compute.node_timeline")
_ROLE = WS + ("cluster_id", "node_role")
CLUSTER_CPU = define(
    "databricks_cluster_cpu_utilization_ratio", GAUGE,
    "CPU busy (user + system) of the running cluster's nodes of this role (driver or worker) in the latest complete "
    "minute, averaged over the nodes.", _ROLE, unit="ratio", **_UTIL)
CLUSTER_MEMORY_UTILIZATION = define(
    "databricks_cluster_memory_utilization_ratio", GAUGE,
    "Memory in use on the cluster's nodes of this role in the latest complete minute, averaged over the nodes.",
    _ROLE, unit="ratio", **_UTIL)
CLUSTER_SWAP = define(
    "databricks_cluster_swap_utilization_ratio", GAUGE,
    "Swap in use on the cluster's nodes of this role in the latest complete minute, averaged over the nodes.",
    _ROLE, unit="ratio", **_UTIL)
CLUSTER_DISK_FREE = define(
    "databricks_cluster_disk_free_bytes", GAUGE,
    "Free disk of each node's fullest mount point in the latest complete minute, averaged over the nodes of this "
    "role.", _ROLE, unit="bytes", **_UTIL)
CLUSTER_NET_RECEIVED = define(
    "databricks_cluster_network_received_bytes_total", COUNTER,
    "Bytes the cluster's nodes of this role received, minute by minute as node_timeline reports them (series of "
    "clusters that stopped running are dropped).", _ROLE, unit="bytes", **_UTIL)
CLUSTER_NET_SENT = define(
    "databricks_cluster_network_sent_bytes_total", COUNTER,
    "Bytes the cluster's nodes of this role sent, minute by minute as node_timeline reports them (series of "
    "clusters that stopped running are dropped).", _ROLE, unit="bytes", **_UTIL)
CLUSTER_UTILIZATION_LATEST = define(
    "databricks_cluster_utilization_latest_timestamp_seconds", GAUGE,
    "End of the latest minute node_timeline has for the running cluster (the minute the utilization gauges show).",
    WS + ("cluster_id",), unit="seconds", **_UTIL)

# --- SQL queries --------------------------------------------------------------------------------
_Q = dict(collector="queries", source="GET /api/2.0/sql/history/queries")
_WHQ = WS + ("warehouse_id",)
QUERIES = define(
    "databricks_queries_total", COUNTER,
    "Queries that ended (FINISHED, FAILED, CANCELED), counted once each by query id, by status and statement type.",
    _WHQ + ("status", "statement_type"), **_Q)
QUERY_DURATION = define(
    "databricks_query_duration_seconds", HISTOGRAM,
    "Duration of ended queries, from submission to the end of result fetching (queueing included).", _WHQ,
    unit="seconds", buckets=QUERY_DURATION_BUCKETS, **_Q)
QUERY_QUEUE_DURATION = define(
    "databricks_query_queue_duration_seconds", HISTOGRAM,
    "Time ended queries waited in a queue (for the warehouse to start, or for capacity); 0 for most.", _WHQ,
    unit="seconds", buckets=QUERY_DURATION_BUCKETS, **_Q)
QUERY_READ_BYTES = define(
    "databricks_query_read_bytes_total", COUNTER, "Bytes ended queries read.", _WHQ, unit="bytes", **_Q)
QUERY_SPILLED_BYTES = define(
    "databricks_query_spilled_bytes_total", COUNTER, "Bytes ended queries spilled to disk.", _WHQ, unit="bytes",
    **_Q)
QUERY_READ_ROWS = define(
    "databricks_query_read_rows_total", COUNTER, "Rows ended queries read.", _WHQ, **_Q)
QUERY_PRODUCED_ROWS = define(
    "databricks_query_produced_rows_total", COUNTER, "Rows ended queries produced.", _WHQ, **_Q)
QUERY_CACHE_HITS = define(
    "databricks_query_result_cache_hits_total", COUNTER,
    "Ended queries answered from the result cache.", _WHQ, **_Q)
QUERIES_ACTIVE = define(
    "databricks_queries_active", GAUGE, "Queries on the warehouse now, by status: QUEUED or RUNNING (compiling "
    "included).", _WHQ + ("status",), **_Q)

# --- Delta tables --------------------------------------------------------------------------------
_TB = dict(collector="tables")
_TBL = WS + ("table",)
TABLE_SIZE = define(
    "databricks_table_size_bytes", GAUGE, "Size of the files of the table's current version (sizeInBytes).", _TBL,
    unit="bytes", source="DESCRIBE DETAIL", **_TB)
TABLE_FILES = define(
    "databricks_table_files", GAUGE,
    "Files in the table's current version (numFiles); size_bytes / files is the average file size.", _TBL,
    source="DESCRIBE DETAIL", **_TB)
TABLE_LAST_MODIFIED = define(
    "databricks_table_last_modified_timestamp_seconds", GAUGE,
    "When data was last written to the table: the newest commit that changed data (WRITE, MERGE, STREAMING "
    "UPDATE, DELETE, ...; maintenance such as OPTIMIZE and VACUUM does not count).", _TBL, unit="seconds",
    source="DESCRIBE DETAIL, DESCRIBE HISTORY", **_TB)
TABLE_LAST_OPTIMIZE = define(
    "databricks_table_last_optimize_timestamp_seconds", GAUGE,
    "When the table was last OPTIMIZEd (absent until an OPTIMIZE has been seen in its history).", _TBL,
    unit="seconds", source="DESCRIBE HISTORY", **_TB)
TABLE_LAST_VACUUM = define(
    "databricks_table_last_vacuum_timestamp_seconds", GAUGE,
    "When the table's last VACUUM ended (absent until a VACUUM has been seen in its history).", _TBL,
    unit="seconds", source="DESCRIBE HISTORY", **_TB)
TABLE_FRESHNESS_SLO = define(
    "databricks_table_freshness_slo_seconds", GAUGE,
    "The table's maximum staleness from the configuration (collectors.tables, max_staleness of the table or its "
    "schema): how old its last write may be.", _TBL, unit="seconds", source="configuration", **_TB)
TABLE_DESCRIBE_ERRORS = define(
    "databricks_table_describe_errors_total", COUNTER,
    "Cycles in which the table could not be described (dropped, renamed, no permission); the other tables are "
    "read as usual and this table's series are absent.", _TBL, source="DESCRIBE DETAIL, DESCRIBE HISTORY", **_TB)

# --- model serving endpoints ---------------------------------------------------------------------
_SV = dict(collector="serving", source="GET /api/2.0/serving-endpoints")
_SVM = dict(collector="serving", source="GET /api/2.0/serving-endpoints/{name}/metrics")
_EP = WS + ("endpoint_name",)
_SE = _EP + ("served_entity",)
SERVING_ENDPOINT_INFO = define(
    "databricks_serving_endpoint_info", GAUGE,
    "A model serving endpoint; always 1. task is the endpoint's task (llm/v1/chat, ...; empty for custom models).",
    _EP + ("task",), **_SV)
SERVING_ENDPOINT_READY = define(
    "databricks_serving_endpoint_ready", GAUGE, "Whether the endpoint is READY (1) or NOT_READY (0).", _EP, **_SV)
SERVING_CONFIG_UPDATE = define(
    "databricks_serving_endpoint_config_update_state", GAUGE,
    "The state of the endpoint's latest configuration update (1 for the current state: NOT_UPDATING, IN_PROGRESS, "
    "UPDATE_FAILED, UPDATE_CANCELED).", _EP + ("state",), **_SV)
SERVING_SCALE_TO_ZERO = define(
    "databricks_serving_scale_to_zero_enabled", GAUGE,
    "Whether the served entity may scale to zero when idle (1) or not (0).", _SE, **_SV)
SERVING_REQUESTS = define(
    "databricks_serving_requests_total", COUNTER,
    "Requests the served entity processed: the sum of the metrics export's per-minute request_count_total, each "
    "minute counted once (minutes the exporter did not see while it was down are not counted).", _SE, **_SVM)
SERVING_ERRORS = define(
    "databricks_serving_request_errors_total", COUNTER,
    "Requests that failed, by status class (4xx, 5xx): the sum of the per-minute request_4xx_count_total and "
    "request_5xx_count_total, each minute counted once.", _SE + ("status_class",), **_SVM)
SERVING_LATENCY = define(
    "databricks_serving_request_latency_seconds", GAUGE,
    "Round-trip latency of the served entity's requests in its latest reported minute at the percentile (50, 90, "
    "99), interpolated within the buckets of that minute's request_latency_ms histogram as histogram_quantile "
    "does; absent for a minute without requests. (The label is not `quantile`: that belongs to summaries.)",
    _SE + ("percentile",), unit="seconds", **_SVM)
SERVING_CPU = define(
    "databricks_serving_cpu_utilization_ratio", GAUGE,
    "Average CPU utilization across the served entity's replicas in its latest reported minute.", _SE, unit="ratio",
    **_SVM)
SERVING_MEMORY = define(
    "databricks_serving_memory_utilization_ratio", GAUGE,
    "Average memory utilization across the served entity's replicas in its latest reported minute.", _SE,
    unit="ratio", **_SVM)
SERVING_GPU = define(
    "databricks_serving_gpu_utilization_ratio", GAUGE,
    "Average GPU utilization of the served entity (GPU workloads only) in its latest reported minute.", _SE,
    unit="ratio", **_SVM)
SERVING_GPU_MEMORY = define(
    "databricks_serving_gpu_memory_utilization_ratio", GAUGE,
    "Average GPU memory utilization of the served entity (GPU workloads only) in its latest reported minute.", _SE,
    unit="ratio", **_SVM)
SERVING_CONCURRENCY = define(
    "databricks_serving_provisioned_concurrency", GAUGE,
    "Concurrent requests provisioned for the served entity in its latest reported minute (0 when scaled to zero).",
    _SE, **_SVM)
SERVING_METRICS_LATEST = define(
    "databricks_serving_metrics_latest_timestamp_seconds", GAUGE,
    "End of the latest minute the endpoint's metrics export reported.", _EP, unit="seconds", **_SVM)
SERVING_METRICS_ERRORS = define(
    "databricks_serving_metrics_export_errors_total", COUNTER,
    "Cycles in which the endpoint's metrics export could not be read (no permission, endpoint gone, unparsable "
    "text); its per-minute series are absent then and the other endpoints are read as usual.", _EP, **_SVM)
_SVU = dict(collector="serving_usage",
            source="system.serving.endpoint_usage JOIN system.serving.served_entities")
SERVING_TOKENS = define(
    "databricks_serving_tokens_total", COUNTER,
    "Tokens of the served entity's requests by direction (input, output), each usage row counted once by "
    "databricks_request_id; LLM endpoints with usage tracking only.", _SE + ("direction",), **_SVU)
SERVING_USAGE_REQUESTS = define(
    "databricks_serving_usage_requests_total", COUNTER,
    "Requests recorded in system.serving.endpoint_usage, by status class (2xx, 4xx, 5xx), each counted once.",
    _SE + ("status_class",), **_SVU)

# --- security signals from the audit log -----------------------------------------------------------
_AU = dict(collector="audit", source="system.access.audit")
AUDIT_EVENTS = define(
    "databricks_audit_events_total", COUNTER,
    "Audit log events of the watched actions (the fixed list in docs/configuration.md, audit.actions), each "
    "counted once by event_id, by service, action and status class (2xx, 4xx, 5xx, unknown). A failed login is "
    "service_name=accounts, action_name=login, status_class=4xx. Never a user or an address.",
    WS + ("service_name", "action_name", "status_class"), **_AU)
AUDIT_ADMIN_GROUP_CHANGES = define(
    "databricks_audit_admin_group_changes_total", COUNTER,
    "Watched groups/* events whose target group (request_params.targetGroupName) is one of audit.admin_groups "
    "(default: admins): who may administer the workspace changed. Counted once by event_id, by action.",
    WS + ("action_name",), **_AU)
AUDIT_READABLE = define(
    "databricks_audit_log_readable", GAUGE,
    "Whether the credential may read system.access.audit (1); 0 keeps the audit collector idle.", WS, **_AU)
AUDIT_LATEST = define(
    "databricks_audit_latest_event_timestamp_seconds", GAUGE,
    "The newest event_time of a watched action the exporter has read: how far the audit feed has arrived.", WS,
    unit="seconds", **_AU)

# --- predictive optimization -----------------------------------------------------------------------
_PO = dict(collector="predictive_optimization", source="system.storage.predictive_optimization_operations_history")
PO_OPERATIONS = define(
    "databricks_predictive_optimization_operations_total", COUNTER,
    "Operations predictive optimization ran on the catalog's tables, counted once each by operation_id when they "
    "appear in the history (hours after they end), by type (COMPACTION, VACUUM, ANALYZE, CLUSTERING) and status "
    "(SUCCESSFUL, or FAILED for any FAILED: reason).", WS + ("catalog", "operation_type", "status"), **_PO)
PO_DBUS = define(
    "databricks_predictive_optimization_dbus_total", COUNTER,
    "Estimated DBUs (usage_quantity) of the operations counted in databricks_predictive_optimization_operations_total.",
    WS + ("catalog", "operation_type"), **_PO)
PO_TABLE_LAST = define(
    "databricks_predictive_optimization_table_last_operation_timestamp_seconds", GAUGE,
    "When the newest successful operation of the type on the table ended, for the tables named in "
    "predictive_optimization.tables only.", WS + ("table", "operation_type"), unit="seconds", **_PO)
# --- what job runs cost (system.billing.usage x system.lakeflow.job_run_timeline) ----------------
# From a cent to a few thousand: a run's list cost in the billing currency.
RUN_COST_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 1000, 5000)
_JC = dict(collector="job_costs",
           source="system.billing.usage, system.billing.list_prices, system.lakeflow.job_run_timeline")
JOB_RUN_COST = define(
    "databricks_job_run_cost", GAUGE,
    "List cost of job runs today or this month (UTC, by usage date), by job and the run's latest result "
    "(REST spelling: SUCCESS, FAILED, TIMEDOUT, CANCELED, INTERNAL_ERROR, SKIPPED; RUNNING while the run has not "
    "ended or its end is not yet in job_run_timeline). Usage is joined on usage_metadata.job_run_id, which only "
    "jobs compute and serverless jobs carry: jobs on all-purpose clusters have none, so the cost of all-purpose "
    "cluster hours during which a job run used the cluster is counted under job_id=\"_all_purpose\", "
    "result_state=\"UNKNOWN\" (the whole hour, shared with interactive work). Billing arrives hours late.",
    WS + ("job_id", "result_state", "period", "currency"), **_JC)
JOB_RUN_REPAIR_COST = define(
    "databricks_job_run_repair_cost", GAUGE,
    "List cost of job runs billed after the run first ended (its repairs: usage rows that start at or after the "
    "first end in job_run_timeline), today or this month, by job; included in databricks_job_run_cost too.",
    WS + ("job_id", "period", "currency"), **_JC)
JOB_RUN_COST_PER_RUN = define(
    "databricks_job_run_cost_per_run", HISTOGRAM,
    "List cost of each ended job run, observed once when its billing has settled (settle_seconds after its end); "
    "a later repair does not change it.", WS + ("currency",), buckets=RUN_COST_BUCKETS, **_JC)

# --- warehouse uptime and idle cost (system.compute.warehouse_events x system.query.history) -------
_WU = dict(collector="warehouse_usage", source="system.compute.warehouse_events, system.query.history")
WAREHOUSE_RUNNING_SECONDS = define(
    "databricks_warehouse_running_seconds_total", COUNTER,
    "Seconds the SQL warehouse was running (from a RUNNING event to STOPPING), counted once per settled interval.",
    WS + ("warehouse_id",), unit="seconds", **_WU)
WAREHOUSE_CLUSTER_SECONDS = define(
    "databricks_warehouse_cluster_seconds_total", COUNTER,
    "Cluster-seconds the SQL warehouse ran: running seconds times its cluster_count.",
    WS + ("warehouse_id",), unit="seconds", **_WU)
WAREHOUSE_EVENTS = define(
    "databricks_warehouse_events_total", COUNTER,
    "Warehouse events by type (STARTING, RUNNING, SCALED_UP, SCALED_DOWN, STOPPING, STOPPED).",
    WS + ("warehouse_id", "event_type"), **_WU)
WAREHOUSE_IDLE_SECONDS = define(
    "databricks_warehouse_idle_seconds_total", COUNTER,
    "Seconds the SQL warehouse was running with no query in flight, once none had been for idle_grace_seconds "
    "(default 5 minutes; queries from system.query.history, between their start and end time).",
    WS + ("warehouse_id",), unit="seconds", **_WU)
WAREHOUSE_IDLE_COST = define(
    "databricks_warehouse_idle_cost_total", COUNTER,
    "List cost of the warehouse's idle cluster-seconds: DBUs per cluster-hour of its size (Databricks' published "
    "rates) times the list price of the SKU billing shows for it.",
    WS + ("warehouse_id", "currency"),
    collector="warehouse_usage", source="system.compute.warehouse_events, system.query.history, "
                                        "system.billing.usage, system.billing.list_prices, GET /api/2.0/sql/warehouses")
WAREHOUSE_USAGE_SETTLED = define(
    "databricks_warehouse_usage_settled_timestamp_seconds", GAUGE,
    "Up to when warehouse uptime and idleness have been counted (now minus settle_seconds, for the query history's "
    "delay).", WS, unit="seconds", **_WU)

# --- reconciliation of REST counts with the system tables ------------------------------------------
_RC = dict(collector="reconciliation",
           source="system.lakeflow.job_run_timeline, system.query.history; the jobs and queries collectors' counts")
RECONCILIATION_DIFFERENCE = define(
    "databricks_exporter_reconciliation_difference", GAUGE,
    "In the last reconciled period (an hour the system table has closed): completed items the exporter counted from "
    "the REST API minus those the system table holds, by source (jobs: runs by job_id and result, distinct run_id "
    "of system.lakeflow.job_run_timeline; queries: queries by warehouse_id and status, system.query.history). 0 when "
    "they agree; negative when the REST path missed some.", WS + ("source", "entity_id", "result"), **_RC)
RECONCILIATION_LAST = define(
    "databricks_exporter_reconciliation_last_timestamp_seconds", GAUGE,
    "When the source was last reconciled.", WS + ("source",), unit="seconds", **_RC)
RECONCILED_UNTIL = define(
    "databricks_exporter_reconciled_until_timestamp_seconds", GAUGE,
    "The end of the last period reconciled for the source (periods end this long after the table's documented "
    "delay, reconciliation.delay_seconds).", WS + ("source",), unit="seconds", **_RC)

# --- custom SQL metrics --------------------------------------------------------------------------
# The families themselves (databricks_custom_<name>) come from the configuration: see custom_metric().
CUSTOM_PREFIX = "databricks_custom_"
CUSTOM_QUERY_SUCCESS = define(
    "databricks_exporter_custom_query_success", GAUGE,
    "Whether the custom query's last run succeeded (1) or failed (0: its databricks_custom_<name> series are "
    "absent until it succeeds).", WS + ("query",), collector="custom", source="configuration (collectors.custom)")


def custom_metric(name: str, type: str, help: str, labels: tuple[str, ...]) -> Metric:
    """A family the configuration defines (a custom SQL query): built like the others, but kept out of REGISTRY,
    which holds the built-in families that docs/metrics.md lists."""
    full = CUSTOM_PREFIX + name
    if full in REGISTRY:
        raise ValueError(f"{full} is a built-in metric")
    return Metric(full, type, help, tuple(labels), source="configuration (collectors.custom.queries)",
                  collector="custom")


# --- push sinks (the exporter itself) ------------------------------------------------------------
PUSH = define(
    "databricks_exporter_push_total", COUNTER,
    "Pushes of the metric store to a sink (cloudwatch, otlp), by outcome (success or failure).",
    ("sink", "outcome"))
PUSH_LAST_SUCCESS = define(
    "databricks_exporter_push_last_success_timestamp_seconds", GAUGE,
    "When the sink's last successful push ended.", ("sink",), unit="seconds")
