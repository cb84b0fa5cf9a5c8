"""The operations package as one tested unit: Prometheus rules generated from monitoring/ and config, promtool cases,
Alertmanager, runbook."""

from __future__ import annotations

import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from conftest import require_binary
from promql_lint import counter_function_problems, selector_problems, selectors

import monitoring

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS = ROOT / "prometheus"
RULE_FILES = [PROMETHEUS / "rules" / "recording.yml", PROMETHEUS / "rules" / "alerts.yml"]
RULE_TESTS = sorted((PROMETHEUS / "tests").glob("*.yml"))
ALERTMANAGER_CONFIG = ROOT / "alertmanager" / "alertmanager.yml"
RUNBOOK = ROOT / "docs" / "runbook.md"

RUNBOOK_URL = "https://github.com/databricks-exporter/databricks-exporter/blob/main/docs/runbook.md"
DASHBOARD_UIDS = {"databricks-overview", "databricks-compute", "databricks-jobs", "databricks-sql",
                  "databricks-pipelines", "databricks-cost", "databricks-exporter"}
SEVERITIES = {"critical", "warning", "info"}


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def rules_of(path: Path) -> list[dict]:
    return [rule for group in load(path)["groups"] for rule in group["rules"]]


ALERTS = rules_of(RULE_FILES[1])
RECORDS = rules_of(RULE_FILES[0])
ALERT_NAMES = sorted({rule["alert"] for rule in ALERTS})
RECORDED_NAMES = {rule["record"] for rule in RECORDS}


def test_committed_rule_files_are_what_monitoring_generates():
    drifted = [str(path) for path in monitoring.drifted(ROOT) if path.parts[0] == "prometheus"]
    assert drifted == [], "edit monitoring/ (not the YAML) and run: python -m monitoring"


def run(*command: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600)


def assert_ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, f"{' '.join(result.args)} failed:\n{result.stdout}\n{result.stderr}"


# --- the real tools --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def promtool() -> str:
    return require_binary("promtool")


@pytest.fixture(scope="module")
def amtool() -> str:
    return require_binary("amtool")


def test_promtool_check_rules(promtool):
    assert_ok(run(promtool, "check", "rules", *map(str, RULE_FILES)))


def test_promtool_check_config(promtool):
    # Also checks every rule file the config loads, resolved relative to prometheus.yml.
    assert_ok(run(promtool, "check", "config", "prometheus.yml", cwd=PROMETHEUS))


@pytest.fixture(scope="module")
def rule_test_results(promtool) -> dict[str, subprocess.CompletedProcess]:
    """`promtool test rules` for every case file, run side by side: each file simulates hours to days."""
    with ThreadPoolExecutor(max_workers=len(RULE_TESTS)) as pool:
        results = pool.map(lambda path: run(promtool, "test", "rules", str(path)), RULE_TESTS)
        return {path.name: result for path, result in zip(RULE_TESTS, results)}


@pytest.mark.parametrize("case_file", [path.name for path in RULE_TESTS])
def test_promtool_rule_tests(rule_test_results, case_file):
    assert_ok(rule_test_results[case_file])


def test_amtool_check_config(amtool):
    assert_ok(run(amtool, "check-config", str(ALERTMANAGER_CONFIG)))


@pytest.mark.parametrize("severity, receivers", [
    ("critical", "pager,chat"), ("warning", "chat"), ("info", "webhook")])
def test_alertmanager_routes_by_severity(amtool, severity, receivers):
    result = run(amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER_CONFIG}",
                 f"severity={severity}", "alertname=DatabricksJobFailureRateHigh", "workspace_id=1")
    assert_ok(result)
    assert result.stdout.strip() == receivers


# --- alerts: names, labels, annotations, runbook ---------------------------------------------------------

def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def runbook_anchors() -> set[str]:
    return {github_anchor(line.lstrip("#")) for line in RUNBOOK.read_text().splitlines() if line.startswith("#")}


@pytest.mark.parametrize("rule", ALERTS, ids=lambda rule: f"{rule['alert']}-{rule['labels'].get('severity')}")
def test_alert_is_labelled_and_annotated(rule):
    name = rule["alert"]
    assert re.fullmatch(r"Databricks[A-Z][A-Za-z0-9]+", name), "CamelCase with the Databricks prefix"
    assert rule["labels"]["severity"] in SEVERITIES
    annotations = rule["annotations"]
    assert annotations["summary"].strip() and annotations["description"].strip()
    assert annotations["runbook_url"] == f"{RUNBOOK_URL}#{name.lower()}"
    assert name.lower() in runbook_anchors(), f"docs/runbook.md needs a heading '{name}'"
    assert re.fullmatch(r"/d/([a-z-]+)", annotations["dashboard_url"]).group(1) in DASHBOARD_UIDS


