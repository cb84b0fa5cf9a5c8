"""The collectors, registered by name; importing this package registers them all."""

# Importing a collector module registers it.
from . import (  # noqa: F401
    audit, billing, clusters, custom, job_costs, jobs, maintenance, pipelines, queries, reconciliation, serving,
    serving_usage, tables, utilization, warehouse_usage, warehouses,
)
from .base import COLLECTORS, Collector

__all__ = ["COLLECTORS", "Collector"]
