"""The Grafana dashboards as one tested unit with the rules: generated from monitoring/dashboards without drift,
built to the project's conventions, naming only metrics that exist, and showing data against the simulated
workspace through the real Prometheus running the project's recording and alert rules."""

from __future__ import annotations

import json
import math
import re
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import ExporterProcess, Prometheus, fast_config, http_get, require_binary, wait_for
from promql_lint import (PENDING_METRICS, base_name, counter_function_problems, metric_names, pending_problems,
                         selector_problems)
from test_rules import DASHBOARD_UIDS, RECORDS, RULE_FILES, expressions_of_rules

import monitoring
from databricks_exporter import metrics as m
from databricks_exporter.cli import DEMO_COLLECTORS
from databricks_exporter.collectors import COLLECTORS

ROOT = Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "grafana"
DASHBOARD_DIR = GRAFANA / "dashboards"
PROVISIONING = GRAFANA / "provisioning"

# Panel queries that may rightly return nothing on the simulated workspace's quiet baseline, as
# (dashboard uid, panel title, refId) -> why. They still run, and must not fail.
ALLOWED_EMPTY: dict[tuple[str, str, str], str] = {
    ("databricks-security", "Change window", "A"):
        "databricks:change_window:open exists only Monday to Friday 08:00-18:00 UTC",
    ("databricks-overview", "Alerts firing", "A"): "no Databricks alert need be firing on a healthy baseline",
    ("databricks-overview", "Firing alerts", "A"): "no Databricks alert need be firing on a healthy baseline",
    ("databricks-overview", "Failing collectors", "A"): "no collector fails on a healthy baseline",
    ("databricks-exporter", "Collectors failing", "A"): "no collector fails on a healthy baseline",
    ("databricks-compute", "Terminations by cloud or service faults (1h)", "A"):
        "the baseline has no CLOUD_FAILURE or SERVICE_FAULT terminations",
    ("databricks-sql", "Unhealthy warehouses", "A"): "every simulated warehouse is HEALTHY on the baseline",
    ("databricks-jobs", "Runs waiting to start", "A"):
        "runs are QUEUED or PENDING only for moments unless a concurrency limit is hit",
    ("databricks-jobs", "Last failure", "A"): "the job picked for $job (one that just succeeded) may never have failed",
    ("databricks-jobs", "Median run (7d)", "A"):
        "the 7-day median reads hourly points ([7d:1h] subquery): empty until Prometheus has recorded across an "
        "hour boundary",
    ("databricks-jobs", "Run duration", "B"): "the same 7-day median as 'Median run (7d)'",
    ("databricks-pipelines", "Update duration p90", "A"):
        "pipeline updates end minutes apart: the test's fresh Prometheus may see none end within its minute",
    ("databricks-pipelines", "Flow failures", "A"):
        "a flow's failure series appears with its first FAILED flow_progress event, and none of the simulated "
        "flows failed in the hour the exporter looks back",
    ("databricks-cost", "By this time yesterday", "A"): "`offset 1d` needs a day of Prometheus history",
    ("databricks-cost", "Spend today by workspace, against yesterday", "B"):
        "`offset 1d` needs a day of Prometheus history",
    ("databricks-cost", "Today against yesterday by product", "B"): "`offset 1d` needs a day of Prometheus history",
    ("databricks-cost", "Idle SQL warehouses (1h)", "A"):
        "idle cost needs a warehouse idle for 5 minutes in the hours warehouse_usage has counted (the first ends two "
        "hours before the demo starts); the simulated warehouses may have been busy then",
    ("databricks-sql", "Idle cost by warehouse (1h)", "A"): "the same idle cost as 'Idle SQL warehouses (1h)'",
    ("databricks-sql", "Warehouse uptime and idle time (1h)", "B"): "the idle seconds behind that idle cost",
    ("databricks-exporter", "Reconciliation with the system tables", "A"):
        "lists disagreements only, and the first period is reconciled about two hours after the exporter starts",
    ("databricks-exporter", "Last reconciled period ended", "A"):
        "the first period is reconciled about two hours after the exporter starts (a whole counted hour, then the "
        "tables' hour of delay)",
    ("databricks-exporter", "Malformed items skipped", "A"):
        "the series appears with the first item the exporter cannot understand; the simulator sends none",
    ("databricks-exporter", "Pushes by sink and outcome", "A"): "the demo configures no push sink",
    ("databricks-exporter", "Time since the last successful push", "A"): "the demo configures no push sink",
}

