"""Jobs: job metadata, completed runs counted exactly once, run durations and queueing, active runs, last success."""

from __future__ import annotations

import bisect
import itertools
import logging
from collections import deque

from .. import metrics as m
from ..cycle import Cycle
from ..sources.errors import NotFound
from .base import Collector, Cursor, NameFilter, register, tally

log = logging.getLogger(__name__)

TERMINAL_LIFE_CYCLES = {"TERMINATED", "SKIPPED", "INTERNAL_ERROR"}
FAILED_RESULTS = {"FAILED", "TIMEDOUT", "INTERNAL_ERROR"}
ACTIVE_STATES = ("QUEUED", "PENDING", "RUNNING", "TERMINATING", "BLOCKED", "WAITING")
RUNS_PAGE = 25                  # runs/list's largest page
FINISH_HISTORY = 5              # cycles of finished runs' ages that predict the next cycle's


def run_result(run: dict) -> str:
    """The result label of a completed run: its result_state, or for runs that have none (SKIPPED,
    INTERNAL_ERROR) the life_cycle_state. The simulator's truth uses the same rule."""
    state = run.get("state") or {}
    return state.get("result_state") or state.get("life_cycle_state") or "UNKNOWN"


def is_terminal(run: dict) -> bool:
    state = run.get("state") or {}
    status = run.get("status") or {}
    return state.get("life_cycle_state") in TERMINAL_LIFE_CYCLES or status.get("state") == "TERMINATED"


def active_state(run: dict) -> str:
    """The current state of a run still going, preferring the newer `status` over the deprecated `state`."""
    status = (run.get("status") or {}).get("state")
    if status in ACTIVE_STATES:
        return status
    life_cycle = (run.get("state") or {}).get("life_cycle_state")
    return {"WAITING_FOR_RETRY": "WAITING"}.get(life_cycle, life_cycle or "PENDING")


def run_duration_seconds(run: dict) -> float:
    """Execution time without queueing: run_duration for multitask runs, else setup + execution + cleanup,
    else end - start - queue."""
    total = run.get("run_duration") or 0
    if not total:
        total = sum(run.get(k) or 0 for k in ("setup_duration", "execution_duration", "cleanup_duration"))
    if not total and run.get("end_time") and run.get("start_time"):
        total = run["end_time"] - run["start_time"] - (run.get("queue_duration") or 0)
    return max(total, 0) / 1000.0


def retries(run: dict) -> int:
    """Retry attempts in a run: the run itself if it is a retry, plus each task's attempts after the first."""
    latest: dict[str, int] = {}
    for task in run.get("tasks") or []:
        key = task.get("task_key", "")
        latest[key] = max(latest.get(key, 0), task.get("attempt_number") or 0)
    return (1 if (run.get("attempt_number") or 0) > 0 else 0) + sum(latest.values())


def listing_start(watermark: float, now: float, rate: float, pending_starts: list[float],
                  finished_ages: list[float], cycles: int = 1) -> float:
    """Where a cycle's listing of runs begins: at the watermark, or further back when the pages in between cost
    fewer requests than they save. A run that started in the extra stretch and is still active costs nothing more
    (otherwise the active-runs list would carry it); one that finished since the last cycle is learned from the
    listing for 1/25 of a request instead of one runs/get; one finished and counted long ago costs 1/25 for nothing.
    Which followed runs finish now is predicted from the ages at which followed runs finished in the last `cycles`
    cycles; `rate` is runs started per ms, pending_starts the start times of the runs followed."""
    base = now - watermark
    pending_ages = sorted(now - start for start in pending_starts)
    best, best_cost = base, 0.0
    for finished, age in enumerate(sorted(a for a in finished_ages if a > base), start=1):
        followed = bisect.bisect_right(pending_ages, age) - bisect.bisect_right(pending_ages, base)
        cost = (rate * (age - base) - followed) / RUNS_PAGE - finished / cycles * (RUNS_PAGE - 1) / RUNS_PAGE
        if cost < best_cost:
            best, best_cost = age, cost
    return now - best


