"""The collection engine: each collector of each workspace on its own thread and interval, with timeouts, status
metrics and readiness, so one that fails or hangs never stalls or hides the others."""

from __future__ import annotations

import logging
import math
import platform
import threading
import time
import uuid
from dataclasses import dataclass

from . import __version__
from . import metrics as m
from .collectors import COLLECTORS, Collector
from .config import Settings, WorkspaceSettings
from .sources.rest import RestSource
from .cardinality import CardinalityGuard
from .cycle import Cycle, label_values
from .store import MetricStore

log = logging.getLogger(__name__)

CONNECT_RETRY_MAX_SECONDS = 60
FORBIDDEN_WARNING_INTERVAL = 3600.0     # one warning per forbidden item per hour: it stays forbidden until granted


@dataclass
class CollectorStatus:
    workspace: str
    collector: str
    interval: float
    timeout: float
    up: bool = False
    cycles: int = 0
    finished_cycles: int = 0
    duration: float = 0.0
    last_success: float = 0.0
    last_error: str = ""
    running_since: float = 0.0   # 0 when no cycle is running
    counting_since: float | None = None
    series_dropped: int = 0

    def timed_out(self, now: float) -> bool:
        return bool(self.running_since) and now - self.running_since > self.timeout


class Workspace:
    """One watched workspace: its REST source and, once connected, its id and its SQL source. It is also where both
    sources report their requests (RequestLog), counted here into the store, which the sources never see."""

    def __init__(self, settings: WorkspaceSettings, store: MetricStore):
        self.settings = settings
        self.store = store
        self.rest: RestSource | None = None
        self.workspace_id: str | None = None
        self.connect_error = ""
        self._sql = None

    @property
    def label(self) -> str:
        """workspace_id for labels: the real id, or until it is known the configured one or the name."""
        return self.workspace_id or self.settings.workspace_id or self.settings.name

    def connect(self) -> None:
        source = RestSource.connect(self.settings)
        workspace_id = source.workspace_id(self.settings)
        source.report_to(self)
        self.rest, self.workspace_id, self.connect_error = source, workspace_id, ""
        self.store.set_gauges(f"workspace/{self.settings.name}", {m.WORKSPACE_INFO: {
            label_values(m.WORKSPACE_INFO, {"workspace_id": workspace_id, "workspace_name": self.settings.name,
                                            "host": source.host}): 1.0}})

    @property
    def sql(self):
        """The SQL source for system tables, created on first use (only SQL collectors need it)."""
        if self._sql is None:
            from .sources.sql import SqlSource
            self._sql = SqlSource(self.rest, self.settings, self)
        return self._sql

    def close(self, wait: float) -> None:
        """Close the SQL session, unless a statement still holds it after `wait` seconds."""
        if self._sql is not None:
            self._sql.close(wait)

    # -- RequestLog

    def api_request(self, endpoint: str, status_code: str) -> None:
        self.store.inc(m.API_REQUESTS, {"workspace_id": self.label, "endpoint": endpoint,
                                        "status_code": status_code})

    def sql_statement(self, collector: str, outcome: str, seconds: float | None) -> None:
        labels = {"workspace_id": self.label, "collector": collector}
        self.store.inc(m.SQL_QUERIES, {**labels, "outcome": outcome})
        if seconds is not None:
            self.store.observe(m.SQL_QUERY_DURATION, labels, seconds)
            if self._sql is not None and self._sql.dbu_per_hour:
                self.store.inc(m.SQL_ESTIMATED_DBUS, labels, seconds * self._sql.dbu_per_hour / 3600)


