"""The metric store: current gauges, ever-growing counters and histograms, and the cursors that make their growth
exactly-once, persisted together so a restart neither loses nor double counts."""

from __future__ import annotations

import bisect
import copy
import json
import logging
import math
import os
import tempfile
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from . import metrics as m

log = logging.getLogger(__name__)

STATE_VERSION = 1
LabelValues = tuple[str, ...]


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

    def _labels(self, metric: m.Metric, labels: dict[str, Any]) -> LabelValues:
        if "workspace_id" in metric.labels:
            labels.setdefault("workspace_id", self.workspace_id)
        return label_values(metric, labels)

    def gauge(self, metric: m.Metric, value: float, **labels: Any) -> None:
        assert metric.type == m.GAUGE, metric.name
        if value is None:
            return
        self.gauges.setdefault(metric, {})[self._labels(metric, labels)] = float(value)

    def count_gauge(self, metric: m.Metric, **labels: Any) -> None:
        """Add one to a gauge that counts entities (e.g. clusters by state)."""
        samples = self.gauges.setdefault(metric, {})
        key = self._labels(metric, labels)
        samples[key] = samples.get(key, 0.0) + 1

    def inc(self, metric: m.Metric, amount: float = 1.0, **labels: Any) -> None:
        assert metric.type == m.COUNTER, metric.name
        if amount < 0:
            raise ValueError(f"{metric.name}: counters only go up, got {amount}")
        if amount:
            self.increments.append((metric, self._labels(metric, labels), float(amount)))

    def observe(self, metric: m.Metric, value: float, **labels: Any) -> None:
        assert metric.type == m.HISTOGRAM, metric.name
        self.observations.append((metric, self._labels(metric, labels), float(value)))

    def keep_only(self, metric: m.Metric, keep: Callable[[dict[str, str]], bool]) -> None:
        """Drop this workspace's counter or histogram series for which keep(labels) is false (e.g. per-cluster
        counters of clusters that terminated)."""
        self.forgets.append((metric, keep))


