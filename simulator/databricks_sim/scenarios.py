"""Incident scenarios for the simulated workspace: a job failure storm, a saturated cluster, a pipeline whose data
quality collapses... each changes what the workspace's REST API and system tables return from the moment it starts,
so an operator can practise the alerts and runbooks end to end.

    GET    /simulator/scenarios              what exists, what is active, and on which jobs/clusters/pipelines
    POST   /simulator/scenarios/<name>       start one (already active: answered as it is)
    DELETE /simulator/scenarios/<name>       end one; DELETE /simulator/scenarios ends them all

A scenario is one small class registered with @scenario. Where the simulator makes data it asks the active
scenarios to change it: `ws.scenarios.apply(hook, at_ms, value, *context)` passes `value` through the method named
`hook` of every scenario whose window covers `at_ms`. Hooks today: job_outcome (jobs.py, a run's planned
outcome), node_minute (sql.py, a row of system.compute.node_timeline), expectation_fail_rate and flow_metrics
(pipelines.py, a flow_progress batch), billing (billing.py, records to add to system.billing.usage),
table_write (tables.py, whether a Delta table's writer commits in its slot), warehouse_query (queries.py, whether
a query that arrives at a warehouse is kept), and run_listed (workspace.py, whether runs/list and runs/get show a run). A new
scenario adds a class, and at most one apply() call where its data is made.

Determinism: targets are drawn from the seed (among the entities that qualify when the scenario starts), and a
hook is asked with the time the data is *generated for* (a run's start, a minute's start, an update's start), never
the time it happens to be generated at; so the same seed and the same start and end times give the same world.
Everything a scenario changes flows through the normal generators, so /simulator/truth counts it like the rest.
"""

from __future__ import annotations

import bisect
import datetime as dt
import random
from dataclasses import dataclass, field
from decimal import Decimal

from .common import DAY_MS, HOUR_MS, ApiError

SCENARIOS: dict[str, "Scenario"] = {}


def scenario(cls: type["Scenario"]) -> type["Scenario"]:
    SCENARIOS[cls.name] = cls()
    return cls


@dataclass
class Window:
    """One activation of a scenario: data generated for times in (start_ms, end_ms] is changed."""

    name: str
    start_ms: int
    targets: dict
    end_ms: int | None = None
    state: dict = field(default_factory=dict)     # what a scenario has already done in this window

    def covers(self, at_ms: int) -> bool:
        return self.start_ms < at_ms and (self.end_ms is None or at_ms <= self.end_ms)

    def to_json(self) -> dict:
        return {"started_at": self.start_ms / 1000, "ended_at": None if self.end_ms is None else self.end_ms / 1000,
                "targets": self.targets}


class Scenario:
    name = ""
    summary = ""

    def pick(self, ws, rng: random.Random, now_ms: int, taken: set) -> dict:
        """The jobs/clusters/pipelines this activation affects; `taken` holds what active scenarios already use,
        so concurrent scenarios never share a target."""
        raise NotImplementedError


