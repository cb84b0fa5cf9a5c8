"""What Databricks costs (system.billing.usage priced with the list price valid at the time): today and this month,
by SKU, product, job, warehouse, pipeline and tag, against the configured budgets, with month-end forecasts."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.models.dashboard import VariableOption

from .common import (CURRENCY, JOB_DRILLDOWN, PIPELINE_NAME, WAREHOUSE_NAME, WORKSPACE_NAME, WS, bargauge_panel,
                     new_dashboard, query, row, stat_panel, table_panel, timeseries_panel)

UID = "databricks-cost"

PERIOD = f'{WS}, period="$period"'
BUDGET_STEPS = [(None, "green"), (0.8, "orange"), (1, "red")]


def period_variable() -> dashboard.CustomVariable:
    return (dashboard.CustomVariable("period").label("Period").values("day,month")
            .current(VariableOption(selected=True, text="day", value="day")))


def build():
    return new_dashboard(UID, "Databricks spend from system.billing.usage priced with the list price valid when the "
                              "usage happened: today (UTC) and month to date by SKU, product, job, warehouse, "
                              "pipeline and tag, budgets and month-end forecasts. Billing data arrives hours late.",
                         [period_variable()], [
        row("Spend"),
        stat_panel("Cost basis", "none", query(f"count by (basis) (databricks_billing_cost_basis_info{{{WS}}})",
                                               "{{basis}} prices"), w=3, show_name=True,
                   description="list: list prices; discounted: list prices less the discounts in the exporter's "
                               "billing configuration."),
        stat_panel("Spend today", CURRENCY, query(f"sum(workspace:databricks_billing_cost_today:sum{{{WS}}})"), w=3),
        stat_panel("By this time yesterday", CURRENCY,
                   query(f"sum(workspace:databricks_billing_cost_today:sum{{{WS}}} offset 1d)"), w=3,
                   description="Yesterday's spend at the same time of day, so billing lag is alike on both sides. "
                               "Today over 1.5 times this (and over 100) fires DatabricksCostSpike."),
        stat_panel("Month to date", CURRENCY, query(f'sum(databricks_billing_cost{{{WS}, period="month"}})'), w=3),
        stat_panel("Month-end forecast", CURRENCY, query(f"sum(databricks_billing_month_forecast_cost{{{WS}}})"), w=3,
                   description="The exporter's forecast: month to date plus the recent daily run-rate for the "
                               "rest of the month."),
        stat_panel("DBUs this $period", "short",
                   query(f'sum(databricks_billing_usage{{{PERIOD}, usage_unit="DBU"}})'), w=3),
        stat_panel("Billing data age", "s",
                   query(f"time() - min(databricks_billing_usage_latest_timestamp_seconds{{{WS}}})"), w=6,
                   thresholds=[(None, "green"), (6 * 3600, "orange"), (86400, "red")],
                   description="Age of the newest usage record in the most lagging workspace; a day fires "
                               "DatabricksBillingDataStale."),
        timeseries_panel("Spend today by workspace, against yesterday", CURRENCY,
                         query(f"sum by (workspace_id) (workspace:databricks_billing_cost_today:sum{{{WS}}}) "
                               f"{WORKSPACE_NAME}", "{{workspace_name}}"),
                         query(f"sum by (workspace_id) (workspace:databricks_billing_cost_today:sum{{{WS}}} offset 1d) "
                               f"{WORKSPACE_NAME}", "{{workspace_name}} yesterday"),
                         description="Spend so far today (UTC); it restarts from zero at midnight UTC."),
        timeseries_panel("Spend this $period by SKU", CURRENCY,
                         query(f"sum by (sku_name) (databricks_billing_cost{{{PERIOD}}})", "{{sku_name}}"),
                         stack=True),
        timeseries_panel("Spend this $period by product", CURRENCY,
                         query(f"sum by (billing_origin_product) (databricks_billing_cost{{{PERIOD}}})",
                               "{{billing_origin_product}}"), stack=True),
        timeseries_panel("Today against yesterday by product", CURRENCY,
                         query(f'sum by (billing_origin_product) (databricks_billing_cost{{{WS}, period="day"}})',
                               "{{billing_origin_product}}"),
                         query(f'sum by (billing_origin_product) (databricks_billing_cost{{{WS}, period="day"}} '
                               "offset 1d)", "{{billing_origin_product}} yesterday")),
        row("Where it goes"),
        table_panel("Top jobs this $period", CURRENCY,
                    f"topk(20, sum by (workspace_id, job_id) (databricks_billing_cost_by_job{{{PERIOD}}})) "
                    "* on(workspace_id, job_id) group_left(job_name) databricks_job_info",
                    value="cost", links={"job_name": JOB_DRILLDOWN}, sort_by="cost", w=8,
                    description="Jobs the exporter no longer lists (deleted) are left out."),
        table_panel("Job runs this $period by result", CURRENCY,
                    f"sum by (result_state) (databricks_job_run_cost{{{PERIOD}}})",
                    value="cost", sort_by="cost", w=8,
                    description="What job runs cost by how they ended (FAILED, TIMEDOUT... is money spent on "
                                "nothing); UNKNOWN: all-purpose cluster hours that ran job runs."),
        table_panel("Repairs this $period", CURRENCY,
                    f"sum by (workspace_id) (databricks_job_run_repair_cost{{{PERIOD}}}) {WORKSPACE_NAME}",
                    value="repair cost", sort_by="repair cost", w=8,
                    description="Usage billed after runs first ended: what repairing them cost."),
        table_panel("Idle SQL warehouses (1h)", CURRENCY,
                    f"workspace_warehouse:databricks_warehouse_idle_cost:increase1h{{{WS}}} {WAREHOUSE_NAME}",
                    value="idle cost", sort_by="idle cost", w=8,
                    description="List cost of warehouses running with no query, in the last counted hour."),
        table_panel("Top warehouses this $period", CURRENCY,
                    f"topk(20, sum by (workspace_id, warehouse_id) (databricks_billing_cost_by_warehouse"
                    f"{{{PERIOD}}})) {WAREHOUSE_NAME}", value="cost", sort_by="cost", w=8),
        table_panel("Top pipelines this $period", CURRENCY,
                    f"topk(20, sum by (workspace_id, pipeline_id) (databricks_billing_cost_by_pipeline"
                    f"{{{PERIOD}}})) {PIPELINE_NAME}", value="cost", sort_by="cost", w=8),
        table_panel("Spend this $period by tag", CURRENCY,
                    f"sum by (tag_key, tag_value) (databricks_billing_cost_by_tag{{{PERIOD}}})",
                    value="cost", sort_by="cost",
                    description="For the tag keys the exporter's configuration names; untagged usage has an "
                                "empty tag_value."),
        timeseries_panel("Spend this $period by tag, over time", CURRENCY,
                         query(f"sum by (tag_key, tag_value) (databricks_billing_cost_by_tag{{{PERIOD}}})",
                               "{{tag_key}}={{tag_value}}")),
        row("Budgets and forecast"),
        bargauge_panel("Budgets used", "percentunit",
                       query("databricks_budget_spend / on(budget, period, currency) databricks_budget_limit",
                             "{{budget}} ({{period}})", instant=True),
                       max_value=1, thresholds=BUDGET_STEPS,
                       description="Spend over limit of each configured budget; over 100% fires "
                                   "DatabricksBudgetExceeded."),
        table_panel("Budgets", CURRENCY,
                    "databricks_budget_spend",
                    "databricks_budget_limit",
                    "budget:databricks_budget_spend:month_end_forecast",
                    value=["spend", "limit", "month-end forecast"], sort_by="spend",
                    description="The forecast carries a monthly budget's spend so far to the end of the month at "
                                "the month's pace (monthly budgets only); from the 4th, a forecast over the limit "
                                "fires DatabricksBudgetForecastOverrun."),
        timeseries_panel("Monthly budgets: forecast against limit", CURRENCY,
                         query("budget:databricks_budget_spend:month_end_forecast", "{{budget}} forecast"),
                         query('databricks_budget_limit{period="month"}', "{{budget}} limit"),
                         query('databricks_budget_spend{period="month"}', "{{budget}} spent"), w=12),
        timeseries_panel("Workspace forecast against month to date", CURRENCY,
                         query(f"sum by (workspace_id) (databricks_billing_month_forecast_cost{{{WS}}}) "
                               f"{WORKSPACE_NAME}", "{{workspace_name}} forecast"),
                         query(f'sum by (workspace_id) (databricks_billing_cost{{{WS}, period="month"}}) '
                               f"{WORKSPACE_NAME}", "{{workspace_name}} month to date"), w=12,
                         description="The exporter's run-rate forecast; the budget forecast on the left uses the "
                                     "month's average pace instead."),
    ])
