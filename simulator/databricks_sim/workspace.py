"""The simulated workspace as one object: the simulated clock, the lock, the truth ledger and the domains composed.

The world is a pure function of (seed, start, simulated time). Every entity draws from its own random stream,
consumed strictly in its own time order, so the answer to any query does not depend on which queries came
before it or how often the clock was sampled. History is generated incrementally: each request first advances
the world to "now" (cheap when little time has passed) and then reads sorted indexes, so the cost of a request is
proportional to what it returns rather than to the size of the workspace.

The domains (clusters.py, jobs.py, warehouses.py, pipelines.py) return plain JSON-ready dicts shaped like the real
REST API (see /work/shared/reference/databricks-api.md); server.py only does HTTP.
"""

from __future__ import annotations

import threading
import time

from .clusters import ClusterSet
from .common import DAY_MS, stable_hex
from .jobs import RUN_ID_EPOCH_S, JobSet
from .pipelines import PipelineSet
from .scenarios import ScenarioSet
from .truth import Ledger
from .warehouses import WarehouseSet


class SimulatedWorkspace:
    """The whole simulated workspace: entities, the simulated clock, and the REST-shaped queries over them.

    start is the simulated epoch time at construction (default: clock() then) and history_seconds of activity
    before it are backfilled; afterwards simulated time follows clock() (inject a fake one in tests) minus any
    time spent paused, so time never jumps when the world resumes.
    """

    def __init__(self, seed: int = 1, start: float | None = None, history_seconds: float = 86_400,
                 clock=time.time, n_clusters: int = 24, n_jobs: int = 60, n_warehouses: int = 6,
                 n_pipelines: int = 10, query_rate: float = 1.0,
                 workspace_id: int = 1234567890123456, permission_gaps: bool = False):
        """permission_gaps: one job's runs/get, one pipeline's events and one cluster's events answer 403, as for a
        credential that may list them but not read them (/simulator/truth names them under `forbidden`). The served
        simulator (server.run) plays them; in-process workspaces opt in, so tests of other domains keep every
        object readable."""
        self.seed = seed
        self.permission_gaps = permission_gaps
        self.workspace_id = workspace_id
        self.query_rate = query_rate        # scales every warehouse's query arrivals (queries.py)
        self.account_id = "{}-{}-{}-{}-{}".format(*(stable_hex(seed, "account", i, n=n) for i, n in
                                                    enumerate((8, 4, 4, 4, 12))))
        self.base_url = "http://127.0.0.1"
        self.host_name = "127.0.0.1"
        self._clock = clock
        self._origin_wall = clock()
        self.start_s = self._origin_wall if start is None else float(start)
        self._paused_at: float | None = None
        self._paused_total = 0.0
        self.lock = threading.RLock()
        self.world_start_ms = int((self.start_s - history_seconds) * 1000)
        if self.world_start_ms < (RUN_ID_EPOCH_S + DAY_MS // 1000) * 1000:
            raise ValueError("start - history_seconds must be after 2020-01-02")

        self.ledger = Ledger()
        self.scenarios = ScenarioSet(self)
        self.cluster_set = ClusterSet(self, n_clusters)
        self.job_set = JobSet(self, self.cluster_set, n_jobs)
        self.warehouse_set = WarehouseSet(self, n_warehouses)
        # Pipelines generate lazily when their API (or the truth) is used: see pipelines.py.
        self.pipelines = PipelineSet(self, n_pipelines)
        self.clusters = self.cluster_set.clusters
        self.jobs = self.job_set.jobs
        self.warehouses = self.warehouse_set.warehouses
        self._generated_until_ms = self.world_start_ms - 1
        with self.lock:
            self.advance(self.now_ms())

    # -- clock

    def now(self) -> float:
        """Simulated epoch seconds: wall-clock driven, minus any time spent paused."""
        with self.lock:
            wall = self._paused_at if self._paused_at is not None else self._clock()
            return self.start_s + (wall - self._origin_wall) - self._paused_total

    def now_ms(self) -> int:
        return int(self.now() * 1000)

    def pause(self) -> float:
        with self.lock:
            if self._paused_at is None:
                self._paused_at = self._clock()
            return self.now()

    def resume(self) -> float:
        with self.lock:
            if self._paused_at is not None:
                self._paused_total += self._clock() - self._paused_at
                self._paused_at = None
            return self.now()

    @property
    def paused(self) -> bool:
        return self._paused_at is not None

    # -- incremental generation

    def advance(self, now_ms: int) -> None:
        """Generate everything that has started by now_ms. Caller holds the lock."""
        if now_ms <= self._generated_until_ms:
            return
        self.job_set.advance(now_ms)
        self.cluster_set.extend(now_ms)
        self.warehouse_set.extend(now_ms)
        self._generated_until_ms = now_ms

    def now_advanced(self) -> int:
        """The simulated now, with the world generated up to it. Caller holds the lock."""
        now_ms = self.now_ms()
        self.advance(now_ms)
        return now_ms

    # -- the REST API of each domain, at the simulated now

    def list_clusters(self, **filters) -> dict:
        with self.lock:
            return self.cluster_set.list(self.now_advanced(), **filters)

    def get_cluster(self, cluster_id: str) -> dict:
        with self.lock:
            now = self.now_advanced()
            return self.cluster_set.find(cluster_id, now).to_json(now)

    def cluster_events(self, cluster_id: str, **query) -> dict:
        with self.lock:
            return self.cluster_set.events(self.now_advanced(), cluster_id, **query)

    def list_jobs(self, **query) -> dict:
        return self.job_set.list_jobs(**query)

    def get_job(self, job_id: int) -> dict:
        return self.job_set.get_job(job_id)

    def list_runs(self, **query) -> dict:
        with self.lock:
            return self.job_set.list_runs(self.now_advanced(), **query)

    def get_run(self, run_id: int, principal: str = "sim-admin@example.com") -> dict:
        with self.lock:
            return self.job_set.get_run(self.now_advanced(), run_id, principal)

    def repair_run(self, run_id: int, **body) -> dict:
        with self.lock:
            return self.job_set.repair_run(self.now_advanced(), run_id, **body)

    def submit_run(self, run_name: str | None) -> dict:
        with self.lock:
            return self.job_set.submit(self.now_advanced(), run_name)

    def list_warehouses(self, **query) -> dict:
        with self.lock:
            return self.warehouse_set.list(self.now_advanced(), **query)

    def get_warehouse(self, warehouse_id: str) -> dict:
        with self.lock:
            return self.warehouse_set.get(self.now_advanced(), warehouse_id)

    # -- ground truth for tests

    def truth(self, since: float | None = None) -> dict:
        """What the ledger holds for [since, now]: job runs that ended and pipeline updates and flow progress.
        The SQL service adds queries and billing (see server.py)."""
        with self.lock:
            now = self.now_advanced()
            for pipeline in self.pipelines.pipelines:
                pipeline.extend(now)    # pipelines generate lazily; their ledger entries exist once generated
            since_s = self.world_start_ms / 1000 if since is None else float(since)
            since_ms = since_s * 1000
            return {"since": since_s, "now": now / 1000, "job_runs": self.ledger.job_runs(since_ms, now),
                    "job_run_repairs": self.ledger.job_repairs(since_ms, now),
                    "job_run_retries": self.ledger.job_retries(since_ms, now),
                    "forbidden": self.forbidden(), **self.ledger.pipelines(since_ms, now)}

    def forbidden(self) -> dict:
        """The objects whose details answer 403 (see permission_gaps)."""
        return {"job_ids": [str(self.job_set.forbidden_job_id)] if self.job_set.forbidden_job_id else [],
                "pipeline_ids": [self.pipelines.forbidden_pipeline_id] if self.pipelines.forbidden_pipeline_id
                else [],
                "cluster_ids": [self.cluster_set.forbidden_cluster_id] if self.cluster_set.forbidden_cluster_id
                else []}
