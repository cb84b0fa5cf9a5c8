"""The monitoring unit of databricks-exporter, in the manner of the Prometheus mixins: one configuration from which
the Prometheus rules, the Grafana dashboards and the runbook links are generated into the folders users copy.

    monitoring/config.py        job selector, thresholds, `for` durations, runbook and dashboard links, dashboard uids
    monitoring/alerts.py        alerts            -> prometheus/rules/alerts.yml
    monitoring/recording.py     recording rules   -> prometheus/rules/recording.yml (thresholds recorded first)
    monitoring/dashboards/      one module per dashboard, shared panels in common.py -> grafana/dashboards/<uid>.json

Regenerate everything with `python -m monitoring` and commit the result; tests/test_rules.py and
tests/test_dashboards.py fail when a committed file differs. docs/monitoring.md says where to add an alert, a
recording rule and a dashboard.
"""

from __future__ import annotations

import json
from pathlib import Path

from . import alerts, recording
from .dashboards import MODULES
from .dashboards.common import render as render_dashboard
from .rules import render as render_rules

ROOT = Path(__file__).resolve().parent.parent
RULES_DIR = Path("prometheus") / "rules"
DASHBOARDS_DIR = Path("grafana") / "dashboards"


def dashboards() -> dict[str, dict]:
    """uid -> the dashboard's JSON model."""
    return {module.UID: render_dashboard(module.build()) for module in MODULES}


def serialize(model: dict) -> str:
    return json.dumps(model, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def generated() -> dict[Path, str]:
    """Every generated file, by its path relative to the repository, with its content."""
    files = {RULES_DIR / "recording.yml": render_rules(recording.GROUPS, recording.HEADER),
             RULES_DIR / "alerts.yml": render_rules(alerts.GROUPS, alerts.HEADER)}
    for uid, model in dashboards().items():
        files[DASHBOARDS_DIR / f"{uid}.json"] = serialize(model)
    return files


def drifted(root: Path = ROOT) -> list[Path]:
    """Generated files that differ from what is committed under root, and committed dashboards nothing generates."""
    files = generated()
    differ = [relative for relative, text in files.items()
              if not (root / relative).is_file() or (root / relative).read_text(encoding="utf-8") != text]
    orphans = [path.relative_to(root) for path in sorted((root / DASHBOARDS_DIR).glob("*.json"))
               if path.relative_to(root) not in files]
    return differ + orphans


def write(out: Path) -> list[Path]:
    written = []
    for relative, text in generated().items():
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
