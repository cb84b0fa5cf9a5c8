"""The collectors, registered by name; importing this package registers them all."""

# Importing a collector module registers it.
from . import (  # noqa: F401
    billing, clusters, custom, job_costs, jobs, pipelines, queries, reconciliation, tables, utilization,
    warehouse_usage, warehouses,
)
from .base import COLLECTORS, Collector

__all__ = ["COLLECTORS", "Collector"]
