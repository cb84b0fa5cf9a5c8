"""Logs: one JSON object per line with the cycle's context, readable text, and never a secret, whatever the level."""

from __future__ import annotations

import json
import logging
import threading
import urllib.parse

import pytest
import yaml
from moto.server import ThreadedMotoServer

from databricks_exporter import logs
from databricks_exporter import metrics as m
from databricks_exporter.collectors import COLLECTORS
from databricks_exporter.config import load
from databricks_exporter.engine import Engine
from databricks_exporter.sinks import SINKS
from databricks_exporter.cycle import Cycle
from databricks_exporter.store import MetricStore

from conftest import StubHandler, serve_stub

SECRETS = {
    "DATABRICKS_TOKEN": "dapi0123456789abcdef0123456789abcdef",
    "DATABRICKS_CLIENT_SECRET": "dose0123456789-client-secret",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "AWS_SESSION_TOKEN": "IQoJb3JpZ2luX2VjEFAKE+session/token==",
}
CONFIG_CLIENT_SECRET = "config-client-secret-98765"
OTLP_API_KEY = "otlp-api-key-0123456789"
ENV_OTLP_KEY = "env-otlp-key-abcdef"


@pytest.fixture(autouse=True)
def restore_logging():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level
              for name in ("botocore", "boto3", "urllib3", "databricks.sdk", "opentelemetry", "werkzeug")}
    logging.captureWarnings(False)      # setup() turns it on; a previous test's pytest context may be gone
    yield
    logging.captureWarnings(False)
    threading.excepthook = threading.__excepthook__
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, value in levels.items():
        logging.getLogger(name).setLevel(value)


class FakeCollector:
    name = "jobs"

    def collect(self, cycle: Cycle, state: dict) -> None:
        cycle.inc(m.JOB_RUNS, 2, job_id="7", result_state="SUCCESS", trigger="PERIODIC")
        cycle.gauge(m.JOB_INFO, 1, job_id="7", job_name="etl", schedule_paused="false")


def test_json_lines_carry_the_cycle_context(monkeypatch, capsys):
    monkeypatch.setenv("DATABRICKS_HOST", "https://example.cloud.databricks.com")
    settings = load(None, COLLECTORS, SINKS)
    engine = Engine(settings, MetricStore())
    workspace = engine.workspaces[0]
    workspace.workspace_id = "1234567890"
    logs.setup("info", "json")
    assert engine.run_cycle(workspace, FakeCollector())
    logging.getLogger("databricks_exporter.test").warning("line one\nline two", extra={"sink": "otlp"})

    lines = capsys.readouterr().err.strip().splitlines()
    entries = [json.loads(line) for line in lines]          # every line is one JSON object
    [cycle] = [e for e in entries if e["event"] == "collection cycle finished"]
    assert {"timestamp", "level", "logger", "event", "workspace_id", "collector", "correlation_id",
            "duration_seconds"} <= set(cycle)
    assert cycle["level"] == "info" and cycle["logger"] == "databricks_exporter.engine"
    assert (cycle["workspace_id"], cycle["collector"]) == ("1234567890", "jobs")
    assert len(cycle["correlation_id"]) >= 8 and isinstance(cycle["duration_seconds"], float)
    assert cycle["increments"] == 1 and cycle["series"] == 1
    assert cycle["timestamp"].endswith("Z") and "T" in cycle["timestamp"]
    multi = entries[-1]
    assert multi["event"] == "line one\nline two" and multi["sink"] == "otlp" and multi["level"] == "warning"


class ForbiddenItemsCollector:
    """Skips two items a 403 refused, every cycle, and counts one run."""

    name = "pipelines"

    def collect(self, cycle: Cycle, state: dict) -> None:
        cycle.forbidden("event log of pipeline p-1", "CAN VIEW on the pipeline")
        cycle.forbidden("event log of pipeline p-2", "CAN VIEW on the pipeline")
        cycle.inc(m.JOB_RUNS, 1, job_id="7", result_state="SUCCESS", trigger="PERIODIC")


