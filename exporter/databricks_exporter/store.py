"""The metric store: current gauges, ever-growing counters and histograms, the collectors' cursors that make their
growth exactly-once and the entities the cardinality guard admitted, persisted together so a restart neither loses
nor double counts."""

from __future__ import annotations

import copy
import json
import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

from . import metrics as m
from .cardinality import CardinalityGuard
from .cycle import Cycle, Family, Histogram, LabelValues, label_values
from .files import write_atomically

log = logging.getLogger(__name__)

# Version 2 keeps the guard's admitted entities under their own key only; version 1 (up to f67d193) also had them
# in each collector's state in its oldest files. An older file is migrated on load, step by step (MIGRATIONS); a
# newer one is refused and left as it is.
STATE_VERSION = 2


class StateVersionError(ValueError):
    """The state file was written by a newer exporter: loading it would lose what this one does not know of, and
    overwriting it would lose it for the newer one too."""


class StateSaveError(OSError):
    """The state file could not be written: nothing of the commit was published, and memory is as before it."""


class Draft:
    """The changes of one batch of commits, made to copies of the tables they touch (copied on first touch): the
    store saves the tables with the draft laid over them, and swaps the draft in only once that save succeeded."""

    def __init__(self, store: "MetricStore"):
        self.store = store
        self.counters: dict[m.Metric, dict[LabelValues, float]] = {}
        self.histograms: dict[m.Metric, dict[LabelValues, Histogram]] = {}
        self.gauges: dict[str, dict[m.Metric, dict[LabelValues, float]]] = {}
        self.states: dict[str, dict] = {}
        self.admitted: dict[str, list[str]] = {}
        self.changed: set[m.Metric] = set()
        self.copied: dict[m.Metric, set[LabelValues]] = {}     # histograms this draft owns (copied before observing)

    def table(self, metric: m.Metric) -> dict:
        self.changed.add(metric)
        if metric.type == m.HISTOGRAM:
            if metric not in self.histograms:
                # The published Histogram objects are shared until observed (observe copies them first).
                self.histograms[metric] = dict(self.store._histograms.get(metric, {}))
            return self.histograms[metric]
        if metric not in self.counters:
            self.counters[metric] = dict(self.store._counters.get(metric, {}))
        return self.counters[metric]

    def add(self, metric: m.Metric, values: LabelValues, amount: float) -> None:
        series = self.table(metric)
        series[values] = series.get(values, 0.0) + amount

    def observe(self, metric: m.Metric, values: LabelValues, value: float) -> None:
        table, copied = self.table(metric), self.copied.setdefault(metric, set())
        if values not in copied:
            shared = table.get(values)
            table[values] = Histogram(list(shared.counts), shared.sum) if shared else Histogram.empty(metric)
            copied.add(values)
        table[values].observe(metric, value)

    def apply(self, commit: "Commit") -> None:
        owner, cycle = commit.owner, commit.cycle
        if commit.guard:
            admitted = list(self.admitted.get(owner, self.store._admitted.get(owner, [])))
            commit.folded = commit.guard.apply(cycle, self.existing_series(owner, cycle), admitted)
            self.admitted[owner] = admitted
        self.changed.update(self.gauges.get(owner, self.store._gauges.get(owner, {})), cycle.gauges)
        self.gauges[owner] = cycle.gauges
        for metric, values, amount in cycle.increments:
            self.add(metric, values, amount)
        for metric, values, value in cycle.observations:
            self.observe(metric, values, value)
        for metric, keep in cycle.forgets:
            table = self.table(metric)
            ws_index = metric.labels.index("workspace_id")
            for values in [v for v in table if v[ws_index] == cycle.workspace_id]:
                if not keep(dict(zip(metric.labels, values))):
                    del table[values]
        if commit.state is not None:
            self.states[owner] = commit.state

    def existing_series(self, owner: str, cycle: Cycle) -> set[tuple[m.Metric, LabelValues]]:
        """The counter and histogram series of the cycle's workspace and collector, those this cycle leaves alone
        included: they count against the ceiling, and keep their entities admitted."""
        collector = owner.split("/", 1)[-1]
        metrics = {metric for metric, _, _ in cycle.increments + cycle.observations}
        metrics.update(metric for table in (self.store._counters, self.store._histograms) for metric in table
                       if metric.collector == collector)
        out = set()
        for metric in metrics:
            if "workspace_id" not in metric.labels:
                continue
            index = metric.labels.index("workspace_id")
            drafted, published = ((self.histograms, self.store._histograms) if metric.type == m.HISTOGRAM
                                  else (self.counters, self.store._counters))
            table = drafted[metric] if metric in drafted else published.get(metric, {})
            out.update((metric, values) for values in table if values[index] == cycle.workspace_id)
        return out


