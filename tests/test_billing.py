"""The billing collector against the simulated workspace (real connector over HTTPS, real SDK over HTTP): a closed
day's cost and usage equal /simulator/truth, on a day whose list price changed and on a day that was restated, by
SKU, product, job, warehouse, pipeline and tag; the month to date, the forecast, discounts and budgets likewise; and
a bad billing configuration stops the exporter naming the file and the key."""

from __future__ import annotations

import calendar
import datetime as dt
import json

import pytest
import yaml
from sql_helpers import (  # noqa: F401 (clock and server are fixtures)
    FakeClock, T0, by, clock, collector, connected, run_cycle, server, warehouse_in,
)

from conftest import http_get, run_serve
from databricks_exporter.store import MetricStore

pytestmark = pytest.mark.integration
WORKSPACE = "1234567890123456"
SIBLING = "1234567890123457"


@pytest.fixture(scope="module")
def workspace(server):
    workspace = connected(server, warehouse_in(server, "RUNNING").id)
    yield workspace
    workspace.sql.close()


@pytest.fixture(scope="module")
def truth(server):
    return json.loads(http_get(f"{server.url}/simulator/truth")[2])["billing"]["workspaces"]


def end_of(day: str) -> float:
    """The last second of a UTC day: the collector's clock, so that its 'day' is that day."""
    return dt.datetime.fromisoformat(day).replace(tzinfo=dt.timezone.utc).timestamp() + 86_399


def closed_day(truth: dict, **flags) -> str:
    days = truth[WORKSPACE]
    candidates = [d for d, v in days.items() if v["complete"] and all(v[k] == want for k, want in flags.items())]
    assert candidates, f"no closed day with {flags}"
    return max(candidates)


def approx(table: dict) -> dict:
    return {k: pytest.approx(v, rel=1e-9, abs=1e-9) for k, v in table.items()}


def run_at(workspace, day: str, **options) -> MetricStore:
    store = MetricStore()
    run_cycle(collector("billing", workspace, FakeClock(end_of(day)), **options), store)
    return store


@pytest.mark.parametrize("kind", ["price_change", "restated"])
def test_a_closed_day_equals_the_truth(workspace, truth, kind):
    day = closed_day(truth, **{kind: True})
    expected = truth[WORKSPACE][day]
    store = run_at(workspace, day)
    assert by(store, "databricks_billing_cost", "sku_name", period="day", currency="USD") == approx(
        expected["by_sku"])
    assert by(store, "databricks_billing_cost", "billing_origin_product", period="day") == approx(
        expected["by_product"])
    assert sum(by(store, "databricks_billing_usage", "sku_name", period="day").values()) == pytest.approx(
        expected["dbus"], rel=1e-12)
    assert by(store, "databricks_billing_cost_by_job", "job_id", period="day") == approx(expected["by_job"])
    assert by(store, "databricks_billing_cost_by_warehouse", "warehouse_id", period="day") == approx(
        expected["by_warehouse"])
    assert by(store, "databricks_billing_cost_by_pipeline", "pipeline_id", period="day") == approx(
        expected["by_pipeline"])
    for key in ("team", "cost_center"):
        assert by(store, "databricks_billing_cost_by_tag", "tag_value", period="day", tag_key=key) == approx(
            expected["by_tag"][key])
    assert expected["by_tag"]["team"].get("", 0) > 0          # untagged usage shows as tag_value=""
    assert by(store, "databricks_billing_cost_basis_info", "basis") == {"list": 1.0}


def test_the_month_to_date_and_the_forecast_follow_the_truth(workspace, truth):
    day = closed_day(truth, price_change=True)
    date = dt.date.fromisoformat(day)
    days = truth[WORKSPACE]
    month = [d for d in days if d[:7] == day[:7] and d <= day]
    assert all(days[d]["complete"] for d in month) and len(month) == date.day
    store = run_at(workspace, day)
    assert sum(by(store, "databricks_billing_cost", "sku_name", period="month").values()) == pytest.approx(
        sum(days[d]["list_cost"] for d in month), rel=1e-12)
    recent = [(date - dt.timedelta(days=i)).isoformat() for i in range(1, 8)]
    rate = sum(days[d]["list_cost"] for d in recent) / 7
    closed = sum(days[d]["list_cost"] for d in month if d < day)
    remaining = calendar.monthrange(date.year, date.month)[1] - date.day + 1
    assert by(store, "databricks_billing_month_forecast_cost", "currency") == approx({"USD": closed + rate * remaining})


def test_the_naive_queries_would_be_visibly_wrong(workspace, truth):
    """What makes the tests above able to fail: the current price only, or the original records only, miss."""
    price_day = closed_day(truth, price_change=True)
    current_only = workspace.sql.query(
        "SELECT SUM(u.usage_quantity * p.pricing.default) AS cost FROM system.billing.usage u JOIN "
        "system.billing.list_prices p ON p.sku_name = u.sku_name AND p.price_end_time IS NULL "
        f"WHERE u.usage_date = DATE '{price_day}' AND u.workspace_id = '{WORKSPACE}'", "test")[0]["cost"]
    assert abs(float(current_only) - truth[WORKSPACE][price_day]["list_cost"]) > 10
    restated_day = closed_day(truth, restated=True)
    originals = workspace.sql.query(
        "SELECT SUM(usage_quantity) AS dbus FROM system.billing.usage WHERE record_type = 'ORIGINAL' "
        f"AND usage_date = DATE '{restated_day}' AND workspace_id = '{WORKSPACE}'", "test")[0]["dbus"]
    assert float(originals) > truth[WORKSPACE][restated_day]["dbus"] * 1.01


