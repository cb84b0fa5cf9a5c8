"""Pipelines (Lakeflow Declarative Pipelines, DLT): state and health from the list, and from each pipeline's event
log, read incrementally and counted exactly once, its updates, rows, backlog, dropped records and expectations.

What is counted, and when (the simulated workspace counts the same things in its own ledger, as it makes them happen):
- An update counts once, when its terminal update_progress event (COMPLETED, FAILED, CANCELED) appears, at that
  event's timestamp, labelled with the update's cause (from its create_update event, else the updates API).
- flow_progress metrics and data_quality report one batch each (the event log is a stream of per-batch deltas, as
  the DLT guide's queries that SUM them assume), so each event's numbers are added once. Backlog numbers are levels:
  the newest one is the flow's backlog now.
- Events are read in timestamp order from a watermark, with the ids at and after it remembered (Cursor), so overlap
  between reads never double counts; events before counting_since only refresh gauges and remembered causes.

The events API filters on timestamp, id, update_id and level only (an event_type filter is rejected): event types
are therefore picked out here (the REST source reads the pages).
"""

from __future__ import annotations

import calendar
import itertools
import logging
import math
import time
from datetime import datetime, timezone

from .. import metrics as m
from ..cycle import OTHER, Cycle
from ..sources.errors import NotFound
from .base import (
    Collector, Cursor, NameFilter, enum_name, forbidden_among, register, skipped_if_forbidden, with_forbidden,
)

log = logging.getLogger(__name__)

TERMINAL_UPDATE_STATES = ("COMPLETED", "FAILED", "CANCELED")
# Pipeline states in which nothing runs: once their events have been read, they are not read again until the
# pipeline's state or latest update changes.
QUIET_PIPELINE_STATES = ("IDLE", "FAILED", "DELETED")
CHECK_PROBES = 100              # `check` reads the event log of at most this many pipelines
EVENTS_PAGE_SIZE = 250          # the events API allows up to 1000
UPDATES_PAGE_SIZE = 25          # the updates API's default page: the 25 most recent updates
BACKLOG_KEYS = (("bytes", m.PIPELINE_FLOW_BACKLOG_BYTES), ("records", m.PIPELINE_FLOW_BACKLOG_RECORDS),
                ("files", m.PIPELINE_FLOW_BACKLOG_FILES), ("seconds", m.PIPELINE_FLOW_BACKLOG_SECONDS))
# Remembered per pipeline: updates whose create_update was seen but not their end, and flows that stopped reporting
# a backlog, for a week (continuous updates run for days); updates already counted, a guard against a terminal event
# repeated under another id, for six hours behind the watermark (the state file is rewritten every cycle).
MEMORY_MS = 7 * 86_400_000
COUNTED_MEMORY_MS = 6 * 3_600_000
PER_PIPELINE_COUNTERS = (m.PIPELINE_UPDATES, m.PIPELINE_UPDATE_DURATION, m.PIPELINE_FLOW_OUTPUT_ROWS,
                         m.PIPELINE_FLOW_FAILURES, m.PIPELINE_DROPPED_RECORDS, m.PIPELINE_EXPECTATION_RECORDS,
                         m.PIPELINE_EVENTS)


def number(value) -> float | None:
    """A number from the event log, which may spell it as a JSON number or a string; None when absent or not one."""
    if value is None or isinstance(value, bool):
        return None
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None


def event_time_ms(value) -> int | None:
    """An event's timestamp ('2024-05-01T12:00:00.123Z', or epoch milliseconds) as epoch milliseconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value) if math.isfinite(value) else None
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    parsed = parsed.astimezone(timezone.utc)
    return calendar.timegm(parsed.timetuple()) * 1000 + parsed.microsecond // 1000


def latest_update(status: dict) -> dict:
    """The newest of a pipeline's latest_updates (by creation_time), or {}."""
    updates = status.get("latest_updates")
    updates = [u for u in updates if isinstance(u, dict)] if isinstance(updates, list) else []
    if not updates:
        return {}
    return max(updates, key=lambda u: str(u.get("creation_time") or ""))