class ScenarioSet:
    """The scenarios of one workspace and their activations, under the workspace's lock."""

    def __init__(self, ws):
        self.ws = ws
        self.windows: list[Window] = []

    def active(self) -> list[Window]:
        return [w for w in self.windows if w.end_ms is None]

    def start(self, name: str) -> Window:
        spec = self._scenario(name)
        with self.ws.lock:
            now = self.ws.now_advanced()
            current = next((w for w in self.active() if w.name == name), None)
            if current is not None:
                return current
            taken = {t for w in self.active() for values in w.targets.values() for t in values}
            rng = random.Random(f"{self.ws.seed}:scenario:{name}")
            window = Window(name, now, spec.pick(self.ws, rng, now, taken))
            self.windows.append(window)
            return window

    def stop(self, name: str | None = None) -> list[Window]:
        if name is not None:
            self._scenario(name)
        with self.ws.lock:
            now = self.ws.now_advanced()
            ended = [w for w in self.active() if name in (None, w.name)]
            for window in ended:
                window.end_ms = now
            return ended

    def apply(self, hook: str, at_ms: int, value, *context):
        """`value` as the scenarios active at `at_ms` that implement `hook` change it."""
        if not self.windows:        # the common case, on hot paths (every run plan, every node minute)
            return value
        for window in self.windows:
            if window.covers(at_ms):
                method = getattr(SCENARIOS[window.name], hook, None)
                if method is not None:
                    value = method(window, value, *context)
        return value

    def describe(self) -> dict:
        with self.ws.lock:
            return {"scenarios": [{"name": name, "summary": spec.summary,
                                   "active": any(w.name == name for w in self.active()),
                                   "activations": [w.to_json() for w in self.windows if w.name == name]}
                                  for name, spec in SCENARIOS.items()]}

    def _scenario(self, name: str) -> "Scenario":
        spec = SCENARIOS.get(name)
        if spec is None:
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST",
                           f"No scenario named '{name}'. Known scenarios: {', '.join(sorted(SCENARIOS))}.")
        return spec


def _running_clusters(ws, now_ms: int, taken: set) -> list:
    """All-purpose clusters running now whose session lasts at least two more hours, longer than any drill."""
    out = []
    for cluster in sorted(ws.clusters, key=lambda c: c.spec.cluster_id):
        state, _, workers, session = cluster.state_at(now_ms)
        if (cluster.spec.source in ("UI", "API") and state == "RUNNING" and workers > 0 and session is not None
                and session.terminated_ms > now_ms + 2 * HOUR_MS and cluster.spec.cluster_id not in taken):
            out.append(cluster)
    if not out:
        raise ApiError(409, "INVALID_STATE", "No all-purpose cluster is running long enough right now.")
    return out


def _last_finished(job, now_ms: int) -> str | None:
    return next((run.outcome for run in reversed(job.runs) if run.end_ms <= now_ms), None)


def _pipeline(ws, name: str) -> dict:
    pipeline = next((p for p in ws.pipelines.pipelines if p.spec.name == name), None)
    if pipeline is None:
        raise ApiError(409, "INVALID_STATE", f"The workspace has no pipeline {name}.")
    return {"pipeline_ids": [pipeline.pipeline_id]}


# -------------------------------------------------------------------------------------------------- scenarios

@scenario
class JobFailureStorm(Scenario):
    name = "job_failure_storm"
    summary = "Every run of six frequently scheduled jobs ends FAILED (a broken shared library, say)."
    # Six of the jobs that run every minute or two make over half of the workspace's runs, enough to lift its
    # failure ratio well past the critical 25%.
    JOBS = 6

    def pick(self, ws, rng, now_ms, taken):
        # The most frequent schedules, so failures pile up within minutes, among jobs that work now: the storm is
        # what breaks them.
        frequent = [j for j in ws.jobs if j.scheduled and j.period_min <= 2 and str(j.job_id) not in taken
                    and _last_finished(j, now_ms) == "SUCCESS"]
        return {"job_ids": sorted(str(j.job_id) for j in rng.sample(frequent, min(self.JOBS, len(frequent))))}

    def job_outcome(self, window, outcome, job):
        return "FAILED" if str(job.job_id) in window.targets["job_ids"] else outcome


@scenario
class RepairStorm(Scenario):
    name = "repair_storm"
    summary = ("Someone repairs every run that failed in the last hour at once (after fixing a shared cause), so "
               "repairs of runs far behind any listing window of recent runs all start now.")

    def pick(self, ws, rng, now_ms, taken):
        # The repairs are the scenario: they start when it does, through the same path as runs/repair.
        return {"run_ids": [str(r) for r in ws.job_set.repair_failed_since(now_ms, now_ms - HOUR_MS)]}


