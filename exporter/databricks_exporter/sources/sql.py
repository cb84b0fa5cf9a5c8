"""The SQL source: system tables read with databricks-sql-connector (its default Thrift protocol) on the workspace's
SQL warehouse, signed in with the workspace's databricks-sdk credentials, over one reused connection, with statement
timeouts, retries of transient failures, connector errors turned into the exporter's own (sources/errors.py), and
every statement reported per collector with its outcome and duration."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import urllib3
from databricks import sql as dbsql
from databricks.sql import exc as sql_errors

from .. import __version__
from ..config import WorkspaceSettings
from . import errors
from .report import RequestLog
from .rest import RestSource

log = logging.getLogger(__name__)
# The connector logs every HTTP response at INFO; its warnings and errors still come through.
logging.getLogger("databricks.sql").setLevel(logging.WARNING)

# A statement may wait for the warehouse to start (up to a few minutes for a classic one) before it runs.
STATEMENT_TIMEOUT_SECONDS = 600
SOCKET_TIMEOUT_SECONDS = 660
ATTEMPTS = 3                     # of a statement, on transient failures: the connection is rebuilt in between
RETRY_DELAY_SECONDS = 2.0
# The connector's own retries (429/503 with Retry-After, GetOperationStatus on connection errors) stay within this.
CONNECTOR_RETRY_SECONDS = 120


# DBUs per cluster-hour of a SQL warehouse by size (Databricks' published rates).
DBU_PER_CLUSTER_HOUR = {"2X-Small": 4, "X-Small": 6, "Small": 12, "Medium": 24, "Large": 40, "X-Large": 80,
                        "2X-Large": 144, "3X-Large": 272, "4X-Large": 528}


class SqlUnavailable(errors.SourceError):
    """The SQL source cannot be used: no warehouse configured."""


@dataclass(frozen=True)
class Endpoint:
    hostname: str
    port: int
    http_path: str


def literal(value: Any) -> str:
    """A Databricks SQL string literal. Databricks SQL escapes with backslashes; a doubled quote would be read as two
    adjacent literals."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _transient(exc: Exception) -> bool:
    """Network trouble, an expired session or credential, a busy server: worth a new connection and another try.
    A statement the warehouse rejected (syntax, permissions, missing table) is not."""
    if isinstance(exc, errors.SourceError):      # from the REST source, asked where the warehouse is
        return isinstance(exc, (errors.Unavailable, errors.Throttled, errors.Unauthenticated))
    if isinstance(exc, sql_errors.ServerOperationError):
        text = str(exc).upper()
        return any(word in text for word in ("TEMPORARILY_UNAVAILABLE", "INVALID_HANDLE", "SESSION"))
    if isinstance(exc, urllib3.exceptions.HTTPError):        # the connector lets these through unwrapped
        return "CERTIFICATE_VERIFY_FAILED" not in str(exc) and "SSLError" not in str(exc)
    return isinstance(exc, (sql_errors.RequestError, sql_errors.OperationalError, sql_errors.InterfaceError,
                            sql_errors.DatabaseError, OSError))


def _rejected(exc: Exception) -> bool:
    return isinstance(exc, sql_errors.ServerOperationError) and not _transient(exc)


def translate(exc: Exception) -> Exception:
    """The exporter's error for a statement that failed for good, with the connector's first line as its message."""
    if isinstance(exc, errors.SourceError):
        return exc
    kind = errors.StatementRejected if _rejected(exc) else \
        errors.Unavailable if _transient(exc) else errors.SourceError
    lines = str(exc).strip().splitlines()
    translated = kind(lines[0][:300] if lines else type(exc).__name__)
    translated.__cause__ = exc
    return translated


