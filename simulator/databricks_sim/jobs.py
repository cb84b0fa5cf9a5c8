"""Simulated jobs: job definitions, the runs each job emits strictly in trigger order (schedules, retries, manual
runs, queueing and skipping against max_concurrent_runs) and the jobs and runs API over them."""

from __future__ import annotations

import bisect
import heapq
import random
from dataclasses import dataclass

from .clusters import NODE_TYPES, SPARK_VERSIONS, ClusterSet, ClusterSpec
from .common import (
    DAY_MS, HOUR_MS, MINUTE_MS, SECOND_MS, SERVICE_PRINCIPAL, TEAMS, USERS, decode_page_token, encode_page_token,
    ApiError, fast_randint, invalid_parameter, permission_denied, legacy_does_not_exist, make_cluster_id, stable_int,
)

# Run ids are (trigger second since 2020) * 10^7 + job index * 100 + slot. That keeps them unique without any
# shared counter (so lazy generation in any order gives the same ids), increasing with time like real ones, and
# below 2^53 until 2048 so JavaScript consumers do not lose precision.
RUN_ID_EPOCH_S = 1_577_836_800
MAX_JOBS = 100_000
SUBMIT_SLOTS = 1_000        # job indexes after the one-time stream's, so runs/submit can take 1,000 runs a second

KIND_SCHEDULED, KIND_RETRY, KIND_MANUAL, KIND_SUBMITTED = 0, 1, 2, 3
TRIGGER_BY_KIND = {KIND_SCHEDULED: "PERIODIC", KIND_RETRY: "RETRY", KIND_MANUAL: "ONE_TIME",
                   KIND_SUBMITTED: "ONE_TIME"}

# One-time runs (runs/submit from Airflow or ADF, dbutils.notebook.run children) arrive at about this many a day.
ONE_TIME_RUNS_PER_DAY = 500
ONE_TIME_NAMES = ["airflow", "adf", "dbt-cloud", "prefect"]

# Repairs: a share of the FAILED multitask runs is repaired by hand, most within minutes, some hours later (after
# the run has left any listing window of recent runs); a repair that fails again may be repaired once more.
REPAIR_SHARE = 0.35
REPAIR_LATE_SHARE = 0.3
REPAIR_SUCCESS = 0.75
MAX_REPAIRS = 2

SUBJECTS = [
    "orders", "customers", "payments", "inventory", "sessions", "clickstream", "invoices", "features",
    "churn", "forecast", "ledger", "campaigns", "shipments", "fraud", "recommendations",
]
ACTIONS = ["ingest", "etl", "refresh", "aggregate", "sync", "export", "train", "score", "quality-check", "backfill"]
TASK_KEYS = ["ingest", "validate", "transform", "enrich", "aggregate", "publish", "train", "score", "export"]

# The first 60 jobs form the "core" workspace whose schedules guarantee several completed runs every minute;
# jobs beyond that are the long tail of hourly and daily batch jobs a large workspace has, which keeps the run
# volume of a 10k-job benchmark workspace realistic rather than 150x the core one.
CORE_PERIODS_MIN = ([1] * 5 + [2] * 3 + [5] * 7 + [10] * 5 + [15] * 7 + [30] * 6 + [60] * 11 + [240] * 4
                    + [1440] * 7 + [None] * 5)
TAIL_PERIODS_MIN = [(30, 10), (60, 35), (120, 10), (240, 15), (1440, 25), (None, 5)]


