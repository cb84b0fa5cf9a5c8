"""The SQL protocol databricks-sql-connector speaks by default: TCLIService (Thrift binary) POSTed over HTTPS to
/sql/1.0/warehouses/<id>, served with the connector's own generated types and Processor.

Sessions and operations live here; statements run in sql.SqlService. Results come back as COLUMN_BASED_SET (the
row set a server sends a client that cannot read Arrow, and the one this simulator always sends; an Arrow-capable
client handles it too), as direct results of ExecuteStatement when they are ready, else through
GetOperationStatus (long-polled while the warehouse starts) and FetchResults.
"""

from __future__ import annotations

import logging
import re
import ssl
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from databricks.sql.thrift_api.TCLIService import TCLIService
from databricks.sql.thrift_api.TCLIService import ttypes as t
from thrift.protocol import TBinaryProtocol
from thrift.transport import TTransport

from .sql import CANCELED, CLOSED, FAILED, PENDING, RUNNING, SUCCEEDED, SqlService, Statement, render_value
from .common import ApiError

log = logging.getLogger(__name__)

PATH = re.compile(r"^/sql/1\.0/warehouses/(?P<id>[A-Za-z0-9]+)/?$")
SERVER_PROTOCOL = t.TProtocolVersion.SPARK_CLI_SERVICE_PROTOCOL_V7
STATES = {PENDING: t.TOperationState.PENDING_STATE, RUNNING: t.TOperationState.RUNNING_STATE,
          SUCCEEDED: t.TOperationState.FINISHED_STATE, FAILED: t.TOperationState.ERROR_STATE,
          CANCELED: t.TOperationState.CANCELED_STATE, CLOSED: t.TOperationState.CLOSED_STATE}
TYPE_IDS = {"STRING": t.TTypeId.STRING_TYPE, "BIGINT": t.TTypeId.BIGINT_TYPE, "INT": t.TTypeId.INT_TYPE,
            "SMALLINT": t.TTypeId.SMALLINT_TYPE, "TINYINT": t.TTypeId.TINYINT_TYPE, "DOUBLE": t.TTypeId.DOUBLE_TYPE,
            "FLOAT": t.TTypeId.FLOAT_TYPE, "BOOLEAN": t.TTypeId.BOOLEAN_TYPE, "DATE": t.TTypeId.DATE_TYPE,
            "TIMESTAMP": t.TTypeId.TIMESTAMP_TYPE, "DECIMAL": t.TTypeId.DECIMAL_TYPE, "MAP": t.TTypeId.MAP_TYPE,
            "STRUCT": t.TTypeId.STRUCT_TYPE, "ARRAY": t.TTypeId.ARRAY_TYPE, "BINARY": t.TTypeId.BINARY_TYPE,
            "VOID": t.TTypeId.NULL_TYPE, "INTERVAL": t.TTypeId.INTERVAL_DAY_TIME_TYPE}
OK = t.TStatus(statusCode=t.TStatusCode.SUCCESS_STATUS)


def _invalid_handle(what: str) -> t.TStatus:
    return t.TStatus(statusCode=t.TStatusCode.INVALID_HANDLE_STATUS, errorMessage=f"Invalid {what} handle",
                     sqlState="HY000")


@dataclass
class Session:
    guid: bytes
    warehouse_id: str
    principal: str
    configuration: dict
    operations: set = field(default_factory=set)

    @property
    def timeout_s(self) -> float:
        try:
            return float(self.configuration.get("STATEMENT_TIMEOUT", 0) or 0)
        except ValueError:
            return 0.0


class ThriftState:
    """Open sessions and their operations, across requests (each request is a separate HTTP POST)."""

    def __init__(self, service: SqlService):
        self.service = service
        self.sessions: dict[bytes, Session] = {}
        self.opened = 0                     # sessions ever opened (tests check that clients reuse theirs)
        self.lock = threading.Lock()


