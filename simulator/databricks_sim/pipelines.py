"""Simulated Lakeflow Declarative Pipelines (DLT): pipelines whose updates go through the real states and causes,
and whose event log carries flow_progress (metrics, backlog, data quality), update_progress, cluster_resources and
create_update events, served with the real list, updates and events API rules.

Like the rest of the simulated workspace, each pipeline is a pure function of (seed, simulated time): it draws from
its own random stream strictly in time order and is generated lazily, in chunks (a whole triggered update, or ten
minutes of a continuous one), when a request reaches past what exists. Every read filters on timestamp <= now.

Event-log semantics a client can rely on (the ledger in truth.py records each fact as it is generated):
- An update is *completed* when its terminal update_progress event (COMPLETED, FAILED or CANCELED) is in the event
  log; it counts at that event's timestamp. UpdateInfo.state turns terminal at the same instant.
- Every flow_progress event that carries `metrics` or `data_quality` reports the work done since the flow's previous
  flow_progress event: per-batch deltas, never running totals. A flow's expectation records, dropped records and
  output rows are therefore the sums over its events, each event counted once, at its timestamp.
- Backlog numbers in flow_progress metrics are levels at that moment (the latest one is the current backlog).
- Odd-numbered pipelines render numbers inside `details` as JSON strings (as int64 fields come out of proto JSON),
  the others as JSON numbers: clients must accept both.

Behaviours (after the DLT operations guide's failure scenarios): schema drift (additive columns fixed by an
automatic SCHEMA_CHANGE restart, type changes that fail until a user runs a full refresh), a continuous pipeline whose
checkpoint breaks (retries fail at start-up until a full refresh resets it), expectations whose failure rate drifts
up until a fix, an expect_or_fail expectation that now and then fails its update, intermittent source timeouts that a
retry fixes, and a streaming flow that builds a backlog (processing lag beyond an hour) before the autoscaler catches
up. Schema drift and checkpoint episodes recur within every six hours of history.
"""

from __future__ import annotations

import bisect
import calendar
import random
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone

from .common import (
    DAY_MS,
    HOUR_MS,
    MINUTE_MS,
    SECOND_MS,
    SERVICE_PRINCIPAL,
    USERS,
    ApiError,
    decode_page_token,
    does_not_exist,
    encode_page_token,
    fast_randint,
    invalid_parameter,
    make_cluster_id,
    permission_denied,
    stable_hex,
)

TERMINAL_UPDATE_STATES = ("COMPLETED", "FAILED", "CANCELED")
FILTERABLE_FIELDS = ("timestamp", "id", "update_id", "level")
LEVELS = ("INFO", "WARN", "ERROR", "METRICS")
LIST_MAX_RESULTS = 100          # pipelines list: "An error is returned if the value of max_results is greater than 100"
EVENTS_MAX_RESULTS = 1000       # events: max_results <= 1000
UPDATES_MAX_RESULTS = 100       # updates: not documented; the default page is the 25 most recent updates
DEFAULT_PAGE = 25
LATEST_UPDATES = 5              # statuses[].latest_updates
CHUNK_MS = 10 * MINUTE_MS       # continuous pipelines are generated ten minutes at a time
EVENT_QUERY_LOG = 10_000        # how many events requests the simulator remembers for tests