# Grafana unit ids the dashboards may use (a typo would silently show raw numbers).
KNOWN_UNITS = {"short", "none", "percentunit", "s", "dtdurations", "dateTimeAsIso", "dateTimeFromNow", "bytes",
               "Bps", "cpm", "reqps", "rowsps", "recps", "currencyUSD"}
PANELS_WITHOUT_UNITS = {"row", "text", "alertlist", "dashlist", "news"}
ID_LABELS = ("workspace_id", "job_id", "cluster_id", "warehouse_id", "pipeline_id")
FALLBACK_ZERO = re.compile(r"\s+or\s+vector\(0\)\s*$")


def committed() -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text()) for path in sorted(DASHBOARD_DIR.glob("*.json"))}


DASHBOARDS = committed()


def panels_of(model: dict) -> list[dict]:
    found = []
    for panel in model.get("panels", []):
        found.append(panel)
        found += panel.get("panels", [])      # panels of a collapsed row
    return found


def variables_of(model: dict) -> dict[str, dict]:
    return {variable["name"]: variable for variable in model["templating"]["list"]}


@dataclass(frozen=True)
class Target:
    uid: str
    title: str
    ref_id: str
    expr: str
    instant: bool
    min_interval: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        return self.uid, self.title, self.ref_id

    def __str__(self) -> str:
        return f"{self.uid}/{self.title}/{self.ref_id}"


TARGETS = [Target(uid, panel["title"], target["refId"], target["expr"], bool(target.get("instant")),
                  panel.get("interval", ""))
           for uid, model in DASHBOARDS.items() for panel in panels_of(model) for target in panel.get("targets", [])]
VARIABLE_QUERIES = [(uid, variable) for uid, model in DASHBOARDS.items()
                    for variable in variables_of(model).values() if variable["type"] == "query"]


RULE_EXPRESSIONS = {}
for _rule in RECORDS:
    RULE_EXPRESSIONS.setdefault(_rule["record"], []).append(_rule["expr"])


def underlying_metrics(expr: str, seen: frozenset = frozenset()) -> set[str]:
    """The exporter metrics an expression reads, through any recording rules it uses."""
    found = set()
    for name in metric_names(expr):
        if ":" in name:
            if name not in seen:
                for rule_expr in RULE_EXPRESSIONS.get(name, []):
                    found |= underlying_metrics(rule_expr, seen | {name})
        else:
            found.add(base_name(name))
    return found


def not_yet_served(expr: str) -> str | None:
    """Why the exporter cannot serve what the expression reads yet, or None."""
    for name in sorted(underlying_metrics(expr)):
        if name in PENDING_METRICS and name not in m.REGISTRY:
            return f"{name} is not defined yet ({PENDING_METRICS[name][0]})"
        metric = m.REGISTRY.get(name)
        if metric and metric.collector != "exporter" and metric.collector not in COLLECTORS:
            return f"{name} is defined but its collector {metric.collector!r} is not registered yet"
    return None


# --- (1) generated, committed, no drift --------------------------------------------------------------------------

def test_committed_dashboards_are_what_the_sources_generate():
    drifted = [str(path) for path in monitoring.drifted(ROOT) if path.parts[0] == "grafana"]
    assert drifted == [], "edit monitoring/dashboards (not the JSON) and run: python -m monitoring"


