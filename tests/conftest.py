"""Shared fixtures: the simulated workspace in-process, the exporter as a real subprocess, the real Prometheus and
Alertmanager, stand-in HTTP servers (a webhook server for the receivers), and the crash-and-converge drill of the
exactly-once tests."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from hypothesis import settings as hypothesis_settings

# CI is the gate a change must pass: there the property tests replay the same examples every run (derandomized), so
# a red CI always means the change broke something. Locally they draw fresh examples, which is where new garbage
# is found.
hypothesis_settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")

ROOT = Path(__file__).resolve().parent.parent


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true",
                     help="rewrite tests/fixtures/e2e-metrics.txt from this run (tests/test_golden.py)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_serve(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """`databricks-exporter serve ARGS` run to its exit, pointed at a host nothing listens on with a dummy token:
    how a start-up error (a bad configuration file, say) meets the user."""
    env = {"DATABRICKS_HOST": "http://127.0.0.1:9", "DATABRICKS_TOKEN": "x" * 10, "PATH": "/usr/bin:/bin",
           "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "databricks_exporter", "serve", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def http_get(url: str, headers: dict | None = None, timeout: float = 10) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def wait_for(predicate, timeout: float, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def post(simulator, path: str) -> dict:
    """POST to one of the simulated workspace's own endpoints (/simulator/pause, /simulator/faults, ...)."""
    request = urllib.request.Request(simulator.url + path, method="POST", data=b"")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"{}")


def truth(simulator, since: float) -> dict:
    """The simulated workspace's own ledger of what completed since `since` (epoch seconds)."""
    return json.loads(http_get(f"{simulator.url}/simulator/truth?since={since}")[2])


@contextlib.contextmanager
def paused(simulator):
    """The simulated workspace standing still inside the block: nothing starts or ends, so its truth holds still."""
    post(simulator, "/simulator/pause")
    try:
        yield
    finally:
        post(simulator, "/simulator/resume")


def sigkill_restarts(exporter: ExporterProcess, outages, then: float = 0.0, while_down=None) -> None:
    """The crash half of an exactly-once drill: for each (up, down) in `outages`, let the exporter run `up` seconds,
    SIGKILL it (likely mid-cycle), and start it again `down` seconds later, while the simulated workspace keeps
    completing work; then let it run `then` seconds more. while_down(n), if given, runs during the n-th outage."""
    for n, (up, down) in enumerate(outages):
        time.sleep(up)
        exporter.kill(signal.SIGKILL)
        if while_down is not None:
            while_down(n)
        time.sleep(down)
        exporter.start()
    time.sleep(then)


def converge_on_truth(simulator, observe, expect, timeout: float = 30.0,
                      what: str = "the exporter to equal the truth") -> tuple:
    """The converge half: pause the simulated workspace, read the truth (`expect()`), and wait until what the
    exporter reports (`observe()`) equals it; then resume. Returns (observed, expected); when it never converges the
    assertion shows the last observation against the truth."""
    with paused(simulator):
        expected = expect()
        observed = [None]

        def equal() -> bool:
            observed[0] = observe()
            return observed[0] == expected

        try:
            wait_for(equal, timeout, what=what)
        except AssertionError:
            assert observed[0] == expected, f"timed out after {timeout}s waiting for {what}"
        return observed[0], expected


def require_binary(name: str) -> str:
    """Integration tests need the real servers; in CI a missing binary fails the run instead of skipping."""
    path = shutil.which(name)
    if path:
        return path
    if os.environ.get("CI"):
        pytest.fail(f"{name} is not installed; .ci/run installs it with apt-get")
    pytest.skip(f"{name} is not installed (apt-get install prometheus prometheus-alertmanager)")


@pytest.fixture
def simulator():
    from databricks_sim.server import SimulatorServer

    server = SimulatorServer(port=0, seed=7).start()
    yield server
    server.shutdown()


