"""Job run costs: what runs cost today and this month by job and result, what repairs cost, and the cost of each run,
from system.billing.usage priced at the list price valid at the time and joined with system.lakeflow.job_run_timeline
(where a run is a run_id, never a row: long runs are one row per hour slice)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

from .. import metrics as m
from ..sources.sql import literal
from ..cycle import Cycle
from .base import Cursor, register
from .system_tables import SystemTableCollector, amount, finite, sql_date, sql_timestamp, utc

ALL_PURPOSE_JOB = "_all_purpose"
ALL_PURPOSE_RESULT = "UNKNOWN"
# job_run_timeline spells results its own way; the metrics use the REST API's words, as databricks_job_runs_total.
REST_RESULT = {"SUCCEEDED": "SUCCESS", "CANCELLED": "CANCELED", "TIMED_OUT": "TIMEDOUT", "ERROR": "INTERNAL_ERROR"}
RUN_RETENTION_DAYS = 60

PRICE_JOIN = (
    "JOIN system.billing.list_prices AS p\n"
    "  ON p.sku_name = u.sku_name\n"
    "  AND p.cloud = u.cloud\n"
    "  AND p.usage_unit = u.usage_unit\n"
    "  AND u.usage_start_time >= p.price_start_time\n"
    "  AND (p.price_end_time IS NULL OR u.usage_start_time < p.price_end_time)\n")


def rest_result(value) -> str:
    if value is None:
        return "RUNNING"
    if not isinstance(value, str):
        raise TypeError(f"result_state is not text: {value!r}")
    return REST_RESULT.get(value, value)


def run_ends(workspace_id: str, since: dt.date) -> str:
    """Per run_id: when it first ended, when it last ended and the result it last ended with (a repaired run ends
    more than once)."""
    return (
        "ends AS (\n"
        "  SELECT run_id, period_end_time, result_state\n"
        "  FROM system.lakeflow.job_run_timeline\n"
        f"  WHERE workspace_id = {literal(workspace_id)}\n"
        "    AND result_state IS NOT NULL\n"
        f"    AND period_end_time >= {sql_date(since)}\n"
        "),\n"
        "spans AS (\n"
        "  SELECT run_id, MIN(period_end_time) AS first_end, MAX(period_end_time) AS last_end\n"
        "  FROM ends GROUP BY run_id\n"
        "),\n"
        "runs AS (\n"
        "  SELECT s.run_id, s.first_end, s.last_end, MAX(e.result_state) AS result_state\n"
        "  FROM spans AS s JOIN ends AS e ON e.run_id = s.run_id AND e.period_end_time = s.last_end\n"
        "  GROUP BY s.run_id, s.first_end, s.last_end\n"
        ")\n")


@register
class JobCostsCollector(SystemTableCollector):
    name = "job_costs"
    # Billing arrives hours late: four times an hour is plenty.
    default_interval = 15 * 60.0
    counts_work = True
    options = {
        **SystemTableCollector.options,
        # A run's cost enters the per-run histogram once billing has had this long after the run's end.
        "settle_seconds": ("duration", 12 * 3600.0),
    }
    permission = ("CAN USE on the SQL warehouse (warehouse_id) and SELECT on system.billing.usage, "
                  "system.billing.list_prices and system.lakeflow.job_run_timeline")

    def check_statement(self) -> str:
        return "SELECT 1 FROM system.lakeflow.job_run_timeline LIMIT 1"

    # -- the statements

    def cost_statement(self, workspace_id: str, since: dt.date, until: dt.date) -> str:
        """List cost per usage day, job and the run's latest result, and the part billed after its first end."""
        return (
            "WITH " + run_ends(workspace_id, since - dt.timedelta(days=RUN_RETENTION_DAYS)) +
            "SELECT\n"
            "  u.usage_date,\n"
            "  u.usage_metadata.job_id AS job_id,\n"
            "  r.result_state,\n"
            "  p.currency_code,\n"
            "  SUM(u.usage_quantity * p.pricing.default) AS list_cost,\n"
            "  SUM(CASE WHEN u.usage_start_time >= r.first_end THEN u.usage_quantity * p.pricing.default\n"
            "      ELSE 0 END) AS repair_cost\n"
            "FROM system.billing.usage AS u\n"
            f"{PRICE_JOIN}"
            "LEFT JOIN runs AS r ON r.run_id = u.usage_metadata.job_run_id\n"
            f"WHERE u.workspace_id = {literal(workspace_id)}\n"
            "  AND u.usage_metadata.job_run_id IS NOT NULL\n"
            f"  AND u.usage_date >= {sql_date(since)}\n"
            f"  AND u.usage_date <= {sql_date(until)}\n"
            "GROUP BY ALL")

    def all_purpose_statement(self, workspace_id: str, since: dt.date, until: dt.date) -> str:
        """List cost of all-purpose cluster hours during which a job run used the cluster (their usage names no
        job and no run)."""
        return (
            "SELECT u.usage_date, p.currency_code, SUM(u.usage_quantity * p.pricing.default) AS list_cost\n"
            "FROM system.billing.usage AS u\n"
            f"{PRICE_JOIN}"
            f"WHERE u.workspace_id = {literal(workspace_id)}\n"
            "  AND u.billing_origin_product = 'ALL_PURPOSE'\n"
            f"  AND u.usage_date >= {sql_date(since)}\n"
            f"  AND u.usage_date <= {sql_date(until)}\n"
            "  AND EXISTS (\n"
            "    SELECT 1 FROM system.lakeflow.job_run_timeline AS t\n"
            "    WHERE t.workspace_id = u.workspace_id\n"
            "      AND array_contains(t.compute_ids, u.usage_metadata.cluster_id)\n"
            "      AND t.period_start_time < u.usage_end_time\n"
            "      AND t.period_end_time > u.usage_start_time)\n"
            "GROUP BY ALL")

    def per_run_statement(self, workspace_id: str, start: float, end: float) -> str:
        """The list cost of every run whose last end is in [start, end)."""
        since = dt.datetime.fromtimestamp(start, dt.timezone.utc).date()
        return (
            "WITH " + run_ends(workspace_id, since - dt.timedelta(days=1)) +
            "SELECT r.run_id, r.last_end, p.currency_code, SUM(u.usage_quantity * p.pricing.default) AS list_cost\n"
            "FROM runs AS r\n"
            "JOIN system.billing.usage AS u\n"
            "  ON u.usage_metadata.job_run_id = r.run_id\n"
            f"  AND u.workspace_id = {literal(workspace_id)}\n"
            f"  AND u.usage_date >= {sql_date(since - dt.timedelta(days=RUN_RETENTION_DAYS))}\n"
            f"{PRICE_JOIN}"
            f"WHERE r.last_end >= {sql_timestamp(start)}\n"
            f"  AND r.last_end < {sql_timestamp(end)}\n"
            "GROUP BY ALL")

    # -- the cycle

    def refresh(self, cycle: Cycle, state: dict) -> None:
        now = self.clock()
        today = dt.datetime.fromtimestamp(now, dt.timezone.utc).date()
        month_start = today.replace(day=1)
        workspace_id = self.workspace.workspace_id
        periods = {"day": lambda d: d == today, "month": lambda d: month_start <= d <= today}
        cost: dict[tuple, float] = defaultdict(float)        # (period, job_id, result, currency)
        repairs: dict[tuple, float] = defaultdict(float)     # (period, job_id, currency)
        for row in self.query(self.cost_statement(workspace_id, month_start, today)):
            with cycle.item("job cost row"):
                day, currency = _day(row["usage_date"]), _currency(row)
                if currency is None:
                    continue           # a SKU without a list price: no cost to tell
                job_id, result = str(row["job_id"] or ""), rest_result(row.get("result_state"))
                value, repair = finite(row["list_cost"]), amount(row.get("repair_cost"))
                for period, within in periods.items():
                    if within(day):
                        cost[(period, job_id, result, currency)] += value
                        repairs[(period, job_id, currency)] += repair
        for row in self.query(self.all_purpose_statement(workspace_id, month_start, today)):
            with cycle.item("all-purpose cost row"):
                day, currency = _day(row["usage_date"]), _currency(row)
                if currency is None:
                    continue
                for period, within in periods.items():
                    if within(day):
                        cost[(period, ALL_PURPOSE_JOB, ALL_PURPOSE_RESULT, currency)] += finite(row["list_cost"])
        for (period, job_id, result, currency), value in cost.items():
            cycle.gauge(m.JOB_RUN_COST, value, job_id=job_id, result_state=result, period=period, currency=currency)
        for (period, job_id, currency), value in repairs.items():
            cycle.gauge(m.JOB_RUN_REPAIR_COST, value, job_id=job_id, period=period, currency=currency)
        self.observe_settled_runs(cycle, state, workspace_id, now)

    def observe_settled_runs(self, cycle: Cycle, state: dict, workspace_id: str, now: float) -> None:
        """Each run once into the per-run histogram, once its billing has settled; the cursor is persisted."""
        settled = now - self.settings.options["settle_seconds"]
        cursor = Cursor(state.setdefault("runs", {}), self.counting_since(state) - self.settings.options[
            "settle_seconds"])
        if settled <= cursor.watermark:
            return
        for row in self.query(self.per_run_statement(workspace_id, cursor.watermark, settled)):
            with cycle.item("run cost row"):
                currency = _currency(row)
                run_id, ended = str(row["run_id"]), utc(row["last_end"])
                if currency is None or ended is None or not cursor.is_new(run_id):
                    continue
                cycle.observe(m.JOB_RUN_COST_PER_RUN, amount(row["list_cost"]), currency=currency)
                cursor.mark(run_id, ended.timestamp())
        cursor.advance(settled)


def _day(value) -> dt.date:
    if isinstance(value, str):
        return dt.date.fromisoformat(value[:10])
    if isinstance(value, dt.datetime):
        return value.date()
    if not isinstance(value, dt.date):
        raise TypeError(f"usage_date is not a date: {value!r}")
    return value


def _currency(row: dict) -> str | None:
    currency = row.get("currency_code")
    if currency is not None and not isinstance(currency, str):
        raise TypeError(f"currency_code is not a string: {currency!r}")
    return currency
