"""Custom SQL metrics: queries from the configuration, each run on its own interval on the SQL warehouse, each
becoming the family databricks_custom_<name> with the columns it names as labels."""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable

from .. import metrics as m
from ..config import option_value
from ..sources.sql import describe
from ..cycle import Cycle, LabelValues
from .base import register
from .system_tables import SystemTableCollector

log = logging.getLogger(__name__)

NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# Labels the exporter or Prometheus sets itself.
RESERVED_LABELS = {"workspace_id", "job", "instance", "le", "quantile"}
QUERY_KEYS = {"name", "sql", "interval", "value_column", "label_columns", "type", "help"}


class QueryFailed(Exception):
    """A custom query's result cannot become its metric (a missing column, a value that is not a number)."""


@dataclass(frozen=True)
class CustomQuery:
    name: str
    sql: str
    interval: float | None            # None: every cycle of the collector
    value_column: str
    label_columns: tuple[str, ...]
    metric: m.Metric


def query_from_config(index: int, raw: Any, error: Callable[[str, str], Exception]) -> CustomQuery:
    """queries[index] of the configuration as a CustomQuery, or error(reason, key)."""
    where = f"queries[{index}]"
    if not isinstance(raw, dict):
        raise error(f"expected a mapping with name, sql and value_column, got {raw!r}", where)
    for key in raw:
        if key not in QUERY_KEYS:
            raise error(f"unknown key (allowed: {', '.join(sorted(QUERY_KEYS))})", f"{where}.{key}")
    name = raw.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise error(f"expected a metric name of lower-case letters, digits and _ (it becomes databricks_custom_"
                    f"<name>), got {name!r}", f"{where}.name")
    kind = raw.get("type", m.GAUGE)
    if kind not in (m.GAUGE, m.COUNTER):
        raise error(f"must be gauge or counter, got {kind!r}", f"{where}.type")
    if kind == m.COUNTER and not name.endswith("_total"):
        raise error(f"a counter's name ends in _total, got {name!r}", f"{where}.name")
    if kind == m.GAUGE and name.endswith("_total"):
        raise error(f"_total is for counters; a gauge named {name!r} would read as one", f"{where}.name")
    sql = raw.get("sql")
    if not isinstance(sql, str) or not sql.strip():
        raise error("expected the SQL statement that computes the metric", f"{where}.sql")
    value_column = raw.get("value_column")
    if not isinstance(value_column, str) or not LABEL.match(value_column):
        raise error(f"expected the name of the result column holding the value, got {value_column!r}",
                    f"{where}.value_column")
    labels = raw.get("label_columns") or []
    if not isinstance(labels, list):
        raise error(f"expected a list of result column names, got {labels!r}", f"{where}.label_columns")
    for label in labels:
        if not isinstance(label, str) or not LABEL.match(label) or label.startswith("__"):
            raise error(f"not a valid label name: {label!r}", f"{where}.label_columns")
        if label in RESERVED_LABELS:
            raise error(f"{label!r} is set by the exporter or Prometheus; alias the column (AS ...)",
                        f"{where}.label_columns")
        if label.lower() == value_column.lower():
            raise error(f"{label!r} is the value column", f"{where}.label_columns")
    if len({label.lower() for label in labels}) != len(labels):
        raise error(f"a column is named twice: {labels!r}", f"{where}.label_columns")
    interval = raw.get("interval")
    if interval is not None:
        try:
            interval = option_value(interval, "duration", positive=True)
        except (TypeError, ValueError) as exc:
            raise error(str(exc), f"{where}.interval") from None
    help_text = raw.get("help") or f"Custom SQL metric {name} (collectors.custom.queries)."
    if not isinstance(help_text, str):
        raise error(f"expected a string, got {help_text!r}", f"{where}.help")
    metric = m.custom_metric(name, kind, help_text, ("workspace_id",) + tuple(labels))
    return CustomQuery(name, sql.strip(), interval, value_column, tuple(labels), metric)


def _number(value: Any) -> float:
    if isinstance(value, (int, float, Decimal)):     # bool is an int: TRUE counts as 1
        return float(value)
    raise QueryFailed(f"not a number: {value!r}")


