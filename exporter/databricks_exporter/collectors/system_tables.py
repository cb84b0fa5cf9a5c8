"""What the collectors that read system tables share: the warehouse they need, the choice not to wake it, and what
their metrics mean while they do not query (the values of the last refresh, marked stale)."""

from __future__ import annotations

import datetime as dt
import logging
import math
from typing import Any, ClassVar

from .. import metrics as m
from ..cycle import Cycle
from .base import Collector, Cursor

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


def status_class(code: Any) -> str:
    """An HTTP status code as its class (2xx, 4xx, 5xx...); unknown when absent or not a status code."""
    try:
        number = int(code)
    except (TypeError, ValueError):
        return "unknown"
    return f"{number // 100}xx" if 100 <= number <= 599 else "unknown"


class IncrementalTableCollector(SystemTableCollector):
    """A collector counting each row of an append-only system table exactly once (audit events, usage rows,
    maintenance operations): rows_statement(watermark) selects the rows at or after the watermark (epoch seconds);
    a row is counted when its id is new, and the watermark then follows the newest row less max_delay, so rows that
    become visible up to max_delay late are still read. Counted ids and the watermark are committed with the counts.
    On the very first cycle the watermark starts `backfill` seconds before counting_since."""

    counts_work = True
    id_column: ClassVar[str] = ""
    time_column: ClassVar[str] = ""
    options: dict[str, tuple[str, Any]] = {**SystemTableCollector.options, "max_delay": ("duration", 3600.0)}

    def rows_statement(self, since: float) -> str:
        raise NotImplementedError

    def count_row(self, cycle: Cycle, row: dict) -> None:
        """Count one new row; raise on a malformed one (its counts are then undone and it is skipped)."""
        raise NotImplementedError

    def count_new_rows(self, cycle: Cycle, state: dict, backfill: float = 0.0) -> float | None:
        """Count the rows not counted yet; returns the newest row time seen, if any."""
        cursor = Cursor(state.setdefault("rows", {}), self.counting_since(state) - backfill)
        newest = None
        for row in self.query(self.rows_statement(cursor.watermark)):
            with cycle.item(f"{self.name} row"):
                at = utc(row[self.time_column]).timestamp()
                row_id = row[self.id_column]
                if not isinstance(row_id, str) or not row_id:
                    raise ValueError(f"{self.id_column} is not an id: {row_id!r}")
                if at > self.clock() + 86400:
                    # Believing it would move the watermark past every real row.
                    raise ValueError(f"{self.time_column} in the future: {row[self.time_column]!r}")
                newest = at if newest is None else max(newest, at)
                if cursor.is_new(row_id) and at >= cursor.watermark:
                    self.count_row(cycle, row)
                    cursor.mark(row_id, at)
        if newest is not None:
            cursor.advance(newest - self.settings.options["max_delay"])
        return newest
