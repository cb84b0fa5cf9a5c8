"""Predictive optimization: the compaction, vacuum, analyze and clustering operations Databricks ran on managed
tables, counted once each by operation_id as they appear in system.storage.predictive_optimization_operations_history
(hours after they end), with their DBUs, per catalog; per table only for the tables named in the configuration."""

from __future__ import annotations

from typing import Callable

from .. import metrics as m
from ..sources.sql import literal
from ..cycle import Cycle
from .base import register
from .system_tables import IncrementalTableCollector, amount, sql_timestamp, utc


@register
class PredictiveOptimizationCollector(IncrementalTableCollector):
    name = "predictive_optimization"
    # The history arrives within about 12 hours: reading it hourly is plenty.
    default_interval = 60 * 60.0
    id_column, time_column = "operation_id", "end_time"
    options = {
        **IncrementalTableCollector.options,
        # Operations that appear up to this long after later ones are still counted (the table lags up to ~12 h).
        "max_delay": ("duration", 24 * 3600.0),
        # Operations arrive hours after they end: on the very first start, those that ended this long before
        # counting began are counted too (once), so the families have values from the first day.
        "backfill": ("duration", 24 * 3600.0),
        # catalog.schema.table names whose newest operation of each type is exported (a series per table).
        "tables": ("str_list", []),
    }
    permission = ("CAN USE on the SQL warehouse (warehouse_id) and SELECT on "
                  "system.storage.predictive_optimization_operations_history")

    @classmethod
    def validate_options(cls, options: dict, error: Callable[[str, str], Exception]) -> None:
        for name in options["tables"]:
            if len(name.split(".")) != 3 or not all(name.split(".")):
                raise error(f"expected catalog.schema.table, got {name!r}", "tables")

    def check_statement(self) -> str:
        return "SELECT 1 FROM system.storage.predictive_optimization_operations_history LIMIT 1"

    def rows_statement(self, since: float) -> str:
        return ("SELECT operation_id, end_time, catalog_name, schema_name, table_name, operation_type,\n"
                "  operation_status, usage_quantity\n"
                "FROM system.storage.predictive_optimization_operations_history\n"
                f"WHERE workspace_id = {literal(self.workspace.workspace_id)}\n"
                f"  AND end_time >= {sql_timestamp(since)}")

    def refresh(self, cycle: Cycle, state: dict) -> None:
        named = set(self.settings.options["tables"])
        self._last = state.setdefault("table_last", {})      # catalog.schema.table/type -> newest success end
        self.count_new_rows(cycle, state, self.settings.options["backfill"])
        for key, at in self._last.items():
            table, _, kind = key.rpartition("/")
            if table in named:
                cycle.gauge(m.PO_TABLE_LAST, at, table=table, operation_type=kind)

    def count_row(self, cycle: Cycle, row: dict) -> None:
        status = str(row["operation_status"] or "")
        status = "FAILED" if status.startswith("FAILED") else status or "UNKNOWN"
        labels = {"catalog": row["catalog_name"], "operation_type": row["operation_type"]}
        cycle.inc(m.PO_OPERATIONS, status=status, **labels)
        cycle.inc(m.PO_DBUS, amount(row.get("usage_quantity")), **labels)
        table = f"{row['catalog_name']}.{row['schema_name']}.{row['table_name']}"
        if table in self.settings.options["tables"] and status == "SUCCESSFUL":
            key = f"{table}/{row['operation_type']}"
            self._last[key] = max(self._last.get(key, 0.0), utc(row["end_time"]).timestamp())