@register
class CustomCollector(SystemTableCollector):
    name = "custom"
    # The granularity of the queries' own intervals: a query runs in the first cycle at or after it is due.
    default_interval = 60.0
    options = {**SystemTableCollector.options, "queries": ("list", [])}
    permission = "CAN USE on the SQL warehouse (warehouse_id) and SELECT on what the custom queries read"

    @classmethod
    def validate_options(cls, options: dict, error: Callable[[str, str], Exception]) -> None:
        queries, names = [], set()
        for index, raw in enumerate(options["queries"]):
            query = raw if isinstance(raw, CustomQuery) else query_from_config(index, raw, error)
            if query.name in names:
                raise error(f"duplicate query name {query.name!r}", f"queries[{index}].name")
            names.add(query.name)
            queries.append(query)
        options["queries"] = queries

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        options = self.settings.options
        self.queries: list[CustomQuery] = options["queries"]
        self._ran: dict[str, float] = {}                           # query -> when it last succeeded
        self._results: dict[str, dict[LabelValues, float]] = {}    # query -> its series, as of that run

    def collect(self, cycle: Cycle, state: dict) -> None:
        if self.queries:           # nothing configured: nothing to run, and no warehouse to wake
            super().collect(cycle, state)

    check_statement = None       # check_query runs the configured queries themselves

    def check_query(self) -> str:
        cycle = Cycle(self.workspace.workspace_id)
        self.refresh(cycle, {})
        if cycle.failures:
            raise QueryFailed("; ".join(cycle.failures))
        series = sum(len(samples) for metric, samples in cycle.gauges.items() if metric != m.CUSTOM_QUERY_SUCCESS)
        return f"ran {len(self.queries)} queries on warehouse {self.sql.warehouse_id} ({series} series)"

    def due(self, query: CustomQuery, now: float) -> bool:
        """Never run, failed last time, or due by the next cycle's midpoint (so a 5m query in 1m cycles runs every
        5 minutes, not every 6 because of a little jitter)."""
        if query.name not in self._ran:
            return True
        return now - self._ran[query.name] + self.settings.interval / 2 >= (query.interval or 0)

    def refresh(self, cycle: Cycle, state: dict) -> None:
        now = self.clock()
        for query in self.queries:
            if self.due(query, now):
                try:
                    self._results[query.name] = self.run(query)
                    self._ran[query.name] = now
                except Exception as exc:  # noqa: BLE001 - any failure of one query fails that query only
                    self._results.pop(query.name, None)
                    self._ran.pop(query.name, None)          # retried next cycle
                    reason = describe(exc)
                    log.warning("custom query %s failed: %s; its series are absent until it succeeds", query.name,
                                reason, extra={"collector": self.name})
                    cycle.fail(f"query {query.name}: {reason}")
            cycle.gauge(m.CUSTOM_QUERY_SUCCESS, 1 if query.name in self._results else 0, query=query.name)
            for values, value in self._results.get(query.name, {}).items():
                cycle.current(query.metric, value, **dict(zip(query.metric.labels, values)))

    def run(self, query: CustomQuery) -> dict[LabelValues, float]:
        """The query's rows as series: its label columns and its value column, matched case-insensitively as
        Databricks SQL names columns. A row whose value is NULL gives no series."""
        rows = self.query(query.sql)
        out: dict[LabelValues, float] = {}
        if not rows:
            return out
        columns = {name.lower(): name for name in rows[0]}
        missing = [c for c in (query.value_column, *query.label_columns) if c.lower() not in columns]
        if missing:
            raise QueryFailed(f"the result has no column {', '.join(missing)} (it has {', '.join(rows[0])})")
        value_key = columns[query.value_column.lower()]
        label_keys = [columns[c.lower()] for c in query.label_columns]
        for row in rows:
            if row[value_key] is None:
                continue
            value = _number(row[value_key])
            if query.metric.type == m.COUNTER and not 0 <= value < math.inf:
                raise QueryFailed(f"a counter cannot be {value!r}")
            values = (self.workspace.workspace_id,) + tuple("" if row[k] is None else str(row[k]) for k in label_keys)
            if values in out:
                raise QueryFailed(f"two rows with the same labels {dict(zip(query.label_columns, values[1:]))}")
            out[values] = value
        return out
