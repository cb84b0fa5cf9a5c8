"""The collectors, registered by name; importing this package registers them all."""

from . import billing, clusters, jobs, pipelines, queries, utilization, warehouses  # noqa: F401  (registration happens on import)
from .base import COLLECTORS, Collector

__all__ = ["COLLECTORS", "Collector"]
