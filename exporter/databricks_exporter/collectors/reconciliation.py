"""Reconciliation: once per closed period (an hour by default), what the jobs and queries collectors counted from
the REST API, compared with what system.lakeflow.job_run_timeline and system.query.history hold for the same period,
so that users learn whether the counts can be trusted and where the REST path misses something."""

from __future__ import annotations

from .. import metrics as m
from ..sources.sql import literal
from ..cycle import Cycle
from .base import TALLY_SECONDS, register
from .job_costs import rest_result
from .jobs import ONE_TIME
from .system_tables import SystemTableCollector, amount, sql_timestamp

SOURCES = ("jobs", "queries")


@register
class ReconciliationCollector(SystemTableCollector):
    name = "reconciliation"
    default_interval = 15 * 60.0
    options = {
        **SystemTableCollector.options,
        "period_seconds": ("duration", 3600.0),        # whole minutes
        # query.history is complete within about an hour; job_run_timeline's delay is not documented, and rows
        # are a few minutes late in practice: a period is reconciled once this long has passed after its end.
        "delay_seconds": ("duration", 3600.0),
    }
    permission = ("CAN USE on the SQL warehouse (warehouse_id) and SELECT on system.lakeflow.job_run_timeline and "
                  "system.query.history; the jobs and queries collectors enabled")

    def check_statement(self) -> str:
        return "SELECT 1 FROM system.lakeflow.job_run_timeline LIMIT 1"

    def table_statement(self, source: str, workspace_id: str, start: float, end: float) -> str:
        """Completed items per entity and result whose end falls in [start, end)."""
        if source == "jobs":
            # A run counts once, in the period of its first end, with the result of that end (as the jobs
            # collector counts it; repairs end again later); one-time runs under one label, as the collector does.
            return ("WITH ended AS (\n"
                    "  SELECT job_id, run_id, run_type, result_state, period_end_time,\n"
                    "    ROW_NUMBER() OVER (PARTITION BY run_id ORDER BY period_end_time) AS nth_end\n"
                    "  FROM system.lakeflow.job_run_timeline\n"
                    f"  WHERE workspace_id = {literal(workspace_id)} AND result_state IS NOT NULL\n"
                    f"    AND period_end_time < {sql_timestamp(end)}\n"
                    "    AND run_id IN (SELECT run_id FROM system.lakeflow.job_run_timeline\n"
                    f"      WHERE workspace_id = {literal(workspace_id)} AND result_state IS NOT NULL\n"
                    f"        AND period_end_time >= {sql_timestamp(start)} AND period_end_time < {sql_timestamp(end)})\n"
                    ")\n"
                    f"SELECT CASE WHEN run_type IN ('SUBMIT_RUN', 'WORKFLOW_RUN') THEN {literal(ONE_TIME)}\n"
                    "  ELSE job_id END AS entity_id, result_state AS result, COUNT(*) AS items\n"
                    "FROM ended\n"
                    f"WHERE nth_end = 1 AND period_end_time >= {sql_timestamp(start)}\n"
                    "GROUP BY ALL")
        return ("SELECT compute.warehouse_id AS entity_id, execution_status AS result, COUNT(*) AS items\n"
                "FROM system.query.history\n"
                f"WHERE workspace_id = {literal(workspace_id)}\n"
                "  AND compute.warehouse_id IS NOT NULL\n"
                f"  AND end_time >= {sql_timestamp(start)} AND end_time < {sql_timestamp(end)}\n"
                "GROUP BY ALL")

    def refresh(self, cycle: Cycle, state: dict) -> None:
        period = max(TALLY_SECONDS, self.settings.options["period_seconds"] // TALLY_SECONDS * TALLY_SECONDS)
        closed = (self.clock() - self.settings.options["delay_seconds"]) // period * period
        workspace_id = self.workspace.workspace_id
        reconciled = state.setdefault("reconciled", {})
        for source in SOURCES:
            counted = self.workspace.store.state(f"{workspace_id}/{source}")
            if "counting_since" not in counted:
                continue            # the collector is off, or has not finished a cycle yet
            # The REST counts of a period are whole only when counting began before it.
            start = closed - period
            if start < counted["counting_since"]:
                continue
            if reconciled.get(source, {}).get("until") != closed:
                reconciled[source] = {"until": closed, "at": self.clock(),
                                      "differences": self._differences(cycle, source, workspace_id, counted,
                                                                       start, closed)}
            done = reconciled[source]
            for key, difference in done["differences"].items():
                entity_id, result = key.split("\t", 1)
                cycle.gauge(m.RECONCILIATION_DIFFERENCE, difference, source=source, entity_id=entity_id,
                            result=result)
            cycle.gauge(m.RECONCILIATION_LAST, done["at"], source=source)
            cycle.gauge(m.RECONCILED_UNTIL, done["until"], source=source)

    def _differences(self, cycle: Cycle, source: str, workspace_id: str, counted: dict, start: float,
                     end: float) -> dict[str, float]:
        """REST count minus table count per "entity\\tresult", over [start, end) (whole minutes)."""
        rest: dict[str, float] = {}
        for minute, counts in counted.get("tallies", {}).items():
            if start <= int(minute) < end:
                for key, n in counts.items():
                    rest[key] = rest.get(key, 0) + n
        table: dict[str, float] = {}
        for row in self.query(self.table_statement(source, workspace_id, start, end)):
            with cycle.item("reconciliation row"):
                result = rest_result(row["result"]) if source == "jobs" else str(row["result"])
                key = f"{row['entity_id'] or ''}\t{result}"
                table[key] = table.get(key, 0) + amount(row["items"])
        return {key: rest.get(key, 0) - table.get(key, 0) for key in set(rest) | set(table)}