def iso_ms(ms: int) -> str:
    """'2024-05-01T12:00:00.123Z', as the events API prints timestamps."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def parse_iso_ms(text: str) -> int:
    """An ISO-8601 timestamp (Z, an offset, or none meaning UTC) as epoch milliseconds, exactly."""
    try:
        parsed = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise invalid_parameter(f"Invalid timestamp in filter: '{text}'") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    parsed = parsed.astimezone(timezone.utc)
    return calendar.timegm(parsed.timetuple()) * 1000 + parsed.microsecond // 1000


def _uuid(*parts) -> str:
    h = stable_hex(*parts, n=32)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# ------------------------------------------------------------------------------------------------ definitions

@dataclass(frozen=True)
class Expectation:
    name: str
    action: str                  # drop | warn | fail (expect_or_drop, expect, expect_or_fail)
    rate: float                  # baseline share of failing records
    drift: bool = False          # the share climbs over hours until a fix resets it


@dataclass(frozen=True)
class Flow:
    name: str                    # flow and output dataset share the name, as @dlt.table functions do
    streaming: bool
    rows: tuple[int, int]        # records in per batch
    expectations: tuple[Expectation, ...] = ()
    source: str = ""             # kafka | cloudFiles | delta: what the backlog metrics look like
    backlog: bool = False        # builds a backlog (processing lag) in surges
    cdc: bool = False            # apply_changes target: upserts and deletes


@dataclass(frozen=True)
class PipelineDef:
    name: str
    continuous: bool
    serverless: bool
    behavior: str                # healthy | schema_drift | checkpoint | expectation_drift | fail_expectation |
    #                              backlog | flaky_network (intermittent source timeouts, fixed by a retry)
    flows: tuple[Flow, ...]
    period_min: int = 0          # triggered: schedule period
    cause: str = "JOB_TASK"      # triggered: what starts a scheduled update
    development: bool = False
    catalog: str = "main"
    schema: str = "default"


E, F = Expectation, Flow
PIPELINES: tuple[PipelineDef, ...] = (
    PipelineDef("sales_orders_etl", False, False, "healthy", period_min=4, catalog="sales", schema="orders", flows=(
        F("orders_bronze", True, (800, 2500), (E("valid_order_id", "drop", 0.004), E("valid_amount", "warn", 0.01)),
          source="cloudFiles"),
        F("orders_silver", True, (700, 2400), (E("known_customer", "drop", 0.006),), source="delta"),
        F("daily_sales_gold", False, (20, 60)))),
    PipelineDef("customer_profiles", False, True, "schema_drift", period_min=3, catalog="crm", schema="customers",
                flows=(
        F("customers_raw", True, (200, 900), source="cloudFiles"),
        F("customers_clean", True, (180, 880), (E("valid_email", "drop", 0.02), E("country_present", "warn", 0.03)),
          source="delta"))),
    PipelineDef("clickstream_live", True, False, "backlog", catalog="web", schema="clicks", flows=(
        F("clicks_raw", True, (0, 0), source="kafka", backlog=True),
        F("sessions_enriched", True, (400, 1200),
          (E("valid_session_id", "drop", 0.01), E("known_user_agent", "warn", 0.05)), source="delta"))),
    PipelineDef("payments_stream", True, True, "checkpoint", catalog="finance", schema="payments", flows=(
        F("payments_raw", True, (300, 900), source="kafka"),
        F("payments_validated", True, (290, 880),
          (E("positive_amount", "drop", 0.002), E("valid_currency", "drop", 0.001)), source="delta"))),
    PipelineDef("inventory_snapshot", False, False, "expectation_drift", period_min=10, cause="API_CALL",
                catalog="supply", schema="inventory", flows=(
        F("inventory_bronze", False, (3000, 6000)),
        F("inventory_silver", False, (2900, 5900),
          (E("non_negative_quantity", "drop", 0.003, drift=True), E("known_sku", "warn", 0.01, drift=True))))),
    PipelineDef("fraud_features", True, False, "healthy", catalog="risk", schema="fraud", flows=(
        F("transactions_stream", True, (1000, 3000), (E("valid_card_hash", "drop", 0.001),), source="kafka"),
        F("fraud_features_agg", True, (100, 300), source="delta"))),
    PipelineDef("ledger_reconciliation", False, True, "fail_expectation", period_min=30, catalog="finance",
                schema="ledger", flows=(
        F("ledger_entries", False, (10000, 20000), (E("entry_has_account", "drop", 0.0005),)),
        F("ledger_balanced", False, (50, 200), (E("balanced_entries", "fail", 0.0),)))),
    PipelineDef("marketing_campaigns", False, False, "healthy", period_min=60, development=True,
                catalog="marketing", schema="campaigns", flows=(
        F("campaign_events", True, (500, 4000), (E("campaign_id_present", "drop", 0.002),), source="cloudFiles"),
        F("campaign_performance", False, (30, 120)))),
    PipelineDef("shipments_cdc", False, False, "flaky_network", period_min=5, cause="API_CALL", catalog="supply",
                schema="shipments", flows=(
        F("shipments_changes", True, (100, 700), (E("valid_operation", "drop", 0.001),), source="kafka"),
        F("shipments_current", True, (100, 700), source="delta", cdc=True))),
    PipelineDef("iot_telemetry", True, True, "expectation_drift", catalog="iot", schema="telemetry", flows=(
        F("device_readings", True, (2000, 6000),
          (E("temperature_in_range", "warn", 0.002, drift=True), E("device_id_present", "drop", 0.001)),
          source="cloudFiles"),
        F("device_hourly", True, (50, 150), source="delta"))),
)
del E, F

# Start-up states of an update, before RUNNING.
STARTUP_STATES = ("QUEUED", "CREATED", "WAITING_FOR_RESOURCES", "INITIALIZING", "SETTING_UP_TABLES")

SCHEMA_ADDITIVE_ERROR = (
    "org.apache.spark.sql.catalyst.util.UnknownFieldException",
    "[UNKNOWN_FIELD_EXCEPTION.NEW_FIELDS_IN_RECORD_WITH_FILE_PATH] Encountered unknown fields during parsing: "
    "[loyalty_tier], which can be fixed by an automatic retry: true")
SCHEMA_TYPE_ERROR = (
    "org.apache.spark.sql.AnalysisException",
    "[DELTA_FAILED_TO_MERGE_FIELDS] Failed to merge fields 'customer_tier' and 'customer_tier'. "
    "Failed to merge incompatible data types StringType and IntegerType")
CHECKPOINT_ERROR = (
    "java.lang.IllegalStateException",
    "Error reading streaming state file of HDFSStateStoreProvider[id = (op=0,part=3),dir = "
    "dbfs:/pipelines/{pipeline_id}/checkpoints/payments_validated/0/state/0/3]: "
    "dbfs:/pipelines/{pipeline_id}/checkpoints/payments_validated/0/state/0/3/1843.delta does not exist. "
    "If the stream job is restarted with a new or updated state operation, please create a new checkpoint "
    "location or clear the existing checkpoint location.")
EXPECTATION_ERROR = (
    "org.apache.spark.sql.streaming.StreamingQueryException",
    "[EXPECTATION_VIOLATION.VERBOSITY_ALL] Flow 'ledger_balanced' failed to meet the expectation. "
    "Violated expectations: 'balanced_entries'.")
NETWORK_ERROR = (
    "org.apache.kafka.common.errors.TimeoutException",
    "Timeout of 60000ms expired before the position for partition shipments-cdc-3 could be determined")
CLUSTER_ERROR = (
    "com.databricks.pipelines.common.errors.DLTSparkException",
    "[CLUSTER_LAUNCH_FAILURE.CLOUD_PROVIDER_INSTANCE_UNAVAILABLE] The cluster failed to launch: "
    "the cloud provider has no capacity for the requested instance type.")


# ------------------------------------------------------------------------------------------------ model

@dataclass
class Update:
    update_id: str
    creation_ms: int
    cause: str
    full_refresh: bool
    cluster_id: str | None
    states: list[tuple[int, str]] = field(default_factory=list)   # (ts, state), in time order
    end_ms: int | None = None                                       # terminal event time, once generated

    def state_at(self, now_ms: int) -> str:
        state = self.states[0][1]
        for ts, s in self.states:
            if ts > now_ms:
                break
            state = s
        return state

    @property
    def terminal_state(self) -> str | None:
        return self.states[-1][1] if self.end_ms is not None else None


class SimPipeline:
    """One pipeline: its updates and its event log, generated in time order as the clock advances."""

    def __init__(self, owner: "PipelineSet", index: int, spec: PipelineDef):
        ws = owner.ws
        self.ws, self.index, self.spec = ws, index, spec
        self.rng = rng = random.Random(f"{ws.seed}:pipeline:{index}")
        self.pipeline_id = _uuid(ws.seed, "pipeline", index)
        self.creator = rng.choice(USERS)
        self.run_as = SERVICE_PRINCIPAL if not spec.development else self.creator
        self.created_ms = ws.world_start_ms - rng.randint(5, 90) * DAY_MS
        self.last_modified_ms = ws.world_start_ms - rng.randint(1, 4) * DAY_MS - rng.randint(0, DAY_MS)
        self.string_numbers = index % 2 == 1
        self.node_type = rng.choice(["i3.xlarge", "m5d.2xlarge", "r5d.2xlarge"])
        self.cores = {"i3.xlarge": 4, "m5d.2xlarge": 8, "r5d.2xlarge": 8}[self.node_type]
        self.min_workers = rng.choice([1, 2])
        self.max_workers = self.min_workers + rng.choice([4, 6, 8])
        self.executors = self.min_workers
        self.updates: list[Update] = []
        self.updates_by_id: dict[str, Update] = {}
        self.update_ts: list[int] = []
        # events: (ts, seq, level, event_type, update_id, flow index or -1, details, message, error)
        self.events: list[tuple] = []
        self.event_ts: list[int] = []
        self.id_prefix = stable_hex(ws.seed, self.pipeline_id, "events", n=16)
        self.seq = 0
        # Generation state.
        self.next_ms = ws.world_start_ms + rng.randint(0, max(1, spec.period_min) * MINUTE_MS)
        self.grid_ms = self.next_ms
        self.next_cause, self.next_full_refresh = ("USER_ACTION" if spec.continuous else spec.cause), False
        self.retries = 0
        self.current: Update | None = None        # the running continuous update
        self.current_end_ms = 0
        self.current_end_kind = ""                 # failure | maintenance
        self.batch_ms = 0
        self.batch_no = 0
        # Behaviour state.
        # Episodes recur often enough that any six hours of history hold a failure (tests rely on it).
        self.drift_next_ms = ws.world_start_ms + rng.randint(HOUR_MS, 3 * HOUR_MS)
        self.drifted = ""                          # "" | additive | type
        self.fix_ms = 0
        self.checkpoint_next_ms = ws.world_start_ms + rng.randint(2 * HOUR_MS, 4 * HOUR_MS)
        self.checkpoint_broken = False
        self.drift_phase_ms = rng.randint(0, 6 * HOUR_MS)
        # Backlog (clicks_raw): records waiting, capacity in records/s, and the phase of the surge cycle.
        self.capacity = 260.0
        self.surge_phase = "growing"
        self.surge_until_ms = ws.world_start_ms + rng.randint(3 * HOUR_MS, 5 * HOUR_MS)
        self.backlog = rng.uniform(0.3, 0.8) * 3600 * self.capacity   # already lagging when history begins
        self.flow_last_ms = [0] * len(spec.flows)
        # When the update (triggered) or chunk (continuous) being generated starts: scenarios decide by it, not by
        # the time of each event, so whether an update was generated before or after a scenario began cannot matter.
        self.generating_ms = self.next_ms

    # -- generation

    def extend(self, until_ms: int) -> None:
        while self.next_ms <= until_ms:
            self.generating_ms = self.next_ms
            if self.spec.continuous:
                self._continuous_chunk()
            else:
                self._triggered_update()

    def _append(self, chunk: list[tuple]) -> None:
        """chunk: (ts, level, event_type, update_id, flow, details, message, error); appended in time order."""
        chunk.sort(key=lambda e: e[0])
        if chunk and self.event_ts and chunk[0][0] < self.event_ts[-1]:
            raise AssertionError(f"pipeline {self.spec.name}: events out of order")
        for ts, level, kind, update_id, flow, details, message, error in chunk:
            self.seq += 1
            self.events.append((ts, self.seq, level, kind, update_id, flow, details, message, error))
            self.event_ts.append(ts)

    def event_id(self, seq: int) -> str:
        """A UUID-shaped id, unique per pipeline and cheap to derive from the sequence number."""
        p = self.id_prefix
        return f"{p[:8]}-{p[8:12]}-{p[12:16]}-{seq >> 48 & 0xffff:04x}-{seq & 0xffffffffffff:012x}"

    def _new_update(self, at: int, cause: str, full_refresh: bool) -> Update:
        update_id = _uuid(self.ws.seed, self.pipeline_id, "update", at)
        cluster_id = None if self.spec.serverless else make_cluster_id(at, self.ws.seed, self.pipeline_id, at)
        update = Update(update_id, at, cause, full_refresh, cluster_id)
        self.updates.append(update)
        self.updates_by_id[update_id] = update
        self.update_ts.append(at)
        return update

    def _startup(self, update: Update, chunk: list, fail_in: str = "", error: tuple | None = None) -> int:
        """QUEUED .. SETTING_UP_TABLES (RESETTING on a full refresh); returns when RUNNING starts, or the failure
        time when the update fails in the state named by fail_in."""
        rng, spec = self.rng, self.spec
        t = update.creation_ms
        uid = update.update_id
        chunk.append((t, "INFO", "create_update", uid, -1,
                      {"create_update": {"cause": update.cause, "full_refresh": update.full_refresh,
                                         "config": {"id": self.pipeline_id, "name": spec.name,
                                                    "continuous": spec.continuous}}},
                      f"Update {uid[:6]} started by {update.cause}.", None))
        states = list(STARTUP_STATES)
        if update.full_refresh:
            states.insert(states.index("SETTING_UP_TABLES"), "RESETTING")
        for state in states:
            if state == "CREATED":
                t += rng.randint(200, 1500)
            elif state == "WAITING_FOR_RESOURCES":
                t += rng.randint(500, 3000)
            elif state == "INITIALIZING":
                t += rng.randint(3, 10) * SECOND_MS if spec.serverless else rng.randint(15, 70) * SECOND_MS
            elif state in ("SETTING_UP_TABLES", "RESETTING"):
                t += rng.randint(5, 25) * SECOND_MS
            self._state(update, chunk, t, state)
            if state == "INITIALIZING":
                self._cluster_resources(update, chunk, t + 500, utilization=0.0)
            if state == fail_in:
                return t + rng.randint(3, 20) * SECOND_MS
        if not fail_in:
            for k, flow in enumerate(spec.flows):
                chunk.append((t + 100 + k, "INFO", "flow_definition", uid, k,
                              {"flow_definition": {"output_dataset": flow.name,
                                                   "input_datasets": [spec.flows[k - 1].name] if k else [],
                                                   "flow_type": "STREAMING" if flow.streaming else "COMPLETE"}},
                              f"Flow '{flow.name}' is defined as {'STREAMING' if flow.streaming else 'COMPLETE'}.",
                              None))
        t += rng.randint(2, 8) * SECOND_MS
        return t

    def _state(self, update: Update, chunk: list, at: int, state: str, error: tuple | None = None) -> None:
        update.states.append((at, state))
        level = "ERROR" if state == "FAILED" else "INFO"
        err = None
        if error:
            err = {"fatal": True, "exceptions": [{"class_name": error[0],
                                                  "message": error[1].format(pipeline_id=self.pipeline_id)}]}
        chunk.append((at, level, "update_progress", update.update_id, -1, {"update_progress": {"state": state}},
                      f"Update {update.update_id[:6]} is {state}.", err))
        if state in TERMINAL_UPDATE_STATES:
            update.end_ms = at
            self.ws.ledger.pipeline_update_ended(self.pipeline_id, update.update_id, at, state, update.cause)

    def _cluster_resources(self, update: Update, chunk: list, at: int, utilization: float | None = None,
                           pressure: float = 0.0) -> None:
        rng = self.rng
        if utilization is None:
            utilization = min(0.99, max(0.05, rng.uniform(0.35, 0.85) + pressure))
        queued = round(pressure * 40 + rng.random() * 3, 1)
        wanted = self.executors + (2 if pressure > 0.1 else rng.choice([-1, 0, 0, 1]))
        wanted = min(self.max_workers, max(self.min_workers, wanted))
        slots = self.executors * self.cores
        details = {"cluster_resources": {
            "num_executors": self.executors, "num_task_slots": slots,
            "avg_task_slot_utilization": round(utilization, 3), "avg_num_queued_tasks": queued,
            "latest_requested_num_executors": wanted, "optimal_num_executors": wanted,
            "state": "SCALE_UP_IN_PROGRESS" if wanted > self.executors else "STABLE"}}
        chunk.append((at, "METRICS", "cluster_resources", update.update_id, -1, details,
                      f"Cluster has {self.executors} executors and {slots} task slots.", None))
        if queued > 10:
            chunk.append((at + 1, "WARN", "cluster_resources", update.update_id, -1,
                          {"cluster_resources": {"num_executors": self.executors, "avg_num_queued_tasks": queued,
                                                 "state": "UNDER_PROVISIONED"}},
                          "The cluster is under-provisioned: tasks are queueing.", None))
        self.executors = wanted

    def _fail_rate(self, expectation: Expectation, at: int) -> float:
        rate = expectation.rate
        if expectation.drift:
            # Six-hour cycles: the share of bad records climbs for four hours, then a fix brings it back.
            cycle = (at + self.drift_phase_ms) % (6 * HOUR_MS)
            rate += 0.14 * min(1.0, cycle / (4 * HOUR_MS)) if cycle < 4 * HOUR_MS else 0.0
        return rate

    def _batch(self, update: Update, chunk: list, k: int, at: int, status: str, seconds: float,
               error: tuple | None = None) -> None:
        """One flow_progress event carrying the work of one batch (deltas) and the backlog now (levels). A flow
        that fails on an expect_or_fail violation reports the violating batch's data quality; one that fails for
        another reason (schema, checkpoint) processed nothing and reports none."""
        rng, flow = self.rng, self.spec.flows[k]
        if flow.backlog:
            records_in = self._backlog_step(at, seconds)
        else:
            records_in = fast_randint(rng, *flow.rows)
        failed_by: list[tuple[Expectation, int]] = []
        for exp in flow.expectations:
            if exp.action == "fail":
                failed = 1 + fast_randint(rng, 0, 3) if status == "FAILED" else 0
            else:
                rate = self.ws.scenarios.apply("expectation_fail_rate", self.generating_ms, self._fail_rate(exp, at),
                                               self, exp)
                failed = int(round(records_in * rate * rng.uniform(0.6, 1.4)))
            failed_by.append((exp, min(failed, records_in)))
        dropped = min(records_in, sum(n for exp, n in failed_by if exp.action == "drop"))
        metrics: dict = {"num_output_rows": records_in - dropped if status != "FAILED" else 0}
        if flow.cdc:
            metrics["num_upserted_rows"] = metrics["num_output_rows"]
            metrics["num_deleted_rows"] = fast_randint(rng, 0, max(1, records_in // 50))
        if flow.streaming:
            metrics.update(self._backlog_metrics(flow, rng))
            metrics = self.ws.scenarios.apply("flow_metrics", self.generating_ms, metrics, self, flow, at)
        metrics["executor_time_ms"] = int(seconds * 1000 * rng.uniform(0.5, 3))
        details: dict = {"flow_progress": {"status": status, "metrics": metrics}}
        if flow.expectations and (status != "FAILED" or error is EXPECTATION_ERROR):
            details["flow_progress"]["data_quality"] = {
                "dropped_records": dropped,
                "expectations": [{"name": exp.name, "dataset": flow.name, "passed_records": records_in - n,
                                  "failed_records": n} for exp, n in failed_by]}
        ledger = self.ws.ledger
        ledger.flow_output_rows(self.pipeline_id, flow.name, at, metrics["num_output_rows"])
        if "data_quality" in details["flow_progress"]:
            ledger.dropped_records(self.pipeline_id, flow.name, at, dropped)
            for exp, n in failed_by:
                ledger.expectation_records(self.pipeline_id, flow.name, exp.name, at, records_in - n, n)
        level = "ERROR" if status == "FAILED" else "METRICS"
        self.flow_last_ms[k] = at
        err = None
        if error:
            err = {"fatal": True, "exceptions": [{"class_name": error[0],
                                                  "message": error[1].format(pipeline_id=self.pipeline_id)}]}
        chunk.append((at, level, "flow_progress", update.update_id, k, details,
                      f"Flow '{flow.name}' has {'FAILED' if status == 'FAILED' else 'processed a batch'}.", err))

    def _backlog_metrics(self, flow: Flow, rng: random.Random) -> dict:
        if flow.backlog:
            records = int(self.backlog)
            out = {"backlog_bytes": records * 420, "backlog_records": records,
                   "backlog_seconds": round(self.backlog / self.capacity, 1)}
        else:
            records = fast_randint(rng, 1, 400) if rng.random() < 0.25 else 0
            out = {"backlog_bytes": records * 350, "backlog_records": records,
                   "backlog_seconds": round(records / 300.0, 1)}
        if flow.source == "cloudFiles":
            out["backlog_files"] = (out["backlog_bytes"] + 4_000_000) // 5_000_000 if out["backlog_bytes"] else 0
        return out

    def _backlog_step(self, at: int, seconds: float) -> int:
        """Surges of clicks arrive faster than the cluster reads them for hours; then it scales up and drains."""
        rng = self.rng
        if self.surge_phase == "growing" and at >= self.surge_until_ms:
            self.surge_phase = "draining"
        elif self.surge_phase == "draining" and self.backlog <= 0:
            self.surge_phase, self.surge_until_ms = "steady", at + rng.randint(30, 90) * MINUTE_MS
        elif self.surge_phase == "steady" and at >= self.surge_until_ms:
            self.surge_phase, self.surge_until_ms = "growing", at + rng.randint(2 * HOUR_MS, 5 * HOUR_MS)
        capacity = self.capacity * (3.0 if self.surge_phase == "draining" else 1.0)
        arrivals = self.capacity * seconds * {"growing": 1.4, "draining": 1.0, "steady": 0.9}[self.surge_phase]
        arrivals *= rng.uniform(0.9, 1.1)
        processed = min(capacity * seconds, self.backlog + arrivals)
        self.backlog = max(0.0, self.backlog + arrivals - processed)
        return int(processed)

    def _flow_startup(self, update: Update, chunk: list, at: int) -> None:
        for k, flow in enumerate(self.spec.flows):
            for j, status in enumerate(("QUEUED", "STARTING", "RUNNING")):
                chunk.append((at + k * 300 + j * 100, "INFO", "flow_progress", update.update_id, k,
                              {"flow_progress": {"status": status}}, f"Flow '{flow.name}' is {status}.", None))

    # -- triggered pipelines

    def _triggered_update(self) -> None:
        rng, spec = self.rng, self.spec
        start = self.next_ms
        cause, full_refresh = self.next_cause, self.next_full_refresh
        chunk: list = []
        # What this update will run into.
        outcome, error, fail_flow = "COMPLETED", None, -1
        if spec.behavior == "schema_drift":
            if not self.drifted and start >= self.drift_next_ms:
                self.drifted = "additive" if rng.random() < 0.5 else "type"
                self.fix_ms = start + rng.randint(25, 70) * MINUTE_MS
            if self.drifted == "additive" and cause != "SCHEMA_CHANGE":
                outcome, error, fail_flow = "FAILED", SCHEMA_ADDITIVE_ERROR, 0
            elif self.drifted == "type" and not full_refresh:
                outcome, error, fail_flow = "FAILED", SCHEMA_TYPE_ERROR, 1
        if outcome == "COMPLETED" and not spec.serverless and rng.random() < 0.02:
            outcome, error = "FAILED", CLUSTER_ERROR
        elif outcome == "COMPLETED" and cause != "RETRY_ON_FAILURE" and rng.random() < 0.02:
            outcome = "CANCELED"
        if outcome == "COMPLETED" and spec.behavior == "flaky_network" and rng.random() < 0.05:
            outcome, error, fail_flow = "FAILED", NETWORK_ERROR, 0
        violation = spec.behavior == "fail_expectation" and outcome == "COMPLETED" and rng.random() < 0.08
        if violation:
            outcome, error, fail_flow = "FAILED", EXPECTATION_ERROR, len(spec.flows) - 1

        update = self._new_update(start, cause, full_refresh)
        if error is CLUSTER_ERROR:
            t = self._startup(update, chunk, fail_in="WAITING_FOR_RESOURCES")
            self._state(update, chunk, t, "FAILED", error)
        else:
            t = self._startup(update, chunk)
            self._state(update, chunk, t, "RUNNING")
            self.executors = self.min_workers
            last_resources = t
            canceled_at = len(spec.flows) // 2 if outcome == "CANCELED" else -1
            for k, flow in enumerate(spec.flows):
                if k == canceled_at:
                    break
                t += rng.randint(300, 2000)
                for status in ("QUEUED", "STARTING", "RUNNING"):
                    chunk.append((t, "INFO", "flow_progress", update.update_id, k,
                                  {"flow_progress": {"status": status}}, f"Flow '{flow.name}' is {status}.", None))
                    t += rng.randint(100, 1500)
                batches = rng.randint(1, 3) if flow.streaming else 1
                for b in range(batches):
                    seconds = rng.randint(4, 25)
                    t += seconds * SECOND_MS
                    if t - last_resources >= MINUTE_MS:
                        self._cluster_resources(update, chunk, t - 1, pressure=0.0)
                        last_resources = t
                    last = b == batches - 1
                    if k == fail_flow and last:
                        self._batch(update, chunk, k, t, "FAILED", seconds, error)
                        break
                    if flow.streaming:
                        self._batch(update, chunk, k, t, "RUNNING", seconds)
                    elif last:
                        self._batch(update, chunk, k, t, "COMPLETED", seconds)
                if k == fail_flow:
                    break
                if flow.streaming:
                    t += rng.randint(200, 1500)
                    chunk.append((t, "INFO", "flow_progress", update.update_id, k,
                                  {"flow_progress": {"status": "COMPLETED"}}, f"Flow '{flow.name}' has COMPLETED.",
                                  None))
            t += rng.randint(1, 5) * SECOND_MS
            if outcome == "CANCELED":
                chunk.append((t, "INFO", "user_action", update.update_id, -1,
                              {"user_action": {"action": "STOP", "user_name": self.creator}},
                              f"User {self.creator} stopped the update.", None))
                self._state(update, chunk, t + 200, "STOPPING")
                t += rng.randint(3, 10) * SECOND_MS
            self._state(update, chunk, t, outcome, error if outcome == "FAILED" else None)
        self._append(chunk)
        end = update.end_ms

        # What comes next: a retry, a SCHEMA_CHANGE restart, the user's full refresh, or the schedule.
        self.next_full_refresh = False
        period = spec.period_min * MINUTE_MS
        while self.grid_ms <= end + 5 * SECOND_MS:
            self.grid_ms += period
        if outcome == "FAILED" and error is SCHEMA_ADDITIVE_ERROR:
            self.next_ms, self.next_cause = end + rng.randint(5, 20) * SECOND_MS, "SCHEMA_CHANGE"
            self.drifted = ""
            self.drift_next_ms = end + rng.randint(90 * MINUTE_MS, 4 * HOUR_MS)
            return
        if outcome == "COMPLETED" and full_refresh and self.drifted:
            self.drifted = ""
            self.drift_next_ms = end + rng.randint(90 * MINUTE_MS, 4 * HOUR_MS)
        if outcome == "FAILED" and error is not EXPECTATION_ERROR and self.retries < 1 and not spec.development:
            self.retries += 1
            self.next_ms, self.next_cause = end + rng.randint(20, 60) * SECOND_MS, "RETRY_ON_FAILURE"
            return
        self.retries = 0
        if self.drifted == "type" and self.fix_ms <= self.grid_ms:
            self.next_ms = max(self.fix_ms, end + 5 * SECOND_MS)
            self.next_cause, self.next_full_refresh = "USER_ACTION", True
            return
        self.next_ms = self.grid_ms
        self.next_cause = "USER_ACTION" if rng.random() < 0.03 else spec.cause

    # -- continuous pipelines

    def _continuous_chunk(self) -> None:
        rng, spec = self.rng, self.spec
        chunk: list = []
        if self.current is None:
            start = self.next_ms
            update = self._new_update(start, self.next_cause, self.next_full_refresh)
            self.next_full_refresh = False
            if self.checkpoint_broken and not update.full_refresh:
                # The broken checkpoint stops every restart while tables are set up.
                t = self._startup(update, chunk, fail_in="SETTING_UP_TABLES")
                self._state(update, chunk, t, "FAILED", CHECKPOINT_ERROR)
                self._append(chunk)
                self.retries += 1
                if self.retries <= 3:
                    self.next_ms = t + (2 ** self.retries) * MINUTE_MS
                    self.next_cause = "RETRY_ON_FAILURE"
                else:
                    self.next_ms = max(self.fix_ms, t + MINUTE_MS)
                    self.next_cause, self.next_full_refresh = "USER_ACTION", True
                return
            if update.full_refresh:
                self.checkpoint_broken = False
                self.retries = 0
            t = self._startup(update, chunk)
            self._state(update, chunk, t, "RUNNING")
            self._flow_startup(update, chunk, t + 200)
            self.executors = self.min_workers
            self.current = update
            self.batch_ms = t + rng.randint(10, 30) * SECOND_MS
            self.batch_no = 0
            maintenance = t + rng.randint(6 * HOUR_MS, 14 * HOUR_MS)
            self.current_end_ms, self.current_end_kind = maintenance, "maintenance"
            if spec.behavior == "checkpoint" and self.checkpoint_next_ms < maintenance:
                self.current_end_ms = max(self.checkpoint_next_ms, self.batch_ms + MINUTE_MS)
                self.current_end_kind = "failure"
            self._append(chunk)
            self.next_ms = t + 1
            return

        update = self.current
        until = min(self.next_ms + CHUNK_MS, self.current_end_ms)
        t = self.batch_ms
        while t + 2 * SECOND_MS < until:
            seconds = fast_randint(rng, 30, 60)
            pressure = 0.0
            if spec.behavior == "backlog":
                pressure = 0.15 if self.surge_phase == "growing" else (0.1 if self.surge_phase == "draining" else 0)
            for k in range(len(spec.flows)):
                self._batch(update, chunk, k, t + k * 150, "RUNNING", seconds)
            if self.batch_no % 2 == 0:
                if spec.behavior == "backlog" and self.surge_phase == "draining":
                    self.executors = self.max_workers
                self._cluster_resources(update, chunk, t + 900, pressure=pressure)
            self.batch_no += 1
            t += seconds * SECOND_MS
        self.batch_ms = t
        if until < self.current_end_ms:
            self._append(chunk)
            self.next_ms = until
            return

        # The update ends: a broken checkpoint, or a service upgrade / maintenance restart.
        end = max(until, t - 20 * SECOND_MS) + rng.randint(1, 5) * SECOND_MS
        self.current = None
        if self.current_end_kind == "failure":
            k = len(spec.flows) - 1
            chunk.append((end, "ERROR", "flow_progress", update.update_id, k,
                          {"flow_progress": {"status": "FAILED"}}, f"Flow '{spec.flows[k].name}' has FAILED.",
                          {"fatal": True, "exceptions": [{
                              "class_name": CHECKPOINT_ERROR[0],
                              "message": CHECKPOINT_ERROR[1].format(pipeline_id=self.pipeline_id)}]}))
            self._state(update, chunk, end + 300, "FAILED", CHECKPOINT_ERROR)
            self._append(chunk)
            self.checkpoint_broken = True
            self.retries = 1
            self.fix_ms = end + rng.randint(25, 60) * MINUTE_MS
            self.checkpoint_next_ms = self.fix_ms + rng.randint(3 * HOUR_MS, 6 * HOUR_MS)
            self.next_ms, self.next_cause = end + 300 + MINUTE_MS, "RETRY_ON_FAILURE"
            return
        self._state(update, chunk, end, "STOPPING")
        for k, flow in enumerate(spec.flows):
            chunk.append((end + 500 + k, "INFO", "flow_progress", update.update_id, k,
                          {"flow_progress": {"status": "STOPPED"}}, f"Flow '{flow.name}' has STOPPED.", None))
        stopped = end + rng.randint(5, 20) * SECOND_MS
        self._state(update, chunk, stopped, "CANCELED")
        self._append(chunk)
        self.next_ms = stopped + rng.randint(10, 40) * SECOND_MS
        self.next_cause = rng.choice(["SERVICE_UPGRADE", "INFRASTRUCTURE_MAINTENANCE"])

    # -- reading

    def latest_update(self, now_ms: int) -> Update | None:
        i = bisect.bisect_right(self.update_ts, now_ms)
        return self.updates[i - 1] if i else None

    def state_and_health(self, now_ms: int) -> tuple[str, str]:
        update = self.latest_update(now_ms)
        if update is None:
            return "IDLE", "HEALTHY"
        state = update.state_at(now_ms)
        previous_failed = False
        i = bisect.bisect_right(self.update_ts, now_ms) - 1
        if i >= 1:
            previous_failed = self.updates[i - 1].terminal_state == "FAILED"
        if state == "FAILED":
            return "FAILED", "UNHEALTHY"
        if state in ("COMPLETED", "CANCELED"):
            return "IDLE", "HEALTHY"
        if state == "RUNNING":
            return "RUNNING", "HEALTHY"
        if state == "STOPPING":
            return "STOPPING", "HEALTHY"
        if state == "RESETTING":
            return "RESETTING", "UNHEALTHY" if previous_failed else "HEALTHY"
        if state in ("QUEUED", "CREATED"):
            return "DEPLOYING", "UNHEALTHY" if previous_failed else "HEALTHY"
        return ("RECOVERING" if previous_failed else "STARTING"), "UNHEALTHY" if previous_failed else "HEALTHY"

    def latest_updates_json(self, now_ms: int) -> list[dict]:
        i = bisect.bisect_right(self.update_ts, now_ms)
        return [{"update_id": u.update_id, "state": u.state_at(now_ms), "creation_time": iso_ms(u.creation_ms)}
                for u in reversed(self.updates[max(0, i - LATEST_UPDATES):i])]

    def cluster_id_at(self, now_ms: int) -> str | None:
        update = self.latest_update(now_ms)
        if update is None or update.cluster_id is None:
            return None
        return None if update.state_at(now_ms) in TERMINAL_UPDATE_STATES else update.cluster_id

    def status_json(self, now_ms: int) -> dict:
        state, health = self.state_and_health(now_ms)
        out = {"pipeline_id": self.pipeline_id, "name": self.spec.name, "state": state, "health": health,
               "creator_user_name": self.creator, "run_as_user_name": self.run_as,
               "latest_updates": self.latest_updates_json(now_ms)}
        cluster_id = self.cluster_id_at(now_ms)
        if cluster_id:
            out["cluster_id"] = cluster_id
        return out

    def spec_json(self) -> dict:
        spec = self.spec
        out = {
            "id": self.pipeline_id, "name": spec.name, "continuous": spec.continuous, "serverless": spec.serverless,
            "development": spec.development, "photon": True, "edition": "ADVANCED", "channel": "CURRENT",
            "catalog": spec.catalog, "schema": spec.schema,
            "libraries": [{"notebook": {"path": f"/Repos/data-eng/pipelines/{spec.name}"}}],
            "configuration": {"source_path": f"s3://landing/{spec.catalog}/{spec.schema}/"},
        }
        if not spec.serverless:
            out["clusters"] = [{"label": "default", "node_type_id": self.node_type,
                                "driver_node_type_id": self.node_type,
                                "autoscale": {"min_workers": self.min_workers, "max_workers": self.max_workers,
                                              "mode": "ENHANCED"},
                                "custom_tags": {"team": "data-eng", "pipeline": spec.name}}]
        if not spec.continuous:
            out["trigger"] = {"manual": {}}
        return out

    def get_json(self, now_ms: int) -> dict:
        out = self.status_json(now_ms)
        out["spec"] = self.spec_json()
        out["last_modified"] = self.last_modified_ms
        update = self.latest_update(now_ms)
        if update is not None:
            out["cause"] = update.cause
        return out

    def update_json(self, update: Update, now_ms: int) -> dict:
        out = {"pipeline_id": self.pipeline_id, "update_id": update.update_id, "cause": update.cause,
               "state": update.state_at(now_ms), "creation_time": update.creation_ms,
               "full_refresh": update.full_refresh, "validate_only": False,
               "config": {"id": self.pipeline_id, "name": self.spec.name, "continuous": self.spec.continuous}}
        if update.cluster_id and update.states[0][0] <= now_ms:
            out["cluster_id"] = update.cluster_id
        return out

    def event_json(self, event: tuple) -> dict:
        ts, seq, level, kind, update_id, flow, details, message, error = event
        origin = {"cloud": "AWS", "region": "us-west-2", "org_id": self.ws.workspace_id,
                  "pipeline_id": self.pipeline_id, "pipeline_type": "WORKSPACE", "pipeline_name": self.spec.name,
                  "update_id": update_id}
        update = self.updates_by_id.get(update_id)
        if update is not None and update.cluster_id:
            origin["cluster_id"] = update.cluster_id
        if flow >= 0:
            name = self.spec.flows[flow].name
            origin.update(flow_id=_uuid(self.ws.seed, self.pipeline_id, "flow", name), flow_name=name,
                          dataset_name=name)
        out = {"id": self.event_id(seq),
               "sequence": {"data_plane_id": {"instance": "execution", "seq_no": seq}, "control_plane_seq_no": seq},
               "origin": origin, "timestamp": iso_ms(ts), "message": message, "level": level,
               "maturity_level": "EVOLVING" if kind == "cluster_resources" else "STABLE",
               "event_type": kind, "details": _render_numbers(details) if self.string_numbers else details}
        if error:
            out["error"] = error
        return out


def _render_numbers(value):
    """Numbers as JSON strings, the way int64 fields come out of proto JSON."""
    if isinstance(value, dict):
        return {k: _render_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_numbers(v) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value


# ------------------------------------------------------------------------------------------------ filters

def _split_and(expression: str) -> list[str]:
    """Split on AND outside quoted strings."""
    parts, pending = [], None
    for piece in re.split(r"\s+and\s+", expression, flags=re.IGNORECASE):
        pending = piece if pending is None else f"{pending} AND {piece}"
        if pending.count("'") % 2 == 0:
            parts.append(pending.strip())
            pending = None
    if pending is not None:
        raise invalid_parameter(f"Invalid filter: unterminated string in '{expression}'")
    return parts


_COMPARISON = re.compile(r"^([A-Za-z_][\w.]*)\s*(>=|<=|!=|=|>|<)\s*'([^']*)'$")
_MEMBERSHIP = re.compile(r"^([A-Za-z_][\w.]*)\s+in\s*\((.*)\)$", re.IGNORECASE)
_FIELD = re.compile(r"^\s*([A-Za-z_][\w.]*)")


@dataclass
class EventFilter:
    """The parsed filter: a timestamp range (inclusive ms bounds) plus id, update_id and level conditions."""
    lo: int = 0
    hi: int = 2 ** 62
    conditions: list = field(default_factory=list)   # (field, op, values)

    def matches(self, pipeline: SimPipeline, event: tuple) -> bool:
        ts, seq, level, _, update_id, *_ = event
        if not self.lo <= ts <= self.hi:
            return False
        for name, op, values in self.conditions:
            actual = {"level": level, "update_id": update_id}.get(name)
            if name == "id":
                actual = pipeline.event_id(seq)
            if (actual in values) != (op in ("=", "in")):
                return False
        return True


def parse_filter(expression: str | None) -> EventFilter:
    """The events API's SQL-like filter: only timestamp, id, update_id and level can be filtered on."""
    result = EventFilter()
    if not expression or not expression.strip():
        return result
    for clause in _split_and(expression.strip()):
        name_match = _FIELD.match(clause)
        name = name_match.group(1).lower() if name_match else ""
        if name not in FILTERABLE_FIELDS:
            raise invalid_parameter(
                f"Invalid filter '{expression}': filtering on '{name or clause}' is not supported. The supported "
                f"fields are timestamp, id, update_id and level; filter event types on the client.")
        comparison, membership = _COMPARISON.match(clause), _MEMBERSHIP.match(clause)
        if comparison:
            op, value = comparison.group(2), comparison.group(3)
            if name == "timestamp":
                ms = parse_iso_ms(value)
                if op in (">", ">="):
                    result.lo = max(result.lo, ms + (op == ">"))
                elif op in ("<", "<="):
                    result.hi = min(result.hi, ms - (op == "<"))
                elif op == "=":
                    result.lo, result.hi = max(result.lo, ms), min(result.hi, ms)
                else:
                    raise invalid_parameter(f"Invalid filter '{expression}': timestamp does not support {op}")
                continue
            if op not in ("=", "!="):
                raise invalid_parameter(f"Invalid filter '{expression}': {name} supports only = and in (...)")
            values = {value.upper() if name == "level" else value}
        elif membership and name != "timestamp":
            op = "in"
            values = {v.strip().strip("'") for v in membership.group(2).split(",") if v.strip()}
            if name == "level":
                values = {v.upper() for v in values}
        else:
            raise invalid_parameter(f"Invalid filter '{expression}': cannot parse '{clause}'")
        if name == "level" and not values <= set(LEVELS):
            raise invalid_parameter(f"Invalid filter '{expression}': level must be one of {', '.join(LEVELS)}")
        result.conditions.append((name, op, values))
    return result