class _NodeStress(Scenario):
    # column -> (floor, noise byte, divisor): the column reads floor + noise[byte] / divisor, a stable jitter.
    LEVELS: dict[str, tuple[float, int, int]] = {}

    def pick(self, ws, rng, now_ms, taken):
        return {"cluster_ids": [rng.choice(_running_clusters(ws, now_ms, taken)).spec.cluster_id]}

    def node_minute(self, window, row, noise: bytes):
        if row["cluster_id"] in window.targets["cluster_ids"]:
            for column, (floor, byte, divisor) in self.LEVELS.items():
                row[column] = round(floor + noise[byte] / divisor, 2)
        return row


@scenario
class CpuSaturation(_NodeStress):
    name = "cpu_saturation"
    summary = "One running all-purpose cluster's nodes spend over 95% of their CPU time busy (user + system)."
    LEVELS = {"cpu_user_percent": (91, 1, 64), "cpu_system_percent": (4.5, 2, 255),   # 91..95, 4.5..5.5
              "cpu_wait_percent": (0, 3, 255)}


@scenario
class MemoryPressure(_NodeStress):
    name = "memory_pressure"
    summary = "One running all-purpose cluster's nodes use 96-99% of their memory and swap."
    LEVELS = {"mem_used_percent": (96, 4, 85), "mem_swap_percent": (20, 5, 8)}         # 96..99


@scenario
class ExpectationsFailing(Scenario):
    name = "expectations_failing"
    summary = ("A triggered pipeline's source starts sending bad records: its expectations fail for about a third "
               "of them, from its next update on.")
    PIPELINE = "sales_orders_etl"     # healthy otherwise, and updated every few minutes
    FAIL_RATE = 0.35

    def pick(self, ws, rng, now_ms, taken):
        return _pipeline(ws, self.PIPELINE)

    def expectation_fail_rate(self, window, rate, pipeline, expectation):
        return self.FAIL_RATE if pipeline.pipeline_id in window.targets["pipeline_ids"] else rate


@scenario
class PipelineBacklog(Scenario):
    name = "pipeline_backlog"
    summary = ("A triggered pipeline's streaming source falls an hour behind (a day of files dumped at once) and "
               "the lag keeps growing, from its next update on.")
    PIPELINE = "shipments_cdc"        # reads Kafka, updated every five minutes
    INITIAL_S, GROWTH = 3600.0, 2.0   # seconds behind at the start; seconds of lag added per second

    def pick(self, ws, rng, now_ms, taken):
        return _pipeline(ws, self.PIPELINE)

    def flow_metrics(self, window, metrics, pipeline, flow, at_ms):
        if pipeline.pipeline_id not in window.targets["pipeline_ids"] or flow is not pipeline.spec.flows[0]:
            return metrics
        lag = self.INITIAL_S + self.GROWTH * (at_ms - window.start_ms) / 1000
        records = int(lag * 300)
        return {**metrics, "backlog_seconds": round(lag, 1), "backlog_records": records,
                "backlog_bytes": records * 350}


@scenario
class TableStale(Scenario):
    name = "table_stale"
    summary = ("The streaming writer of main.bronze.events stops committing (its job hangs on a lock, say): the table "
               "is no longer written, and its age grows past any freshness SLO.")
    TABLE = "main.bronze.events"      # written every minute, so its age says "stale" within minutes

    def pick(self, ws, rng, now_ms, taken):
        return {"tables": [self.TABLE]}

    def table_write(self, window, writes, table):
        return writes and table not in window.targets["tables"]


