"""A seeded, deterministic, living model of a Databricks workspace: clusters, jobs, job runs and SQL warehouses.

The world is a pure function of (seed, start, simulated time). Every entity draws from its own random stream,
consumed strictly in its own time order, so the answer to any query does not depend on which queries came
before it or how often the clock was sampled. History is generated incrementally: each request first advances
the world to "now" (cheap when little time has passed) and then reads sorted indexes, so the cost of a request is
proportional to what it returns rather than to the size of the workspace.

Everything here returns plain JSON-ready dicts shaped like the real REST API (see
/work/shared/reference/databricks-api.md); server.py only does HTTP.
"""

from __future__ import annotations

import base64
import datetime as dt
import bisect
import hashlib
import heapq
import json
import random
import threading
import time
from dataclasses import dataclass, field

SECOND_MS = 1_000
MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000

# Run ids are (trigger second since 2020) * 10^7 + job index * 100 + slot. That keeps them unique without any
# shared counter (so lazy generation in any order gives the same ids), increasing with time like real ones, and
# below 2^53 until 2048 so JavaScript consumers do not lose precision.
RUN_ID_EPOCH_S = 1_577_836_800
MAX_JOBS = 100_000

KIND_SCHEDULED, KIND_RETRY, KIND_MANUAL = 0, 1, 2
TRIGGER_BY_KIND = {KIND_SCHEDULED: "PERIODIC", KIND_RETRY: "RETRY", KIND_MANUAL: "ONE_TIME"}

ACTIVE_RUN_STATES = ("QUEUED", "PENDING", "RUNNING", "TERMINATING")
CLUSTER_RETENTION_MS = 30 * DAY_MS

USERS = [
    "ana.silva@example.com", "bo.chen@example.com", "carla.jones@example.com", "dev.patel@example.com",
    "eli.novak@example.com", "fatima.khan@example.com", "gus.meyer@example.com", "hana.sato@example.com",
]
SERVICE_PRINCIPAL = "svc-automation@example.com"
TEAMS = [
    ("data-eng", "CC-1010"), ("analytics", "CC-1020"), ("ml-platform", "CC-1030"),
    ("finance", "CC-1040"), ("marketing", "CC-1050"), ("risk", "CC-1060"),
]
SUBJECTS = [
    "orders", "customers", "payments", "inventory", "sessions", "clickstream", "invoices", "features",
    "churn", "forecast", "ledger", "campaigns", "shipments", "fraud", "recommendations",
]
ACTIONS = ["ingest", "etl", "refresh", "aggregate", "sync", "export", "train", "score", "quality-check", "backfill"]
TASK_KEYS = ["ingest", "validate", "transform", "enrich", "aggregate", "publish", "train", "score", "export"]
# name -> (cores, memory MB) per node.
NODE_TYPES = {
    "i3.xlarge": (4, 31_232), "i3.2xlarge": (8, 62_464), "m5d.xlarge": (4, 16_384),
    "m5d.2xlarge": (8, 32_768), "r5d.2xlarge": (8, 65_536), "c5d.4xlarge": (16, 32_768),
}
SPARK_VERSIONS = ["15.4.x-scala2.12", "14.3.x-scala2.12", "16.4.x-scala2.12", "13.3.x-scala2.12",
                  "15.4.x-cpu-ml-scala2.12"]
WAREHOUSE_SIZES = ["2X-Small", "X-Small", "Small", "Medium", "Large", "X-Large"]

# The first 60 jobs form the "core" workspace whose schedules guarantee several completed runs every minute;
# jobs beyond that are the long tail of hourly and daily batch jobs a large workspace has, which keeps the run
# volume of a 10k-job benchmark workspace realistic rather than 150x the core one.
CORE_PERIODS_MIN = ([1] * 5 + [2] * 3 + [5] * 7 + [10] * 5 + [15] * 7 + [30] * 6 + [60] * 11 + [240] * 4
                    + [1440] * 7 + [None] * 5)
TAIL_PERIODS_MIN = [(30, 10), (60, 35), (120, 10), (240, 15), (1440, 25), (None, 5)]

# Cluster sources of the long-lived (non-job) clusters, cycled so every source appears once n_clusters >= 4.
LONG_LIVED_SOURCES = ["UI", "API", "PIPELINE", "SQL", "UI", "API", "UI", "PIPELINE", "UI", "API"]


class ApiError(Exception):
    """An error answered with an HTTP status and a Databricks error body {"error_code", "message"}."""

    def __init__(self, status: int, error_code: str, message: str):
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message

    def body(self) -> dict:
        return {"error_code": self.error_code, "message": self.message}


def invalid_parameter(message: str) -> ApiError:
    return ApiError(400, "INVALID_PARAMETER_VALUE", message)


def does_not_exist(message: str) -> ApiError:
    return ApiError(404, "RESOURCE_DOES_NOT_EXIST", message)


def legacy_does_not_exist(message: str) -> ApiError:
    """clusters/get, jobs/get and jobs/runs/get answer unknown ids with 400 INVALID_PARAMETER_VALUE "... does not
    exist"; databricks-sdk carries error overrides that turn exactly these into ResourceDoesNotExist."""
    return invalid_parameter(message)


def run_result_label(state: dict) -> str:
    """The outcome label of a finished run, the rule the exporter shares: result_state if present, else the
    life_cycle_state (SKIPPED and INTERNAL_ERROR runs carry no result_state)."""
    return state.get("result_state") or state["life_cycle_state"]


def encode_page_token(cursor: dict) -> str:
    raw = json.dumps(cursor, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str) -> dict:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        cursor = json.loads(raw)
        if not isinstance(cursor, dict):
            raise ValueError
        return cursor
    except ValueError:
        raise invalid_parameter(f"Invalid page token: {token[:40]}") from None


def _ts(ms: int) -> dt.datetime:
    """Epoch milliseconds as a naive UTC datetime, as a SQL TIMESTAMP column holds it."""
    return dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=ms)


def _digest(*parts, size: int = 8) -> bytes:
    return hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=size).digest()


