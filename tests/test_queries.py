"""The queries collector against the simulated workspace's query history (real SDK over HTTP): every query that ends
is counted once, with its duration, queueing, bytes, rows, spill and cache hit, equal to the simulated truth, also
across SIGKILL restarts of the exporter; what is queued or running now is shown as such."""

from __future__ import annotations

from collections import defaultdict

import pytest
from sql_helpers import FakeClock, collector, connected, run_cycle, samples, sql_server

from conftest import converge_on_truth, sigkill_restarts, truth, wait_for
from databricks_exporter import metrics as m
from databricks_exporter.collectors.queries import duration_seconds, queue_seconds
from databricks_exporter.store import MetricStore
from test_integration import parse, total

pytestmark = pytest.mark.integration


def test_counts_and_sums_equal_the_simulated_history_as_time_passes():
    clock = FakeClock()
    server = sql_server(clock)
    try:
        workspace = connected(server, None)
        store = MetricStore()
        instance = collector("queries", workspace, clock, lookback=1800)
        since_ms = (clock() - 1800) * 1000
        # An hour and a half in steps of 7 minutes: slow queries stay pending across cycles and past the watermark.
        for _ in range(13):
            run_cycle(instance, store)
            clock.advance(420)
        clock.advance(-420)
        now_ms = clock() * 1000
        with server.workspace.lock:
            done = list(server.sql.queries.completed(int(since_ms), int(now_ms)))
            loads = server.sql.queries.loads
            active = defaultdict(int)
            for load in loads.values():
                for q in load.queries:
                    if q.start_ms <= now_ms < q.end_ms:
                        status = q.status_at(int(now_ms))
                        active[(q.warehouse_id, "QUEUED" if status == "QUEUED" else "RUNNING")] += 1
        assert len(done) > 1000 and any(q.end_ms - q.start_ms > 300_000 for q in done)
        # Queries that ran longer than a cycle plus the listing margin were older than the watermark when they
        # ended: only the lookup by id can have counted them.
        assert any(q.end_ms - q.start_ms > (420 + 60) * 1000 and q.start_ms >= since_ms for q in done)

        expected_counts = defaultdict(float)
        sums = defaultdict(lambda: defaultdict(float))
        for q in done:
            expected_counts[(q.warehouse_id, q.status, q.statement_type)] += 1
            info = q.to_json(int(now_ms), include_metrics=True)
            s = sums[q.warehouse_id]
            s["count"] += 1
            s["duration"] += duration_seconds(info)
            s["queue"] += queue_seconds(info)
            s["read_bytes"] += q.read_bytes
            s["spill"] += q.spill_bytes
            s["rows_read"] += q.rows_read
            s["rows_produced"] += q.rows_produced
            s["cache"] += 1 if q.cache_hit else 0
        got = {(lab["warehouse_id"], lab["status"], lab["statement_type"]): v
               for lab, v in samples(store, "databricks_queries_total")}
        assert got == expected_counts

        def per_warehouse(name, attr=None):
            return {lab["warehouse_id"]: (getattr(v, attr) if attr else v) for lab, v in samples(store, name)}

        for name, key, attr in (("databricks_query_duration_seconds", "count", "count"),
                                ("databricks_query_duration_seconds", "duration", "sum"),
                                ("databricks_query_queue_duration_seconds", "queue", "sum"),
                                ("databricks_query_read_bytes_total", "read_bytes", None),
                                ("databricks_query_spilled_bytes_total", "spill", None),
                                ("databricks_query_read_rows_total", "rows_read", None),
                                ("databricks_query_produced_rows_total", "rows_produced", None),
                                ("databricks_query_result_cache_hits_total", "cache", None)):
            # A counter series exists once something was added; a histogram's as soon as a query was observed.
            assert per_warehouse(name, attr) == {w: pytest.approx(s[key], rel=1e-9) for w, s in sums.items()
                                                 if s[key] or attr}, name
        # "Slower than 5 minutes" is a bucket boundary, and the slow queries land above it.
        above = m.QUERY_DURATION.buckets.index(300) + 1
        assert sum(sum(v.counts[above:]) for _, v in samples(store, "databricks_query_duration_seconds")) == \
            sum(1 for q in done if duration_seconds(q.to_json(int(now_ms), False)) > 300)
        # Active now: the last cycle's view, which is the model at that moment.
        assert {(lab["warehouse_id"], lab["status"]): v for lab, v in samples(store, "databricks_queries_active")} \
            == dict(active)
    finally:
        server.shutdown()


@pytest.fixture
def simulator():
    """The REST simulator with its SQL side (conftest's fixture, plus the TLS listener)."""
    server = sql_server(None)
    yield server
    server.shutdown()


def counted(exporter) -> tuple[dict, float]:
    samples_ = parse(exporter.metrics())
    by_warehouse: dict[str, dict[str, float]] = {}
    for name, labels, value in samples_:
        if name == "databricks_queries_total":
            slot = by_warehouse.setdefault(labels["warehouse_id"], {})
            slot[labels["status"]] = slot.get(labels["status"], 0) + value
    since = total(samples_, "databricks_exporter_counting_since_timestamp_seconds", collector="queries")
    return by_warehouse, since


def test_queries_are_counted_exactly_once_across_sigkill_restarts(simulator, exporter_factory):
    config = {"collectors": {"queries": {"interval": "2s"}, "clusters": {"enabled": False},
                             "jobs": {"enabled": False}, "warehouses": {"enabled": False},
                             "pipelines": {"enabled": False}, "billing": {"enabled": False},
                             "utilization": {"enabled": False}}}
    exporter = exporter_factory(config).start()
    first_since = wait_for(lambda: counted(exporter)[1], 30, what="counting_since")
    sigkill_restarts(exporter, [(3, 4)] * 2, then=3)       # queries end while the exporter is down

    def expected():
        queries = truth(simulator, first_since)["queries"]
        assert queries["total"] > 100
        return {w: {s: float(n) for s, n in by.items()} for w, by in queries["by_warehouse"].items()}, first_since

    converge_on_truth(simulator, lambda: counted(exporter), expected, what="queries_total to equal the truth")
