"""SQL warehouse uptime and idle cost: running seconds, cluster-seconds and events by type from
system.compute.warehouse_events, and the running time with no query in flight for idle_grace_seconds (from
system.query.history) with its list cost, counted once per interval that the tables have settled."""

from __future__ import annotations

import bisect
from collections import defaultdict

from .. import metrics as m
from ..sources.sql import DBU_PER_CLUSTER_HOUR, literal
from ..cycle import Cycle
from .base import register
from .system_tables import SystemTableCollector, amount, finite, sql_date, sql_timestamp, utc

RUNNING_EVENTS = ("RUNNING", "SCALED_UP", "SCALED_DOWN")
EVENT_TYPES = ("STARTING", "RUNNING", "SCALED_UP", "SCALED_DOWN", "STOPPING", "STOPPED")
LONGEST_QUERY_SECONDS = 2 * 86400        # how far before an interval a query in flight during it may have started
PRICE_DAYS = 35                          # of billing searched for the SKU each warehouse is billed under


def merged(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The union of intervals, as sorted disjoint ones."""
    out: list[list[float]] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return [(a, b) for a, b in out]


def uncovered(start: float, end: float, busy: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The parts of [start, end) that no interval of `busy` (sorted, disjoint) covers."""
    out, at = [], start
    for b_start, b_end in busy[max(bisect.bisect_left(busy, (start,)) - 1, 0):]:
        if b_start >= end:
            break
        if b_end <= at:
            continue
        if b_start > at:
            out.append((at, min(b_start, end)))
        at = max(at, b_end)
        if at >= end:
            break
    if at < end:
        out.append((at, end))
    return out


@register
class WarehouseUsageCollector(SystemTableCollector):
    name = "warehouse_usage"
    default_interval = 15 * 60.0
    counts_work = True
    options = {
        **SystemTableCollector.options,
        # system.query.history is complete "typically within an hour" (and queries run long): count an interval
        # only once this long has passed.
        "settle_seconds": ("duration", 2 * 3600.0),
        # A warehouse between two queries a few seconds apart is not wasting money that anyone could save: it is
        # idle once no query has been in flight for this long.
        "idle_grace_seconds": ("duration", 300.0),
    }
    permission = ("CAN USE on the SQL warehouse (warehouse_id) and SELECT on system.compute.warehouse_events, "
                  "system.query.history, system.billing.usage and system.billing.list_prices")

    def check_statement(self) -> str:
        return "SELECT 1 FROM system.compute.warehouse_events LIMIT 1"

    # -- the statements

    def events_statement(self, workspace_id: str, start: float, end: float) -> str:
        """Each warehouse's last event before `start` (its state then) and every event in [start, end)."""
        return (
            "SELECT warehouse_id, event_type, cluster_count, event_time FROM (\n"
            "  SELECT warehouse_id, event_type, cluster_count, event_time,\n"
            "    ROW_NUMBER() OVER (PARTITION BY warehouse_id ORDER BY event_time DESC) AS newest\n"
            "  FROM system.compute.warehouse_events\n"
            f"  WHERE workspace_id = {literal(workspace_id)} AND event_time < {sql_timestamp(start)}\n"
            ") AS before WHERE newest = 1\n"
            "UNION ALL\n"
            "SELECT warehouse_id, event_type, cluster_count, event_time\n"
            "FROM system.compute.warehouse_events\n"
            f"WHERE workspace_id = {literal(workspace_id)}\n"
            f"  AND event_time >= {sql_timestamp(start)} AND event_time < {sql_timestamp(end)}")

    def queries_statement(self, workspace_id: str, start: float, end: float) -> str:
        """When statements were in flight on each warehouse during [start, end)."""
        return (
            "SELECT compute.warehouse_id AS warehouse_id, start_time, end_time\n"
            "FROM system.query.history\n"
            f"WHERE workspace_id = {literal(workspace_id)}\n"
            "  AND compute.warehouse_id IS NOT NULL\n"
            f"  AND start_time >= {sql_timestamp(start - LONGEST_QUERY_SECONDS)}\n"
            f"  AND start_time < {sql_timestamp(end)}\n"
            f"  AND end_time > {sql_timestamp(start)}")

    def prices_statement(self, workspace_id: str, start: float) -> str:
        """The list prices of the SKUs each warehouse was billed under lately."""
        import datetime as dt
        since = dt.datetime.fromtimestamp(start, dt.timezone.utc).date() - dt.timedelta(days=PRICE_DAYS)
        return (
            "SELECT DISTINCT u.usage_metadata.warehouse_id AS warehouse_id, p.currency_code,\n"
            "  p.pricing.default AS price, p.price_start_time, p.price_end_time\n"
            "FROM system.billing.usage AS u\n"
            "JOIN system.billing.list_prices AS p\n"
            "  ON p.sku_name = u.sku_name AND p.cloud = u.cloud AND p.usage_unit = u.usage_unit\n"
            f"WHERE u.workspace_id = {literal(workspace_id)}\n"
            "  AND u.usage_metadata.warehouse_id IS NOT NULL\n"
            f"  AND u.usage_date >= {sql_date(since)}")

    # -- the cycle

    def refresh(self, cycle: Cycle, state: dict) -> None:
        settle = self.settings.options["settle_seconds"]
        end = (self.clock() - settle) // 60 * 60
        start = state.setdefault("counted_until", self.counting_since(state) - settle)
        if end > start:
            self.count(cycle, start, end)
            state["counted_until"] = end
        cycle.gauge(m.WAREHOUSE_USAGE_SETTLED, state["counted_until"])

    def count(self, cycle: Cycle, start: float, end: float) -> None:
        workspace_id = self.workspace.workspace_id
        events: dict[str, list[tuple[float, str, int]]] = defaultdict(list)
        for row in self.query(self.events_statement(workspace_id, start, end)):
            with cycle.item("warehouse event"):
                at = utc(row["event_time"]).timestamp()
                events[str(row["warehouse_id"])].append((at, str(row["event_type"]),
                                                         int(amount(row.get("cluster_count")))))
        busy: dict[str, list[tuple[float, float]]] = defaultdict(list)
        grace = self.settings.options["idle_grace_seconds"]
        for row in self.query(self.queries_statement(workspace_id, start - grace, end)):
            with cycle.item("query"):
                busy[str(row["warehouse_id"])].append((utc(row["start_time"]).timestamp(),
                                                       utc(row["end_time"]).timestamp() + grace))
        prices: dict[str, list[tuple[float, float, float, str]]] = defaultdict(list)
        for row in self.query(self.prices_statement(workspace_id, start)):
            with cycle.item("price"):
                stop = utc(row.get("price_end_time"))
                prices[str(row["warehouse_id"])].append((
                    utc(row["price_start_time"]).timestamp(), stop.timestamp() if stop else float("inf"),
                    finite(row["price"]), str(row["currency_code"])))
        sizes = {w["id"]: w.get("cluster_size") for w in self.rest.warehouses()}
        for warehouse_id, timeline in events.items():
            with cycle.item("warehouse"):
                self._count_warehouse(cycle, warehouse_id, sorted(timeline), merged(busy[warehouse_id]),
                                      prices[warehouse_id], DBU_PER_CLUSTER_HOUR.get(sizes.get(warehouse_id) or ""),
                                      start, end)

    def _count_warehouse(self, cycle, warehouse_id, timeline, busy, prices, dbu_rate, start, end) -> None:
        running, idle, cluster_s = 0.0, 0.0, 0.0
        idle_cost: dict[str, float] = defaultdict(float)
        for i, (at, event_type, clusters) in enumerate(timeline):
            if at >= start:
                cycle.inc(m.WAREHOUSE_EVENTS, warehouse_id=warehouse_id, event_type=event_type)
            if event_type not in RUNNING_EVENTS:
                continue
            a, b = max(at, start), min(timeline[i + 1][0] if i + 1 < len(timeline) else end, end)
            if b <= a:
                continue
            running += b - a
            cluster_s += (b - a) * clusters
            for idle_a, idle_b in uncovered(a, b, busy):
                idle += idle_b - idle_a
                for p_start, p_end, price, currency in prices if dbu_rate else ():
                    overlap = min(idle_b, p_end) - max(idle_a, p_start)
                    if overlap > 0:
                        idle_cost[currency] += overlap * clusters * dbu_rate / 3600 * price
        cycle.inc(m.WAREHOUSE_RUNNING_SECONDS, running, warehouse_id=warehouse_id)
        cycle.inc(m.WAREHOUSE_CLUSTER_SECONDS, cluster_s, warehouse_id=warehouse_id)
        cycle.inc(m.WAREHOUSE_IDLE_SECONDS, idle, warehouse_id=warehouse_id)
        for currency, value in idle_cost.items():
            cycle.inc(m.WAREHOUSE_IDLE_COST, value, warehouse_id=warehouse_id, currency=currency)
