"""Delta tables of the simulated workspace's `main` catalog: their commit history as the simulated clock runs
(writes, merges, streaming updates, OPTIMIZE, VACUUM), answered through DESCRIBE DETAIL, DESCRIBE HISTORY and
SHOW TABLES with Databricks' column names and types, and the rows of the tables whose data the custom SQL example
reads (customer data from raw to processed, and the data-quality results written about it).

Most tables are written regularly; main.gold.daily_revenue stops being written ten simulated minutes after the
simulated start (its writer broke), main.bronze.events is a stream of tiny files that nobody OPTIMIZEs, and
main.hr.salaries is listed but not readable by the exporter's principal. stop_writes() makes any table go stale
(SqlService.stop_table_writes), and a table can be dropped (SqlService.drop_table).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field

from .common import DAY_MS, HOUR_MS, MINUTE_MS, SERVICE_PRINCIPAL, digest, sql_timestamp

CATALOG = "main"
MIB = 1024 * 1024
OPTIMIZE_TARGET_BYTES = 256 * MIB
RETENTION_MS = 7 * DAY_MS

CUSTOMER_COLUMNS = (("customer_id", "BIGINT"), ("email", "STRING"), ("age", "INT"), ("status", "STRING"),
                    ("updated_at", "TIMESTAMP"))
# The seed's checks, as the data-quality job evaluates them on processed.customer_data.
QUALITY_CHECKS = {
    "non_null_id": lambda row: row["customer_id"] is not None,
    "valid_email": lambda row: re.match(r"^[^@]+@[^@]+\.[^@]+$", row["email"]) is not None,
    "positive_age": lambda row: row["age"] > 0,
}


@dataclass
class TableSpec:
    name: str                                  # catalog.schema.table, lower case
    columns: tuple[tuple[str, str], ...]
    operation: str                             # of the regular writes: WRITE, MERGE or STREAMING UPDATE
    every_ms: int
    offset_ms: int                             # of the first write after the world starts
    files_per_write: int
    file_bytes: int
    initial_files: int
    initial_bytes: int
    optimize_every_ms: int | None = None
    vacuum_every_ms: int | None = None
    stop_after_ms: int | None = None           # writes stop this long after the simulated start
    partition_columns: tuple[str, ...] = ()
    clustering_columns: tuple[str, ...] = ()
    readable: bool = True                      # false: the exporter's principal lacks SELECT
    rows_per_write: int = 100


SPECS = (
    TableSpec("main.raw.customer_data", CUSTOMER_COLUMNS, "WRITE", 5 * MINUTE_MS, 0, 1, 6 * MIB, 40, 900 * MIB,
              optimize_every_ms=DAY_MS, vacuum_every_ms=DAY_MS, rows_per_write=20),
    TableSpec("main.processed.customer_data", CUSTOMER_COLUMNS + (("processed_at", "TIMESTAMP"),), "MERGE",
              5 * MINUTE_MS, 2 * MINUTE_MS, 2, 4 * MIB, 20, 700 * MIB, optimize_every_ms=12 * HOUR_MS,
              vacuum_every_ms=DAY_MS, clustering_columns=("customer_id",)),
    TableSpec("main.monitoring.data_quality_metrics",
              (("table_name", "STRING"), ("check_name", "STRING"), ("total_records", "BIGINT"),
               ("passed_records", "BIGINT"), ("failed_records", "BIGINT"), ("pass_rate", "DOUBLE"),
               ("timestamp", "TIMESTAMP")), "WRITE", 15 * MINUTE_MS, 3 * MINUTE_MS, 1, 8 * 1024, 30, 2 * MIB,
              optimize_every_ms=DAY_MS, rows_per_write=len(QUALITY_CHECKS)),
    TableSpec("main.sales.orders",
              (("order_id", "BIGINT"), ("customer_id", "BIGINT"), ("amount", "DECIMAL(18,2)"),
               ("order_date", "DATE"), ("order_ts", "TIMESTAMP")), "MERGE", 5 * MINUTE_MS, MINUTE_MS, 2,
              24 * MIB, 400, 60 * 1024 * MIB, optimize_every_ms=6 * HOUR_MS, vacuum_every_ms=DAY_MS,
              partition_columns=("order_date",), rows_per_write=5000),
    TableSpec("main.bronze.events",
              (("event_id", "STRING"), ("event_type", "STRING"), ("customer_id", "BIGINT"),
               ("payload", "STRING"), ("event_ts", "TIMESTAMP")), "STREAMING UPDATE", MINUTE_MS, 0, 3,
              int(1.2 * MIB), 6000, 7200 * MIB, rows_per_write=12000),
    TableSpec("main.gold.daily_revenue",
              (("order_date", "DATE"), ("revenue", "DECIMAL(18,2)"), ("orders", "BIGINT")), "WRITE",
              10 * MINUTE_MS, 4 * MINUTE_MS, 1, 2 * MIB, 60, 150 * MIB, optimize_every_ms=DAY_MS,
              stop_after_ms=10 * MINUTE_MS, rows_per_write=1),
    TableSpec("main.hr.salaries", (("employee_id", "BIGINT"), ("salary", "DECIMAL(18,2)")), "MERGE", DAY_MS,
              HOUR_MS, 1, 2 * MIB, 4, 8 * MIB, readable=False, rows_per_write=10),
)


@dataclass
class Commit:
    version: int
    ms: int
    operation: str
    parameters: dict
    metrics: dict
    job: dict | None
    read_version: int | None
    blind_append: bool


@dataclass
class Table:
    spec: TableSpec
    created_ms: int
    start_ms: int                              # the simulated start (ws.start_s), for stop_after_ms
    num_files: int
    size_bytes: int
    next_write_ms: int
    next_optimize_ms: int | None
    next_vacuum_ms: int | None
    history: list[Commit] = field(default_factory=list)
    tombstoned_files: int = 0
    tombstoned_bytes: int = 0
    stopped_at_ms: int | None = None

    @property
    def writes_stop_ms(self) -> int | None:
        stops = [t for t in (self.stopped_at_ms, self.spec.stop_after_ms and self.start_ms + self.spec.stop_after_ms)
                 if t is not None]
        return min(stops) if stops else None

    def next_event(self) -> tuple[int, str] | None:
        events = []
        stop = self.writes_stop_ms
        if stop is None or self.next_write_ms < stop:
            events.append((self.next_write_ms, "write"))
        if self.next_optimize_ms is not None:
            events.append((self.next_optimize_ms, "optimize"))
        if self.next_vacuum_ms is not None:
            events.append((self.next_vacuum_ms, "vacuum"))
        return min(events) if events else None


class SqlTableError(Exception):
    """Raised with a Databricks error class, SQLSTATE and message; sql.py turns it into its SqlError."""

    def __init__(self, message: str, sql_state: str, error_code: str):
        super().__init__(message)
        self.message, self.sql_state, self.error_code = message, sql_state, error_code


def quoted(name: str) -> str:
    return ".".join(f"`{part}`" for part in name.split("."))


def not_found(name: str) -> SqlTableError:
    return SqlTableError(f"[TABLE_OR_VIEW_NOT_FOUND] The table or view {quoted(name)} cannot be found. Verify the "
                         "spelling and correctness of the schema and catalog.", "42P01", "TABLE_OR_VIEW_NOT_FOUND")


class DeltaTables:
    """The Delta tables' commits, generated in time order up to "now" (incrementally, like the rest of the world)."""

    def __init__(self, ws, specs: tuple[TableSpec, ...] = SPECS):
        self.ws = ws
        start_ms = int(ws.start_s * 1000)
        self.tables: dict[str, Table] = {}
        for spec in specs:
            created = ws.world_start_ms - (20 + digest(ws.seed, spec.name, "created", size=1)[0] % 40) * DAY_MS
            table = Table(spec, created, start_ms, spec.initial_files, spec.initial_bytes,
                          next_write_ms=ws.world_start_ms + spec.offset_ms,
                          # The last OPTIMIZE and VACUUM before the simulated start are recent enough for a
                          # DESCRIBE HISTORY with a modest LIMIT to find them.
                          next_optimize_ms=ws.world_start_ms + spec.optimize_every_ms - HOUR_MS + spec.offset_ms
                          if spec.optimize_every_ms else None,
                          next_vacuum_ms=ws.world_start_ms + spec.vacuum_every_ms - 2 * HOUR_MS + spec.offset_ms
                          + 17 * MINUTE_MS if spec.vacuum_every_ms else None)
            table.history.append(Commit(0, created, "CREATE TABLE AS SELECT",
                                        {"isManaged": "true", "description": None,
                                         "partitionBy": _json_list(spec.partition_columns),
                                         "clusterBy": _json_list(spec.clustering_columns), "properties": "{}"},
                                        {"numFiles": str(spec.initial_files),
                                         "numOutputRows": str(spec.rows_per_write * spec.initial_files),
                                         "numOutputBytes": str(spec.initial_bytes)},
                                        self._job(spec), None, True))
            self.tables[spec.name] = table
        self.generated_until_ms = ws.world_start_ms
        # Rows written since the last drain, by table: what sql.py inserts into DuckDB.
        self.pending_rows: dict[str, list[dict]] = {}
        self._customers: list[dict] = []          # raw.customer_data, in write order
        self._processed_upto = 0                  # customers already merged into processed.customer_data
        self._processed_total = 0
        self._passed = dict.fromkeys(QUALITY_CHECKS, 0)
        self._initial_rows()

    # -- interventions

    def stop_writes(self, name: str, at_ms: int) -> None:
        table = self.table(name)
        table.stopped_at_ms = at_ms

    def drop(self, name: str) -> Table:
        table = self.table(name)
        del self.tables[table.spec.name]
        self.pending_rows.pop(table.spec.name, None)
        return table

    def table(self, name: str) -> Table:
        table = self.tables.get(name.lower().replace("`", ""))
        if table is None:
            raise not_found(name)
        return table

    # -- time

    def advance(self, now_ms: int) -> None:
        """Apply every write, OPTIMIZE and VACUUM due by now_ms, across tables in time order."""
        if now_ms <= self.generated_until_ms:
            return
        while True:
            due = [(event, table) for table in self.tables.values() if (event := table.next_event()) is not None
                   and event[0] <= now_ms]
            if not due:
                break
            (at, kind), table = min(due, key=lambda item: (item[0], item[1].spec.name))
            if kind == "write" and not self.ws.scenarios.apply("table_write", at, True, table.spec.name):
                table.next_write_ms = at + table.spec.every_ms     # the writer's slot passes without a commit
                continue
            getattr(self, f"_{kind}")(table, at)
        self.generated_until_ms = now_ms

    def _commit(self, table: Table, ms: int, operation: str, parameters: dict, metrics: dict,
                blind_append: bool = False) -> Commit:
        version = table.history[-1].version + 1
        commit = Commit(version, ms, operation, parameters, {k: str(v) for k, v in metrics.items()},
                        self._job(table.spec), version - 1, blind_append)
        table.history.append(commit)
        return commit

    def _write(self, table: Table, ms: int) -> None:
        spec = table.spec
        table.next_write_ms = ms + spec.every_ms
        added_bytes = spec.files_per_write * spec.file_bytes
        rows = self._rows_for(table, ms)
        count = len(rows) if rows is not None else spec.rows_per_write
        if spec.operation == "MERGE":
            removed = spec.files_per_write // 2
            removed_bytes = min(table.size_bytes, removed * spec.file_bytes)
            parameters = {"predicate": '["(target.id = source.id)"]', "matchedPredicates": '[{"actionType":"update"}]',
                          "notMatchedPredicates": '[{"actionType":"insert"}]', "notMatchedBySourcePredicates": "[]"}
            metrics = {"numTargetRowsInserted": count, "numTargetRowsUpdated": count // 10,
                       "numTargetRowsDeleted": 0, "numSourceRows": count + count // 10,
                       "numTargetFilesAdded": spec.files_per_write, "numTargetFilesRemoved": removed,
                       "numTargetBytesAdded": added_bytes, "numTargetBytesRemoved": removed_bytes,
                       "numOutputRows": count + count // 10, "executionTimeMs": 4000 + ms % 3000}
        else:
            removed, removed_bytes = 0, 0
            if spec.operation == "STREAMING UPDATE":
                epoch = (ms - self.ws.world_start_ms) // spec.every_ms
                parameters = {"outputMode": "Append", "queryId": str(uuid.UUID(bytes=digest(spec.name, "q", size=16))),
                              "epochId": str(epoch)}
            else:
                parameters = {"mode": "Append", "statsOnLoad": "false",
                              "partitionBy": _json_list(spec.partition_columns)}
            metrics = {"numFiles": spec.files_per_write, "numOutputRows": count, "numOutputBytes": added_bytes}
        table.num_files += spec.files_per_write - removed
        table.size_bytes += added_bytes - removed_bytes
        table.tombstoned_files += removed
        table.tombstoned_bytes += removed_bytes
        self._commit(table, ms, spec.operation, parameters, metrics, blind_append=spec.operation != "MERGE")

    def _optimize(self, table: Table, ms: int) -> None:
        table.next_optimize_ms = ms + table.spec.optimize_every_ms
        files = max(1, -(-table.size_bytes // OPTIMIZE_TARGET_BYTES))
        if files >= table.num_files:
            return       # nothing to compact: Databricks writes no commit either
        removed = table.num_files
        self._commit(table, ms, "OPTIMIZE", {"predicate": "[]", "zOrderBy": "[]", "clusterBy":
                                             _json_list(table.spec.clustering_columns), "auto": "false"},
                     {"numRemovedFiles": removed, "numAddedFiles": files, "numRemovedBytes": table.size_bytes,
                      "numAddedBytes": table.size_bytes, "minFileSize": table.size_bytes // files,
                      "maxFileSize": table.size_bytes // files, "p50FileSize": table.size_bytes // files})
        table.tombstoned_files += removed
        table.tombstoned_bytes += table.size_bytes
        table.num_files = files

    def _vacuum(self, table: Table, ms: int) -> None:
        table.next_vacuum_ms = ms + table.spec.vacuum_every_ms
        retention = {"retentionCheckEnabled": "true", "defaultRetentionMillis": str(RETENTION_MS),
                     "specifiedRetentionMillis": str(RETENTION_MS)}
        self._commit(table, ms, "VACUUM START", retention,
                     {"numFilesToDelete": table.tombstoned_files, "sizeOfDataToDelete": table.tombstoned_bytes})
        self._commit(table, ms + 40_000 + table.tombstoned_files * 20, "VACUUM END", {"status": "COMPLETED"},
                     {"numDeletedFiles": table.tombstoned_files, "numVacuumedDirectories": 1})
        table.tombstoned_files = table.tombstoned_bytes = 0

    def _job(self, spec: TableSpec) -> dict:
        job_id = str(100_000 + int.from_bytes(digest(self.ws.seed, spec.name, "job", size=3), "big"))
        return {"jobId": job_id, "jobName": f"{spec.name.split('.', 1)[1].replace('.', '-')}-writer",
                "jobRunId": None, "runId": None, "jobOwnerId": "4242424242", "triggerType": "cron"}

    # -- the rows behind the custom SQL example

    def _customer(self, ms: int) -> dict:
        n = len(self._customers) + 1
        d = digest(self.ws.seed, "customer", n, size=4)
        row = {"customer_id": None if d[0] < 2 else n,
               "email": f"customer{n}example.com" if d[1] < 6 else f"customer{n}@example.com",
               "age": 0 if d[2] < 3 else 18 + d[2] % 60, "status": "inactive" if d[3] < 40 else "active",
               "updated_at": ms}
        self._customers.append(row)
        return row

    def _initial_rows(self) -> None:
        raw = self.tables["main.raw.customer_data"]
        processed = self.tables["main.processed.customer_data"]
        self.pending_rows[raw.spec.name] = [self._customer(raw.created_ms) for _ in range(2000)]
        self._rows_for(processed, max(raw.created_ms, processed.created_ms))

    def _rows_for(self, table: Table, ms: int) -> list[dict] | None:
        """The rows a write of a data-bearing table adds (and queues them for DuckDB); None for the others."""
        name = table.spec.name
        if name == "main.raw.customer_data":
            rows = [self._customer(ms) for _ in range(table.spec.rows_per_write)]
        elif name == "main.processed.customer_data":
            fresh = self._customers[self._processed_upto:]
            self._processed_upto = len(self._customers)
            rows = [{**row, "processed_at": ms} for row in fresh if row["status"] == "active"]
            self._processed_total += len(rows)
            for check, passes in QUALITY_CHECKS.items():
                self._passed[check] += sum(1 for row in rows if passes(row))
        elif name == "main.monitoring.data_quality_metrics":
            total = self._processed_total
            rows = []
            for check, passed in self._passed.items():
                rows.append({"table_name": "main.processed.customer_data", "check_name": check,
                             "total_records": total, "passed_records": passed, "failed_records": total - passed,
                             "pass_rate": round(100.0 * passed / total, 4) if total else 0.0, "timestamp": ms})
        else:
            return None
        self.pending_rows.setdefault(name, []).extend(rows)
        return rows

    def drain_rows(self) -> dict[str, list[dict]]:
        rows, self.pending_rows = self.pending_rows, {}
        return rows

    # -- the statements

    def describe_detail(self, name: str) -> tuple[list[tuple[str, str]], list[tuple]]:
        table = self._readable(name)
        spec = table.spec
        features = ["appendOnly", "deletionVectors", "invariants"] + (["clustering", "domainMetadata"]
                                                                      if spec.clustering_columns else [])
        columns = [("format", "STRING"), ("id", "STRING"), ("name", "STRING"), ("description", "STRING"),
                   ("location", "STRING"), ("createdAt", "TIMESTAMP"), ("lastModified", "TIMESTAMP"),
                   ("partitionColumns", "ARRAY"), ("clusteringColumns", "ARRAY"), ("numFiles", "BIGINT"),
                   ("sizeInBytes", "BIGINT"), ("properties", "MAP"), ("minReaderVersion", "INT"),
                   ("minWriterVersion", "INT"), ("tableFeatures", "ARRAY"), ("statistics", "MAP")]
        table_id = str(uuid.UUID(bytes=digest(self.ws.seed, spec.name, "id", size=16)))
        row = ("delta", table_id, spec.name, None,
               f"s3://sim-metastore-{self.ws.workspace_id}/tables/{table_id}", sql_timestamp(table.created_ms),
               sql_timestamp(table.history[-1].ms), list(spec.partition_columns), list(spec.clustering_columns),
               table.num_files, table.size_bytes,
               {"delta.enableDeletionVectors": "true", "delta.checkpoint.writeStatsAsStruct": "true"},
               3, 7, features, {"numRowsDeletedByDeletionVectors": 0, "numDeletionVectors": 0})
        return columns, [row]

    def describe_history(self, name: str, limit: int | None) -> tuple[list[tuple[str, str]], list[tuple]]:
        table = self._readable(name)
        columns = [("version", "BIGINT"), ("timestamp", "TIMESTAMP"), ("userId", "STRING"), ("userName", "STRING"),
                   ("operation", "STRING"), ("operationParameters", "MAP"), ("job", "STRUCT"),
                   ("notebook", "STRUCT"), ("clusterId", "STRING"), ("readVersion", "BIGINT"),
                   ("isolationLevel", "STRING"), ("isBlindAppend", "BOOLEAN"), ("operationMetrics", "MAP"),
                   ("userMetadata", "STRING"), ("engineInfo", "STRING")]
        commits = table.history[::-1][:limit] if limit is not None else table.history[::-1]
        rows = [(c.version, sql_timestamp(c.ms), "4242424242", SERVICE_PRINCIPAL, c.operation, c.parameters, c.job,
                 None, f"0101-{c.ms // 1000 % 1000000:06d}-sim{c.version % 97:02d}", c.read_version,
                 "WriteSerializable", c.blind_append, c.metrics, None, "Databricks-Runtime/15.4.x-scala2.12")
                for c in commits]
        return columns, rows

    def show_tables(self, schema: str, pattern: str | None) -> tuple[list[tuple[str, str]], list[tuple]]:
        schema = schema.lower().replace("`", "")
        if schema.count(".") != 1:
            raise SqlTableError(f"[SCHEMA_NOT_FOUND] The schema {quoted(schema)} cannot be found.", "42704",
                                "SCHEMA_NOT_FOUND")
        names = sorted(n.rsplit(".", 1)[1] for n in self.tables if n.rsplit(".", 1)[0] == schema)
        if not names:
            raise SqlTableError(f"[SCHEMA_NOT_FOUND] The schema {quoted(schema)} cannot be found. Verify the "
                                "spelling and correctness of the schema and catalog.", "42704", "SCHEMA_NOT_FOUND")
        if pattern is not None:
            # SHOW TABLES ... LIKE: * is any run of characters, | separates alternatives, case-insensitive.
            alternatives = [re.escape(p.strip()).replace(r"\*", ".*") for p in pattern.split("|")]
            regex = re.compile("^(?:" + "|".join(alternatives) + ")$", re.IGNORECASE)
            names = [n for n in names if regex.match(n)]
        return ([("database", "STRING"), ("tableName", "STRING"), ("isTemporary", "BOOLEAN")],
                [(schema.split(".")[1], n, False) for n in names])

    def _readable(self, name: str) -> Table:
        table = self.table(name)
        if not table.spec.readable:
            raise SqlTableError(f"[INSUFFICIENT_PERMISSIONS] Insufficient privileges: User does not have SELECT on "
                                f"Table '{table.spec.name}'.", "42501", "PERMISSION_DENIED")
        return table

    def truth(self, name: str) -> dict:
        """What a test compares the exporter with: the table's numbers and the times of its last operations."""
        table = self.table(name)

        def last(*operations):
            return next((c.ms / 1000 for c in reversed(table.history) if c.operation in operations), None)

        return {"num_files": table.num_files, "size_bytes": table.size_bytes,
                "last_commit": table.history[-1].ms / 1000,
                "last_write": last("WRITE", "MERGE", "STREAMING UPDATE", "CREATE TABLE AS SELECT"),
                "last_optimize": last("OPTIMIZE"), "last_vacuum": last("VACUUM END"),
                "versions": len(table.history)}


# DESCRIBE DETAIL t | DESCRIBE HISTORY t [LIMIT n] | SHOW TABLES {IN|FROM} c.s [[LIKE] 'pattern'], with names
# plain or `quoted`, as Databricks accepts them.
_NAME = r"((?:`[^`]+`|[A-Za-z0-9_]+)(?:\.(?:`[^`]+`|[A-Za-z0-9_]+))*)"
DESCRIBE_DETAIL = re.compile(rf"^\s*DESC(?:RIBE)?\s+DETAIL\s+{_NAME}\s*;?\s*$", re.IGNORECASE)
DESCRIBE_HISTORY = re.compile(rf"^\s*DESC(?:RIBE)?\s+HISTORY\s+{_NAME}(?:\s+LIMIT\s+(\d+))?\s*;?\s*$", re.IGNORECASE)
SHOW_TABLES = re.compile(rf"^\s*SHOW\s+TABLES\s+(?:IN|FROM)\s+{_NAME}(?:\s+(?:LIKE\s+)?'([^']*)')?\s*;?\s*$",
                         re.IGNORECASE)


def answer(tables: DeltaTables, statement: str) -> tuple[list[tuple[str, str]], list[tuple]] | None:
    """The result of a DESCRIBE or SHOW TABLES statement, or None for any other statement."""
    if match := DESCRIBE_DETAIL.match(statement):
        return tables.describe_detail(_full_name(match.group(1)))
    if match := DESCRIBE_HISTORY.match(statement):
        return tables.describe_history(_full_name(match.group(1)), int(match.group(2)) if match.group(2) else None)
    if match := SHOW_TABLES.match(statement):
        return tables.show_tables(match.group(1), match.group(2))
    return None


def _full_name(name: str) -> str:
    parts = [p.strip("`").lower() for p in re.findall(r"`[^`]+`|[^.]+", name)]
    if len(parts) == 2:
        parts.insert(0, CATALOG)      # the session's current catalog
    return ".".join(parts)


def _json_list(values) -> str:
    return "[" + ",".join(f'"{v}"' for v in values) + "]"


