"""What every collector shares: the registry by name, the base class, and the incremental cursor for exactly-once counting."""

from __future__ import annotations

import contextlib
import re
import time
from typing import Any, Callable, ClassVar, Iterable

from ..config import CollectorSettings
from ..cycle import OTHER, Cycle
from ..sources.errors import Forbidden, NotFound, Unauthenticated

COLLECTORS: dict[str, type["Collector"]] = {}
DEFAULT_RETENTION = 7 * 86400.0


def register(cls: type["Collector"]) -> type["Collector"]:
    COLLECTORS[cls.name] = cls
    return cls


class Collector:
    """One data source area. Reads through a source, keeps its cursor in `state`, writes into a Cycle."""

    name: ClassVar[str]
    default_interval: ClassVar[float] = 60.0
    default_enabled: ClassVar[bool] = True
    # Extra settings this collector accepts in its config section: key -> (kind, default).
    options: ClassVar[dict[str, tuple[str, Any]]] = {}
    # What `check` needs, in words a workspace admin understands.
    permission: ClassVar[str] = ""
    # Whether this collector counts completed work (and so has a counting_since).
    counts_work: ClassVar[bool] = False
    # The kind of each top-level key of the collector's persisted state, checked before the first cycle that uses
    # a saved state (state_problem): a state of the wrong shape resets this collector alone.
    state_shape: ClassVar[dict[str, type | tuple[type, ...]]] = {}

    def __init__(self, workspace, settings: CollectorSettings, lookback: float, clock=time.time,
                 retention: float = DEFAULT_RETENTION):
        """workspace: the engine's Workspace (its .rest is the REST source; SQL collectors use its .sql)."""
        self.workspace = workspace
        self.rest = workspace.rest
        if not settings.validated:      # settings built without config.load (tests, the demo's own sections)
            self.validate_options(settings.options, lambda message, key: ValueError(f"{self.name}.{key}: {message}"))
            settings.validated = True
        self.settings = settings
        self.lookback = lookback
        self.clock = clock
        self.retention = retention

    @classmethod
    def validate_options(cls, options: dict, error: Callable[[str, str], Exception]) -> None:
        """Check and type in place what the option kinds alone cannot (budgets, table names, custom queries);
        raise error(reason, key). Run once per settings: by config.load, else when the collector is built."""

    def option(self, key: str) -> Any:
        """An option's configured value, else its declared default (settings made by hand may leave it out)."""
        return self.settings.options.get(key, self.options[key][1])

    def collect(self, cycle: Cycle, state: dict) -> None:
        """One cycle: emit into `cycle`, update `state` in place. Raise to fail the cycle (nothing is applied)."""
        raise NotImplementedError

    def committed(self, state: dict) -> None:
        """The cycle that left `state` was saved and published: what the collector remembers in the process itself
        (not in `state`) may move on now, and not before, since a cycle that fails is as if it never ran."""

    def check(self) -> str:
        """Make the cheapest call that needs this collector's permission; return what it saw, or raise."""
        raise NotImplementedError

    def state_problem(self, state: dict) -> str:
        """What makes a saved state unusable for this collector ('' if nothing): a key of the wrong kind, or a
        cursor (a mapping with a watermark) whose watermark is not a number or whose seen ids are not a mapping."""
        shape = {"counting_since": (int, float), "last_listed": dict, **self.state_shape}
        for key, kind in shape.items():
            if key in state and (not isinstance(state[key], kind) or isinstance(state[key], bool)):
                return f"{key} is a {type(state[key]).__name__}, not a {getattr(kind, '__name__', 'number')}"
        stack = [("", state)]
        while stack:
            where, node = stack.pop()
            if "watermark" in node and (not isinstance(node["watermark"], (int, float))
                                        or not isinstance(node.get("seen", {}), dict)):
                return f"the cursor at {where or 'the top'} is damaged"
            stack.extend((f"{where}/{key}", value) for key, value in node.items() if isinstance(value, dict))
        return ""

    def keep_within_retention(self, cycle: Cycle, state: dict, listed, label: str, metrics=(), maps=(),
                              gone=()) -> set[str]:
        """Entities (ids under `label`) listed now or within the retention, less those `gone` for good (a job
        cluster that terminated never runs again): the counters of `metrics` and the entries of `maps` (per-entity
        cursors, timestamps) of all others are forgotten. Returns the entities kept."""
        retention = Retention(state)
        for entity in gone:
            retention.last_listed.pop(str(entity), None)
        kept = retention.kept(listed, self.clock(), self.retention)
        for metric in metrics:
            # "_other" holds what the cardinality guard folded: an aggregate, not an entity that went away.
            cycle.keep_only(metric, lambda labels: labels[label] in kept or labels[label] == OTHER)
        for mapping in maps:
            for entity in [e for e in mapping if e.split("/")[0] not in kept]:
                del mapping[entity]
        return kept

    def counting_since(self, state: dict) -> float:
        """Where exactly-once counting began: now minus the lookback on the very first cycle, then persisted."""
        if "counting_since" not in state:
            state["counting_since"] = self.clock() - self.lookback
        return state["counting_since"]