class Handler:
    """TCLIService.Iface for one HTTP request: who is calling, on which warehouse."""

    def __init__(self, state: ThriftState, warehouse_id: str, principal: str, client: str):
        self.state, self.service = state, state.service
        self.warehouse_id, self.principal, self.client = warehouse_id, principal, client

    # -- sessions

    def OpenSession(self, req):
        guid = uuid.uuid4().bytes
        configuration = {k: str(v) for k, v in (req.configuration or {}).items()}
        with self.state.lock:
            self.state.sessions[guid] = Session(guid, self.warehouse_id, self.principal, configuration)
            self.state.opened += 1
        version = min(req.client_protocol_i64 or SERVER_PROTOCOL, SERVER_PROTOCOL)
        handle = t.TSessionHandle(sessionId=t.THandleIdentifier(guid=guid, secret=uuid.uuid4().bytes),
                                  serverProtocolVersion=version)
        return t.TOpenSessionResp(status=OK, serverProtocolVersion=version, sessionHandle=handle,
                                  configuration=configuration, canUseMultipleCatalogs=True)

    def CloseSession(self, req):
        with self.state.lock:
            session = self.state.sessions.pop(req.sessionHandle.sessionId.guid, None)
        if session is None:
            return t.TCloseSessionResp(status=_invalid_handle("session"))
        for statement_id in list(session.operations):
            try:
                self.service.close(self.service.get(statement_id))
            except ApiError:
                pass
        return t.TCloseSessionResp(status=OK)

    def _session(self, handle) -> Session | None:
        with self.state.lock:
            session = self.state.sessions.get(handle.sessionId.guid)
        return session if session is not None and session.warehouse_id == self.warehouse_id else None

    # -- operations

    def _statement(self, handle) -> Statement | None:
        try:
            return self.service.get(str(uuid.UUID(bytes=handle.operationId.guid)))
        except (ApiError, ValueError):
            return None

    @staticmethod
    def _handle(statement: Statement) -> t.TOperationHandle:
        return t.TOperationHandle(
            operationId=t.THandleIdentifier(guid=uuid.UUID(statement.statement_id).bytes, secret=b"\0" * 16),
            operationType=t.TOperationType.EXECUTE_STATEMENT, hasResultSet=True)

    def ExecuteStatement(self, req):
        session = self._session(req.sessionHandle)
        if session is None:
            return t.TExecuteStatementResp(status=_invalid_handle("session"))
        timeout = session.timeout_s or float(req.queryTimeout or 0)
        parameters = {}
        for parameter in req.parameters or []:
            value = parameter.value.stringValue if parameter.value is not None else None
            parameters[parameter.name or str(parameter.ordinal)] = (value, parameter.type)
        statement = self.service.submit(self.warehouse_id, req.statement, self.principal, self.client,
                                        timeout_s=timeout, parameters=parameters or None)
        with self.state.lock:
            session.operations.add(statement.statement_id)
        handle = self._handle(statement)
        if req.getDirectResults is None:
            return t.TExecuteStatementResp(status=OK, operationHandle=handle)
        direct = t.TSparkDirectResults(operationStatus=self._status(statement))
        if statement.state == SUCCEEDED:
            direct.resultSetMetadata = self._metadata(statement)
            direct.resultSet = self._fetch(statement, req.getDirectResults.maxRows or 10_000, with_metadata=False)
            if not direct.resultSet.hasMoreRows:
                # Everything fit: the server closes the operation itself, as Databricks does.
                direct.closeOperation = t.TCloseOperationResp(status=OK)
                self._forget(session, statement)
        return t.TExecuteStatementResp(status=OK, operationHandle=handle, directResults=direct)

    def _forget(self, session: Session, statement: Statement) -> None:
        with self.state.lock:
            session.operations.discard(statement.statement_id)
        self.service.close(statement)

    def _status(self, statement: Statement) -> t.TGetOperationStatusResp:
        out = t.TGetOperationStatusResp(status=OK, operationState=STATES[statement.state],
                                        hasResultSet=statement.state == SUCCEEDED)
        if statement.state == FAILED and statement.error is not None:
            out.errorMessage = out.displayMessage = statement.error.message
            out.sqlState = statement.error.sql_state
            out.errorCode = 0
        return out

    def GetOperationStatus(self, req):
        statement = self._statement(req.operationHandle)
        if statement is None:
            return t.TGetOperationStatusResp(status=_invalid_handle("operation"))
        # Long poll, as the real server does, so a client that polls in a tight loop waits here instead.
        self.service.wait(statement, self.service.LONG_POLL_S)
        return self._status(statement)

    def _metadata(self, statement: Statement) -> t.TGetResultSetMetadataResp:
        columns = []
        for position, (name, type_text) in enumerate(statement.result.columns):
            base = type_text.split("(")[0]
            entry = t.TPrimitiveTypeEntry(type=TYPE_IDS.get(base, t.TTypeId.STRING_TYPE))
            if base == "DECIMAL":
                precision, scale = (int(x) for x in type_text[len("DECIMAL("):-1].split(","))
                entry.typeQualifiers = t.TTypeQualifiers(qualifiers={
                    "precision": t.TTypeQualifierValue(i32Value=precision),
                    "scale": t.TTypeQualifierValue(i32Value=scale)})
            columns.append(t.TColumnDesc(columnName=name, position=position + 1,
                                         typeDesc=t.TTypeDesc(types=[t.TTypeEntry(primitiveEntry=entry)])))
        return t.TGetResultSetMetadataResp(status=OK, schema=t.TTableSchema(columns=columns),
                                           resultFormat=t.TSparkRowSetType.COLUMN_BASED_SET, lz4Compressed=False,
                                           isStagingOperation=False)

    def GetResultSetMetadata(self, req):
        statement = self._statement(req.operationHandle)
        if statement is None or statement.state != SUCCEEDED:
            return t.TGetResultSetMetadataResp(status=_invalid_handle("operation"))
        return self._metadata(statement)

    def _fetch(self, statement: Statement, max_rows: int, with_metadata: bool) -> t.TFetchResultsResp:
        result = statement.result
        start = statement.row_offset
        rows = result.rows[start:start + max(1, max_rows)]
        statement.row_offset = start + len(rows)
        columns = [_column([row[i] for row in rows], type_text) for i, (_, type_text) in enumerate(result.columns)]
        out = t.TFetchResultsResp(
            status=OK, hasMoreRows=statement.row_offset < len(result.rows),
            results=t.TRowSet(startRowOffset=start, rows=[], columns=columns, columnCount=len(columns)))
        if with_metadata:
            out.resultSetMetadata = self._metadata(statement)
        return out

    def FetchResults(self, req):
        statement = self._statement(req.operationHandle)
        if statement is None or statement.state != SUCCEEDED or statement.result is None:
            return t.TFetchResultsResp(status=_invalid_handle("operation"))
        return self._fetch(statement, req.maxRows or 10_000, with_metadata=bool(req.includeResultSetMetadata))

    def CancelOperation(self, req):
        statement = self._statement(req.operationHandle)
        if statement is None:
            return t.TCancelOperationResp(status=_invalid_handle("operation"))
        self.service.cancel(statement)
        return t.TCancelOperationResp(status=OK)

    def CloseOperation(self, req):
        statement = self._statement(req.operationHandle)
        if statement is None:
            return t.TCloseOperationResp(status=_invalid_handle("operation"))
        self.service.close(statement)
        return t.TCloseOperationResp(status=OK)


