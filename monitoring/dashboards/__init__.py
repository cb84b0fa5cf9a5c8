"""Databricks dashboards as code, one module per dashboard; `python -m monitoring` renders them to
grafana/dashboards/<uid>.json."""

from __future__ import annotations

from . import compute, cost, exporter, jobs, overview, pipelines, sql

# In the order of config.DASHBOARDS; each module's build() returns a grafana-foundation-sdk dashboard builder.
MODULES = [overview, compute, jobs, sql, pipelines, cost, exporter]
