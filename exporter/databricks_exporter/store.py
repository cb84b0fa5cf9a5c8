"""The metric store: current gauges, ever-growing counters and histograms, the collectors' cursors that make their
growth exactly-once and the entities the cardinality guard admitted, persisted together so a restart neither loses
nor double counts."""

from __future__ import annotations

import copy
import json
import logging
import os
import threading
from typing import Any

from . import metrics as m
from .cardinality import CardinalityGuard
from .cycle import Cycle, Family, Histogram, LabelValues, label_values
from .files import write_atomically

log = logging.getLogger(__name__)

STATE_VERSION = 1


class MetricStore:
    def __init__(self, state_file: str | None = None):
        self.state_file = state_file
        self._lock = threading.RLock()
        self._gauges: dict[str, dict[m.Metric, dict[LabelValues, float]]] = {}   # owner -> gauges
        self._counters: dict[m.Metric, dict[LabelValues, float]] = {}
        self._histograms: dict[m.Metric, dict[LabelValues, Histogram]] = {}
        self._states: dict[str, dict] = {}                                       # owner -> collector state
        self._admitted: dict[str, list[str]] = {}                                # owner -> the guard's entities
        self._version = 0
        self._changed_at: dict[m.Metric, int] = {}    # metric -> store version of its last change (for renderers)

    # --- writing ---------------------------------------------------------------------------------
    def state(self, owner: str) -> dict:
        """A private copy of the collector's persisted state (cursors, seen ids, counting_since)."""
        with self._lock:
            return copy.deepcopy(self._states.get(owner, {}))

    def admitted(self, owner: str) -> list[str]:
        """The entities the cardinality guard admitted for the collector, oldest first."""
        with self._lock:
            return list(self._admitted.get(owner, []))

    def commit(self, owner: str, cycle: Cycle, state: dict | None, guard: CardinalityGuard | None = None) -> int:
        """Apply a successful cycle and its new cursor state together, persist, then publish. Returns how many
        series the cardinality guard folded away.

        Persisting before publishing means Prometheus never sees a counter value that a crash could take back."""
        with self._lock:
            folded = 0
            if guard:
                admitted = list(self._admitted.get(owner, []))
                folded = guard.apply(cycle, self._existing_series(cycle), admitted)
                self._admitted[owner] = admitted
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
                "admitted_entities": self._admitted,
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
            admitted = admitted_entities(document.get("admitted_entities", {}), states)
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
            self._admitted = admitted
            self._changed(touched)
        return f"state loaded from {self.state_file}"


def admitted_entities(saved: Any, states: dict[str, Any]) -> dict[str, list[str]]:
    """The guard's admitted entities per owner. A state file written before they had a key of their own kept them
    in each collector's state as "admitted_entities": they are moved out of there (a list of its own, if both)."""
    if not isinstance(saved, dict):
        raise ValueError("admitted_entities is not a mapping")
    admitted = {str(owner): [str(e) for e in entities] for owner, entities in saved.items()
                if isinstance(entities, list)}
    for owner, state in states.items():
        if isinstance(state, dict) and isinstance(state.get("admitted_entities"), list):
            legacy = [str(e) for e in state.pop("admitted_entities")]
            admitted.setdefault(owner, legacy)
    return admitted
