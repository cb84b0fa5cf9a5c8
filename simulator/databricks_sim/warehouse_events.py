"""system.compute.warehouse_events of the simulated warehouses (STARTING, RUNNING, SCALED_UP, SCALED_DOWN, STOPPING,
STOPPED with the cluster count, from each warehouse's own state timeline), and the truth of their uptime and idleness
over an interval: running and cluster time from the timeline, idle time against the query log, idle cost at the
warehouse's list price."""

from __future__ import annotations

import bisect
from decimal import Decimal

from .billing import WAREHOUSE_DBU
from .common import HOUR_MS, MINUTE_MS

VISIBLE_AFTER_MS = MINUTE_MS


def warehouse_events(warehouse, start_index: int, stop_index: int) -> list[tuple[int, str, int]]:
    """(event_time, event_type, cluster_count) of the transitions start_index..stop_index-1: a change of state is
    the state's event, a change of cluster count while running a scale event, anything else no event."""
    out = []
    previous = warehouse.transitions[start_index - 1] if start_index else None
    for t in warehouse.transitions[start_index:stop_index]:
        ts, state, clusters = t[0], t[1], t[2]
        if previous is not None and previous[1] == state:
            if state == "RUNNING" and previous[2] != clusters:
                out.append((ts, "SCALED_UP" if clusters > previous[2] else "SCALED_DOWN", clusters))
        else:
            out.append((ts, state, clusters))
        previous = t
    return out


def usage_truth(ws, queries, billing, start_ms: int, end_ms: int, grace_ms: int = 0) -> dict:
    """Per warehouse, over [start_ms, end_ms): running and cluster seconds, events by type, idle seconds (running
    with no query of the log in flight for grace_ms) and their list cost. Caller holds the workspace lock, queries
    extended."""
    out = {}
    for w in ws.warehouses:
        w.extend(end_ms)
        hi = bisect.bisect_left(w.transition_ts, end_ms)
        by_type: dict[str, int] = {}
        for ts, event_type, _ in warehouse_events(w, 0, hi):
            if ts >= start_ms:
                by_type[event_type] = by_type.get(event_type, 0) + 1
        busy = sorted((q.start_ms, q.end_ms + grace_ms) for q in queries.loads[w.id].queries
                      if q.start_ms < end_ms and q.end_ms + grace_ms > start_ms)
        sku = billing._warehouse_billable(w).sku
        running = clusters_ms = idle = 0
        idle_cost = Decimal(0)
        for i in range(max(bisect.bisect_right(w.transition_ts, start_ms) - 1, 0), hi):
            ts, state, clusters = w.transitions[i][:3]
            if state != "RUNNING":
                continue
            a = max(ts, start_ms)
            b = min(w.transitions[i + 1][0] if i + 1 < len(w.transitions) else end_ms, end_ms)
            if b <= a:
                continue
            running += b - a
            clusters_ms += (b - a) * clusters
            for idle_a, idle_b in _gaps(a, b, busy):
                idle += idle_b - idle_a
                idle_cost += _priced(billing, sku, idle_a, idle_b) * clusters * WAREHOUSE_DBU[w.cluster_size]
        out[w.id] = {"running_seconds": running / 1000, "cluster_seconds": clusters_ms / 1000,
                     "idle_seconds": idle / 1000, "idle_cost": float(idle_cost / (HOUR_MS // 1000) / 1000),
                     "events": by_type}
    return out


def _gaps(a: int, b: int, busy: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of [a, b) when none of the (start, end) intervals is in flight."""
    out, at = [], a
    for start, end in busy:
        if end <= at:
            continue
        if start >= b:
            break
        if start > at:
            out.append((at, start))
        at = max(at, end)
        if at >= b:
            break
    if at < b:
        out.append((at, b))
    return out


def _priced(billing, sku: str, a: int, b: int) -> Decimal:
    """Milliseconds of [a, b) times the list price valid at each of them."""
    total = Decimal(0)
    for start, end, price in billing.prices[sku]:
        overlap = min(b, end if end is not None else b) - max(a, start)
        if overlap > 0:
            total += overlap * price
    return total
