"""system.storage.predictive_optimization_operations_history of the simulated workspace: compaction, vacuum, analyze
and clustering runs that predictive optimization starts on managed tables of three catalogs, each with its DBUs, a
few failing with INTERNAL_ERROR; rows visible one to ten hours after the operation ended (the table is documented as
arriving within about 12 hours)."""

from __future__ import annotations

from decimal import Decimal

from .common import HOUR_MS
from .streams import MINUTE_MS, MinuteStream, nested, rng_for, uuid_of

HISTORY_MS = 24 * HOUR_MS
METASTORE = "metastore_us_west"
TABLES = (
    ("main", "bronze", "events"), ("main", "silver", "sessions"), ("main", "sales", "orders"),
    ("main", "sales", "customers"), ("analytics", "marts", "revenue_daily"), ("analytics", "marts", "churn_features"),
    ("analytics", "finance", "ledger"), ("analytics", "finance", "invoices"), ("ml", "features", "user_features"),
    ("ml", "features", "item_features"), ("ml", "training", "clicks"), ("ml", "training", "impressions"),
)
# Per table and minute, the chance that predictive optimization starts each kind of operation, and its DBUs.
OPERATIONS = (("COMPACTION", 1 / 180, 0.8), ("VACUUM", 1 / 1440, 0.3), ("ANALYZE", 1 / 360, 0.1),
              ("CLUSTERING", 1 / 720, 1.5))
FAILURE_RATE = 0.04


class PredictiveOptimization(MinuteStream):
    domain = "predictive_optimization"

    def __init__(self, ws):
        super().__init__(ws, max(ws.world_start_ms, ws.now_ms() - HISTORY_MS))

    def minute(self, start_ms: int) -> None:
        for catalog, schema, table in TABLES:
            rng = rng_for(self.seed, "predictive-optimization", catalog, schema, table, start_ms)
            for kind, chance, dbus in OPERATIONS:
                if rng.random() >= chance:
                    continue
                began = start_ms + rng.randrange(MINUTE_MS)
                ended = began + rng.randrange(MINUTE_MS, 20 * MINUTE_MS)
                visible = ended + rng.randrange(HOUR_MS, 10 * HOUR_MS)
                status = "FAILED: INTERNAL_ERROR" if rng.random() < FAILURE_RATE else "SUCCESSFUL"
                usage = Decimal(str(round(dbus * (0.5 + rng.random()), 6)))
                self.record(ended, visible, "operations", catalog, kind, status)
                self.record(ended, visible, "dbus", catalog, kind, amount=float(usage))
                metrics = {"number_of_compacted_files": str(rng.randrange(10, 4000))} if kind == "COMPACTION" else {}
                self.emit("storage_predictive_optimization_operations_history", {
                    "account_id": self.ws.account_id, "workspace_id": str(self.ws.workspace_id),
                    "start_time": began, "end_time": ended, "metastore_name": METASTORE, "catalog_name": catalog,
                    "schema_name": schema, "table_id": uuid_of(catalog, schema, table),
                    "table_name": table, "operation_type": kind,
                    "operation_id": uuid_of(self.seed, "po", catalog, schema, table, began, kind),
                    "operation_status": status, "operation_metrics_k": list(metrics),
                    "operation_metrics_v": list(metrics.values()), "usage_unit": "ESTIMATED_DBU",
                    "usage_quantity": str(usage), "_visible_at": visible})

    def truth(self, since_ms: float, now_ms: int) -> dict:
        counts = self.counts(since_ms, now_ms)
        return {"predictive_optimization": {
            "operations": nested({k[1:]: v for k, v in counts.items() if k[0] == "operations"}),
            "dbus": nested({k[1:]: v for k, v in counts.items() if k[0] == "dbus"})}}
