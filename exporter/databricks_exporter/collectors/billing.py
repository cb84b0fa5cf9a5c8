"""Billing: what the workspace costs today and this month, by SKU and product, by job, warehouse, pipeline and tag,
priced with the list price valid when the usage happened; a month-end forecast; budgets from the configuration."""

from __future__ import annotations

import calendar
import datetime as dt
import fnmatch
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable

from .. import metrics as m
from ..sources.sql import literal
from ..cycle import Cycle
from .base import register
from .system_tables import SystemTableCollector, finite, sql_date, utc

FORECAST_DAYS = 7            # closed days whose average daily cost projects the rest of the month
TAG_KEY = re.compile(r"^[^\x00-\x1f]{1,255}$")
CURRENCY = re.compile(r"^[A-Z]{3}$")


@dataclass(frozen=True)
class Budget:
    name: str
    period: str
    amount: float
    currency: str = "USD"
    workspace_ids: tuple[str, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()
    products: tuple[str, ...] = ()

    def selects(self, row: "Line") -> bool:
        if self.workspace_ids and row.workspace_id not in self.workspace_ids:
            return False
        if self.products and row.product not in self.products:
            return False
        return all(row.tags.get(key) == value for key, value in self.tags)


@dataclass
class Line:
    """One row of the billing query: usage and list cost of one day for one combination of attributes."""
    workspace_id: str
    day: dt.date
    sku: str
    product: str
    unit: str
    currency: str | None
    job_id: str
    warehouse_id: str
    pipeline_id: str
    tags: dict = field(default_factory=dict)
    usage: float = 0.0
    list_cost: float | None = None
    cost: float | None = None


def _budget(index: int, raw: Any, error: Callable[[str, str], Exception]) -> Budget:
    where = f"budgets[{index}]"
    if not isinstance(raw, dict):
        raise error(f"expected a mapping with name, period and amount, got {raw!r}", where)
    allowed = {"name", "period", "amount", "currency", "workspace_ids", "tags", "products"}
    for key in raw:
        if key not in allowed:
            raise error(f"unknown key (allowed: {', '.join(sorted(allowed))})", f"{where}.{key}")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise error("every budget needs a name", f"{where}.name")
    period = raw.get("period")
    if period not in ("day", "month"):
        raise error(f"must be day or month, got {period!r}", f"{where}.period")
    amount = raw.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, (int, float)) or amount <= 0:
        raise error(f"must be a number greater than zero, got {amount!r}", f"{where}.amount")
    currency = raw.get("currency", "USD")
    if not isinstance(currency, str) or not CURRENCY.match(currency):
        raise error(f"expected a currency code such as USD, got {currency!r}", f"{where}.currency")
    workspace_ids = raw.get("workspace_ids", [])
    if not isinstance(workspace_ids, list) or not all(isinstance(w, (str, int)) and not isinstance(w, bool)
                                                      and str(w).isdigit() for w in workspace_ids):
        raise error(f"expected a list of numeric workspace ids, got {workspace_ids!r}", f"{where}.workspace_ids")
    tags = raw.get("tags", {})
    if not isinstance(tags, dict) or not all(isinstance(k, str) and TAG_KEY.match(k) and isinstance(v, (str, int))
                                             and not isinstance(v, bool) for k, v in tags.items()):
        raise error(f"expected a mapping of tag key to value, got {tags!r}", f"{where}.tags")
    products = raw.get("products", [])
    if not isinstance(products, list) or not all(isinstance(p, str) and p for p in products):
        raise error(f"expected a list of billing_origin_product values such as JOBS or SQL, got {products!r}",
                    f"{where}.products")
    return Budget(name.strip(), period, float(amount), currency, tuple(str(w) for w in workspace_ids),
                  tuple(sorted((k, str(v)) for k, v in tags.items())), tuple(p.upper() for p in products))