class Engine:
    def __init__(self, settings: Settings, store: MetricStore, clock=time.time):
        self.settings = settings
        self.store = store
        self.clock = clock
        self.workspaces = [Workspace(ws, store) for ws in settings.workspaces]
        self.enabled = [c for c in settings.collectors.values() if c.enabled]
        self.status: dict[tuple[str, str], CollectorStatus] = {
            (ws.settings.name, c.name): CollectorStatus(ws.settings.name, c.name, c.interval, c.timeout)
            for ws in self.workspaces for c in self.enabled}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._forbidden_warned: dict[tuple[str, str, str], float] = {}
        self._verified: set[str] = set()     # owners whose saved state a commit has since replaced
        store.set_gauges("build", {m.BUILD_INFO: {
            label_values(m.BUILD_INFO, {"version": __version__, "python_version": platform.python_version()}): 1}})

    # --- running -----------------------------------------------------------------------------------
    def start(self) -> None:
        for workspace in self.workspaces:
            self._spawn(self._run_workspace, workspace, name=f"workspace-{workspace.settings.name}")
        self._spawn(self._watchdog, name="watchdog")

    def stop(self, timeout: float = 3.0) -> None:
        """Stop the collectors within `timeout` altogether (a cycle still running is abandoned: its thread is a
        daemon, and its commit, if it comes, is whole), then close the SQL sessions while the server still answers."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        for workspace in self.workspaces:
            workspace.close(max(0.0, deadline - time.monotonic()) + 1.0)

    def _spawn(self, target, *args, name: str) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _run_workspace(self, workspace: Workspace) -> None:
        delay = 1.0
        while not self._stop.is_set():
            try:
                workspace.connect()
                log.info("connected to workspace", extra={"workspace": workspace.settings.name,
                                                          "workspace_id": workspace.workspace_id})
                break
            except Exception as exc:  # noqa: BLE001 - any failure to connect is retried, and shown
                workspace.connect_error = describe_error(exc)
                for status in self._statuses(workspace):
                    status.up, status.last_error = False, f"cannot connect: {workspace.connect_error}"
                    status.finished_cycles = max(status.finished_cycles, 1)
                self.publish_status()
                log.error("cannot connect to workspace: %s; retrying in %.0fs", workspace.connect_error, delay,
                          extra={"workspace": workspace.settings.name})
                self._stop.wait(delay)
                delay = min(delay * 2, CONNECT_RETRY_MAX_SECONDS)
        for settings in self.enabled:
            collector = COLLECTORS[settings.name](workspace, settings, self.settings.lookback, self.clock,
                                                    self.settings.retention)
            self._spawn(self._run_collector, workspace, collector,
                        name=f"{settings.name}-{workspace.settings.name}")

    def _run_collector(self, workspace: Workspace, collector: Collector) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.run_cycle(workspace, collector)
            self._stop.wait(max(0.0, collector.settings.interval - (time.monotonic() - started)))

    def _watchdog(self) -> None:
        """Marks a collector down as soon as its running cycle passes its timeout, not when it finally returns; and
        saves the exporter's own counts (API requests, SQL statements) every second, which publishes them."""
        while not self._stop.wait(1.0):
            self.store.flush()
            now = self.clock()
            if any(s.timed_out(now) and s.up for s in self.status.values()):
                self.publish_status()

    def run_cycle(self, workspace: Workspace, collector: Collector) -> bool:
        """One cycle of one collector: collect into a Cycle, then commit it with the new state, or nothing."""
        status = self.status[(workspace.settings.name, collector.name)]
        owner = f"{workspace.workspace_id}/{collector.name}"
        correlation_id = uuid.uuid4().hex[:12]
        context = {"workspace": workspace.settings.name, "workspace_id": workspace.workspace_id,
                   "collector": collector.name, "correlation_id": correlation_id}
        status.running_since = self.clock()
        status.cycles += 1
        started, cpu_started = time.monotonic(), time.thread_time()
        state = self.store.state(owner)
        if owner not in self._verified:
            problem = collector.state_problem(state)
            if problem:
                log.warning("the saved state of this collector is unusable (%s); it alone starts afresh", problem,
                            extra=context)
                state = {}
        cycle = Cycle(workspace.workspace_id)
        try:
            collector.collect(cycle, state)
            folded = self.store.commit(owner, cycle, state, self._guard(workspace, collector))
            collector.committed(state)
            self._verified.add(owner)
            ok, error = True, ""
            if folded and folded != status.series_dropped:
                log.warning("series ceiling reached: %d series folded into their \"_other\" aggregate; raise "
                            "cardinality.max_series_per_collector or narrow the include/exclude filters", folded,
                            extra=context)
            status.series_dropped = folded
            if cycle.malformed:
                self.store.inc(m.MALFORMED_ITEMS, {"workspace_id": workspace.workspace_id,
                                                   "collector": collector.name}, cycle.malformed)
                log.warning("skipped %d malformed items; the first: %s", cycle.malformed, cycle.first_malformed,
                            extra=context)
            if cycle.forbidden_items:
                self._report_forbidden(workspace, collector, cycle.forbidden_items, context)
            if cycle.failures:
                ok, error = False, "; ".join(cycle.failures)[:300]
        except Exception as exc:  # noqa: BLE001 - a failed cycle is reported, never fatal
            ok, error = False, describe_error(exc)
        duration, cpu = time.monotonic() - started, time.thread_time() - cpu_started
        with self._lock:
            status.running_since = 0.0
            status.finished_cycles += 1
            status.duration, status.up, status.last_error = duration, ok, error
            if ok:
                status.last_success = self.clock()
                status.counting_since = state.get("counting_since")
        if ok:
            log.info("collection cycle finished", extra={
                **context, "duration_seconds": round(duration, 3), "cpu_seconds": round(cpu, 3), "series": sum(len(v) for v in cycle.gauges.values()),
                "increments": len(cycle.increments), "observations": len(cycle.observations)})
        else:
            log.warning("collection cycle failed: %s", error, extra={**context, "duration_seconds": round(duration, 3)})
        self.publish_status()
        return ok

    def _report_forbidden(self, workspace: Workspace, collector: Collector, items: dict[str, str],
                          context: dict) -> None:
        """Count the items a 403 made the cycle skip, and warn about each at most once an hour."""
        self.store.inc(m.FORBIDDEN_ITEMS, {"workspace_id": workspace.workspace_id, "collector": collector.name},
                       len(items))
        now = self.clock()
        for item, permission in items.items():
            key = (workspace.workspace_id, collector.name, item)
            if now - self._forbidden_warned.get(key, -math.inf) >= FORBIDDEN_WARNING_INTERVAL:
                self._forbidden_warned[key] = now
                log.warning("skipped %s: the credential may list it but not read it (403); grant %s", item,
                            permission, extra=context)

    def _guard(self, workspace: Workspace, collector: Collector) -> CardinalityGuard | None:
        limits = [self.settings.max_series_per_collector]
        if self.settings.max_series_per_workspace:
            others = self.store.series_count(workspace.workspace_id, exclude_collector=collector.name)
            limits.append(max(self.settings.max_series_per_workspace - others, 1))
        limits = [limit for limit in limits if limit]
        return CardinalityGuard(min(limits)) if limits else None

    def run_once(self) -> list[str]:
        """Connect and run every enabled collector of every workspace once, concurrently per workspace.
        Returns the failures, as 'workspace/collector: reason'."""
        failures: list[str] = []

        def one_workspace(workspace: Workspace) -> None:
            try:
                workspace.connect()
            except Exception as exc:  # noqa: BLE001
                failures.append(f"{workspace.settings.name}: cannot connect: {describe_error(exc)}")
                return
            for settings in self.enabled:
                collector = COLLECTORS[settings.name](workspace, settings, self.settings.lookback, self.clock,
                                                    self.settings.retention)
                if not self.run_cycle(workspace, collector):
                    status = self.status[(workspace.settings.name, settings.name)]
                    failures.append(f"{workspace.settings.name}/{settings.name}: {status.last_error}")

        threads = [threading.Thread(target=one_workspace, args=(ws,)) for ws in self.workspaces]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return failures

    # --- reporting ---------------------------------------------------------------------------------
    def _statuses(self, workspace: Workspace) -> list[CollectorStatus]:
        return [s for (ws, _), s in self.status.items() if ws == workspace.settings.name]

    def ready(self) -> bool:
        return all(s.finished_cycles > 0 for s in self.status.values())

    def publish_status(self) -> None:
        now = self.clock()
        gauges: dict[m.Metric, dict] = {m.COLLECTOR_UP: {}, m.COLLECTOR_DURATION: {}, m.COLLECTOR_LAST_SUCCESS: {},
                                        m.COUNTING_SINCE: {}, m.SERIES_DROPPED: {}}
        with self._lock:
            for workspace in self.workspaces:
                for status in self._statuses(workspace):
                    if not status.finished_cycles:
                        continue
                    labels = label_values(m.COLLECTOR_UP, {"workspace_id": workspace.label,
                                                           "collector": status.collector})
                    gauges[m.COLLECTOR_UP][labels] = float(status.up and not status.timed_out(now))
                    gauges[m.COLLECTOR_DURATION][labels] = status.duration
                    gauges[m.SERIES_DROPPED][labels] = status.series_dropped
                    if status.last_success:
                        gauges[m.COLLECTOR_LAST_SUCCESS][labels] = status.last_success
                    if status.counting_since:
                        gauges[m.COUNTING_SINCE][labels] = status.counting_since
        self.store.set_gauges("status", gauges)


def describe_error(exc: BaseException) -> str:
    """A one-line reason for a log or the landing page: the error's class and message, never request headers."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    name = type(exc).__name__
    return f"{name}: {message}"[:300] if message else name
