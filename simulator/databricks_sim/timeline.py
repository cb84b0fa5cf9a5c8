"""system.lakeflow.job_run_timeline of the simulated workspace, made from the runs the jobs model produced: one row
per run and clock hour it spans (a long run is several rows; result_state and termination_code only on the slice
that ends where the run ends, once per end: a repaired run ends again), each visible a few minutes after its slice ends; and the truth of what runs cost, from the
billing model's own ledger of each run's usage.

The table spells results its own way (SUCCEEDED, CANCELLED, TIMED_OUT, ERROR), not as the REST API does."""

from __future__ import annotations

import datetime as dt

from .common import HOUR_MS, MINUTE_MS

COLUMNS = [
    ("account_id", "STRING"), ("workspace_id", "STRING"), ("job_id", "STRING"), ("run_id", "STRING"),
    ("period_start_time", "TIMESTAMP"), ("period_end_time", "TIMESTAMP"), ("trigger_type", "STRING"),
    ("run_type", "STRING"), ("run_name", "STRING"), ("compute_ids", "ARRAY<STRING>"), ("result_state", "STRING"),
    ("termination_code", "STRING"), ("job_parameters", "MAP<STRING, STRING>"),
]
# The REST API's result (or life cycle state, for runs without one) -> the table's result_state.
TABLE_RESULT = {"SUCCESS": "SUCCEEDED", "SUCCESS_WITH_FAILURES": "SUCCEEDED", "FAILED": "FAILED",
                "TIMEDOUT": "TIMED_OUT", "CANCELED": "CANCELLED", "INTERNAL_ERROR": "ERROR", "SKIPPED": "SKIPPED"}
TRIGGER = {0: "PERIODIC", 1: "ONE_TIME", 2: "RETRY"}
ALL_PURPOSE_BUCKET = "all_purpose"
DEFAULT_LAG_MS = 10 * MINUTE_MS


def ends(run) -> list[tuple[int, str]]:
    """(end_ms, REST result label) of every time the run ended, oldest first: its first end, then each repair's (the
    jobs model's Repair: end_ms and result)."""
    return [(run.end_ms, run.outcome)] + [(r.end_ms, r.result or "INTERNAL_ERROR") for r in run.repairs]


def compute_ids(run) -> list[str]:
    if run.life_cycle == "SKIPPED":
        return []       # a skipped run used no compute
    cluster = run.cluster_id or getattr(run.job, "existing_cluster_id", None)
    return [cluster] if cluster else []


class RunTimeline:
    """Rows of job_run_timeline for slices that ended, generated once each as simulated time passes."""

    def __init__(self, ws, lag_ms: int = DEFAULT_LAG_MS):
        self.ws = ws
        self.lag_ms = int(lag_ms)
        self._next = 0                   # index into the jobs' runs of the first run not yet taken up
        self._open: dict[int, int] = {}  # run_id -> start of its next slice, for runs with slices still to come

    def rows(self, now_ms: int) -> list[dict]:
        """Rows of every slice that ended by now_ms and was not returned before. Caller holds the workspace lock."""
        runs = self.ws.job_set.runs
        while self._next < len(runs) and runs[self._next].start_ms <= now_ms:
            self._open[runs[self._next].run_id] = runs[self._next].start_ms
            self._next += 1
        out = []
        for run_id in list(self._open):
            run = self.ws.job_set.by_id[run_id]
            at = self._open[run_id]
            end_times = [end_ms for end_ms, _ in ends(run)]
            final = end_times[-1]
            while True:
                # Slices are cut at every hour and at every end, so each end has its own result slice.
                stop = min([e for e in end_times if e > at] + [final, at // HOUR_MS * HOUR_MS + HOUR_MS])
                if stop > now_ms:
                    break
                out.append(self._row(run, at, stop))
                at = stop
                if at >= final:
                    break
            if at >= final and final <= now_ms:
                del self._open[run_id]
            else:
                self._open[run_id] = at
        return out

    def _row(self, run, start: int, end: int) -> dict:
        result = code = None
        for end_ms, label in ends(run):
            if start < end_ms <= end or start == end == end_ms:
                result = TABLE_RESULT.get(label, label)
                code = "SKIPPED" if run.life_cycle == "SKIPPED" else run.job.plan(run).code
        job = run.job
        return {"account_id": self.ws.account_id, "workspace_id": str(self.ws.workspace_id),
                "job_id": str(run.job_id), "run_id": str(run.run_id), "period_start_time": start,
                "period_end_time": end, "trigger_type": TRIGGER.get(run.kind, "ONE_TIME"),
                "run_type": run.run_type, "run_name": getattr(run, "name", None) or job.name,
                "compute_ids": compute_ids(run), "result_state": result, "termination_code": code,
                "job_parameters_k": [], "job_parameters_v": [], "_visible_at": end + self.lag_ms}


def run_cost_truth(ws, now: int) -> dict:
    """What job runs cost, from the ledger's priced usage (billing.py records it): per UTC day by job and the run's
    latest result (RUNNING while it has not ended), the part billed after the run's first end (repairs) apart, and
    the all-purpose bucket: the cost of all-purpose cluster hours during which a job run used the cluster (such
    usage names no job or run); and per run its job, result, last end (epoch seconds, None while running) and cost."""
    days: dict[str, dict] = {}
    runs: dict[str, dict] = {}
    used = set()
    for run in ws.job_set.runs:
        if run.job.compute == "existing" and run.life_cycle != "SKIPPED":
            for hour in range(run.start_ms // HOUR_MS * HOUR_MS, ends(run)[-1][0], HOUR_MS):
                used.add((compute_ids(run)[0], hour))
    for (_, hour), (attribution, cost) in ws.ledger.priced_usage().items():
        day = dt.datetime.fromtimestamp(hour / 1000, dt.timezone.utc).date().isoformat()
        entry = days.setdefault(day, {"by_job": {}, "repairs": {}, "all_purpose": 0.0})
        run_id = attribution["job_run_id"]
        if run_id is None:
            if (attribution["cluster_id"], hour) in used:
                entry["all_purpose"] += float(cost)
            continue
        run = ws.job_set.by_id[int(run_id)]
        finished = [(end_ms, label) for end_ms, label in ends(run) if end_ms <= now]
        job_id = str(run.job.job_id)
        result = finished[-1][1] if finished else "RUNNING"
        by_result = entry["by_job"].setdefault(job_id, {})
        by_result[result] = by_result.get(result, 0.0) + float(cost)
        if hour >= ends(run)[0][0]:
            entry["repairs"][job_id] = entry["repairs"].get(job_id, 0.0) + float(cost)
        record = runs.setdefault(run_id, {"job_id": job_id, "result": result,
                                          "ended": finished[-1][0] / 1000 if finished else None, "cost": 0.0})
        record["cost"] += float(cost)
    return {"days": days, "runs": runs}
