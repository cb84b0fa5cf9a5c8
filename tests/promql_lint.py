"""One PromQL lint for the rules and the dashboards: every selector names a metric that exists, with labels it
has, and counter functions read only counters."""

from __future__ import annotations

import re
from collections.abc import Iterable

from databricks_exporter import metrics as m

PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "topk", "bottomk", "quantile", "stddev", "stdvar", "group",
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "offset", "bool",
    "inf", "nan",
}
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")
# Labels Prometheus attaches to every scraped series.
TARGET_LABELS = {"instance", "job"}

# Metrics the rules or the dashboards use before a collector defines them: name -> (the issue that adds it, type,
# labels). When one lands in metrics.REGISTRY, delete it here: tests/test_dashboards.py says so, and from then on
# the rules and panels are checked against the real definition (and its panels must show data). Empty now.
PENDING_METRICS: dict[str, tuple[str, str, tuple[str, ...]]] = {}
# Series Prometheus makes itself, with their labels; None for any (ALERTS carries the labels of each alert).
BUILTIN_METRICS: dict[str, tuple[str, ...] | None] = {
    "up": ("job", "instance"),
    "scrape_duration_seconds": ("job", "instance"),
    "scrape_samples_scraped": ("job", "instance"),
    "ALERTS": None,
}


def selectors(expr: str) -> list[tuple[str, set[str]]]:
    """(metric name, label names matched) of every selector in a PromQL expression."""
    expr = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'', '""', expr)      # strings
    expr = re.sub(r"\[[^\]]*\]", "", expr)                                    # ranges and subqueries
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1", expr)
    found = []
    for match in re.finditer(r"(?<![\w:.])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?(\s*\()?", expr):
        name, matchers, call = match.groups()
        if call or name in PROMQL_WORDS:
            continue
        found.append((name, set(re.findall(r"([a-zA-Z_]\w*)\s*[!=]~?", matchers or ""))))
    return found


def metric_names(expr: str) -> set[str]:
    return {name for name, _ in selectors(expr)}


def base_name(name: str) -> str:
    """The metric a histogram series belongs to (x for x_bucket), or the name itself."""
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in set(m.REGISTRY) | set(PENDING_METRICS):
            return name[: -len(suffix)]
    return name


def definition(name: str) -> tuple[str, tuple[str, ...]] | None:
    """(type, labels) of an exporter series, from metrics.REGISTRY or PENDING_METRICS; None if none defines it."""
    base = base_name(name)
    metric = m.REGISTRY.get(base)
    if metric:
        found = (metric.type, metric.labels)
    elif base in PENDING_METRICS:
        found = PENDING_METRICS[base][1:]
    else:
        return None
    if base != name and found[0] != m.HISTOGRAM:
        return None
    return found[0], found[1] + (("le",) if name.endswith("_bucket") else ())


def selector_problems(expressions: Iterable[str], recorded: set[str]) -> list[str]:
    """What is wrong with the metrics the expressions select: recorded names no rule records, names nothing
    defines, labels a metric does not have."""
    problems = []
    for expr in expressions:
        for name, labels in selectors(expr):
            if ":" in name:
                if name not in recorded:
                    problems.append(f"{name}: no recording rule defines it")
                continue
            if name in BUILTIN_METRICS:
                known = BUILTIN_METRICS[name]
            elif (found := definition(name)) is not None:
                known = found[1]
            else:
                problems.append(f"{name}: not in metrics.REGISTRY, BUILTIN_METRICS nor PENDING_METRICS")
                continue
            if known is not None and labels - set(known) - TARGET_LABELS:
                problems.append(f"{name}: matches labels it does not have: {sorted(labels - set(known))}")
    return problems


def counter_function_problems(expressions: Iterable[str]) -> list[str]:
    """rate() and increase() on a gauge are a classic wrong alert; only counters and histogram series qualify."""
    problems = []
    for expr in expressions:
        for name in re.findall(r"\b(?:rate|irate|increase|resets)\s*\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)", expr):
            known = definition(name)
            if not (known and (known[0] == m.COUNTER or name.endswith(HISTOGRAM_SUFFIXES))):
                problems.append(f"{name}: a counter function on a series that is not a counter")
    return problems


def pending_problems(expressions: Iterable[str]) -> list[str]:
    """PENDING_METRICS entries that a collector defines now, or that nothing uses."""
    landed = sorted(set(PENDING_METRICS) & set(m.REGISTRY))
    used = {base_name(name) for expr in expressions for name in metric_names(expr)}
    return ([f"{name}: defined in metrics.py now, remove it from PENDING_METRICS" for name in landed]
            + [f"{name}: pending but nothing uses it" for name in sorted(set(PENDING_METRICS) - used)])
