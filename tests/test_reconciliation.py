"""The reconciliation collector against the simulated workspace (the jobs and queries collectors over the real SDK,
the system tables over the real connector): for a closed hour, what the REST path counted agrees with
job_run_timeline and query.history, entity by entity, except where the reconciliation_gap scenario hid runs from
the Jobs API: there the difference is minus the runs the simulator's own ledger says were hidden."""

from __future__ import annotations

import pytest
from sql_helpers import T0, FakeClock, collector, connected, run_cycle, samples, sql_server, warehouse_in

from databricks_exporter.store import MetricStore

pytestmark = pytest.mark.integration
WORKSPACE = "1234567890123456"
HOUR = 3600


def test_a_closed_hour_reconciles_to_zero_except_the_runs_the_api_hid():
    clock = FakeClock()
    server = sql_server(clock, history_seconds=6 * HOUR)
    workspace = None
    try:
        hidden_jobs = set(server.workspace.scenarios.start("reconciliation_gap").targets["job_ids"])
        scenario_start_ms = server.workspace.now_ms()
        store = MetricStore()
        workspace = connected(server, warehouse_in(server, "RUNNING").id, store)
        counters = [collector(name, workspace, clock, lookback=0) for name in ("jobs", "queries")]
        reconciliation = collector("reconciliation", workspace, clock)
        # Three hours of REST cycles, five simulated minutes apart.
        for _ in range(36):
            for instance in counters:
                run_cycle(instance, store)
            clock.advance(300)
        run_cycle(reconciliation, store)

        start = (T0 + 3 * HOUR - HOUR) // HOUR * HOUR - HOUR      # the last hour closed an hour ago
        assert start >= T0
        until = {labels["source"]: value
                 for labels, value in samples(store, "databricks_exporter_reconciled_until_timestamp_seconds")}
        assert until == {"jobs": start + HOUR, "queries": start + HOUR}
        differences = {(labels["source"], labels["entity_id"], labels["result"]): value
                       for labels, value in samples(store, "databricks_exporter_reconciliation_difference")}
        assert len([k for k in differences if k[0] == "jobs"]) > 20
        assert len([k for k in differences if k[0] == "queries"]) >= 2

        hidden: dict[tuple, int] = {}
        for run in server.workspace.job_set.runs:
            if (str(run.job.job_id) in hidden_jobs and run.start_ms > scenario_start_ms
                    and start * 1000 <= run.end_ms < (start + HOUR) * 1000):
                key = ("jobs", str(run.job.job_id), run.outcome)
                hidden[key] = hidden.get(key, 0) - 1
        assert hidden and sum(hidden.values()) <= -5
        assert {k: v for k, v in differences.items() if v} == hidden
        assert by_source(store) == {"jobs", "queries"}
    finally:
        if workspace is not None:
            workspace.sql.close()
        server.shutdown()


def by_source(store: MetricStore) -> set[str]:
    return {labels["source"] for labels, _ in samples(store, "databricks_exporter_reconciliation_last_timestamp_seconds")}