def test_texts_that_name_the_for_duration_name_the_rules_own():
    """Descriptions say "for 15 minutes"; `for:` comes from monitoring/config.py, and a changed value must not leave
    the text behind."""
    units = {"minutes": "m", "hours": "h"}
    checked = 0
    for rule in ALERTS:
        text = " ".join(rule["annotations"][key] for key in ("summary", "description"))
        for number, unit in re.findall(r"\bfor (?:at least )?(\d+)\s+(minutes|hours)\b", text):
            assert f"{number}{units[unit]}" == rule.get("for"), rule["alert"]
            checked += 1
    assert checked >= 10


def test_alert_pairs_share_a_name_only_across_severities():
    """Two rules may share a name only as its warning and critical steps, which Alertmanager inhibits."""
    for name in ALERT_NAMES:
        severities = [rule["labels"]["severity"] for rule in ALERTS if rule["alert"] == name]
        assert len(severities) == len(set(severities)), name


def test_every_alert_has_a_runbook_section_and_no_section_is_orphaned():
    headings = {line.lstrip("#").strip() for line in RUNBOOK.read_text().splitlines()
                if line.startswith("### Databricks")}
    assert headings == set(ALERT_NAMES)


# --- promtool cases cover every alert ----------------------------------------------------------------------

def rule_test_cases() -> list[tuple[str, dict]]:
    return [(path.name, test) for path in RULE_TESTS for test in load(path)["tests"]]


def test_every_alert_has_a_firing_and_a_silent_case():
    firing, silent = set(), set()
    for _, test in rule_test_cases():
        for case in test.get("alert_rule_test", []):
            (firing if case.get("exp_alerts") else silent).add(case["alertname"])
    assert set(ALERT_NAMES) - firing == set(), "alerts without a case where they fire"
    assert set(ALERT_NAMES) - silent == set(), "alerts without a case where they must not fire"


def test_rule_test_cases_are_named_and_load_the_project_rules():
    for path in RULE_TESTS:
        assert load(path)["rule_files"] == ["../rules/recording.yml", "../rules/alerts.yml"], path.name
    for file, test in rule_test_cases():
        assert test.get("name", "").strip(), f"{file}: every case says what it proves"


def test_rule_tests_evaluate_recording_groups_before_alert_groups():
    """promtool orders groups at random unless told; an incomplete list makes cases flaky, not failing."""
    groups = [group["name"] for path in RULE_FILES for group in load(path)["groups"]]
    for path in RULE_TESTS:
        assert load(path).get("group_eval_order") == groups, path.name


# --- thresholds ----------------------------------------------------------------------------------------------

def threshold_names() -> set[str]:
    return {rule["labels"]["threshold"] for rule in RECORDS if rule["record"] == "databricks:alert_threshold"}


def test_every_threshold_used_is_defined_and_every_threshold_defined_is_used_and_documented():
    expressions = "\n".join(rule["expr"] for rule in RECORDS + ALERTS)
    used = set(re.findall(r'threshold="([a-z0-9_]+)"', expressions))
    defined = threshold_names()
    assert used - defined == set(), "a misspelt threshold matches nothing and silences its alert"
    assert defined - used == set(), "thresholds nothing uses"
    assert {name for name in defined if f"`{name}`" not in thresholds_section()} == set()


def thresholds_section() -> str:
    return RUNBOOK.read_text().split("## Thresholds", 1)[1].split("\n## ", 1)[0]


def test_threshold_defaults_in_the_runbook_match_the_rules():
    recorded = {rule["labels"]["threshold"]: float(re.fullmatch(r"vector\(([\d.]+)\)", rule["expr"]).group(1))
                for rule in RECORDS if rule["record"] == "databricks:alert_threshold" and len(rule["labels"]) == 1}
    documented = {}
    for line in thresholds_section().splitlines():
        if (match := re.match(r"\| `([a-z0-9_]+)` \| ([\d.]+)[ |]", line)):
            documented[match.group(1)] = float(match.group(2))
    assert documented == recorded


