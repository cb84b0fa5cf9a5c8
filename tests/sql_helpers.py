"""Helpers for the tests of SQL on the simulated workspace: a simulator with its HTTPS SQL listener on a clock the test
controls, connector connections, and the exporter's SQL collectors run in-process against it."""

from __future__ import annotations

import threading
from contextlib import contextmanager

import pytest
from databricks import sql as dbsql
from databricks.sdk import WorkspaceClient

from databricks_exporter.collectors import COLLECTORS
from databricks_exporter.config import CollectorSettings, WorkspaceSettings
from databricks_exporter.engine import Workspace
from databricks_sim import SimulatedWorkspace, SimulatorServer
from databricks_exporter.cycle import Cycle
from databricks_exporter.store import MetricStore

# A fixed simulated "now" for deterministic tests: 2026-09-21 14:13:20 UTC.
T0 = 1_790_000_000.0


class FakeClock:
    def __init__(self, t: float = T0):
        self.t = t
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.t

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.t += seconds


def sql_server(clock=None, seed: int = 7, start: float | None = T0, **kwargs) -> SimulatorServer:
    """A started simulator with the SQL listener; on `clock` (a FakeClock) when given."""
    workspace_kwargs = {k: kwargs.pop(k) for k in ("history_seconds", "n_jobs", "n_clusters", "n_warehouses", "permission_gaps")
                        if k in kwargs}
    if clock is not None:
        workspace = SimulatedWorkspace(seed=seed, start=start, clock=clock, **workspace_kwargs)
    else:
        workspace = SimulatedWorkspace(seed=seed, **workspace_kwargs)
    return SimulatorServer(port=0, workspace=workspace, sql_port=0, **kwargs).start()


def warehouse_in(server: SimulatorServer, state: str, serverless: bool | None = None):
    now = server.workspace.now_ms()
    for warehouse in server.workspace.warehouses:
        if warehouse.state_at(now)[1] == state and (serverless is None or warehouse.serverless == serverless):
            return warehouse
    raise AssertionError(f"no {state} warehouse in the simulated workspace")


def sdk(server: SimulatorServer) -> WorkspaceClient:
    return WorkspaceClient(host=server.url, token=server.token)


def connect(server: SimulatorServer, warehouse_id: str, **kwargs):
    """databricks-sql-connector, unmodified, as a user would point it at a workspace (PAT by default)."""
    options = dict(server_hostname=server.sql_hostname, _port=server.sql_port,
                   http_path=f"/sql/1.0/warehouses/{warehouse_id}", access_token=server.token,
                   _tls_trusted_ca_file=server.tls_ca_file, enable_telemetry=False, use_cloud_fetch=False)
    options.update(kwargs)
    return dbsql.connect(**options)


def workspace_settings(server: SimulatorServer, warehouse_id: str | None, **auth) -> WorkspaceSettings:
    return WorkspaceSettings(name="sim", auth={"host": server.url, **(auth or {"token": server.token})},
                             warehouse_id=warehouse_id, tls_ca_bundle=server.tls_ca_file)


def connected(server: SimulatorServer, warehouse_id: str | None, store: MetricStore | None = None,
              **auth) -> Workspace:
    workspace = Workspace(workspace_settings(server, warehouse_id, **auth), store or MetricStore())
    workspace.connect()
    return workspace


def collector(name: str, workspace: Workspace, clock, lookback: float = 3600.0, **options):
    spec = COLLECTORS[name]
    merged = {key: default for key, (_, default) in spec.options.items()}
    merged.update(options)
    settings = CollectorSettings(name=name, enabled=True, interval=spec.default_interval,
                                 timeout=spec.default_interval, options=merged)
    return spec(workspace, settings, lookback, clock)


def run_cycle(instance, store: MetricStore) -> Cycle:
    """One cycle committed to the store, as the engine does it."""
    owner = f"{instance.workspace.workspace_id}/{instance.name}"
    state = store.state(owner)
    cycle = Cycle(instance.workspace.workspace_id)
    instance.collect(cycle, state)
    store.commit(owner, cycle, state)
    return cycle


def samples(store: MetricStore, name: str) -> list[tuple[dict, object]]:
    """(labels, value) of every series of the metric."""
    for family in store.families():
        if family.metric.name == name:
            return [(dict(zip(family.metric.labels, values)), value) for values, value in family.samples]
    return []


def by(store: MetricStore, name: str, label: str | None = None, **match) -> dict[str, float]:
    """The metric's values summed by one label (all under "" without one), over the series whose labels match."""
    out: dict[str, float] = {}
    for labels, value in samples(store, name):
        if all(labels.get(k) == v for k, v in match.items()):
            key = labels[label] if label else ""
            out[key] = out.get(key, 0.0) + value
    return out


@contextmanager
def ticking(clock: FakeClock, step: float = 1.0, every: float = 0.02):
    """Simulated time runs fast in the background (for a warehouse to start while a client waits)."""
    stop = threading.Event()

    def tick():
        while not stop.wait(every):
            clock.advance(step)

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


# Module-scoped fixtures shared by the SQL test modules (import them by name: `from sql_helpers import clock, server`).
@pytest.fixture(scope="module")
def clock():
    return FakeClock()


@pytest.fixture(scope="module")
def server(clock):
    server = sql_server(clock)
    yield server
    server.shutdown()


def only(collector_name: str, server: SimulatorServer, warehouse_id: str, **options) -> dict:
    """An exporter configuration running one collector every 2 seconds (the others off) on the simulator's SQL
    warehouse, for `exporter_factory`."""
    collectors = {name: {"enabled": False} for name in COLLECTORS}
    collectors[collector_name] = {"interval": "2s", **options}
    return {"collectors": collectors,
            "workspaces": [{"name": "sim", "host": server.url, "token": server.token, "warehouse_id": warehouse_id,
                            "tls_ca_bundle": server.tls_ca_file}]}
