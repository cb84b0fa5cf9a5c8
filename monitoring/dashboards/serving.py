"""Model serving endpoints: readiness and configuration updates, traffic, 5xx and 4xx, latency, replicas' CPU,
memory and GPU, provisioned concurrency, and the tokens of LLM endpoints."""

from __future__ import annotations

from .common import BAD_IF_ANY, RATE, WS, info_variable, new_dashboard, query, row, stat_panel, table_panel, \
    timeseries_panel

UID = "databricks-serving"

EP = f'{WS}, endpoint_name=~"$endpoint"'


def per_entity(metric: str, extra: str = "") -> str:
    return f"{metric}{{{EP}{extra}}}"


def build():
    endpoint = (info_variable("endpoint", "Endpoint", "databricks_serving_endpoint_info", "endpoint_name",
                              "task", multi=True)
                # An endpoint's name is its id: one group gives both.
                .regex('/endpoint_name="(?<text>(?<value>[^"]+))"/'))
    return new_dashboard(UID, "Databricks model serving endpoints: which are ready, their traffic, server and client "
                              "errors, latency, the replicas' utilization and provisioned concurrency, and the "
                              "tokens LLM endpoints process.", [endpoint], [
        row("State"),
        stat_panel("Endpoints", "short", query(f"count(databricks_serving_endpoint_info{{{EP}}})")),
        stat_panel("Not ready", "short", query(f"count(databricks_serving_endpoint_ready{{{EP}}} == 0) or vector(0)"),
                   thresholds=BAD_IF_ANY,
                   description="NOT_READY for 15 minutes fires DatabricksServingEndpointNotReady."),
        stat_panel("Requests per second", "reqps",
                   query(f"sum(rate(databricks_serving_requests_total{{{EP}}}{RATE}))")),
        stat_panel("Worst 5xx ratio (5m)", "percentunit",
                   query(f"max(workspace_endpoint:databricks_serving_5xx:ratio5m{{{EP}}})"),
                   thresholds=[(None, "green"), (0.05, "red")],
                   description="The endpoint with the largest share of requests answered 5xx in the last 5 "
                               "minutes; over 5% for 5 minutes pages (DatabricksServingEndpointErrorRateHigh)."),
        stat_panel("Tokens per minute", "short",
                   query(f"sum(rate(databricks_serving_tokens_total{{{EP}}}{RATE})) * 60"),
                   description="From system.serving.endpoint_usage, which arrives minutes late."),
        stat_panel("Scaled to zero", "short",
                   query(f"count(databricks_serving_provisioned_concurrency{{{EP}}} == 0) or vector(0)"),
                   description="Served entities with no concurrency provisioned now (idle with scale to zero, or "
                               "an endpoint that is not ready)."),
        table_panel("Endpoints now", "short",
                    f"databricks_serving_endpoint_ready{{{EP}}} "
                    "* on(workspace_id, endpoint_name) group_left(state) "
                    "(databricks_serving_endpoint_config_update_state == 1) "
                    "* on(workspace_id, endpoint_name) group_left(task) databricks_serving_endpoint_info",
                    value="ready", w=24, h=6, description="ready: 1 READY, 0 NOT_READY; state: the latest "
                                                          "configuration update."),
        row("Traffic and errors"),
        timeseries_panel("Requests by endpoint", "reqps",
                         query(f"sum by (endpoint_name) (rate(databricks_serving_requests_total{{{EP}}}{RATE}))",
                               "{{endpoint_name}}"), w=8, stack=True),
        timeseries_panel("5xx ratio (5m) by endpoint", "percentunit",
                         query(f"workspace_endpoint:databricks_serving_5xx:ratio5m{{{EP}}}", "{{endpoint_name}}"),
                         query('databricks:alert_threshold{threshold="serving_5xx_ratio"}', "alert threshold"),
                         w=8, min_value=0),
        timeseries_panel("Errors by class", "reqps",
                         query(f"sum by (endpoint_name, status_class) "
                               f"(rate(databricks_serving_request_errors_total{{{EP}}}{RATE}))",
                               "{{endpoint_name}} {{status_class}}"), w=8),
        timeseries_panel("Latency p50", "s",
                         query(per_entity("databricks_serving_request_latency_seconds", ', percentile="50"'),
                               "{{endpoint_name}} {{served_entity}}"), w=8),
        timeseries_panel("Latency p90", "s",
                         query(per_entity("databricks_serving_request_latency_seconds", ', percentile="90"'),
                               "{{endpoint_name}} {{served_entity}}"), w=8,
                         description="Beyond its threshold for 10 minutes fires DatabricksServingEndpointLatencyHigh."),
        timeseries_panel("Latency p99", "s",
                         query(per_entity("databricks_serving_request_latency_seconds", ', percentile="99"'),
                               "{{endpoint_name}} {{served_entity}}"), w=8),
        row("Capacity"),
        timeseries_panel("CPU", "percentunit",
                         query(per_entity("databricks_serving_cpu_utilization_ratio"),
                               "{{endpoint_name}} {{served_entity}}"), w=8, min_value=0, max_value=1),
        timeseries_panel("Memory", "percentunit",
                         query(per_entity("databricks_serving_memory_utilization_ratio"),
                               "{{endpoint_name}} {{served_entity}}"), w=8, min_value=0, max_value=1),
        timeseries_panel("GPU and GPU memory", "percentunit",
                         query(per_entity("databricks_serving_gpu_utilization_ratio"),
                               "{{endpoint_name}} GPU"),
                         query(per_entity("databricks_serving_gpu_memory_utilization_ratio"),
                               "{{endpoint_name}} GPU memory"), w=8, min_value=0, max_value=1),
        timeseries_panel("Provisioned concurrency", "short",
                         query(per_entity("databricks_serving_provisioned_concurrency"),
                               "{{endpoint_name}} {{served_entity}}"), w=8),
        timeseries_panel("Tokens by direction", "short",
                         query(f"sum by (endpoint_name, direction) "
                               f"(rate(databricks_serving_tokens_total{{{EP}}}{RATE})) * 60",
                               "{{endpoint_name}} {{direction}}"), w=8,
                         description="Tokens per minute, from system.serving.endpoint_usage."),
        timeseries_panel("Metrics export failures", "cpm",
                         query(f"sum by (endpoint_name) "
                               f"(rate(databricks_serving_metrics_export_errors_total{{{EP}}}{RATE})) * 60",
                               "{{endpoint_name}}"), w=8,
                         description="Reads of an endpoint's metrics export that failed, per minute (typically: the "
                                     "credential lacks CAN QUERY on it)."),
    ])
