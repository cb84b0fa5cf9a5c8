"""Jobs: job metadata, completed runs counted exactly once, run durations and queueing, active runs, last success."""

from __future__ import annotations

import bisect
import itertools
import logging
from collections import deque

from .. import metrics as m
from ..cycle import Cycle
from ..sources.errors import NotFound
from .base import (
    Collector, Cursor, NameFilter, forbidden_among, register, skipped_if_forbidden, tally, with_forbidden,
)

log = logging.getLogger(__name__)

TERMINAL_LIFE_CYCLES = {"TERMINATED", "SKIPPED", "INTERNAL_ERROR"}
FAILED_RESULTS = {"FAILED", "TIMEDOUT", "INTERNAL_ERROR"}
ACTIVE_STATES = ("QUEUED", "PENDING", "RUNNING", "TERMINATING", "BLOCKED", "WAITING")
RUNS_PAGE = 25                  # runs/list's largest page
FINISH_HISTORY = 5              # cycles of finished runs' ages that predict the next cycle's
# One-time runs (runs/submit, notebook workflows: a new job_id each, in no jobs/list answer) count under this job_id,
# so the series stay bounded however many are submitted.
ONE_TIME = "_one_time"
# A run that did not succeed is read again by id to find repairs that started and ended between two cycles (or
# while the exporter was down): first this long after its last end, then at four times the age each time, until
# repair_window has passed.
FIRST_REPAIR_CHECK_MS = 600_000
REPAIR_CHECK_GROWTH = 4
CHECK_PROBES = 100              # `check` reads one run of at most this many jobs
JOBS_RELIST_SECONDS = 60.0      # the least time between two reads of jobs/list

# status.termination_details.code -> the result label. A timeout is a CANCELED by the platform in `status`; only the
# deprecated state says TIMEDOUT, so that one word is taken from it. Codes not listed are failures.
STATUS_RESULTS = {
    "SUCCESS": "SUCCESS", "SUCCESS_WITH_FAILURES": "SUCCESS_WITH_FAILURES", "USER_CANCELED": "CANCELED",
    "CANCELED": "CANCELED", "INTERNAL_ERROR": "INTERNAL_ERROR", "MAX_CONCURRENT_RUNS_EXCEEDED": "SKIPPED",
    "MAX_JOB_QUEUE_SIZE_EXCEEDED": "SKIPPED", "SKIPPED": "SKIPPED", "DISABLED": "DISABLED",
}


def run_result(run: dict) -> str:
    """The result label of something that ended (a run, a repair, a task run): from `status` when it carries
    termination_details, else from the deprecated `state` (its result_state, or the life_cycle_state for the
    terminal states without one, SKIPPED and INTERNAL_ERROR)."""
    state = run.get("state") or {}
    code = ((run.get("status") or {}).get("termination_details") or {}).get("code")
    if code:
        result = STATUS_RESULTS.get(code, "FAILED")
        if result == "CANCELED" and state.get("result_state") == "TIMEDOUT":
            return "TIMEDOUT"
        if result == "SKIPPED" and state.get("result_state"):
            return state["result_state"]    # a task skipped because an upstream task failed: UPSTREAM_FAILED
        return result
    return state.get("result_state") or state.get("life_cycle_state") or "UNKNOWN"


def is_terminal(run: dict) -> bool:
    state = run.get("state") or {}
    status = run.get("status") or {}
    if status.get("state"):
        return status["state"] == "TERMINATED"
    return state.get("life_cycle_state") in TERMINAL_LIFE_CYCLES


def active_state(run: dict) -> str:
    """The current state of a run still going, preferring the newer `status` over the deprecated `state`."""
    status = (run.get("status") or {}).get("state")
    if status in ACTIVE_STATES:
        return status
    life_cycle = (run.get("state") or {}).get("life_cycle_state")
    return {"WAITING_FOR_RETRY": "WAITING"}.get(life_cycle, life_cycle or "PENDING")