class Cursor:
    """An incremental cursor over items that carry a timestamp: a watermark, plus the ids already handled at or
    after it. An item is new when it is at or after the watermark and not among those ids; overlap between
    polls (same timestamp, re-listed pages, retries) is therefore harmless."""

    def __init__(self, state: dict, watermark: float):
        state.setdefault("watermark", watermark)
        state.setdefault("seen", {})
        self.state = state

    @property
    def watermark(self) -> float:
        return self.state["watermark"]

    def is_new(self, item_id: Any) -> bool:
        return str(item_id) not in self.state["seen"]

    def mark(self, item_id: Any, timestamp: float) -> None:
        self.state["seen"][str(item_id)] = timestamp

    def advance(self, watermark: float) -> None:
        """Move the watermark forward (never back) and forget ids now behind it: the server will not list them."""
        if watermark <= self.watermark:
            return
        self.state["watermark"] = watermark
        self.state["seen"] = {k: ts for k, ts in self.state["seen"].items() if ts >= watermark}


TALLY_SECONDS = 60               # the tallies' granularity: periods of reconciliation are whole minutes
TALLY_KEEP_SECONDS = 4 * 3600    # a period is reconciled about an hour after it closes


def tally(state: dict, ended: float, key: str) -> None:
    """Count one completed item (by its end, epoch seconds) under `key` in the state's per-minute tallies, which
    the reconciliation collector compares with the system tables. Kept in the collector's state, so they are
    committed, persisted and counted exactly once with its counters; tallies older than TALLY_KEEP_SECONDS go."""
    tallies = state.setdefault("tallies", {})
    minute = int(ended // TALLY_SECONDS * TALLY_SECONDS)
    counts = tallies.setdefault(str(minute), {})
    counts[key] = counts.get(key, 0) + 1
    newest = max(int(k) for k in tallies)
    for old in [k for k in tallies if int(k) < newest - TALLY_KEEP_SECONDS]:
        del tallies[old]


class Skip:
    """Whether the item of a skipped_if_forbidden block was skipped."""

    skipped = False


@contextlib.contextmanager
def skipped_if_forbidden(cycle: Cycle, item: str, permission: str):
    """Read one item (a run, an event log, a cluster's events): a 403 skips just that item and notes it in the
    cycle, which the engine counts and warns about; a refused credential (401) still fails the cycle."""
    outcome = Skip()
    try:
        yield outcome
    except Unauthenticated:
        raise
    except Forbidden:
        cycle.forbidden(item, permission)
        outcome.skipped = True


def forbidden_among(probes: Iterable[tuple[str, Callable[[], object]]]) -> list[str]:
    """The items whose probe (one cheap read) answers 403, for `check` to list."""
    forbidden = []
    for item, probe in probes:
        try:
            probe()
        except Unauthenticated:
            raise
        except Forbidden:
            forbidden.append(item)
        except NotFound:
            pass
    return forbidden


def with_forbidden(seen: str, forbidden: list[str], permission: str) -> str:
    """A check's summary, with the items the credential may not read."""
    if not forbidden:
        return seen
    return f"{seen}; {len(forbidden)} forbidden (403, needs {permission}): {', '.join(forbidden)}"
class Retention:
    """When each entity (job, pipeline, cluster) was last listed, kept in the collector's state: one that is missing
    from a listing (a malformed item, a permission blip, a filter change, a terminated cluster) keeps its cursor and
    counters for `retention`, so it resumes where it was when it comes back; only one gone longer is forgotten."""

    def __init__(self, state: dict, key: str = "last_listed"):
        self.last_listed: dict[str, float] = state.setdefault(key, {})

    def kept(self, listed, now: float, retention: float) -> set[str]:
        """Note the entities listed now; return them with those listed within the retention, and forget the rest."""
        for entity in listed:
            self.last_listed[str(entity)] = now
        for entity in [e for e, at in self.last_listed.items() if at < now - retention]:
            del self.last_listed[entity]
        return set(self.last_listed)


class NameFilter:
    """include/exclude regular expressions on a name: included if any include matches (or none are given) and no
    exclude matches."""

    def __init__(self, include: list[str] | None, exclude: list[str] | None):
        self.include = [re.compile(p) for p in include or []]
        self.exclude = [re.compile(p) for p in exclude or []]

    def __call__(self, name: str | None) -> bool:
        name = name or ""
        if self.include and not any(p.search(name) for p in self.include):
            return False
        return not any(p.search(name) for p in self.exclude)


def enum_name(value: Any) -> str:
    """SDK enums and raw strings alike, as the API spells them."""
    if value is None:
        return ""
    return getattr(value, "value", value) if not isinstance(value, str) else value
