"""The HTTP endpoint: /metrics from the store (never calling Databricks), a landing page, /healthz and /readyz."""

from __future__ import annotations

import html
import logging
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import __version__
from . import metrics as m
from .exposition import OPENMETRICS, TEXT, Renderer, wants_openmetrics
from .logs import REDACT
from .webconfig import WebConfig

log = logging.getLogger(__name__)


class ExporterHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # The stdlib's backlog of 5 drops connections when many scrapers arrive at once; each drop costs the client a
    # one-second SYN retransmit.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], renderer: Renderer, engine, web_config: WebConfig | None = None):
        self.renderer = renderer
        self.engine = engine
        self.web_config = web_config or WebConfig()
        # Where this process began, for the request rate the landing page shows (the counters survive restarts).
        self.footprint_start = (time.monotonic(), footprint(engine.store)["requests"])
        super().__init__(address, Handler)

    def get_request(self):
        sock, address = super().get_request()
        if self.web_config.ssl_context:
            # The handshake happens in the request's own thread (Handler.setup), so a slow client cannot
            # hold up accepting the next connection.
            sock = self.web_config.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address


class Handler(BaseHTTPRequestHandler):
    server: ExporterHTTPServer
    protocol_version = "HTTP/1.1"
    server_version = f"databricks-exporter/{__version__}"
    # Headers and body go out as two writes; with Nagle's algorithm the body's last segment would wait for the
    # client's delayed ACK of the headers (up to 40 ms on Linux) on every scrape.
    disable_nagle_algorithm = True

    # Idle keep-alive connections (Prometheus reuses one per target) are closed after this long.
    timeout = 30

    def setup(self):
        super().setup()
        if self.server.web_config.ssl_context:
            self.request.do_handshake()

    def handle(self):
        try:
            super().handle()
        except (ssl.SSLError, ConnectionError, TimeoutError) as exc:
            log.debug("connection closed: %s", exc)

    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        log.debug("http " + format, *args)   # formatted only when debug logging is on

    def do_GET(self):  # noqa: N802 - the stdlib's naming
        path = self.path.split("?", 1)[0]
        # /healthz stays open so container health checks need no password; it tells nothing about Databricks.
        if path != "/healthz" and not self.server.web_config.authorized(self.headers.get("Authorization")):
            self._send(401, "text/plain; charset=utf-8", b"Unauthorized\n",
                       {"WWW-Authenticate": 'Basic realm="databricks-exporter"'})
            return
        if path == "/metrics":
            self._metrics()
        elif path == "/":
            page = landing_page(self.server.engine, footprint_line(self.server))
            self._send(200, "text/html; charset=utf-8", page.encode())
        elif path == "/healthz":
            self._send(200, "text/plain; charset=utf-8", b"ok\n")
        elif path == "/readyz":
            engine = self.server.engine
            if engine.ready():
                self._send(200, "text/plain; charset=utf-8", b"ready\n")
            else:
                waiting = sorted(f"{w}/{c}" for (w, c), s in engine.status.items() if not s.finished_cycles)
                self._send(503, "text/plain; charset=utf-8",
                           ("waiting for the first cycle of: " + ", ".join(waiting) + "\n").encode())
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found; try /metrics\n")

    def do_HEAD(self):  # noqa: N802
        self.do_GET()

    def _metrics(self):
        openmetrics = wants_openmetrics(self.headers.get("Accept"))
        gzipped = "gzip" in (self.headers.get("Accept-Encoding") or "")
        body = self.server.renderer.render(openmetrics, gzipped)
        self._send(200, OPENMETRICS if openmetrics else TEXT, body, {"Content-Encoding": "gzip"} if gzipped else {})

    def _send(self, code: int, content_type: str, body: bytes, headers: dict | None = None):
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def footprint(store) -> dict[str, float]:
    """What the exporter has cost Databricks so far (since counting began, across restarts): REST requests and
    those answered 429, SQL statements, their warehouse time and estimated DBUs."""
    totals = {"requests": 0.0, "throttled": 0.0, "statements": 0.0, "sql_seconds": 0.0, "dbus": 0.0}
    for family in store.families():
        for values, value in family.samples:
            labels = dict(zip(family.metric.labels, values))
            if family.metric is m.API_REQUESTS:
                totals["requests"] += value
                totals["throttled"] += value if labels["status_code"] == "429" else 0
            elif family.metric is m.SQL_QUERIES and labels["outcome"] != "skipped":
                totals["statements"] += value
            elif family.metric is m.SQL_QUERY_DURATION:
                totals["sql_seconds"] += value.sum
            elif family.metric is m.SQL_ESTIMATED_DBUS:
                totals["dbus"] += value
    return totals


def footprint_line(server: ExporterHTTPServer) -> str:
    now = footprint(server.engine.store)
    started, requests_then = server.footprint_start
    minutes = max((time.monotonic() - started) / 60, 1 / 60)
    rate = (now["requests"] - requests_then) / minutes
    return (f"Footprint: {rate:.1f} REST requests a minute since this process started ({now['requests']:.0f} in "
            f"all, {now['throttled']:.0f} answered 429: Databricks rate-limits per workspace); "
            f"{now['statements']:.0f} SQL statements, {now['sql_seconds']:.0f} s of warehouse time, about "
            f"{now['dbus']:.2f} DBU.")


def landing_page(engine, footprint_text: str = "") -> str:
    now = time.time()
    rows = []
    for (workspace, collector), status in sorted(engine.status.items()):
        if not status.finished_cycles:
            state = "starting"
        elif status.timed_out(now):
            state = "timed out"
        else:
            state = "up" if status.up else "failing"
        last = f"{now - status.last_success:.0f}s ago" if status.last_success else "never"
        rows.append(
            f"<tr><td>{html.escape(workspace)}</td><td>{html.escape(collector)}</td><td class='{state.split()[0]}'>"
            f"{state}</td><td>{status.interval:.0f}s</td><td>{status.duration:.2f}s</td><td>{last}</td>"
            f"<td>{html.escape(REDACT(status.last_error))}</td></tr>")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Databricks exporter</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:4px 10px;text-align:left}}
.up{{color:#1a7f37}}.failing,.timed{{color:#cf222e}}.starting{{color:#9a6700}}</style></head>
<body><h1>Databricks exporter</h1><p>version {html.escape(__version__)}</p>
<p>{html.escape(footprint_text)}</p>
<ul><li><a href="/metrics">/metrics</a></li><li><a href="/healthz">/healthz</a></li>
<li><a href="/readyz">/readyz</a></li></ul>
<h2>Collectors</h2><table><tr><th>workspace</th><th>collector</th><th>status</th><th>interval</th>
<th>last cycle</th><th>last success</th><th>last error</th></tr>
{''.join(rows)}</table></body></html>
"""


def serve(address: str, renderer: Renderer, engine, web_config: WebConfig | None = None) -> ExporterHTTPServer:
    host, _, port = address.rpartition(":")
    server = ExporterHTTPServer((host.strip("[]") or "0.0.0.0", int(port)), renderer, engine, web_config)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server