def test_for_durations_in_the_runbook_match_the_rules():
    rows = [line for line in thresholds_section().splitlines() if line.startswith("| Databricks")]
    for rule in ALERTS:
        if "for" in rule:
            (row,) = [row for row in rows if re.search(rf"\b{rule['alert']}\b", row.split("|")[1])]
            assert row.split("|")[2].split()[0] == rule["for"], rule["alert"]


# --- every metric the rules name exists (tests/promql_lint.py) -------------------------------------------------

def expressions_of_rules() -> list[str]:
    expressions = [rule["expr"] for rule in RECORDS + ALERTS]
    # Annotations query the store too: {{ printf "metric{...}" ... | query }}.
    for rule in ALERTS:
        for text in rule["annotations"].values():
            expressions += re.findall(r'printf\s+"([^"]+)"[^}]*\|\s*query', text)
    return expressions


def test_every_metric_in_the_rules_exists_with_the_labels_matched():
    assert selector_problems(expressions_of_rules(), RECORDED_NAMES) == []


def test_counter_functions_only_apply_to_counters():
    assert counter_function_problems(expressions_of_rules()) == []


def test_selector_parser_finds_metrics_and_labels():
    found = selectors(
        'sum by (workspace_id) (increase(foo_total{a="x", b=~"y|z"}[1h] offset 1h)) '
        '> on() group_left() bar:baz:ratio * ignoring(c) qux and histogram_quantile(0.5, h_bucket)')
    assert found == [("foo_total", {"a", "b"}), ("bar:baz:ratio", set()), ("qux", set()), ("h_bucket", set())]


def test_the_lint_reports_what_is_wrong():
    assert selector_problems(['databricks_job_info{nope="1"}', "databricks_no_such_metric", "a:b:c",
                              'up{job="x", instance="y"}'], recorded=set()) == [
        "databricks_job_info: matches labels it does not have: ['nope']",
        "databricks_no_such_metric: not in metrics.REGISTRY, BUILTIN_METRICS nor PENDING_METRICS",
        "a:b:c: no recording rule defines it"]
    assert counter_function_problems(["rate(databricks_job_info[5m])", "rate(databricks_job_runs_total[5m])",
                                      "increase(databricks_job_run_duration_seconds_bucket[1h])"]) == [
        "databricks_job_info: a counter function on a series that is not a counter"]


def test_recording_rules_are_named_level_metric_operations():
    for name in RECORDED_NAMES:
        assert re.fullmatch(r"[a-z_]+:[a-z0-9_]+(:[a-z0-9_]+)?", name), name


# --- configuration files ---------------------------------------------------------------------------------------

def test_prometheus_scrapes_the_exporter_and_alerts_alertmanager():
    config = load(PROMETHEUS / "prometheus.yml")
    assert config["global"]["scrape_interval"] == "30s"
    assert config["rule_files"] == ["rules/*.yml"]
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "databricks"]
    assert job["static_configs"][0]["targets"] == ["exporter:9977"]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]


def test_the_exporter_alerts_select_the_job_prometheus_scrapes():
    (job,) = load(PROMETHEUS / "prometheus.yml")["scrape_configs"]
    down = [rule["expr"] for rule in ALERTS if rule["alert"] in ("DatabricksExporterDown", "DatabricksExporterAbsent")]
    assert down == [f'up{{job="{job["job_name"]}"}} == 0', f'absent(up{{job="{job["job_name"]}"}})']


def test_alertmanager_names_only_alerts_that_exist():
    """An inhibition or route naming a renamed alert silently stops working."""
    named = set(re.findall(r'alertname\s*=~?\s*"?([A-Za-z]+)', ALERTMANAGER_CONFIG.read_text()))
    assert named and named - set(ALERT_NAMES) == set()


def test_alertmanager_keeps_secrets_in_files_with_committed_examples():
    text = ALERTMANAGER_CONFIG.read_text()
    assert not re.search(r"^\s*(routing_key|service_key|api_url|url):\s*\S*(hooks\.slack|events\.pagerduty)",
                         text, re.M)
    for key in ("routing_key", "service_key", "api_url"):
        assert not re.search(rf"^\s*-?\s*{key}:", text, re.M), f"{key} inline; use {key}_file"
    for path in re.findall(r"_file:\s*(\S+)", text):
        example = ROOT / "alertmanager" / "secrets" / (Path(path).name + ".example")
        assert example.is_file(), f"{path} has no {example.relative_to(ROOT)}"