@scenario
class SpendSpike(Scenario):
    name = "spend_spike"
    summary = ("A forgotten all-purpose cluster has burnt twice the workspace's most expensive recent day in the "
               "last hour; its usage records land in system.billing.usage at once (the feed's hours of lag skipped).")
    FACTOR = Decimal(2)

    def pick(self, ws, rng, now_ms, taken):
        clusters = sorted((c for c in ws.clusters if c.spec.source in ("UI", "API") and c.spec.cluster_id not in taken),
                          key=lambda c: c.spec.cluster_id)
        return {"cluster_ids": [rng.choice(clusters).spec.cluster_id]}

    def billing(self, window, rows, model):
        """Once per activation: one record for the last hour of today, visible from the scenario's start."""
        if window.state.get("billed"):
            return rows
        window.state["billed"] = True
        ws, start = model.ws, window.start_ms
        today = start // DAY_MS * DAY_MS
        closed = [t.cost for day, t in ws.ledger.billed_days(model.workspace_id).items()
                  if today - 7 * DAY_MS <= _day_ms(day) < today]
        cluster = next(c for c in ws.clusters if c.spec.cluster_id == window.targets["cluster_ids"][0])
        billable = model._cluster_billable(cluster)
        price = model.price_at(billable.sku, start)
        quantity = (self.FACTOR * max(closed, default=Decimal(1000)) / price).quantize(Decimal("0.0001"))
        return rows + [(billable, max(today, start - HOUR_MS), start, quantity, start)]


def _day_ms(day: str) -> int:
    return int(dt.datetime.fromisoformat(day).replace(tzinfo=dt.timezone.utc).timestamp() * 1000)


@scenario
class ServingErrors(Scenario):
    name = "serving_errors"
    summary = ("A bad model version on a busy serving endpoint: a quarter of its requests answer 5xx and its latency is "
               "ten times the usual, from the next minute on.")
    ENDPOINT = "fraud-scoring"        # the busiest custom model endpoint
    ERROR_SHARE, SLOWDOWN = 0.25, 10

    def pick(self, ws, rng, now_ms, taken):
        return {"endpoint_names": [self.ENDPOINT]}

    def serving_minute(self, window, traffic, endpoint_name):
        if endpoint_name in window.targets["endpoint_names"]:
            traffic.errors_5xx = max(traffic.errors_5xx, round(traffic.requests * self.ERROR_SHARE))
            traffic.latency_ms *= self.SLOWDOWN
        return traffic


@scenario
class FailedLoginBurst(Scenario):
    name = "failed_login_burst"
    summary = "Password spraying: forty failed logins a minute against the workspace's users from one address."
    PER_MINUTE = 40

    def pick(self, ws, rng, now_ms, taken):
        return {"source_ips": ["203.0.113.66"]}

    def audit_minute(self, window, events, start_ms):
        from .audit import USERS, event
        ip = window.targets["source_ips"][0]
        return events + [event("accounts", "login", 401, USERS[i % len(USERS)], ip, user=USERS[i % len(USERS)])
                         for i in range(self.PER_MINUTE)]


@scenario
class PermissionChange(Scenario):
    name = "permission_change"
    summary = ("Someone adds a user to the admins group and opens a job's permissions to all users, outside any "
               "change process (once per activation, in its first minute).")

    def pick(self, ws, rng, now_ms, taken):
        return {"actions": ["groups/addPrincipalToGroup", "permissions/changePermissions"]}

    def audit_minute(self, window, events, start_ms):
        if window.state.get("done"):
            return events
        window.state["done"] = True
        from .audit import event
        return events + [
            event("groups", "addPrincipalToGroup", 200, "eli.novak@example.com", "198.51.100.23",
                  targetGroupName="admins", targetUserName="eli.novak@example.com"),
            event("permissions", "changePermissions", 200, "eli.novak@example.com", "198.51.100.23",
                  objectType="jobs", objectId="1001", accessControlList="users:CAN_MANAGE")]
# ------------------------------------------------------------------------------------ cost scenarios (issue 13)

