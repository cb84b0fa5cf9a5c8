"""Sinks: readers of the metric store that push its families elsewhere (CloudWatch, OTLP) on their own interval;
importing this package registers them all."""

from __future__ import annotations

import logging

from .. import metrics as m
from . import cloudwatch, otlp  # noqa: F401  (registration happens on import)
from .base import SINKS, PushError, Sink, describe

log = logging.getLogger(__name__)

__all__ = ["SINKS", "Sink", "PushError", "start_sinks"]


def start_sinks(settings, store, stop_event) -> list[Sink]:
    """Start every enabled sink in the background; returns them (each has a stop()). A sink that cannot even be
    created is logged and counted as a failed push; the exporter runs on without it."""
    started: list[Sink] = []
    for name, sink_settings in settings.sinks.items():
        if not sink_settings.enabled:
            continue
        try:
            sink = SINKS[name](sink_settings, store, state_file=settings.state_file)
            log.info("sink %s starting", name, extra={"sink": name, "interval_seconds": sink_settings.interval})
            started.append(sink.start(stop_event))
        except Exception as exc:  # noqa: BLE001 - a sink must never stop the exporter
            log.error("cannot start sink %s: %s", name, describe(exc), extra={"sink": name})
            store.inc(m.PUSH, {"sink": name, "outcome": "failure"})
    return started