def _hex(*parts, n: int = 16) -> str:
    return _digest(*parts, size=(n + 1) // 2).hex()[:n]


def _int(*parts, bound: int) -> int:
    return int.from_bytes(_digest(*parts), "big") % bound


def _randint(rng: random.Random, lo: int, hi: int) -> int:
    """random.randint without its argument checking, which dominates run generation at benchmark scale."""
    return lo + int(rng.random() * (hi - lo + 1))


def make_cluster_id(created_ms: int, *parts) -> str:
    """Real cluster ids look like 0923-164208-meows279: creation MMDD-HHMMSS and eight lowercase characters."""
    t = time.gmtime(created_ms // 1000)
    suffix = base64.b32encode(_digest(*parts, size=5)).decode().lower()
    return f"{t.tm_mon:02d}{t.tm_mday:02d}-{t.tm_hour:02d}{t.tm_min:02d}{t.tm_sec:02d}-{suffix}"


def make_run_id(start_ms: int, job_index: int, kind: int) -> int:
    return (start_ms // 1000 - RUN_ID_EPOCH_S) * 10_000_000 + job_index * 100 + kind * 20


def _node(cluster_id: str, session_start: int, k: int, started_ms: int) -> dict:
    """A SparkNode (driver or executor) with stable ids derived from its cluster, session and slot."""
    h = _digest(cluster_id, session_start, k, size=8)
    ip = f"10.{h[0]}.{h[1]}.{h[2] or 1}"
    return {
        "node_id": _hex(cluster_id, session_start, k, "node", n=32),
        "instance_id": "i-0" + h.hex()[:16],
        "private_ip": ip,
        "host_private_ip": ip,
        "public_dns": "",
        "start_timestamp": started_ms,
    }


# --------------------------------------------------------------------------------------------------- clusters

@dataclass
class ClusterSpec:
    """What a cluster is configured as; shared by long-lived clusters and per-run job clusters."""

    cluster_id: str
    cluster_name: str
    source: str
    creator: str
    node_type_id: str
    driver_node_type_id: str
    spark_version: str
    runtime_engine: str
    data_security_mode: str
    autoscale: tuple[int, int] | None
    num_workers: int
    autotermination_minutes: int
    custom_tags: dict
    policy_id: str | None = None
    pinned: bool = False
    init_scripts: bool = False

    def static_json(self) -> dict:
        out = {
            "cluster_id": self.cluster_id,
            "cluster_name": self.cluster_name,
            "cluster_source": self.source,
            "creator_user_name": self.creator,
            "spark_version": self.spark_version,
            "node_type_id": self.node_type_id,
            "driver_node_type_id": self.driver_node_type_id,
            "runtime_engine": self.runtime_engine,
            "data_security_mode": self.data_security_mode,
            "autotermination_minutes": self.autotermination_minutes,
            "enable_elastic_disk": True,
            "is_single_node": False,
            "custom_tags": dict(self.custom_tags),
            "default_tags": {
                "Vendor": "Databricks",
                "Creator": self.creator,
                "ClusterName": self.cluster_name,
                "ClusterId": self.cluster_id,
            },
            "aws_attributes": {"availability": "SPOT_WITH_FALLBACK", "first_on_demand": 1, "zone_id": "us-west-2a"},
            "spark_conf": {},
            "jdbc_port": 10000,
        }
        if self.autoscale:
            out["autoscale"] = {"min_workers": self.autoscale[0], "max_workers": self.autoscale[1]}
        if self.policy_id:
            out["policy_id"] = self.policy_id
        return out


@dataclass
class ClusterSession:
    """One start-to-termination life of a cluster."""

    start_ms: int
    running_ms: int = 0            # 0 while it never came up (launch failure)
    terminated_ms: int = 0
    reason: dict | None = None     # termination_reason
    restarts: list = field(default_factory=list)


def _reason(code: str, type_: str, **parameters) -> dict:
    return {"code": code, "type": type_, "parameters": {k: str(v) for k, v in parameters.items()}}


def _state_json(spec: ClusterSpec, state: str, message: str, workers: int, session: ClusterSession | None,
                now_ms: int) -> dict:
    """Compose ClusterDetails from the static spec and the state the timeline holds at now."""
    out = spec.static_json()
    out["state"] = state
    out["state_message"] = message
    out["num_workers"] = workers if state != "TERMINATED" else (spec.autoscale[0] if spec.autoscale else
                                                                  spec.num_workers)
    if session is not None:
        out["start_time"] = session.start_ms
        if session.running_ms and session.running_ms <= now_ms:
            out["last_restarted_time"] = max([session.running_ms] + [r for r in session.restarts if r <= now_ms])
        if state == "TERMINATED":
            out["terminated_time"] = session.terminated_ms
            if session.reason:
                out["termination_reason"] = session.reason
        elif session.running_ms and state in ("RUNNING", "RESIZING", "RESTARTING", "TERMINATING"):
            started = session.running_ms
            out["driver"] = _node(spec.cluster_id, session.start_ms, 0, started)
            out["executors"] = [_node(spec.cluster_id, session.start_ms, k + 1, started) for k in range(workers)]
            out["spark_context_id"] = _int(spec.cluster_id, session.start_ms, "ctx", bound=10**18)
            worker_cores, worker_mem = NODE_TYPES[spec.node_type_id]
            driver_cores, driver_mem = NODE_TYPES[spec.driver_node_type_id]
            out["cluster_cores"] = float(worker_cores * workers + driver_cores)
            out["cluster_memory_mb"] = worker_mem * workers + driver_mem
    return out


def _event_json(cluster_id: str, ev: tuple) -> dict:
    ts, type_, current, target, extra = ev
    details: dict = {}
    if current is not None:
        details["current_num_workers"] = current
    if target is not None:
        details["target_num_workers"] = target
    if extra:
        details.update(extra)
    return {"cluster_id": cluster_id, "timestamp": ts, "type": type_, "details": details}


class LongLivedCluster:
    """An all-purpose (UI/API), pipeline or SQL cluster that starts, scales, restarts and terminates in sessions.

    Each session is generated whole when its start time is reached, so future events of the running session
    already exist; every read filters on timestamp <= now.
    """

    def __init__(self, ws: "SimulatedWorkspace", index: int, source: str):
        self.ws = ws
        self.index = index
        rng = self._rng = random.Random(f"{ws.seed}:cluster:{index}")
        self.always_on = source in ("UI", "API") and rng.random() < 0.35
        created = ws.world_start_ms - rng.randint(1, 20) * DAY_MS - rng.randint(0, DAY_MS)
        team, _ = rng.choice(TEAMS)
        node_type = rng.choice(list(NODE_TYPES))
        autoscale = None
        num_workers = rng.choice([1, 2, 2, 4, 8])
        if source in ("UI", "PIPELINE") or (source == "API" and rng.random() < 0.4) or source == "SQL":
            lo = rng.choice([1, 1, 2, 2, 4])
            autoscale = (lo, lo + rng.choice([2, 4, 6, 8]))
            num_workers = lo
        if source == "UI":
            name = f"{team}-{rng.choice(['shared', 'interactive', 'adhoc', 'notebooks'])}-{index}"
            creator = rng.choice(USERS)
            autotermination = 0 if self.always_on else rng.choice([30, 60, 120])
        elif source == "API":
            name = f"{team}-automation-{index}"
            creator = SERVICE_PRINCIPAL
            autotermination = 0 if self.always_on else rng.choice([20, 60])
        elif source == "PIPELINE":
            name = f"dlt-execution-{_hex(ws.seed, 'dlt', index, n=8)}"
            creator = rng.choice(USERS)
            autotermination = 0
        else:
            name = f"sql-endpoint-cluster-{_hex(ws.seed, 'sql', index, n=8)}"
            creator = "System-User"
            autotermination = 0
        self.spec = ClusterSpec(
            cluster_id=make_cluster_id(created, ws.seed, "cluster", index),
            cluster_name=name,
            source=source,
            creator=creator,
            node_type_id=node_type,
            driver_node_type_id=node_type,
            spark_version=rng.choice(SPARK_VERSIONS),
            runtime_engine=rng.choice(["PHOTON", "STANDARD", "STANDARD"]),
            data_security_mode=rng.choice(["USER_ISOLATION", "SINGLE_USER"]),
            autoscale=autoscale,
            num_workers=num_workers,
            autotermination_minutes=autotermination,
            custom_tags={"team": team, "cost_center": dict(TEAMS)[team]},
            policy_id=_hex(ws.seed, "policy", team, n=16).upper() if source in ("UI", "API") else None,
            pinned=self.always_on,
            init_scripts=rng.random() < 0.3,
        )
        self.created_ms = created
        self.sessions: list[ClusterSession] = []
        self.session_starts: list[int] = []
        self.transitions: list[tuple] = []      # (ts, state, state_message, workers), sorted by ts
        self.transition_ts: list[int] = []
        self.events: list[tuple] = []           # (ts, type, current, target, extra), sorted by ts
        self.event_ts: list[int] = []
        # Start somewhere before the window so the cluster has a realistic state when history begins.
        if self.always_on:
            self.next_start_ms = ws.world_start_ms - rng.randint(HOUR_MS, 3 * DAY_MS)
        else:
            self.next_start_ms = ws.world_start_ms - rng.randint(0, 12 * HOUR_MS)
        self.next_start_ms = max(self.next_start_ms, created)

    # -- generation

    def extend(self, until_ms: int) -> None:
        while self.next_start_ms <= until_ms:
            self._generate_session(self.next_start_ms)

    def _generate_session(self, start: int) -> None:
        rng = self._rng
        spec = self.spec
        session = ClusterSession(start_ms=start)
        events: list[tuple] = []
        states: list[tuple] = []
        first = not self.sessions
        events.append((start, "CREATING" if first else "STARTING", None, None, {"user": spec.creator}))
        states.append((start, "PENDING", "Finding instances for new nodes, acquiring more instances if necessary", 0))
        launch_ms = rng.randint(90, 330) * SECOND_MS
        t = start + launch_ms
        if rng.random() < 0.04:
            reason = _reason(
                "CLOUD_PROVIDER_LAUNCH_FAILURE", "CLOUD_FAILURE",
                aws_api_error_code="InsufficientInstanceCapacity",
                aws_error_message=f"We currently do not have sufficient {spec.node_type_id} capacity in the "
                                  "Availability Zone you requested (us-west-2a).")
            self._terminate(session, events, states, t, reason,
                            "A cloud provider error was encountered while setting up the cluster.", 0)
            return
        if spec.init_scripts:
            events.append((t - rng.randint(30, 60) * SECOND_MS, "INIT_SCRIPTS_STARTED", None, None, None))
            events.append((t - rng.randint(2, 20) * SECOND_MS, "INIT_SCRIPTS_FINISHED", None, None, None))
        workers = spec.autoscale[0] if spec.autoscale else spec.num_workers
        events.append((t, "RUNNING", workers, workers, None))
        states.append((t, "RUNNING", "", workers))
        events.append((t + rng.randint(5, 40) * SECOND_MS, "DRIVER_HEALTHY", None, None, None))
        session.running_ms = t

        if self.always_on:
            active_ms = rng.randint(20 * HOUR_MS, 3 * DAY_MS)
        elif spec.source == "UI":
            active_ms = rng.randint(20 * MINUTE_MS, 5 * HOUR_MS)
        elif spec.source == "PIPELINE":
            active_ms = rng.randint(10 * MINUTE_MS, 90 * MINUTE_MS)
        else:
            active_ms = rng.randint(15 * MINUTE_MS, 4 * HOUR_MS)
        end_activity = t + active_ms
        crash = rng.random() < 0.05
        next_stats = t + rng.randint(30, 60) * MINUTE_MS
        cursor = last_change = t
        while True:
            cursor = last_change + rng.randint(8, 30) * MINUTE_MS
            if cursor >= end_activity:
                break
            x = rng.random()
            if x < 0.03:
                # A user restart: the cluster goes RESTARTING and comes back with fresh nodes.
                back = cursor + rng.randint(90, 200) * SECOND_MS
                events.append((cursor, "RESTARTING", None, None, {"user": rng.choice(USERS)}))
                states.append((cursor, "RESTARTING", "Restarting Spark", workers))
                events.append((back, "RUNNING", workers, workers, None))
                states.append((back, "RUNNING", "", workers))
                session.restarts.append(back)
                cursor = back
            elif spec.autoscale:
                lo, hi = spec.autoscale
                target = rng.randint(lo, hi)
                if target != workers:
                    cursor, workers = self._resize(events, states, cursor, workers, target, "AUTOSCALE", rng)
            elif spec.source == "API" and x < 0.10:
                target = min(max(1, workers + rng.choice([-2, -1, 1, 2, 4])), 2 * spec.num_workers + 4)
                if target != workers:
                    cursor, workers = self._resize(events, states, cursor, workers, target, "USER_REQUEST", rng)
            if spec.autoscale and cursor >= next_stats:
                events.append((cursor + SECOND_MS, "AUTOSCALING_STATS_REPORT", workers, workers, None))
                next_stats = cursor + rng.randint(30, 60) * MINUTE_MS
            last_change = cursor
        end_activity = max(end_activity, last_change + MINUTE_MS)
        if spec.autoscale and workers > spec.autoscale[0]:
            # Load is gone: autoscaling shrinks the cluster back before it idles out.
            _, workers = self._resize(events, states, end_activity, workers, spec.autoscale[0], "AUTOSCALE", rng)

        if crash:
            events.append((end_activity - rng.randint(2, 5) * MINUTE_MS, "DRIVER_NOT_RESPONDING", None, None,
                           {"driver_state_message": "Driver is up but is not responsive, likely due to GC."}))
            reason = _reason("DRIVER_UNREACHABLE", "SERVICE_FAULT")
            message = "Attempt to reach the driver of the cluster failed."
            end = end_activity
        elif spec.autotermination_minutes and rng.random() < 0.75:
            minutes = spec.autotermination_minutes
            reason = _reason("INACTIVITY", "SUCCESS", inactivity_duration_min=minutes)
            message = f"Inactive cluster terminated (inactive for {minutes} minutes)."
            end = end_activity + minutes * MINUTE_MS
        else:
            user = spec.creator if spec.source != "SQL" else "System-User"
            reason = _reason("USER_REQUEST", "SUCCESS", username=user)
            message = f"Terminated by {user}"
            end = end_activity
        self._terminate(session, events, states, end, reason, message, workers)

    def _resize(self, events, states, at: int, current: int, target: int, cause: str, rng) -> tuple[int, int]:
        """Resize and return (time the resize finished, new worker count)."""
        events.append((at, "RESIZING", current, target, {"cause": cause}))
        if target > current:
            done = at + rng.randint(60, 180) * SECOND_MS
            if cause == "USER_REQUEST":
                states.append((at, "RESIZING", "Resizing cluster", current))
            events.append((done, "UPSIZE_COMPLETED", target, target, None))
            states.append((done, "RUNNING", "", target))
            return done, target
        states.append((at, "RUNNING", "", target))
        return at, target

    def _terminate(self, session, events, states, at: int, reason: dict, message: str, workers: int) -> None:
        rng = self._rng
        extra = {"reason": reason}
        if reason["code"] == "USER_REQUEST":
            extra["user"] = reason["parameters"]["username"]
        events.append((at, "TERMINATING", None, None, extra))
        states.append((at, "TERMINATING", "Terminating cluster", workers))
        done = at + rng.randint(15, 60) * SECOND_MS
        states.append((done, "TERMINATED", message, 0))
        session.terminated_ms = done
        session.reason = reason
        # Sorting per session keeps the global lists sorted: sessions never overlap in time.
        events.sort(key=lambda e: e[0])
        states.sort(key=lambda s: s[0])
        self.events.extend(events)
        self.event_ts.extend(e[0] for e in events)
        self.transitions.extend(states)
        self.transition_ts.extend(s[0] for s in states)
        self.sessions.append(session)
        self.session_starts.append(session.start_ms)
        if self.always_on:
            gap = rng.randint(1, 10) * MINUTE_MS
        elif self.spec.source == "UI":
            gap = rng.randint(20, 600) * MINUTE_MS
        elif self.spec.source == "PIPELINE":
            gap = rng.randint(20, 180) * MINUTE_MS
        else:
            gap = rng.randint(10, 360) * MINUTE_MS
        self.next_start_ms = done + gap

    # -- reads

    def state_at(self, now_ms: int) -> tuple[str, str, int, ClusterSession | None]:
        i = bisect.bisect_right(self.transition_ts, now_ms) - 1
        if i < 0:
            return "TERMINATED", "", 0, None
        _, state, message, workers = self.transitions[i]
        s = bisect.bisect_right(self.session_starts, now_ms) - 1
        return state, message, workers, self.sessions[s] if s >= 0 else None

    def to_json(self, now_ms: int) -> dict:
        state, message, workers, session = self.state_at(now_ms)
        return _state_json(self.spec, state, message, workers, session, now_ms)

    def events_between(self, start_ms: int, end_ms: int) -> list[tuple]:
        lo = bisect.bisect_left(self.event_ts, start_ms)
        hi = bisect.bisect_right(self.event_ts, end_ms)
        return self.events[lo:hi]


class JobCluster:
    """The ephemeral JOB cluster a run of a job-cluster job launches; derived entirely from the run record."""

    TERMINATION_DELAY_MS = 30 * SECOND_MS

    def __init__(self, job: "Job", run: "Run"):
        self.job = job
        self.run = run
        spec = job.cluster_spec
        self.spec = ClusterSpec(**{**spec.__dict__, "cluster_id": run.cluster_id,
                                   "cluster_name": f"job-{job.job_id}-run-{run.run_id}"})
        self.created_ms = run.exec_start_ms
        # Termination lags the run's end a little, as the real cluster manager does.
        self.terminated_ms = run.end_ms + 5 * SECOND_MS + run.run_id % 20_000
        if run.ready_ms or run.result != "FAILED":
            self.reason = _reason("JOB_FINISHED", "SUCCESS")
            self.message = "Job finished"
        else:
            # A FAILED run whose compute never became ready is the plan's cluster launch failure.
            self.reason = _reason("CLOUD_PROVIDER_LAUNCH_FAILURE", "CLOUD_FAILURE",
                                  aws_api_error_code="InsufficientInstanceCapacity",
                                  aws_error_message="Insufficient capacity for the requested instance type.")
            self.message = "A cloud provider error was encountered while setting up the cluster."

    def _timeline(self) -> list[tuple]:
        run, spec = self.run, self.spec
        workers = spec.num_workers
        states = [(self.created_ms, "PENDING", "Finding instances for new nodes, acquiring more instances if necessary",
                   0)]
        if run.ready_ms:
            states.append((run.ready_ms, "RUNNING", "", workers))
        states.append((run.end_ms, "TERMINATING", "Terminating cluster", workers if run.ready_ms else 0))
        states.append((self.terminated_ms, "TERMINATED", self.message, 0))
        return states

    def state_at(self, now_ms: int) -> tuple[str, str, int, ClusterSession]:
        state = ("PENDING", "", 0)
        for ts, s, message, workers in self._timeline():
            if ts <= now_ms:
                state = (s, message, workers)
        session = ClusterSession(start_ms=self.created_ms, running_ms=self.run.ready_ms,
                                 terminated_ms=self.terminated_ms, reason=self.reason)
        return state[0], state[1], state[2], session

    def to_json(self, now_ms: int) -> dict:
        state, message, workers, session = self.state_at(now_ms)
        return _state_json(self.spec, state, message, workers, session, now_ms)

    def events_between(self, start_ms: int, end_ms: int) -> list[tuple]:
        run, workers = self.run, self.spec.num_workers
        created = {"user": self.job.creator, "job_run_name": self.spec.cluster_name}
        events = [(self.created_ms, "CREATING", None, None, created)]
        if run.ready_ms:
            events.append((run.ready_ms, "RUNNING", workers, workers, None))
            events.append((run.ready_ms + 10 * SECOND_MS, "DRIVER_HEALTHY", None, None, None))
        events.append((run.end_ms, "TERMINATING", None, None, {"reason": self.reason}))
        return [e for e in events if start_ms <= e[0] <= end_ms]


# ------------------------------------------------------------------------------------------------------ jobs

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
                 "original_run_id", "life_cycle", "result", "queue_reason", "cluster_id")

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
        self.queue_reason: str | None = None
        self.cluster_id: str | None = None

    @property
    def key(self) -> tuple[int, int]:
        return (self.start_ms, self.run_id)

    @property
    def label(self) -> str:
        return self.result or self.life_cycle


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
        self.existing_cluster_id = ws.pick_shared_cluster(rng) if self.compute == "existing" else None
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
        return _int(self.ws.seed, self.index, fire_ms, "jitter", bound=2_500)

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
        self._admit(run)
        self.runs.append(run)
        return run

    def _admit(self, run: Run) -> None:
        """Decide queueing/skipping against the runs still active at trigger time, then plan the execution."""
        rng = self._rng
        ends = sorted(e for e in self._active_ends if e > run.start_ms)
        k = self.max_concurrent_runs
        if len(ends) >= k:
            if not self.queue_enabled and run.kind != KIND_RETRY:
                run.life_cycle = "SKIPPED"
                self._active_ends = ends
                return
            # FIFO queue: the run starts when enough of the runs ahead of it have finished.
            run.exec_start_ms = ends[len(ends) - k]
            run.queue_reason = "MAX_CONCURRENT_RUNS_REACHED"
        elif self.queue_enabled and rng.random() < 0.03:
            run.exec_start_ms = run.start_ms + _randint(rng, 5, 90) * SECOND_MS
            run.queue_reason = "ACTIVE_RUNS_LIMIT_REACHED"
        if self.compute == "job_cluster":
            run.cluster_id = make_cluster_id(run.exec_start_ms, self.ws.seed, "job-cluster", run.run_id)
        plan = self.plan(run)
        run.ready_ms, run.end_ms = plan.ready_ms, plan.end_ms
        run.life_cycle, run.result = plan.life_cycle, plan.result
        self._active_ends = ends + [run.end_ms]
        if (not self.multitask and run.result in ("FAILED", "TIMEDOUT")
                and run.attempt < self.tasks[0].max_retries):
            retry_start = run.end_ms + self.tasks[0].min_retry_interval_ms + _randint(rng, 0, 2_000)
            retry_id = make_run_id(retry_start, self.index, KIND_RETRY)
            # Two retries of one job in the same second would share an id; the later one waits a second.
            while retry_id in self.ws._runs_by_id or any(r[1] == retry_id for r in self._retries):
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
        launch = _randint(rng, *self.launch_range_s) * SECOND_MS
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
            start = max((e for e, _ in deps), default=exec_start) + (_randint(rng, 300, 2_000) if deps else 0)
            setup = launch if not deps else _randint(rng, 500, 4_000)
            execution = max(1_000, int(task.median_ms * rng.lognormvariate(0, 0.35)))
            cleanup = _randint(rng, 300, 3_000)
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
                    setup1 = _randint(rng, 500, 3_000)
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
        run_cleanup = _randint(rng, 1_000, 5_000)
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
                       life_cycle=life_cycle, result=result, code=code, type=type_, message=message)

    # -- run JSON

    def run_json(self, run: Run, now_ms: int, include_tasks: bool) -> dict:
        ws = self.ws
        out = {
            "job_id": self.job_id,
            "run_id": run.run_id,
            "number_in_job": run.run_id,
            "original_attempt_run_id": run.original_run_id,
            "attempt_number": run.attempt,
            "creator_user_name": self.creator,
            "run_name": self.name,
            "run_page_url": f"{ws.base_url}/?o={ws.workspace_id}#job/{self.job_id}/run/{run.run_id}",
            "run_type": "JOB_RUN",
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
            state = {"life_cycle_state": run.life_cycle, "state_message": plan.message,
                     "user_cancelled_or_timedout": run.result in ("CANCELED", "TIMEDOUT")}
            if run.result:
                state["result_state"] = run.result
            out["state"] = state
            out["status"] = {"state": "TERMINATED", "termination_details": {
                "code": plan.code, "type": plan.type, "message": plan.message}}
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
                out["cluster_instance"]["spark_context_id"] = str(_int(cluster_id, "ctx", bound=10**18))
        if include_tasks:
            out["tasks"] = [self._task_json(run, a, now_ms) for a in plan.attempts
                            if a.retry == 0 or now_ms >= a.start]
        return out

    def _task_common(self, run: Run, index: int, retry: int) -> dict:
        task = self.tasks[index]
        task_run_id = run.run_id + 1 + index * 2 + retry
        out = self.task_json(task)
        out.update({
            "run_id": task_run_id,
            "attempt_number": run.attempt + retry,
            "run_page_url": f"{self.ws.base_url}/?o={self.ws.workspace_id}#job/{self.job_id}/run/{task_run_id}",
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

    def _task_json(self, run: Run, a: AttemptPlan, now_ms: int) -> dict:
        out = self._task_common(run, a.index, a.retry)
        if now_ms >= a.end and (a.start == 0 or now_ms >= a.start):
            out["end_time"] = a.end
            if a.start:
                out["start_time"] = a.start
                out.update(setup_duration=a.setup, execution_duration=a.execution, cleanup_duration=a.cleanup,
                           run_duration=a.end - a.start)
            state = {"life_cycle_state": a.life_cycle, "state_message": a.message,
                     "user_cancelled_or_timedout": a.result in ("CANCELED", "TIMEDOUT")}
            if a.result:
                state["result_state"] = a.result
            out["state"] = state
            out["status"] = {"state": "TERMINATED",
                             "termination_details": {"code": a.code, "type": a.type, "message": a.message}}
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


# ------------------------------------------------------------------------------------------------ warehouses

class Warehouse:
    """A SQL warehouse that starts on demand, scales its cluster count with load and stops when idle."""

    def __init__(self, ws: "SimulatedWorkspace", index: int):
        self.ws = ws
        self.index = index
        rng = self._rng = random.Random(f"{ws.seed}:warehouse:{index}")
        self.id = _hex(ws.seed, "warehouse", index, n=16)
        team, cost_center = rng.choice(TEAMS)
        self.serverless = index % 3 == 0
        self.warehouse_type = "PRO" if self.serverless or rng.random() < 0.6 else "CLASSIC"
        self.name = f"{team} {rng.choice(['BI', 'reporting', 'adhoc', 'dbt', 'dashboards'])} warehouse {index}"
        self.cluster_size = rng.choice(WAREHOUSE_SIZES)
        self.min_clusters = rng.choice([1, 1, 1, 2])
        self.max_clusters = self.min_clusters + rng.choice([0, 1, 2, 3, 4])
        self.auto_stop_mins = rng.choice([5, 10]) if self.serverless else rng.choice([10, 15, 30, 45, 60])
        self.always_on = index == 1 or rng.random() < 0.2
        self.creator = rng.choice(USERS)
        self.tags = [{"key": "team", "value": team}, {"key": "cost_center", "value": cost_center}]
        self.enable_photon = True
        self.transitions: list[tuple] = []   # (ts, state, num_clusters, health_status, health_summary)
        self.transition_ts: list[int] = []
        self.next_start_ms = ws.world_start_ms - rng.randint(0, 8 * HOUR_MS)

    def extend(self, until_ms: int) -> None:
        while self.next_start_ms <= until_ms:
            self._generate_session(self.next_start_ms)

    def _generate_session(self, start: int) -> None:
        rng = self._rng
        states: list[tuple] = []
        clusters = self.min_clusters
        health, summary = "HEALTHY", ""
        states.append((start, "STARTING", 0, health, summary))
        t = start + (rng.randint(3, 15) * SECOND_MS if self.serverless else rng.randint(120, 300) * SECOND_MS)
        states.append((t, "RUNNING", clusters, health, summary))
        busy_ms = rng.randint(20 * HOUR_MS, 2 * DAY_MS) if self.always_on else rng.randint(10, 240) * MINUTE_MS
        end_busy = t + busy_ms
        while True:
            t += rng.randint(3, 20) * MINUTE_MS
            if t >= end_busy:
                break
            if health != "HEALTHY":
                health, summary = "HEALTHY", ""
            elif rng.random() < 0.04:
                health = "DEGRADED"
                summary = rng.choice([
                    "Cluster(s) in this warehouse are experiencing a high rate of query failures.",
                    "One or more clusters failed to start; the warehouse is running with reduced capacity.",
                ])
            step = rng.choice([-1, 0, 1, 1])
            clusters = min(self.max_clusters, max(self.min_clusters, clusters + step))
            states.append((t, "RUNNING", clusters, health, summary))
        # Load gone: scale back down, then stop after auto_stop_mins of idleness.
        if clusters != self.min_clusters or health != "HEALTHY":
            states.append((end_busy, "RUNNING", self.min_clusters, "HEALTHY", ""))
        stop = end_busy + self.auto_stop_mins * MINUTE_MS
        stopped = stop + rng.randint(20, 90) * SECOND_MS
        states.append((stop, "STOPPING", self.min_clusters, "HEALTHY", ""))
        states.append((stopped, "STOPPED", 0, "HEALTHY", ""))
        self.transitions.extend(states)
        self.transition_ts.extend(s[0] for s in states)
        self.next_start_ms = stopped + rng.randint(15, 360) * MINUTE_MS

    def state_at(self, now_ms: int) -> tuple:
        i = bisect.bisect_right(self.transition_ts, now_ms) - 1
        if i < 0:
            return (now_ms, "STOPPED", 0, "HEALTHY", "")
        return self.transitions[i]

    def touch(self, now_ms: int) -> int:
        """A statement arrives: a stopped warehouse starts, and a running one stays up auto_stop_mins past now.
        Returns when the warehouse is (or will be) RUNNING. Only the future changes: what was read stays true."""
        self.extend(now_ms)
        _, state, _, _, _ = self.state_at(now_ms)
        i = bisect.bisect_right(self.transition_ts, now_ms)
        future = self.transitions[i:]
        if state in ("STOPPED", "STOPPING"):
            rng = random.Random(f"{self.ws.seed}:warehouse-wake:{self.index}:{now_ms}")
            running = now_ms + (rng.randint(3, 15) if self.serverless else rng.randint(120, 300)) * SECOND_MS
            future = [(now_ms, "STARTING", 0, "HEALTHY", ""), (running, "RUNNING", self.min_clusters, "HEALTHY", "")]
        else:
            running = next((t[0] for t in future if t[1] == "RUNNING"), now_ms) if state == "STARTING" else now_ms
        keep_until = max(now_ms, running) + self.auto_stop_mins * MINUTE_MS
        stop = next((k for k, t in enumerate(future) if t[1] == "STOPPING"), None)
        if stop is None or future[stop][0] < keep_until:
            clusters = self.min_clusters
            future = [t for t in (future if stop is None else future[:stop]) if t[0] < keep_until]
            future += [(keep_until, "STOPPING", clusters, "HEALTHY", ""),
                       (keep_until + 45 * SECOND_MS, "STOPPED", 0, "HEALTHY", "")]
            self.next_start_ms = max(self.next_start_ms, keep_until + 15 * MINUTE_MS)
        del self.transitions[i:], self.transition_ts[i:]
        self.transitions.extend(future)
        self.transition_ts.extend(t[0] for t in future)
        return running

    def to_json(self, now_ms: int) -> dict:
        _, state, clusters, health, summary = self.state_at(now_ms)
        health_json = {"status": health}
        if summary:
            health_json["summary"] = summary
        host = self.ws.host_name
        return {
            "id": self.id,
            "name": self.name,
            "cluster_size": self.cluster_size,
            "min_num_clusters": self.min_clusters,
            "max_num_clusters": self.max_clusters,
            "num_clusters": clusters,
            "num_active_sessions": clusters * 3 if state == "RUNNING" else 0,
            "auto_stop_mins": self.auto_stop_mins,
            "creator_name": self.creator,
            "enable_photon": self.enable_photon,
            "enable_serverless_compute": self.serverless,
            "warehouse_type": self.warehouse_type,
            "spot_instance_policy": "COST_OPTIMIZED",
            "channel": {"name": "CHANNEL_NAME_CURRENT"},
            "state": state,
            "health": health_json,
            "tags": {"custom_tags": [dict(t) for t in self.tags]},
            # Where the SQL protocol is served: the simulator's TLS listener when it has one (see server.py).
            "odbc_params": {"hostname": getattr(self.ws, "sql_host", host), "path": f"/sql/1.0/warehouses/{self.id}",
                            "protocol": "https", "port": getattr(self.ws, "sql_port", 443)},
            "jdbc_url": f"jdbc:databricks://{host}:443/default;transportMode=http;ssl=1;AuthMech=3;"
                        f"httpPath=/sql/1.0/warehouses/{self.id};",
        }


# ------------------------------------------------------------------------------------------------ workspace

class SimulatedWorkspace:
    """The whole simulated workspace: entities, the simulated clock, and the REST-shaped queries over them.

    start is the simulated epoch time at construction (default: clock() then) and history_seconds of activity
    before it are backfilled; afterwards simulated time follows clock() (inject a fake one in tests) minus any
    time spent paused, so time never jumps when the world resumes.
    """

    def __init__(self, seed: int = 1, start: float | None = None, history_seconds: float = 86_400,
                 clock=time.time, n_clusters: int = 24, n_jobs: int = 60, n_warehouses: int = 6,
                 n_pipelines: int = 10, query_rate: float = 1.0,
                 workspace_id: int = 1234567890123456):
        if n_jobs >= MAX_JOBS:
            raise ValueError(f"n_jobs must be below {MAX_JOBS}: run ids reserve 5 digits for the job index")
        self.seed = seed
        self.workspace_id = workspace_id
        self.query_rate = query_rate        # scales every warehouse's query arrivals (simulator/queries.py)
        self.account_id = "{}-{}-{}-{}-{}".format(*(_hex(seed, "account", i, n=n) for i, n in
                                                    enumerate((8, 4, 4, 4, 12))))
        self.base_url = "http://127.0.0.1"
        self.host_name = "127.0.0.1"
        self._clock = clock
        self._origin_wall = clock()
        self._start = self._origin_wall if start is None else float(start)
        self._paused_at: float | None = None
        self._paused_total = 0.0
        self._lock = threading.RLock()
        self.world_start_ms = int((self._start - history_seconds) * 1000)
        if self.world_start_ms < (RUN_ID_EPOCH_S + DAY_MS // 1000) * 1000:
            raise ValueError("start - history_seconds must be after 2020-01-02")

        self.clusters = [LongLivedCluster(self, i, LONG_LIVED_SOURCES[i % len(LONG_LIVED_SOURCES)])
                         for i in range(n_clusters)]
        self._clusters_by_id = {c.spec.cluster_id: c for c in self.clusters}
        self._shared_clusters = [c.spec.cluster_id for c in self.clusters if c.always_on]

        periods_rng = random.Random(f"{seed}:periods")
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
            self.jobs.append(Job(self, i, period, paused))
        self._jobs_by_id = {j.job_id: j for j in self.jobs}
        self._job_ids_sorted = sorted(self._jobs_by_id)

        self.warehouses = [Warehouse(self, i) for i in range(n_warehouses)]
        self._warehouses_by_id = {w.id: w for w in self.warehouses}

        # Pipelines generate lazily when their API is used (see pipelines.py); imported here to avoid a cycle.
        from .pipelines import PipelineSet
        self.pipelines = PipelineSet(self, n_pipelines)
        from .scenarios import ScenarioSet
        self.scenarios = ScenarioSet(self)

        # Global run index sorted by (start_time, run_id); runs are appended in that order as time advances.
        self._runs: list[Run] = []
        self._runs_by_id: dict[int, Run] = {}
        self._job_cluster_runs: list[Run] = []
        self._job_clusters: dict[str, Run] = {}
        self._max_run_span_ms = 0
        self._trigger_heap = []
        for job in self.jobs:
            start_ms, run_id = job.next_trigger()
            self._trigger_heap.append((start_ms, run_id, job.index))
        heapq.heapify(self._trigger_heap)
        self._generated_until_ms = self.world_start_ms - 1
        with self._lock:
            self._advance(self.now_ms())

    def pick_shared_cluster(self, rng: random.Random) -> str | None:
        return rng.choice(self._shared_clusters) if self._shared_clusters else None

    # -- clock

    def now(self) -> float:
        """Simulated epoch seconds: wall-clock driven, minus any time spent paused."""
        with self._lock:
            wall = self._paused_at if self._paused_at is not None else self._clock()
            return self._start + (wall - self._origin_wall) - self._paused_total

    def now_ms(self) -> int:
        return int(self.now() * 1000)

    def pause(self) -> float:
        with self._lock:
            if self._paused_at is None:
                self._paused_at = self._clock()
            return self.now()

    def resume(self) -> float:
        with self._lock:
            if self._paused_at is not None:
                self._paused_total += self._clock() - self._paused_at
                self._paused_at = None
            return self.now()

    @property
    def paused(self) -> bool:
        return self._paused_at is not None

    # -- incremental generation

    def _advance(self, now_ms: int) -> None:
        """Generate everything that has started by now_ms. Caller holds the lock."""
        if now_ms <= self._generated_until_ms:
            return
        heap = self._trigger_heap
        while heap and heap[0][0] <= now_ms:
            _, _, job_index = heapq.heappop(heap)
            job = self.jobs[job_index]
            run = job.emit_next()
            self._runs.append(run)
            self._runs_by_id[run.run_id] = run
            self._max_run_span_ms = max(self._max_run_span_ms, run.end_ms - run.start_ms)
            if run.cluster_id and run.life_cycle != "SKIPPED":
                self._job_cluster_runs.append(run)
                self._job_clusters[run.cluster_id] = run
            start_ms, run_id = job.next_trigger()
            heapq.heappush(heap, (start_ms, run_id, job_index))
        for cluster in self.clusters:
            cluster.extend(now_ms)
        for warehouse in self.warehouses:
            warehouse.extend(now_ms)
        self._generated_until_ms = now_ms

    def _now_advanced(self) -> int:
        now_ms = self.now_ms()
        self._advance(now_ms)
        return now_ms

    # -- clusters

    def _cluster(self, cluster_id: str):
        if cluster_id in self._clusters_by_id:
            return self._clusters_by_id[cluster_id]
        run = self._job_clusters.get(cluster_id)
        if run is not None and run.exec_start_ms <= self.now_ms():
            return JobCluster(run.job, run)
        raise legacy_does_not_exist(f"Cluster {cluster_id} does not exist")

    def list_clusters(self, states=None, sources=None, is_pinned=None, policy_id=None, page_size=None,
                      page_token=None) -> dict:
        """Long-lived clusters sorted by id, then job clusters newest first; cursor paging keeps pages stable."""
        with self._lock:
            now = self._now_advanced()
            size = 100 if not page_size or page_size <= 0 else min(page_size, 100)
            states = set(states or ())
            sources = set(sources or ())
            cursor = decode_page_token(page_token) if page_token else None
            page = []

            def wanted(obj) -> bool:
                if sources and obj.spec.source not in sources:
                    return False
                if is_pinned is not None and obj.spec.pinned != is_pinned:
                    return False
                if policy_id and obj.spec.policy_id != policy_id:
                    return False
                return not states or obj.state_at(now)[0] in states

            more = False
            if cursor is None or cursor.get("g") == 0:
                after = cursor["k"] if cursor else ""
                for cluster in sorted(self.clusters, key=lambda c: c.spec.cluster_id):
                    if cluster.spec.cluster_id <= after or not wanted(cluster):
                        continue
                    if len(page) == size:
                        more = True
                        break
                    page.append(cluster)
            if not more and (not sources or "JOB" in sources) and is_pinned is not True and not policy_id:
                runs = self._job_cluster_runs
                hi = len(runs)
                if cursor and cursor.get("g") == 1:
                    hi = bisect.bisect_left(runs, (cursor["t"], cursor["r"]), key=_run_key)
                # Only clusters terminated within 30 days are listed; non-terminated ones started recently.
                horizon = now - CLUSTER_RETENTION_MS - self._max_run_span_ms - HOUR_MS
                if states and "TERMINATED" not in states:
                    horizon = now - self._max_run_span_ms - HOUR_MS
                lo = bisect.bisect_left(runs, (horizon, 0), key=_run_key)
                for i in range(hi - 1, lo - 1, -1):
                    run = runs[i]
                    if run.exec_start_ms > now:
                        continue
                    cluster = JobCluster(run.job, run)
                    if cluster.terminated_ms < now - CLUSTER_RETENTION_MS or not wanted(cluster):
                        continue
                    if len(page) == size:
                        more = True
                        break
                    page.append(cluster)
            out = {"clusters": [c.to_json(now) for c in page]}
            if more:
                last = page[-1]
                if isinstance(last, JobCluster):
                    out["next_page_token"] = encode_page_token({"g": 1, "t": last.run.start_ms, "r": last.run.run_id})
                else:
                    out["next_page_token"] = encode_page_token({"g": 0, "k": last.spec.cluster_id})
            return out

    def get_cluster(self, cluster_id: str) -> dict:
        with self._lock:
            now = self._now_advanced()
            return self._cluster(cluster_id).to_json(now)

    def cluster_events(self, cluster_id: str, start_time=None, end_time=None, event_types=None, order=None,
                       page_size=None, offset=None) -> dict:
        """Events in [start_time, end_time]; next_page is the complete body of the following request."""
        if not cluster_id:
            raise invalid_parameter("Missing required field: cluster_id")
        order = (order or "DESC").upper()
        if order not in ("ASC", "DESC"):
            raise invalid_parameter(f"Invalid order: {order}")
        limit = 50 if not page_size else page_size
        if limit < 0 or limit > 500:
            raise invalid_parameter(f"page_size must be between 0 and 500, got {page_size}")
        offset = offset or 0
        if offset < 0:
            raise invalid_parameter("offset must not be negative")
        with self._lock:
            now = self._now_advanced()
            cluster = self._cluster(cluster_id)
            # Pin end_time so later pages stay aligned with the first even as new events arrive.
            end = now if end_time is None else min(int(end_time), now)
            start = 0 if start_time is None else int(start_time)
            events = cluster.events_between(start, end)
            if event_types:
                wanted = set(event_types)
                events = [e for e in events if e[1] in wanted]
            if order == "DESC":
                events = events[::-1]
            page = events[offset:offset + limit]
            out = {"events": [_event_json(cluster.spec.cluster_id, e) for e in page], "total_count": len(events)}
            if offset + len(page) < len(events):
                next_page = {"cluster_id": cluster_id, "start_time": start, "end_time": end, "order": order,
                             "offset": offset + len(page), "limit": limit}
                if event_types:
                    next_page["event_types"] = list(event_types)
                out["next_page"] = next_page
            return out

    # -- jobs

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

    def list_runs(self, active_only=False, completed_only=False, expand_tasks=False, job_id=None, limit=None,
                  offset=None, page_token=None, run_type=None, start_time_from=None, start_time_to=None) -> dict:
        """Runs newest first by (start_time, run_id); the page token is the key of the last run returned."""
        if active_only and completed_only:
            raise invalid_parameter("active_only and completed_only cannot both be true.")
        limit = 20 if limit is None else (25 if limit == 0 else limit)
        if not 1 <= limit <= 25:
            raise invalid_parameter(f"Invalid limit {limit}: the limit must be between 0 and 25.")
        if run_type is not None and run_type not in ("JOB_RUN", "WORKFLOW_RUN", "SUBMIT_RUN"):
            raise invalid_parameter(f"Invalid run_type: {run_type}")
        with self._lock:
            now = self._now_advanced()
            runs = self._job(job_id).runs if job_id is not None else self._runs
            top = now if start_time_to is None else min(now, start_time_to)
            hi = bisect.bisect_right(runs, (top, float("inf")), key=_run_key)
            if page_token:
                cursor = decode_page_token(page_token)
                hi = min(hi, bisect.bisect_left(runs, (cursor.get("t", 0), cursor.get("r", 0)), key=_run_key))
            floor = start_time_from or 0
            if active_only:
                # Nothing that started longer ago than the longest run can still be active.
                floor = max(floor, now - self._max_run_span_ms)
            lo = bisect.bisect_left(runs, (floor, 0), key=_run_key)
            picked: list[Run] = []
            skip = offset if (offset and not page_token) else 0
            if run_type in (None, "JOB_RUN"):
                for i in range(hi - 1, lo - 1, -1):
                    run = runs[i]
                    done = run.end_ms <= now
                    if (active_only and done) or (completed_only and not done):
                        continue
                    if not self.scenarios.apply("run_listed", run.start_ms, True, run, now):
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

    def get_run(self, run_id: int) -> dict:
        with self._lock:
            now = self._now_advanced()
            run = self._runs_by_id.get(run_id)
            if run is None or run.start_ms > now or not self.scenarios.apply("run_listed", run.start_ms, True, run,
                                                                             now):
                raise legacy_does_not_exist(f"Run {run_id} does not exist.")
            return run.job.run_json(run, now, include_tasks=True)

    # -- warehouses

    def list_warehouses(self, page_size=None, page_token=None) -> dict:
        with self._lock:
            now = self._now_advanced()
            ordered = sorted(self.warehouses, key=lambda w: w.id)
            start = 0
            if page_token:
                after = decode_page_token(page_token).get("w", "")
                start = next((i for i, w in enumerate(ordered) if w.id > after), len(ordered))
            size = page_size if page_size and page_size > 0 else len(ordered)
            chunk = ordered[start:start + size]
            out = {"warehouses": [w.to_json(now) for w in chunk]}
            if start + size < len(ordered):
                out["next_page_token"] = encode_page_token({"w": chunk[-1].id})
            return out

    def get_warehouse(self, warehouse_id: str) -> dict:
        with self._lock:
            now = self._now_advanced()
            warehouse = self._warehouses_by_id.get(warehouse_id)
            if warehouse is None:
                raise does_not_exist(f"Unable to find warehouse {warehouse_id}.")
            return warehouse.to_json(now)

    # -- ground truth for tests

    def truth(self, since: float | None = None) -> dict:
        """Runs that finished (terminal, end_time in [since, now]) by job and outcome label."""
        with self._lock:
            now = self._now_advanced()
            since_s = self.world_start_ms / 1000 if since is None else float(since)
            since_ms = since_s * 1000
            lo = bisect.bisect_left(self._runs, (int(since_ms) - self._max_run_span_ms - 1, 0), key=_run_key)
            by_job: dict[str, dict[str, int]] = {}
            total = 0
            for run in self._runs[lo:]:
                if run.start_ms > now:
                    break
                if since_ms <= run.end_ms <= now:
                    counts = by_job.setdefault(str(run.job.job_id), {})
                    counts[run.label] = counts.get(run.label, 0) + 1
                    total += 1
            return {"since": since_s, "now": now / 1000, "job_runs": {"total": total, "by_job": by_job},
                    **self.pipelines.truth(since_ms, now)}
