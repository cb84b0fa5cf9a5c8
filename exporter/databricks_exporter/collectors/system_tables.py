"""What the collectors that read system tables share: the warehouse they need, the choice not to wake it, and what
their metrics mean while they do not query (the values of the last refresh, marked stale)."""

from __future__ import annotations

import datetime as dt
import logging
import math
from typing import Any

from .. import metrics as m
from ..cycle import Cycle
from .base import Collector

log = logging.getLogger(__name__)


def utc(value: Any) -> dt.datetime | None:
    """A timestamp from a result row as an aware UTC datetime (the connector returns naive UTC or aware values)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)


def finite(value: Any) -> float:
    """A number from a result row (DECIMAL arrives as Decimal or text); NaN and infinities make the row malformed."""
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"not a finite number: {value!r}")
    return number


def amount(value: Any, none_ok: bool = False) -> float | None:
    """A count or size from a result row: finite and not negative; a missing one counts as 0 (None with none_ok)."""
    if value is None:
        return None if none_ok else 0.0
    number = finite(value)
    if number < 0:
        raise ValueError(f"not an amount: {value!r}")
    return number


def sql_timestamp(seconds: float) -> str:
    """A Databricks SQL TIMESTAMP literal (UTC) for epoch seconds."""
    return "TIMESTAMP '" + dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S") + "'"


def sql_date(day: dt.date) -> str:
    return f"DATE '{day.isoformat()}'"


class SystemTableCollector(Collector):
    """A collector reading system tables through the workspace's SQL source.

    Querying a stopped warehouse starts it, and a warehouse kept awake costs money. With wake_warehouse: false a
    cycle that finds the warehouse not RUNNING (a cheap REST call) sends no SQL: it succeeds, re-publishes the values
    of the last refresh, and sets databricks_exporter_sql_data_stale to 1; databricks_exporter_sql_last_refresh_
    timestamp_seconds keeps saying when they were read. Without any warehouse_id the collector has nothing to do
    and says so once in the log."""

    options: dict[str, tuple[str, Any]] = {"wake_warehouse": ("bool", True)}
    permission = "CAN USE on the SQL warehouse (warehouse_id) and SELECT on the system tables it reads"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._last_gauges: dict = {}
        self._warned = False

    @property
    def sql(self):
        return self.workspace.sql

    def collect(self, cycle: Cycle, state: dict) -> None:
        if not self.sql.configured:
            if not self._warned:
                log.warning("no SQL warehouse configured for this workspace (workspaces[].warehouse_id or "
                            "DATABRICKS_WAREHOUSE_ID): the %s collector has nothing to read", self.name,
                            extra={"collector": self.name, "workspace": self.workspace.settings.name})
                self._warned = True
            return
        if not self.settings.options["wake_warehouse"]:
            state_now = self.sql.warehouse_state()
            if state_now != "RUNNING":
                self.sql.record_skip(self.name)
                log.info("warehouse %s is %s and wake_warehouse is false: not querying; metrics keep the last "
                         "refresh", self.sql.warehouse_id, state_now, extra={"collector": self.name})
                for metric, samples in self._last_gauges.items():
                    cycle.gauges[metric] = dict(samples)
                self._freshness(cycle, state, stale=True)
                return
        self.refresh(cycle, state)
        self._last_gauges = {metric: dict(samples) for metric, samples in cycle.gauges.items()}
        state["last_refresh"] = self.clock()
        self._freshness(cycle, state, stale=False)

    def _freshness(self, cycle: Cycle, state: dict, stale: bool) -> None:
        cycle.gauge(m.SQL_DATA_STALE, 1 if stale else 0, collector=self.name)
        if state.get("last_refresh"):
            cycle.gauge(m.SQL_LAST_REFRESH, state["last_refresh"], collector=self.name)

    def refresh(self, cycle: Cycle, state: dict) -> None:
        """Query the system tables and emit into the cycle."""
        raise NotImplementedError

    def query(self, statement: str) -> list[dict]:
        return self.sql.query(statement, self.name)

    def check_statement(self) -> str:
        raise NotImplementedError

    def check(self) -> str:
        if not self.sql.configured:
            return "skipped: no warehouse_id for this workspace (nothing to read)"
        if not self.settings.options["wake_warehouse"]:
            state = self.sql.warehouse_state()
            if state != "RUNNING":
                return f"warehouse {self.sql.warehouse_id} is {state}; not started (wake_warehouse: false)"
        return self.check_query()

    def check_query(self) -> str:
        """The check's statements, once the warehouse may be used; returns what they saw."""
        rows = self.query(self.check_statement())
        return f"read {self.check_statement().split(' FROM ')[1].split()[0]} on warehouse {self.sql.warehouse_id} " \
               f"({len(rows)} row)"
