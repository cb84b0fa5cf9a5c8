"""The collectors, registered by name; importing this package registers them all."""

# Importing a collector module registers it.
from . import billing, clusters, custom, jobs, pipelines, queries, tables, utilization, warehouses  # noqa: F401
from .base import COLLECTORS, Collector

__all__ = ["COLLECTORS", "Collector"]
