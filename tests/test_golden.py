"""The golden /metrics (as node_exporter's collector/fixtures/e2e-output.txt): one cycle of every collector against
the simulated workspace at a fixed seed and a fixed, paused simulated time, through the real databricks-sdk and
databricks-sql-connector, rendered as /metrics renders it and compared with tests/fixtures/e2e-metrics.txt. Any
change of a family's name, HELP, TYPE, of a series' label names or values, or of a value shows as a diff.

When the change is meant, regenerate the file and review its diff:

    .venv/bin/python -m pytest tests/test_golden.py --update-golden
"""

from __future__ import annotations

import copy
import difflib
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from sql_helpers import T0, FakeClock, sql_server, warehouse_in

from databricks_exporter import metrics as m
from databricks_exporter.cli import DEMO_COLLECTORS
from databricks_exporter.collectors import COLLECTORS
from databricks_exporter.config import load
from databricks_exporter.engine import Engine
from databricks_exporter.exposition import Renderer
from databricks_exporter.sinks import SINKS
from databricks_exporter.store import MetricStore

pytestmark = pytest.mark.integration

GOLDEN = Path(__file__).resolve().parent / "fixtures" / "e2e-metrics.txt"
UPDATE = ".venv/bin/python -m pytest tests/test_golden.py --update-golden"
SEED = 7

# What depends on the machine or on how long things took, not on the simulated workspace or the exporter's logic;
# these are written as <...> in the file. Everything else is a pure function of the seed and the simulated time: the
# exporter's clock is the simulator's fake one, so even its timestamps of "now" (last success, counting since) are
# fixed.
TIMED_VALUES = {
    # the wall time each cycle took here
    "databricks_exporter_collector_duration_seconds": "<seconds>",
    # which bucket each statement's wall time fell in, and their sum (the _count, how many ran, is kept)
    "databricks_exporter_sql_query_duration_seconds_bucket": "<count>",
    "databricks_exporter_sql_query_duration_seconds_sum": "<seconds>",
    # the statements' wall time priced at the warehouse's DBU rate
    "databricks_exporter_sql_estimated_dbus_total": "<dbus>",
}
MACHINE_LABELS = {
    "databricks_workspace_info": {"host": "http://127.0.0.1:<port>"},        # the simulator's free port
    "databricks_exporter_build_info": {"version": "<version>",               # the build and Python that ran it:
                                       "python_version": "<python_version>"},  # a release need not regenerate
}
# Families the first cycle against a healthy workspace cannot show, and where they are tested.
ABSENT = {
    "databricks_exporter_malformed_items_total": "only for an item the API garbled (tests/test_garbage.py)",
    "databricks_exporter_push_total": "written by the CloudWatch and OTLP sinks (tests/test_sink_*.py)",
    "databricks_exporter_push_last_success_timestamp_seconds": "the same: a sink writes it when it pushes",
    # A period is reconciled once the jobs and queries collectors have counted all of it and the tables have had
    # their delay: not in a first cycle (tests/test_reconciliation.py).
    "databricks_exporter_reconciliation_difference": "a whole counted period, an hour old",
    "databricks_exporter_reconciliation_last_timestamp_seconds": "the same",
    "databricks_exporter_reconciled_until_timestamp_seconds": "the same",
}
PAUSED_AT = f"{datetime.fromtimestamp(T0, timezone.utc):%Y-%m-%d %H:%M:%S} UTC"
HEADER = f"""\
# The golden /metrics of tests/test_golden.py: one cycle of every collector against the simulated workspace
# (seed {SEED}, paused at {PAUSED_AT}). <...> marks what depends on the machine; everything else must match.
# Regenerate: {UPDATE}
"""
SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?P<labels>\{.*\})? (?P<value>\S+)$")


def configuration(server) -> dict:
    """Every collector on, each with the options that make all of its families appear: the example's tables and
    queries (what the demo runs) plus a table that does not exist, task metrics, and two budgets."""
    collectors = {name: {"enabled": True} for name in COLLECTORS}
    for name, section in copy.deepcopy(DEMO_COLLECTORS).items():
        collectors[name].update(section)
    collectors["tables"]["tables"]["main.sales.no_such_table"] = {"max_staleness": "1h"}
    collectors["jobs"]["task_metrics"] = True
    collectors["warehouse_usage"]["idle_grace_seconds"] = "0s"     # idle between queries too, so idle time shows
    collectors["billing"]["budgets"] = [
        {"name": "platform", "period": "month", "amount": 25000},
        {"name": "data-eng-daily", "period": "day", "amount": 400, "tags": {"team": "data-eng"},
         "products": ["JOBS", "DLT"]}]
    return {"lookback": "2h",       # two hours, for a failed pipeline flow in the window at this seed
            "collectors": collectors,
            "workspaces": [{"name": "sim", "host": server.url, "token": server.token,
                            "warehouse_id": warehouse_in(server, "RUNNING").id, "tls_ca_bundle": server.tls_ca_file}]}


def exposition(tmp_path: Path) -> str:
    """What `databricks-exporter once` prints for `configuration`, but with the exporter on the simulator's clock."""
    clock = FakeClock(T0)
    server = sql_server(clock, seed=SEED, start=T0, permission_gaps=True)     # as the served simulator plays them
    try:
        server.workspace.pause()
        path = tmp_path / "config.yml"
        path.write_text(yaml.safe_dump(configuration(server)))
        store = MetricStore()
        engine = Engine(load(str(path), COLLECTORS, SINKS), store, clock)
        try:
            assert engine.run_once() == []
        finally:
            for workspace in engine.workspaces:
                workspace.sql.close()
        return Renderer(store).render().decode()
    finally:
        server.shutdown()


def normalise(text: str) -> str:
    lines = []
    for line in text.splitlines():
        sample = SAMPLE.match(line)
        if sample:
            name, labels, value = sample.group("name", "labels", "value")
            # Sums of doubles come back in whatever order the warehouse's threads added them: the last bits vary.
            value = TIMED_VALUES.get(name) or f"{float(value):.12g}"
            for label, placeholder in MACHINE_LABELS.get(name, {}).items():
                labels = re.sub(rf'\b{label}="(?:[^"\\]|\\.)*"', f'{label}="{placeholder}"', labels)
            line = f"{name}{labels or ''} {value}"
        lines.append(line)
    return HEADER + "\n".join(lines) + "\n"


def test_metrics_equal_the_golden_file(request, tmp_path):
    got = normalise(exposition(tmp_path))
    if request.config.getoption("--update-golden"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(got)
        print(f"\nwrote {GOLDEN} ({got.count(chr(10))} lines); review it with git diff")
    want = GOLDEN.read_text() if GOLDEN.exists() else ""
    if got != want:
        diff = list(difflib.unified_diff(want.splitlines(), got.splitlines(), str(GOLDEN), "this run", lineterm=""))
        shown = "\n".join(diff[:300]) + (f"\n... ({len(diff) - 300} more diff lines)" if len(diff) > 300 else "")
        pytest.fail(f"/metrics differs from the golden file:\n{shown}\n\nIf the change is meant, regenerate it: "
                    f"{UPDATE}", pytrace=False)


def test_the_golden_file_shows_every_metric_the_exporter_defines():
    """A new metric belongs in the golden file: if it cannot appear, configuration() lacks an option it needs."""
    families = set(re.findall(r"^# TYPE (\S+) ", GOLDEN.read_text(), re.M))
    missing = {metric.name for metric in m.REGISTRY.values()
               if metric.name not in families and f"{metric.name}_{metric.unit}" not in families}
    assert missing == set(ABSENT), missing