@register
class PipelinesCollector(Collector):
    name = "pipelines"
    default_interval = 60.0
    counts_work = True
    permission = "CAN VIEW on the pipelines to watch (workspace admins see all pipelines)"
    options = {
        "include": ("regex_list", []),
        "exclude": ("regex_list", []),
        # Events up to this long before the newest one read are asked for again next cycle, in case the event
        # log makes an event visible a little after later ones. Remembered ids make the overlap harmless.
        "event_margin": ("duration", 10.0),
        # A pipeline's spec (continuous, serverless) is read with pipelines/get when first met, then this often.
        "spec_refresh": ("duration", 900.0),
        # At most this many pages of events per pipeline and cycle; the rest is read next cycle.
        "max_event_pages": ("int", 20),
    }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.wanted = NameFilter(self.settings.options.get("include"), self.settings.options.get("exclude"))
        self._specs: dict[str, tuple[float, dict]] = {}   # pipeline_id -> (monotonic fetch time, spec facts)
        self._update_page: dict | None = None             # one page of the updates list, per pipeline read

    def check(self) -> str:
        pipelines = list(itertools.islice(self.rest.pipelines(), CHECK_PROBES))
        since_ms = (self.clock() - 3600) * 1000
        forbidden = forbidden_among(
            (f"event log of pipeline {p['pipeline_id']}",
             lambda p=p: next(iter(self.rest.pipeline_events(str(p["pipeline_id"]), since_ms, 1)), None))
            for p in pipelines)
        return with_forbidden(f"listed {len(pipelines)} pipelines and read their event logs", forbidden,
                              "CAN VIEW on the pipeline")

    # --- the cycle -------------------------------------------------------------------------------------

    def collect(self, cycle: Cycle, state: dict) -> None:
        since_ms = self.counting_since(state) * 1000
        entries: dict[str, dict] = state.setdefault("pipelines", {})
        statuses = {}
        for status in self.rest.pipelines():
            with cycle.item("pipeline"):
                if self.wanted(status.get("name")):
                    statuses[str(status["pipeline_id"])] = status

        for pipeline_id, status in statuses.items():
            entry = entries.setdefault(pipeline_id, {})
            spec = self._spec(pipeline_id)
            if spec is None:
                continue   # deleted between the list and the get
            activity = None
            with cycle.item("pipeline"):
                activity = self._activity(status)
            if activity is None:
                continue
            # Events are handled one by one (a malformed one is skipped alone); the gauges come after, so a
            # malformed status can never take back what the events counted.
            self._read_events_if_needed(cycle, pipeline_id, activity, entry, since_ms)
            with cycle.item("pipeline"):
                self._emit_pipeline(cycle, pipeline_id, status, spec, entry)

        for pipeline_id in [p for p in entries if p not in statuses]:
            del entries[pipeline_id]
        for pipeline_id in [p for p in self._specs if p not in statuses]:
            del self._specs[pipeline_id]
        # Counters of deleted pipelines go; the cardinality guard's "_other" aggregate stays.
        for metric in PER_PIPELINE_COUNTERS:
            cycle.keep_only(metric, lambda labels: labels["pipeline_id"] in statuses or labels["pipeline_id"] == OTHER)

    def _spec(self, pipeline_id: str) -> dict | None:
        fetched = self._specs.get(pipeline_id)
        if fetched and time.monotonic() - fetched[0] < self.settings.options["spec_refresh"]:
            return fetched[1]
        try:
            spec = self.rest.pipeline(pipeline_id).get("spec") or {}
        except NotFound:
            return None
        facts = {key: str(bool(spec.get(key))).lower() for key in ("continuous", "serverless", "development")}
        self._specs[pipeline_id] = (time.monotonic(), facts)
        return facts

    @staticmethod
    def _activity(status: dict) -> tuple[str, bool, str]:
        """What the list says about a pipeline's activity: a fingerprint of its state and newest update, whether
        it is quiet (nothing runs: IDLE, FAILED, and the newest update has ended), and that update's id."""
        newest = latest_update(status)
        pipeline_state = str(enum_name(status.get("state")) or "UNKNOWN")
        update_state = str(enum_name(newest.get("state")) or "")
        update_id = str(newest.get("update_id") or "")
        quiet = pipeline_state in QUIET_PIPELINE_STATES and (not newest or update_state in TERMINAL_UPDATE_STATES)
        return f"{pipeline_state}|{update_id}|{update_state}", quiet, update_id

    def _read_events_if_needed(self, cycle: Cycle, pipeline_id: str, activity: tuple[str, bool, str], entry: dict,
                               since_ms: float) -> None:
        """Read the pipeline's new events, unless it has been quiet since the last complete read.

        A quiet pipeline's event log is read to the end once more after its newest update's terminal event was
        seen (or twice in a row with the same fingerprint, when that end came before the window), and then not
        again while its state and newest update stay the same: a new update, or any state change, shows up in the
        list first."""
        fingerprint, quiet, update_id = activity
        if entry.get("settled") == fingerprint:
            return
        complete = self._read_events(cycle, pipeline_id, entry, since_ms)
        if complete and quiet and (not update_id or entry.get("last_terminal") == update_id
                                   or entry.get("last_read") == fingerprint):
            entry["settled"] = fingerprint
        entry["last_read"] = fingerprint

    def _read_events(self, cycle: Cycle, pipeline_id: str, entry: dict, since_ms: float) -> bool:
        """Events from the watermark on, oldest first. Returns whether the end of the log was reached."""
        margin_ms = self.settings.options["event_margin"] * 1000
        cursor = Cursor(entry.setdefault("cursor", {}), since_ms - margin_ms)
        self._update_page = None
        # An event stamped beyond tomorrow is malformed: believing it would move the watermark past every real one.
        latest_plausible = self.clock() * 1000 + 86_400_000
        try:
            with skipped_if_forbidden(cycle, f"event log of pipeline {pipeline_id}", "CAN VIEW on the pipeline") \
                    as skip:
                complete, newest = self._read_event_pages(cycle, pipeline_id, entry, cursor, since_ms,
                                                          latest_plausible)
        except NotFound:
            return False   # the pipeline was deleted meanwhile; the next list drops it
        if skip.skipped:
            return False
        cursor.advance(newest - margin_ms)
        self._forget_old(entry, cursor.watermark)
        return complete

    def _read_event_pages(self, cycle: Cycle, pipeline_id: str, entry: dict, cursor: Cursor, since_ms: float,
                          latest_plausible: float) -> tuple[bool, float]:
        """(whether the end of the log was reached, the newest event time read)."""
        newest, complete = cursor.watermark, False
        pages = self.rest.pipeline_events(pipeline_id, cursor.watermark, EVENTS_PAGE_SIZE)
        for number, (events, last) in enumerate(pages, start=1):
            for event in events:
                with cycle.item("pipeline event"):
                    ts, event_id = event_time_ms(event.get("timestamp")), event.get("id")
                    if ts is None or event_id is None or ts < cursor.watermark or not cursor.is_new(event_id):
                        continue
                    if ts > latest_plausible:
                        raise ValueError(f"event timestamp {event.get('timestamp')!r} is in the future")
                    cursor.mark(event_id, ts)
                    newest = max(newest, ts)
                    self._handle_event(cycle, pipeline_id, entry, event, ts, counting=ts >= since_ms)
            complete = last
            if last or number >= self.settings.options["max_event_pages"]:
                break
        return complete, newest

    # --- one event -------------------------------------------------------------------------------------

    def _handle_event(self, cycle: Cycle, pipeline_id: str, entry: dict, event: dict, ts: int,
                      counting: bool) -> None:
        kind = event.get("event_type") or ""
        details = event.get("details") or {}
        origin = event.get("origin") or {}
        update_id = origin.get("update_id") or ""
        if not isinstance(update_id, str):
            raise TypeError(f"update_id is a {type(update_id).__name__}")
        if counting:
            level = event.get("level")
            cycle.inc(m.PIPELINE_EVENTS, pipeline_id=pipeline_id, level=level if isinstance(level, str) else "UNKNOWN")
        if kind == "create_update" and update_id:
            cause = (details.get("create_update") or {}).get("cause")
            entry.setdefault("open", {})[update_id] = [cause if isinstance(cause, str) else "", ts]
        elif kind == "update_progress" and update_id:
            update_state = (details.get("update_progress") or {}).get("state")
            if update_state in TERMINAL_UPDATE_STATES:
                self._update_ended(cycle, pipeline_id, entry, update_id, update_state, ts, counting)
        elif kind == "flow_progress":
            self._flow_progress(cycle, pipeline_id, entry, origin, details.get("flow_progress") or {}, ts, counting)
        elif kind == "cluster_resources":
            resources = details.get("cluster_resources") or {}
            latest = entry.setdefault("resources", {})
            if ts >= latest.get("ts", 0):
                for key, field in (("executors", "num_executors"), ("utilization", "avg_task_slot_utilization")):
                    value = number(resources.get(field))
                    if value is not None:
                        latest[key] = value
                latest["ts"] = ts

    def _update_ended(self, cycle: Cycle, pipeline_id: str, entry: dict, update_id: str, update_state: str,
                      ts: int, counting: bool) -> None:
        opened = entry.setdefault("open", {}).pop(update_id, None)
        done = entry.setdefault("done", {})
        if update_id in done:
            return
        done[update_id] = ts
        entry["last_terminal"] = update_id
        if not counting:
            return
        cause, created = opened if opened else self._update_facts(pipeline_id, update_id)
        cycle.inc(m.PIPELINE_UPDATES, pipeline_id=pipeline_id, state=update_state, cause=cause or "UNKNOWN")
        if created:
            cycle.observe(m.PIPELINE_UPDATE_DURATION, max(0.0, (ts - created) / 1000.0), pipeline_id=pipeline_id)
        if update_state == "COMPLETED" and ts / 1000.0 > entry.get("last_success", 0):
            entry["last_success"] = ts / 1000.0

    def _update_facts(self, pipeline_id: str, update_id: str) -> tuple[str, float | None]:
        """Cause and creation time of an update whose create_update event came before the window: from one page of
        the updates list (read once per pipeline and cycle), else that update's own get."""
        if self._update_page is None:
            try:
                page = self.rest.pipeline_updates(pipeline_id, UPDATES_PAGE_SIZE)
                self._update_page = {u.get("update_id"): u for u in page}
            except NotFound:
                self._update_page = {}
        update = self._update_page.get(update_id)
        if update is None:
            try:
                update = self.rest.pipeline_update(pipeline_id, update_id) or None
            except NotFound:
                update = None
        if update is None:
            return "UNKNOWN", None
        return enum_name(update.get("cause")) or "UNKNOWN", update.get("creation_time")

    def _flow_progress(self, cycle: Cycle, pipeline_id: str, entry: dict, origin: dict, progress: dict, ts: int,
                       counting: bool) -> None:
        flow = origin.get("flow_name") or origin.get("dataset_name") or ""
        dataset = origin.get("dataset_name") or flow
        metrics = progress.get("metrics") or {}
        if counting:
            if progress.get("status") == "FAILED":
                cycle.inc(m.PIPELINE_FLOW_FAILURES, pipeline_id=pipeline_id, flow_name=flow)
            rows = number(metrics.get("num_output_rows"))
            if rows and rows > 0:
                cycle.inc(m.PIPELINE_FLOW_OUTPUT_ROWS, rows, pipeline_id=pipeline_id, flow_name=flow)
            quality = progress.get("data_quality") or {}
            dropped = number(quality.get("dropped_records"))
            if dropped and dropped > 0:
                cycle.inc(m.PIPELINE_DROPPED_RECORDS, dropped, pipeline_id=pipeline_id, dataset=dataset)
            for expectation in quality.get("expectations") or []:
                for outcome in ("passed", "failed"):
                    value = number(expectation.get(f"{outcome}_records"))
                    if value and value > 0:
                        cycle.inc(m.PIPELINE_EXPECTATION_RECORDS, value, pipeline_id=pipeline_id,
                                  dataset=expectation.get("dataset") or dataset,
                                  expectation=expectation.get("name") or "", outcome=outcome)
        backlog = {key: number(metrics.get(f"backlog_{key}")) for key, _ in BACKLOG_KEYS}
        if flow and any(v is not None for v in backlog.values()):
            flows = entry.setdefault("flows", {})
            if ts >= flows.get(flow, {}).get("ts", 0):
                flows[flow] = {"ts": ts, **{k: v for k, v in backlog.items() if v is not None}}

    def _forget_old(self, entry: dict, watermark: float) -> None:
        done, opened, flows = entry.get("done") or {}, entry.get("open") or {}, entry.get("flows") or {}
        for update_id in [u for u, ts in done.items() if ts < watermark - COUNTED_MEMORY_MS]:
            del done[update_id]
        for update_id in [u for u, (_, ts) in opened.items() if ts < watermark - MEMORY_MS]:
            del opened[update_id]
        for flow in [f for f, v in flows.items() if v["ts"] < watermark - MEMORY_MS]:
            del flows[flow]

    # --- gauges ----------------------------------------------------------------------------------------

    def _emit_pipeline(self, cycle: Cycle, pipeline_id: str, status: dict, spec: dict, entry: dict) -> None:
        pipeline_state = enum_name(status.get("state")) or "UNKNOWN"
        cycle.gauge(m.PIPELINE_INFO, 1, pipeline_id=pipeline_id, pipeline_name=status.get("name") or "",
                    continuous=spec["continuous"], serverless=spec["serverless"], development=spec["development"])
        cycle.gauge(m.PIPELINE_STATE, 1, pipeline_id=pipeline_id, state=pipeline_state)
        health = enum_name(status.get("health"))
        if health:
            cycle.gauge(m.PIPELINE_HEALTHY, 1 if health == "HEALTHY" else 0, pipeline_id=pipeline_id)
        if entry.get("last_success"):
            cycle.gauge(m.PIPELINE_LAST_SUCCESS, entry["last_success"], pipeline_id=pipeline_id)
        for flow, latest in (entry.get("flows") or {}).items():
            for key, metric in BACKLOG_KEYS:
                if key in latest:
                    cycle.gauge(metric, latest[key], pipeline_id=pipeline_id, flow_name=flow)
        # Between updates the compute is gone: the last cluster_resources numbers describe the past.
        running = pipeline_state not in QUIET_PIPELINE_STATES
        resources = entry.get("resources") or {}
        cycle.gauge(m.PIPELINE_EXECUTORS, resources.get("executors", 0) if running else 0, pipeline_id=pipeline_id)
        if running and "utilization" in resources:
            cycle.gauge(m.PIPELINE_TASK_SLOT_UTILIZATION, resources["utilization"], pipeline_id=pipeline_id)