def repairs_of(run: dict) -> list[dict]:
    """The run's repairs (REPAIR entries of repair_history), oldest first."""
    return [h for h in run.get("repair_history") or [] if h.get("type") == "REPAIR"]


def first_attempt(run: dict) -> dict:
    """The run as it first ended: a repaired run keeps its first end, result and task runs in the ORIGINAL entry of
    repair_history, while the run's own fields follow its latest repair."""
    original = next((h for h in run.get("repair_history") or [] if h.get("type") == "ORIGINAL"), None)
    if original is None:
        return run
    task_run_ids = set(original.get("task_run_ids") or [])
    tasks = [t for t in run.get("tasks") or [] if t.get("run_id") in task_run_ids]
    # run_duration covers the repairs too: without it the duration is the original's end - start - queue.
    return {**run, "state": original.get("state"), "status": original.get("status"),
            "end_time": original.get("end_time") or 0, "run_duration": 0, "tasks": tasks}


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
    """Retries in a run: 1 if the run itself is a legacy RETRY run (attempt_number > 0), plus its task runs that are
    attempts after the first inside the run (multitask format). A legacy retry's task carries the run's own
    attempt_number, so it is not counted a second time."""
    own = run.get("attempt_number") or 0
    return (1 if own > 0 else 0) + sum(1 for t in run.get("tasks") or [] if (t.get("attempt_number") or 0) > own)


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
    state_shape = {"runs": dict, "pending": dict, "followed": dict, "last_success": dict, "last_failure": dict}
    default_interval = 60.0
    counts_work = True
    permission = "CAN VIEW on the jobs to watch (workspace admins see all jobs)"
    options = {
        "include": ("regex_list", []),
        "exclude": ("regex_list", []),
        "task_metrics": ("bool", False),
        # Runs listed up to this long before the newest start time seen are listed again next cycle, in case
        # the API makes a run visible up to minutes after runs that started later. Seen ids make the overlap harmless.
        "listing_margin": ("duration", 120.0),
        # On the very first start, runs that started this long before counting began are scanned once, so a run
        # that started before counting_since and finished after it is still counted.
        "max_run_duration": ("duration", 6 * 3600.0),
        # Job settings (names, schedules) change rarely; a workspace with 10,000 jobs needs 100 list pages, so the
        # list is refreshed at this interval rather than every cycle (and when a run names a job not yet listed).
        "jobs_list_interval": ("duration", 300.0),
        # A run that did not succeed is read again by id for this long after it last ended, so a repair that
        # starts and ends between two cycles, or while the exporter is down, is still counted. Repairs later than
        # this are counted when a cycle sees them running.
        "repair_window": ("duration", 86400.0),
        # At most this many of those reads per cycle (the most overdue first), so a restart after a long stop
        # spreads its catching up over a few cycles.
        "repair_checks_per_cycle": ("int", 100),
    }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.wanted = NameFilter(self.settings.options.get("include"), self.settings.options.get("exclude"))
        # The first cycle of each process reads every followed run that may still be repaired: repairs that
        # started and ended while the exporter was down are counted then, not at their next scheduled read.
        self.catch_up = True
        self._jobs: list[dict] = []
        self.jobs_listed_at = -float("inf")
        # What listing_start predicts from: runs started per ms, and the ages (ms) at which the runs followed
        # finished in the last few cycles. In memory only: after a restart the first cycle lists from the watermark.
        self._run_rate = 0.0
        self._finished_ages: deque[list[float]] = deque(maxlen=FINISH_HISTORY)

    def check(self) -> str:
        jobs = list(itertools.islice(self.rest.jobs(page_size=1), 1))
        # One run of each job that ran in the last hour, read by id: a job whose runs the credential may list but
        # not read is listed here.
        newest: dict[str, int] = {}
        for run in self.rest.job_runs(start_time_from=int((self.clock() - 3600) * 1000)):
            newest.setdefault(str(run.get("job_id")), run["run_id"])
            if len(newest) >= CHECK_PROBES:
                break
        forbidden = forbidden_among((f"runs of job {job_id}", lambda r=run_id: self.rest.get_run(r))
                                    for job_id, run_id in newest.items())
        return with_forbidden(f"listed jobs ({len(jobs)} on the first page) and read a run of {len(newest)} jobs",
                              forbidden, "CAN VIEW on the job")

    def collect(self, cycle: Cycle, state: dict) -> None:
        JobsCycle(self, cycle, state).run()

    def list_jobs(self, cycle: Cycle, force: bool = False) -> dict[str, str]:
        """job_id -> name of every job, from a list at most jobs_list_interval old (or fresh when forced)."""
        if force or self.clock() - self.jobs_listed_at >= self.option("jobs_list_interval"):
            self._jobs = [slim_job(job) for job in self.rest.jobs()]
            self.jobs_listed_at = self.clock()
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