class SqlSource:
    """System tables through one SQL warehouse of one workspace; shared by that workspace's SQL collectors."""

    def __init__(self, rest: RestSource, settings: WorkspaceSettings, report: RequestLog):
        self.rest = rest
        self.settings = settings
        self.report = report
        self.warehouse_id = settings.warehouse_id or rest.config.warehouse_id or None
        self._lock = threading.Lock()
        self._connection = None
        self._endpoint: Endpoint | None = None
        # DBUs an hour of one cluster of the warehouse, once described: what its statements cost, roughly.
        self.dbu_per_hour = 0.0

    # -- the warehouse

    @property
    def configured(self) -> bool:
        return bool(self.warehouse_id)

    def warehouse_state(self) -> str:
        """The warehouse's state from the REST API (cheap, and it does not start the warehouse)."""
        return self._describe_warehouse().get("state") or "UNKNOWN"

    def warehouse_running(self) -> bool:
        return self.warehouse_state() == "RUNNING"

    def _describe_warehouse(self) -> dict:
        if not self.warehouse_id:
            raise SqlUnavailable("no SQL warehouse configured: set workspaces[].warehouse_id (or "
                                 "DATABRICKS_WAREHOUSE_ID)")
        warehouse = self.rest.warehouse(self.warehouse_id)
        self.dbu_per_hour = DBU_PER_CLUSTER_HOUR.get(warehouse.get("cluster_size") or "", 0.0)
        odbc = warehouse.get("odbc_params") or {}
        host = odbc.get("hostname") or urlparse(self.rest.host).hostname
        self._endpoint = Endpoint(host, int(odbc.get("port") or 443),
                                  odbc.get("path") or f"/sql/1.0/warehouses/{self.warehouse_id}")
        return warehouse

    # -- statements

    def query(self, statement: str, collector: str) -> list[dict]:
        """Run one statement and return its rows as dicts. Transient failures are retried on a new connection; what
        still fails raises StatementRejected (the warehouse refused it), Unavailable, or another SourceError."""
        started = time.monotonic()
        try:
            for attempt in range(1, ATTEMPTS + 1):
                try:
                    with self._lock:
                        rows = self._execute(statement, collector)
                    self._record(collector, "success", started)
                    return rows
                except Exception as exc:  # noqa: BLE001 - sorted into transient or final just below
                    self._disconnect()
                    if attempt == ATTEMPTS or not _transient(exc):
                        raise translate(exc) from exc
                    log.info("SQL statement failed (%s); retrying on a new connection", describe(exc),
                             extra={"collector": collector})
                    time.sleep(RETRY_DELAY_SECONDS * attempt)
        except Exception:
            self._record(collector, "error", started)
            raise
        raise AssertionError("unreachable")

    def record_skip(self, collector: str) -> None:
        self.report.sql_statement(collector, "skipped", None)

    def _execute(self, statement: str, collector: str) -> list[dict]:
        connection = self._connect()
        with connection.cursor() as cursor:
            cursor.execute(statement)
            names = [d[0] for d in cursor.description or []]
            return [dict(zip(names, row)) for row in cursor.fetchall()]

    def _connect(self):
        if self._connection is not None:
            return self._connection
        if self._endpoint is None:
            self._describe_warehouse()
        endpoint = self._endpoint
        config = self.rest.config
        kwargs: dict[str, Any] = {}
        if self.settings.tls_ca_bundle:
            kwargs["_tls_trusted_ca_file"] = self.settings.tls_ca_bundle
        self._connection = dbsql.connect(
            server_hostname=endpoint.hostname, _port=endpoint.port, http_path=endpoint.http_path,
            # The SDK's unified auth (PAT, OAuth M2M, Azure service principals, profiles) signs SQL requests too.
            credentials_provider=lambda: config.authenticate,
            session_configuration={"STATEMENT_TIMEOUT": str(STATEMENT_TIMEOUT_SECONDS)},
            enable_telemetry=False, use_cloud_fetch=False, user_agent_entry=f"databricks-exporter/{__version__}",
            _socket_timeout=SOCKET_TIMEOUT_SECONDS, _retry_stop_after_attempts_duration=CONNECTOR_RETRY_SECONDS,
            _retry_stop_after_attempts_count=5, **kwargs)
        return self._connection

    def _disconnect(self, wait: float = -1) -> None:
        if not self._lock.acquire(timeout=wait):
            return
        try:
            connection, self._connection = self._connection, None
            self._endpoint = None
        finally:
            self._lock.release()
        if connection is not None:
            try:
                connection.close()
            except Exception:  # noqa: BLE001 - a broken connection may not close cleanly; it is dropped anyway
                pass

    def close(self, wait: float = -1) -> None:
        """Close the session; with a `wait` in seconds, only if a statement running on it ends by then (otherwise
        nothing is done)."""
        self._disconnect(wait)

    # -- bookkeeping

    def _record(self, collector: str, outcome: str, started: float) -> None:
        self.report.sql_statement(collector, outcome, time.monotonic() - started)


def describe(exc: Exception) -> str:
    """The first line of a failed statement's error, with its class, short enough for a log line."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:200]
