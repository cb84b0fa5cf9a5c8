"""Node utilization: how busy each running cluster's driver and worker nodes are (CPU, memory, swap, disk, network),
from system.compute.node_timeline's per-minute rows."""

from __future__ import annotations

from typing import NamedTuple

from .. import metrics as m
from ..sources.sql import literal
from ..cycle import OTHER, Cycle
from .base import register
from .system_tables import SystemTableCollector, amount, finite, sql_timestamp, utc

RUNNING_STATES = ["RUNNING", "RESIZING"]


@register
class UtilizationCollector(SystemTableCollector):
    name = "utilization"
    default_interval = 5 * 60.0
    options = {
        **SystemTableCollector.options,
        # How far back to read: the latest complete minute is usually a few minutes old. Network bytes of minutes
        # older than this when the exporter was down are not counted.
        "window": ("duration", 15 * 60.0),
    }
    permission = ("CAN USE on the SQL warehouse (warehouse_id), SELECT on system.compute.node_timeline, and "
                  "CAN ATTACH TO (or admin) to list the clusters")

    def check_statement(self) -> str:
        return "SELECT 1 FROM system.compute.node_timeline LIMIT 1"

    def utilization_statement(self, workspace_id: str, since: float) -> str:
        """Per cluster, node role and minute: averages over the nodes, and the network bytes of all of them."""
        return (
            "SELECT\n"
            "  cluster_id,\n"
            "  driver,\n"
            "  end_time,\n"
            "  COUNT(*) AS nodes,\n"
            "  AVG(cpu_user_percent + cpu_system_percent) AS cpu_percent,\n"
            "  AVG(mem_used_percent) AS mem_used_percent,\n"
            "  AVG(mem_swap_percent) AS mem_swap_percent,\n"
            "  AVG(array_min(map_values(disk_free_bytes_per_mount_point))) AS disk_free_bytes,\n"
            "  SUM(network_received_bytes) AS network_received_bytes,\n"
            "  SUM(network_sent_bytes) AS network_sent_bytes\n"
            "FROM system.compute.node_timeline\n"
            f"WHERE workspace_id = {literal(workspace_id)}\n"
            f"  AND end_time > {sql_timestamp(since)}\n"
            "GROUP BY cluster_id, driver, end_time")

    def refresh(self, cycle: Cycle, state: dict) -> None:
        now = self.clock()
        since = self.counting_since(state)
        running = {c.get("cluster_id") for c in self.rest.clusters(RUNNING_STATES)}
        counted: dict[str, float] = state.setdefault("counted_until", {})   # cluster_id -> end of last minute counted
        window_start = max(since, now - self.settings.options["window"])
        rows = self.query(self.utilization_statement(self.workspace.workspace_id, window_start))
        minutes: dict[tuple[str, str], dict[float, Minute]] = {}
        for row in rows:
            with cycle.item("utilization row"):
                cluster_id, role, end, minute = parse_row(row, now)
                minutes.setdefault((cluster_id, role), {})[end] = minute

        latest_by_cluster: dict[str, float] = {}
        for (cluster_id, role), by_minute in minutes.items():
            if cluster_id not in running:
                continue
            latest = max(by_minute)
            newest = by_minute[latest]
            latest_by_cluster[cluster_id] = max(latest_by_cluster.get(cluster_id, 0), latest)
            labels = {"cluster_id": cluster_id, "node_role": role}
            cycle.gauge(m.CLUSTER_CPU, newest.cpu, **labels)
            cycle.gauge(m.CLUSTER_MEMORY_UTILIZATION, newest.memory, **labels)
            cycle.gauge(m.CLUSTER_SWAP, newest.swap, **labels)
            cycle.gauge(m.CLUSTER_DISK_FREE, newest.disk_free_bytes, **labels)
            # Network bytes: each minute once, per cluster and role.
            key = f"{cluster_id}/{role}"
            floor = counted.get(key, since)
            for end, minute in sorted(by_minute.items()):
                if end <= floor:
                    continue
                cycle.inc(m.CLUSTER_NET_RECEIVED, minute.received_bytes, **labels)
                cycle.inc(m.CLUSTER_NET_SENT, minute.sent_bytes, **labels)
                counted[key] = end
        for cluster_id, latest in latest_by_cluster.items():
            cycle.gauge(m.CLUSTER_UTILIZATION_LATEST, latest, cluster_id=cluster_id)

        # Clusters that stopped running: their counters go (job clusters come and go with every run).
        for key in [k for k in counted if k.split("/")[0] not in running]:
            del counted[key]
        for metric in (m.CLUSTER_NET_RECEIVED, m.CLUSTER_NET_SENT):
            cycle.keep_only(metric, lambda labels: labels["cluster_id"] in running or labels["cluster_id"] == OTHER)


class Minute(NamedTuple):
    cpu: float | None
    memory: float | None
    swap: float | None
    disk_free_bytes: float | None
    received_bytes: float
    sent_bytes: float


def parse_row(row: dict, now: float) -> tuple[str, str, float, Minute]:
    """(cluster_id, node role, end of the minute, its figures) from one result row; raises on a malformed one, so
    that nothing of it is emitted and the minutes counted stay consistent."""
    cluster_id = row["cluster_id"]
    if not isinstance(cluster_id, str) or not cluster_id:
        raise ValueError(f"cluster_id is not an id: {cluster_id!r}")
    end = utc(row["end_time"]).timestamp()
    if end > now + 86400:
        # Believing it would mark every real minute of the cluster as counted already.
        raise ValueError(f"end_time in the future: {row['end_time']!r}")
    role = "driver" if row["driver"] in (True, "true", 1) else "worker"
    minute = Minute(_ratio(row["cpu_percent"]), _ratio(row["mem_used_percent"]), _ratio(row["mem_swap_percent"]),
                    amount(row.get("disk_free_bytes"), none_ok=True), amount(row["network_received_bytes"]),
                    amount(row["network_sent_bytes"]))
    return cluster_id, role, end, minute




def _ratio(percent) -> float | None:
    if percent is None:
        return None
    return min(1.0, max(0.0, finite(percent) / 100.0))
