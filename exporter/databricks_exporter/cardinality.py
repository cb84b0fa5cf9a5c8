"""The cardinality guard: a ceiling on one collector's series in one workspace, with the entities it admitted kept
by the store under a key of their own, so the ceiling holds the same entities across restarts."""

from __future__ import annotations

from . import metrics as m
from .cycle import OTHER, Cycle, LabelValues

# Labels that name one entity; over the ceiling, an entity's series fold into entity="_other".
ENTITY_LABELS = ("job_id", "cluster_id", "warehouse_id", "pipeline_id", "table")


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

    def apply(self, cycle: Cycle, existing: set, admitted: list[str]) -> int:
        """Fold the cycle's series over the ceiling into "_other"; `existing` holds the series the store already
        has for the cycle's metrics, and `admitted` (updated in place) the entities admitted so far, oldest first.
        Returns how many series were folded."""
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
        admitted[:] = [e for e in admitted if e in keep or e not in per_entity]
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
