"""The audit and predictive_optimization collectors against the simulated workspace through the real SQL connector:
watched audit actions counted once each by event_id, equal to the simulator's ledger across overlapping reads and
across SIGKILL restarts of the exporter; nothing counted, and the collector idle, without SELECT on the table;
predictive optimization operations and DBUs per catalog equal to the ledger."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml
from sql_helpers import (  # noqa: F401 (clock and server are fixtures)
    by, clock, collector, connected, only, run_cycle, samples, server, sql_server, warehouse_in,
)

from conftest import ExporterProcess, http_get, wait_for
from test_integration import parse, total
from databricks_exporter.collectors.audit import ACTIONS
from databricks_exporter.store import MetricStore

pytestmark = pytest.mark.integration
CLASS = {"200": "2xx", "401": "4xx", "403": "4xx", "500": "5xx"}


def control(url: str, method: str) -> None:
    urllib.request.urlopen(urllib.request.Request(url, method=method, data=b"" if method == "POST" else None),
                           timeout=10).read()


def truth(url: str, since: float) -> dict:
    return json.loads(http_get(f"{url}/simulator/truth?since={since}")[2])


def watched(tree: dict) -> dict[tuple, float]:
    """The ledger's {service: {action: {status_code: n}}} as {(service, action, status class): n}, watched actions
    only."""
    out: dict[tuple, float] = {}
    for service, actions in tree.items():
        for action, codes in actions.items():
            if f"{service}/{action}" in ACTIONS:
                for code, n in codes.items():
                    key = (service, action, CLASS[code])
                    out[key] = out.get(key, 0) + n
    return out


def events(store: MetricStore) -> dict[tuple, float]:
    return {(s["service_name"], s["action_name"], s["status_class"]): v
            for s, v in samples(store, "databricks_audit_events_total")}


@pytest.fixture(scope="module")
def workspace(server):
    workspace = connected(server, warehouse_in(server, "RUNNING").id)
    yield workspace
    workspace.sql.close()


def test_watched_actions_are_counted_once_and_equal_the_ledger(workspace, clock, server):
    instance = collector("audit", workspace, clock, lookback=3 * 3600)
    store = MetricStore()
    run_cycle(instance, store)
    since = store.state(f"{workspace.workspace_id}/audit")["counting_since"]
    assert by(store, "databricks_audit_log_readable") == {"": 1}
    for _ in range(3):               # reads overlap by max_delay: every event is read several times
        expected = watched(truth(server.url, since)["audit"]["visible"])
        assert events(store) == expected
        clock.advance(240)
        run_cycle(instance, store)
    assert expected[("accounts", "tokenLogin", "2xx")] > 300
    assert not any(k[0] in ("clusters", "jobs", "notebook") for k in events(store))   # not watched


def test_a_failed_login_burst_is_counted(workspace, clock, server):
    instance = collector("audit", workspace, clock, lookback=0)
    store = MetricStore()
    run_cycle(instance, store)
    control(f"{server.url}/simulator/scenarios/failed_login_burst", "POST")
    try:
        for _ in range(4):
            clock.advance(180)
            run_cycle(instance, store)
    finally:
        control(f"{server.url}/simulator/scenarios", "DELETE")
    since = store.state(f"{workspace.workspace_id}/audit")["counting_since"]
    failed = events(store)[("accounts", "login", "4xx")]
    assert failed == watched(truth(server.url, since)["audit"]["visible"])[("accounts", "login", "4xx")]
    assert failed >= 3 * 40        # forty a minute, visible one to four minutes late


def test_without_select_on_the_audit_log_the_collector_stays_idle(workspace, clock, server):
    server.sql.revoke_select("system.access.audit")
    try:
        instance = collector("audit", workspace, clock)
        store = MetricStore()
        run_cycle(instance, store)
        assert by(store, "databricks_audit_log_readable") == {"": 0}
        assert not samples(store, "databricks_audit_events_total")
        assert "stays idle" in instance.check()
    finally:
        server.sql.revoke_select("system.access.audit", revoked=False)
    run_cycle(instance, store)               # granted again: the next cycle reads
    assert by(store, "databricks_audit_log_readable") == {"": 1}
    assert samples(store, "databricks_audit_events_total")


def test_predictive_optimization_equals_the_ledger(workspace, clock, server):
    instance = collector("predictive_optimization", workspace, clock, lookback=3600, tables=["main.sales.orders"])
    store = MetricStore()
    run_cycle(instance, store)
    # Counting began an hour ago, and the first cycle also counts what ended in the day before (backfill).
    since = store.state(f"{workspace.workspace_id}/predictive_optimization")["counting_since"] - 24 * 3600
    clock.advance(300)              # a second read overlaps the first by max_delay
    run_cycle(instance, store)
    expected = truth(server.url, since)["predictive_optimization"]
    operations = {(s["catalog"], s["operation_type"], s["status"]): v
                  for s, v in samples(store, "databricks_predictive_optimization_operations_total")}
    want = {(c, t, "FAILED" if s.startswith("FAILED") else s): n for c, types in expected["operations"].items()
            for t, statuses in types.items() for s, n in statuses.items()}
    assert operations == want and sum(want.values()) > 50
    dbus = {(s["catalog"], s["operation_type"]): v
            for s, v in samples(store, "databricks_predictive_optimization_dbus_total")}
    assert dbus == pytest.approx({(c, t): n for c, types in expected["dbus"].items() for t, n in types.items()})
    assert set(by(store, "databricks_predictive_optimization_table_last_operation_timestamp_seconds", "table")) == {
        "main.sales.orders"}


def test_audit_events_are_counted_exactly_once_across_sigkill_restarts(tmp_path):
    """The exporter as users run it, on the real clock, killed twice mid-flight while failed logins pour in."""
    server = sql_server()
    exporter = None
    try:
        config = only("audit", server, warehouse_in(server, "RUNNING").id)
        config["lookback"] = "3h"
        exporter = ExporterProcess(tmp_path, server, config).start()
        control(f"{server.url}/simulator/scenarios/failed_login_burst", "POST")

        def counted():
            samples = parse(exporter.metrics())
            return {(s["service_name"], s["action_name"], s["status_class"]): v
                    for name, s, v in samples if name == "databricks_audit_events_total"}, \
                total(samples, "databricks_exporter_counting_since_timestamp_seconds", collector="audit")

        since = wait_for(lambda: counted()[1] if counted()[0] else None, 60, what="audit events counted")
        for _ in range(2):
            time.sleep(3)
            exporter.kill(signal.SIGKILL)
            time.sleep(3)
            exporter.start()
        control(f"{server.url}/simulator/pause", "POST")
        expected = watched(truth(server.url, since)["audit"]["visible"])

        def converged():
            now, again = counted()
            return now if now == expected and again == since else None

        wait_for(converged, 30, what=f"audit events == truth ({sum(expected.values())})")
        assert sum(expected.values()) > 300
    finally:
        if exporter:
            exporter.kill()
        server.shutdown()


def test_check_says_per_new_collector_whether_the_credential_may_read_it(tmp_path):
    server = sql_server()
    try:
        config = only("audit", server, warehouse_in(server, "RUNNING").id)
        for name in ("serving", "serving_usage", "predictive_optimization"):
            config["collectors"][name] = {}
        path = tmp_path / "config.yml"
        path.write_text(yaml.safe_dump(config))
        server.sql.revoke_select("system.access.audit")
        result = subprocess.run([sys.executable, "-m", "databricks_exporter", "check", "--config.file", str(path)],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        out = result.stdout
        assert re.search(r"audit\s+OK\s+cannot read system.access.audit .*stays idle", out), out
        assert re.search(r"serving\s+OK\s+listed 6 serving endpoints and read the metrics export of fraud-scoring",
                         out), out
        assert re.search(r"serving_usage\s+OK\s+read system.serving.endpoint_usage", out), out
        assert re.search(r"predictive_optimization\s+OK\s+read "
                         r"system.storage.predictive_optimization_operations_history", out), out
        server.sql.revoke_select("system.storage.predictive_optimization_operations_history")
        result = subprocess.run([sys.executable, "-m", "databricks_exporter", "check", "--config.file", str(path)],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 1 and re.search(r"predictive_optimization\s+FAILED.*INSUFFICIENT_PERMISSIONS",
                                                    result.stdout), result.stdout
        assert "needs: CAN USE on the SQL warehouse (warehouse_id) and SELECT on " \
               "system.storage.predictive_optimization_operations_history" in result.stdout
    finally:
        server.shutdown()
