"""The simulator's ledger of what it made happen, which /simulator/truth reports.

Each domain model records a terminal transition at the moment the simulator decides it (a run's plan, a query's
draw, an update's final state, a batch's data quality), with explicit arguments and stamped with the simulated
instant it takes effect. Reading the ledger for a window [since, now] counts the entries whose instant falls inside
it. Nothing here looks at API payloads or applies the exporter's rules: the outcome is what the simulator chose.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from decimal import Decimal


class _Entries:
    """(at_ms, ...) tuples appended in any order (models generate ahead of time and out of order across entities),
    sorted lazily by instant when read."""

    def __init__(self):
        self._rows: list[tuple] = []
        self._sorted = True

    def add(self, row: tuple) -> None:
        if self._rows and row[0] < self._rows[-1][0]:
            self._sorted = False
        self._rows.append(row)

    def between(self, since_ms: float, now_ms: float) -> list[tuple]:
        if not self._sorted:
            self._rows.sort(key=lambda r: r[0])   # mostly sorted already: Timsort merges the runs in linear time
            self._sorted = True
        lo = bisect.bisect_left(self._rows, since_ms, key=lambda r: r[0])
        hi = bisect.bisect_right(self._rows, now_ms, key=lambda r: r[0])
        return self._rows[lo:hi]


def _bump(counts: dict, key, n: int = 1) -> None:
    counts[key] = counts.get(key, 0) + n


@dataclass
class BilledDay:
    """One UTC day of one workspace's billed usage at list price, as the billing model generated it."""

    dbus: Decimal = Decimal(0)
    cost: Decimal = Decimal(0)
    visible_ms: int = 0             # when the day's last record becomes visible in system.billing.usage
    restated: bool = False
    by_sku: dict = field(default_factory=dict)
    by_product: dict = field(default_factory=dict)
    by_job: dict = field(default_factory=dict)
    by_warehouse: dict = field(default_factory=dict)
    by_pipeline: dict = field(default_factory=dict)
    by_tag: dict = field(default_factory=dict)


