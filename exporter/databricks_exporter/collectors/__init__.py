"""The collectors, registered by name; importing this package registers them all."""

# Importing a collector module registers it.
from . import (  # noqa: F401
    audit, billing, clusters, custom, jobs, maintenance, pipelines, queries, serving, serving_usage, tables,
    utilization, warehouses,
)
from .base import COLLECTORS, Collector

__all__ = ["COLLECTORS", "Collector"]
