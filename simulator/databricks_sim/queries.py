"""The SQL warehouses' query load and its history: what `GET /api/2.0/sql/history/queries` lists and
system.query.history holds, plus the statements clients really send (through Thrift or the Statement Execution API).

While a warehouse runs, queries arrive at a steady rate per cluster (busier in business hours). Most are quick;
some come from the result cache; a few run for many minutes, spill to disk, queue at capacity, fail or are
canceled. Each query's whole course is drawn when it arrives, from its own random stream, so what a reader sees at
any moment is a pure function of the seed and the time (statements sent by clients aside).
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass

from .common import HOUR_MS, MINUTE_MS, SECOND_MS, USERS, decode_page_token, encode_page_token, invalid_parameter, \
    stable_hex

TERMINAL = ("FINISHED", "FAILED", "CANCELED")
STATEMENT_TYPES = [("SELECT", 70), ("INSERT", 6), ("MERGE", 5), ("SHOW", 4), ("DESCRIBE", 3), ("CREATE", 3),
                   ("UPDATE", 2), ("DELETE", 1), ("OPTIMIZE", 1), ("COPY", 1), ("SET", 2), ("USE", 2)]
CLIENTS = ["Databricks SQL Dashboard", "Tableau", "dbt", "Power BI", "Databricks SQL Editor", "Looker"]
TABLES = ["main.sales.orders", "main.sales.customers", "main.finance.invoices", "main.web.sessions",
          "main.web.clickstream", "main.ml.features", "main.ops.shipments", "main.risk.transactions"]
ERRORS = [
    "[TABLE_OR_VIEW_NOT_FOUND] The table or view `main`.`sales`.`order_lines` cannot be found.",
    "[DIVIDE_BY_ZERO] Division by zero. Use `try_divide` to tolerate divisor being 0 and return NULL instead.",
    "[UNRESOLVED_COLUMN.WITH_SUGGESTION] A column with name `amount_usd` cannot be resolved.",
    "[CAST_INVALID_INPUT] The value 'n/a' of the type \"STRING\" cannot be cast to \"INT\" because it is malformed.",
    "Query was canceled because it exceeded the statement timeout.",
]
# No query runs longer than this (the slowest drawn are 70 minutes plus queueing).
MAX_QUERY_MS = 75 * MINUTE_MS


def query_uuid(*parts) -> str:
    h = stable_hex(*parts, n=32)
    return f"01ef{h[4:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass
class Query:
    query_id: str
    warehouse_id: str
    start_ms: int
    queue_ms: int              # overloading queue (at capacity) or provisioning queue (warehouse starting)
    compile_ms: int
    exec_ms: int
    fetch_ms: int
    status: str                # final status
    statement_type: str
    user: str
    client: str
    text: str
    error: str = ""
    read_bytes: int = 0
    read_cache_bytes: int = 0
    spill_bytes: int = 0
    rows_read: int = 0
    rows_produced: int = 0
    files_read: int = 0
    cache_hit: bool = False
    provisioning: bool = False
    session_id: str = ""

    @property
    def end_ms(self) -> int:
        return self.start_ms + self.queue_ms + self.compile_ms + self.exec_ms + self.fetch_ms

    @property
    def key(self) -> tuple[int, str]:
        return (self.start_ms, self.query_id)

    def status_at(self, now_ms: int) -> str:
        if now_ms >= self.end_ms:
            return self.status
        if now_ms < self.start_ms + self.queue_ms:
            return "QUEUED"
        if now_ms < self.start_ms + self.queue_ms + self.compile_ms:
            return "COMPILING"
        return "RUNNING"

    def to_json(self, now_ms: int, include_metrics: bool) -> dict:
        status = self.status_at(now_ms)
        final = status in TERMINAL
        out = {
            "query_id": self.query_id, "warehouse_id": self.warehouse_id, "endpoint_id": self.warehouse_id,
            "session_id": self.session_id, "status": status, "statement_type": self.statement_type,
            "query_text": self.text, "user_name": self.user, "user_id": 1_000_000 + USERS.index(self.user)
            if self.user in USERS else 1_999_999, "executed_as_user_name": self.user,
            "client_application": self.client, "query_start_time_ms": self.start_ms, "is_final": final,
            "lookup_key": stable_hex(self.query_id, "lookup", n=24), "spark_ui_url": "",
        }
        if final:
            out.update(query_end_time_ms=self.end_ms, execution_end_time_ms=self.end_ms - self.fetch_ms,
                       duration=self.end_ms - self.start_ms, rows_produced=self.rows_produced)
            if self.error:
                out["error_message"] = self.error
        if include_metrics:
            out["metrics"] = self.metrics_json(now_ms, final)
        return out

    def metrics_json(self, now_ms: int, final: bool) -> dict:
        elapsed = (self.end_ms if final else now_ms) - self.start_ms
        metrics = {"total_time_ms": elapsed, "result_from_cache": self.cache_hit}
        if self.queue_ms:
            key = "provisioning_queue_start_timestamp" if self.provisioning else "overloading_queue_start_timestamp"
            metrics[key] = self.start_ms
        if now_ms >= self.start_ms + self.queue_ms:
            metrics["query_compilation_start_timestamp"] = self.start_ms + self.queue_ms
        if final:
            metrics.update(
                compilation_time_ms=self.compile_ms, execution_time_ms=self.exec_ms,
                result_fetch_time_ms=self.fetch_ms, photon_total_time_ms=int(self.exec_ms * 0.8),
                task_total_time_ms=self.exec_ms * 4, read_bytes=self.read_bytes,
                read_cache_bytes=self.read_cache_bytes, read_remote_bytes=self.read_bytes - self.read_cache_bytes,
                read_files_count=self.files_read, read_partitions_count=max(1, self.files_read // 4),
                pruned_bytes=self.read_bytes // 3, pruned_files_count=self.files_read // 2,
                rows_read_count=self.rows_read, rows_produced_count=self.rows_produced,
                spill_to_disk_bytes=self.spill_bytes, network_sent_bytes=self.rows_produced * 64,
                write_remote_bytes=self.rows_read * 40 if self.statement_type in ("INSERT", "MERGE", "COPY") else 0)
        return metrics


class WarehouseLoad:
    """Queries of one warehouse, generated in arrival order as simulated time passes."""

    def __init__(self, log: "QueryLog", warehouse):
        self.log = log
        self.warehouse = warehouse
        seed = warehouse.ws.seed
        self._rng = random.Random(f"{seed}:queries:{warehouse.index}")
        # Queries per minute per running cluster: BI warehouses are busy, ad-hoc ones less so.
        self.rate_per_cluster = self._rng.uniform(0.6, 3.0)
        self.queries: list[Query] = []
        self.keys: list[tuple[int, str]] = []
        self.next_ms = warehouse.ws.world_start_ms
        self.seq = 0

    def extend(self, now_ms: int) -> None:
        w = self.warehouse
        while self.next_ms <= now_ms:
            t = self.next_ms
            _, state, clusters, _, _ = w.state_at(t)
            if state != "RUNNING":
                i = bisect.bisect_right(w.transition_ts, t)
                running = next((ts for ts, s, *_ in w.transitions[i:] if s == "RUNNING"), None)
                if running is None:
                    return      # stopped with no known restart yet: look again once time has moved on
                self.next_ms = running
                continue
            query = self._make(t, clusters)       # drawn even when dropped, so later queries stay the same
            if w.ws.scenarios.apply("warehouse_query", t, True, w):
                self._append(query)
            hour_of_day = t % (24 * HOUR_MS) // HOUR_MS
            busy = 1.0 if 8 <= hour_of_day < 18 else 0.45
            per_ms = self.rate_per_cluster * w.ws.query_rate * max(clusters, 1) * busy / MINUTE_MS
            self.next_ms = t + max(1, int(self._rng.expovariate(per_ms)))

    def _append(self, query: Query) -> None:
        self.log.ws.ledger.query_finished(query.warehouse_id, query.query_id, query.end_ms, query.status)
        i = bisect.bisect_right(self.keys, query.key)
        self.keys.insert(i, query.key)
        self.queries.insert(i, query)

    def _make(self, t: int, clusters: int) -> Query:
        w = self.warehouse
        self.seq += 1
        rng = random.Random(f"{w.ws.seed}:query:{w.index}:{self.seq}")
        qid = query_uuid(w.ws.seed, "query", w.index, self.seq)
        statement_type = rng.choices([s for s, _ in STATEMENT_TYPES], [p for _, p in STATEMENT_TYPES])[0]
        table = rng.choice(TABLES)
        user = rng.choice(USERS)
        client = rng.choice(CLIENTS)
        compile_ms = rng.randint(40, 900)
        fetch_ms = rng.randint(5, 400)
        queue_ms = 0
        at_capacity = clusters >= w.max_clusters
        if at_capacity and rng.random() < 0.18:
            queue_ms = int(rng.uniform(0.5, 150) * SECOND_MS)
        cache_hit = statement_type == "SELECT" and rng.random() < 0.15
        x = rng.random()
        if cache_hit:
            exec_ms, compile_ms, fetch_ms = rng.randint(5, 120), rng.randint(5, 40), rng.randint(5, 80)
            read_bytes = 0
        elif x < 0.005:
            exec_ms = rng.randint(25, 70) * MINUTE_MS          # a very slow report
            read_bytes = int(rng.uniform(200, 900) * 2**30)
        elif x < 0.03:
            exec_ms = int(rng.uniform(1.5, 20) * MINUTE_MS)    # slow
            read_bytes = int(rng.uniform(5, 200) * 2**30)
        elif statement_type in ("SHOW", "DESCRIBE", "SET", "USE"):
            exec_ms = rng.randint(20, 400)
            read_bytes = 0
        else:
            exec_ms = max(50, int(rng.lognormvariate(7.0, 1.1)))   # median ~1.1 s
            read_bytes = int(rng.lognormvariate(17.5, 2.0))          # median ~40 MB
        status = "FINISHED"
        error = ""
        y = rng.random()
        if not cache_hit and y < 0.045:
            status, error = "FAILED", rng.choice(ERRORS)
            exec_ms = int(exec_ms * rng.uniform(0.05, 1.0))
        elif not cache_hit and y < 0.07:
            status = "CANCELED"
            exec_ms = int(exec_ms * rng.uniform(0.05, 0.95))
            fetch_ms = 0
        spill = 0
        if read_bytes > 5 * 2**30 and rng.random() < 0.6:
            spill = int(read_bytes * rng.uniform(0.05, 0.8))
        elif read_bytes and rng.random() < 0.01:
            spill = int(rng.uniform(10, 500) * 2**20)
        rows_read = read_bytes // rng.randint(60, 200)
        rows_produced = rng.randint(0, 5000) if statement_type == "SELECT" else rng.randint(0, 100_000)
        texts = {
            "SELECT": f"SELECT region, date_trunc('DAY', ts) AS day, sum(amount) FROM {table} WHERE ts >= "
                      f"current_date() - INTERVAL {rng.randint(1, 90)} DAYS GROUP BY ALL",
            "INSERT": f"INSERT INTO {table}_daily SELECT * FROM {table} WHERE ts >= current_date()",
            "MERGE": f"MERGE INTO {table} t USING updates u ON t.id = u.id WHEN MATCHED THEN UPDATE SET * "
                     "WHEN NOT MATCHED THEN INSERT *",
            "UPDATE": f"UPDATE {table} SET status = 'closed' WHERE closed_at IS NOT NULL",
            "DELETE": f"DELETE FROM {table} WHERE ts < current_date() - INTERVAL 400 DAYS",
            "CREATE": f"CREATE OR REPLACE TEMPORARY VIEW recent AS SELECT * FROM {table} LIMIT 1000",
            "OPTIMIZE": f"OPTIMIZE {table} ZORDER BY (id)",
            "COPY": f"COPY INTO {table} FROM 's3://landing/{table.split('.')[-1]}/' FILEFORMAT = PARQUET",
            "SHOW": f"SHOW TABLES IN {table.rsplit('.', 1)[0]}",
            "DESCRIBE": f"DESCRIBE TABLE {table}",
            "SET": "SET TIME ZONE 'UTC'",
            "USE": f"USE CATALOG {table.split('.')[0]}",
        }
        return Query(
            query_id=qid, warehouse_id=w.id, start_ms=t, queue_ms=queue_ms, compile_ms=compile_ms, exec_ms=exec_ms,
            fetch_ms=fetch_ms, status=status, statement_type=statement_type, user=user, client=client,
            text=texts[statement_type], error=error, read_bytes=read_bytes,
            read_cache_bytes=int(read_bytes * rng.uniform(0, 0.6)), spill_bytes=spill, rows_read=rows_read,
            rows_produced=rows_produced, files_read=max(0, read_bytes // (64 * 2**20)), cache_hit=cache_hit,
            session_id=query_uuid(w.ws.seed, "session", w.index, self.seq // 20))


class QueryLog:
    """Every warehouse's queries; reads happen under the workspace's lock, after extend(now)."""

    def __init__(self, ws):
        self.ws = ws
        self.loads = {w.id: WarehouseLoad(self, w) for w in ws.warehouses}
        self._external = 0

    def extend(self, now_ms: int) -> None:
        for load in self.loads.values():
            load.extend(now_ms)

    def record(self, warehouse_id: str, start_ms: int, end_ms: int, status: str, text: str, user: str,
               client: str, statement_type: str, rows_produced: int, error: str = "", queue_ms: int = 0) -> Query:
        """A statement a client sent (the exporter's own SQL, for one): it shows in the history like any other."""
        self._external += 1
        run_ms = max(0, end_ms - start_ms - queue_ms)
        query = Query(
            query_id=query_uuid(self.ws.seed, "external", warehouse_id, start_ms, self._external),
            warehouse_id=warehouse_id, start_ms=start_ms, queue_ms=queue_ms, compile_ms=min(run_ms, 20),
            exec_ms=max(0, run_ms - min(run_ms, 20)), fetch_ms=0, status=status, statement_type=statement_type,
            user=user, client=client, text=text, error=error, rows_produced=rows_produced,
            provisioning=queue_ms > 0)
        self.loads[warehouse_id]._append(query)
        return query

    def list(self, now_ms: int, start_ms=None, end_ms=None, statuses=None, warehouse_ids=None, statement_ids=None,
             max_results=None, page_token=None, include_metrics=False) -> dict:
        """Newest first by start time; the page token is the key of the last query returned."""
        size = 100 if max_results is None else max_results
        if not 1 <= size < 1000:
            raise invalid_parameter(f"max_results must be between 1 and 999, got {max_results}")
        for warehouse_id in warehouse_ids or ():
            if warehouse_id not in self.loads:
                raise invalid_parameter(f"Warehouse {warehouse_id} does not exist")
        statuses = set(statuses or ())
        unknown = statuses - {"QUEUED", "STARTED", "COMPILING", "COMPILED", "RUNNING"} - set(TERMINAL)
        if unknown:
            raise invalid_parameter(f"Invalid status: {sorted(unknown)[0]}")
        top = (now_ms if end_ms is None else min(end_ms, now_ms), "\uffff")
        if page_token:
            cursor = decode_page_token(page_token)
            top = min(top, (int(cursor.get("t", 0)), str(cursor.get("q", ""))))
        floor = (start_ms or 0, "")
        candidates: list[Query] = []
        for warehouse_id, load in self.loads.items():
            if warehouse_ids and warehouse_id not in warehouse_ids:
                continue
            lo = bisect.bisect_left(load.keys, floor)
            hi = bisect.bisect_left(load.keys, top)
            # Only the newest size+1 of each warehouse can make this page (and tell whether another follows).
            taken = 0
            for query in reversed(load.queries[lo:hi]):
                if statuses and query.status_at(now_ms) not in statuses:
                    continue
                if statement_ids and query.query_id not in statement_ids:
                    continue
                candidates.append(query)
                taken += 1
                if taken > size:
                    break
        candidates.sort(key=lambda q: q.key, reverse=True)
        page = candidates[:size]
        out = {"res": [q.to_json(now_ms, include_metrics) for q in page], "has_next_page": len(candidates) > size}
        if out["has_next_page"]:
            out["next_page_token"] = encode_page_token({"t": page[-1].start_ms, "q": page[-1].query_id})
        return out

    def completed(self, since_ms: int, now_ms: int):
        """Queries that ended in [since_ms, now_ms]."""
        for load in self.loads.values():
            lo = bisect.bisect_left(load.keys, (since_ms - MAX_QUERY_MS - 10 * MINUTE_MS, ""))
            for query in load.queries[lo:]:
                if query.start_ms > now_ms:
                    break
                if since_ms <= query.end_ms <= now_ms:
                    yield query