class MetricStore:
    def __init__(self, state_file: str | None = None):
        self.state_file = state_file
        self._lock = threading.RLock()
        self._gauges: dict[str, dict[m.Metric, dict[LabelValues, float]]] = {}   # owner -> gauges
        self._counters: dict[m.Metric, dict[LabelValues, float]] = {}
        self._histograms: dict[m.Metric, dict[LabelValues, Histogram]] = {}
        self._states: dict[str, dict] = {}                                       # owner -> collector state
        self._version = 0
        self._listeners: list[Callable[[], None]] = []

    # --- writing ---------------------------------------------------------------------------------
    def state(self, owner: str) -> dict:
        """A private copy of the collector's persisted state (cursors, seen ids, counting_since)."""
        with self._lock:
            return copy.deepcopy(self._states.get(owner, {}))

    def commit(self, owner: str, cycle: Cycle, state: dict | None) -> None:
        """Apply a successful cycle and its new cursor state together, persist, then publish.

        Persisting before publishing means Prometheus never sees a counter value that a crash could take back."""
        with self._lock:
            self._gauges[owner] = cycle.gauges
            for metric, values, amount in cycle.increments:
                series = self._counters.setdefault(metric, {})
                series[values] = series.get(values, 0.0) + amount
            for metric, values, value in cycle.observations:
                self._histograms.setdefault(metric, {}).setdefault(values, Histogram.empty(metric)).observe(
                    metric, value)
            for metric, keep in cycle.forgets:
                table = (self._counters if metric.type == m.COUNTER else self._histograms).get(metric, {})
                ws_index = metric.labels.index("workspace_id")
                for values in [v for v in table if v[ws_index] == cycle.workspace_id]:
                    if not keep(dict(zip(metric.labels, values))):
                        del table[values]
            if state is not None:
                self._states[owner] = state
            self.save()
            self._changed()

    def set_gauges(self, owner: str, gauges: dict[m.Metric, dict[LabelValues, float]]) -> None:
        """Replace an owner's gauges outside a collector cycle (the exporter's own status metrics)."""
        with self._lock:
            self._gauges[owner] = gauges
            self._changed()

    def inc(self, metric: m.Metric, labels: dict[str, Any], amount: float = 1.0) -> None:
        """An immediate counter increment (the exporter's own bookkeeping, e.g. API requests)."""
        values = label_values(metric, labels)
        with self._lock:
            series = self._counters.setdefault(metric, {})
            series[values] = series.get(values, 0.0) + amount
            self._changed()

    def on_change(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def _changed(self) -> None:
        self._version += 1
        for listener in self._listeners:
            listener()

    # --- reading ---------------------------------------------------------------------------------
    @property
    def version(self) -> int:
        return self._version

    def families(self) -> list[Family]:
        """A consistent snapshot of every family with samples, in name order (sinks and renderers read this)."""
        with self._lock:
            by_metric: dict[m.Metric, Family] = {}
            for owner in sorted(self._gauges):
                for metric, samples in self._gauges[owner].items():
                    by_metric.setdefault(metric, Family(metric)).samples.extend(samples.items())
            for metric, samples in self._counters.items():
                by_metric.setdefault(metric, Family(metric)).samples.extend(samples.items())
            for metric, samples in self._histograms.items():
                by_metric.setdefault(metric, Family(metric)).samples.extend(
                    (values, Histogram(list(h.counts), h.sum)) for values, h in samples.items())
        families = sorted((f for f in by_metric.values() if f.samples), key=lambda f: f.metric.name)
        for family in families:
            family.samples.sort(key=lambda sample: sample[0])
        return families

    def value(self, name: str, **labels: Any) -> Any:
        """The current value of one series (tests and `once` use this); None when absent."""
        metric = m.REGISTRY[name]
        values = label_values(metric, labels)
        for family in self.families():
            if family.metric is metric:
                return dict(family.samples).get(values)
        return None

    # --- persistence -----------------------------------------------------------------------------
    def save(self) -> None:
        if not self.state_file:
            return
        with self._lock:
            document = {
                "version": STATE_VERSION,
                "collectors": self._states,
                "counters": {metric.name: [[list(v), value] for v, value in series.items()]
                             for metric, series in self._counters.items()},
                "histograms": {metric.name: [[list(v), h.counts, h.sum] for v, h in series.items()]
                               for metric, series in self._histograms.items()},
            }
            write_atomically(self.state_file, json.dumps(document, separators=(",", ":")))

    def load(self) -> str:
        """Load the state file if there is one. Returns what happened, for the start-up log line.

        A damaged file is not fatal: counting starts afresh from the lookback, and the file is kept aside."""
        if not self.state_file or not os.path.exists(self.state_file):
            return "no state file; counting starts from the lookback"
        try:
            with open(self.state_file, encoding="utf-8") as handle:
                document = json.load(handle)
            if not isinstance(document, dict) or document.get("version") != STATE_VERSION:
                raise ValueError(f"unsupported state version {document.get('version') if isinstance(document, dict) else None!r}")
            counters, histograms = {}, {}
            for name, rows in document.get("counters", {}).items():
                metric = m.REGISTRY.get(name)
                if metric is None or metric.type != m.COUNTER:
                    continue
                counters[metric] = {tuple(v): float(value) for v, value in rows if len(v) == len(metric.labels)}
            for name, rows in document.get("histograms", {}).items():
                metric = m.REGISTRY.get(name)
                if metric is None or metric.type != m.HISTOGRAM:
                    continue
                histograms[metric] = {tuple(v): Histogram([int(c) for c in counts], float(total))
                                      for v, counts, total in rows
                                      if len(v) == len(metric.labels) and len(counts) == len(metric.buckets) + 1}
            states = document.get("collectors", {})
            if not isinstance(states, dict):
                raise ValueError("collectors is not a mapping")
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            aside = f"{self.state_file}.corrupt"
            try:
                os.replace(self.state_file, aside)
            except OSError:
                aside = "(could not be moved aside)"
            log.warning("state file %s is damaged (%s); moved to %s; counting starts afresh from the lookback",
                        self.state_file, exc, aside)
            return "state file damaged; counting starts from the lookback"
        with self._lock:
            self._counters, self._histograms, self._states = counters, histograms, states
            self._changed()
        return f"state loaded from {self.state_file}"


def write_atomically(path: str, text: str) -> None:
    """Temporary file, fsync, rename: a crash at any moment leaves either the old file or the new one."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".state-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def iter_samples(families: Iterable[Family]):
    for family in families:
        for values, value in family.samples:
            yield family.metric, dict(zip(family.metric.labels, values)), value
