"""Clusters: what runs, how big, how busy its nodes are (by role), and why clusters ended."""

from __future__ import annotations

from .common import (CLUSTER_NAME, RATE, WS, bargauge_panel, info_variable, new_dashboard, query, row, stat_panel,
                     table_panel, timeseries_panel)

UID = "databricks-compute"

CL = f'{WS}, cluster_id=~"$cluster"'


def utilization(metric: str) -> str:
    """A node_timeline ratio per cluster and node role, named."""
    return f"avg by (cluster_name, node_role) ({metric}{{{CL}}} {CLUSTER_NAME})"


def build():
    cluster = info_variable("cluster", "Cluster", "databricks_cluster_info", "cluster_id", "cluster_name",
                            multi=True)
    return new_dashboard(UID, "Databricks clusters: state, size, autoscaling, node utilization by role "
                              "(system.compute.node_timeline) and terminations by reason.", [cluster], [
        row("Clusters"),
        stat_panel("Clusters running", "short", query(f'sum(databricks_clusters{{{WS}, state="RUNNING"}})')),
        stat_panel("Worker nodes", "short", query(f"sum(databricks_cluster_workers{{{CL}}})"),
                   description="Workers of the selected clusters that are not terminated."),
        stat_panel("Cores", "short", query(f"sum(databricks_cluster_cores{{{CL}}})")),
        stat_panel("Memory", "bytes", query(f"sum(databricks_cluster_memory_bytes{{{CL}}})")),
        stat_panel("Cluster terminations (1h)", "short",
                   query(f"sum(workspace:databricks_cluster_terminations:increase1h{{{WS}}})"), decimals=0),
        stat_panel("Terminations by cloud or service faults (1h)", "short",
                   query(f'sum(workspace:databricks_cluster_terminations:increase1h{{{WS}, '
                         f'termination_type=~"CLOUD_FAILURE|SERVICE_FAULT"}}) or vector(0)'),
                   decimals=0, thresholds=[(None, "green"), (1, "orange")]),
        timeseries_panel("Clusters by source and state", "short",
                         query(f"sum by (cluster_source, state) (databricks_clusters{{{WS}}})",
                               "{{cluster_source}} {{state}}"), stack=True),
        timeseries_panel("Workers by cluster", "short",
                         query(f"databricks_cluster_workers{{{CL}}} {CLUSTER_NAME}", "{{cluster_name}}")),
        table_panel("Clusters and their uptime", "dtdurations",
                    f"(time() - databricks_cluster_start_timestamp_seconds{{{CL}}}) "
                    "* on(workspace_id, cluster_id) group_left(cluster_name, cluster_source, node_type, "
                    "spark_version, runtime_engine) databricks_cluster_info",
                    value="uptime", sort_by="uptime", w=14),
        bargauge_panel("Autoscaling: workers against the maximum", "percentunit",
                       query(f"databricks_cluster_workers{{{CL}}} / on(workspace_id, cluster_id) "
                             f"databricks_cluster_autoscale_max_workers {CLUSTER_NAME}", "{{cluster_name}}",
                             instant=True),
                       w=10, max_value=1, thresholds=[(None, "green"), (0.9, "orange"), (1, "red")],
                       description="Autoscaling clusters only; at 100% a cluster cannot grow any further."),
        row("Node utilization"),
        stat_panel("Utilization data age", "s",
                   query(f"time() - max(databricks_cluster_utilization_latest_timestamp_seconds{{{WS}}})"),
                   w=4, h=8, thresholds=[(None, "green"), (900, "orange"), (1800, "red")],
                   description="Age of the newest complete minute of system.compute.node_timeline the exporter "
                               "has read."),
        timeseries_panel("CPU by cluster and node role", "percentunit",
                         query(utilization("databricks_cluster_cpu_utilization_ratio"),
                               "{{cluster_name}} {{node_role}}"),
                         min_value=0, max_value=1, w=10,
                         description="User plus system CPU of the latest complete minute, averaged over the "
                                     "cluster's nodes of each role. Alerts: warning above 90% for 15 minutes, "
                                     "critical above 95%."),
        timeseries_panel("Memory by cluster and node role", "percentunit",
                         query(utilization("databricks_cluster_memory_utilization_ratio"),
                               "{{cluster_name}} {{node_role}}"),
                         min_value=0, max_value=1, w=10,
                         description="Alerts: warning above 85% for 15 minutes, critical above 90%."),
        timeseries_panel("Swap by cluster and node role", "percentunit",
                         query(utilization("databricks_cluster_swap_utilization_ratio"),
                               "{{cluster_name}} {{node_role}}"),
                         min_value=0, max_value=1, w=8,
                         description="Swap in use means the nodes are short of memory."),
        timeseries_panel("Free disk (smallest mount)", "bytes",
                         query(f"min by (cluster_name) (databricks_cluster_disk_free_bytes{{{CL}}} "
                               f"{CLUSTER_NAME})", "{{cluster_name}}"), w=8),
        timeseries_panel("Network", "Bps",
                         query(f"sum by (cluster_name) (rate(databricks_cluster_network_received_bytes_total"
                               f"{{{CL}}}{RATE}) {CLUSTER_NAME})", "{{cluster_name}} received"),
                         query(f"-sum by (cluster_name) (rate(databricks_cluster_network_sent_bytes_total"
                               f"{{{CL}}}{RATE}) {CLUSTER_NAME})", "{{cluster_name}} sent"), w=8,
                         description="Received above the axis, sent below."),
        row("Terminations and events"),
        timeseries_panel("Terminations in the last hour by reason", "short",
                         query(f"sum by (cluster_source, termination_code, termination_type) "
                               f"(workspace:databricks_cluster_terminations:increase1h{{{WS}}})",
                               "{{cluster_source}} {{termination_code}} ({{termination_type}})"),
                         description="CLOUD_FAILURE and SERVICE_FAULT terminations fire "
                                     "DatabricksClusterTerminatedByFault."),
        timeseries_panel("Cluster events by type", "cpm",
                         query(f"sum by (event_type) (rate(databricks_cluster_events_total{{{CL}}}{RATE})) * 60",
                               "{{event_type}}"), stack=True),
    ])
