"""databricks-exporter: Databricks workspaces as Prometheus metrics."""

__version__ = "0.1.0"