class ExporterProcess:
    """`databricks-exporter serve` as a user runs it, with its stderr kept for inspection."""

    def __init__(self, tmp_path: Path, simulator, config: dict | None = None, env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.state_file = tmp_path / "state.json"
        self.log_path = tmp_path / "exporter.log"
        self.config_path = tmp_path / "config.yml"
        config = config or {}
        config.setdefault("state_file", str(self.state_file))
        config.setdefault("web", {"listen_address": f"127.0.0.1:{self.port}"})
        self.config_path.write_text(yaml.safe_dump(config))
        self.env = {**os.environ, "DATABRICKS_HOST": simulator.url, "DATABRICKS_TOKEN": simulator.token}
        for name in ("DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET", "DATABRICKS_CONFIG_PROFILE"):
            self.env.pop(name, None)
        self.env.update(env or {})
        self.proc: subprocess.Popen | None = None
        self.scheme = "http"

    def start(self, *extra: str) -> "ExporterProcess":
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "databricks_exporter", "serve", "--config.file", str(self.config_path), *extra],
            env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        wait_for(lambda: self._ready(), 60, what="exporter /readyz")
        return self

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"exporter exited with {self.proc.returncode}:\n{self.log()}")
        if self.scheme == "https":   # a secured exporter: its log says when it listens
            return "listening on https://" in self.log()
        try:
            return http_get(self.url + "/readyz", timeout=2)[0] == 200
        except OSError:
            return False

    def metrics(self) -> str:
        return http_get(self.url + "/metrics")[2].decode()

    def kill(self, sig=signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:    # a teardown on a busy machine: how fast it stops is tested elsewhere
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def exporter_factory(tmp_path, simulator):
    started: list[ExporterProcess] = []

    def make(config: dict | None = None, env: dict | None = None) -> ExporterProcess:
        directory = tmp_path / f"exporter{len(started)}"
        directory.mkdir()
        exporter = ExporterProcess(directory, simulator, config, env)
        started.append(exporter)
        return exporter

    yield make
    for exporter in started:
        exporter.kill(signal.SIGTERM)


FAST = {"collectors": {"clusters": {"interval": "2s"}, "warehouses": {"interval": "2s"},
                       "jobs": {"interval": "2s"}}}


def fast_config(**extra) -> dict:
    return json.loads(json.dumps({**FAST, **extra}))


class PrometheusServer:
    """A Prometheus-project server (Prometheus, Alertmanager) run as a subprocess on a free port, its output in a log
    file, ready when /-/ready answers 200."""

    name = ""

    def _launch(self, tmp_path: Path, command: list[str]) -> None:
        self.log_path = tmp_path / f"{self.name}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)
        wait_for(self._ready, 30, what=f"{self.name} ready")

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited:\n{self.log_path.read_text()}")
        try:
            return http_get(self.url + "/-/ready", timeout=2)[0] == 200
        except OSError:
            return False

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self._log.close()


class Prometheus(PrometheusServer):
    """The real Prometheus server (Debian's package), scraping the given targets every second. Optionally it sends
    alerts to `alertmanagers` (host:port), and starts on a TSDB that already holds `backfill` (OpenMetrics text,
    written with promtool tsdb create-blocks-from openmetrics): history from before the test began."""

    name = "prometheus"

    def __init__(self, tmp_path: Path, targets: list[str], rule_files: list[str] | None = None,
                 alertmanagers: list[str] | None = None, evaluation_interval: str = "1s",
                 backfill: str | None = None, **scrape):
        binary = require_binary("prometheus")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": evaluation_interval},
            "rule_files": rule_files or [],
            "scrape_configs": [{"job_name": "databricks", "static_configs": [{"targets": targets}], **scrape}],
        }
        if alertmanagers:
            config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": alertmanagers}]}]}
        if backfill:
            source = tmp_path / "backfill.om"
            source.write_text(backfill)
            subprocess.run([require_binary("promtool"), "tsdb", "create-blocks-from", "openmetrics", str(source),
                            str(tmp_path / "tsdb")], check=True, capture_output=True, timeout=60)
        config_path = tmp_path / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config))
        self._launch(tmp_path, [binary, f"--config.file={config_path}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                f"--web.listen-address=127.0.0.1:{self.port}"])

    def query(self, promql: str) -> list[dict]:
        url = f"{self.url}/api/v1/query?query={urllib.parse.quote(promql)}"
        status, _, body = http_get(url)
        data = json.loads(body)
        assert status == 200 and data["status"] == "success", body
        return data["data"]["result"]


@pytest.fixture
def prometheus_factory(tmp_path):
    started: list[Prometheus] = []

    def make(targets, **kwargs) -> Prometheus:
        prom = Prometheus(tmp_path, targets, **kwargs)
        started.append(prom)
        return prom

    yield make
    for prom in started:
        prom.stop()


class Alertmanager(PrometheusServer):
    """The real Alertmanager (Debian's prometheus-alertmanager), alone (no cluster), from the given config."""

    name = "alertmanager"

    def __init__(self, tmp_path: Path, config: dict):
        binary = require_binary("prometheus-alertmanager")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.address = f"127.0.0.1:{self.port}"
        config_path = tmp_path / "alertmanager.yml"
        config_path.write_text(yaml.safe_dump(config))
        self._launch(tmp_path, [binary, f"--config.file={config_path}",
                                f"--storage.path={tmp_path / 'alertmanager-data'}",
                                f"--web.listen-address={self.address}", "--cluster.listen-address="])


class StubHandler(BaseHTTPRequestHandler):
    """The request handler of a server standing in for another (a workspace, CloudWatch, an OTLP endpoint, a
    receiver): quiet, and one call writes a whole answer."""

    def reply(self, status: int, body: bytes = b"", content_type: str | None = None,
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in {**({"Content-Type": content_type} if content_type else {}), **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def serve_stub(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    """`handler` served on a free local port from a daemon thread (its port: .server_port; stop it: .shutdown())."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


class WebhookReceiver:
    """A local HTTP server standing in for PagerDuty, Slack and the rest: records every POST as (time received,
    path, JSON body), so a test sees what Alertmanager sent where, and when."""

    def __init__(self):
        receiver = self
        self.posts: list[tuple[float, str, dict]] = []
        self._lock = threading.Lock()

        class Handler(StubHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.posts.append((time.time(), self.path, json.loads(body or b"{}")))
                self.reply(200)

        self._httpd = serve_stub(Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_port}"

    def received(self) -> list[tuple[float, str, dict]]:
        with self._lock:
            return list(self.posts)

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