class Ledger:
    """Every count /simulator/truth reports. Record methods take the facts as arguments; window methods answer in
    the response shape of the truth endpoint."""

    def __init__(self):
        self._job_runs = _Entries()           # (ended_ms, job_id, run_id, outcome, run_type)
        self._job_repairs = _Entries()        # (ended_ms, job_id, run_id, repair_id, outcome)
        self._job_retries = _Entries()        # (run_ended_ms, job_id, run_id, task_key)
        self._queries = _Entries()            # (ended_ms, warehouse_id, query_id, status)
        self._updates = _Entries()            # (ended_ms, pipeline_id, update_id, state, cause)
        self._output_rows = _Entries()        # (at_ms, pipeline_id, flow, rows)
        self._dropped = _Entries()            # (at_ms, pipeline_id, dataset, records)
        self._expectations = _Entries()       # (at_ms, pipeline_id, dataset, expectation, passed, failed)
        self._cluster_events = _Entries()     # (at_ms, cluster_id, type)
        self._billed: dict[str, dict[str, BilledDay]] = {}    # workspace_id -> YYYY-MM-DD -> day
        # Serving traffic, audit events, predictive optimization: domain -> (at_ms, visible_ms, key, amount).
        self._activity: dict[str, _Entries] = {}
        # (billable key, usage start) -> [what it is attributed to, list cost], for job runs and all-purpose clusters
        self._priced_usage: dict[tuple[str, int], list] = {}

    # -- recording (called by the domain models)

    def job_run_ended(self, job_id: int, run_id: int, ended_ms: int, outcome: str, run_type: str = "JOB_RUN") -> None:
        """outcome: how the simulator decided the run ends the first time (SUCCESS, FAILED, TIMEDOUT, CANCELED,
        INTERNAL_ERROR, SKIPPED); run_type: JOB_RUN, or SUBMIT_RUN / WORKFLOW_RUN for one-time runs."""
        self._job_runs.add((ended_ms, job_id, run_id, outcome, run_type))

    def job_run_repaired(self, job_id: int, run_id: int, repair_id: int, ended_ms: int, outcome: str) -> None:
        """A repair of a run that had ended, which itself ends at ended_ms with outcome (SUCCESS or FAILED)."""
        self._job_repairs.add((ended_ms, job_id, run_id, repair_id, outcome))

    def job_task_retried(self, job_id: int, run_id: int, task_key: str, run_ended_ms: int) -> None:
        """One retry: a task attempt after the first inside a run, or a run started as the retry of another. It is
        stamped with the end of the run it belongs to, when the number of attempts is final."""
        self._job_retries.add((run_ended_ms, job_id, run_id, task_key))

    def query_finished(self, warehouse_id: str, query_id: str, ended_ms: int, status: str) -> None:
        self._queries.add((ended_ms, warehouse_id, query_id, status))

    def pipeline_update_ended(self, pipeline_id: str, update_id: str, ended_ms: int, state: str, cause: str) -> None:
        self._updates.add((ended_ms, pipeline_id, update_id, state, cause))

    def flow_output_rows(self, pipeline_id: str, flow: str, at_ms: int, rows: int) -> None:
        self._output_rows.add((at_ms, pipeline_id, flow, rows))

    def dropped_records(self, pipeline_id: str, dataset: str, at_ms: int, records: int) -> None:
        self._dropped.add((at_ms, pipeline_id, dataset, records))

    def expectation_records(self, pipeline_id: str, dataset: str, expectation: str, at_ms: int, passed: int,
                            failed: int) -> None:
        self._expectations.add((at_ms, pipeline_id, dataset, expectation, passed, failed))

    def cluster_event(self, cluster_id: str, at_ms: int, type_: str) -> None:
        """An event the clusters model generated for a cluster (every type it emits)."""
        self._cluster_events.add((at_ms, cluster_id, type_))

    def billed(self, workspace_id: str, day: str, dbus: Decimal, cost: Decimal, visible_ms: int, restated: bool, *,
               sku: str, product: str, job_id: str | None, warehouse_id: str | None, pipeline_id: str | None,
               tags: dict[str, str]) -> None:
        """Usage the billing model generated for one day (at list price), with what it is attributed to."""
        billed = self.billed_days(workspace_id).setdefault(day, BilledDay())
        billed.dbus += dbus
        billed.cost += cost
        billed.visible_ms = max(billed.visible_ms, visible_ms)
        billed.restated = billed.restated or restated
        _bump(billed.by_sku, sku, cost)
        _bump(billed.by_product, product, cost)
        for key, table in ((job_id, billed.by_job), (warehouse_id, billed.by_warehouse),
                           (pipeline_id, billed.by_pipeline)):
            if key:
                _bump(table, key, cost)
        for name, value in tags.items():
            _bump(billed.by_tag.setdefault(name, {}), value, cost)

    def usage_priced(self, key: str, start_ms: int, cost: Decimal, *, job_run_id: str | None,
                     cluster_id: str | None) -> None:
        """List cost of one usage record of a job run or an all-purpose cluster (what runs cost: timeline.py)."""
        entry = self._priced_usage.setdefault((key, start_ms), [{"job_run_id": job_run_id, "cluster_id": cluster_id},
                                                                Decimal(0)])
        entry[1] += cost

    def priced_usage(self) -> dict[tuple[str, int], list]:
        return self._priced_usage

    # -- windows (the truth endpoint's shapes)

    def billed_days(self, workspace_id: str) -> dict[str, BilledDay]:
        """Every day billed so far; the billing model decides which are complete (see billing.py)."""
        return self._billed.setdefault(workspace_id, {})

    def activity(self, domain: str, at_ms: int, visible_ms: int, key: tuple, amount: float = 1) -> None:
        """Something the serving, audit or maintenance model made happen at at_ms, which a reader of its system
        table (or export) can see from visible_ms: key names what (e.g. ("5xx", endpoint, entity))."""
        self._activity.setdefault(domain, _Entries()).add((at_ms, visible_ms, key, amount))

    def activity_counts(self, domain: str, since_ms: float, now_ms: int, visible: bool = True) -> dict[tuple, float]:
        """Amounts by key of what happened in [since, now]; with visible, only what could be seen by now."""
        out: dict[tuple, float] = {}
        for _, seen, key, amount in self._activity.get(domain, _Entries()).between(since_ms, now_ms):
            if not visible or seen <= now_ms:
                _bump(out, key, amount)
        return out

    def job_runs(self, since_ms: float, now_ms: int) -> dict:
        by_job: dict[str, dict[str, int]] = {}
        by_run_type: dict[str, dict[str, int]] = {}
        entries = self._job_runs.between(since_ms, now_ms)
        for _, job_id, _, outcome, run_type in entries:
            _bump(by_job.setdefault(str(job_id), {}), outcome)
            _bump(by_run_type.setdefault(run_type, {}), outcome)
        return {"total": len(entries), "by_job": by_job, "by_run_type": by_run_type}

    def job_repairs(self, since_ms: float, now_ms: int) -> dict:
        by_job: dict[str, dict[str, int]] = {}
        entries = self._job_repairs.between(since_ms, now_ms)
        for _, job_id, _, _, outcome in entries:
            _bump(by_job.setdefault(str(job_id), {}), outcome)
        return {"total": len(entries), "by_job": by_job}

    def job_retries(self, since_ms: float, now_ms: int) -> dict:
        by_job: dict[str, int] = {}
        entries = self._job_retries.between(since_ms, now_ms)
        for _, job_id, _, _ in entries:
            _bump(by_job, str(job_id))
        return {"total": len(entries), "by_job": by_job}

    def cluster_events(self, since_ms: float, now_ms: int) -> dict:
        by_cluster: dict[str, dict[str, int]] = {}
        entries = self._cluster_events.between(since_ms, now_ms)
        for _, cluster_id, type_ in entries:
            _bump(by_cluster.setdefault(cluster_id, {}), type_)
        return {"total": len(entries), "by_cluster": by_cluster}

    def queries(self, since_ms: float, now_ms: int) -> dict:
        by_warehouse: dict[str, dict[str, int]] = {}
        entries = self._queries.between(since_ms, now_ms)
        for _, warehouse_id, _, status in entries:
            _bump(by_warehouse.setdefault(warehouse_id, {}), status)
        return {"total": len(entries), "by_warehouse": by_warehouse}

    def pipelines(self, since_ms: float, now_ms: int) -> dict:
        updates = {"total": 0, "by_state": {}, "by_pipeline": {}, "by_cause": {}}
        for _, pipeline_id, _, state, cause in self._updates.between(since_ms, now_ms):
            updates["total"] += 1
            _bump(updates["by_state"], state)
            _bump(updates["by_pipeline"].setdefault(pipeline_id, {}), state)
            _bump(updates["by_cause"].setdefault(cause, {}), state)
        expectations = {"by_outcome": {"passed": 0, "failed": 0}, "by_pipeline": {}}
        for _, pipeline_id, dataset, name, passed, failed in self._expectations.between(since_ms, now_ms):
            counts = expectations["by_pipeline"].setdefault(pipeline_id, {}).setdefault(dataset, {}) \
                .setdefault(name, {"passed": 0, "failed": 0})
            counts["passed"] += passed
            counts["failed"] += failed
            expectations["by_outcome"]["passed"] += passed
            expectations["by_outcome"]["failed"] += failed
        dropped: dict[str, dict[str, int]] = {}
        for _, pipeline_id, dataset, records in self._dropped.between(since_ms, now_ms):
            _bump(dropped.setdefault(pipeline_id, {}), dataset, records)
        rows: dict[str, dict[str, int]] = {}
        for _, pipeline_id, flow, n in self._output_rows.between(since_ms, now_ms):
            _bump(rows.setdefault(pipeline_id, {}), flow, n)
        return {"pipeline_updates": updates, "pipeline_expectation_records": expectations,
                "pipeline_dropped_records": dropped, "pipeline_flow_output_rows": rows}