@register
class BillingCollector(SystemTableCollector):
    name = "billing"
    # Usage records arrive hours late and the warehouse may have to be woken: four times an hour is plenty.
    default_interval = 15 * 60.0
    options = {
        **SystemTableCollector.options,
        "tag_keys": ("str_list", ["team", "cost_center"]),
        "discount": ("float", 0.0),
        "sku_discounts": ("dict", {}),
        "budgets": ("list", []),
    }
    permission = ("CAN USE on the SQL warehouse (warehouse_id) and SELECT on system.billing.usage and "
                  "system.billing.list_prices")

    @classmethod
    def validate_options(cls, options: dict, error: Callable[[str, str], Exception]) -> None:
        """Check what the kinds alone cannot: discounts are fractions, budgets are well formed and unique."""
        for key in options["tag_keys"]:
            if not TAG_KEY.match(key):
                raise error(f"not a tag key: {key!r}", "tag_keys")
        if not 0 <= options["discount"] < 1:
            raise error(f"a fraction of the list price from 0 to below 1 (0.15 = 15% off), got "
                        f"{options['discount']!r}", "discount")
        discounts = {}
        for pattern, value in options["sku_discounts"].items():
            try:
                fraction = float(value)
            except ValueError:
                raise error(f"expected a fraction such as 0.2, got {value!r}", f"sku_discounts.{pattern}") from None
            if not 0 <= fraction < 1:
                raise error(f"a fraction of the list price from 0 to below 1, got {value!r}",
                            f"sku_discounts.{pattern}")
            discounts[pattern] = fraction
        options["sku_discounts"] = discounts
        budgets, seen = [], set()
        for index, raw in enumerate(options["budgets"]):
            budget = _budget(index, raw, error)
            if (budget.name, budget.period) in seen:
                raise error(f"duplicate budget {budget.name!r} for period {budget.period}", f"budgets[{index}].name")
            seen.add((budget.name, budget.period))
            budgets.append(budget)
        options["budgets"] = budgets

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        options = self.settings.options
        self.tag_keys: list[str] = list(dict.fromkeys(options["tag_keys"]))
        self.budgets: list[Budget] = options["budgets"] if self.evaluates_budgets else []
        budget_keys = [k for b in self.budgets for k, _ in b.tags]
        self.query_tag_keys = list(dict.fromkeys(self.tag_keys + budget_keys))

    @property
    def evaluates_budgets(self) -> bool:
        # system.billing.usage covers the whole account: one workspace (the first in the file) evaluates budgets,
        # so a budget is one series however many workspaces the exporter watches.
        return getattr(self.workspace.settings, "index", 0) == 0

    def check_statement(self) -> str:
        return "SELECT 1 FROM system.billing.usage LIMIT 1"

    # -- the statements

    def billing_statement(self, since: dt.date, until: dt.date, workspace_id: str | None) -> str:
        """Usage and list cost per day and attribute combination, prices joined on their validity window.
        workspace_id None reads the whole account (for budgets)."""
        tags = "".join(f"  u.custom_tags[{literal(key)}] AS tag_{i},\n" for i, key in enumerate(self.query_tag_keys))
        where = f"  AND u.workspace_id = {literal(workspace_id)}\n" if workspace_id else ""
        return (
            "SELECT\n"
            "  u.workspace_id,\n"
            "  u.usage_date,\n"
            "  u.sku_name,\n"
            "  u.billing_origin_product,\n"
            "  u.usage_unit,\n"
            "  p.currency_code,\n"
            "  u.usage_metadata.job_id AS job_id,\n"
            "  u.usage_metadata.warehouse_id AS warehouse_id,\n"
            "  u.usage_metadata.dlt_pipeline_id AS pipeline_id,\n"
            f"{tags}"
            "  SUM(u.usage_quantity) AS usage_quantity,\n"
            "  SUM(u.usage_quantity * p.pricing.default) AS list_cost\n"
            "FROM system.billing.usage AS u\n"
            "LEFT JOIN system.billing.list_prices AS p\n"
            "  ON p.sku_name = u.sku_name\n"
            "  AND p.cloud = u.cloud\n"
            "  AND p.usage_unit = u.usage_unit\n"
            "  AND u.usage_start_time >= p.price_start_time\n"
            "  AND (p.price_end_time IS NULL OR u.usage_start_time < p.price_end_time)\n"
            f"WHERE u.usage_date >= {sql_date(since)}\n"
            f"  AND u.usage_date <= {sql_date(until)}\n"
            f"{where}"
            "GROUP BY ALL")

    def latest_statement(self, workspace_id: str, since: dt.date) -> str:
        return ("SELECT MAX(usage_end_time) AS latest_end_time\n"
                "FROM system.billing.usage\n"
                f"WHERE workspace_id = {literal(workspace_id)}\n"
                f"  AND usage_date >= {sql_date(since)}")

    # -- the cycle

    def refresh(self, cycle: Cycle, state: dict) -> None:
        now = dt.datetime.fromtimestamp(self.clock(), dt.timezone.utc)
        today = now.date()
        month_start = today.replace(day=1)
        since = min(month_start, today - dt.timedelta(days=FORECAST_DAYS))
        workspace_id = self.workspace.workspace_id
        account_wide = bool(self.budgets)
        lines = self._lines(cycle, self.query(self.billing_statement(since, today,
                                                                     None if account_wide else workspace_id)))
        own = [line for line in lines if line.workspace_id == workspace_id]
        periods = {"day": lambda d: d == today, "month": lambda d: month_start <= d <= today}

        cycle.gauge(m.BILLING_COST_BASIS, 1, basis="discounted" if self._discounted else "list")
        for period, within in periods.items():
            usage: dict[tuple, float] = defaultdict(float)
            cost: dict[tuple, float] = defaultdict(float)
            by: dict[tuple, dict[tuple, float]] = {k: defaultdict(float) for k in ("job", "warehouse", "pipeline")}
            by_tag: dict[tuple, float] = defaultdict(float)
            for line in own:
                if not within(line.day):
                    continue
                usage[(line.sku, line.product, line.unit)] += line.usage
                if line.cost is None:
                    continue
                cost[(line.sku, line.product, line.currency)] += line.cost
                for kind, value in (("job", line.job_id), ("warehouse", line.warehouse_id),
                                    ("pipeline", line.pipeline_id)):
                    if value:
                        by[kind][(value, line.currency)] += line.cost
                for key in self.tag_keys:
                    by_tag[(key, line.tags.get(key) or "", line.currency)] += line.cost
            for (sku, product, unit), value in usage.items():
                cycle.gauge(m.BILLING_USAGE, value, sku_name=sku, billing_origin_product=product, usage_unit=unit,
                            period=period)
            for (sku, product, currency), value in cost.items():
                cycle.gauge(m.BILLING_COST, value, sku_name=sku, billing_origin_product=product, currency=currency,
                            period=period)
            for (job_id, currency), value in by["job"].items():
                cycle.gauge(m.BILLING_COST_BY_JOB, value, job_id=job_id, currency=currency, period=period)
            for (warehouse_id, currency), value in by["warehouse"].items():
                cycle.gauge(m.BILLING_COST_BY_WAREHOUSE, value, warehouse_id=warehouse_id, currency=currency,
                            period=period)
            for (pipeline_id, currency), value in by["pipeline"].items():
                cycle.gauge(m.BILLING_COST_BY_PIPELINE, value, pipeline_id=pipeline_id, currency=currency,
                            period=period)
            for (key, value_, currency), value in by_tag.items():
                cycle.gauge(m.BILLING_COST_BY_TAG, value, tag_key=key, tag_value=value_, currency=currency,
                            period=period)

        for currency, value in self.forecast(own, today).items():
            cycle.gauge(m.BILLING_FORECAST, value, currency=currency)
        for budget in self.budgets:
            spend = sum(line.cost for line in lines
                        if line.cost is not None and line.currency == budget.currency
                        and periods[budget.period](line.day) and budget.selects(line))
            cycle.gauge(m.BUDGET_LIMIT, budget.amount, budget=budget.name, period=budget.period,
                        currency=budget.currency)
            cycle.gauge(m.BUDGET_SPEND, spend, budget=budget.name, period=budget.period, currency=budget.currency)

        latest = self.query(self.latest_statement(workspace_id, today - dt.timedelta(days=FORECAST_DAYS)))
        with cycle.item("billing row"):
            latest_end = utc(latest[0].get("latest_end_time")) if latest else None
            if latest_end is not None:
                state["latest_usage_end"] = finite(latest_end.timestamp())
        if state.get("latest_usage_end"):
            # Kept across cycles: a feed that stalls for more than a week still shows when it stopped.
            cycle.gauge(m.BILLING_LATEST, state["latest_usage_end"])

    @property
    def _discounted(self) -> bool:
        options = self.settings.options
        return bool(options["discount"]) or any(options["sku_discounts"].values())

    def discount_for(self, sku: str) -> float:
        for pattern, fraction in self.settings.options["sku_discounts"].items():
            if fnmatch.fnmatchcase(sku, pattern):
                return fraction
        return self.settings.options["discount"]

    def _lines(self, cycle: Cycle, rows: list[dict]) -> list[Line]:
        lines = []
        for row in rows:
            with cycle.item("billing row"):
                lines.append(self._line(row))
        return lines

    def _line(self, row: dict) -> Line:
        day = row["usage_date"]
        if isinstance(day, str):
            day = dt.date.fromisoformat(day[:10])
        elif isinstance(day, dt.datetime):
            day = day.date()
        if not isinstance(day, dt.date):
            raise TypeError(f"usage_date is not a date: {day!r}")
        currency = row.get("currency_code")
        if currency is not None and not isinstance(currency, str):
            raise TypeError(f"currency_code is not a string: {currency!r}")
        list_cost = None if row.get("list_cost") is None or currency is None else finite(row["list_cost"])
        line = Line(
            workspace_id=str(row.get("workspace_id") or ""), day=day, sku=_text(row.get("sku_name")),
            product=_text(row.get("billing_origin_product")), unit=_text(row.get("usage_unit")),
            currency=currency, job_id=str(row.get("job_id") or ""),
            warehouse_id=str(row.get("warehouse_id") or ""), pipeline_id=str(row.get("pipeline_id") or ""),
            tags={key: _text(row.get(f"tag_{i}")) for i, key in enumerate(self.query_tag_keys)
                  if row.get(f"tag_{i}") is not None},
            usage=finite(row.get("usage_quantity") or 0), list_cost=list_cost)
        if list_cost is not None:
            line.cost = list_cost * (1 - self.discount_for(line.sku))
        return line

    @staticmethod
    def forecast(lines: list[Line], today: dt.date) -> dict[str, float]:
        """Month-end cost per currency: the closed days of this month, plus today and every remaining day at the
        average daily cost of the last FORECAST_DAYS closed days (from the first day with any usage, for a new
        workspace). No forecast without a closed day to go by."""
        days_in_month = calendar.monthrange(today.year, today.month)[1]
        month_start = today.replace(day=1)
        window_start = today - dt.timedelta(days=FORECAST_DAYS)
        out = {}
        for currency in sorted({line.currency for line in lines if line.cost is not None}):
            priced = [line for line in lines if line.cost is not None and line.currency == currency]
            first = min((line.day for line in priced), default=today)
            start = max(window_start, first)
            closed_days = (today - start).days
            if closed_days <= 0:
                continue
            recent = sum(line.cost for line in priced if start <= line.day < today)
            rate = recent / closed_days
            closed_month = sum(line.cost for line in priced if month_start <= line.day < today)
            out[currency] = closed_month + rate * (days_in_month - today.day + 1)
        return out


def _text(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TypeError(f"expected text, got {value!r}")
    return value
