"""What every push sink shares: the registry by name, and a base class that pushes snapshots of the metric store on
its own thread and interval, reports every push as a metric, and never lets a failure reach anything else."""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from typing import Any, Callable, ClassVar

from .. import metrics as m
from ..config import SinkSettings
from ..cycle import Family, label_values
from ..files import write_atomically
from ..store import MetricStore

log = logging.getLogger(__name__)

SINKS: dict[str, type["Sink"]] = {}

# Cumulative series that started with this process get this as their start time (OTLP) or baseline moment.
PROCESS_START = time.time()


def register(cls: type["Sink"]) -> type["Sink"]:
    SINKS[cls.name] = cls
    return cls


class PushError(Exception):
    """A push that did not (completely) succeed; the message says why, in one line."""


class MetricFilter:
    """include/exclude regular expressions on metric names: a metric is pushed if any include matches (or none are
    given) and no exclude matches."""

    def __init__(self, include: list[str] | None, exclude: list[str] | None):
        self.include = [re.compile(p) for p in include or []]
        self.exclude = [re.compile(p) for p in exclude or []]

    def __call__(self, name: str) -> bool:
        if self.include and not any(p.search(name) for p in self.include):
            return False
        return not any(p.search(name) for p in self.exclude)


def describe(exc: BaseException) -> str:
    """One line for a log or a metric-adjacent message: the error's class and the first line of its message."""
    text = str(exc).strip()
    message = text.splitlines()[0] if text else ""
    name = type(exc).__name__
    return f"{name}: {message}"[:300] if message else name


def _same_failure_key(reason: str) -> str:
    """Request ids, ports and counts change on every attempt; a failure is "the same" when only those differ."""
    return re.sub(r"[0-9a-fA-F-]{8,}|\d+", "#", reason)


def sidecar_path(state_file: str | None, sink: str) -> str | None:
    """Where a sink remembers what it last pushed: next to the exporter's state file (state.json ->
    state.cloudwatch.json), or nowhere when the exporter keeps no state."""
    if not state_file:
        return None
    root, ext = os.path.splitext(state_file)
    return f"{root}.{sink}{ext or '.json'}"


def read_sidecar(path: str | None) -> dict | None:
    """The sidecar's document, or None when there is none or it cannot be used (a damaged sidecar only costs the
    first push's increases, so it is logged and ignored rather than kept aside)."""
    if not path or not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
        if not isinstance(document, dict):
            raise ValueError("not a JSON object")
        return document
    except (OSError, ValueError) as exc:
        log.warning("sink state %s is unreadable (%s); counters start from a fresh baseline", path, exc)
        return None


def write_sidecar(path: str | None, document: dict) -> None:
    if path:
        write_atomically(path, json.dumps(document, separators=(",", ":")))


class Sink:
    """A reader of the metric store that pushes it somewhere on its own interval.

    Subclasses implement push(families), raising on failure; the base runs it on a daemon thread, counts
    databricks_exporter_push_total{sink,outcome}, sets databricks_exporter_push_last_success_timestamp_seconds{sink},
    and logs a failure when it starts or changes, not on every push."""

    name: ClassVar[str]
    default_enabled: ClassVar[bool] = False
    default_interval: ClassVar[float] = 60.0
    # Settings this sink accepts in its `sinks.<name>` section: key -> (kind, default); see config._coerce.
    options: ClassVar[dict[str, tuple[str, Any]]] = {}

    @classmethod
    def validate_options(cls, options: dict[str, Any], error: Callable[[str, str], Exception]) -> None:
        """Check (and normalise in place) what the option kinds alone cannot; raise error(message, key)."""

    def __init__(self, settings: SinkSettings, store: MetricStore, state_file: str | None = None,
                 clock: Callable[[], float] = time.time):
        self.settings = settings
        self.store = store
        self.state_file = state_file
        self.clock = clock
        self.interval = settings.interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_failure: str | None = None
        self._succeeded_once = False
        self.last_error = ""
        # Both outcomes exist from the start, so increase(...{outcome="failure"}[5m]) works from the first failure.
        for outcome in ("success", "failure"):
            store.inc(m.PUSH, {"sink": self.name, "outcome": outcome}, 0.0)

    # --- to implement ------------------------------------------------------------------------------
    def push(self, families: list[Family]) -> dict[str, Any]:
        """Send one snapshot; return counts for the log line (e.g. {"datums": 42}); raise on failure."""
        raise NotImplementedError

    def close(self) -> None:
        """Release connections; called once when the sink stops."""

    # --- running -----------------------------------------------------------------------------------
    def push_once(self) -> bool:
        """One push of the current store, recorded as a metric; never raises."""
        started = time.monotonic()
        try:
            summary = self.push(self.store.families()) or {}
        except Exception as exc:  # noqa: BLE001 - a failed push is counted and logged, never fatal
            self._failed(exc, time.monotonic() - started)
            return False
        self._succeeded(summary, time.monotonic() - started)
        return True

    def _succeeded(self, summary: dict[str, Any], duration: float) -> None:
        self.store.inc(m.PUSH, {"sink": self.name, "outcome": "success"})
        self.store.set_gauges(f"sink/{self.name}", {m.PUSH_LAST_SUCCESS: {
            label_values(m.PUSH_LAST_SUCCESS, {"sink": self.name}): self.clock()}})
        context = {"sink": self.name, "duration_seconds": round(duration, 3), **summary}
        if self._last_failure is not None:
            log.info("push to %s recovered", self.name, extra=context)
        elif not self._succeeded_once:
            log.info("first push to %s succeeded", self.name, extra=context)
        else:
            log.debug("pushed to %s", self.name, extra=context)
        self._last_failure, self._succeeded_once, self.last_error = None, True, ""

    def _failed(self, exc: BaseException, duration: float) -> None:
        try:
            self.store.inc(m.PUSH, {"sink": self.name, "outcome": "failure"})
        except Exception:  # noqa: BLE001 - even bookkeeping must not take the sink thread down
            log.exception("cannot record a failed push to %s", self.name)
        reason = str(exc) if isinstance(exc, PushError) else describe(exc)
        self.last_error = reason
        key = _same_failure_key(reason)
        context = {"sink": self.name, "duration_seconds": round(duration, 3)}
        if key != self._last_failure:
            log.warning("push to %s failed: %s (logged again only when the reason changes; see "
                        "databricks_exporter_push_total)", self.name, reason, extra=context)
            self._last_failure = key
        else:
            log.debug("push to %s failed again: %s", self.name, reason, extra=context)

    def start(self, stop_event: threading.Event | None = None) -> "Sink":
        self._thread = threading.Thread(target=self._run, args=(stop_event,), name=f"sink-{self.name}", daemon=True)
        self._thread.start()
        return self

    def _run(self, stop_event: threading.Event | None) -> None:
        def stopping() -> bool:
            return self._stop.is_set() or bool(stop_event and stop_event.is_set())

        # The first push happens at once: it sends current gauges and records the counters' baseline before the
        # collectors' first cycles land (see CloudWatchSink for why that matters).
        while not stopping():
            started = time.monotonic()
            try:
                self.push_once()
            except Exception:  # noqa: BLE001 - push_once does not raise; this is the last line of defence
                log.exception("sink %s: unexpected error", self.name)
            deadline = started + self.interval
            while not stopping() and (remaining := deadline - time.monotonic()) > 0:
                self._stop.wait(min(remaining, 1.0))

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        try:
            self.close()
        except Exception:  # noqa: BLE001
            log.debug("sink %s: error while closing", self.name, exc_info=True)
