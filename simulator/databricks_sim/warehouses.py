"""Simulated SQL warehouses: sessions that start on demand, scale their cluster count with load and stop when idle,
and the warehouses list/get API."""

from __future__ import annotations

import bisect
import random

from .common import DAY_MS, HOUR_MS, MINUTE_MS, SECOND_MS, TEAMS, USERS, decode_page_token, does_not_exist, \
    encode_page_token, stable_hex

WAREHOUSE_SIZES = ["2X-Small", "X-Small", "Small", "Medium", "Large", "X-Large"]


class Warehouse:
    """A SQL warehouse that starts on demand, scales its cluster count with load and stops when idle."""

    def __init__(self, ws: "SimulatedWorkspace", index: int):
        self.ws = ws
        self.index = index
        rng = self._rng = random.Random(f"{ws.seed}:warehouse:{index}")
        self.id = stable_hex(ws.seed, "warehouse", index, n=16)
        team, cost_center = rng.choice(TEAMS)
        self.serverless = index % 3 == 0
        self.warehouse_type = "PRO" if self.serverless or rng.random() < 0.6 else "CLASSIC"
        self.name = f"{team} {rng.choice(['BI', 'reporting', 'adhoc', 'dbt', 'dashboards'])} warehouse {index}"
        self.cluster_size = rng.choice(WAREHOUSE_SIZES)
        self.min_clusters = rng.choice([1, 1, 1, 2])
        self.max_clusters = self.min_clusters + rng.choice([0, 1, 2, 3, 4])
        self.auto_stop_mins = rng.choice([5, 10]) if self.serverless else rng.choice([10, 15, 30, 45, 60])
        self.always_on = index == 1 or rng.random() < 0.2
        self.creator = rng.choice(USERS)
        self.tags = [{"key": "team", "value": team}, {"key": "cost_center", "value": cost_center}]
        self.enable_photon = True
        self.transitions: list[tuple] = []   # (ts, state, num_clusters, health_status, health_summary)
        self.transition_ts: list[int] = []
        self.next_start_ms = ws.world_start_ms - rng.randint(0, 8 * HOUR_MS)

    def extend(self, until_ms: int) -> None:
        while self.next_start_ms <= until_ms:
            self._generate_session(self.next_start_ms)

    def _generate_session(self, start: int) -> None:
        rng = self._rng
        states: list[tuple] = []
        clusters = self.min_clusters
        health, summary = "HEALTHY", ""
        states.append((start, "STARTING", 0, health, summary))
        t = start + (rng.randint(3, 15) * SECOND_MS if self.serverless else rng.randint(120, 300) * SECOND_MS)
        states.append((t, "RUNNING", clusters, health, summary))
        busy_ms = rng.randint(20 * HOUR_MS, 2 * DAY_MS) if self.always_on else rng.randint(10, 240) * MINUTE_MS
        end_busy = t + busy_ms
        while True:
            t += rng.randint(3, 20) * MINUTE_MS
            if t >= end_busy:
                break
            if health != "HEALTHY":
                health, summary = "HEALTHY", ""
            elif rng.random() < 0.04:
                health = "DEGRADED"
                summary = rng.choice([
                    "Cluster(s) in this warehouse are experiencing a high rate of query failures.",
                    "One or more clusters failed to start; the warehouse is running with reduced capacity.",
                ])
            step = rng.choice([-1, 0, 1, 1])
            clusters = min(self.max_clusters, max(self.min_clusters, clusters + step))
            states.append((t, "RUNNING", clusters, health, summary))
        # Load gone: scale back down, then stop after auto_stop_mins of idleness.
        if clusters != self.min_clusters or health != "HEALTHY":
            states.append((end_busy, "RUNNING", self.min_clusters, "HEALTHY", ""))
        stop = end_busy + self.auto_stop_mins * MINUTE_MS
        stopped = stop + rng.randint(20, 90) * SECOND_MS
        states.append((stop, "STOPPING", self.min_clusters, "HEALTHY", ""))
        states.append((stopped, "STOPPED", 0, "HEALTHY", ""))
        self.transitions.extend(states)
        self.transition_ts.extend(s[0] for s in states)
        self.next_start_ms = stopped + rng.randint(15, 360) * MINUTE_MS

    def state_at(self, now_ms: int) -> tuple:
        i = bisect.bisect_right(self.transition_ts, now_ms) - 1
        if i < 0:
            return (now_ms, "STOPPED", 0, "HEALTHY", "")
        return self.transitions[i]

    def touch(self, now_ms: int) -> int:
        """A statement arrives: a stopped warehouse starts, and a running one stays up auto_stop_mins past now.
        Returns when the warehouse is (or will be) RUNNING. Only the future changes: what was read stays true."""
        self.extend(now_ms)
        _, state, _, _, _ = self.state_at(now_ms)
        i = bisect.bisect_right(self.transition_ts, now_ms)
        future = self.transitions[i:]
        if state in ("STOPPED", "STOPPING"):
            rng = random.Random(f"{self.ws.seed}:warehouse-wake:{self.index}:{now_ms}")
            running = now_ms + (rng.randint(3, 15) if self.serverless else rng.randint(120, 300)) * SECOND_MS
            future = [(now_ms, "STARTING", 0, "HEALTHY", ""), (running, "RUNNING", self.min_clusters, "HEALTHY", "")]
        else:
            running = next((t[0] for t in future if t[1] == "RUNNING"), now_ms) if state == "STARTING" else now_ms
        keep_until = max(now_ms, running) + self.auto_stop_mins * MINUTE_MS
        stop = next((k for k, t in enumerate(future) if t[1] == "STOPPING"), None)
        if stop is None or future[stop][0] < keep_until:
            clusters = self.min_clusters
            future = [t for t in (future if stop is None else future[:stop]) if t[0] < keep_until]
            future += [(keep_until, "STOPPING", clusters, "HEALTHY", ""),
                       (keep_until + 45 * SECOND_MS, "STOPPED", 0, "HEALTHY", "")]
            self.next_start_ms = max(self.next_start_ms, keep_until + 15 * MINUTE_MS)
        del self.transitions[i:], self.transition_ts[i:]
        self.transitions.extend(future)
        self.transition_ts.extend(t[0] for t in future)
        return running

    def to_json(self, now_ms: int) -> dict:
        _, state, clusters, health, summary = self.state_at(now_ms)
        health_json = {"status": health}
        if summary:
            health_json["summary"] = summary
        host = self.ws.host_name
        return {
            "id": self.id,
            "name": self.name,
            "cluster_size": self.cluster_size,
            "min_num_clusters": self.min_clusters,
            "max_num_clusters": self.max_clusters,
            "num_clusters": clusters,
            "num_active_sessions": clusters * 3 if state == "RUNNING" else 0,
            "auto_stop_mins": self.auto_stop_mins,
            "creator_name": self.creator,
            "enable_photon": self.enable_photon,
            "enable_serverless_compute": self.serverless,
            "warehouse_type": self.warehouse_type,
            "spot_instance_policy": "COST_OPTIMIZED",
            "channel": {"name": "CHANNEL_NAME_CURRENT"},
            "state": state,
            "health": health_json,
            "tags": {"custom_tags": [dict(t) for t in self.tags]},
            # Where the SQL protocol is served: the simulator's TLS listener when it has one (see server.py).
            "odbc_params": {"hostname": getattr(self.ws, "sql_host", host), "path": f"/sql/1.0/warehouses/{self.id}",
                            "protocol": "https", "port": getattr(self.ws, "sql_port", 443)},
            "jdbc_url": f"jdbc:databricks://{host}:443/default;transportMode=http;ssl=1;AuthMech=3;"
                        f"httpPath=/sql/1.0/warehouses/{self.id};",
        }