def test_generation_is_deterministic():
    assert monitoring.generated() == monitoring.generated()


def test_the_drift_check_sees_a_changed_and_an_orphaned_file(tmp_path):
    monitoring.write(tmp_path)
    (tmp_path / "prometheus" / "rules" / "alerts.yml").write_text("groups: []\n")
    (tmp_path / "grafana" / "dashboards" / "databricks-old.json").write_text("{}\n")
    assert monitoring.drifted(tmp_path) == [Path("prometheus/rules/alerts.yml"),
                                            Path("grafana/dashboards/databricks-old.json")]


# --- (2) conventions -------------------------------------------------------------------------------------------

def test_every_dashboard_the_alerts_link_to_exists_with_a_stable_uid():
    assert set(DASHBOARDS) == DASHBOARD_UIDS
    for uid, model in DASHBOARDS.items():
        assert model["uid"] == uid, f"{uid}.json holds uid {model['uid']}"
        assert "id" not in model or model["id"] is None, "a provisioned dashboard must not carry a database id"
        assert model["title"].startswith("Databricks / ")
        assert "databricks" in model["tags"]


@pytest.mark.parametrize("uid", sorted(DASHBOARDS))
def test_dashboard_has_datasource_and_workspace_variables(uid):
    variables = variables_of(DASHBOARDS[uid])
    datasource = variables["datasource"]
    assert datasource["type"] == "datasource" and datasource["query"] == "prometheus"
    workspace = variables["workspace"]
    assert workspace["type"] == "query" and workspace["includeAll"] and workspace["allValue"] == ".*"
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, variable["name"]


@pytest.mark.parametrize("uid, variable", [("databricks-jobs", "job"), ("databricks-sql", "warehouse"),
                                           ("databricks-pipelines", "pipeline"), ("databricks-compute", "cluster")])
def test_dashboard_has_its_own_variable(uid, variable):
    assert variable in variables_of(DASHBOARDS[uid])
    used = "\n".join(target.expr for target in TARGETS if target.uid == uid)
    assert f"${variable}" in used, f"no panel of {uid} uses ${variable}"


def test_job_drilldown_is_a_single_job_shown_by_name():
    job = variables_of(DASHBOARDS["databricks-jobs"])["job"]
    assert not job.get("multi") and not job.get("includeAll")
    assert "databricks_job_info" in job["query"] and "(?<text>" in job["regex"] and "(?<value>" in job["regex"]


@pytest.mark.parametrize("uid", sorted(DASHBOARDS))
def test_dashboard_links_to_every_sibling(uid):
    links = DASHBOARDS[uid]["links"]
    assert {link["url"] for link in links} == {f"/d/{other}" for other in DASHBOARD_UIDS - {uid}}
    assert all(link["keepTime"] and link["includeVars"] for link in links)


@pytest.mark.parametrize("uid", sorted(DASHBOARDS))
def test_every_panel_has_a_unit_the_datasource_variable_and_a_unique_title(uid):
    titles = []
    for panel in panels_of(DASHBOARDS[uid]):
        if panel["type"] in PANELS_WITHOUT_UNITS:
            continue
        titles.append(panel["title"])
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
        assert unit in KNOWN_UNITS, f"{panel['title']}: unit {unit!r}"
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel.get("targets"), f"{panel['title']} has no query"
        assert len({target["refId"] for target in panel["targets"]}) == len(panel["targets"])
    assert len(titles) == len(set(titles)), "panel titles name the panels in the data test"
    ids = [panel["id"] for panel in panels_of(DASHBOARDS[uid])]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("target", TARGETS, ids=str)
def test_ranges_are_the_rate_interval(target):
    """Every range in a panel query is [$__rate_interval]: fixed windows belong in recording rules."""
    assert set(re.findall(r"\[([^\]]*)\]", target.expr)) <= {"$__rate_interval"}
    for function in re.findall(r"\b(rate|irate|increase|delta|idelta|deriv|\w+_over_time)\s*\(", target.expr):
        assert "[$__rate_interval]" in target.expr, f"{function}() without a range"


