"""Databricks dashboards as code, one module per dashboard; grafana/generate.py renders them to dashboards/*.json."""

from __future__ import annotations

from . import compute, cost, exporter, jobs, overview, pipelines, sql

# In the order of common.DASHBOARDS; each module's build() returns a grafana-foundation-sdk dashboard builder.
MODULES = [overview, compute, jobs, sql, pipelines, cost, exporter]