class JobsCycle:
    """One cycle of the jobs collector over its persisted state:

    - runs: the Cursor over run start times (watermark, ids seen at or after it);
    - pending: run_id -> start of the runs met whose first attempt has not ended yet: counted once when it does;
    - followed: run_id -> {job, start, end, check, repairs} for runs that may still be repaired (or were): the job
      label, the start time, the latest end seen, when to read the run again by id (0: not again) and the ids of
      the repairs already counted. Kept until repair_window after the latest end;
    - last_success / last_failure: job label -> end time of the newest run of that kind.
    """

    def __init__(self, collector: JobsCollector, cycle: Cycle, state: dict):
        self.c, self.cycle, self.rest, self.state = collector, cycle, collector.rest, state
        options = collector.settings.options
        self.since_ms = collector.counting_since(state) * 1000
        self.now_ms = collector.clock() * 1000
        self.window_ms = collector.option("repair_window") * 1000
        self.names = collector.list_jobs(cycle)
        self.refreshed = False
        self.cursor = Cursor(state.setdefault("runs", {}), self.since_ms - options["max_run_duration"] * 1000)
        self.pending: dict[str, float] = state.setdefault("pending", {})
        self.followed: dict[str, dict] = state.setdefault("followed", {})
        self.last = {"success": state.setdefault("last_success", {}),
                     "failure": state.setdefault("last_failure", {})}
        self.active: dict[str, tuple[str, str]] = {}   # run_id -> (job label, state)
        self.finished_ages: list[float] = []
        if collector.catch_up:
            for entry in self.followed.values():
                if entry["check"]:
                    entry["check"] = min(entry["check"], self.now_ms)

    def run(self) -> None:
        c, cursor, pending = self.c, self.cursor, self.pending
        options = c.settings.options
        # Runs started from `start` on are all listed, finished or not; the active ones that started before it
        # come from the active-runs list, and the runs followed that are in neither are read by id.
        start = int(listing_start(cursor.watermark, self.now_ms, c._run_rate, list(pending.values()),
                                  [age for ages in c._finished_ages for age in ages],
                                  max(1, len(c._finished_ages))))
        newest, listed = cursor.watermark, 0
        for run in self.rest.job_runs(start_time_from=start, expand_tasks=True):
            with self.cycle.item("run"):
                run_id, started = str(int(run["run_id"])), int(run.get("start_time") or 0)
                listed += 1
                newest = max(newest, started)
                new = run_id in pending or (started >= cursor.watermark and cursor.is_new(run_id))
                if new:
                    cursor.mark(run_id, started)
                self.observe(run, new)
        if self.now_ms > start:
            c._run_rate = listed / (self.now_ms - start)

        for run in self.rest.job_runs(active_only=True, start_time_to=start - 1, expand_tasks=True):
            with self.cycle.item("active run"):
                run_id = str(int(run["run_id"]))
                # A run met for the first time (it started before the watermark, e.g. before the first start) is
                # followed until its first end; one active again because it is being repaired was counted before.
                if not repairs_of(run):
                    pending.setdefault(run_id, int(run.get("start_time") or 0))
                self.observe(run, run_id in pending)

        self.read_by_id(start, c.option("repair_checks_per_cycle"))
        c._finished_ages.append(self.finished_ages)
        cursor.advance(newest - options["listing_margin"] * 1000)
        c.keep_within_retention(self.cycle, self.state, [*self.names, ONE_TIME], "job_id", maps=self.last.values())
        done = [r for r, f in self.followed.items() if not f["check"] and self.now_ms - f["end"] > self.window_ms]
        for run_id in done:
            del self.followed[run_id]
        self.emit_gauges()
        c.catch_up = False

    def read_by_id(self, start: int, max_checks: int) -> None:
        """Read the runs that left both listings: those still pending, then the followed runs due for a check."""
        due = [r for r in self.pending if r not in self.active]
        checks = sorted((f["check"], r) for r, f in self.followed.items()
                        if f["check"] and f["check"] <= self.now_ms and r not in self.active and r not in self.pending)
        due += [r for _, r in checks[:max_checks]]
        for run_id in due:
            started = self.pending.get(run_id, self.followed.get(run_id, {}).get("start", 0))
            try:
                with skipped_if_forbidden(self.cycle, f"run {run_id}", "CAN VIEW on its job") as skip:
                    run = self.rest.get_run(int(run_id))
            except NotFound:
                self.pending.pop(run_id, None)   # deleted: nothing to count
                self.followed.pop(run_id, None)
                continue
            if skip.skipped:
                if not started:
                    continue
                # runs/get is refused, but the listing shows the run: list the runs that started that millisecond.
                run = next((r for r in self.rest.job_runs(start_time_from=int(started), start_time_to=int(started),
                                                           expand_tasks=True) if str(r.get("run_id")) == run_id),
                           None)
                if run is None:
                    continue
            with self.cycle.item("run"):
                self.observe(run, run_id in self.pending)

    def job_label(self, run: dict) -> str:
        """The job_id label: the job's id, or ONE_TIME for a run of no job in jobs/list (a one-time run)."""
        job_id = str(run.get("job_id", ""))
        if (run.get("run_type") or "JOB_RUN") != "JOB_RUN":
            return ONE_TIME
        if job_id not in self.names and not self.refreshed and \
                self.c.clock() - self.c.jobs_listed_at >= JOBS_RELIST_SECONDS:
            # A job created since the list was read: read it again, at most once a cycle and a minute (runs of a
            # deleted job would otherwise have every cycle read the whole list).
            self.refreshed = True
            self.names = self.c.list_jobs(self.cycle, force=True)
        return job_id if job_id in self.names else ONE_TIME

    def wanted(self, label: str) -> bool:
        return self.c.wanted(ONE_TIME if label == ONE_TIME else self.names[label])

    def observe(self, run: dict, count_first_end: bool) -> None:
        """Everything one sighting of a run tells: its first end (counted once, when count_first_end: the run is
        pending or new), repairs that ended since the last sighting, and whether it is active now."""
        run_id = str(int(run["run_id"]))    # a garbled id fails the item here, before it is remembered
        label = self.job_label(run)
        if not self.wanted(label):
            self.pending.pop(run_id, None)
            return
        original = first_attempt(run)
        first_ended = is_terminal(original)
        if count_first_end and first_ended:
            if self.pending.pop(run_id, None) is not None:
                self.finished_ages.append(self.now_ms - int(run.get("start_time") or 0))
            if (original.get("end_time") or 0) >= self.since_ms:   # else it finished before counting began
                self.count_run(label, original)
        elif count_first_end:
            self.pending[run_id] = int(run.get("start_time") or 0)
        if not is_terminal(run):
            self.active[run_id] = (label, active_state(run))
        if first_ended:
            self.follow_repairs(run, label, original)

    def follow_repairs(self, run: dict, label: str, original: dict) -> None:
        """Count the run's repairs that ended and are not counted yet, and decide when to read it again."""
        run_id = str(int(run["run_id"]))
        repairs = repairs_of(run)
        entry = self.followed.get(run_id)
        floor = self.since_ms
        if entry is None:
            if not repairs and run_result(original) == "SUCCESS":
                return        # a success is not followed: its repair, if any, is seen running
            if run_result(original) == "SKIPPED" and not repairs:
                return
            entry = self.followed[run_id] = {"job": label, "start": int(run.get("start_time") or 0),
                                             "end": 0, "check": 0, "repairs": []}
            # Repairs of a run not followed until now may have been counted before it was dropped, at least
            # repair_window after they ended.
            floor = max(floor, self.now_ms - self.window_ms)
        for repair in repairs:
            if not repair.get("end_time") or not is_terminal(repair) or repair.get("id") in entry["repairs"]:
                continue
            entry["repairs"].append(repair.get("id"))
            if repair["end_time"] >= floor:
                self.cycle.inc(m.JOB_RUN_REPAIRS, job_id=label, result_state=run_result(repair))
        entry["end"] = max([original.get("end_time") or 0] + [r.get("end_time") or 0 for r in repairs])
        if not is_terminal(run):
            entry["check"] = self.now_ms          # read it by id as soon as it leaves the active list
        elif run_result(run) == "SUCCESS":
            entry["check"] = 0
        else:
            entry["check"] = self.next_check(entry["end"])

    def next_check(self, end_ms: float) -> float:
        """The next time to read a run that ended at end_ms without success, or 0 after repair_window."""
        step = FIRST_REPAIR_CHECK_MS
        while end_ms + step <= self.now_ms:
            step *= REPAIR_CHECK_GROWTH
        if self.now_ms >= end_ms + self.window_ms:
            return 0
        return min(end_ms + step, end_ms + self.window_ms)

    def count_run(self, label: str, run: dict) -> None:
        c, cycle = self.c, self.cycle
        result = run_result(run)
        cycle.inc(m.JOB_RUNS, job_id=label, result_state=result, trigger=run.get("trigger") or "")
        # What reconciliation compares with job_run_timeline: every end counted, the first and each repair's.
        tally(self.state, (run.get("end_time") or 0) / 1000, f"{label}\t{result}")
        cycle.observe(m.JOB_RUN_DURATION, run_duration_seconds(run), job_id=label)
        cycle.observe(m.JOB_RUN_QUEUE_DURATION, (run.get("queue_duration") or 0) / 1000.0, job_id=label)
        cycle.inc(m.JOB_RUN_RETRIES, retries(run), job_id=label)
        end = (run.get("end_time") or 0) / 1000.0
        kind = "success" if result == "SUCCESS" else "failure" if result in FAILED_RESULTS else None
        if kind and end > self.last[kind].get(label, 0):
            self.last[kind][label] = end
        if c.settings.options["task_metrics"]:
            latest: dict[str, dict] = {}
            for task in run.get("tasks") or []:
                key = task.get("task_key", "")
                if (task.get("attempt_number") or 0) >= (latest.get(key, {}).get("attempt_number") or 0):
                    latest[key] = task
            for key, task in latest.items():
                # A one-time run's task keys are whatever its submitter chose: they share one label value.
                cycle.inc(m.JOB_TASK_RUNS, job_id=label, task_key=ONE_TIME if label == ONE_TIME else key,
                          result_state=run_result(task))

    def emit_gauges(self) -> None:
        for label, run_state in self.active.values():
            self.cycle.count_gauge(m.JOB_RUNS_ACTIVE, job_id=label, state=run_state)
        for kind, metric in (("success", m.JOB_LAST_SUCCESS), ("failure", m.JOB_LAST_FAILURE)):
            for label, when in self.last[kind].items():
                if (label == ONE_TIME or label in self.names) and self.wanted(label):
                    self.cycle.gauge(metric, when, job_id=label)


def slim_job(job: dict) -> dict:
    """What _emit_job reads of a listed job: the list is kept between refreshes, and whole job settings (tasks,
    clusters, notifications) of 10,000 jobs would be tens of megabytes."""
    settings = job.get("settings") if isinstance(job, dict) else None
    if not isinstance(settings, dict):
        return job
    return {"job_id": job.get("job_id"), "settings": {k: settings[k] for k in ("name", "schedule") if k in settings}}