@pytest.mark.parametrize("target", TARGETS, ids=str)
def test_legends_name_things_rather_than_number_them(target):
    panel = next(panel for panel in panels_of(DASHBOARDS[target.uid]) if panel["title"] == target.title)
    legend = next(t for t in panel["targets"] if t["refId"] == target.ref_id).get("legendFormat", "")
    assert not [label for label in ID_LABELS if f"{{{{{label}}}}}" in legend], \
        f"legend {legend!r}: join the _info metric (group_left) and show its name"


# --- (3) every metric the dashboards name exists ---------------------------------------------------------------

def expressions_of_dashboards() -> list[str]:
    return [target.expr for target in TARGETS] + [variable["query"] for _, variable in VARIABLE_QUERIES]


def test_every_metric_in_the_dashboards_exists_with_the_labels_matched():
    assert selector_problems(expressions_of_dashboards(), set(RULE_EXPRESSIONS)) == []


def test_counter_functions_only_apply_to_counters():
    assert counter_function_problems(expressions_of_dashboards()) == []


def test_pending_metrics_are_still_pending_and_used():
    assert pending_problems(expressions_of_dashboards() + expressions_of_rules()) == []


def test_allowed_empty_queries_exist():
    assert set(ALLOWED_EMPTY) - {target.key for target in TARGETS} == set(), "stale ALLOWED_EMPTY entries"


# --- provisioning ----------------------------------------------------------------------------------------------

def test_datasource_provisioning_matches_the_dashboards_and_prometheus():
    (datasource,) = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert datasource["type"] == "prometheus" and datasource["uid"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    scrape_interval = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())["global"]["scrape_interval"]
    # Grafana derives $__rate_interval from this: four scrape intervals at least.
    assert datasource["jsonData"]["timeInterval"] == scrape_interval
    for model in DASHBOARDS.values():
        assert variables_of(model)["datasource"]["current"]["value"] == datasource["uid"]


def test_dashboard_provisioning_loads_the_committed_folder():
    (provider,) = yaml.safe_load((PROVISIONING / "dashboards" / "databricks.yml").read_text())["providers"]
    assert provider["folder"] == "Databricks" and provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


# --- (4) every panel shows data on the demo ------------------------------------------------------------------------

RATE_INTERVAL = "30s"       # the test's Prometheus scrapes every second: enough samples for rate() in a window
# From Prometheus' start: the queries that need a job run to complete get that long, and serving endpoints' request
# counters, which grow once a minute (one per minute of their metrics export), are sure to have grown once.
DATA_DEADLINE_S = 75


