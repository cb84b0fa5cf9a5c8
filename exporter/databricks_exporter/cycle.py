"""What a collector cycle produces and what the store hands to sinks: the sample types (Histogram, Family, label
values) and Cycle, the changes of one cycle applied all at once or not at all."""

from __future__ import annotations

import bisect
import contextlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable

from . import metrics as m

LabelValues = tuple[str, ...]
# The entity label value of the cardinality guard's aggregate (cardinality.py): a collector that forgets the series
# of entities gone keeps this one.
OTHER = "_other"


@dataclass
class Histogram:
    """Per-bucket (not cumulative) counts, one more than the bucket bounds for +Inf."""
    counts: list[int]
    sum: float = 0.0

    @classmethod
    def empty(cls, metric: m.Metric) -> "Histogram":
        return cls([0] * (len(metric.buckets) + 1))

    def observe(self, metric: m.Metric, value: float) -> None:
        self.counts[bisect.bisect_left(metric.buckets, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self, metric: m.Metric) -> list[tuple[float, int]]:
        """(upper bound, cumulative count) pairs, +Inf last, as exposition formats want them."""
        total, out = 0, []
        for bound, count in zip(list(metric.buckets) + [math.inf], self.counts):
            total += count
            out.append((bound, total))
        return out


@dataclass
class Family:
    """One metric with all its current samples: what renderers and sinks read."""
    metric: m.Metric
    samples: list[tuple[LabelValues, Any]] = field(default_factory=list)  # value: float, or Histogram


def label_values(metric: m.Metric, labels: dict[str, Any]) -> LabelValues:
    if len(labels) != len(metric.labels) or any(name not in labels for name in metric.labels):
        raise ValueError(f"{metric.name} takes labels {metric.labels}, got {sorted(labels)}")
    return tuple("" if labels[name] is None else str(labels[name]) for name in metric.labels)


class Cycle:
    """What one collector cycle changes, applied to the store at once, or not at all if the cycle fails.

    Gauges emitted here replace all of the collector's gauges from the previous cycle, so entities that
    disappeared disappear from /metrics. Counter increments and histogram observations add to what is there."""

    def __init__(self, workspace_id: str):
        self.workspace_id = workspace_id
        self.gauges: dict[m.Metric, dict[LabelValues, float]] = {}
        self.increments: list[tuple[m.Metric, LabelValues, float]] = []
        self.observations: list[tuple[m.Metric, LabelValues, float]] = []
        self.forgets: list[tuple[m.Metric, Callable[[dict[str, str]], bool]]] = []
        self.additive: set[m.Metric] = set()   # gauges that count things, so they can be summed when folded
        self.malformed = 0                     # items skipped because their payload made no sense
        self.first_malformed = ""
        self.failures: list[str] = []          # parts of the cycle that failed; see fail()
        self.forbidden_items: dict[str, str] = {}   # item -> the permission it needs; see forbidden()

    @contextlib.contextmanager
    def item(self, what: str):
        """Process one item (a run, a cluster, an event): if its payload is malformed, undo what it added to the
        counters, skip it and note it, so one bad record neither fails nor poisons every later cycle. API and
        network errors are not caught: they fail the cycle, and the cursor does not move past unread data."""
        marks = (len(self.increments), len(self.observations))
        try:
            yield
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, ArithmeticError) as exc:
            del self.increments[marks[0]:]
            del self.observations[marks[1]:]
            self.malformed += 1
            if not self.first_malformed:
                self.first_malformed = f"{what}: {type(exc).__name__}: {exc}"[:300]

    def forbidden(self, item: str, permission: str) -> None:
        """One item the credential may not read (403) was skipped; the rest of the cycle applies."""
        self.forbidden_items[item] = permission

    def _labels(self, metric: m.Metric, labels: dict[str, Any]) -> LabelValues:
        if "workspace_id" in metric.labels:
            labels.setdefault("workspace_id", self.workspace_id)
        return label_values(metric, labels)

    def fail(self, reason: str) -> None:
        """Part of the cycle failed while the rest stands (one custom query of several): the cycle is still
        applied, so the failed part's series disappear rather than linger, and the collector is reported down."""
        self.failures.append(reason)

    def gauge(self, metric: m.Metric, value: float, **labels: Any) -> None:
        assert metric.type == m.GAUGE, metric.name
        self.current(metric, value, **labels)

    def current(self, metric: m.Metric, value: float, **labels: Any) -> None:
        """A value read whole each cycle and replaced like a gauge's, whatever the metric's type: a gauge, or a
        counter whose source keeps the cumulative total (a custom query's SELECT COUNT(*) of an append-only
        table), exported as the source says."""
        if value is None:
            return
        self.gauges.setdefault(metric, {})[self._labels(metric, labels)] = float(value)

    def count_gauge(self, metric: m.Metric, **labels: Any) -> None:
        """Add one to a gauge that counts entities (e.g. clusters by state)."""
        samples = self.gauges.setdefault(metric, {})
        key = self._labels(metric, labels)
        samples[key] = samples.get(key, 0.0) + 1
        self.additive.add(metric)

    def inc(self, metric: m.Metric, amount: float = 1.0, **labels: Any) -> None:
        assert metric.type == m.COUNTER, metric.name
        if not 0 <= amount < math.inf:      # NaN fails too: one NaN would stick to the counter for good
            raise ValueError(f"{metric.name}: counters only go up by finite amounts, got {amount}")
        if amount:
            self.increments.append((metric, self._labels(metric, labels), float(amount)))

    def observe(self, metric: m.Metric, value: float, **labels: Any) -> None:
        assert metric.type == m.HISTOGRAM, metric.name
        if not math.isfinite(value):
            raise ValueError(f"{metric.name}: cannot observe {value}")
        self.observations.append((metric, self._labels(metric, labels), float(value)))

    def keep_only(self, metric: m.Metric, keep: Callable[[dict[str, str]], bool]) -> None:
        """Drop this workspace's counter or histogram series for which keep(labels) is false (e.g. per-cluster
        counters of clusters that terminated)."""
        self.forgets.append((metric, keep))
