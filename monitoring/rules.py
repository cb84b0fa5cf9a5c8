"""Rule types and their rendering to Prometheus rule files: readable YAML, the same for the same definitions."""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field

import yaml

from . import config

THRESHOLD_SERIES = "databricks:alert_threshold"
SEVERITIES = ("critical", "warning", "info")


def tidy(expr: str) -> str:
    """An expression written indented in a triple-quoted string, as Prometheus shows it (block text ends in a
    newline, as YAML's `|` keeps it)."""
    text = textwrap.dedent(expr).strip()
    return text + "\n" if "\n" in text else text


@dataclass(frozen=True)
class Record:
    name: str
    expr: str
    labels: dict[str, str] = field(default_factory=dict)
    note: str = ""

    def as_dict(self) -> dict:
        rule = {"record": self.name, "expr": tidy(self.expr)}
        if self.labels:
            rule["labels"] = dict(self.labels)
        return rule


@dataclass(frozen=True)
class Alert:
    """One alert rule; `for`, runbook_url and dashboard_url come from the configuration."""
    name: str
    severity: str
    expr: str
    summary: str
    description: str
    dashboard: str
    note: str = ""

    def as_dict(self) -> dict:
        if self.severity not in SEVERITIES:
            raise ValueError(f"{self.name}: severity {self.severity!r} is not one of {SEVERITIES}")
        rule = {"alert": self.name, "expr": tidy(self.expr)}
        if self.name in config.FOR:
            rule["for"] = config.FOR[self.name]
        rule["labels"] = {"severity": self.severity}
        rule["annotations"] = {"summary": self.summary, "description": self.description,
                               "runbook_url": config.runbook_url(self.name),
                               "dashboard_url": config.dashboard_url(self.dashboard)}
        return rule


def steps(name: str, *, warning: str, critical: str, **common: str) -> list[Alert]:
    """An alert's warning and critical steps: one name, one text, two expressions (Alertmanager inhibits the
    warning while the critical fires)."""
    return [Alert(name, "warning", warning, **common), Alert(name, "critical", critical, **common)]


def lookup(query: str, *labels: str, show: str) -> str:
    """An annotation template that quotes another series, e.g. the limit a budget is over: `query` is a printf
    format filled with the alert's `labels`, `show` the template function that formats the value."""
    arguments = " ".join(f"$labels.{label}" for label in labels)
    return (f'{{{{ with printf "{query}" {arguments} | query }}}}'
            f"{{{{ . | first | value | {show} }}}}{{{{ end }}}}")


@dataclass(frozen=True)
class Group:
    name: str
    rules: list[Record | Alert]
    note: str = ""


def threshold_names(expr: str) -> set[str]:
    return set(re.findall(rf'{THRESHOLD_SERIES}\{{threshold="([a-z0-9_]+)"', expr))


def check(groups: list[Group]) -> None:
    """Refuse what Prometheus would load without a word: a threshold that no configuration defines matches no
    series and silences its alert."""
    for group in groups:
        for rule in group.rules:
            unknown = threshold_names(rule.expr) - set(config.THRESHOLDS) - {"collector_stale_seconds"}
            if unknown:
                raise KeyError(f"{rule.name}: thresholds {sorted(unknown)} are not in monitoring.config.THRESHOLDS")


# --- YAML ----------------------------------------------------------------------------------------------------

WIDTH = 116


def scalar(key: str, value: str, indent: int) -> list[str]:
    """`key: value` as YAML: a `|` block for multi-line text, `>-` folded for a long description, else plain or
    single-quoted on one line."""
    pad = " " * indent
    if "\n" in value:
        return [f"{pad}{key}: |"] + [f"{pad}  {line}" if line else "" for line in value.rstrip("\n").split("\n")]
    line = f"{pad}{key}: {value}"
    if key == "description" and len(line) > WIDTH and "  " not in value and value == value.strip():
        protected = re.sub(r"\{\{.*?\}\}", lambda m: m.group(0).replace(" ", "\0"), value)
        wrapped = textwrap.wrap(protected, width=WIDTH - indent - 2, break_long_words=False,
                                break_on_hyphens=False)
        return [f"{pad}{key}: >-"] + [f"{pad}  {piece.replace(chr(0), ' ')}" for piece in wrapped]
    try:
        if yaml.safe_load(line.strip()) == {key: value}:
            return [line]
    except yaml.YAMLError:
        pass
    return [f"{pad}{key}: '{value.replace(chr(39), chr(39) * 2)}'"]


def comment(text: str, indent: int) -> list[str]:
    return [" " * indent + "# " + line for line in textwrap.wrap(text, width=WIDTH - indent - 2)]


def mapping(values: dict, indent: int) -> list[str]:
    lines = []
    for key, value in values.items():
        if isinstance(value, dict):
            lines += [" " * indent + f"{key}:"] + mapping(value, indent + 2)
        else:
            lines += scalar(key, str(value), indent)
    return lines


def render(groups: list[Group], header: str) -> str:
    """A rule file: the header as comments, then every group, with the notes as comments above their rules."""
    check(groups)
    lines = [f"# {line}".rstrip() for line in header.strip("\n").split("\n")] + ["", "groups:"]
    for number, group in enumerate(groups):
        if number:
            lines.append("")
        lines += comment(group.note, 2) if group.note else []
        lines += [f"  - name: {group.name}", "    rules:"]
        for number, rule in enumerate(group.rules):
            if number and isinstance(rule, Alert):
                lines.append("")
            lines += comment(rule.note, 6) if rule.note else []
            first, *rest = mapping(rule.as_dict(), 8)
            lines += ["      - " + first.lstrip()] + rest
    text = "\n".join(lines) + "\n"
    expected = {"groups": [{"name": group.name, "rules": [rule.as_dict() for rule in group.rules]}
                           for group in groups]}
    if yaml.safe_load(text) != expected:
        raise AssertionError("the rendered YAML does not read back as the definitions; fix scalar()")
    return text