def fill(text: str, values: dict[str, str]) -> str:
    def replace(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(f"the data test does not know the variable ${name}")
        return values[name]
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", replace, text)


def api(prom: Prometheus, path: str, **params) -> dict:
    status, _, body = http_get(f"{prom.url}/api/v1/{path}?{urllib.parse.urlencode(params)}", timeout=20)
    data = json.loads(body)
    if status != 200 or data.get("status") != "success":
        raise PromQLError(f"{data.get('errorType')}: {data.get('error')}")
    return data["data"]


class PromQLError(Exception):
    pass


def has_data(result: dict) -> bool:
    """At least one sample that is a number (a histogram_quantile of nothing is NaN: no data to Grafana either)."""
    def numbers(series: dict) -> list[str]:
        return [v for _, v in series.get("values", [])] + ([series["value"][1]] if "value" in series else [])
    return any(not math.isnan(float(value)) for series in result["result"] for value in numbers(series))


@dataclass
class Outcome:
    expr: str
    error: str | None = None
    data: bool = False


# Budgets, so that the budget panels have something to show: one per period, small enough to be used up.
DEMO_BUDGETS = [{"name": "platform-daily", "period": "day", "amount": 500},
                {"name": "platform-monthly", "period": "month", "amount": 20000}]


def demo_config(simulator) -> dict:
    """What `databricks-exporter demo` configures, with every collector on a 2-second interval: the simulated
    workspace, its first serverless SQL warehouse for the system tables, and the CA of its certificate."""
    warehouses = simulator.workspace.warehouses
    warehouse = next((w.id for w in warehouses if w.serverless), warehouses[0].id)
    config = fast_config(workspaces=[{"name": "simulated", "host": simulator.url, "token": simulator.token,
                                      "warehouse_id": warehouse, "tls_ca_bundle": simulator.tls_ca_file}])
    for name in COLLECTORS:     # every collector, including those landing after this test was written
        config["collectors"].setdefault(name, {}).setdefault("interval", "2s")
    if "billing" in COLLECTORS:
        config["collectors"]["billing"]["budgets"] = DEMO_BUDGETS
    for name, section in DEMO_COLLECTORS.items():     # the demo's tables and custom queries, on the fast interval
        config["collectors"][name].update({key: value for key, value in section.items() if key != "interval"})
    return config


class Demo:
    """The simulated workspace, the exporter scraping it, and Prometheus with the project's rules, for the module."""

    def __init__(self, directory: Path):
        from databricks_sim.server import SimulatorServer

        require_binary("prometheus")
        self.exporter = self.prometheus = None
        # sql_port=0: the HTTPS SQL listener the system-table collectors query, and the permission gaps, as
        # `databricks-exporter demo` runs it.
        self.simulator = SimulatorServer(port=0, seed=7, sql_port=0, permission_gaps=True).start()
        try:
            (directory / "exporter").mkdir()
            self.exporter = ExporterProcess(directory / "exporter", self.simulator, demo_config(self.simulator)).start()
            self.prometheus = Prometheus(directory, [f"127.0.0.1:{self.exporter.port}"],
                                         rule_files=[str(path) for path in RULE_FILES])
        except BaseException:
            self.stop()
            raise
        self.started = time.time()
        self._values: dict[str, str] | None = None

    def stop(self) -> None:
        if self.prometheus:
            self.prometheus.stop()
        if self.exporter and self.exporter.proc:
            self.exporter.kill()
        self.simulator.shutdown()

    def run(self, expr: str, instant: bool) -> bool:
        if instant:
            return has_data(api(self.prometheus, "query", query=expr))
        return has_data(api(self.prometheus, "query_range", query=expr, start=f"{self.started:.3f}",
                            end=f"{time.time():.3f}", step="1"))

    def values(self) -> dict[str, str]:
        """Variables as a user would pick them: the workspace, and a job that has just completed a run (so its
        drill-down has something recent to show); multi-value variables at their default, All."""
        if self._values is None:
            self._values = self._pick_values()
        return self._values

    def _pick_values(self) -> dict[str, str]:
        (workspace,) = wait_for(lambda: self.prometheus.query("databricks_workspace_info"), 30,
                                what="the first scrape")
        workspace_id = workspace["metric"]["workspace_id"]
        job = wait_for(lambda: self.prometheus.query(
            'topk(1, sum by (job_id) (increase(databricks_job_runs_total{result_state="SUCCESS"}[1h])) > 0)'),
            DATA_DEADLINE_S, what="a job run to succeed while Prometheus watches")
        return {"workspace": workspace_id, "job": job[0]["metric"]["job_id"], "cluster": ".*", "warehouse": ".*",
                "pipeline": ".*", "endpoint": ".*", "period": "day", "datasource": "prometheus",
                "__rate_interval": RATE_INTERVAL, "__interval": "1s", "__range": "1h"}


def panel_values(target: Target, values: dict[str, str]) -> dict[str, str]:
    """A panel's min interval raises its $__rate_interval, as in Grafana."""
    return {**values, "__rate_interval": target.min_interval} if target.min_interval else values


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    demo = Demo(tmp_path_factory.mktemp("dashboards-demo"))
    try:
        yield demo
    finally:
        demo.stop()


@pytest.fixture(scope="module")
def panel_outcomes(demo) -> dict[tuple[str, str, str], Outcome]:
    """Every panel query, variables filled in, asked until it has data or the deadline passes. A trailing
    `or vector(0)` (a count's zero for Grafana) is left out so that the expression itself must find series."""
    values = demo.values()
    outcomes = {target.key: Outcome(FALLBACK_ZERO.sub("", fill(target.expr, panel_values(target, values))))
                for target in TARGETS}
    instant = {target.key: target.instant for target in TARGETS}

    def ask(key):
        outcome = outcomes[key]
        try:
            outcome.data, outcome.error = demo.run(outcome.expr, instant[key]), None
        except PromQLError as error:
            outcome.error = str(error)

    with ThreadPoolExecutor(max_workers=8) as pool:
        # The full expressions, fallback included, must parse and evaluate too.
        for target in TARGETS:
            try:
                demo.run(fill(target.expr, panel_values(target, values)), target.instant)
            except PromQLError as error:
                outcomes[target.key].error = f"{error} (full expression)"
        waiting = [key for key, outcome in outcomes.items() if outcome.error is None]
        while waiting:
            list(pool.map(ask, waiting))
            waiting = [key for key in waiting if not outcomes[key].data and outcomes[key].error is None
                       and not_yet_served(outcomes[key].expr) is None]
            if time.time() - demo.started > DATA_DEADLINE_S or \
                    all(key in ALLOWED_EMPTY for key in waiting):
                break
            time.sleep(1)
    return outcomes


@pytest.mark.integration
@pytest.mark.parametrize("target", TARGETS, ids=str)
def test_panel_query_returns_data_on_the_demo(panel_outcomes, target):
    outcome = panel_outcomes[target.key]
    assert outcome.error is None, f"{outcome.expr}\n{outcome.error}"
    if outcome.data:
        return
    if (reason := not_yet_served(target.expr)) is not None:
        pytest.skip(f"pending: {reason}")
    if target.key in ALLOWED_EMPTY:
        pytest.skip(f"allowed empty: {ALLOWED_EMPTY[target.key]}")
    pytest.fail(f"no data on the demo: {outcome.expr}")


def js_regex(regex: str) -> re.Pattern:
    """Grafana's /pattern/ with JavaScript named groups, as a Python pattern."""
    return re.compile(regex.strip("/").replace("(?<", "(?P<"))


def query_result_lines(result: list[dict]) -> list[str]:
    """What Grafana's query_result() gives the variable regex: name{label="value",...} value timestamp."""
    lines = []
    for series in result:
        labels = {k: v for k, v in series["metric"].items() if k != "__name__"}
        text = ",".join(f'{name}="{value}"' for name, value in labels.items())
        lines.append(f'{series["metric"].get("__name__", "")}{{{text}}} {series["value"][1]} {series["value"][0]}')
    return lines


@pytest.mark.integration
@pytest.mark.parametrize("uid, variable", VARIABLE_QUERIES, ids=lambda v: v if isinstance(v, str) else v["name"])
def test_variable_offers_names_for_ids_on_the_demo(demo, panel_outcomes, uid, variable):
    expr = re.fullmatch(r"query_result\((.*)\)", variable["query"]).group(1)
    filled = fill(expr, demo.values())
    result = api(demo.prometheus, "query", query=filled)["result"]
    if not result and (reason := not_yet_served(expr)) is not None:
        pytest.skip(f"pending: {reason}")
    options = [match.groupdict() for line in query_result_lines(result)
               if (match := js_regex(variable["regex"]).search(line))]
    assert options and len(options) == len(result), f"{filled}: {query_result_lines(result)[:3]}"
    assert all(option["value"] and option["text"] for option in options)