class WarehouseSet:
    """The workspace's SQL warehouses and the warehouses API; reads take `now` (see JobSet)."""

    def __init__(self, ws, n_warehouses: int):
        self.warehouses = [Warehouse(ws, i) for i in range(n_warehouses)]
        self.by_id = {w.id: w for w in self.warehouses}

    def extend(self, now_ms: int) -> None:
        for warehouse in self.warehouses:
            warehouse.extend(now_ms)

    def list(self, now: int, page_size=None, page_token=None) -> dict:
        ordered = sorted(self.warehouses, key=lambda w: w.id)
        start = 0
        if page_token:
            after = decode_page_token(page_token).get("w", "")
            start = next((i for i, w in enumerate(ordered) if w.id > after), len(ordered))
        size = page_size if page_size and page_size > 0 else len(ordered)
        chunk = ordered[start:start + size]
        out = {"warehouses": [w.to_json(now) for w in chunk]}
        if start + size < len(ordered):
            out["next_page_token"] = encode_page_token({"w": chunk[-1].id})
        return out

    def get(self, now: int, warehouse_id: str) -> dict:
        warehouse = self.by_id.get(warehouse_id)
        if warehouse is None:
            raise does_not_exist(f"Unable to find warehouse {warehouse_id}.")
        return warehouse.to_json(now)
