"""HTTP front of the simulated workspace: the Databricks REST wire protocol (paths, flattened query strings,
bearer and OAuth M2M auth, error bodies) over the standard library's ThreadingHTTPServer, plus unauthenticated
/simulator/ control endpoints for tests (ground truth, pause/resume, request counts)."""

from __future__ import annotations

import base64
import hmac
import ipaddress
import json
import logging
import re
import secrets
import signal
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qs, urlsplit

from .common import ApiError, invalid_parameter
from .faults import FaultPlan, FaultSpecError
from .sql import SUCCEEDED, SqlService, execute_statement_request, statement_chunk, statement_json
from .thrift import ThriftServer
from .tls import make_certificates
from .workspace import SimulatedWorkspace

log = logging.getLogger(__name__)

PATH_PARAM = {"n": r"\d+"}
DEFAULT_TOKEN = "dapi-simulated-token"
DEFAULT_CLIENT_ID = "simulated-client"
DEFAULT_CLIENT_SECRET = "simulated-secret"
OAUTH_TOKEN_TTL_S = 3600


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: bytes
    headers: object
    params: dict[str, str]
    base_url: str
    principal: str | None = None

    def text(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None

    def integer(self, name: str) -> int | None:
        value = self.text(name)
        if value is None or value == "":
            return None
        try:
            return int(value)
        except ValueError:
            raise invalid_parameter(f"Invalid value for parameter {name}: expected an integer") from None

    def required(self, name: str, read: Callable[[str], object]):
        """read(name) (self.text or self.integer), answered as the real API does when the field is missing."""
        value = read(name)
        if value is None or value == "":
            raise invalid_parameter(f"Missing required field: {name}")
        return value

    def boolean(self, name: str) -> bool | None:
        # The SDK sends top-level booleans as true/false but nested ones (filter_by.is_pinned) as True/False.
        value = self.text(name)
        if value is None or value == "":
            return None
        if value.lower() in ("true", "1"):
            return True
        if value.lower() in ("false", "0"):
            return False
        raise invalid_parameter(f"Invalid value for parameter {name}: expected a boolean")

    def values(self, name: str) -> list[str]:
        return [v for v in self.query.get(name, []) if v != ""]

    def json(self) -> dict:
        if not self.body:
            return {}
        try:
            body = json.loads(self.body)
        except ValueError:
            raise ApiError(400, "MALFORMED_REQUEST", "Invalid JSON given in the body of the request") from None
        if not isinstance(body, dict):
            raise ApiError(400, "MALFORMED_REQUEST", "The request body must be a JSON object")
        return body


@dataclass
class Response:
    status: int
    body: dict | str
    headers: dict | None = None


@dataclass
class Route:
    method: str
    template: str           # how the route is named in /simulator/stats
    pattern: re.Pattern
    handler: Callable[[Request], Response]
    authenticated: bool = True


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    simulator: "SimulatorServer"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"     # keep-alive, as the SDK's requests session expects
    # Headers and body go out in separate writes; without TCP_NODELAY, Nagle plus delayed ACKs add ~40 ms each.
    disable_nagle_algorithm = True
    server_version = "databricks-simulator"

    def do_GET(self):
        self.server.simulator.dispatch(self, "GET")

    def do_POST(self):
        self.server.simulator.dispatch(self, "POST")

    def do_PUT(self):
        self.server.simulator.dispatch(self, "PUT")

    def do_PATCH(self):
        self.server.simulator.dispatch(self, "PATCH")

    def do_DELETE(self):
        self.server.simulator.dispatch(self, "DELETE")

    def log_message(self, format, *args):
        # The default writes every request to stderr; dispatch() logs at DEBUG instead, without headers.
        pass


class SimulatorServer:
    """Serves one SimulatedWorkspace over HTTP; construct, start(), point a WorkspaceClient at .url."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, seed: int = 1, token: str = DEFAULT_TOKEN,
                 workspace: SimulatedWorkspace | None = None, *, client_id: str = DEFAULT_CLIENT_ID,
                 client_secret: str = DEFAULT_CLIENT_SECRET, sql_port: int | None = None,
                 tls_cert: str | None = None, tls_key: str | None = None, sql_options: dict | None = None,
                 sql_host: str | None = None, sql_hostname: str | None = None, tls_dir: str | None = None,
                 **workspace_kwargs):
        """sql_port (0 = any free port) or tls_cert/tls_key add the HTTPS listener for SQL (Thrift), bound to sql_host
        (default: host). Warehouses advertise it as sql_hostname (default: the REST API's address), the name clients
        reach it by. Without a certificate a throwaway CA and certificate for that name are made (in tls_dir, or a
        temporary directory), and .tls_ca_file names the CA to trust."""
        self.workspace = workspace if workspace is not None else SimulatedWorkspace(seed=seed, **workspace_kwargs)
        self.token = token
        self.client_id = client_id
        self.client_secret = client_secret
        self._issued_tokens: dict[str, float] = {}     # OAuth access token -> monotonic expiry
        self._stats: Counter = Counter()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._httpd = _HTTPServer((host, port), _Handler)
        self._httpd.simulator = self
        bound_host, bound_port = self._httpd.server_address[:2]
        # A wildcard bind is reachable locally; print an address a client can actually use.
        public_host = "127.0.0.1" if bound_host in ("0.0.0.0", "") else bound_host
        self.url = f"http://{public_host}:{bound_port}"
        self.workspace.base_url = self.url
        self.workspace.host_name = public_host
        # SQL: query history, statements and system tables (sql.py), and the Thrift listener.
        self.sql = SqlService(self.workspace, **(sql_options or {}))
        self.sql_hostname: str | None = None
        self.sql_port: int | None = None
        self.tls_ca_file: str | None = None
        self._thrift = None
        if sql_port is not None or tls_cert:
            self._start_sql_listener(sql_host or host, sql_port or 0, tls_cert, tls_key, sql_hostname or public_host,
                                     tls_dir)
        self.faults = FaultPlan()
        self.routes = self._routes()

    def _start_sql_listener(self, host: str, port: int, cert: str | None, key: str | None, public_host: str,
                            tls_dir: str | None = None) -> None:
        if not cert:
            if tls_dir is None:
                self._tls_dir = tempfile.TemporaryDirectory(prefix="databricks-simulator-tls-")
                tls_dir = self._tls_dir.name
            names = tuple(dict.fromkeys(n for n in ("localhost", public_host) if not _is_address(n)))
            files = make_certificates(tls_dir, hostnames=names)
            cert, key, self.tls_ca_file = files.cert_file, files.key_file, files.ca_file
        self._thrift = ThriftServer(self.sql, host, port, cert, key, self._sql_principal)
        self.sql_hostname, self.sql_port = public_host, self._thrift.port
        self.workspace.sql_host, self.workspace.sql_port = public_host, self._thrift.port

    # -- lifecycle

    def start(self) -> "SimulatorServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="databricks-simulator",
                                        daemon=True)
        self._thread.start()
        if self._thrift is not None:
            self._thrift.start()
        return self

    def shutdown(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()
        if self._thrift is not None:
            self._thrift.shutdown()
        self.sql.shutdown()

    def __enter__(self) -> "SimulatorServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.shutdown()

    # -- routing

    def _routes(self) -> list[Route]:
        def route(method, template, handler, authenticated=True):
            # A {name} in the template matches one path segment, captured as params[name]; {n} (a result chunk
            # index) only digits.
            regex = re.sub(r"\\\{(\w+)\\\}", lambda m: f"(?P<{m[1]}>{PATH_PARAM.get(m[1], '[^/]+')})",
                           re.escape(template))
            return Route(method, template, re.compile(regex + r"\Z"), handler, authenticated)

        return [
            route("GET", "/.well-known/databricks-config", self._host_metadata, authenticated=False),
            route("GET", "/oidc/.well-known/oauth-authorization-server", self._oidc_discovery,
                  authenticated=False),
            route("POST", "/oidc/v1/token", self._oauth_token, authenticated=False),
            route("GET", "/api/2.0/preview/scim/v2/Me", self._me),
            route("GET", "/api/2.1/clusters/list", self._clusters_list),
            route("GET", "/api/2.1/clusters/get", self._clusters_get),
            route("POST", "/api/2.1/clusters/events", self._clusters_events),
            route("GET", "/api/2.2/jobs/list", self._jobs_list),
            route("GET", "/api/2.2/jobs/get", self._jobs_get),
            route("GET", "/api/2.2/jobs/runs/list", self._runs_list),
            route("GET", "/api/2.2/jobs/runs/get", self._runs_get),
            # Model serving (simulator/serving.py).
            route("GET", "/api/2.0/serving-endpoints", self._serving_list),
            route("GET", "/api/2.0/serving-endpoints/{name}", self._serving_get),
            route("GET", "/api/2.0/serving-endpoints/{name}/metrics", self._serving_metrics),
            route("POST", "/api/2.2/jobs/runs/repair", self._runs_repair),
            route("POST", "/api/2.2/jobs/runs/submit", self._runs_submit),
            route("GET", "/api/2.0/sql/warehouses", self._warehouses_list),
            route("GET", "/api/2.0/sql/warehouses/{id}", self._warehouses_get),
            # Lakeflow Declarative Pipelines (pipelines.py).
            route("GET", "/api/2.0/pipelines", self._pipelines_list),
            route("GET", "/api/2.0/pipelines/{id}", self._pipelines_get),
            route("GET", "/api/2.0/pipelines/{id}/updates", self._pipeline_updates),
            route("GET", "/api/2.0/pipelines/{id}/updates/{update_id}", self._pipeline_update),
            route("GET", "/api/2.0/pipelines/{id}/events", self._pipeline_events),
            route("GET", "/simulator/pipeline-event-requests", self._pipeline_event_requests, authenticated=False),
            # SQL (sql.py): the Statement Execution API and the query history.
            route("POST", "/api/2.0/sql/statements", self._statement_execute),
            route("GET", "/api/2.0/sql/statements/{id}", self._statement_get),
            route("GET", "/api/2.0/sql/statements/{id}/result/chunks/{n}", self._statement_chunk),
            route("POST", "/api/2.0/sql/statements/{id}/cancel", self._statement_cancel),
            route("GET", "/api/2.0/sql/history/queries", self._query_history),
            route("GET", "/simulator/sql-statements", self._sql_statements, authenticated=False),
            route("GET", "/simulator/truth", self._truth, authenticated=False),
            route("GET", "/simulator/truth/warehouse-usage", self._warehouse_usage_truth, authenticated=False),
            route("POST", "/simulator/pause", self._pause, authenticated=False),
            route("POST", "/simulator/resume", self._resume, authenticated=False),
            route("GET", "/simulator/stats", self._stats_view, authenticated=False),
            # Fault injection (faults.py).
            route("POST", "/simulator/faults", self._faults_set, authenticated=False),
            route("DELETE", "/simulator/faults", self._faults_clear, authenticated=False),
            route("GET", "/simulator/faults", lambda request: Response(200, self.faults.describe()),
                  authenticated=False),
            # Incident scenarios (scenarios.py).
            route("GET", "/simulator/scenarios", lambda request: Response(200, self.workspace.scenarios.describe()),
                  authenticated=False),
            route("DELETE", "/simulator/scenarios", self._scenarios_stop, authenticated=False),
            route("POST", "/simulator/scenarios/{name}", self._scenario_start, authenticated=False),
            route("DELETE", "/simulator/scenarios/{name}", self._scenarios_stop, authenticated=False),
        ]

    def dispatch(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        started = time.perf_counter()
        parts = urlsplit(handler.path)
        path = parts.path
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length > 0 else b""
        route, params, allowed = self._match(method, path)
        with self._lock:
            self._stats[f"{method} {route.template}" if route else f"{method} (unmatched)"] += 1
        try:
            if route is None:
                if allowed:
                    raise ApiError(405, "BAD_REQUEST", f"Method {method} is not allowed for {path}; "
                                                       f"use {', '.join(allowed)}")
                raise ApiError(404, "ENDPOINT_NOT_FOUND", f"No API found for '{method} {path}'")
            request = Request(method=method, path=path, query=parse_qs(parts.query, keep_blank_values=True),
                              body=body, headers=handler.headers, params=params,
                              base_url=f"http://{handler.headers.get('Host') or self.url[len('http://'):]}")
            fault = self.faults.decide(f"{method} {route.template}") if route.template.startswith("/api/") else None
            if fault and self._inject(handler, fault):
                return
            if route.authenticated:
                request.principal = self._authenticate(request)
            response = route.handler(request)
            if fault and fault.kind in ("malformed", "truncated"):
                self._send_raw(handler, 200, self._garbled(response.body, fault.kind))
                return
        except ApiError as e:
            response = Response(e.status, e.body(), {"Allow": ", ".join(allowed)} if e.status == 405 else None)
        except Exception:
            log.exception("simulator request failed: %s %s", method, path)
            response = Response(500, {"error_code": "INTERNAL_ERROR", "message": "Internal error in the simulator"})
        self._send(handler, response)
        log.debug("simulator request method=%s path=%s status=%d duration_ms=%.1f", method, path,
                  response.status, (time.perf_counter() - started) * 1000)

    def _match(self, method: str, path: str) -> tuple[Route | None, dict, list[str]]:
        allowed = []
        for route in self.routes:
            m = route.pattern.match(path)
            if m:
                if route.method == method:
                    return route, m.groupdict(), []
                allowed.append(route.method)
        return None, {}, allowed

    def _inject(self, handler: BaseHTTPRequestHandler, fault) -> bool:
        """Answer with the fault instead of the real response; False when the request should go on (slow, or a
        body to garble after the real handler ran)."""
        if fault.kind == "slow":
            time.sleep(fault.slow_seconds)
            return False
        if fault.kind == "dropped":
            handler.close_connection = True
            try:
                handler.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return True
        if fault.kind == "rate_limited":
            self._send(handler, Response(429, {"error_code": "REQUEST_LIMIT_EXCEEDED",
                                               "message": "Too many requests. Please wait and retry."},
                                         {"Retry-After": str(fault.retry_after)}))
            return True
        if fault.kind in ("server_error", "unavailable"):
            status = 500 if fault.kind == "server_error" else 503
            code = "INTERNAL_ERROR" if status == 500 else "TEMPORARILY_UNAVAILABLE"
            headers = {"Retry-After": str(fault.retry_after)} if status == 503 else None
            self._send(handler, Response(status, {"error_code": code, "message": "Simulated fault"}, headers))
            return True
        return False

    @staticmethod
    def _garbled(body: dict, kind: str) -> bytes:
        payload = json.dumps(body).encode()
        return payload[: max(1, len(payload) // 2)] if kind == "truncated" else b"{\"runs\": [<html>Bad gateway"

    @staticmethod
    def _send_raw(handler: BaseHTTPRequestHandler, status: int, payload: bytes) -> None:
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _faults_set(self, request: Request) -> Response:
        try:
            self.faults.set(request.json())
        except (FaultSpecError, TypeError, ValueError) as exc:
            raise invalid_parameter(f"Invalid fault specification: {exc}") from None
        return Response(200, self.faults.describe())

    def _faults_clear(self, request: Request) -> Response:
        self.faults.clear()
        return Response(200, self.faults.describe())

    def _scenario_start(self, request: Request) -> Response:
        window = self.workspace.scenarios.start(request.params["name"])
        return Response(200, {"name": window.name, "active": True, **window.to_json()})

    def _scenarios_stop(self, request: Request) -> Response:
        ended = self.workspace.scenarios.stop(request.params.get("name"))
        return Response(200, {"ended": [{"name": w.name, **w.to_json()} for w in ended]})

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, response: Response) -> None:
        text = isinstance(response.body, str)     # the serving metrics export is Prometheus text
        payload = response.body.encode() if text else json.dumps(response.body).encode()
        try:
            handler.send_response(response.status)
            handler.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8" if text
                                else "application/json")
            handler.send_header("Content-Length", str(len(payload)))
            for name, value in (response.headers or {}).items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass

    # -- auth

    def _authenticate(self, request: Request) -> str:
        """Accept the configured PAT or an unexpired OAuth token we issued; never echo what was sent."""
        scheme, _, credential = (request.headers.get("Authorization") or "").partition(" ")
        if self.faults.token_expired:
            raise ApiError(401, "UNAUTHENTICATED", "Token is expired.")
        if scheme.lower() != "bearer" or not credential:
            raise ApiError(401, "UNAUTHENTICATED",
                           "Credential was not sent or was of an unsupported type for this API.")
        if hmac.compare_digest(credential.encode(), self.token.encode()):
            return "user"
        with self._lock:
            expiry = self._issued_tokens.get(credential)
        if expiry is not None and expiry > time.monotonic():
            return "service-principal"
        raise ApiError(401, "UNAUTHENTICATED", "Invalid access token.")

    def _host_metadata(self, request: Request) -> Response:
        ws = self.workspace
        return Response(200, {"oidc_endpoint": f"{request.base_url}/oidc", "workspace_id": str(ws.workspace_id),
                              "account_id": ws.account_id, "cloud": "aws"})

    def _oidc_discovery(self, request: Request) -> Response:
        oidc = f"{request.base_url}/oidc"
        return Response(200, {
            "issuer": oidc,
            "authorization_endpoint": f"{oidc}/v1/authorize",
            "token_endpoint": f"{oidc}/v1/token",
            "jwks_uri": f"{oidc}/jwks.json",
            "grant_types_supported": ["client_credentials", "authorization_code", "refresh_token"],
            "response_types_supported": ["code"],
            "scopes_supported": ["all-apis", "offline_access"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        })

    def _oauth_token(self, request: Request) -> Response:
        # OAuth errors use the RFC 6749 shape, not the Databricks REST error body.
        form = {k: v[-1] for k, v in parse_qs(request.body.decode(errors="replace")).items()}
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        scheme, _, encoded = (request.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() == "basic":
            try:
                client_id, _, client_secret = base64.b64decode(encoded).decode().partition(":")
            except ValueError:
                client_id = client_secret = None
        if form.get("grant_type") != "client_credentials":
            return Response(400, {"error": "unsupported_grant_type",
                                  "error_description": "Only the client_credentials grant is supported."})
        if not (client_id and client_secret
                and hmac.compare_digest(client_id.encode(), self.client_id.encode())
                and hmac.compare_digest(client_secret.encode(), self.client_secret.encode())):
            return Response(401, {"error": "invalid_client", "error_description": "Client authentication failed"})
        access_token = "sim-oauth-" + secrets.token_urlsafe(32)
        with self._lock:
            now = time.monotonic()
            self._issued_tokens = {t: e for t, e in self._issued_tokens.items() if e > now}
            ttl = int(self.faults.oauth_token_ttl or OAUTH_TOKEN_TTL_S)
            self._issued_tokens[access_token] = now + ttl
        return Response(200, {"access_token": access_token, "token_type": "Bearer",
                              "expires_in": ttl, "scope": form.get("scope", "all-apis")})

    # -- REST API

    def _me(self, request: Request) -> Response:
        ws = self.workspace
        if request.principal == "service-principal":
            user_name, display = self.client_id, "Simulated service principal"
        else:
            user_name, display = "sim-admin@example.com", "Simulated Admin"
        body = {
            "id": str(7_000_000_000_000_000 + ws.seed),
            "userName": user_name,
            "displayName": display,
            "active": True,
            "emails": [{"type": "work", "value": user_name, "primary": True}] if "@" in user_name else [],
            "groups": [{"display": "admins", "type": "direct", "value": "100000000000001"}],
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                        "urn:ietf:params:scim:schemas:extension:workspace:2.0:User"],
        }
        return Response(200, body, {"X-Databricks-Org-Id": str(ws.workspace_id)})

    def _clusters_list(self, request: Request) -> Response:
        return Response(200, self.workspace.list_clusters(
            states=request.values("filter_by.cluster_states"),
            sources=request.values("filter_by.cluster_sources"),
            is_pinned=request.boolean("filter_by.is_pinned"),
            policy_id=request.text("filter_by.policy_id"),
            page_size=request.integer("page_size"),
            page_token=request.text("page_token")))

    def _clusters_get(self, request: Request) -> Response:
        return Response(200, self.workspace.get_cluster(request.required("cluster_id", request.text)))

    def _clusters_events(self, request: Request) -> Response:
        body = request.json()

        def integer(name):
            value = body.get(name)
            if value is None:
                return None
            try:
                return int(value)
            except (TypeError, ValueError):
                raise invalid_parameter(f"Invalid value for field {name}") from None

        page_size = integer("page_size")
        if not page_size:
            page_size = integer("limit")   # the deprecated name, which the legacy next_page bodies use
        return Response(200, self.workspace.cluster_events(
            body.get("cluster_id"), start_time=integer("start_time"), end_time=integer("end_time"),
            event_types=body.get("event_types") or None, order=body.get("order"), page_size=page_size,
            offset=integer("offset")))

    def _jobs_list(self, request: Request) -> Response:
        return Response(200, self.workspace.list_jobs(
            limit=request.integer("limit"), page_token=request.text("page_token"),
            expand_tasks=bool(request.boolean("expand_tasks")), name=request.text("name"),
            offset=request.integer("offset")))

    def _jobs_get(self, request: Request) -> Response:
        return Response(200, self.workspace.get_job(request.required("job_id", request.integer)))

    def _runs_list(self, request: Request) -> Response:
        return Response(200, self.workspace.list_runs(
            active_only=bool(request.boolean("active_only")),
            completed_only=bool(request.boolean("completed_only")),
            expand_tasks=bool(request.boolean("expand_tasks")),
            job_id=request.integer("job_id"),
            limit=request.integer("limit"),
            offset=request.integer("offset"),
            page_token=request.text("page_token"),
            run_type=request.text("run_type"),
            start_time_from=request.integer("start_time_from"),
            start_time_to=request.integer("start_time_to")))

    def _runs_get(self, request: Request) -> Response:
        return Response(200, self.workspace.get_run(request.required("run_id", request.integer),
                                                    self._principal_name(request)))

    def _runs_repair(self, request: Request) -> Response:
        body = request.json()
        try:
            run_id = int(body["run_id"])
            latest = body.get("latest_repair_id")
            latest = int(latest) if latest is not None else None
        except KeyError:
            raise invalid_parameter("Missing required field: run_id") from None
        except (TypeError, ValueError):
            raise invalid_parameter("run_id and latest_repair_id must be integers") from None
        return Response(200, self.workspace.repair_run(
            run_id, rerun_tasks=body.get("rerun_tasks"),
            rerun_all_failed_tasks=bool(body.get("rerun_all_failed_tasks")), latest_repair_id=latest))

    def _runs_submit(self, request: Request) -> Response:
        body = request.json()
        if not body.get("tasks"):
            raise invalid_parameter("A one-time run needs at least one task in `tasks`.")
        return Response(200, self.workspace.submit_run(body.get("run_name")))

    def _serving_list(self, request: Request) -> Response:
        return Response(200, self.workspace.serving.list())

    def _serving_get(self, request: Request) -> Response:
        return Response(200, self.workspace.serving.get(request.params["name"]))

    def _serving_metrics(self, request: Request) -> Response:
        return Response(200, self.workspace.serving.metrics_text(request.params["name"]))

    def _warehouses_list(self, request: Request) -> Response:
        return Response(200, self.workspace.list_warehouses(page_size=request.integer("page_size"),
                                                            page_token=request.text("page_token")))

    def _warehouses_get(self, request: Request) -> Response:
        return Response(200, self.workspace.get_warehouse(request.params["id"]))

    def _pipelines_list(self, request: Request) -> Response:
        return Response(200, self.workspace.pipelines.list_pipelines(
            filter=request.text("filter"), max_results=request.integer("max_results"),
            page_token=request.text("page_token"), order_by=request.values("order_by")))

    def _pipelines_get(self, request: Request) -> Response:
        return Response(200, self.workspace.pipelines.get_pipeline(request.params["id"]))

    def _pipeline_updates(self, request: Request) -> Response:
        return Response(200, self.workspace.pipelines.list_updates(
            request.params["id"], max_results=request.integer("max_results"),
            page_token=request.text("page_token"), until_update_id=request.text("until_update_id")))

    def _pipeline_update(self, request: Request) -> Response:
        return Response(200, self.workspace.pipelines.get_update(request.params["id"], request.params["update_id"]))

    def _pipeline_events(self, request: Request) -> Response:
        return Response(200, self.workspace.pipelines.list_events(request.params["id"], request.query))

    def _pipeline_event_requests(self, request: Request) -> Response:
        """Every events request's query string and status, oldest first: tests check what clients send."""
        return Response(200, {"requests": self.workspace.pipelines.request_log()})

    # -- simulator control

    def _truth(self, request: Request) -> Response:
        since = request.text("since")
        try:
            since_s = float(since) if since not in (None, "") else None
        except ValueError:
            raise invalid_parameter("since must be epoch seconds") from None
        truth = self.workspace.truth(since_s)
        return Response(200, {**truth, **self.sql.truth(int(truth["since"] * 1000))})

    def _warehouse_usage_truth(self, request: Request) -> Response:
        """Uptime, events and idleness of every warehouse over [start, end) (epoch seconds); idle once no query has
        been in flight for `grace` seconds (default 0)."""
        try:
            start, end = float(request.text("start")), float(request.text("end"))
            grace = float(request.text("grace") or 0)
        except (TypeError, ValueError):
            raise invalid_parameter("start and end (and grace) must be seconds") from None
        return Response(200, {"warehouses": self.sql.warehouse_usage_truth(int(start * 1000), int(end * 1000),
                                                                           int(grace * 1000))})

    def _statement_execute(self, request: Request) -> Response:
        return Response(200, execute_statement_request(self.sql, request.json(), self._principal_name(request)))

    def _statement_get(self, request: Request) -> Response:
        statement = self.sql.get(request.params["id"])
        self.sql.advance(statement)
        return Response(200, statement_json(self.sql, statement))

    def _statement_chunk(self, request: Request) -> Response:
        statement = self.sql.get(request.params["id"])
        if statement.state != SUCCEEDED or statement.result is None:
            raise ApiError(400, "BAD_REQUEST", f"Statement {statement.statement_id} has no result "
                                               f"({statement.state})")
        return Response(200, statement_chunk(self.sql, statement, int(request.params["n"])))

    def _statement_cancel(self, request: Request) -> Response:
        self.sql.cancel(self.sql.get(request.params["id"]))
        return Response(200, {})

    def _query_history(self, request: Request) -> Response:
        return Response(200, self.sql.list_history(
            start_ms=request.integer("filter_by.query_start_time_range.start_time_ms"),
            end_ms=request.integer("filter_by.query_start_time_range.end_time_ms"),
            statuses=request.values("filter_by.statuses"), warehouse_ids=request.values("filter_by.warehouse_ids"),
            statement_ids=request.values("filter_by.statement_ids"), max_results=request.integer("max_results"),
            page_token=request.text("page_token"), include_metrics=bool(request.boolean("include_metrics"))))

    def _sql_statements(self, request: Request) -> Response:
        """Every SQL statement clients sent, by warehouse, oldest first: tests check what the exporter runs."""
        with self.sql._lock:
            executed = list(self.sql.executed)
        return Response(200, {"statements": [{"warehouse_id": w, "statement": s} for w, s in executed]})

    def _sql_principal(self, headers) -> str:
        """The Thrift listener authenticates like the REST API: the PAT or an OAuth token this server issued."""
        request = Request("POST", "", {}, b"", headers, {}, "")
        request.principal = self._authenticate(request)
        return self._principal_name(request)

    def _principal_name(self, request: Request) -> str:
        return self.client_id if request.principal == "service-principal" else "sim-admin@example.com"

    def _pause(self, request: Request) -> Response:
        return Response(200, {"paused": True, "now": self.workspace.pause()})

    def _resume(self, request: Request) -> Response:
        return Response(200, {"paused": False, "now": self.workspace.resume()})

    def _stats_view(self, request: Request) -> Response:
        with self._lock:
            return Response(200, {"requests": dict(sorted(self._stats.items()))})

    def request_counts(self) -> dict[str, int]:
        """The same counts as GET /simulator/stats, for in-process callers."""
        with self._lock:
            return dict(self._stats)


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


def _parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", listen
    host = host.strip("[]") or "0.0.0.0"
    try:
        return host, int(port)
    except ValueError:
        raise ValueError(f"--listen must be HOST:PORT, got {listen!r}") from None


def run(listen: str = "127.0.0.1:8080", seed: int = 1, token: str | None = None, sql_listen: str | None = None,
        sql_hostname: str | None = None, tls_dir: str | None = None) -> None:
    """Serve the simulated workspace until SIGINT/SIGTERM, after printing how to connect to it. sql_listen
    (HOST:PORT) adds the HTTPS SQL listener the system-table collectors query."""
    host, port = _parse_listen(listen)
    sql = {}
    if sql_listen:
        sql_host, sql_port = _parse_listen(sql_listen)
        sql = {"sql_host": sql_host, "sql_port": sql_port, "sql_hostname": sql_hostname, "tls_dir": tls_dir}
    server = SimulatorServer(host=host, port=port, seed=seed, token=token or DEFAULT_TOKEN, permission_gaps=True,
                             **sql)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    print(f"DATABRICKS_HOST={server.url}", flush=True)
    print(f"DATABRICKS_TOKEN={server.token}", flush=True)
    print(f"DATABRICKS_CLIENT_ID={server.client_id}", flush=True)
    print(f"DATABRICKS_CLIENT_SECRET={server.client_secret}", flush=True)
    if server.sql_port is not None:
        warehouse = next(w.id for w in server.workspace.warehouses if w.serverless)
        print(f"DATABRICKS_WAREHOUSE_ID={warehouse}", flush=True)
        print(f"SQL: https://{server.sql_hostname}:{server.sql_port} (trust the CA in {server.tls_ca_file})", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.shutdown()


if __name__ == "__main__":
    run(*sys.argv[1:2])