# ------------------------------------------------------------------------------------------------ the API

class PipelineSet:
    """The workspace's pipelines and the REST-shaped queries over them (held under the workspace's lock)."""

    def __init__(self, ws, n_pipelines: int = len(PIPELINES)):
        self.ws = ws
        self.pipelines: list[SimPipeline] = []
        for i in range(n_pipelines):
            spec = PIPELINES[i % len(PIPELINES)]
            if i >= len(PIPELINES):
                spec = PipelineDef(**{**spec.__dict__, "name": f"{spec.name}_{i // len(PIPELINES)}"})
            self.pipelines.append(SimPipeline(self, i, spec))
        self.by_id = {p.pipeline_id: p for p in self.pipelines}
        # Permission gaps: one pipeline the caller may list but whose event log it may not read.
        ids = sorted(self.by_id)
        self.forbidden_pipeline_id = (random.Random(f"{ws.seed}:forbidden-pipeline").choice(ids)
                                      if ids and ws.permission_gaps else None)
        self.event_queries: deque = deque(maxlen=EVENT_QUERY_LOG)
        self._log_lock = threading.Lock()

    def _now(self) -> int:
        now = self.ws.now_ms()
        for pipeline in self.pipelines:
            pipeline.extend(now)
        return now

    def _pipeline(self, pipeline_id: str) -> SimPipeline:
        pipeline = self.by_id.get(pipeline_id)
        if pipeline is None:
            raise does_not_exist(f"Pipeline {pipeline_id} does not exist.")
        return pipeline

    def list_pipelines(self, filter=None, max_results=None, page_token=None, order_by=None) -> dict:
        size = DEFAULT_PAGE if not max_results else max_results
        if size < 0 or size > LIST_MAX_RESULTS:
            raise invalid_parameter(f"max_results must be between 1 and {LIST_MAX_RESULTS}, got {max_results}")
        for value in order_by or ():
            if value.strip().lower() not in ("id", "id asc", "id desc", "name", "name asc", "name desc"):
                raise invalid_parameter(f"Invalid order_by: {value}")
        pattern = None
        if filter:
            match = re.match(r"^\s*name\s+LIKE\s+'([^']*)'\s*$", filter, re.IGNORECASE)
            if not match:
                raise invalid_parameter(f"Invalid filter '{filter}': only name LIKE '<pattern>' is supported here")
            pattern = re.compile("^" + ".*".join(map(re.escape, match.group(1).split("%"))) + "$", re.IGNORECASE)
        with self.ws.lock:
            now = self._now()
            ordered = sorted(self.pipelines, key=lambda p: p.pipeline_id)
            if pattern:
                ordered = [p for p in ordered if pattern.match(p.spec.name)]
            after = decode_page_token(page_token).get("p", "") if page_token else ""
            ordered = [p for p in ordered if p.pipeline_id > after]
            chunk = ordered[:size]
            out = {"statuses": [p.status_json(now) for p in chunk]}
            if len(ordered) > size:
                out["next_page_token"] = encode_page_token({"p": chunk[-1].pipeline_id})
            return out

    def get_pipeline(self, pipeline_id: str) -> dict:
        with self.ws.lock:
            now = self._now()
            return self._pipeline(pipeline_id).get_json(now)

    def list_updates(self, pipeline_id: str, max_results=None, page_token=None, until_update_id=None) -> dict:
        """Newest first, one page: the SDK returns it as is and the caller pages."""
        size = DEFAULT_PAGE if not max_results else max_results
        if size < 0 or size > UPDATES_MAX_RESULTS:
            raise invalid_parameter(f"max_results must be between 1 and {UPDATES_MAX_RESULTS}, got {max_results}")
        with self.ws.lock:
            now = self._now()
            pipeline = self._pipeline(pipeline_id)
            hi = bisect.bisect_right(pipeline.update_ts, now)
            if page_token:
                hi = min(hi, int(decode_page_token(page_token).get("i", 0)))
            lo = 0
            if until_update_id:
                until = pipeline.updates_by_id.get(until_update_id)
                if until is None:
                    raise does_not_exist(f"Update {until_update_id} does not exist in pipeline {pipeline_id}.")
                lo = pipeline.updates.index(until)
            picked = list(range(hi - 1, lo - 1, -1))[:size]
            out = {"updates": [pipeline.update_json(pipeline.updates[i], now) for i in picked]}
            if picked and picked[-1] > lo:
                out["next_page_token"] = encode_page_token({"i": picked[-1]})
            if not out["updates"]:
                del out["updates"]
            return out

    def get_update(self, pipeline_id: str, update_id: str) -> dict:
        with self.ws.lock:
            now = self._now()
            pipeline = self._pipeline(pipeline_id)
            update = pipeline.updates_by_id.get(update_id)
            if update is None or update.creation_ms > now:
                raise does_not_exist(f"Update {update_id} does not exist in pipeline {pipeline_id}.")
            return {"update": pipeline.update_json(update, now)}

    def list_events(self, pipeline_id: str, query: dict[str, list[str]]) -> dict:
        """GET /api/2.0/pipelines/{id}/events with the real rules; every request is logged for tests."""
        entry = {"pipeline_id": pipeline_id, "query": {k: list(v) for k, v in query.items()}, "status": 200,
                 "returned": 0}
        try:
            out = self._list_events(pipeline_id, query)
            entry["returned"] = len(out["events"])
            return out
        except ApiError as error:
            entry["status"] = error.status
            raise
        finally:
            with self._log_lock:
                self.event_queries.append(entry)

    def _list_events(self, pipeline_id: str, query: dict[str, list[str]]) -> dict:
        if pipeline_id == self.forbidden_pipeline_id:
            raise permission_denied(f"User does not have CAN VIEW permission on pipeline {pipeline_id}, which "
                                    "reading its event log requires.", "pipelines")
        unknown = set(query) - {"filter", "max_results", "order_by", "page_token"}
        if unknown:
            raise invalid_parameter(f"Unknown parameters: {', '.join(sorted(unknown))}")
        raw_max = (query.get("max_results") or [""])[-1]
        try:
            size = int(raw_max) if raw_max != "" else DEFAULT_PAGE
        except ValueError:
            raise invalid_parameter("Invalid value for parameter max_results: expected an integer") from None
        size = size or DEFAULT_PAGE
        if size < 0 or size > EVENTS_MAX_RESULTS:
            raise invalid_parameter(f"max_results must be between 1 and {EVENTS_MAX_RESULTS}, got {raw_max}")
        token = (query.get("page_token") or [""])[-1]
        filter_text = (query.get("filter") or [""])[-1]
        orders = [v for v in query.get("order_by", []) if v != ""]
        if token and (filter_text or orders):
            raise invalid_parameter("page_token cannot be combined with filter or order_by: "
                                    "only max_results may accompany a page_token")
        if token:
            cursor = decode_page_token(token)
            filter_text, descending, after = cursor.get("f", ""), cursor.get("d", True), cursor.get("k", ())
            if not (isinstance(filter_text, str) and isinstance(after, list) and len(after) == 2
                    and all(isinstance(v, int) for v in after)):
                raise invalid_parameter(f"Invalid page token: {token[:40]}")
        else:
            if len(orders) > 1:
                raise invalid_parameter("order_by takes one sort order")
            order = re.sub(r"\s+", " ", orders[0].strip().lower()) if orders else "timestamp desc"
            if order not in ("timestamp asc", "timestamp desc", "timestamp"):
                raise invalid_parameter(f"Invalid order_by '{orders[0]}': use 'timestamp asc' or 'timestamp desc'")
            descending, after = order == "timestamp desc", ()
        parsed = parse_filter(filter_text)
        with self.ws.lock:
            now = self._now()
            pipeline = self._pipeline(pipeline_id)
            hi_ts = min(parsed.hi, now)
            lo_i = bisect.bisect_left(pipeline.event_ts, parsed.lo)
            hi_i = bisect.bisect_right(pipeline.event_ts, hi_ts)
            if after:
                # The event with sequence number n sits at index n - 1: the page goes on right after it.
                position = int(after[1]) - 1
                if descending:
                    hi_i = min(hi_i, position)
                else:
                    lo_i = max(lo_i, position + 1)
            indexes = range(hi_i - 1, lo_i - 1, -1) if descending else range(lo_i, hi_i)
            page: list[tuple] = []
            more = False
            for i in indexes:
                event = pipeline.events[i]
                if not parsed.matches(pipeline, event):
                    continue
                if len(page) == size:
                    more = True
                    break
                page.append(event)
            out: dict = {"events": [pipeline.event_json(e) for e in page]}
            if more:
                out["next_page_token"] = encode_page_token({"f": filter_text, "d": descending,
                                                            "k": [page[-1][0], page[-1][1]]})
            return out

    def request_log(self) -> list[dict]:
        with self._log_lock:
            return list(self.event_queries)
