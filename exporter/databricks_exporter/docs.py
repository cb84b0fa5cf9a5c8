"""Generates docs/metrics.md from the metric definitions, so the reference can never drift from the code.

Run `python -m databricks_exporter.docs > docs/metrics.md`; a test fails when the committed file differs."""

from __future__ import annotations

import sys

from . import collectors  # noqa: F401  (imports every collector's module, so all metrics are defined)
from . import metrics as m


def render() -> str:
    lines = [
        "# Metrics",
        "",
        "Generated from `exporter/databricks_exporter/metrics.py` by `python -m databricks_exporter.docs`;",
        "a test fails when this file and the code disagree. Every workspace-scoped series carries `workspace_id`.",
        "Label values are bounded: never a run id, a user or free text.",
        "",
        "Every counter and histogram, the exporter's own included, is kept in the state file and served only once",
        "the file holds it, so none goes down across a restart or an upgrade. With `--no-state` they are",
        "process-scoped: each start begins them at 0.",
        "",
    ]
    by_collector: dict[str, list[m.Metric]] = {}
    for metric in m.REGISTRY.values():
        by_collector.setdefault(metric.collector, []).append(metric)
    for collector in sorted(by_collector, key=lambda c: (c != "exporter", c)):
        lines += [f"## {collector}", "", "| metric | type | labels | unit | source | description |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for metric in sorted(by_collector[collector], key=lambda x: x.name):
            kind = metric.type
            if metric.buckets:
                kind += " (buckets " + ", ".join(f"{b:g}" for b in metric.buckets) + ")"
            labels = ", ".join(f"`{label}`" for label in metric.labels)
            lines.append(f"| `{metric.name}` | {kind} | {labels} | {metric.unit or '-'} | "
                         f"{metric.source or '-'} | {metric.help} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(render())
