"""The metric store: current gauges, ever-growing counters and histograms, and the cursors that make their growth
exactly-once, persisted together so a restart neither loses nor double counts."""

from __future__ import annotations

import bisect
import contextlib
import copy
import json
import logging
import math
import os
import tempfile
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

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
        self.additive: set[m.Metric] = set()   # gauges that count things, so they can be summed when folded
        self.malformed = 0                     # items skipped because their payload made no sense
        self.first_malformed = ""
        self.failures: list[str] = []          # parts of the cycle that failed; see fail()

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

    def start_at_zero(self, metric: m.Metric, **labels: Any) -> None:
        """Make the counter series exist (at 0 until something is counted): Prometheus sees the first event as an
        increase only when the series was there before it."""
        assert metric.type == m.COUNTER, metric.name
        self.increments.append((metric, self._labels(metric, labels), 0.0))

    def observe(self, metric: m.Metric, value: float, **labels: Any) -> None:
        assert metric.type == m.HISTOGRAM, metric.name
        if not math.isfinite(value):
            raise ValueError(f"{metric.name}: cannot observe {value}")
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
        self._changed_at: dict[m.Metric, int] = {}    # metric -> store version of its last change (for renderers)

    # --- writing ---------------------------------------------------------------------------------
    def state(self, owner: str) -> dict:
        """A private copy of the collector's persisted state (cursors, seen ids, counting_since)."""
        with self._lock:
            return copy.deepcopy(self._states.get(owner, {}))

    def commit(self, owner: str, cycle: Cycle, state: dict | None, guard: "CardinalityGuard | None" = None) -> int:
        """Apply a successful cycle and its new cursor state together, persist, then publish. Returns how many
        series the cardinality guard folded away.

        Persisting before publishing means Prometheus never sees a counter value that a crash could take back."""
        with self._lock:
            folded = guard.apply(cycle, self._existing_series(cycle), state) if guard else 0
            previous = self._gauges.get(owner, {})
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
            self._changed(set(previous) | set(cycle.gauges) | {metric for metric, _, _ in cycle.increments}
                          | {metric for metric, _, _ in cycle.observations}
                          | {metric for metric, _ in cycle.forgets})
        return folded

    def _existing_series(self, cycle: Cycle) -> set[tuple[m.Metric, LabelValues]]:
        """The counter and histogram series of the cycle's workspace for the metrics the cycle touches."""
        metrics = {metric for metric, _, _ in cycle.increments + cycle.observations}
        out = set()
        for metric in metrics:
            table = (self._counters if metric.type == m.COUNTER else self._histograms).get(metric, {})
            index = metric.labels.index("workspace_id")
            out.update((metric, values) for values in table if values[index] == cycle.workspace_id)
        return out

    def series_count(self, workspace_id: str, exclude_collector: str = "") -> int:
        """Series of one workspace across collectors (histograms count their buckets, _sum and _count)."""
        with self._lock:
            total = 0
            for owner, gauges in self._gauges.items():
                if owner.startswith(f"{workspace_id}/") and owner != f"{workspace_id}/{exclude_collector}":
                    total += sum(len(samples) for samples in gauges.values())
            for table in (self._counters, self._histograms):
                for metric, series in table.items():
                    if metric.collector == exclude_collector or "workspace_id" not in metric.labels:
                        continue
                    index = metric.labels.index("workspace_id")
                    width = len(metric.buckets) + 3 if metric.type == m.HISTOGRAM else 1
                    total += width * sum(1 for values in series if values[index] == workspace_id)
            return total

    def set_gauges(self, owner: str, gauges: dict[m.Metric, dict[LabelValues, float]]) -> None:
        """Replace an owner's gauges outside a collector cycle (the exporter's own status metrics)."""
        with self._lock:
            previous = self._gauges.get(owner, {})
            self._gauges[owner] = gauges
            self._changed(set(previous) | set(gauges))

    def inc(self, metric: m.Metric, labels: dict[str, Any], amount: float = 1.0) -> None:
        """An immediate counter increment (the exporter's own bookkeeping, e.g. API requests)."""
        values = label_values(metric, labels)
        with self._lock:
            series = self._counters.setdefault(metric, {})
            series[values] = series.get(values, 0.0) + amount
            self._changed({metric})

    def observe(self, metric: m.Metric, labels: dict[str, Any], value: float) -> None:
        """An immediate histogram observation (the exporter's own bookkeeping, e.g. SQL statement durations)."""
        values = label_values(metric, labels)
        with self._lock:
            self._histograms.setdefault(metric, {}).setdefault(values, Histogram.empty(metric)).observe(
                metric, value)
            self._changed({metric})

    def _changed(self, metrics) -> None:
        self._version += 1
        for metric in metrics:
            self._changed_at[metric] = self._version

    # --- reading ---------------------------------------------------------------------------------
    @property
    def version(self) -> int:
        return self._version

    def families(self) -> list[Family]:
        """A consistent snapshot of every family with samples, in name order (sinks and renderers read this)."""
        with self._lock:
            metrics = set(self._counters) | set(self._histograms)
            for gauges in self._gauges.values():
                metrics.update(gauges)
            families = [self._family(metric) for metric in sorted(metrics, key=lambda metric: metric.name)]
        return [family for family in families if family.samples]

    def changes_since(self, version: int) -> tuple[int, dict[m.Metric, Family]]:
        """The store's version and, consistently with it, the family of every metric changed after `version`
        (possibly with no samples left): a renderer re-renders those and keeps the rest."""
        with self._lock:
            return self._version, {metric: self._family(metric) for metric, at in self._changed_at.items()
                                   if at > version}

    def _family(self, metric: m.Metric) -> Family:
        family = Family(metric)
        if metric.type == m.HISTOGRAM:
            family.samples.extend((values, Histogram(list(h.counts), h.sum))
                                  for values, h in self._histograms.get(metric, {}).items())
        else:
            family.samples.extend(self._counters.get(metric, {}).items())
            # Gauges, and counters read whole each cycle (Cycle.current: a custom query's cumulative total).
            for owner in sorted(self._gauges):
                family.samples.extend(self._gauges[owner].get(metric, {}).items())
        family.samples.sort(key=lambda sample: sample[0])
        return family

    def value(self, name: str, **labels: Any) -> Any:
        """The current value of one series (tests and `once` use this); None when absent."""
        metric = m.REGISTRY[name]
        values = label_values(metric, labels)
        with self._lock:
            return dict(self._family(metric).samples).get(values)

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
            touched = set(self._counters) | set(self._histograms) | set(counters) | set(histograms)
            self._counters, self._histograms, self._states = counters, histograms, states
            self._changed(touched)
        return f"state loaded from {self.state_file}"