@scenario
class FailedRunSpend(Scenario):
    name = "failed_run_spend"
    summary = ("A frequently scheduled job's runs all fail after burning a runaway cluster's worth of DBUs; each "
               "failed run's usage lands in system.billing.usage as soon as the run ends.")
    DBUS_PER_RUN = Decimal(600)       # over 100 USD at any jobs list price: one failed run crosses the default threshold

    def pick(self, ws, rng, now_ms, taken):
        # Quick runs on their own compute, so a failed run ends (and is billed) within minutes of the start.
        candidates = [j for j in ws.jobs if j.scheduled and j.period_min <= 5 and j.compute != "existing"
                      and str(j.job_id) not in taken and _last_finished(j, now_ms) == "SUCCESS"]
        if not candidates:
            raise ApiError(409, "INVALID_STATE", "No frequently scheduled job on its own compute works now.")
        job = min(candidates, key=lambda j: (sum(t.median_ms for t in j.tasks) + sum(j.launch_range_s) * 500,
                                             j.job_id))
        return {"job_ids": [str(job.job_id)]}

    def job_outcome(self, window, outcome, job):
        return "FAILED" if str(job.job_id) in window.targets["job_ids"] else outcome

    def billing(self, window, rows, model):
        """One record per failed run of the job that started in the window and has ended, visible at its end."""
        billed = window.state.setdefault("billed", set())
        now = model.ws.now_ms()             # the world is generated up to now when billing advances
        extra = []
        for job in model.ws.jobs:
            if str(job.job_id) not in window.targets["job_ids"]:
                continue
            for run in reversed(job.runs):
                if run.start_ms <= window.start_ms:
                    break
                if run.result == "FAILED" and run.end_ms <= now and run.run_id not in billed:
                    billed.add(run.run_id)
                    extra.append((model._job_billable(job, run), run.exec_start_ms, run.end_ms,
                                  self.DBUS_PER_RUN, run.end_ms))
        return rows + extra


@scenario
class IdleWarehouse(Scenario):
    name = "idle_warehouse"
    summary = ("Every client of one running classic SQL warehouse goes away, but its long auto-stop keeps it running "
               "(and billed) with no query at all.")

    def pick(self, ws, rng, now_ms, taken):
        from .billing import WAREHOUSE_DBU

        candidates = []
        for w in ws.warehouses:
            _, state, clusters, _, _ = w.state_at(now_ms)
            i = bisect.bisect_right(w.transition_ts, now_ms)
            stops = [t[0] for t in w.transitions[i:] if t[1] == "STOPPING"]
            if (not w.serverless and state == "RUNNING" and stops and stops[0] > now_ms + HOUR_MS
                    and w.id not in taken):
                candidates.append((WAREHOUSE_DBU[w.cluster_size] * clusters, w.id))
        if not candidates:
            raise ApiError(409, "INVALID_STATE", "No classic SQL warehouse is running for another hour right now.")
        return {"warehouse_ids": [max(candidates)[1]]}

    def warehouse_query(self, window, keep, warehouse):
        return keep and warehouse.id not in window.targets["warehouse_ids"]


@scenario
class ReconciliationGap(Scenario):
    name = "reconciliation_gap"
    summary = ("The Jobs API hides the runs of two frequently scheduled jobs from runs/list and runs/get until "
               "20 minutes after they end (a lagging replica, say); system.lakeflow.job_run_timeline has them all.")
    JOBS = 2
    HIDDEN_AFTER_END_MS = 20 * 60 * 1000

    def pick(self, ws, rng, now_ms, taken):
        # Frequent and quick, so that hidden runs end within minutes of the start.
        frequent = sorted((j for j in ws.jobs if j.scheduled and j.period_min <= 5 and str(j.job_id) not in taken),
                          key=lambda j: (j.period_min, sum(t.median_ms for t in j.tasks), j.job_id))
        return {"job_ids": sorted(str(j.job_id) for j in frequent[:self.JOBS])}

    def run_listed(self, window, listed, run, now_ms):
        hidden = str(run.job.job_id) in window.targets["job_ids"] and now_ms < run.end_ms + self.HIDDEN_AFTER_END_MS
        return listed and not hidden
