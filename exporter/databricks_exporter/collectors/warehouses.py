"""SQL warehouses: state, size, scaling bounds and health of every warehouse."""

from __future__ import annotations

from .. import metrics as m
from ..cycle import Cycle
from .base import Collector, NameFilter, register


@register
class WarehousesCollector(Collector):
    name = "warehouses"
    default_interval = 30.0
    permission = "CAN USE or higher on the SQL warehouses to watch (workspace admins see all)"
    options = {"include": ("regex_list", []), "exclude": ("regex_list", [])}

    def check(self) -> str:
        return f"listed {sum(1 for _ in self.rest.warehouses())} SQL warehouses"

    def collect(self, cycle: Cycle, state: dict) -> None:
        wanted = NameFilter(self.settings.options["include"], self.settings.options["exclude"])
        for warehouse in self.rest.warehouses():
            with cycle.item("warehouse"):
                self._emit(cycle, warehouse, wanted)

    def _emit(self, cycle: Cycle, w: dict, wanted: NameFilter) -> None:
        wid = w["id"]
        if not wanted(w.get("name")):
            return
        cycle.gauge(m.WAREHOUSE_INFO, 1, warehouse_id=wid, warehouse_name=w.get("name") or "",
                    cluster_size=w.get("cluster_size") or "", warehouse_type=w.get("warehouse_type") or "",
                    serverless=str(bool(w.get("enable_serverless_compute"))).lower())
        cycle.gauge(m.WAREHOUSE_STATE, 1, warehouse_id=wid, state=w.get("state") or "UNKNOWN")
        cycle.gauge(m.WAREHOUSE_CLUSTERS, w.get("num_clusters") or 0, warehouse_id=wid)
        cycle.gauge(m.WAREHOUSE_MIN_CLUSTERS, w.get("min_num_clusters"), warehouse_id=wid)
        cycle.gauge(m.WAREHOUSE_MAX_CLUSTERS, w.get("max_num_clusters"), warehouse_id=wid)
        health = (w.get("health") or {}).get("status")
        if health:
            cycle.gauge(m.WAREHOUSE_HEALTH, 1, warehouse_id=wid, status=health)
