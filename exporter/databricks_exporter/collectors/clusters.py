"""Clusters: state, size and autoscaling of every cluster that is not terminated, terminations and their reasons,
and cluster events, without paging through the 30 days of terminated job clusters each cycle."""

from __future__ import annotations

import logging

from .. import metrics as m
from ..cycle import OTHER, Cycle
from ..sources.errors import NotFound
from .base import Collector, Cursor, enum_name, forbidden_among, register, skipped_if_forbidden, with_forbidden

log = logging.getLogger(__name__)

NOT_TERMINATED = ["PENDING", "RUNNING", "RESTARTING", "RESIZING", "TERMINATING", "ERROR", "UNKNOWN"]
# Terminations remembered this long, so the scan of terminated clusters after a restart counts each once.
TERMINATION_MEMORY_MS = 2 * 86400 * 1000
EVENTS_PERMISSION = "CAN ATTACH TO on the cluster"
CHECK_PROBES = 100          # `check` reads the events of at most this many clusters


@register
class ClustersCollector(Collector):
    name = "clusters"
    default_interval = 30.0
    counts_work = True
    permission = "CAN ATTACH TO or higher on the clusters to watch (workspace admins see all clusters)"
    options = {
        "events": ("bool", True),
        # A cluster's events are read when its state, size or start time changed since the last cycle, and at
        # least this often otherwise: API calls follow change, not the number of clusters.
        "events_max_age": ("duration", 300.0),
    }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The first cycle of each process also scans terminated clusters: terminations that happened while the
        # exporter was down (or before its first start, back to counting_since) are counted then.
        self.scanned_terminated = False

    def check(self) -> str:
        clusters = list(self.rest.clusters(NOT_TERMINATED))
        seen = f"listed {len(clusters)} clusters that are not terminated"
        if not self.settings.options["events"]:
            return seen
        since_ms = int((self.clock() - 3600) * 1000)
        forbidden = forbidden_among(
            (f"events of cluster {c['cluster_id']}",
             lambda c=c: next(iter(self.rest.cluster_events(str(c["cluster_id"]), since_ms)), None))
            for c in clusters[:CHECK_PROBES])
        return with_forbidden(seen + " and read their events", forbidden, EVENTS_PERMISSION)

    def collect(self, cycle: Cycle, state: dict) -> None:
        since_ms = self.counting_since(state) * 1000
        alive: dict[str, str] = state.setdefault("alive", {})            # cluster_id -> cluster_source
        counted: dict[str, float] = state.setdefault("terminations", {})  # "id@terminated_time" -> ms
        now_ms = self.clock() * 1000

        current = {}
        for cluster in self.rest.clusters(NOT_TERMINATED):
            with cycle.item("cluster"):
                current[str(cluster["cluster_id"])] = cluster
                self._emit_cluster(cycle, cluster)

        def count_termination(cluster: dict) -> None:
            ended = cluster.get("terminated_time") or 0
            key = f"{cluster.get('cluster_id')}@{ended}"
            if ended < since_ms or key in counted:
                return
            counted[key] = ended
            reason = cluster.get("termination_reason") or {}
            cycle.inc(m.CLUSTER_TERMINATIONS, cluster_source=cluster.get("cluster_source") or "",
                      termination_code=reason.get("code") or "UNKNOWN", termination_type=reason.get("type") or "")

        if not self.scanned_terminated:
            for cluster in self.rest.clusters(["TERMINATED"]):
                with cycle.item("terminated cluster"):
                    count_termination(cluster)
        # Clusters that were alive last cycle and are gone from the list terminated since: one get each.
        for cluster_id in [c for c in alive if c not in current]:
            try:
                cluster = self.rest.cluster(cluster_id)
            except NotFound:
                cluster = None   # permanently deleted: its termination reason is gone with it
            with cycle.item("terminated cluster"):
                if cluster and cluster.get("state") == "TERMINATED":
                    count_termination(cluster)
        self.scanned_terminated = True
        for key in [k for k, ended in counted.items() if ended < now_ms - TERMINATION_MEMORY_MS]:
            del counted[key]
        alive.clear()
        alive.update({cid: c.get("cluster_source") or "" for cid, c in current.items()})

        event_cursors: dict[str, dict] = state.setdefault("events", {})
        if self.settings.options["events"]:
            for cluster_id, cluster in current.items():
                with cycle.item("cluster"):
                    self._maybe_count_events(cycle, cluster_id, cluster, event_cursors, since_ms, now_ms)
        for cluster_id in [c for c in event_cursors if c not in current]:
            del event_cursors[cluster_id]
        # "_other" holds what the cardinality guard folded; it is an aggregate, not a cluster that went away.
        cycle.keep_only(m.CLUSTER_EVENTS,
                        lambda labels: labels["cluster_id"] in current or labels["cluster_id"] == OTHER)

    def _emit_cluster(self, cycle: Cycle, c: dict) -> None:
        cid = c["cluster_id"]
        source = c.get("cluster_source") or ""
        cycle.count_gauge(m.CLUSTERS, state=c.get("state") or "UNKNOWN", cluster_source=source)
        cycle.gauge(m.CLUSTER_INFO, 1, cluster_id=cid, cluster_name=c.get("cluster_name") or "",
                    cluster_source=source, node_type=c.get("node_type_id") or "",
                    driver_node_type=c.get("driver_node_type_id") or c.get("node_type_id") or "",
                    spark_version=c.get("spark_version") or "", runtime_engine=c.get("runtime_engine") or "")
        cycle.gauge(m.CLUSTER_STATE, 1, cluster_id=cid, state=c.get("state") or "UNKNOWN")
        # num_workers is the target size; the executors list is what runs now.
        workers = len(c["executors"]) if "executors" in c else c.get("num_workers") or 0
        cycle.gauge(m.CLUSTER_WORKERS, workers, cluster_id=cid)
        autoscale = c.get("autoscale") or {}
        if autoscale:
            cycle.gauge(m.CLUSTER_AUTOSCALE_MIN, autoscale.get("min_workers"), cluster_id=cid)
            cycle.gauge(m.CLUSTER_AUTOSCALE_MAX, autoscale.get("max_workers"), cluster_id=cid)
        if c.get("cluster_cores") is not None:
            cycle.gauge(m.CLUSTER_CORES, c["cluster_cores"], cluster_id=cid)
        if c.get("cluster_memory_mb") is not None:
            cycle.gauge(m.CLUSTER_MEMORY, c["cluster_memory_mb"] * 1024 * 1024, cluster_id=cid)
        started = c.get("last_restarted_time") or c.get("start_time")
        if started:
            cycle.gauge(m.CLUSTER_START, started / 1000.0, cluster_id=cid)

    def _maybe_count_events(self, cycle: Cycle, cluster_id: str, cluster: dict, event_cursors: dict,
                            since_ms: float, now_ms: float) -> None:
        cursor_state = event_cursors.setdefault(cluster_id, {})
        fingerprint = "/".join(str(cluster.get(k)) for k in ("state", "num_workers", "last_restarted_time",
                                                             "start_time", "executors"))
        max_age_ms = self.settings.options["events_max_age"] * 1000
        if cursor_state.get("fingerprint") == fingerprint and now_ms - cursor_state.get("read_at", 0) < max_age_ms:
            return
        # A cluster whose events are forbidden is tried again when it changes or the events grow old, like any.
        with skipped_if_forbidden(cycle, f"events of cluster {cluster_id}", EVENTS_PERMISSION):
            self._count_events(cycle, cluster_id, Cursor(cursor_state, since_ms))
        cursor_state["fingerprint"], cursor_state["read_at"] = fingerprint, now_ms

    def _count_events(self, cycle: Cycle, cluster_id: str, cursor: Cursor) -> None:
        newest = cursor.watermark
        for event in self.rest.cluster_events(cluster_id, int(cursor.watermark)):
            with cycle.item("cluster event"):
                timestamp, kind = int(event.get("timestamp") or 0), enum_name(event.get("type"))
                key = f"{timestamp}:{kind}"   # events carry no id; time and type identify one
                if not cursor.is_new(key) or timestamp < cursor.watermark:
                    continue
                cursor.mark(key, timestamp)
                newest = max(newest, timestamp)
                cycle.inc(m.CLUSTER_EVENTS, cluster_id=cluster_id, event_type=kind or "UNKNOWN")
        cursor.advance(newest)