def test_forbidden_items_are_counted_each_cycle_and_warned_about_once_an_hour(monkeypatch, capsys):
    monkeypatch.setenv("DATABRICKS_HOST", "https://example.cloud.databricks.com")
    now = [1_790_000_000.0]
    store = MetricStore()
    engine = Engine(load(None, COLLECTORS, SINKS), store, clock=lambda: now[0])
    workspace = engine.workspaces[0]
    workspace.workspace_id = "42"
    logs.setup("info", "json")
    for minutes in (0, 1, 30, 61):
        now[0] = 1_790_000_000.0 + minutes * 60
        assert engine.run_cycle(workspace, ForbiddenItemsCollector())     # the collector stays up
    entries = [json.loads(line) for line in capsys.readouterr().err.strip().splitlines()]
    warnings = [e["event"] for e in entries if e["level"] == "warning"]
    # Two items, warned about at minute 0 and again at minute 61: four warnings for eight skips.
    assert warnings == ["skipped event log of pipeline p-1: the credential may list it but not read it (403); grant "
                        "CAN VIEW on the pipeline",
                        "skipped event log of pipeline p-2: the credential may list it but not read it (403); grant "
                        "CAN VIEW on the pipeline"] * 2
    assert store.value("databricks_exporter_forbidden_items_total", workspace_id="42", collector="pipelines") == 8
    assert store.value("databricks_job_runs_total", workspace_id="42", job_id="7", result_state="SUCCESS",
                       trigger="PERIODIC") == 4


def test_text_stays_readable(capsys):
    logs.setup("info", "text")
    logging.getLogger("databricks_exporter.engine").info(
        "collection cycle finished", extra={"workspace_id": "42", "collector": "jobs", "duration_seconds": 0.5})
    line = capsys.readouterr().err.strip()
    assert "INFO" in line and "databricks_exporter.engine: collection cycle finished" in line
    assert "workspace_id=42 collector=jobs duration_seconds=0.5" in line
    assert not line.startswith("{")


class _EchoDatabricks(StubHandler):
    """A workspace API that misbehaves: it echoes the caller's Authorization header back in the body."""

    def do_GET(self):
        self.reply(200, json.dumps({"id": "1", "userName": self.headers.get("Authorization", ""),
                                    "displayName": "echo"}).encode(), "application/json")


