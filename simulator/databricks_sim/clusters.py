"""Simulated clusters: long-lived all-purpose, pipeline and SQL clusters that live in sessions, the ephemeral JOB
clusters a job run launches, and the clusters list/get/events API over both."""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass, field

from .common import (
    DAY_MS, HOUR_MS, MINUTE_MS, SECOND_MS, SERVICE_PRINCIPAL, TEAMS, USERS, decode_page_token, digest,
    encode_page_token, invalid_parameter, legacy_does_not_exist, make_cluster_id, permission_denied, stable_hex,
    stable_int,
)

CLUSTER_RETENTION_MS = 30 * DAY_MS
# name -> (cores, memory MB) per node.
NODE_TYPES = {
    "i3.xlarge": (4, 31_232), "i3.2xlarge": (8, 62_464), "m5d.xlarge": (4, 16_384),
    "m5d.2xlarge": (8, 32_768), "r5d.2xlarge": (8, 65_536), "c5d.4xlarge": (16, 32_768),
}
SPARK_VERSIONS = ["15.4.x-scala2.12", "14.3.x-scala2.12", "16.4.x-scala2.12", "13.3.x-scala2.12",
                  "15.4.x-cpu-ml-scala2.12"]

# Cluster sources of the long-lived (non-job) clusters, cycled so every source appears once n_clusters >= 4.
LONG_LIVED_SOURCES = ["UI", "API", "PIPELINE", "SQL", "UI", "API", "UI", "PIPELINE", "UI", "API"]


def spark_node(cluster_id: str, session_start: int, k: int, started_ms: int) -> dict:
    """A SparkNode (driver or executor) with stable ids derived from its cluster, session and slot."""
    h = digest(cluster_id, session_start, k, size=8)
    ip = f"10.{h[0]}.{h[1]}.{h[2] or 1}"
    return {
        "node_id": stable_hex(cluster_id, session_start, k, "node", n=32),
        "instance_id": "i-0" + h.hex()[:16],
        "private_ip": ip,
        "host_private_ip": ip,
        "public_dns": "",
        "start_timestamp": started_ms,
    }


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
            out["driver"] = spark_node(spec.cluster_id, session.start_ms, 0, started)
            out["executors"] = [spark_node(spec.cluster_id, session.start_ms, k + 1, started) for k in range(workers)]
            out["spark_context_id"] = stable_int(spec.cluster_id, session.start_ms, "ctx", bound=10**18)
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
            name = f"dlt-execution-{stable_hex(ws.seed, 'dlt', index, n=8)}"
            creator = rng.choice(USERS)
            autotermination = 0
        else:
            name = f"sql-endpoint-cluster-{stable_hex(ws.seed, 'sql', index, n=8)}"
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
            policy_id=stable_hex(ws.seed, "policy", team, n=16).upper() if source in ("UI", "API") else None,
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



def _run_key(run) -> tuple[int, int]:
    return (run.start_ms, run.run_id)


class ClusterSet:
    """The workspace's long-lived clusters, the index of job clusters its runs launched, and the clusters API.

    Reads take `now`: the caller (the workspace) holds the lock and has generated the world up to it.
    """

    def __init__(self, ws, n_clusters: int):
        self.clusters = [LongLivedCluster(ws, i, LONG_LIVED_SOURCES[i % len(LONG_LIVED_SOURCES)])
                         for i in range(n_clusters)]
        self._by_id = {c.spec.cluster_id: c for c in self.clusters}
        self._shared = [c.spec.cluster_id for c in self.clusters if c.always_on]
        # Runs that launched a job cluster, in (start_time, run_id) order, and the longest of them.
        self.job_cluster_runs: list = []
        self._job_clusters: dict = {}
        self._max_run_span_ms = 0
        # Permission gaps: one all-purpose cluster the caller may list but whose events it may not read.
        shared = sorted(c.spec.cluster_id for c in self.clusters if c.spec.source in ("UI", "API"))
        self.forbidden_cluster_id = (random.Random(f"{ws.seed}:forbidden-cluster").choice(shared)
                                     if shared and ws.permission_gaps else None)

    def pick_shared(self, rng: random.Random) -> str | None:
        return rng.choice(self._shared) if self._shared else None

    def add_job_run(self, run) -> None:
        """A run that launches a JOB cluster was generated (runs arrive in start order)."""
        self.job_cluster_runs.append(run)
        self._job_clusters[run.cluster_id] = run
        self._max_run_span_ms = max(self._max_run_span_ms, run.end_ms - run.start_ms)

    def extend(self, now_ms: int) -> None:
        for cluster in self.clusters:
            cluster.extend(now_ms)

    def find(self, cluster_id: str, now: int):
        if cluster_id in self._by_id:
            return self._by_id[cluster_id]
        run = self._job_clusters.get(cluster_id)
        if run is not None and run.exec_start_ms <= now:
            return JobCluster(run.job, run)
        raise legacy_does_not_exist(f"Cluster {cluster_id} does not exist")

    def list(self, now: int, states=None, sources=None, is_pinned=None, policy_id=None, page_size=None,
             page_token=None) -> dict:
        """Long-lived clusters sorted by id, then job clusters newest first; cursor paging keeps pages stable."""
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
            runs = self.job_cluster_runs
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

    def events(self, now: int, cluster_id: str, start_time=None, end_time=None, event_types=None, order=None,
               page_size=None, offset=None) -> dict:
        """Events in [start_time, end_time]; next_page is the complete body of the following request."""
        if not cluster_id:
            raise invalid_parameter("Missing required field: cluster_id")
        if cluster_id == self.forbidden_cluster_id:
            raise permission_denied(f"User does not have Can Attach To permission on cluster {cluster_id}, which "
                                    "reading its events requires.", "clusters")
        order = (order or "DESC").upper()
        if order not in ("ASC", "DESC"):
            raise invalid_parameter(f"Invalid order: {order}")
        limit = 50 if not page_size else page_size
        if limit < 0 or limit > 500:
            raise invalid_parameter(f"page_size must be between 0 and 500, got {page_size}")
        offset = offset or 0
        if offset < 0:
            raise invalid_parameter("offset must not be negative")
        cluster = self.find(cluster_id, now)
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
