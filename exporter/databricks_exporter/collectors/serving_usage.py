"""Token counts of model serving endpoints: every request row of system.serving.endpoint_usage counted once by
databricks_request_id, named by endpoint and served entity through system.serving.served_entities."""

from __future__ import annotations

from .. import metrics as m
from ..sources.sql import literal
from ..cycle import Cycle
from .base import register
from .system_tables import IncrementalTableCollector, amount, sql_timestamp, status_class


@register
class ServingUsageCollector(IncrementalTableCollector):
    name = "serving_usage"
    # Usage rows arrive minutes late; every ten minutes is timely enough for token budgets.
    default_interval = 10 * 60.0
    id_column, time_column = "databricks_request_id", "request_time"
    permission = ("CAN USE on the SQL warehouse (warehouse_id) and SELECT on system.serving.endpoint_usage and "
                  "system.serving.served_entities")

    def check_statement(self) -> str:
        return "SELECT 1 FROM system.serving.endpoint_usage LIMIT 1"

    def rows_statement(self, since: float) -> str:
        # served_entities keeps a row per configuration change (SCD2-like): one name per served_entity_id is enough.
        return ("SELECT u.databricks_request_id, u.request_time, u.status_code, u.input_token_count,\n"
                "  u.output_token_count, e.endpoint_name, e.served_entity_name\n"
                "FROM system.serving.endpoint_usage AS u\n"
                "JOIN (SELECT served_entity_id, MAX(endpoint_name) AS endpoint_name,\n"
                "        MAX(served_entity_name) AS served_entity_name\n"
                "      FROM system.serving.served_entities GROUP BY served_entity_id) AS e\n"
                "  ON e.served_entity_id = u.served_entity_id\n"
                f"WHERE u.workspace_id = {literal(self.workspace.workspace_id)}\n"
                f"  AND u.request_time >= {sql_timestamp(since)}")

    def refresh(self, cycle: Cycle, state: dict) -> None:
        self.count_new_rows(cycle, state)

    def count_row(self, cycle: Cycle, row: dict) -> None:
        labels = {"endpoint_name": row["endpoint_name"], "served_entity": row["served_entity_name"] or ""}
        if not labels["endpoint_name"]:
            raise ValueError("usage row without an endpoint")
        cycle.inc(m.SERVING_TOKENS, amount(row.get("input_token_count")), direction="input", **labels)
        cycle.inc(m.SERVING_TOKENS, amount(row.get("output_token_count")), direction="output", **labels)
        cycle.inc(m.SERVING_USAGE_REQUESTS, status_class=status_class(row.get("status_code")), **labels)