def make_run_id(start_ms: int, job_index: int, kind: int) -> int:
    return (start_ms // 1000 - RUN_ID_EPOCH_S) * 10_000_000 + job_index * 100 + kind * 20


@dataclass
class TaskDef:
    key: str
    depends_on: list[str]
    median_ms: int
    max_retries: int
    min_retry_interval_ms: int


class Run:
    """The compact record of one job run; full JSON is re-derived on demand from its deterministic plan."""

    __slots__ = ("run_id", "job", "start_ms", "exec_start_ms", "ready_ms", "end_ms", "kind", "attempt",
                 "original_run_id", "life_cycle", "result", "outcome", "queue_reason", "cluster_id", "repairs",
                 "run_type", "name")

    def __init__(self, run_id, job, start_ms, kind, attempt, original_run_id):
        self.run_id = run_id
        self.job = job
        self.start_ms = start_ms
        self.kind = kind
        self.attempt = attempt
        self.original_run_id = original_run_id or run_id
        self.exec_start_ms = start_ms
        self.ready_ms = 0
        self.end_ms = start_ms
        self.life_cycle = "TERMINATED"
        self.result: str | None = None
        self.outcome = ""             # how the simulator decided the run ends (see RunPlan.outcome)
        self.queue_reason: str | None = None
        self.cluster_id: str | None = None
        self.repairs: list[Repair] = []     # in start order; the last may still be running
        self.run_type = "JOB_RUN"
        self.name: str | None = None          # a one-time run's own run_name

    @property
    def key(self) -> tuple[int, int]:
        return (self.start_ms, self.run_id)

    @property
    def job_id(self) -> int:
        """A one-time run's job_id is its own (in no jobs/list answer); a job's run carries the job's."""
        if self.run_type == "JOB_RUN":
            return self.job.job_id
        return 800_000_000_000_000 + self.run_id % 10**14

    def repairs_started(self, now_ms: int) -> list["Repair"]:
        return [r for r in self.repairs if r.start_ms <= now_ms]

    def active_at(self, now_ms: int) -> bool:
        return now_ms < self.end_ms or any(r.start_ms <= now_ms < r.end_ms for r in self.repairs)

    def latest_end_ms(self) -> int:
        return max([self.end_ms] + [r.end_ms for r in self.repairs])


class Repair:
    """One repair of a run: which tasks it re-ran (as new task runs), when, and how it ended."""

    __slots__ = ("repair_id", "number", "start_ms", "end_ms", "result", "attempts")

    def __init__(self, repair_id: int, number: int, start_ms: int, end_ms: int, result: str,
                 attempts: list["AttemptPlan"]):
        self.repair_id = repair_id
        self.number = number
        self.start_ms = start_ms
        self.end_ms = end_ms
        self.result = result
        self.attempts = attempts


def _run_key(run: Run) -> tuple[int, int]:
    return (run.start_ms, run.run_id)


@dataclass
class AttemptPlan:
    """When one task attempt ran and how it ended; start 0 means it never started."""

    task: TaskDef
    index: int
    retry: int
    start: int
    setup: int
    execution: int
    cleanup: int
    end: int
    life_cycle: str = "TERMINATED"
    result: str | None = "SUCCESS"
    message: str = ""
    code: str = "SUCCESS"
    type: str = "SUCCESS"

    def cut(self, at: int, life_cycle: str, result: str | None, code: str, type_: str, message: str) -> None:
        """Stop this attempt at `at` (timeout, cancel, internal error)."""
        if self.start == 0 or at <= self.start:
            self.start = self.setup = self.execution = self.cleanup = 0
        elif at < self.start + self.setup:
            self.setup, self.execution, self.cleanup = at - self.start, 0, 0
        elif at < self.start + self.setup + self.execution:
            self.execution, self.cleanup = at - self.start - self.setup, 0
        else:
            self.cleanup = at - self.start - self.setup - self.execution
        self.end = at
        self.life_cycle, self.result, self.code, self.type, self.message = life_cycle, result, code, type_, message


@dataclass
class RunPlan:
    attempts: list[AttemptPlan]
    ready_ms: int
    cleanup_start_ms: int
    end_ms: int
    life_cycle: str
    result: str | None
    code: str
    type: str
    message: str
    outcome: str        # what the simulator decided: SUCCESS, FAILED, TIMEDOUT, CANCELED or INTERNAL_ERROR


class Job:
    """A job definition plus the generator of its runs, which it emits strictly in trigger order."""

    def __init__(self, ws: "SimulatedWorkspace", index: int, period_min: int | None, paused: bool):
        self.ws = ws
        self.index = index
        rng = random.Random(f"{ws.seed}:job:{index}")
        self.job_id = 10**14 + (index * 7_919_003 + rng.randrange(7_919_000)) * 10 + 3
        team, cost_center = rng.choice(TEAMS)
        self.name = f"{team}-{rng.choice(SUBJECTS)}-{rng.choice(ACTIONS)}-{index:03d}"
        self.creator = rng.choice(USERS + [SERVICE_PRINCIPAL])
        self.created_ms = ws.world_start_ms - rng.randint(2, 400) * DAY_MS - rng.randint(0, DAY_MS)
        self.tags = {"team": team, "cost_center": cost_center, "env": rng.choice(["prod", "prod", "staging"])}
        self.period_min = period_min
        self.paused = paused
        if period_min is None:
            self.offset_min = 0
        else:
            self.offset_min = rng.randrange(min(period_min, 1440))
        # Jobs firing every few minutes run on warm compute; job clusters take minutes to launch.
        if period_min is not None and period_min < 30:
            self.compute = rng.choice(["existing", "existing", "serverless"])
        else:
            self.compute = rng.choice(["job_cluster", "job_cluster", "job_cluster", "existing", "serverless"])
        self.existing_cluster_id = ws.cluster_set.pick_shared(rng) if self.compute == "existing" else None
        if self.compute == "existing" and self.existing_cluster_id is None:
            self.compute = "serverless"
        frequent = period_min is not None and period_min <= 2
        # Seconds until the run's compute is ready: a job cluster must launch, warm compute is almost instant.
        self.launch_range_s = {"job_cluster": (150, 400), "existing": (2, 10),
                               "serverless": (4, 12) if frequent else (5, 40)}[self.compute]
        self.max_concurrent_runs = 1 if frequent or rng.random() < 0.75 else rng.choice([2, 3, 5])
        self.queue_enabled = not (frequent and rng.random() < 0.6) and rng.random() < 0.9
        period_ms = (period_min or 240) * MINUTE_MS
        if frequent:
            total_ms = rng.randint(5, 20) * SECOND_MS
        else:
            total_ms = int(min(period_ms * rng.uniform(0.1, 0.4), rng.uniform(2, 90) * MINUTE_MS))
        self.timeout_seconds = 0 if rng.random() < 0.3 else max(120, int(total_ms * rng.uniform(3, 6) / 1000))
        reliability = rng.random()
        self.failure_rate = (rng.uniform(0.01, 0.03) if reliability < 0.7 else
                             rng.uniform(0.05, 0.10) if reliability < 0.9 else rng.uniform(0.2, 0.4))
        n_tasks = 1 if rng.random() < 0.5 else rng.randint(2, 2 if frequent else 5)
        keys = sorted(rng.sample(TASK_KEYS, n_tasks), key=TASK_KEYS.index) if n_tasks > 1 else ["main"]
        self.tasks: list[TaskDef] = []
        retry_wait_s = (5, 15) if frequent else (30, 180)
        for i, key in enumerate(keys):
            deps = sorted(rng.sample(keys[:i], min(i, rng.choice([1, 1, 2])))) if i else []
            retries = (1 if (n_tasks == 1 and not frequent and rng.random() < 0.4) or
                       (n_tasks > 1 and rng.random() < 0.3) else 0)
            self.tasks.append(TaskDef(key=key, depends_on=deps, median_ms=max(2_000, total_ms // n_tasks),
                                      max_retries=retries,
                                      min_retry_interval_ms=rng.randint(*retry_wait_s) * SECOND_MS))
        self._retryable = [i for i, t in enumerate(self.tasks) if t.max_retries]
        node_type = rng.choice(list(NODE_TYPES))
        self.cluster_spec = ClusterSpec(
            cluster_id="", cluster_name="", source="JOB", creator=self.creator, node_type_id=node_type,
            driver_node_type_id=node_type, spark_version=rng.choice(SPARK_VERSIONS),
            runtime_engine=rng.choice(["PHOTON", "STANDARD"]), data_security_mode="SINGLE_USER", autoscale=None,
            num_workers=rng.choice([1, 2, 4, 8]), autotermination_minutes=0,
            custom_tags={"team": team, "cost_center": cost_center})

        # Generation state, consumed strictly in trigger order.
        self._rng = random.Random(f"{ws.seed}:job-runs:{index}")
        self.runs: list[Run] = []
        self._active_ends: list[int] = []
        self._retries: list[tuple[int, int, int, int]] = []   # heap of (start_ms, run_id, attempt, original)
        self._next: tuple[int, int] | None = None
        self._next_fire_ms = self._scheduled_after(ws.world_start_ms - 1) if self.scheduled else None
        mean_manual_h = 6 if period_min is None else (24 if paused else 48)
        self._manual_mean_ms = mean_manual_h * HOUR_MS
        self._next_manual_ms = ws.world_start_ms + int(self._rng.expovariate(1 / self._manual_mean_ms))

    @property
    def scheduled(self) -> bool:
        return self.period_min is not None and not self.paused

    @property
    def multitask(self) -> bool:
        return len(self.tasks) > 1

    # -- definition JSON

    def cron(self) -> str:
        p, o = self.period_min, self.offset_min
        if p == 1:
            return "0 * * * * ?"
        if p < 60:
            return f"0 {o}/{p} * * * ?"
        if p == 60:
            return f"0 {o} * * * ?"
        if p < 1440:
            return f"0 {o % 60} {o // 60}/{p // 60} * * ?"
        return f"0 {o % 60} {o // 60} * * ?"

    def schedule_json(self) -> dict | None:
        if self.period_min is None:
            return None
        return {"quartz_cron_expression": self.cron(), "timezone_id": "UTC",
                "pause_status": "PAUSED" if self.paused else "UNPAUSED"}

    def task_json(self, task: TaskDef) -> dict:
        out = {
            "task_key": task.key,
            "run_if": "ALL_SUCCESS",
            "notebook_task": {"notebook_path": f"/Workspace/Repos/{self.tags['team']}/{self.name}/{task.key}",
                              "source": "WORKSPACE"},
            "timeout_seconds": 0,
            "max_retries": task.max_retries,
            "min_retry_interval_millis": task.min_retry_interval_ms,
            "retry_on_timeout": False,
            "email_notifications": {},
        }
        if task.depends_on:
            out["depends_on"] = [{"task_key": k} for k in task.depends_on]
        if self.compute == "existing":
            out["existing_cluster_id"] = self.existing_cluster_id
        elif self.compute == "job_cluster":
            out["job_cluster_key"] = "main"
        return out

    def job_clusters_json(self) -> list[dict]:
        if self.compute != "job_cluster":
            return []
        spec = self.cluster_spec
        return [{"job_cluster_key": "main", "new_cluster": {
            "spark_version": spec.spark_version, "node_type_id": spec.node_type_id,
            "num_workers": spec.num_workers, "runtime_engine": spec.runtime_engine,
            "data_security_mode": spec.data_security_mode, "custom_tags": dict(spec.custom_tags),
            "aws_attributes": {"availability": "SPOT_WITH_FALLBACK", "first_on_demand": 1}}}]

    def to_json(self, expand_tasks: bool) -> dict:
        settings = {
            "name": self.name,
            "tags": dict(self.tags),
            "email_notifications": {},
            "webhook_notifications": {},
            "timeout_seconds": self.timeout_seconds,
            "max_concurrent_runs": self.max_concurrent_runs,
            "format": "MULTI_TASK",
            "queue": {"enabled": self.queue_enabled},
        }
        schedule = self.schedule_json()
        if schedule:
            settings["schedule"] = schedule
        if expand_tasks:
            settings["tasks"] = [self.task_json(t) for t in self.tasks]
            clusters = self.job_clusters_json()
            if clusters:
                settings["job_clusters"] = clusters
        return {"job_id": self.job_id, "creator_user_name": self.creator, "run_as_user_name": self.creator,
                "created_time": self.created_ms, "settings": settings}

    # -- run generation

    def _scheduled_after(self, after_ms: int) -> int:
        """The first cron tick strictly after after_ms. All periods divide a UTC day, so ticks are arithmetic."""
        p = self.period_min
        minute = after_ms // MINUTE_MS + 1
        return (minute + (self.offset_min - minute) % p) * MINUTE_MS

    def next_trigger(self) -> tuple[int, int]:
        """(start_ms, run_id) of the next run this job will emit."""
        if self._next is None:
            self._next = self._compute_next_trigger()
        return self._next

    def _compute_next_trigger(self) -> tuple[int, int]:
        candidates = []
        if self._next_fire_ms is not None:
            start = self._next_fire_ms + self._fire_jitter(self._next_fire_ms)
            candidates.append((start, make_run_id(self._next_fire_ms, self.index, KIND_SCHEDULED)))
        candidates.append((self._next_manual_ms, make_run_id(self._next_manual_ms, self.index, KIND_MANUAL)))
        if self._retries:
            candidates.append(self._retries[0][:2])
        return min(candidates)

    def _fire_jitter(self, fire_ms: int) -> int:
        # The scheduler starts runs a moment after the cron tick; derived from the tick so it is order-free.
        return stable_int(self.ws.seed, self.index, fire_ms, "jitter", bound=2_500)

    def emit_next(self) -> Run:
        start, run_id = self.next_trigger()
        self._next = None
        if self._next_fire_ms is not None and run_id == make_run_id(self._next_fire_ms, self.index, KIND_SCHEDULED):
            kind, attempt, original = KIND_SCHEDULED, 0, None
            self._next_fire_ms = self._scheduled_after(self._next_fire_ms)
        elif self._retries and (start, run_id) == self._retries[0][:2]:
            _, _, attempt, original = heapq.heappop(self._retries)
            kind = KIND_RETRY
        else:
            kind, attempt, original = KIND_MANUAL, 0, None
            self._next_manual_ms = start + max(MINUTE_MS, int(self._rng.expovariate(1 / self._manual_mean_ms)))
        run = Run(run_id, self, start, kind, attempt, original)
        self.identify(run)
        self._admit(run)
        self.runs.append(run)
        return run

    def identify(self, run: Run) -> None:
        """Set what a run says it is (run_type, run_name) before it is planned; a job's runs are JOB_RUNs."""

    def _admit(self, run: Run) -> None:
        """Decide queueing/skipping against the runs still active at trigger time, then plan the execution."""
        rng = self._rng
        ends = sorted(e for e in self._active_ends if e > run.start_ms)
        k = self.max_concurrent_runs
        if len(ends) >= k:
            if not self.queue_enabled and run.kind != KIND_RETRY:
                run.life_cycle = run.outcome = "SKIPPED"
                self._active_ends = ends
                self.ws.ledger.job_run_ended(run.job_id, run.run_id, run.end_ms, run.outcome, run.run_type)
                return
            # FIFO queue: the run starts when enough of the runs ahead of it have finished.
            run.exec_start_ms = ends[len(ends) - k]
            run.queue_reason = "MAX_CONCURRENT_RUNS_REACHED"
        elif self.queue_enabled and rng.random() < 0.03:
            run.exec_start_ms = run.start_ms + fast_randint(rng, 5, 90) * SECOND_MS
            run.queue_reason = "ACTIVE_RUNS_LIMIT_REACHED"
        if self.compute == "job_cluster":
            run.cluster_id = make_cluster_id(run.exec_start_ms, self.ws.seed, "job-cluster", run.run_id)
        plan = self.plan(run)
        run.ready_ms, run.end_ms = plan.ready_ms, plan.end_ms
        run.life_cycle, run.result, run.outcome = plan.life_cycle, plan.result, plan.outcome
        ledger = self.ws.ledger
        ledger.job_run_ended(run.job_id, run.run_id, run.end_ms, run.outcome, run.run_type)
        # A retry is final once its run has ended, so the ledger stamps it with the run's end.
        if run.kind == KIND_RETRY:
            ledger.job_task_retried(run.job_id, run.run_id, self.tasks[0].key, run.end_ms)
        for a in plan.attempts:
            if a.retry and a.start:
                ledger.job_task_retried(run.job_id, run.run_id, a.task.key, run.end_ms)
        if run.outcome == "FAILED" and self.multitask and run.run_type == "JOB_RUN":
            self.ws.job_set.maybe_plan_repair(run, 1, run.end_ms)
        self._active_ends = ends + [run.end_ms]
        if (not self.multitask and run.result in ("FAILED", "TIMEDOUT")
                and run.attempt < self.tasks[0].max_retries):
            retry_start = run.end_ms + self.tasks[0].min_retry_interval_ms + fast_randint(rng, 0, 2_000)
            retry_id = make_run_id(retry_start, self.index, KIND_RETRY)
            # Two retries of one job in the same second would share an id; the later one waits a second.
            while retry_id in self.ws.job_set.by_id or any(r[1] == retry_id for r in self._retries):
                retry_start += SECOND_MS
                retry_id = make_run_id(retry_start, self.index, KIND_RETRY)
            heapq.heappush(self._retries, (retry_start, retry_id, run.attempt + 1, run.original_run_id))

    def plan(self, run: Run) -> RunPlan:
        """The run's execution, reproducible from its own seed: called at generation and again for every read."""
        rng = random.Random(self.ws.seed * 10**18 + run.run_id)
        exec_start = run.exec_start_ms
        n = len(self.tasks)
        x = rng.random()
        p_fail = self.failure_rate * (0.5 if run.attempt else 1.0)
        if x < 0.003:
            outcome = "INTERNAL_ERROR"
        elif x < 0.013:
            outcome = "CANCELED"
        elif x < 0.013 + p_fail:
            outcome = "TIMEDOUT" if self.timeout_seconds and rng.random() < 0.15 else "FAILED"
        else:
            outcome = "SUCCESS"
        outcome = self.ws.scenarios.apply("job_outcome", run.start_ms, outcome, self)
        launch = fast_randint(rng, *self.launch_range_s) * SECOND_MS
        fail_kind, fail_index, recovered_index = None, None, None
        if outcome == "FAILED":
            fail_kind = rng.choices(["task", "library", "cluster"],
                                    weights=[80, 10, 10 if self.compute == "job_cluster" else 0])[0]
            fail_index = rng.randrange(n)
        if outcome == "SUCCESS" and self.multitask and self._retryable and rng.random() < 0.04:
            recovered_index = rng.choice(self._retryable)
        cut_fraction = rng.uniform(0.1, 0.9)

        attempts: list[AttemptPlan] = []
        done: dict[str, tuple[int, bool]] = {}
        for i, task in enumerate(self.tasks):
            deps = [done[d] for d in task.depends_on]
            start = max((e for e, _ in deps), default=exec_start) + (fast_randint(rng, 300, 2_000) if deps else 0)
            setup = launch if not deps else fast_randint(rng, 500, 4_000)
            execution = max(1_000, int(task.median_ms * rng.lognormvariate(0, 0.35)))
            cleanup = fast_randint(rng, 300, 3_000)
            if deps and not all(ok for _, ok in deps):
                end = max(e for e, _ in deps)
                attempts.append(AttemptPlan(task, i, 0, 0, 0, 0, 0, end, result="UPSTREAM_FAILED", code="SKIPPED",
                                            type="CLIENT_ERROR", message="Upstream task failed."))
                done[task.key] = (end, False)
                continue
            if fail_kind == "cluster" and not deps:
                end = start + setup
                attempts.append(AttemptPlan(
                    task, i, 0, start, setup, 0, 0, end, result="FAILED", code="CLUSTER_ERROR", type="CLOUD_FAILURE",
                    message=f"Cluster {run.cluster_id} was terminated. Reason: CLOUD_PROVIDER_LAUNCH_FAILURE "
                            "(CLOUD_FAILURE)."))
                done[task.key] = (end, False)
                continue
            if i in (fail_index, recovered_index):
                if fail_kind == "library":
                    part, message, code = 0, "Library installation failed for library due to user error.", \
                        "LIBRARY_INSTALLATION_ERROR"
                else:
                    part = int(execution * rng.uniform(0.05, 0.9))
                    message, code = "Workload failed, see run output for details.", "RUN_EXECUTION_ERROR"
                end = start + setup + part + cleanup
                attempts.append(AttemptPlan(task, i, 0, start, setup, part, cleanup, end, result="FAILED",
                                            code=code, type="CLIENT_ERROR", message=message))
                ok = i != fail_index
                if task.max_retries and self.multitask:
                    s1 = end + task.min_retry_interval_ms
                    setup1 = fast_randint(rng, 500, 3_000)
                    exec1 = max(1_000, int(task.median_ms * rng.lognormvariate(0, 0.35)))
                    if not ok:
                        exec1 = int(exec1 * rng.uniform(0.05, 0.9))
                    end = s1 + setup1 + exec1 + cleanup
                    retry = AttemptPlan(task, i, 1, s1, setup1, exec1, cleanup, end)
                    if not ok:
                        retry.result, retry.code, retry.type, retry.message = "FAILED", code, "CLIENT_ERROR", message
                    attempts.append(retry)
                done[task.key] = (end, ok)
                continue
            end = start + setup + execution + cleanup
            attempts.append(AttemptPlan(task, i, 0, start, setup, execution, cleanup, end))
            done[task.key] = (end, True)

        nominal_end = max(a.end for a in attempts)
        run_cleanup = fast_randint(rng, 1_000, 5_000)
        ready = exec_start + launch if fail_kind != "cluster" else 0
        code, type_, message, result, life_cycle = "SUCCESS", "SUCCESS", "", "SUCCESS", "TERMINATED"
        if outcome in ("TIMEDOUT", "CANCELED", "INTERNAL_ERROR"):
            if outcome == "TIMEDOUT":
                cut_at = exec_start + self.timeout_seconds * SECOND_MS
                if nominal_end <= cut_at:
                    # The run hung: its last task is still going when the timeout fires.
                    attempts[-1].execution += cut_at - attempts[-1].end + 60_000
                    attempts[-1].end = cut_at + 60_000
                running = ("TERMINATED", "TIMEDOUT", "CANCELED", "CLIENT_ERROR",
                           f"Run timed out after {self.timeout_seconds} seconds.")
                waiting = ("TERMINATED", "CANCELED", "CANCELED", "CLIENT_ERROR", "Run was canceled.")
                code, type_, message, result = running[2], running[3], running[4], "TIMEDOUT"
            elif outcome == "CANCELED":
                cut_at = exec_start + max(1_000, int((nominal_end - exec_start) * cut_fraction))
                user = rng.choice(USERS)
                running = waiting = ("TERMINATED", "CANCELED", "USER_CANCELED", "SUCCESS", f"Run canceled by {user}.")
                code, type_, message, result = "USER_CANCELED", "SUCCESS", f"Run canceled by {user}.", "CANCELED"
            else:
                cut_at = exec_start + max(1_000, int((nominal_end - exec_start) * cut_fraction))
                msg = "An internal error occurred in the Databricks platform. Please retry the run."
                running = waiting = ("INTERNAL_ERROR", None, "INTERNAL_ERROR", "INTERNAL_ERROR", msg)
                code, type_, message, result, life_cycle = "INTERNAL_ERROR", "INTERNAL_ERROR", msg, None, \
                    "INTERNAL_ERROR"
            for a in attempts:
                if a.end > cut_at:
                    a.cut(cut_at, *(running if a.start and a.start < cut_at else waiting))
            end = cut_at + run_cleanup
            if ready and ready > cut_at:
                ready = 0
        else:
            end = nominal_end + run_cleanup
            failed = [a for a in attempts if a.result == "FAILED" and
                      not any(b.index == a.index and b.retry > a.retry and b.result == "SUCCESS" for b in attempts)]
            if failed:
                first = failed[0]
                result = "FAILED"
                code, type_ = first.code, first.type
                message = f"Task {first.task.key} failed with message: {first.message}"
                if self.multitask and any(a.result == "UPSTREAM_FAILED" for a in attempts):
                    message += " This caused all downstream tasks to get skipped."
        return RunPlan(attempts=attempts, ready_ms=ready, cleanup_start_ms=end - run_cleanup, end_ms=end,
                       life_cycle=life_cycle, result=result, code=code, type=type_, message=message, outcome=outcome)

    def latest_task_results(self, run: Run, repairs: list[Repair]) -> dict[int, str | None]:
        """Each task's result after the original run and the given repairs."""
        latest: dict[int, str | None] = {}
        for a in self.plan(run).attempts + [a for r in repairs for a in r.attempts]:
            latest[a.index] = a.result
        return latest

    def plan_repair(self, run: Run, number: int, start_ms: int, rerun: list[int]) -> Repair:
        """Repair `number` of the run re-runs the task indexes `rerun` from start_ms as new task runs (no task
        retries inside a repair), drawn from its own seed so the same repair always plays the same."""
        rng = random.Random(f"{self.ws.seed}:repair:{run.run_id}:{number}")
        fail_at = None if rng.random() < REPAIR_SUCCESS else rng.choice(rerun)
        attempts: list[AttemptPlan] = []
        done: dict[str, tuple[int, bool]] = {}
        for i in rerun:
            task = self.tasks[i]
            deps = [done[k] for k in task.depends_on if k in done]
            start = max((e for e, _ in deps), default=start_ms) + fast_randint(rng, 300, 2_000)
            if deps and not all(ok for _, ok in deps):
                end = max(e for e, _ in deps)
                attempts.append(AttemptPlan(task, i, 0, 0, 0, 0, 0, end, result="UPSTREAM_FAILED", code="SKIPPED",
                                            type="CLIENT_ERROR", message="Upstream task failed."))
                done[task.key] = (end, False)
                continue
            setup = fast_randint(rng, *self.launch_range_s) * SECOND_MS if not deps else fast_randint(rng, 500, 4_000)
            execution = max(1_000, int(task.median_ms * rng.lognormvariate(0, 0.35)))
            cleanup = fast_randint(rng, 300, 3_000)
            attempt = AttemptPlan(task, i, 0, start, setup, execution, cleanup, start + setup + execution + cleanup)
            if i == fail_at:
                attempt.execution = int(execution * rng.uniform(0.05, 0.9))
                attempt.end = start + setup + attempt.execution + cleanup
                attempt.result, attempt.code, attempt.type = "FAILED", "RUN_EXECUTION_ERROR", "CLIENT_ERROR"
                attempt.message = "Workload failed, see run output for details."
            attempts.append(attempt)
            done[task.key] = (attempt.end, attempt.result == "SUCCESS")
        end = max(a.end for a in attempts) + fast_randint(rng, 1_000, 5_000)
        result = "FAILED" if any(a.result != "SUCCESS" for a in attempts) else "SUCCESS"
        repair_id = 10**15 + stable_int(self.ws.seed, run.run_id, "repair", number, bound=10**15)
        return Repair(repair_id, number, start_ms, end, result, attempts)

    # -- run JSON

    def run_json(self, run: Run, now_ms: int, include_tasks: bool) -> dict:
        ws = self.ws
        job_id = run.job_id
        out = {
            "job_id": job_id,
            "run_id": run.run_id,
            "number_in_job": run.run_id,
            "original_attempt_run_id": run.original_run_id,
            "attempt_number": run.attempt,
            "creator_user_name": self.creator,
            "run_name": run.name or self.name,
            "run_page_url": f"{ws.base_url}/?o={ws.workspace_id}#job/{job_id}/run/{run.run_id}",
            "run_type": run.run_type,
            "trigger": TRIGGER_BY_KIND[run.kind],
            "format": "MULTI_TASK",
            "start_time": run.start_ms,
            "end_time": 0,
            "setup_duration": 0,
            "execution_duration": 0,
            "cleanup_duration": 0,
            "run_duration": 0,
            "queue_duration": 0,
        }
        if run.kind == KIND_SCHEDULED:
            out["schedule"] = self.schedule_json()
        if self.compute == "job_cluster":
            out["job_clusters"] = self.job_clusters_json()
        if run.life_cycle == "SKIPPED":
            message = (f"Skipping this run because the limit of {self.max_concurrent_runs} maximum concurrent "
                       "runs has been reached.")
            out["end_time"] = run.end_ms
            out["state"] = {"life_cycle_state": "SKIPPED", "state_message": message,
                            "user_cancelled_or_timedout": False}
            out["status"] = {"state": "TERMINATED", "termination_details": {
                "code": "MAX_CONCURRENT_RUNS_EXCEEDED", "type": "CLIENT_ERROR", "message": message}}
            if include_tasks:
                out["tasks"] = [self._skipped_task_json(run, i, t) for i, t in enumerate(self.tasks)]
            return out

        plan = self.plan(run)
        finished = now_ms >= run.end_ms
        if finished:
            phase = run.life_cycle
        elif now_ms < run.exec_start_ms:
            phase = "QUEUED"
        elif now_ms < (plan.ready_ms or plan.cleanup_start_ms):
            phase = "PENDING"
        elif now_ms < plan.cleanup_start_ms:
            phase = "RUNNING"
        else:
            phase = "TERMINATING"
        if now_ms >= run.exec_start_ms:
            out["queue_duration"] = run.exec_start_ms - run.start_ms
        if finished:
            out["end_time"] = run.end_ms
            out["run_duration"] = run.end_ms - run.exec_start_ms
            if not self.multitask:
                # Single-task runs split their time into phases; multitask runs report run_duration only.
                last = plan.attempts[-1]
                out["setup_duration"] = last.setup
                out["execution_duration"] = last.execution
                out["cleanup_duration"] = max(0, run.end_ms - run.exec_start_ms - last.setup - last.execution)
            out["state"], out["status"] = _terminal_state(run.life_cycle, run.result, plan.code, plan.type,
                                                          plan.message)
        else:
            messages = {"QUEUED": "", "PENDING": "Waiting for cluster", "RUNNING": "", "TERMINATING": ""}
            out["state"] = {"life_cycle_state": phase, "state_message": messages[phase],
                            "user_cancelled_or_timedout": False}
            out["status"] = {"state": phase}
            if phase == "QUEUED":
                queue_message = (f"Queued due to reaching maximum concurrent runs of {self.max_concurrent_runs}."
                                 if run.queue_reason == "MAX_CONCURRENT_RUNS_REACHED" else
                                 "Queued due to reaching the workspace limit of active runs.")
                out["state"]["queue_reason"] = queue_message
                out["status"]["queue_details"] = {"code": run.queue_reason, "message": queue_message}
        cluster_id = run.cluster_id or self.existing_cluster_id
        if cluster_id and now_ms >= run.exec_start_ms:
            out["cluster_instance"] = {"cluster_id": cluster_id}
            if plan.ready_ms and now_ms >= plan.ready_ms:
                out["cluster_instance"]["spark_context_id"] = str(stable_int(cluster_id, "ctx", bound=10**18))
        # A task waiting to be retried shows WAITING_FOR_RETRY until its next attempt starts.
        retry_starts = {a.index: a.start for a in plan.attempts if a.retry and a.start}
        shown = [a for a in plan.attempts if a.retry == 0 or (a.start and now_ms >= a.start)]
        repairs = run.repairs_started(now_ms)
        if repairs:
            self._overlay_repairs(out, run, plan, shown, repairs, now_ms)
        if include_tasks:
            out["tasks"] = [self._task_json(run, a, now_ms, retry_starts.get(a.index) if not a.retry else None)
                            for a in shown]
            out["tasks"] += [self._task_json(run, a, now_ms, None, repair=r) for r in repairs for a in r.attempts]
        return out

    def _overlay_repairs(self, out: dict, run: Run, plan: RunPlan, shown: list[AttemptPlan], repairs: list[Repair],
                         now_ms: int) -> None:
        """A repaired run: its repair_history, and the state, end and duration of its latest repair."""
        history = [{"type": "ORIGINAL", "start_time": run.start_ms, "end_time": run.end_ms,
                    "state": out["state"], "status": out["status"],
                    "task_run_ids": [self._task_run_id(run, a) for a in shown]}]
        for repair in repairs:
            entry = {"type": "REPAIR", "id": repair.repair_id, "start_time": repair.start_ms,
                     "task_run_ids": [self._task_run_id(run, a, repair) for a in repair.attempts]}
            if now_ms >= repair.end_ms:
                failed = next((a for a in repair.attempts if a.result == "FAILED"), None)
                message = f"Task {failed.task.key} failed with message: {failed.message}" if failed else ""
                entry["end_time"] = repair.end_ms
                entry["state"], entry["status"] = _terminal_state(
                    "TERMINATED", repair.result, failed.code if failed else "SUCCESS",
                    failed.type if failed else "SUCCESS", message)
                out["run_duration"] += repair.end_ms - repair.start_ms
            else:
                entry["end_time"] = 0
                entry["state"] = {"life_cycle_state": "RUNNING", "state_message": "",
                                  "user_cancelled_or_timedout": False}
                entry["status"] = {"state": "RUNNING"}
            history.append(entry)
        latest = history[-1]
        out["end_time"] = latest["end_time"]
        out["state"], out["status"] = latest["state"], latest["status"]
        out["repair_history"] = history

    def _task_run_id(self, run: Run, a: AttemptPlan, repair: Repair | None = None) -> int:
        if repair is None:
            return run.run_id + 1 + a.index * 2 + a.retry
        return 3 * 10**15 + stable_int(self.ws.seed, run.run_id, "repair-task", repair.number, a.index,
                                       bound=10**15)

    def _task_common(self, run: Run, index: int, retry: int, task_run_id: int | None = None) -> dict:
        task = self.tasks[index]
        task_run_id = task_run_id or run.run_id + 1 + index * 2 + retry
        out = self.task_json(task)
        out.update({
            "run_id": task_run_id,
            "attempt_number": run.attempt + retry,
            "run_page_url": f"{self.ws.base_url}/?o={self.ws.workspace_id}#job/{run.job_id}/run/{task_run_id}",
            "start_time": 0, "end_time": 0, "setup_duration": 0, "execution_duration": 0, "cleanup_duration": 0,
            "run_duration": 0, "queue_duration": 0,
        })
        return out

    def _skipped_task_json(self, run: Run, index: int, task: TaskDef) -> dict:
        out = self._task_common(run, index, 0)
        out["state"] = {"life_cycle_state": "SKIPPED", "state_message": "", "user_cancelled_or_timedout": False}
        out["status"] = {"state": "TERMINATED", "termination_details": {
            "code": "SKIPPED", "type": "CLIENT_ERROR", "message": "The job run was skipped."}}
        return out

    def _task_json(self, run: Run, a: AttemptPlan, now_ms: int, retry_start: int | None,
                   repair: Repair | None = None) -> dict:
        out = self._task_common(run, a.index, a.retry,
                                self._task_run_id(run, a, repair) if repair is not None else None)
        if retry_start and a.end <= now_ms < retry_start:
            out.update(start_time=a.start, end_time=a.end)
            out["state"] = {"life_cycle_state": "WAITING_FOR_RETRY", "state_message": a.message,
                            "user_cancelled_or_timedout": False}
            out["status"] = {"state": "WAITING"}
        elif now_ms >= a.end and (a.start == 0 or now_ms >= a.start):
            out["end_time"] = a.end
            if a.start:
                out["start_time"] = a.start
                out.update(setup_duration=a.setup, execution_duration=a.execution, cleanup_duration=a.cleanup,
                           run_duration=a.end - a.start)
            out["state"], out["status"] = _terminal_state(a.life_cycle, a.result, a.code, a.type, a.message)
        else:
            if a.start == 0 or now_ms < a.start:
                phase = "BLOCKED" if a.task.depends_on else "PENDING"
            else:
                out["start_time"] = a.start
                if now_ms < a.start + a.setup:
                    phase = "PENDING"
                elif now_ms < a.start + a.setup + a.execution:
                    phase = "RUNNING"
                else:
                    phase = "TERMINATING"
            out["state"] = {"life_cycle_state": phase, "state_message": "", "user_cancelled_or_timedout": False}
            out["status"] = {"state": phase}
        cluster_id = run.cluster_id or self.existing_cluster_id
        if cluster_id and out["start_time"]:
            out["cluster_instance"] = {"cluster_id": cluster_id}
        return out


def _terminal_state(life_cycle: str, result: str | None, code: str, type_: str, message: str) -> tuple[dict, dict]:
    """The deprecated `state` and the current `status` of something that has ended."""
    state = {"life_cycle_state": life_cycle, "state_message": message,
             "user_cancelled_or_timedout": result in ("CANCELED", "TIMEDOUT")}
    if result:
        state["result_state"] = result
    status = {"state": "TERMINATED", "termination_details": {"code": code, "type": type_, "message": message}}
    return state, status


class OneTimeRuns(Job):
    """The stream of one-time runs: runs/submit from schedulers such as Airflow or ADF (SUBMIT_RUN) and
    dbutils.notebook.run children (WORKFLOW_RUN). Each run has a job_id of its own that jobs/list never shows, and
    its own run_name; the definition here only shapes how they run."""

    def __init__(self, ws, index: int):
        super().__init__(ws, index, None, False)
        # Submissions neither queue nor skip, run on serverless compute, and retry only inside the run.
        self.max_concurrent_runs, self.queue_enabled = 10**6, False
        self.compute, self.existing_cluster_id, self.launch_range_s = "serverless", None, (5, 40)
        if not self.multitask:
            self.tasks[0].max_retries = 0
        self._retryable = [i for i, t in enumerate(self.tasks) if t.max_retries]
        self._manual_mean_ms = DAY_MS / ONE_TIME_RUNS_PER_DAY
        self._next_manual_ms = ws.world_start_ms + int(self._rng.expovariate(1 / self._manual_mean_ms))

    def identify(self, run: Run) -> None:
        if run.kind == KIND_SUBMITTED:
            run.run_type = "SUBMIT_RUN"
            return
        seed = self.ws.seed
        run.run_type = "WORKFLOW_RUN" if stable_int(seed, run.run_id, "run-type", bound=5) == 0 else "SUBMIT_RUN"
        tool = ONE_TIME_NAMES[stable_int(seed, run.run_id, "tool", bound=len(ONE_TIME_NAMES))]
        subject = SUBJECTS[stable_int(seed, run.run_id, "subject", bound=len(SUBJECTS))]
        run.name = f"{tool}-{subject}-{run.run_id % 100_000:05d}"


class JobSet:
    """The workspace's jobs, the global index of their runs in (start_time, run_id) order, and the jobs API.

    advance() emits every run triggered by a time in trigger order; reads take `now` and expect the caller (the
    workspace, holding its lock) to have advanced to it.
    """

    def __init__(self, ws, clusters: ClusterSet, n_jobs: int):
        if n_jobs >= MAX_JOBS - SUBMIT_SLOTS:
            raise ValueError(f"n_jobs must be below {MAX_JOBS - SUBMIT_SLOTS}: run ids reserve 5 digits for the job "
                             "index, and the last indexes for one-time runs")
        self.ws = ws
        self.clusters = clusters
        periods_rng = random.Random(f"{ws.seed}:periods")
        core = CORE_PERIODS_MIN[:]
        periods_rng.shuffle(core)
        paused_slots = set(periods_rng.sample(range(len(core)), 3))
        self.jobs: list[Job] = []
        for i in range(n_jobs):
            if i < len(core):
                period = core[i]
                paused = i in paused_slots and period is not None
            else:
                period = periods_rng.choices([p for p, _ in TAIL_PERIODS_MIN], [w for _, w in TAIL_PERIODS_MIN])[0]
                paused = period is not None and periods_rng.random() < 0.05
            self.jobs.append(Job(ws, i, period, paused))
        self._jobs_by_id = {j.job_id: j for j in self.jobs}
        self._job_ids_sorted = sorted(self._jobs_by_id)
        self.one_time = OneTimeRuns(ws, n_jobs)
        self._generators: list[Job] = self.jobs + [self.one_time]
        self.runs: list[Run] = []
        self.by_id: dict[int, Run] = {}
        self.max_run_span_ms = 0
        self._trigger_heap = [(*job.next_trigger(), job.index) for job in self._generators]
        heapq.heapify(self._trigger_heap)
        # Repairs: the planned ones wait in a heap of (at_ms, run_id, number) and start in time order; every repair
        # started is indexed by start so active-runs listings find runs repaired long after they started.
        self._repair_heap: list[tuple[int, int, int]] = []
        self.repairs: list[tuple[int, Run]] = []
        self.max_repair_span_ms = 0
        # Permission gaps: the caller may list this job's runs but not read one with runs/get.
        candidates = [j for j in self.jobs if j.scheduled and 5 <= j.period_min <= 60]
        self.forbidden_job_id = random.Random(f"{ws.seed}:forbidden-job").choice(candidates).job_id \
            if candidates and ws.permission_gaps else None

    def advance(self, now_ms: int) -> None:
        heap = self._trigger_heap
        while heap and heap[0][0] <= now_ms:
            _, _, job_index = heapq.heappop(heap)
            job = self._generators[job_index]
            self._add(job.emit_next())
            start_ms, run_id = job.next_trigger()
            heapq.heappush(heap, (start_ms, run_id, job_index))
        # Every run that started by now_ms is planned, so every planned repair due by now_ms is known.
        repairs = self._repair_heap
        while repairs and repairs[0][0] <= now_ms:
            at_ms, run_id, number = heapq.heappop(repairs)
            run = self.by_id[run_id]
            latest = run.job.latest_task_results(run, run.repairs)
            # A repair someone made in the meantime (API, scenario) takes this one's place.
            if len(run.repairs) < number and not run.active_at(at_ms) and set(latest.values()) != {"SUCCESS"}:
                self.start_repair(run, at_ms, [i for i, r in sorted(latest.items()) if r != "SUCCESS"])

    def _add(self, run: Run) -> None:
        if self.runs and _run_key(run) < _run_key(self.runs[-1]):
            bisect.insort(self.runs, run, key=_run_key)
        else:
            self.runs.append(run)
        self.by_id[run.run_id] = run
        self.max_run_span_ms = max(self.max_run_span_ms, run.end_ms - run.start_ms)
        if run.cluster_id and run.life_cycle != "SKIPPED":
            self.clusters.add_job_run(run)

    # -- repairs

    def maybe_plan_repair(self, run: Run, number: int, after_ms: int) -> None:
        """Decide from the run's own seed whether someone repairs it (again) and when."""
        rng = random.Random(f"{self.ws.seed}:repair-plan:{run.run_id}:{number}")
        if number > MAX_REPAIRS or rng.random() >= (REPAIR_SHARE if number == 1 else 0.5):
            return
        if number == 1 and rng.random() < REPAIR_LATE_SHARE:
            delay = fast_randint(rng, 60, 180) * MINUTE_MS
        else:
            delay = fast_randint(rng, 3, 30) * MINUTE_MS
        heapq.heappush(self._repair_heap, (after_ms + delay, run.run_id, number))

    def start_repair(self, run: Run, at_ms: int, rerun: list[int]) -> Repair:
        repair = run.job.plan_repair(run, len(run.repairs) + 1, at_ms, rerun)
        run.repairs.append(repair)
        self.repairs.append((at_ms, run))
        self.max_repair_span_ms = max(self.max_repair_span_ms, repair.end_ms - repair.start_ms)
        self.ws.ledger.job_run_repaired(run.job_id, run.run_id, repair.repair_id, repair.end_ms, repair.result)
        if repair.result == "FAILED":
            self.maybe_plan_repair(run, repair.number + 1, repair.end_ms)
        return repair

    def repair_run(self, now: int, run_id: int, rerun_tasks: list[str] | None = None,
                   rerun_all_failed_tasks: bool = False, latest_repair_id: int | None = None) -> dict:
        """POST /api/2.2/jobs/runs/repair: re-run the named tasks, or all that did not succeed, from now."""
        run = self._readable_run(now, run_id)
        if run.life_cycle == "SKIPPED":
            raise ApiError(400, "INVALID_STATE", f"Run {run_id} was skipped and cannot be repaired.")
        if run.active_at(now):
            raise ApiError(400, "INVALID_STATE", f"Run {run_id} is still active and cannot be repaired.")
        last = run.repairs[-1].repair_id if run.repairs else None
        if run.repairs and latest_repair_id != last:
            raise invalid_parameter(f"The latest repair of run {run_id} is {last}: pass it as latest_repair_id.")
        keys = [t.key for t in run.job.tasks]
        if rerun_tasks:
            unknown = sorted(set(rerun_tasks) - set(keys))
            if unknown:
                raise invalid_parameter(f"Task keys {unknown} are not tasks of run {run_id}.")
            rerun = sorted(keys.index(k) for k in set(rerun_tasks))
        elif rerun_all_failed_tasks:
            latest = run.job.latest_task_results(run, run.repairs)
            rerun = [i for i, r in sorted(latest.items()) if r != "SUCCESS"]
            if not rerun:
                raise invalid_parameter(f"Run {run_id} has no failed tasks to re-run.")
        else:
            raise invalid_parameter("One of rerun_tasks or rerun_all_failed_tasks must be given.")
        return {"repair_id": self.start_repair(run, now, rerun).repair_id}

    def repair_failed_since(self, now: int, since_ms: int) -> list[int]:
        """Repair every run whose latest attempt FAILED and ended in [since_ms, now] (the repair_storm scenario)."""
        repaired = []
        lo = bisect.bisect_left(self.runs, (since_ms - self.max_run_span_ms - self.max_repair_span_ms, 0),
                                key=_run_key)
        for run in self.runs[lo:]:
            if run.active_at(now) or run.life_cycle == "SKIPPED" or not since_ms <= run.latest_end_ms() <= now:
                continue
            latest = run.job.latest_task_results(run, run.repairs)
            failed = [i for i, r in sorted(latest.items()) if r != "SUCCESS"]
            if failed and (run.repairs[-1].result if run.repairs else run.result) == "FAILED":
                self.start_repair(run, now, failed)
                repaired.append(run.run_id)
        return repaired

    def _repairing(self, now: int) -> list[Run]:
        """Runs with a repair going on at `now`."""
        lo = bisect.bisect_left(self.repairs, now - self.max_repair_span_ms, key=lambda r: r[0])
        return list({id(run): run for _, run in self.repairs[lo:] if run.active_at(now)}.values())

    # -- one-time runs

    def submit(self, now: int, run_name: str | None) -> dict:
        """POST /api/2.2/jobs/runs/submit: a one-time run starting now, planned like the stream's."""
        job = self.one_time
        for slot in range(SUBMIT_SLOTS):
            run_id = make_run_id(now, job.index + 1 + slot, KIND_SUBMITTED)
            if run_id not in self.by_id:
                break
        else:
            raise ApiError(429, "REQUEST_LIMIT_EXCEEDED", "Too many runs submitted in one second.")
        run = Run(run_id, job, now, KIND_SUBMITTED, 0, None)
        job.identify(run)
        run.name = run_name or "Untitled"
        job._admit(run)
        bisect.insort(job.runs, run, key=_run_key)
        self._add(run)
        return {"run_id": run_id}

    def _readable_run(self, now: int, run_id: int) -> Run:
        run = self.by_id.get(run_id)
        if run is None or run.start_ms > now or not self.ws.scenarios.apply("run_listed", run.start_ms, True, run,
                                                                            now):
            raise legacy_does_not_exist(f"Run {run_id} does not exist.")
        return run

    def _job(self, job_id: int) -> Job:
        job = self._jobs_by_id.get(job_id)
        if job is None:
            raise legacy_does_not_exist(f"Job {job_id} does not exist.")
        return job

    def list_jobs(self, limit=None, page_token=None, expand_tasks=False, name=None, offset=None) -> dict:
        limit = 20 if limit is None else limit
        if not 1 <= limit <= 100:
            raise invalid_parameter(f"Invalid limit {limit}: the limit must be between 1 and 100.")
        ids = self._job_ids_sorted
        if name is not None:
            ids = [i for i in ids if self._jobs_by_id[i].name.lower() == name.lower()]
        start = 0
        if page_token:
            start = bisect.bisect_right(ids, int(decode_page_token(page_token).get("j", 0)))
        elif offset:
            start = offset
        chunk = ids[start:start + limit]
        out = {"jobs": [self._jobs_by_id[i].to_json(expand_tasks) for i in chunk],
               "has_more": start + limit < len(ids)}
        if out["has_more"]:
            out["next_page_token"] = encode_page_token({"j": chunk[-1]})
        return out

    def get_job(self, job_id: int) -> dict:
        return self._job(job_id).to_json(expand_tasks=True)

    def list_runs(self, now: int, active_only=False, completed_only=False, expand_tasks=False, job_id=None,
                  limit=None, offset=None, page_token=None, run_type=None, start_time_from=None,
                  start_time_to=None) -> dict:
        """Runs newest first by (start_time, run_id); the page token is the key of the last run returned."""
        if active_only and completed_only:
            raise invalid_parameter("active_only and completed_only cannot both be true.")
        limit = 20 if limit is None else (25 if limit == 0 else limit)
        if not 1 <= limit <= 25:
            raise invalid_parameter(f"Invalid limit {limit}: the limit must be between 0 and 25.")
        if run_type is not None and run_type not in ("JOB_RUN", "WORKFLOW_RUN", "SUBMIT_RUN"):
            raise invalid_parameter(f"Invalid run_type: {run_type}")
        runs = self._job(job_id).runs if job_id is not None else self.runs
        top = now if start_time_to is None else min(now, start_time_to)
        hi = bisect.bisect_right(runs, (top, float("inf")), key=_run_key)
        if page_token:
            cursor = decode_page_token(page_token)
            hi = min(hi, bisect.bisect_left(runs, (cursor.get("t", 0), cursor.get("r", 0)), key=_run_key))
        floor = start_time_from or 0
        if active_only:
            # Nothing that started longer ago than the longest run can still be active.
            floor = max(floor, now - self.max_run_span_ms)
        lo = bisect.bisect_left(runs, (floor, 0), key=_run_key)
        if active_only:
            # A run being repaired is active again however long ago it started.
            ceiling = _run_key(runs[hi]) if hi < len(runs) else (float("inf"), 0)
            repairing = [r for r in self._repairing(now) if (start_time_from or 0) <= r.start_ms
                         and _run_key(r) < ceiling and (job_id is None or r.job_id == job_id)
                         and _run_key(r) < (floor, 0)]
            candidates = sorted(runs[lo:hi] + repairing, key=_run_key, reverse=True)
        else:
            candidates = (runs[i] for i in range(hi - 1, lo - 1, -1))
        picked: list[Run] = []
        skip = offset if (offset and not page_token) else 0
        for run in candidates:
            if run_type is not None and run.run_type != run_type:
                continue
            done = not run.active_at(now)
            if (active_only and done) or (completed_only and not done):
                continue
            if not self.ws.scenarios.apply("run_listed", run.start_ms, True, run, now):
                continue
            if skip:
                skip -= 1
                continue
            picked.append(run)
            if len(picked) > limit:
                break
        has_more = len(picked) > limit
        picked = picked[:limit]
        out = {"runs": [r.job.run_json(r, now, expand_tasks) for r in picked], "has_more": has_more}
        if has_more:
            out["next_page_token"] = encode_page_token({"t": picked[-1].start_ms, "r": picked[-1].run_id})
        if not out["runs"]:
            del out["runs"]
        return out

    def get_run(self, now: int, run_id: int, principal: str = "sim-admin@example.com") -> dict:
        run = self._readable_run(now, run_id)
        if run.job_id == self.forbidden_job_id:
            raise permission_denied(f"User {principal} does not have View permissions on job {run.job_id}. "
                                    "Ask a job owner for CAN VIEW.", "jobs")
        return run.job.run_json(run, now, include_tasks=True)
