"""SQL queries: every query that ends on the workspace's SQL warehouses counted once by query id, with its duration,
queueing, bytes and rows read, spill and cache hits; and what is queued or running now. From the query history REST
endpoint, which shows queries as they run (system.query.history lags by up to an hour)."""

from __future__ import annotations

import itertools

from .. import metrics as m
from ..cycle import Cycle
from .base import Collector, Cursor, enum_name, register, tally

TERMINAL = ("FINISHED", "FAILED", "CANCELED")
QUEUED = ("QUEUED",)
PAGE_SIZE = 500              # the endpoint takes fewer than 1000
ID_BATCH = 100
DAY_MS = 86_400_000


def queue_seconds(query: dict) -> float:
    """Time in the provisioning queue (warehouse starting) or the overloading queue (at capacity), until compilation
    began; 0 when the query never queued."""
    metrics = query.get("metrics") or {}
    queued = [metrics.get(k) for k in ("provisioning_queue_start_timestamp", "overloading_queue_start_timestamp")
              if metrics.get(k)]
    compiled = metrics.get("query_compilation_start_timestamp")
    if not queued or not compiled:
        return 0.0
    return max(0.0, (int(compiled) - min(int(q) for q in queued)) / 1000.0)


def duration_seconds(query: dict) -> float:
    duration = query.get("duration")
    if duration is None:
        duration = (query.get("metrics") or {}).get("total_time_ms")
    if duration is None and query.get("query_end_time_ms") and query.get("query_start_time_ms"):
        duration = query["query_end_time_ms"] - query["query_start_time_ms"]
    return max(0.0, (duration or 0) / 1000.0)


@register
class QueriesCollector(Collector):
    name = "queries"
    default_interval = 60.0
    counts_work = True
    permission = "CAN MONITOR or CAN MANAGE on the SQL warehouses (workspace admins see every user's queries)"
    options = {
        # Queries listed up to this long before the newest start time seen are listed again next cycle, in case
        # the history shows a query minutes after queries that started later. Seen ids make the overlap harmless.
        "listing_margin": ("duration", 300.0),
        # On the very first start, queries that started this long before counting began are scanned once, so one
        # that started before counting_since and ended after it is still counted.
        "max_query_duration": ("duration", 2 * 3600.0),
    }

    def check(self) -> str:
        first = list(itertools.islice(self.rest.query_history(page_size=1), 1))
        return f"listed query history ({len(first)} on the first page)"

    def collect(self, cycle: Cycle, state: dict) -> None:
        now_ms = int(self.clock() * 1000)
        since_ms = self.counting_since(state) * 1000
        cursor = Cursor(state.setdefault("queries", {}),
                        since_ms - self.settings.options["max_query_duration"] * 1000)
        pending: dict[str, float] = state.setdefault("pending", {})     # query_id -> start ms, not ended yet
        active: dict[tuple[str, str], int] = {}
        listed: set[str] = set()
        newest = cursor.watermark

        def handle(query: dict) -> int:
            """Count or follow one query; returns its start time (ms)."""
            query_id = query.get("query_id")
            if not isinstance(query_id, str) or not query_id:
                raise ValueError(f"query without a query_id: {query_id!r}")
            started = int(query.get("query_start_time_ms") or 0)
            if started > now_ms + DAY_MS:
                # Believing it would move the watermark past every real query.
                raise ValueError(f"query {query_id} starts in the future: {started}")
            if query_id in listed:
                return started
            listed.add(query_id)
            status = enum_name(query.get("status"))
            if status in TERMINAL:
                if query_id in pending or cursor.is_new(query_id):
                    pending.pop(query_id, None)
                    cursor.mark(query_id, started)
                    if (query.get("query_end_time_ms") or now_ms) >= since_ms:
                        self._count(cycle, query, status)
                        warehouse_id = query.get("warehouse_id") or query.get("endpoint_id") or ""
                        tally(state, (query.get("query_end_time_ms") or now_ms) / 1000,
                                   f"{warehouse_id}\t{status}")
                return started
            # Still going: followed until it ends, and shown as active now.
            if query_id in pending or cursor.is_new(query_id):
                pending[query_id] = started
                cursor.mark(query_id, started)
            warehouse_id = query.get("warehouse_id") or query.get("endpoint_id") or ""
            key = (warehouse_id, "QUEUED" if status in QUEUED else "RUNNING")
            active[key] = active.get(key, 0) + 1
            return started

        for query in self.rest.query_history(start_ms=int(cursor.watermark), end_ms=now_ms, page_size=PAGE_SIZE):
            with cycle.item("query"):
                newest = max(newest, handle(query))
        # Queries followed since before the watermark: asked for by id, so the queries that ended around them are
        # not listed (and counted) again.
        older = [query_id for query_id in pending if query_id not in listed]
        for i in range(0, len(older), ID_BATCH):
            for query in self.rest.query_history(statement_ids=older[i:i + ID_BATCH], page_size=PAGE_SIZE):
                with cycle.item("query"):
                    handle(query)
        for query_id in [q for q in pending if q not in listed]:
            del pending[query_id]       # gone from the history (retention): nothing left to count
        cursor.advance(newest - self.settings.options["listing_margin"] * 1000)
        for (warehouse_id, status), count in active.items():
            cycle.gauge(m.QUERIES_ACTIVE, count, warehouse_id=warehouse_id, status=status)

    def _count(self, cycle: Cycle, query: dict, status: str) -> None:
        warehouse_id = query.get("warehouse_id") or query.get("endpoint_id") or ""
        metrics = query.get("metrics") or {}
        labels = {"warehouse_id": warehouse_id}
        cycle.inc(m.QUERIES, status=status, statement_type=enum_name(query.get("statement_type")) or "OTHER",
                  **labels)
        cycle.observe(m.QUERY_DURATION, duration_seconds(query), **labels)
        cycle.observe(m.QUERY_QUEUE_DURATION, queue_seconds(query), **labels)
        cycle.inc(m.QUERY_READ_BYTES, float(metrics.get("read_bytes") or 0), **labels)
        cycle.inc(m.QUERY_SPILLED_BYTES, float(metrics.get("spill_to_disk_bytes") or 0), **labels)
        cycle.inc(m.QUERY_READ_ROWS, float(metrics.get("rows_read_count") or 0), **labels)
        cycle.inc(m.QUERY_PRODUCED_ROWS, float(metrics.get("rows_produced_count") or query.get("rows_produced")
                                               or 0), **labels)
        if metrics.get("result_from_cache"):
            cycle.inc(m.QUERY_CACHE_HITS, **labels)