@register
class JobsCollector(Collector):
    name = "jobs"
    default_interval = 60.0
    counts_work = True
    permission = "CAN VIEW on the jobs to watch (workspace admins see all jobs)"
    options = {
        "include": ("regex_list", []),
        "exclude": ("regex_list", []),
        "task_metrics": ("bool", False),
        # Runs listed up to this long before the newest start time seen are listed again next cycle, in case
        # the API makes a run visible a little after runs that started later. Seen ids make the overlap harmless.
        "listing_margin": ("duration", 10.0),
        # On the very first start, runs that started this long before counting began are scanned once, so a run
        # that started before counting_since and finished after it is still counted.
        "max_run_duration": ("duration", 6 * 3600.0),
        # Job settings (names, schedules) change rarely; a workspace with 10,000 jobs needs 100 list pages, so the
        # list is refreshed at this interval rather than every cycle.
        "jobs_list_interval": ("duration", 300.0),
    }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.wanted = NameFilter(self.settings.options.get("include"), self.settings.options.get("exclude"))
        self._jobs: list[dict] = []
        self._jobs_listed_at = -float("inf")
        # What listing_start predicts from: runs started per ms, and the ages (ms) at which the runs followed
        # finished in the last few cycles. In memory only: after a restart the first cycle lists from the watermark.
        self._run_rate = 0.0
        self._finished_ages: deque[list[float]] = deque(maxlen=FINISH_HISTORY)

    def check(self) -> str:
        jobs = list(itertools.islice(self.rest.jobs(page_size=1), 1))
        return f"listed jobs ({len(jobs)} on the first page)"

    def collect(self, cycle: Cycle, state: dict) -> None:
        since_ms = self.counting_since(state) * 1000
        names = self._emit_jobs(cycle)
        cursor = Cursor(state.setdefault("runs", {}),
                        since_ms - self.settings.options["max_run_duration"] * 1000)
        pending: dict[str, float] = state.setdefault("pending", {})
        last = {"success": state.setdefault("last_success", {}), "failure": state.setdefault("last_failure", {})}
        active: dict[str, tuple[str, str]] = {}   # run_id -> (job_id, state)

        now_ms = self.clock() * 1000
        finished_ages: list[float] = []

        def complete(run: dict) -> None:
            if pending.pop(str(run["run_id"]), None) is not None:
                finished_ages.append(now_ms - int(run.get("start_time") or 0))
            if (run.get("end_time") or 0) < since_ms:
                return  # finished before counting began
            job_id = str(run.get("job_id", ""))
            if job_id in names and not self.wanted(names[job_id]):
                return
            self._count_run(cycle, job_id, run, last)
            tally(state, (run.get("end_time") or 0) / 1000, f"{job_id}\t{run_result(run)}")

        # Runs started from `start` on are all listed, finished or not; the active ones that started before it
        # come from the active-runs list, and the runs followed that are in neither have finished: one get each.
        start = int(listing_start(cursor.watermark, now_ms, self._run_rate, list(pending.values()),
                                  [age for ages in self._finished_ages for age in ages],
                                  max(1, len(self._finished_ages))))
        newest, listed = cursor.watermark, 0
        for run in self.rest.job_runs(start_time_from=start, expand_tasks=True):
            with cycle.item("run"):
                run_id, started = str(run["run_id"]), int(run.get("start_time") or 0)
                listed += 1
                newest = max(newest, started)
                if run_id not in pending and (started < cursor.watermark or not cursor.is_new(run_id)):
                    continue    # handled in an earlier cycle
                cursor.mark(run_id, started)
                job_id = str(run.get("job_id", ""))
                if job_id in names and not self.wanted(names[job_id]):
                    pending.pop(run_id, None)
                    continue
                if is_terminal(run):
                    complete(run)
                else:
                    pending[run_id] = started
                    active[run_id] = (job_id, active_state(run))
        if now_ms > start:
            self._run_rate = listed / (now_ms - start)

        for run in self.rest.job_runs(active_only=True, start_time_to=start - 1):
            with cycle.item("active run"):
                active[str(run["run_id"])] = (str(run.get("job_id", "")), active_state(run))
                # A run not met before (it started before the watermark, e.g. before the first start) is followed.
                pending.setdefault(str(run["run_id"]), int(run.get("start_time") or 0))

        for run_id in [r for r in pending if r not in active]:
            try:
                run = self.rest.get_run(int(run_id))
            except NotFound:
                pending.pop(run_id, None)   # deleted: nothing to count
                continue
            with cycle.item("run"):
                if is_terminal(run):
                    complete(run)
                else:
                    active[run_id] = (str(run.get("job_id", "")), active_state(run))
        self._finished_ages.append(finished_ages)

        cursor.advance(newest - self.settings.options["listing_margin"] * 1000)

        for job_id, run_state in active.values():
            if job_id not in names or self.wanted(names[job_id]):
                cycle.count_gauge(m.JOB_RUNS_ACTIVE, job_id=job_id, state=run_state)
        for kind, metric in (("success", m.JOB_LAST_SUCCESS), ("failure", m.JOB_LAST_FAILURE)):
            for job_id, when in last[kind].items():
                if job_id in names and self.wanted(names[job_id]):
                    cycle.gauge(metric, when, job_id=job_id)

    def _emit_jobs(self, cycle: Cycle) -> dict[str, str]:
        if self.clock() - self._jobs_listed_at >= self.settings.options.get("jobs_list_interval", 0):
            self._jobs = list(self.rest.jobs())
            self._jobs_listed_at = self.clock()
        names: dict[str, str] = {}
        for job in self._jobs:
            with cycle.item("job"):
                self._emit_job(cycle, job, names)
        return names

    def _emit_job(self, cycle: Cycle, job: dict, names: dict[str, str]) -> None:
        job_id = str(job["job_id"])
        settings = job.get("settings") or {}
        names[job_id] = settings.get("name") or ""
        if not self.wanted(names[job_id]):
            return
        schedule = settings.get("schedule")
        paused = "none" if not schedule else str(schedule.get("pause_status") == "PAUSED").lower()
        cycle.gauge(m.JOB_INFO, 1, job_id=job_id, job_name=names[job_id], schedule_paused=paused)

    def _count_run(self, cycle: Cycle, job_id: str, run: dict, last: dict) -> None:
        result = run_result(run)
        cycle.inc(m.JOB_RUNS, job_id=job_id, result_state=result, trigger=run.get("trigger") or "")
        cycle.observe(m.JOB_RUN_DURATION, run_duration_seconds(run), job_id=job_id)
        cycle.observe(m.JOB_RUN_QUEUE_DURATION, (run.get("queue_duration") or 0) / 1000.0, job_id=job_id)
        cycle.inc(m.JOB_RUN_RETRIES, retries(run), job_id=job_id)
        end = (run.get("end_time") or 0) / 1000.0
        kind = "success" if result == "SUCCESS" else "failure" if result in FAILED_RESULTS else None
        if kind and end > last[kind].get(job_id, 0):
            last[kind][job_id] = end
        if self.settings.options["task_metrics"]:
            latest: dict[str, dict] = {}
            for task in run.get("tasks") or []:
                key = task.get("task_key", "")
                if (task.get("attempt_number") or 0) >= (latest.get(key, {}).get("attempt_number") or 0):
                    latest[key] = task
            for key, task in latest.items():
                cycle.inc(m.JOB_TASK_RUNS, job_id=job_id, task_key=key, result_state=run_result(task))