def _column(values: list, type_text: str) -> t.TColumn:
    """One result column, typed as TCLIService carries it; nulls are a bitmap, least significant bit first."""
    nulls = bytearray((len(values) + 7) // 8)
    for i, value in enumerate(values):
        if value is None:
            nulls[i >> 3] |= 1 << (i & 7)
    base = type_text.split("(")[0]
    if base == "BOOLEAN":
        return t.TColumn(boolVal=t.TBoolColumn(values=[bool(v) for v in values], nulls=bytes(nulls)))
    if base in ("TINYINT", "SMALLINT", "INT", "BIGINT"):
        kind, cls = {"TINYINT": ("byteVal", t.TByteColumn), "SMALLINT": ("i16Val", t.TI16Column),
                     "INT": ("i32Val", t.TI32Column), "BIGINT": ("i64Val", t.TI64Column)}[base]
        return t.TColumn(**{kind: cls(values=[int(v) if v is not None else 0 for v in values], nulls=bytes(nulls))})
    if base in ("DOUBLE", "FLOAT"):
        return t.TColumn(doubleVal=t.TDoubleColumn(values=[float(v) if v is not None else 0.0 for v in values],
                                                   nulls=bytes(nulls)))
    return t.TColumn(stringVal=t.TStringColumn(
        values=[render_value(v, type_text) if v is not None else "" for v in values], nulls=bytes(nulls)))


class _TlsServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, handler, context: ssl.SSLContext, state: ThriftState, authenticate):
        super().__init__(address, handler)
        self.context, self.state, self.authenticate = context, state, authenticate

    def finish_request(self, request, client_address):
        # The TLS handshake happens here, in the request's own thread, so a slow client cannot stall accept().
        try:
            request = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            log.debug("TLS handshake failed from %s: %s", client_address, exc)
            return
        super().finish_request(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "databricks-simulator-sql"

    def log_message(self, format, *args):
        pass

    def _reply(self, status: int, body: bytes, content_type: str, headers: dict | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        match = PATH.match(self.path.split("?", 1)[0])
        server: _TlsServer = self.server
        if not match:
            return self._reply(404, b"Not Found", "text/plain",
                               {"x-databricks-reason-phrase": f"No SQL endpoint at {self.path}"})
        try:
            principal = server.authenticate(self.headers)
            server.state.service.warehouse(match.group("id"))
        except ApiError as exc:
            return self._reply(exc.status, exc.message.encode(), "text/plain",
                               {"x-databricks-reason-phrase": exc.message})
        agent = self.headers.get("User-Agent") or ""
        client = "Databricks SQL Connector for Python" if "PyDatabricksSqlConnector" in agent else agent[:80]
        handler = Handler(server.state, match.group("id"), principal, client)
        out = TTransport.TMemoryBuffer()
        try:
            TCLIService.Processor(handler).process(TBinaryProtocol.TBinaryProtocol(TTransport.TMemoryBuffer(body)),
                                                    TBinaryProtocol.TBinaryProtocol(out))
        except Exception:  # noqa: BLE001 - a malformed message is the client's problem, answered as such
            log.exception("thrift request failed")
            return self._reply(400, b"Malformed Thrift request", "text/plain")
        self._reply(200, out.getvalue(), "application/x-thrift")


class ThriftServer:
    """HTTPS listener for the TCLIService protocol; authenticate(headers) -> principal, or raises ApiError(401)."""

    def __init__(self, service: SqlService, host: str, port: int, cert_file: str, key_file: str, authenticate):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        self.state = ThriftState(service)
        self.httpd = _TlsServer((host, port), _Handler, context, self.state, authenticate)
        self.host, self.port = self.httpd.server_address[:2]
        self._thread: threading.Thread | None = None

    def start(self) -> "ThriftServer":
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="databricks-simulator-sql",
                                        daemon=True)
        self._thread.start()
        return self

    def shutdown(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.httpd.server_close()