# Labels that name one entity; over the ceiling, an entity's series fold into entity="_other".
ENTITY_LABELS = ("job_id", "cluster_id", "warehouse_id", "pipeline_id", "table")
OTHER = "_other"


class CardinalityGuard:
    """A ceiling on one collector's series in one workspace. Entities already admitted keep their own series;
    new ones are admitted while there is room. The rest give way to their aggregate: counters and histograms add
    into the entity "_other" (so totals stay right and exactly-once holds), counting gauges are summed there,
    and other per-entity gauges (info, state, timestamps) are dropped. Never silent: the engine exports how
    many series were folded and logs a warning."""

    def __init__(self, limit: int):
        self.limit = limit

    @staticmethod
    def entity_label(metric: m.Metric) -> str | None:
        return next((label for label in ENTITY_LABELS if label in metric.labels), None)

    def apply(self, cycle: Cycle, existing: set, state: dict | None) -> int:
        if self.limit <= 0:
            return 0
        per_entity: dict[str, set] = {}
        fixed = 0

        def note(metric: m.Metric, values: LabelValues) -> None:
            nonlocal fixed
            label = self.entity_label(metric)
            width = len(metric.buckets) + 3 if metric.type == m.HISTOGRAM else 1
            if label is None or values[metric.labels.index(label)] == OTHER:
                fixed += width
                return
            per_entity.setdefault(values[metric.labels.index(label)], set()).add((metric, values, width))

        for metric, samples in cycle.gauges.items():
            for values in samples:
                note(metric, values)
        for metric, values in existing | {(metric, values) for metric, values, _ in
                                           cycle.increments + cycle.observations}:
            note(metric, values)
        state = state if state is not None else {}
        admitted: list[str] = state.setdefault("admitted_entities", [])
        known = set(admitted)
        room = self.limit - fixed
        keep: set[str] = set()
        for entity in admitted + sorted(e for e in per_entity if e not in known):
            size = sum(width for _, _, width in per_entity.get(entity, ()))
            if size <= room:
                room -= size
                keep.add(entity)
                if entity not in known:
                    admitted.append(entity)
                    known.add(entity)
        state["admitted_entities"] = [e for e in admitted if e in keep or e not in per_entity]
        folded = sum(width for e, series in per_entity.items() if e not in keep for _, _, width in series)
        if folded:
            self._fold(cycle, keep)
        return folded

    def _fold(self, cycle: Cycle, keep: set[str]) -> None:
        def other(metric: m.Metric, values: LabelValues) -> LabelValues | None:
            label = self.entity_label(metric)
            if label is None:
                return values
            index = metric.labels.index(label)
            if values[index] in keep or values[index] == OTHER:
                return values
            return values[:index] + (OTHER,) + values[index + 1:]

        for metric in list(cycle.gauges):
            folded: dict[LabelValues, float] = {}
            for values, value in cycle.gauges[metric].items():
                target = other(metric, values)
                if target is values:
                    folded[values] = value
                elif metric in cycle.additive:
                    folded[target] = folded.get(target, 0.0) + value
            cycle.gauges[metric] = folded
        cycle.increments = [(metric, other(metric, values), amount) for metric, values, amount in cycle.increments]
        cycle.observations = [(metric, other(metric, values), value) for metric, values, value in cycle.observations]


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