@dataclass
class Commit:
    """One collector cycle waiting for the save that publishes it."""
    owner: str
    cycle: Cycle
    state: dict | None
    guard: CardinalityGuard | None
    folded: int = 0
    error: StateSaveError | None = None


class MetricStore:
    def __init__(self, state_file: str | None = None):
        self.state_file = state_file
        self._lock = threading.RLock()    # held briefly, by readers and by the swap of a saved draft
        self._save_lock = threading.Lock()   # one save at a time; the tables change only under it
        self._gauges: dict[str, dict[m.Metric, dict[LabelValues, float]]] = {}   # owner -> gauges
        self._counters: dict[m.Metric, dict[LabelValues, float]] = {}
        self._histograms: dict[m.Metric, dict[LabelValues, Histogram]] = {}
        self._states: dict[str, dict] = {}                                       # owner -> collector state
        self._admitted: dict[str, list[str]] = {}                                # owner -> the guard's entities
        self._version = 0
        self._changed_at: dict[m.Metric, int] = {}    # metric -> store version of its last change (for renderers)
        self._queue: list[Commit] = []
        # The exporter's own counts (API requests, SQL statements, pushes) wait here until a save holds them: they
        # are published only once persisted, so a restart never serves less than was served before it.
        self._pending_counts: dict[tuple[m.Metric, LabelValues], float] = {}
        self._pending_observations: list[tuple[m.Metric, LabelValues, float]] = []
        self._flush_failing = False
        self._fragments: dict[tuple[str, Any], str] = {}   # (section, owner or metric) -> its JSON, as last saved
        self.saves = 0                    # how many times the state was written (the benchmark reports it)

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
        series the cardinality guard folded away. Raises StateSaveError when the save fails: then nothing of the
        cycle is published or kept.

        Persisting before publishing means Prometheus never sees a counter value that a crash could take back.
        Commits that arrive while a save runs wait for it and are then saved together, once."""
        commit = Commit(owner, cycle, state, guard)
        with self._lock:
            self._queue.append(commit)
        try:
            self._save_queued()
        except StateSaveError:
            pass            # the save may have been of others' commits only: this one's outcome is its own
        if commit.error:
            raise commit.error
        return commit.folded

    def flush(self) -> bool:
        """Save and publish the exporter's own counts not yet saved (the engine does it every second, and at
        shutdown). Returns False when the save failed: they then wait, unpublished, for the next save."""
        try:
            self._save_queued()
        except StateSaveError as exc:
            if not self._flush_failing:
                log.warning("%s; the exporter's own counters wait for the next save", exc)
            self._flush_failing = True
            return False
        self._flush_failing = False
        return True

    def _save_queued(self) -> None:
        """Save every queued commit and pending count in one draft, then publish it; raise StateSaveError if the
        save failed (the commits carry the error, and the counts go back to pending)."""
        with self._save_lock:
            with self._lock:
                batch, self._queue = self._queue, []
                counts, observations = self._pending_counts, self._pending_observations
                self._pending_counts, self._pending_observations = {}, []
            if not batch and not counts and not observations:
                return
            draft = Draft(self)
            for commit in batch:
                draft.apply(commit)
            for (metric, values), amount in counts.items():
                draft.add(metric, values, amount)
            for metric, values, value in observations:
                draft.observe(metric, values, value)
            try:
                self._write(draft)
            except StateSaveError as exc:
                for commit in batch:
                    commit.error = exc
                with self._lock:
                    for key, amount in counts.items():
                        self._pending_counts[key] = self._pending_counts.get(key, 0.0) + amount
                    self._pending_observations[:0] = observations
                raise
            with self._lock:
                self._counters.update(draft.counters)
                self._histograms.update(draft.histograms)
                self._gauges.update(draft.gauges)
                self._states.update(draft.states)
                self._admitted.update(draft.admitted)
                self._changed(draft.changed)

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
        """A counter increment outside a collector cycle (the exporter's own bookkeeping, e.g. API requests):
        served once a save holds it (at the next commit, scrape or shutdown)."""
        values = label_values(metric, labels)
        with self._lock:
            key = (metric, values)
            self._pending_counts[key] = self._pending_counts.get(key, 0.0) + amount
        if not self.state_file:
            self._save_queued()       # nothing to write: published at once

    def observe(self, metric: m.Metric, labels: dict[str, Any], value: float) -> None:
        """A histogram observation outside a collector cycle (e.g. SQL statement durations), served as inc's are."""
        values = label_values(metric, labels)
        with self._lock:
            self._pending_observations.append((metric, values, value))
        if not self.state_file:
            self._save_queued()

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
        """Write what the store holds to the state file; StateSaveError (naming the file and the reason) if not."""
        with self._save_lock:
            self._write(Draft(self))

    def _write(self, draft: Draft) -> None:
        """Write the tables with the draft laid over them. Runs under the save lock and not the store lock: only the
        save lock's holder changes the tables, so scrapes go on reading while the disk works. Each metric's series
        and each collector's state are serialized again only when they changed (the rest comes from _fragments)."""
        if not self.state_file:
            return
        fresh: dict[tuple[str, Any], str] = {}

        def fragment(section: str, key: Any, value: Any, changed: bool, encode) -> str:
            cached = self._fragments.get((section, key))
            if cached is None or changed:
                cached = fresh[(section, key)] = json.dumps(encode(value), separators=(",", ":"))
            return cached

        def section(name: str, published: dict, drafted: dict, encode, label=str) -> str:
            parts = [f"{json.dumps(label(key))}:{fragment(name, key, value, key in drafted, encode)}"
                     for key, value in {**published, **drafted}.items()]
            return f'"{name}":{{{",".join(parts)}}}'

        def counters(series):
            return [[list(v), value] for v, value in series.items()]

        def histograms(series):
            return [[list(v), h.counts, h.sum] for v, h in series.items()]

        def name(metric):
            return metric.name

        text = "{" + ",".join([
            f'"version":{STATE_VERSION}',
            section("collectors", self._states, draft.states, lambda state: state),
            section("admitted_entities", self._admitted, draft.admitted, lambda entities: entities),
            section("counters", self._counters, draft.counters, counters, name),
            section("histograms", self._histograms, draft.histograms, histograms, name)]) + "}"
        try:
            write_atomically(self.state_file, text)
        except OSError as exc:
            raise StateSaveError(f"cannot save the state to {self.state_file}: {exc.strerror or exc}") from exc
        self._fragments.update(fresh)
        self.saves += 1

    def load(self) -> str:
        """Load the state file if there is one. Returns what happened, for the start-up log line.

        A damaged file is not fatal: counting starts afresh from the lookback, and the file is kept aside."""
        if not self.state_file or not os.path.exists(self.state_file):
            return "no state file; counting starts from the lookback"
        try:
            with open(self.state_file, encoding="utf-8") as handle:
                document = json.load(handle)
            document = migrated(document, self.state_file)
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
            for owner in [o for o, state in states.items() if not isinstance(state, dict)]:
                log.warning("state file %s: the state of %s is not a mapping; that collector starts afresh",
                            self.state_file, owner)
                del states[owner]
            admitted = document.get("admitted_entities", {})
            if not isinstance(admitted, dict):
                raise ValueError("admitted_entities is not a mapping")
            admitted = {str(owner): [str(e) for e in entities] for owner, entities in admitted.items()
                        if isinstance(entities, list)}
        except StateVersionError:
            raise
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            aside = f"{self.state_file}.corrupt"
            try:
                os.replace(self.state_file, aside)
            except OSError:
                aside = "(could not be moved aside)"
            log.warning("state file %s is damaged (%s); moved to %s; counting starts afresh from the lookback",
                        self.state_file, exc, aside)
            return "state file damaged; counting starts from the lookback"
        with self._save_lock, self._lock:
            touched = set(self._counters) | set(self._histograms) | set(counters) | set(histograms)
            self._counters, self._histograms, self._states = counters, histograms, states
            self._fragments = {}
            self._admitted = admitted
            self._changed(touched)
        return f"state loaded from {self.state_file}"


def migrated(document: Any, path: str) -> dict:
    """The document in the current version: an older one migrated step by step, a newer one refused."""
    version = document.get("version") if isinstance(document, dict) else None
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"unsupported state version {version!r}")
    if version > STATE_VERSION:
        raise StateVersionError(f"the state file {path} has version {version}, written by a newer exporter (this one "
                                f"reads up to version {STATE_VERSION}); it is left as it is: run the newer exporter, "
                                f"or move the file away to start counting afresh")
    while version < STATE_VERSION:
        document = MIGRATIONS[version](document)
        version += 1
        document["version"] = version
    return document


def admitted_out_of_collector_state(document: dict) -> dict:
    """Version 1 to 2. A version 1 file written before the guard's admitted entities had a key of their own kept
    them in each collector's state as "admitted_entities": they move out of there (a list of its own, if both)."""
    admitted = document.setdefault("admitted_entities", {})
    states = document.get("collectors", {})
    if isinstance(admitted, dict) and isinstance(states, dict):
        for owner, state in states.items():
            if isinstance(state, dict) and isinstance(state.get("admitted_entities"), list):
                legacy = [str(e) for e in state.pop("admitted_entities")]
                admitted.setdefault(owner, legacy)
    return document


MIGRATIONS = {1: admitted_out_of_collector_state}
