"""SQL on the simulated warehouses: an embedded DuckDB holding the system tables in their Databricks schemas, filled
from the same simulated activity the REST API shows, and the statement lifecycle both SQL protocols share (the
Thrift one in thrift.py, the Statement Execution API in server.py).

Statements are Databricks SQL; sqlglot reads them in its `databricks` dialect and writes DuckDB's, after three
rewrites that keep Databricks' semantics: the `system` catalog (a reserved name in DuckDB) is renamed,
current_date()/current_timestamp() mean *simulated* now, and DECIMAL x DECIMAL follows Spark's rule (a product of
two DECIMAL(38,18) is a DECIMAL(38,6)) instead of overflowing DuckDB's DECIMAL(38,36).

Rows carry a hidden visibility time; the tables a client sees are views over rows already visible at simulated
now, which is how billing records arrive hours late and corrections a day later.

The `main` catalog holds the simulated Delta tables (tables.py): DESCRIBE DETAIL, DESCRIBE HISTORY and SHOW TABLES
are not SELECTs and are answered from their commit history before any translation; SELECTs read their rows in
DuckDB like the system tables.
"""

from __future__ import annotations

import bisect
import datetime as dt
import json
import logging
import math
import re
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal

from .billing import BillingModel
from .queries import MAX_QUERY_MS, QueryLog
from .tables import CATALOG as TABLES_CATALOG
from .tables import DeltaTables, SqlTableError, answer
from .clusters import spark_node
from .common import DAY_MS, HOUR_MS, MINUTE_MS, ApiError, digest, does_not_exist, invalid_parameter, sql_timestamp
from .timeline import COLUMNS as JOB_RUN_TIMELINE_COLUMNS
from .timeline import RunTimeline, run_cost_truth
from .warehouse_events import VISIBLE_AFTER_MS, usage_truth, warehouse_events

log = logging.getLogger(__name__)

SIM_CATALOG = "sim_system"
SIM_MAIN = "sim_main"      # DuckDB reserves the name `main`

# The system tables, column by column, in Databricks types (system.compute.node_timeline etc. as documented;
# see /work/shared/reference/databricks-api.md).
USAGE_METADATA = ("cluster_id", "job_id", "warehouse_id", "instance_pool_id", "node_type", "job_run_id", "notebook_id",
                  "dlt_pipeline_id", "endpoint_name", "endpoint_id", "dlt_update_id", "dlt_maintenance_id",
                  "run_name", "job_name", "notebook_path", "central_clean_room_id", "source_region",
                  "destination_region", "app_id", "app_name", "metastore_id", "private_endpoint_name",
                  "storage_api_type", "budget_policy_id")
IDENTITY = ("run_as", "owned_by", "created_by")
FEATURES = ("jobs_tier", "sql_tier", "dlt_tier", "is_serverless", "is_photon", "serving_type")
TABLES: dict[str, list[tuple[str, str]]] = {
    "billing.usage": [
        ("record_id", "STRING"), ("account_id", "STRING"), ("workspace_id", "STRING"), ("sku_name", "STRING"),
        ("cloud", "STRING"), ("usage_start_time", "TIMESTAMP"), ("usage_end_time", "TIMESTAMP"),
        ("usage_date", "DATE"), ("custom_tags", "MAP<STRING, STRING>"), ("usage_unit", "STRING"),
        ("usage_quantity", "DECIMAL(38,18)"),
        ("usage_metadata", "STRUCT<" + ", ".join(f"{k}: STRING" for k in USAGE_METADATA) + ">"),
        ("identity_metadata", "STRUCT<run_as: STRING, owned_by: STRING, created_by: STRING>"),
        ("record_type", "STRING"), ("ingestion_date", "DATE"), ("billing_origin_product", "STRING"),
        ("product_features", "STRUCT<jobs_tier: STRING, sql_tier: STRING, dlt_tier: STRING, is_serverless: BOOLEAN, "
                             "is_photon: BOOLEAN, serving_type: STRING>"),
        ("usage_type", "STRING"),
    ],
    "billing.list_prices": [
        ("price_start_time", "TIMESTAMP"), ("price_end_time", "TIMESTAMP"), ("account_id", "STRING"),
        ("sku_name", "STRING"), ("cloud", "STRING"), ("currency_code", "STRING"), ("usage_unit", "STRING"),
        ("pricing", "STRUCT<default: DECIMAL(38,18), promotional: STRUCT<default: DECIMAL(38,18)>, "
                    "effective_list: STRUCT<default: DECIMAL(38,18)>>"),
    ],
    "compute.node_timeline": [
        ("account_id", "STRING"), ("workspace_id", "STRING"), ("cluster_id", "STRING"), ("instance_id", "STRING"),
        ("start_time", "TIMESTAMP"), ("end_time", "TIMESTAMP"), ("driver", "BOOLEAN"),
        ("cpu_user_percent", "DOUBLE"), ("cpu_system_percent", "DOUBLE"), ("cpu_wait_percent", "DOUBLE"),
        ("mem_used_percent", "DOUBLE"), ("mem_swap_percent", "DOUBLE"), ("network_sent_bytes", "BIGINT"),
        ("network_received_bytes", "BIGINT"), ("disk_free_bytes_per_mount_point", "MAP<STRING, BIGINT>"),
        ("node_type", "STRING"),
    ],
    "compute.warehouse_events": [
        ("account_id", "STRING"), ("workspace_id", "STRING"), ("warehouse_id", "STRING"), ("event_type", "STRING"),
        ("cluster_count", "INT"), ("event_time", "TIMESTAMP"),
    ],
    "query.history": [
        ("account_id", "STRING"), ("workspace_id", "STRING"), ("statement_id", "STRING"), ("session_id", "STRING"),
        ("execution_status", "STRING"), ("compute", "STRUCT<type: STRING, cluster_id: STRING, warehouse_id: STRING>"),
        ("executed_by_user_id", "STRING"), ("executed_by", "STRING"), ("statement_text", "STRING"),
        ("statement_type", "STRING"), ("error_message", "STRING"), ("client_application", "STRING"),
        ("client_driver", "STRING"), ("total_duration_ms", "BIGINT"), ("waiting_for_compute_duration_ms", "BIGINT"),
        ("waiting_at_capacity_duration_ms", "BIGINT"), ("execution_duration_ms", "BIGINT"),
        ("compilation_duration_ms", "BIGINT"), ("total_task_duration_ms", "BIGINT"),
        ("result_fetch_duration_ms", "BIGINT"), ("start_time", "TIMESTAMP"), ("end_time", "TIMESTAMP"),
        ("update_time", "TIMESTAMP"), ("read_partitions", "BIGINT"), ("pruned_files", "BIGINT"),
        ("read_files", "BIGINT"), ("read_rows", "BIGINT"), ("produced_rows", "BIGINT"), ("read_bytes", "BIGINT"),
        ("read_io_cache_percent", "INT"), ("from_result_cache", "BOOLEAN"), ("spilled_local_bytes", "BIGINT"),
        ("written_bytes", "BIGINT"), ("shuffle_read_bytes", "BIGINT"),
    ],
    # Serving, audit and predictive optimization (serving.py, audit.py, maintenance.py).
    "serving.served_entities": [
        ("account_id", "STRING"), ("workspace_id", "STRING"), ("served_entity_id", "STRING"), ("created_by", "STRING"),
        ("endpoint_name", "STRING"), ("endpoint_id", "STRING"), ("served_entity_name", "STRING"),
        ("entity_type", "STRING"), ("entity_name", "STRING"), ("entity_version", "STRING"),
        ("endpoint_config_version", "INT"), ("task", "STRING"), ("change_time", "TIMESTAMP"),
        ("endpoint_delete_time", "TIMESTAMP"),
    ],
    "serving.endpoint_usage": [
        ("account_id", "STRING"), ("workspace_id", "STRING"), ("client_request_id", "STRING"),
        ("databricks_request_id", "STRING"), ("requester", "STRING"), ("status_code", "INT"),
        ("request_time", "TIMESTAMP"), ("input_token_count", "BIGINT"), ("output_token_count", "BIGINT"),
        ("input_character_count", "BIGINT"), ("output_character_count", "BIGINT"),
        ("usage_context", "MAP<STRING, STRING>"), ("request_streaming", "BOOLEAN"), ("served_entity_id", "STRING"),
    ],
    "access.audit": [
        ("account_id", "STRING"), ("workspace_id", "STRING"), ("version", "STRING"), ("event_time", "TIMESTAMP"),
        ("event_date", "DATE"), ("source_ip_address", "STRING"), ("user_agent", "STRING"), ("session_id", "STRING"),
        ("user_identity", "STRUCT<email: STRING, subject_name: STRING>"), ("service_name", "STRING"),
        ("action_name", "STRING"), ("request_id", "STRING"), ("request_params", "MAP<STRING, STRING>"),
        ("response", "STRUCT<status_code: INT, error_message: STRING, result: STRING>"), ("audit_level", "STRING"),
        ("event_id", "STRING"), ("identity_metadata", "STRUCT<run_by: STRING, run_as: STRING>"),
    ],
    "storage.predictive_optimization_operations_history": [
        ("account_id", "STRING"), ("workspace_id", "STRING"), ("start_time", "TIMESTAMP"), ("end_time", "TIMESTAMP"),
        ("metastore_name", "STRING"), ("catalog_name", "STRING"), ("schema_name", "STRING"), ("table_id", "STRING"),
        ("table_name", "STRING"), ("operation_type", "STRING"), ("operation_id", "STRING"),
        ("operation_status", "STRING"), ("operation_metrics", "MAP<STRING, STRING>"), ("usage_unit", "STRING"),
        ("usage_quantity", "DECIMAL(38,18)"),
    ],
    "lakeflow.job_run_timeline": JOB_RUN_TIMELINE_COLUMNS,
}
DECIMAL_PRODUCT = re.compile(r"DECIMAL\((\d+),\s*(\d+)\)")