def test_discounts_turn_list_cost_into_what_is_paid(workspace, truth):
    day = closed_day(truth, price_change=True)
    store = run_at(workspace, day, discount=0.1, sku_discounts={"PREMIUM_JOBS_*": "0.25"})
    expected = {sku: cost * (0.75 if sku.startswith("PREMIUM_JOBS_") else 0.9)
                for sku, cost in truth[WORKSPACE][day]["by_sku"].items()}
    assert by(store, "databricks_billing_cost", "sku_name", period="day") == approx(expected)
    assert by(store, "databricks_billing_cost_basis_info", "basis") == {"discounted": 1.0}


def test_budgets_spend_what_their_filters_select(workspace, truth):
    day = closed_day(truth, restated=True)
    month = [d for d in truth[WORKSPACE] if d[:7] == day[:7] and d <= day]
    budgets = [
        {"name": "account", "period": "month", "amount": 250_000},
        {"name": "data-eng", "period": "day", "amount": 50, "currency": "USD", "tags": {"team": "data-eng"}},
        {"name": "jobs", "period": "day", "amount": 100, "workspace_ids": [WORKSPACE], "products": ["JOBS"]},
    ]
    store = run_at(workspace, day, budgets=budgets)
    assert by(store, "databricks_budget_limit", "budget") == {"account": 250_000, "data-eng": 50, "jobs": 100}
    spend = by(store, "databricks_budget_spend", "budget")
    account = sum(truth[ws][d]["list_cost"] for ws in (WORKSPACE, SIBLING) for d in month)
    assert spend["account"] == pytest.approx(account, rel=1e-12)
    assert spend["data-eng"] == pytest.approx(truth[WORKSPACE][day]["by_tag"]["team"]["data-eng"], rel=1e-12)
    assert spend["jobs"] == pytest.approx(truth[WORKSPACE][day]["by_product"]["JOBS"], rel=1e-12)
    # The workspace's own metrics still cover only the workspace, though the query read the whole account.
    assert sum(by(store, "databricks_billing_cost", "sku_name", period="day").values()) == pytest.approx(
        truth[WORKSPACE][day]["list_cost"], rel=1e-12)


def test_today_lags_by_the_billing_delay(workspace, clock):
    store = run_at(workspace, dt.datetime.fromtimestamp(clock(), dt.timezone.utc).date().isoformat())
    latest = by(store, "databricks_billing_usage_latest_timestamp_seconds", "workspace_id")[WORKSPACE]
    assert 2 * 3600 <= clock() - latest <= 3 * 3600 + 20 * 60
    assert T0 <= clock()


@pytest.mark.parametrize("billing, key", [
    ({"budgets": [{"name": "b", "period": "week", "amount": 1}]}, "collectors.billing.budgets[0].period"),
    ({"budgets": [{"name": "b", "period": "day", "amount": -5}]}, "collectors.billing.budgets[0].amount"),
    ({"budgets": [{"name": "b", "period": "day", "amount": 1}, {"period": "day", "amount": 1}]},
     "collectors.billing.budgets[1].name"),
    ({"budgets": [{"name": "b", "period": "day", "amount": 1, "team": "x"}]}, "collectors.billing.budgets[0].team"),
    ({"budgets": [{"name": "b", "period": "day", "amount": 1, "workspace_ids": ["prod"]}]},
     "collectors.billing.budgets[0].workspace_ids"),
    ({"discount": 1.5}, "collectors.billing.discount"),
    ({"sku_discounts": {"PREMIUM_*": "lots"}}, "collectors.billing.sku_discounts.PREMIUM_*"),
    ({"tag_keys": "team"}, "collectors.billing.tag_keys"),
])
def test_bad_billing_config_is_refused_naming_file_and_key(tmp_path, billing, key):
    from databricks_exporter.collectors import COLLECTORS
    from databricks_exporter.config import ConfigError, load

    path = tmp_path / "c.yml"
    path.write_text(yaml.safe_dump({"collectors": {"billing": billing},
                                    "workspaces": [{"host": "http://127.0.0.1:9"}]}))
    with pytest.raises(ConfigError) as error:
        load(str(path), COLLECTORS)
    assert str(error.value).startswith(f"{path}: {key}: "), str(error.value)


def test_bad_billing_config_stops_the_exporter_with_exit_code_2(tmp_path):
    path = tmp_path / "c.yml"
    path.write_text(yaml.safe_dump({"collectors": {"billing": {"budgets": [{"name": "b", "period": "week",
                                                                             "amount": 1}]}}}))
    result = run_serve("--config.file", str(path))
    assert result.returncode == 2, result.stderr
    assert f"{path}: collectors.billing.budgets[0].period: must be day or month" in result.stderr


def test_budgets_are_valid_and_typed_when_well_formed(tmp_path):
    from databricks_exporter.collectors import COLLECTORS
    from databricks_exporter.collectors.billing import Budget
    from databricks_exporter.config import load

    path = tmp_path / "c.yml"
    path.write_text(yaml.safe_dump({"collectors": {"billing": {
        "discount": 0.05, "sku_discounts": {"PREMIUM_SQL_*": 0.2},
        "budgets": [{"name": "sql", "period": "month", "amount": 5000, "products": ["sql"],
                     "tags": {"team": "analytics"}, "workspace_ids": [1234567890123456]}]}},
        "workspaces": [{"host": "http://127.0.0.1:9", "warehouse_id": "abc123"}]}))
    settings = load(str(path), COLLECTORS)
    options = settings.collectors["billing"].options
    assert options["budgets"] == [Budget("sql", "month", 5000.0, "USD", ("1234567890123456",),
                                         (("team", "analytics"),), ("SQL",))]
    assert options["sku_discounts"] == {"PREMIUM_SQL_*": 0.2} and settings.workspaces[0].warehouse_id == "abc123"