class _Otlp(StubHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.reply(200)


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_no_secret_reaches_a_log_line_at_any_level(fmt, tmp_path, monkeypatch, capsys):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEFAKEKEY00")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"x-env-key={ENV_OTLP_KEY}")
    monkeypatch.delenv("DATABRICKS_CONFIG_PROFILE", raising=False)
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    databricks, otlp = serve_stub(_EchoDatabricks), serve_stub(_Otlp)
    try:
        host, port = moto.get_host_and_port()
        config = tmp_path / "config.yml"
        config.write_text(yaml.safe_dump({
            "workspaces": [
                {"name": "pat", "host": f"http://127.0.0.1:{databricks.server_port}",
                 "token": "${DATABRICKS_TOKEN}"},
                {"name": "sp", "host": "https://sp.example.com", "client_id": "abc",
                 "client_secret": CONFIG_CLIENT_SECRET}],
            "sinks": {
                "cloudwatch": {"enabled": True, "endpoint_url": f"http://{host}:{port}", "include": [".*"],
                               "request_compression": False, "max_attempts": 1},
                "otlp": {"enabled": True, "endpoint": f"http://127.0.0.1:{otlp.server_port}",
                         "headers": {"x-api-key": OTLP_API_KEY}}}}))
        settings = load(str(config), COLLECTORS, SINKS)
        logs.register_secrets(settings)
        logs.setup("debug", fmt)
        # The worst case: every library's debug output on, including the ones setup() quietens.
        for name in ("botocore", "boto3", "urllib3", "databricks.sdk", "opentelemetry", "werkzeug"):
            logging.getLogger(name).setLevel(logging.DEBUG)

        from databricks_exporter.sinks import cloudwatch, otlp as otlp_sink
        from databricks_exporter.sources import rest

        store = MetricStore()
        cycle = Cycle("1")
        cycle.inc(m.JOB_RUNS, 1, job_id="7", result_state="SUCCESS", trigger="PERIODIC")
        store.commit("1/jobs", cycle, {})
        store.set_gauges("status", {m.COLLECTOR_UP: {("1", "jobs"): 1.0}})
        cw = cloudwatch.CloudWatchSink(settings.sinks["cloudwatch"], store)
        assert cw.push_once() and cw.push_once(), cw.last_error
        sink = otlp_sink.OtlpSink(settings.sinks["otlp"], store)
        assert sink.push_once(), sink.last_error
        sink.close()
        # Registered from the environment by setup(); gone before the SDK reads it, which would find two auth methods.
        monkeypatch.delenv("DATABRICKS_CLIENT_SECRET")
        client = rest.make_client(settings.workspaces[0])
        me = client.current_user.me()
        assert SECRETS["DATABRICKS_TOKEN"] in me.user_name      # the server did echo it...

        log = logging.getLogger("databricks_exporter.test")
        everything = " ".join([*SECRETS.values(), CONFIG_CLIENT_SECRET, OTLP_API_KEY, ENV_OTLP_KEY])
        for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL):
            log.log(level, "message with %s", everything, extra={"detail": everything, "nested": {"k": everything}})
        try:
            raise RuntimeError(f"request failed: Authorization: Bearer {SECRETS['DATABRICKS_TOKEN']} "
                               f"{urllib.parse.quote(SECRETS['AWS_SECRET_ACCESS_KEY'], safe='')}")
        except RuntimeError:
            log.exception("unexpected error")
    finally:
        moto.stop()
        databricks.shutdown()
        otlp.shutdown()

    output = capsys.readouterr().err
    # The debug paths did run: botocore's request logging (with the session token header), the SDK's.
    assert "X-Amz-Security-Token" in output and "PutMetricData" in output
    assert "databricks.sdk" in output and "***" in output
    for secret in [*SECRETS.values(), CONFIG_CLIENT_SECRET, OTLP_API_KEY, ENV_OTLP_KEY]:
        for form in {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret),
                     json.dumps(secret)[1:-1]}:
            assert form not in output, f"a secret reached the log ({form[:6]}...)"
    if fmt == "json":
        for line in output.splitlines():
            if line.startswith("{"):
                json.loads(line)


def test_redactor_replaces_longest_first_and_url_encoded_forms():
    redact = logs.Redactor()
    redact.add("abcdef")
    redact.add("abcdef-longer/secret")
    assert redact("x abcdef-longer/secret y") == "x *** y"
    assert redact("q=abcdef-longer%2Fsecret") == "q=***"
    redact.add("short")                                   # too short to be a secret worth matching
    assert redact("short") == "short"


def test_warnings_and_dying_threads_are_json_lines_too(capsys):
    import warnings

    logs.REDACT.add(SECRETS["DATABRICKS_TOKEN"])
    logs.setup("info", "json")
    warnings.warn(f"careful with {SECRETS['DATABRICKS_TOKEN']}")

    def die():
        raise ValueError("thread failed")

    thread = threading.Thread(target=die, name="doomed")
    thread.start()
    thread.join()
    lines = capsys.readouterr().err.strip().splitlines()
    entries = [json.loads(line) for line in lines]
    assert any("careful with ***" in e["event"] for e in entries)
    [dead] = [e for e in entries if "doomed" in e["event"]]
    assert dead["level"] == "critical" and "ValueError: thread failed" in dead["exception"]