class SqlError(Exception):
    """A statement that failed the way Databricks SQL fails: an error class, a SQLSTATE and a message."""

    def __init__(self, message: str, sql_state: str = "42000", error_code: str = "BAD_REQUEST"):
        super().__init__(message)
        self.message, self.sql_state, self.error_code = message, sql_state, error_code


@dataclass
class Result:
    columns: list[tuple[str, str]]      # (name, Databricks type text)
    rows: list[tuple]


class SystemTables:
    """DuckDB with the system tables, kept up to date with the simulated world (call refresh before reading)."""

    def __init__(self, ws, billing: BillingModel, queries: QueryLog, delta: DeltaTables,
                 node_lag_ms: int = 3 * MINUTE_MS, node_retention_ms: int = HOUR_MS,
                 history_lag_ms: int = 10 * MINUTE_MS, timeline: RunTimeline | None = None):
        # duckdb is loaded late, on purpose: it is heavy and only this path needs it.
        import duckdb
        import sqlglot  # noqa: F401  (fail here, at first use, when the simulator's SQL extras are missing)

        self.ws, self.billing, self.queries, self.delta = ws, billing, queries, delta
        self.node_lag_ms, self.node_retention_ms, self.history_lag_ms = node_lag_ms, node_retention_ms, \
            history_lag_ms
        self.timeline = timeline or RunTimeline(ws)
        self.con = duckdb.connect()
        self.con.execute("SET TimeZone = 'UTC'")
        self.con.execute(f"ATTACH ':memory:' AS {SIM_CATALOG}")
        self._duck_types = {}
        for schema in ["raw"] + sorted({name.split(".")[0] for name in TABLES}):
            self.con.execute(f"CREATE SCHEMA {SIM_CATALOG}.{schema}")
        # sqlglot is loaded late, on purpose: it is heavy and only this path needs it.
        from sqlglot import exp
        self.sqlglot_schema: dict = {"system": {}}
        for name, columns in TABLES.items():
            schema, table = name.split(".")
            # Naive TIMESTAMP holding UTC: the session time zone is UTC, as on a Databricks SQL warehouse.
            duck = [(c, exp.DataType.build(t, dialect="databricks").sql("duckdb").replace("TIMESTAMPTZ", "TIMESTAMP"))
                    for c, t in columns]
            self._duck_types[name] = dict(duck)
            raw = f"{SIM_CATALOG}.raw.{schema}_{table}"
            self.con.execute(f"CREATE TABLE {raw} ({', '.join(f'{c} {t}' for c, t in duck)}, _visible_at TIMESTAMP)")
            self.con.execute(f"CREATE VIEW {SIM_CATALOG}.{name} AS SELECT * EXCLUDE (_visible_at) FROM {raw} "
                             f"WHERE _visible_at <= getvariable('sim_now')")
            self.sqlglot_schema["system"].setdefault(schema, {})[table] = dict(columns)
        self.con.execute(f"ATTACH ':memory:' AS {SIM_MAIN}")
        self.sqlglot_schema[TABLES_CATALOG] = {}
        for name, table in delta.tables.items():
            _, schema, table_name = name.split(".")
            if schema not in self.sqlglot_schema[TABLES_CATALOG]:
                self.con.execute(f"CREATE SCHEMA {SIM_MAIN}.{schema}")
            columns = dict(table.spec.columns)
            duck = {c: exp.DataType.build(t, dialect="databricks").sql("duckdb").replace("TIMESTAMPTZ", "TIMESTAMP")
                    for c, t in columns.items()}
            self._duck_types[name] = duck
            self.con.execute(f"CREATE TABLE {SIM_MAIN}.{schema}.{table_name} "
                             f"({', '.join(f'{c} {t}' for c, t in duck.items())})")
            self.sqlglot_schema[TABLES_CATALOG].setdefault(schema, {})[table_name] = columns
        self._prices_loaded = False
        self._nodes_until = None
        self._events_done: dict[str, int] = {}
        self._history_floor: dict[str, tuple] = {}
        self._history_done: set[str] = set()
        self._node_cache: dict = {}
        self.revoked: set[str] = set()      # system tables the caller may not SELECT (SqlService.revoke_select)

    # -- refresh

    def refresh(self, now_ms: int) -> None:
        """Append everything that has happened by now_ms. Caller holds the engine lock (not the workspace lock)."""
        ws = self.ws
        with ws.lock:
            ws.advance(now_ms)
            self.queries.extend(now_ms)
            self.billing.advance(now_ms)
            usage = self.billing.drain()
            nodes = self._node_rows(now_ms)
            events = self._warehouse_event_rows(now_ms)
            history = self._history_rows(now_ms)
            run_slices = self.timeline.rows(now_ms)
            self.delta.advance(now_ms)
            table_rows = self.delta.drain_rows()
            activity = [stream.drain(now_ms) for stream in ws.activity]
        if not self._prices_loaded:
            self._load_prices()
        self._insert_usage(usage)
        self._insert("compute_node_timeline", nodes)
        self._insert("compute_warehouse_events", events)
        self._insert("query_history", history)
        self._insert("lakeflow_job_run_timeline", run_slices)
        for name, rows in table_rows.items():
            self._insert_table_rows(name, rows)
        for drained in activity:
            for table, rows in drained.items():
                self._insert(table, rows)
        if nodes:
            cutoff = sql_timestamp(now_ms - self.node_retention_ms)
            self.con.execute(f"DELETE FROM {SIM_CATALOG}.raw.compute_node_timeline WHERE end_time < ?", [cutoff])
        self.con.execute(f"SET VARIABLE sim_now = TIMESTAMP '{sql_timestamp(now_ms).isoformat(sep=' ')}'")

    def _insert(self, table: str, rows: list[dict] | dict[str, list]) -> None:
        """Bulk insert through a pandas frame (DuckDB's executemany is far too slow for thousands of rows).
        rows: a list of dicts, or columns (name -> values)."""
        if not rows:
            return
        # pandas is loaded late, on purpose: it is heavy and only this path needs it.
        import pandas as pd

        types = self._duck_types[table.replace("_", ".", 1)]
        frame = pd.DataFrame(rows)       # noqa: F841  (DuckDB reads the local variable by name)
        present = set(rows) if isinstance(rows, dict) else set(rows[0])
        select = []
        for column, duck in list(types.items()) + [("_visible_at", "TIMESTAMP")]:
            if column not in present and f"{column}_k" not in present:
                select.append(f"CAST(NULL AS {duck})")
            elif duck == "TIMESTAMP":
                select.append(f"epoch_ms(CAST(frame.{column} AS BIGINT))")
            elif duck == "DATE":      # days since the epoch
                select.append(f"CAST(DATE '1970-01-01' + CAST(frame.{column} AS INTEGER) AS DATE)")
            elif duck.startswith("MAP("):
                value_type = "BIGINT" if "BIGINT" in duck else "VARCHAR"
                select.append(f"MAP(CAST(frame.{column}_k AS VARCHAR[]), CAST(frame.{column}_v AS {value_type}[]))")
            elif duck.startswith("STRUCT("):
                select.append(f"CAST(json(frame.{column}) AS {duck})")
            else:
                select.append(f"CAST(frame.{column} AS {duck})")
        self.con.execute(f"INSERT INTO {SIM_CATALOG}.raw.{table} SELECT {', '.join(select)} FROM frame")

    def _insert_table_rows(self, name: str, rows: list[dict]) -> None:
        """Rows of a simulated Delta table (timestamps in epoch ms), in its own columns, no visibility delay."""
        if not rows:
            return
        # pandas is loaded late, on purpose: it is heavy and only this path needs it.
        import pandas as pd

        frame = pd.DataFrame(rows)       # noqa: F841  (DuckDB reads the local variable by name)
        select = []
        for column, duck in self._duck_types[name].items():
            if column not in frame:
                select.append(f"CAST(NULL AS {duck})")
            elif duck == "TIMESTAMP":
                select.append(f"epoch_ms(CAST(frame.{column} AS BIGINT))")
            else:
                select.append(f"CAST(frame.{column} AS {duck})")
        _, schema, table = name.split(".")
        self.con.execute(f"INSERT INTO {SIM_MAIN}.{schema}.{table} SELECT {', '.join(select)} FROM frame")

    def _load_prices(self) -> None:
        rows = []
        for p in self.billing.list_price_rows():
            price = str(p["price"])
            rows.append({**{k: v for k, v in p.items() if k != "price"},
                         "price_end_time": p["price_end_time"] if p["price_end_time"] is not None else None,
                         "pricing": json.dumps({"default": price, "promotional": {"default": price},
                                                "effective_list": {"default": price}}),
                         "_visible_at": 0})
        # pandas is loaded late, on purpose: it is heavy and only this path needs it.
        import pandas as pd
        frame = pd.DataFrame(rows)  # noqa: F841
        types = self._duck_types["billing.list_prices"]
        self.con.execute(
            f"INSERT INTO {SIM_CATALOG}.raw.billing_list_prices SELECT epoch_ms(CAST(price_start_time AS BIGINT)), "
            f"CASE WHEN price_end_time IS NULL THEN NULL ELSE epoch_ms(CAST(price_end_time AS BIGINT)) END, "
            f"account_id, sku_name, cloud, currency_code, usage_unit, CAST(json(pricing) AS {types['pricing']}), "
            f"epoch_ms(0) FROM frame")
        self._prices_loaded = True

    def _insert_usage(self, usage) -> None:
        if not usage:
            return
        ws = self.ws
        encoded: dict[str, tuple] = {}
        names = ("record_id", "workspace_id", "sku_name", "usage_start_time", "usage_end_time", "usage_date",
                 "custom_tags_k", "custom_tags_v", "usage_quantity", "usage_metadata", "identity_metadata",
                 "record_type", "ingestion_date", "billing_origin_product", "product_features", "usage_type",
                 "_visible_at")
        columns: dict[str, list] = {name: [] for name in names}
        append = [columns[name].append for name in names]
        for r in usage:
            b = r.billable
            a = encoded.get(b.key)
            if a is None:
                a = encoded[b.key] = (
                    list(b.tags), list(b.tags.values()), json.dumps({k: b.meta.get(k) for k in USAGE_METADATA}),
                    json.dumps({k: b.identity.get(k) for k in IDENTITY}),
                    json.dumps({k: b.features.get(k) for k in FEATURES}))
            for add, value in zip(append, (
                    r.record_id, b.workspace_id, b.sku, r.start_ms, r.end_ms, r.start_ms // DAY_MS, a[0], a[1],
                    str(r.quantity), a[2], a[3], r.record_type, r.visible_ms // DAY_MS, b.product, a[4],
                    b.usage_type, r.visible_ms)):
                add(value)
        n = len(usage)
        columns.update(account_id=[ws.account_id] * n, cloud=["AWS"] * n, usage_unit=["DBU"] * n)
        self._insert("billing_usage", columns)

    def _node_rows(self, now_ms: int) -> list[dict]:
        """Per-minute rows of every node of every running cluster, for the minutes that ended since last time."""
        end = now_ms // MINUTE_MS * MINUTE_MS
        start = self._nodes_until if self._nodes_until is not None else \
            max(self.ws.world_start_ms, end - self.node_retention_ms) // MINUTE_MS * MINUTE_MS
        if end <= start:
            return []
        self._nodes_until = end
        rows: list[dict] = []
        ws = self.ws
        for cluster in ws.clusters:
            i = max(bisect.bisect_right(cluster.transition_ts, start) - 1, 0)
            while i < len(cluster.transitions) and cluster.transitions[i][0] < end:
                ts, state, _, workers = cluster.transitions[i]
                until = cluster.transitions[i + 1][0] if i + 1 < len(cluster.transitions) else end
                if state in ("RUNNING", "RESIZING", "RESTARTING"):
                    s = bisect.bisect_right(cluster.session_starts, ts) - 1
                    session = cluster.sessions[s]
                    self._cluster_minutes(rows, cluster.spec, session.start_ms, session.running_ms,
                                          workers, max(ts, start), min(until, end), now_ms)
                i += 1
        runs = ws.cluster_set.job_cluster_runs
        lo = bisect.bisect_left(runs, (start - ws.job_set.max_run_span_ms - 1, 0), key=lambda r: (r.start_ms, r.run_id))
        for run in runs[lo:]:
            if run.start_ms >= end:
                break
            if run.ready_ms and run.ready_ms < end and run.end_ms > start:
                spec = run.job.cluster_spec
                self._cluster_minutes(rows, spec, run.exec_start_ms, run.ready_ms, spec.num_workers,
                                      max(run.ready_ms, start), min(run.end_ms, end), now_ms,
                                      cluster_id=run.cluster_id)
        return rows

    def _cluster_minutes(self, rows, spec, session_start, running_ms, workers, a, b, now_ms, cluster_id=None):
        cluster_id = cluster_id or spec.cluster_id
        seed = self.ws.seed
        base = (0.06, 0.3, 0.55, 0.9)[digest(seed, cluster_id, "load", size=1)[0] % 4]
        first = (a + MINUTE_MS - 1) // MINUTE_MS * MINUTE_MS
        for minute in range(first, b - MINUTE_MS + 1, MINUTE_MS):
            wave = 0.12 * math.sin(minute / (47 * MINUTE_MS))
            for k in range(workers + 1):
                key = (cluster_id, session_start, k)
                instance = self._node_cache.get(key)
                if instance is None:
                    node = spark_node(cluster_id, session_start, k, running_ms)
                    instance = self._node_cache[key] = node["instance_id"]
                n = digest(seed, cluster_id, k, minute, size=8)
                driver = k == 0
                load = min(0.99, max(0.0, base + wave + (n[0] - 128) / 1280))
                if driver:
                    load *= 0.5
                # Incident scenarios (scenarios.py) may stress this node's minute.
                rows.append(self.ws.scenarios.apply("node_minute", minute, {
                    "account_id": self.ws.account_id, "workspace_id": str(self.ws.workspace_id),
                    "cluster_id": cluster_id, "instance_id": instance, "start_time": minute,
                    "end_time": minute + MINUTE_MS, "driver": driver,
                    "cpu_user_percent": round(load * 88 + n[1] / 64, 2),
                    "cpu_system_percent": round(1.5 + n[2] / 48, 2),
                    "cpu_wait_percent": round(n[3] / 80, 2),
                    # Memory in use moves slowly from minute to minute (a few points, not ten): the busiest nodes
                    # stay under 90%, so a healthy workspace does not flap across the critical threshold.
                    "mem_used_percent": round(min(99.0, 30 + load * 55 + n[4] / 64), 2),
                    "mem_swap_percent": round(n[5] / 17 if load > 0.8 else 0.0, 2),
                    "network_sent_bytes": int(load * 1.5e8 * (0.5 + n[6] / 255)) + 20_000,
                    "network_received_bytes": int(load * 2.5e8 * (0.5 + n[7] / 255)) + 30_000,
                    "disk_free_bytes_per_mount_point_k": ["/", "/local_disk0"],
                    "disk_free_bytes_per_mount_point_v": [
                        int(12e9 - n[2] * 2e7), int(150e9 * (1 - 0.6 * load) - n[3] * 1e8)],
                    "node_type": spec.driver_node_type_id if driver else spec.node_type_id,
                    "_visible_at": minute + MINUTE_MS + self.node_lag_ms}, n))

    def _warehouse_event_rows(self, now_ms: int) -> list[dict]:
        rows = []
        for w in self.ws.warehouses:
            done = self._events_done.get(w.id, 0)
            hi = bisect.bisect_right(w.transition_ts, now_ms)
            for ts, event_type, clusters in warehouse_events(w, done, hi):
                rows.append({"account_id": self.ws.account_id, "workspace_id": str(self.ws.workspace_id),
                             "warehouse_id": w.id, "event_type": event_type, "cluster_count": clusters,
                             "event_time": ts, "_visible_at": ts + VISIBLE_AFTER_MS})
            self._events_done[w.id] = hi
        return rows

    def _history_rows(self, now_ms: int) -> list[dict]:
        rows = []
        for warehouse_id, load in self.queries.loads.items():
            floor = self._history_floor.get(warehouse_id, (self.ws.world_start_ms, ""))
            lo = bisect.bisect_left(load.keys, floor)
            new_floor = None
            for query in load.queries[lo:]:
                if query.start_ms > now_ms:
                    break
                if query.query_id in self._history_done:
                    continue
                if query.end_ms > now_ms:
                    new_floor = new_floor or query.key
                    continue
                self._history_done.add(query.query_id)
                wait_compute = query.queue_ms if query.provisioning else 0
                rows.append({
                    "account_id": self.ws.account_id, "workspace_id": str(self.ws.workspace_id),
                    "statement_id": query.query_id, "session_id": query.session_id,
                    "execution_status": query.status,
                    "compute": json.dumps({"type": "WAREHOUSE", "cluster_id": None, "warehouse_id": warehouse_id}),
                    "executed_by_user_id": str(abs(hash(query.user)) % 10**15), "executed_by": query.user,
                    "statement_text": query.text, "statement_type": query.statement_type,
                    "error_message": query.error or None, "client_application": query.client,
                    "total_duration_ms": query.end_ms - query.start_ms,
                    "waiting_for_compute_duration_ms": wait_compute,
                    "waiting_at_capacity_duration_ms": query.queue_ms - wait_compute,
                    "execution_duration_ms": query.exec_ms, "compilation_duration_ms": query.compile_ms,
                    "total_task_duration_ms": query.exec_ms * 4, "result_fetch_duration_ms": query.fetch_ms,
                    "start_time": query.start_ms, "end_time": query.end_ms, "update_time": query.end_ms,
                    "read_partitions": max(1, query.files_read // 4), "pruned_files": query.files_read // 2,
                    "read_files": query.files_read, "read_rows": query.rows_read,
                    "produced_rows": query.rows_produced, "read_bytes": query.read_bytes,
                    "read_io_cache_percent": int(100 * query.read_cache_bytes / query.read_bytes)
                    if query.read_bytes else 0,
                    "from_result_cache": query.cache_hit, "spilled_local_bytes": query.spill_bytes,
                    "written_bytes": query.rows_read * 40 if query.statement_type in ("INSERT", "MERGE") else 0,
                    "shuffle_read_bytes": query.read_bytes // 5,
                    "_visible_at": query.end_ms + self.history_lag_ms})
            # Everything before the oldest unfinished query is in; statements clients send start at now.
            self._history_floor[warehouse_id] = new_floor or (now_ms - MAX_QUERY_MS, "")
        return rows

    # -- execution

    def execute(self, statement: str, now_ms: int, parameters: dict | None = None) -> Result:
        self.refresh(now_ms)
        try:
            described = answer(self.delta, statement)
        except SqlTableError as exc:
            raise SqlError(exc.message, exc.sql_state, exc.error_code) from None
        if described is not None:
            return Result(*described)
        denied = next((t for t in self.revoked if t in statement.lower()), None)
        if denied:
            raise SqlError(f"[INSUFFICIENT_PERMISSIONS] Insufficient privileges: User does not have SELECT on Table "
                           f"'{denied}'.", "42501", "PERMISSION_DENIED")
        sql = translate(statement, now_ms, self.sqlglot_schema, parameters)
        # duckdb is loaded late, on purpose: it is heavy and only this path needs it.
        import duckdb
        try:
            cursor = self.con.execute(sql)
            rows = cursor.fetchall()
            description = cursor.description or []
        except duckdb.CatalogException as exc:
            raise SqlError(f"[TABLE_OR_VIEW_NOT_FOUND] {_clean(exc)}", "42P01", "TABLE_OR_VIEW_NOT_FOUND") from None
        except duckdb.BinderException as exc:
            raise SqlError(f"[UNRESOLVED_COLUMN] {_clean(exc)}", "42703", "BAD_REQUEST") from None
        except duckdb.Error as exc:
            raise SqlError(f"[INTERNAL_ERROR] {_clean(exc)}", "XX000", "BAD_REQUEST") from None
        return Result([(d[0], databricks_type(str(d[1]))) for d in description], rows)


def _clean(exc: Exception) -> str:
    return str(exc).replace(SIM_CATALOG, "system").replace(SIM_MAIN, TABLES_CATALOG).splitlines()[0]


def databricks_type(duck: str) -> str:
    """DuckDB's name of a result column type, as Databricks SQL names it."""
    duck = duck.upper()
    if duck.startswith("DECIMAL"):
        return duck.replace(" ", "")
    if duck.startswith("MAP"):
        return "MAP"
    if duck.startswith("STRUCT"):
        return "STRUCT"
    if duck.endswith("[]"):
        return "ARRAY"
    return {"VARCHAR": "STRING", "BIGINT": "BIGINT", "HUGEINT": "BIGINT", "UBIGINT": "BIGINT", "INTEGER": "INT",
            "UINTEGER": "BIGINT", "SMALLINT": "SMALLINT", "TINYINT": "TINYINT", "DOUBLE": "DOUBLE",
            "FLOAT": "FLOAT", "BOOLEAN": "BOOLEAN", "DATE": "DATE", "TIMESTAMP": "TIMESTAMP",
            "TIMESTAMP WITH TIME ZONE": "TIMESTAMP", "BLOB": "BINARY", "INTERVAL": "INTERVAL",
            "\"NULL\"": "VOID", "NULL": "VOID"}.get(duck, "STRING")


def render_value(value, type_text: str):
    """A result value as Databricks renders it in text: numbers, ISO dates and timestamps, JSON for complex types."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str, separators=(",", ":"))
    return str(value)


# -- translation -------------------------------------------------------------------------------------------------

def translate(statement: str, now_ms: int, schema: dict, parameters: dict | None = None) -> str:
    """Databricks SQL -> DuckDB SQL for the simulated system tables."""
    # sqlglot is loaded late, on purpose: it is heavy and only this path needs it.
    import sqlglot
    from sqlglot import exp

    try:
        trees = [t for t in sqlglot.parse(statement, read="databricks") if t is not None]
    except sqlglot.errors.ParseError as exc:
        raise SqlError(f"[PARSE_SYNTAX_ERROR] Syntax error: {str(exc).splitlines()[0]}", "42601",
                       "BAD_REQUEST") from None
    if len(trees) != 1:
        raise SqlError("[PARSE_SYNTAX_ERROR] Exactly one statement is expected.", "42601", "BAD_REQUEST")
    tree = trees[0]
    now = sql_timestamp(now_ms)

    def rewrite(node):
        if isinstance(node, exp.DataType) and node.this in (exp.DataType.Type.TIMESTAMPTZ,
                                                           exp.DataType.Type.TIMESTAMPLTZ):
            # Databricks' TIMESTAMP is a point in time shown in the session zone (UTC here): naive UTC in DuckDB.
            return exp.DataType.build("TIMESTAMP")
        if isinstance(node, exp.Table) and node.catalog.lower() == "system":
            node.set("catalog", exp.to_identifier(SIM_CATALOG))
        elif isinstance(node, exp.Table) and node.catalog.lower() == TABLES_CATALOG:
            node.set("catalog", exp.to_identifier(SIM_MAIN))
        elif isinstance(node, exp.CurrentDate):
            return exp.cast(exp.Literal.string(now.date().isoformat()), "DATE")
        elif isinstance(node, (exp.CurrentTimestamp, exp.CurrentDatetime)):
            return exp.cast(exp.Literal.string(now.isoformat(sep=" ")), "TIMESTAMP")
        elif isinstance(node, exp.Placeholder) and node.name:
            if parameters is None or node.name not in parameters:
                raise SqlError(f"[UNBOUND_SQL_PARAMETER] Found the unbound parameter: {node.name}.", "42P02",
                               "BAD_REQUEST")
            value, type_name = parameters[node.name]
            if value is None:
                return exp.Null()
            literal = exp.Literal.string(str(value))
            return exp.cast(literal, type_name or "STRING") if (type_name or "STRING").upper() != "STRING" else literal
        return node

    _spark_decimal_products(tree, schema)
    tree = tree.transform(rewrite)
    return tree.sql(dialect="duckdb")


def _spark_decimal_products(tree, schema: dict) -> None:
    """Make DECIMAL x DECIMAL products follow Spark (precision capped at 38, scale cut to at least 6) rather than
    DuckDB (scale s1+s2, so two DECIMAL(38,18) overflow past 99.99)."""
    # sqlglot is loaded late, on purpose: it is heavy and only this path needs it.
    from sqlglot import exp
    from sqlglot.optimizer.annotate_types import annotate_types
    from sqlglot.optimizer.qualify import qualify

    originals = list(tree.find_all(exp.Mul))
    if not originals:
        return
    try:
        typed = qualify(tree.copy(), schema=schema, dialect="databricks", validate_qualify_columns=False,
                        identify=False)
        typed = annotate_types(typed, schema=schema, dialect="databricks")
    except Exception:   # noqa: BLE001 - a statement the optimizer cannot type keeps DuckDB's own arithmetic
        return
    products = list(typed.find_all(exp.Mul))
    if len(products) != len(originals):
        return
    for original, product in zip(originals, products):
        left, right = product.left.type, product.right.type
        if not (left and right and left.is_type(exp.DataType.Type.DECIMAL) and
                right.is_type(exp.DataType.Type.DECIMAL)):
            continue
        p1, s1 = _precision_scale(left)
        p2, s2 = _precision_scale(right)
        precision, scale = p1 + p2 + 1, s1 + s2
        if precision <= 38:
            continue
        scale = max(min(scale, 6), scale - (precision - 38))
        half = max(scale, 1)
        def cast(node, type_text):       # exp.cast() would keep an inner cast to another DECIMAL as it is
            return exp.Cast(this=node, to=exp.DataType.build(type_text))

        replacement = cast(exp.Paren(this=exp.Mul(this=cast(original.left.copy(), f"DECIMAL(38, {half})"),
                                                  expression=cast(original.right.copy(), f"DECIMAL(38, {half})"))),
                           f"DECIMAL(38, {scale})")
        original.replace(replacement)


def _precision_scale(data_type) -> tuple[int, int]:
    match = DECIMAL_PRODUCT.search(data_type.sql("databricks").replace(" ", ""))
    return (int(match.group(1)), int(match.group(2))) if match else (38, 18)


# -- the statement lifecycle both protocols share -------------------------------------------------------------------

PENDING, RUNNING, SUCCEEDED, FAILED, CANCELED, CLOSED = "PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELED", \
    "CLOSED"
MAX_STATEMENTS = 2_000
STATEMENT_KEYWORDS = ("SELECT", "INSERT", "MERGE", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER", "SHOW",
                      "DESCRIBE", "EXPLAIN", "SET", "USE", "WITH", "VALUES")


@dataclass
class Statement:
    statement_id: str
    warehouse_id: str
    text: str
    principal: str
    client: str
    submitted_ms: int
    runs_at_ms: int
    timeout_s: float = 0.0
    parameters: dict | None = None
    state: str = PENDING
    result: Result | None = None
    error: SqlError | None = None
    finished_ms: int = 0
    row_offset: int = 0                 # Thrift: rows handed out so far
    done: threading.Event = field(default_factory=threading.Event)


class SqlService:
    """The simulated warehouses' SQL side: statements, the system tables behind them, the query history."""

    LONG_POLL_S = 1.0

    def __init__(self, ws, billing_lag_seconds: float = 7200, billing_history_days: int = 40,
                 chunk_rows: int = 10_000, node_lag_seconds: float = 180, timeline_lag_seconds: float = 600,
                 history_lag_seconds: float = 600):
        self.ws = ws
        self.queries = QueryLog(ws)
        self.billing = BillingModel(ws, lag_ms=int(billing_lag_seconds * 1000), history_days=billing_history_days)
        self.chunk_rows = chunk_rows
        self.delta = DeltaTables(ws)
        self.node_lag_ms = int(node_lag_seconds * 1000)
        self.history_lag_ms = int(history_lag_seconds * 1000)
        self.timeline = RunTimeline(ws, lag_ms=int(timeline_lag_seconds * 1000))
        self._tables: SystemTables | None = None
        self._engine_lock = threading.Lock()
        self._lock = threading.Lock()
        self.statements: dict[str, Statement] = {}
        self.executed: deque[tuple[str, str]] = deque(maxlen=10_000)   # (warehouse_id, statement text), for tests

    @property
    def tables(self) -> SystemTables:
        if self._tables is None:
            self._tables = SystemTables(self.ws, self.billing, self.queries, self.delta, node_lag_ms=self.node_lag_ms,
                                        history_lag_ms=self.history_lag_ms, timeline=self.timeline)
        return self._tables

    def revoke_select(self, full_name: str, revoked: bool = True) -> None:
        """SELECT on the system table (e.g. system.access.audit) is refused from now on (or allowed again)."""
        with self._engine_lock:
            (self.tables.revoked.add if revoked else self.tables.revoked.discard)(full_name.lower())

    def stop_table_writes(self, full_name: str) -> None:
        """From now on nothing writes the Delta table (catalog.schema.table): it goes stale. Unknown names raise
        the 404 a REST handler returns."""
        self._table_intervention(full_name, self.delta.stop_writes)

    def drop_table(self, full_name: str) -> None:
        """DROP TABLE: DESCRIBE and SELECT answer TABLE_OR_VIEW_NOT_FOUND from now on."""
        def drop(name: str, now_ms: int) -> None:
            table = self.delta.drop(name)
            if self._tables is not None:
                _, schema, table_name = table.spec.name.split(".")
                self._tables.con.execute(f"DROP TABLE {SIM_MAIN}.{schema}.{table_name}")
                del self._tables.sqlglot_schema[TABLES_CATALOG][schema][table_name]
        self._table_intervention(full_name, drop)

    def _table_intervention(self, full_name: str, action) -> None:
        with self._engine_lock, self.ws.lock:
            now = self.ws.now_advanced()
            self.delta.advance(now)       # what was due before now still happens
            try:
                action(full_name, now)
            except SqlTableError:
                raise does_not_exist(f"Table {full_name} does not exist.") from None

    def table_truth(self, full_name: str) -> dict:
        with self._engine_lock, self.ws.lock:
            self.delta.advance(self.ws.now_advanced())
            return self.delta.truth(full_name)

    def shutdown(self) -> None:
        with self._engine_lock:
            if self._tables is not None:
                self._tables.con.close()
                self._tables = None

    def warehouse(self, warehouse_id: str):
        warehouse = self.ws.warehouse_set.by_id.get(warehouse_id)
        if warehouse is None:
            raise does_not_exist(f"Warehouse {warehouse_id} does not exist.")
        return warehouse

    def submit(self, warehouse_id: str, text: str, principal: str, client: str, timeout_s: float = 0.0,
               parameters: dict | None = None) -> Statement:
        """Accept a statement: a stopped warehouse starts, and the statement waits for it (provisioning queue)."""
        warehouse = self.warehouse(warehouse_id)
        with self.ws.lock:
            now = self.ws.now_advanced()
            runs_at = warehouse.touch(now)
        statement = Statement(str(uuid.UUID(bytes=digest(warehouse_id, text, now, time.monotonic_ns(), size=16))),
                              warehouse_id, text, principal, client, now, runs_at, timeout_s, parameters)
        with self._lock:
            self.statements[statement.statement_id] = statement
            self.executed.append((warehouse_id, text))
            if len(self.statements) > MAX_STATEMENTS:
                # Statement Execution API clients need not close statements: forget the oldest finished ones.
                finished = [k for k, v in self.statements.items() if v.state not in (PENDING, RUNNING)]
                for key in finished[:len(self.statements) - MAX_STATEMENTS // 2]:
                    del self.statements[key]
        self.advance(statement)
        return statement

    def get(self, statement_id: str) -> Statement:
        with self._lock:
            statement = self.statements.get(statement_id)
        if statement is None:
            raise does_not_exist(f"Statement {statement_id} does not exist.")
        return statement

    def advance(self, statement: Statement) -> str:
        """Run the statement if its warehouse is up by now; time it out if it waited past its timeout."""
        now = self.ws.now_ms()
        with self._lock:
            if statement.state != PENDING:
                return statement.state
            timed_out = statement.timeout_s and now - statement.submitted_ms > statement.timeout_s * 1000
            run = not timed_out and now >= statement.runs_at_ms
            if run:
                statement.state = RUNNING
        if timed_out:
            self._finish(statement, FAILED, error=SqlError(
                f"[QUERY_TIMEOUT] Query has been timed out due to STATEMENT_TIMEOUT={int(statement.timeout_s)}.",
                "57014", "DEADLINE_EXCEEDED"))
        elif run:
            try:
                with self._engine_lock:
                    result = self.tables.execute(statement.text, self.ws.now_ms(), statement.parameters)
                self._finish(statement, SUCCEEDED, result=result)
            except SqlError as exc:
                self._finish(statement, FAILED, error=exc)
        return statement.state

    def wait(self, statement: Statement, seconds: float) -> str:
        """Advance, waiting up to `seconds` of wall time for the statement to leave PENDING (long polling)."""
        deadline = time.monotonic() + seconds
        while self.advance(statement) == PENDING and time.monotonic() < deadline:
            statement.done.wait(min(0.1, max(0.0, deadline - time.monotonic())))
        return statement.state

    def cancel(self, statement: Statement) -> None:
        if statement.state in (PENDING, RUNNING):
            self._finish(statement, CANCELED)

    def close(self, statement: Statement) -> None:
        self.cancel(statement)
        statement.state = CLOSED
        statement.result = None
        with self._lock:
            self.statements.pop(statement.statement_id, None)

    def _finish(self, statement: Statement, state: str, result: Result | None = None,
                error: SqlError | None = None) -> None:
        statement.state, statement.result, statement.error = state, result, error
        now = self.ws.now_ms()
        statement.finished_ms = now
        first = statement.text.lstrip("( \n\t").split(None, 1)[0].upper() if statement.text.strip() else "OTHER"
        statement_type = "SELECT" if first in ("WITH", "VALUES") else (first if first in STATEMENT_KEYWORDS
                                                                       else "OTHER")
        with self.ws.lock:
            self.queries.extend(now)
            self.queries.record(
                statement.warehouse_id, statement.submitted_ms, max(now, statement.submitted_ms),
                {SUCCEEDED: "FINISHED", FAILED: "FAILED", CANCELED: "CANCELED"}[state], statement.text,
                statement.principal, statement.client, statement_type,
                len(result.rows) if result else 0, error.message if error else "",
                queue_ms=max(0, min(statement.runs_at_ms, now) - statement.submitted_ms))
        statement.done.set()

    def truth(self, since_ms: int) -> dict:
        with self.ws.lock:
            now = self.ws.now_advanced()
            self.queries.extend(now)
            self.billing.advance(now)
            return {"billing": self.billing.truth(now), "queries": self.ws.ledger.queries(since_ms, now),
                    "job_run_cost": run_cost_truth(self.ws, now)}

    def warehouse_usage_truth(self, start_ms: int, end_ms: int, grace_ms: int = 0) -> dict:
        with self.ws.lock:
            self.queries.extend(self.ws.now_advanced())
            return usage_truth(self.ws, self.queries, self.billing, start_ms, end_ms, grace_ms)

    def list_history(self, **kwargs) -> dict:
        with self.ws.lock:
            now = self.ws.now_advanced()
            self.queries.extend(now)
            return self.queries.list(now, **kwargs)


# -- the Statement Execution API ------------------------------------------------------------------------------------

WAIT_TIMEOUT = re.compile(r"^(\d+)s$")


def _manifest(result: Result, chunk_rows: int) -> dict:
    columns = []
    for position, (name, type_text) in enumerate(result.columns):
        column = {"name": name, "position": position, "type_name": type_text.split("(")[0].split("<")[0],
                  "type_text": type_text}
        match = DECIMAL_PRODUCT.search(type_text)
        if match:
            column.update(type_precision=int(match.group(1)), type_scale=int(match.group(2)))
        columns.append(column)
    total = len(result.rows)
    count = max(1, math.ceil(total / chunk_rows)) if total else 0
    return {"format": "JSON_ARRAY", "schema": {"column_count": len(columns), "columns": columns},
            "total_chunk_count": count, "total_row_count": total, "truncated": False,
            "chunks": [{"chunk_index": i, "row_offset": i * chunk_rows,
                        "row_count": min(chunk_rows, total - i * chunk_rows)} for i in range(count)]}


def statement_chunk(service: SqlService, statement: Statement, index: int) -> dict:
    result = statement.result
    chunk_rows = service.chunk_rows
    total = len(result.rows)
    if index < 0 or (index * chunk_rows >= total and not (total == 0 and index == 0)):
        raise invalid_parameter(f"Chunk index {index} is out of range")
    rows = result.rows[index * chunk_rows:(index + 1) * chunk_rows]
    out = {"chunk_index": index, "row_offset": index * chunk_rows, "row_count": len(rows),
           "data_array": [[render_value(v, t) for v, (_, t) in zip(row, result.columns)] for row in rows]}
    if (index + 1) * chunk_rows < total:
        out["next_chunk_index"] = index + 1
        out["next_chunk_internal_link"] = \
            f"/api/2.0/sql/statements/{statement.statement_id}/result/chunks/{index + 1}"
    return out


def statement_json(service: SqlService, statement: Statement) -> dict:
    out = {"statement_id": statement.statement_id, "status": {"state": statement.state}}
    if statement.state == FAILED and statement.error:
        out["status"]["error"] = {"error_code": statement.error.error_code, "message": statement.error.message}
    if statement.state == SUCCEEDED and statement.result is not None:
        out["manifest"] = _manifest(statement.result, service.chunk_rows)
        if statement.result.rows:
            out["result"] = statement_chunk(service, statement, 0)
        else:
            out["result"] = {"chunk_index": 0, "row_offset": 0, "row_count": 0}
    return out


def execute_statement_request(service: SqlService, body: dict, principal: str) -> dict:
    """POST /api/2.0/sql/statements."""
    statement_text = body.get("statement")
    warehouse_id = body.get("warehouse_id")
    if not statement_text:
        raise invalid_parameter("statement is required")
    if not warehouse_id:
        raise invalid_parameter("warehouse_id is required")
    wait = WAIT_TIMEOUT.match(str(body.get("wait_timeout", "10s")))
    if not wait or not (int(wait.group(1)) == 0 or 5 <= int(wait.group(1)) <= 50):
        raise invalid_parameter("wait_timeout must be 0s or between 5s and 50s")
    on_wait_timeout = body.get("on_wait_timeout", "CONTINUE")
    if on_wait_timeout not in ("CONTINUE", "CANCEL"):
        raise invalid_parameter(f"Invalid on_wait_timeout: {on_wait_timeout}")
    disposition = body.get("disposition", "INLINE")
    fmt = body.get("format", "JSON_ARRAY")
    if disposition == "EXTERNAL_LINKS":
        raise ApiError(400, "NOT_IMPLEMENTED", "The simulated workspace serves results INLINE only")
    if disposition != "INLINE":
        raise invalid_parameter(f"Invalid disposition: {disposition}")
    if fmt != "JSON_ARRAY":
        raise invalid_parameter(f"The INLINE disposition requires the JSON_ARRAY format, got {fmt}")
    parameters = {}
    for parameter in body.get("parameters") or []:
        if not isinstance(parameter, dict) or not parameter.get("name"):
            raise invalid_parameter("Every parameter needs a name")
        parameters[parameter["name"]] = (parameter.get("value"), parameter.get("type"))
    statement = service.submit(warehouse_id, statement_text, principal, "Databricks SDK for Python",
                               parameters=parameters)
    state = service.wait(statement, int(wait.group(1)))
    if state == PENDING and int(wait.group(1)) and on_wait_timeout == "CANCEL":
        service.cancel(statement)
    out = statement_json(service, statement)
    row_limit = body.get("row_limit")
    if row_limit is not None and statement.result is not None and len(statement.result.rows) > int(row_limit):
        statement.result.rows = statement.result.rows[:int(row_limit)]
        out = statement_json(service, statement)
        out["manifest"]["truncated"] = True
    return out
