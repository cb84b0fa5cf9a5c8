"""CloudWatch sink: the store's families as PutMetricData datums (gauges as values, counters as increases since the
last push, histograms as statistic sets), with a curated default set because every CloudWatch metric costs money.

Counters are never sent as their cumulative value: CloudWatch sums datapoints, so a datum is the increase since the
previous push. The cumulative value each series had at the last successful push is kept in a small sidecar file next
to the exporter's state file (state.json -> state.cloudwatch.json). Because the store persists its counters, a
restart then sends exactly what happened since the last push before it: no spike, no gap, never negative. Without a
(fresh) sidecar, the first push only records a baseline. A series seen for the first time is sent in full only when
its collector had already finished a cycle at the previous push; otherwise it is the lookback backfill of a first
cycle, which is history rather than news, and only becomes the baseline."""

from __future__ import annotations

import datetime
import logging
import math
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Callable

from .. import __version__
from .. import metrics as m
from ..cycle import Family, Histogram
from .base import (MetricFilter, PushError, Sink, describe, read_sidecar, register, sidecar_path,
                   write_sidecar)

log = logging.getLogger(__name__)

# The families worth paying for by default: health of the exporter, cluster fleet, warehouse scale, and the job
# outcomes and durations that alerts are built on. Everything else is one `include` away.
DEFAULT_INCLUDE = [
    r"^databricks_exporter_collector_up$",
    r"^databricks_clusters$",
    r"^databricks_cluster_terminations_total$",
    r"^databricks_warehouse_clusters$",
    r"^databricks_job_runs_total$",
    r"^databricks_job_run_duration_seconds$",
    r"^databricks_job_run_retries_total$",
    r"^databricks_job_runs_active$",
]
# Labels that become dimensions by default: bounded by what a workspace configures (jobs, warehouses) or by an
# enumeration (states, results, sources, reasons). Left out: ids of ephemeral things (cluster_id: every job run gets a
# new cluster), names (they duplicate ids and change), trigger, task_key, endpoint and the like. Labels that are not
# dimensions are aggregated away.
DEFAULT_DIMENSIONS = [
    "workspace_id", "collector", "sink", "outcome", "state", "status", "result_state", "cluster_source",
    "termination_code", "warehouse_id", "job_id",
]

# PutMetricData limits (https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricData.html).
MAX_DATUMS_PER_REQUEST = 1000
MAX_REQUEST_BYTES = 1_000_000
MAX_DIMENSIONS = 30
MAX_VALUES_PER_DATUM = 150
MAX_DIMENSION_VALUE = 1024
# What a request carries besides its datums (action, version, namespace), with room to spare.
REQUEST_OVERHEAD_BYTES = 2048
VALUE_LIMIT = 2.0 ** 360          # CloudWatch rejects values beyond +-2^360 ...
VALUE_TINY = 1e-100               # ... and rounds tiny ones; send those as 0

SIDECAR_VERSION = 1
AGGREGATIONS: dict[str, Callable[[list[float]], float]] = {
    "sum": sum, "max": max, "min": min, "avg": lambda values: sum(values) / len(values)}

SeriesKey = tuple[str, tuple[str, ...]]


def cloudwatch_unit(metric: m.Metric) -> tuple[str, float]:
    """The CloudWatch unit of a metric and the factor its values are multiplied by (ratios are sent as percent)."""
    if metric.type == m.COUNTER:
        return "Count", 1.0
    if metric.name.endswith("_ratio"):
        return "Percent", 100.0
    if metric.name.endswith("_timestamp_seconds"):
        return "None", 1.0        # a point in time, not a duration
    if metric.unit == "seconds":
        return "Seconds", 1.0
    if metric.unit == "bytes":
        return "Bytes", 1.0
    return "None", 1.0


def default_gauge_aggregation(metric: m.Metric) -> str:
    """How a gauge's series that differ only in labels that are not dimensions combine into one datum.

    Counts of things (clusters, workers, active runs, info and state metrics) add up; points in time keep the latest;
    durations and ratios keep the worst; an up metric keeps 0 if any series is down."""
    if metric.name.endswith("_timestamp_seconds"):
        return "max"
    if metric.name.endswith("_up"):
        return "min"
    if metric.unit == "seconds" or metric.name.endswith("_ratio"):
        return "max"
    return "sum"


def _dimension_value(value: str) -> str | None:
    """CloudWatch wants 1-1024 ASCII characters, not all blank. One bad datum fails its whole request, so values are
    made valid here; an empty label (absent, in Prometheus terms) is no dimension at all."""
    if not value or not value.strip():
        return None
    value = value.encode("ascii", "replace").decode("ascii")
    return value[:MAX_DIMENSION_VALUE]


def _finite(value: float) -> float | None:
    if value is None or not math.isfinite(value) or abs(value) >= VALUE_LIMIT:
        return None
    return 0.0 if abs(value) < VALUE_TINY else float(value)


def estimate_size(payload: dict) -> int:
    """Bytes a datum adds to a request in the bulkiest wire format botocore may use (the query protocol, where every
    field is `MetricData.member.N.Path=url-encoded-value&`); the JSON and CBOR encodings are smaller."""
    size = 0

    def walk(path: str, value: Any) -> None:
        nonlocal size
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{path}.{key}", item)
        elif isinstance(value, list):
            for index, item in enumerate(value, 1):
                walk(f"{path}.member.{index}", item)
        else:
            text = value.isoformat() if isinstance(value, datetime.datetime) else str(value)
            size += len("MetricData.member.1000") + len(path) + len(urllib.parse.quote(text, safe="")) + 2

    walk("", payload)
    return size


@dataclass
class Datum:
    payload: dict
    # The raw series this datum accounts for, with the cumulative value it accounts up to: they become the
    # baseline only when the request carrying the datum succeeds.
    sources: list[tuple[SeriesKey, Any]] = field(default_factory=list)

    @property
    def size(self) -> int:
        return estimate_size(self.payload)


def batches(datums: list[Datum]):
    """Requests of at most 1000 datums and 1 MB."""
    batch: list[Datum] = []
    size = 0
    for datum in datums:
        datum_size = datum.size
        if batch and (len(batch) >= MAX_DATUMS_PER_REQUEST
                      or size + datum_size > MAX_REQUEST_BYTES - REQUEST_OVERHEAD_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(datum)
        size += datum_size
    if batch:
        yield batch


def _snapshot(value: Any) -> Any:
    return (list(value.counts), value.sum) if isinstance(value, Histogram) else float(value)


def _increase(previous: Any, value: Any) -> Any:
    """What a cumulative series gained since `previous` (None: since zero). A decrease means the series was reset,
    and then all of its new value is the increase. Never negative."""
    if isinstance(value, Histogram):
        if previous is None:
            return list(value.counts), value.sum
        counts, total = previous
        if len(counts) != len(value.counts) or any(now < before for now, before in zip(value.counts, counts)):
            return list(value.counts), value.sum
        return [now - before for now, before in zip(value.counts, counts)], max(0.0, value.sum - total)
    if previous is None:
        return float(value)
    return value - previous if value >= previous else float(value)


@register
class CloudWatchSink(Sink):
    name = "cloudwatch"
    options = {
        "namespace": ("str", "Databricks"),
        "region": ("str", None),
        "endpoint_url": ("str", None),
        "include": ("regex_list", DEFAULT_INCLUDE),
        "exclude": ("regex_list", []),
        "dimensions": ("str_list", DEFAULT_DIMENSIONS),
        "gauge_aggregation": ("dict", {}),
        "histograms": ("str", "statistics"),
        "storage_resolution": ("int", 60),
        "retry_mode": ("str", "standard"),
        "max_attempts": ("int", 5),
        "timeout": ("duration", 10.0),
        "request_compression": ("bool", True),
    }

    @classmethod
    def validate_options(cls, options, error):
        namespace = options["namespace"]
        if not namespace or len(namespace) > 255 or namespace.startswith("AWS/") or not namespace.isascii():
            raise error("must be 1-255 ASCII characters and not start with AWS/", "namespace")
        dimensions = options["dimensions"]
        if len(dimensions) > MAX_DIMENSIONS:
            raise error(f"CloudWatch allows at most {MAX_DIMENSIONS} dimensions, got {len(dimensions)}", "dimensions")
        if len(set(dimensions)) != len(dimensions):
            raise error("a label is listed twice", "dimensions")
        for name, how in options["gauge_aggregation"].items():
            if how not in AGGREGATIONS:
                raise error(f"{name}: must be one of {', '.join(AGGREGATIONS)}, got {how!r}", "gauge_aggregation")
        if options["histograms"] not in ("statistics", "buckets"):
            raise error(f"must be statistics or buckets, got {options['histograms']!r}", "histograms")
        if options["storage_resolution"] not in (1, 60):
            raise error("must be 60 (standard) or 1 (high resolution)", "storage_resolution")
        if options["retry_mode"] not in ("standard", "adaptive", "legacy"):
            raise error(f"must be standard, adaptive or legacy, got {options['retry_mode']!r}", "retry_mode")
        if options["max_attempts"] < 1:
            raise error("must be at least 1", "max_attempts")
        if options["timeout"] <= 0:
            raise error("must be greater than zero", "timeout")

    def __init__(self, settings, store, state_file=None, clock=time.time):
        super().__init__(settings, store, state_file, clock)
        options = settings.options
        self.namespace: str = options["namespace"]
        self.filter = MetricFilter(list(options["include"]), list(options["exclude"]))
        self.dimensions = set(options["dimensions"])
        self.gauge_aggregation = dict(options["gauge_aggregation"])
        self.histogram_mode = options["histograms"]
        self.storage_resolution = options["storage_resolution"]
        self._client = None
        self._session = None
        # Counter and histogram series: cumulative value at the last successful push.
        self.baseline: dict[SeriesKey, Any] = {}
        # (workspace_id, collector) pairs whose first cycle had finished at the previous push.
        self.settled: set[tuple[str, str]] = set()
        self.evaluated = False
        self.sidecar = sidecar_path(state_file, self.name)
        self._load_sidecar()

    # --- the baseline ------------------------------------------------------------------------------
    def _load_sidecar(self) -> None:
        document = read_sidecar(self.sidecar)
        if document is None:
            return
        max_age = max(3600.0, 10 * self.interval)
        age = self.clock() - float(document.get("saved_at", 0))
        if document.get("version") != SIDECAR_VERSION or document.get("namespace") != self.namespace:
            log.info("sink state %s is for another version or namespace; counters start from a fresh baseline",
                     self.sidecar, extra={"sink": self.name})
            return
        if age > max_age:
            # Sending hours of increases as one datum stamped now would be a spike, not news.
            log.info("sink state %s is %.0fs old; counters start from a fresh baseline", self.sidecar, age,
                     extra={"sink": self.name})
            return
        try:
            baseline: dict[SeriesKey, Any] = {}
            for name, labels, value in document.get("counters", []):
                baseline[(name, tuple(labels))] = float(value)
            for name, labels, counts, total in document.get("histograms", []):
                baseline[(name, tuple(labels))] = ([int(c) for c in counts], float(total))
            settled = {(str(ws), str(collector)) for ws, collector in document.get("settled", [])}
        except (TypeError, ValueError) as exc:
            log.warning("sink state %s is damaged (%s); counters start from a fresh baseline", self.sidecar, exc,
                        extra={"sink": self.name})
            return
        self.baseline, self.settled, self.evaluated = baseline, settled, bool(document.get("evaluated"))

    def _save_sidecar(self) -> None:
        counters, histograms = [], []
        for (name, labels), value in sorted(self.baseline.items()):
            if isinstance(value, tuple):
                histograms.append([name, list(labels), value[0], value[1]])
            else:
                counters.append([name, list(labels), value])
        try:
            write_sidecar(self.sidecar, {
                "version": SIDECAR_VERSION, "saved_at": self.clock(), "namespace": self.namespace,
                "evaluated": self.evaluated, "settled": sorted(self.settled),
                "counters": counters, "histograms": histograms})
        except OSError as exc:
            log.warning("cannot write sink state %s: %s", self.sidecar, exc, extra={"sink": self.name})

    def _is_settled(self, metric: m.Metric, labels: dict[str, str]) -> bool:
        workspace_id = labels.get("workspace_id")
        if workspace_id is None or metric.collector == "exporter":
            return self.evaluated
        return (workspace_id, metric.collector) in self.settled

    # --- datums ------------------------------------------------------------------------------------
    def _dimensions(self, metric: m.Metric, values: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
        dims = []
        for label, value in zip(metric.labels, values):
            if label in self.dimensions and (clean := _dimension_value(value)) is not None:
                dims.append((label, clean))
        return tuple(dims)

    def build(self, families: list[Family], timestamp: datetime.datetime
              ) -> tuple[list[Datum], dict[SeriesKey, Any], set[SeriesKey]]:
        """Datums for one push, the series to record as baseline without sending anything, and every cumulative
        series seen (the baseline forgets the others)."""
        gauges: dict[tuple[m.Metric, tuple], list[float]] = {}
        cumulative: dict[tuple[m.Metric, tuple], Datum] = {}     # counters and histograms, by datum
        totals: dict[tuple[m.Metric, tuple], Any] = {}
        quiet: dict[SeriesKey, Any] = {}
        seen: set[SeriesKey] = set()
        for family in families:
            metric = family.metric
            if not self.filter(metric.name):
                continue
            for values, value in family.samples:
                group = (metric, self._dimensions(metric, values))
                if metric.type == m.GAUGE:
                    gauges.setdefault(group, []).append(float(value))
                    continue
                key = (metric.name, values)
                seen.add(key)
                previous = self.baseline.get(key)
                if previous is None and not self._is_settled(metric, dict(zip(metric.labels, values))):
                    quiet[key] = _snapshot(value)
                    continue
                increase = _increase(previous, value)
                if group not in cumulative:
                    cumulative[group] = Datum({})
                cumulative[group].sources.append((key, _snapshot(value)))
                if metric.type == m.COUNTER:
                    totals[group] = totals.get(group, 0.0) + increase
                else:
                    counts, total = totals.get(group, ([0] * len(increase[0]), 0.0))
                    totals[group] = ([a + b for a, b in zip(counts, increase[0])], total + increase[1])

        datums: list[Datum] = []
        for (metric, dims), samples in gauges.items():
            unit, scale = cloudwatch_unit(metric)
            how = self.gauge_aggregation.get(metric.name) or default_gauge_aggregation(metric)
            value = _finite(AGGREGATIONS[how](samples) * scale)
            if value is not None:
                datums.append(Datum(self._payload(metric, dims, unit, timestamp, Value=value)))
        for group, datum in cumulative.items():
            metric, dims = group
            unit, scale = cloudwatch_unit(metric)
            if metric.type == m.COUNTER:
                value = _finite(totals[group])
                if value is None:
                    continue
                datum.payload = self._payload(metric, dims, unit, timestamp, Value=value)
            else:
                counts, total = totals[group]
                if not sum(counts):
                    # No new observations: nothing to send (an empty distribution is no data in CloudWatch), but
                    # the baseline still moves to the current value.
                    quiet.update(datum.sources)
                    continue
                datum.payload = self._payload(metric, dims, unit, timestamp,
                                              **self._distribution(metric, counts, total))
            datums.append(datum)
        return datums, quiet, seen

    def _payload(self, metric: m.Metric, dims, unit: str, timestamp, **value) -> dict:
        payload = {"MetricName": metric.name, "Timestamp": timestamp, "Unit": unit, **value}
        if dims:
            payload["Dimensions"] = [{"Name": name, "Value": val} for name, val in dims]
        if self.storage_resolution != 60:
            payload["StorageResolution"] = self.storage_resolution
        return payload

    def _distribution(self, metric: m.Metric, counts: list[int], total: float) -> dict:
        """A histogram's new observations: a statistic set (exact count and sum; minimum and maximum are the bounds
        of the lowest and highest buckets that got observations), or in `buckets` mode one value per bucket with
        its count, which lets CloudWatch estimate percentiles."""
        bounds = list(metric.buckets)
        lower = [min(0.0, bounds[0]) if bounds else 0.0] + bounds            # lower bound of each bucket
        upper = bounds + [bounds[-1] if bounds else 0.0]                     # +Inf: the largest finite bound
        used = [i for i, count in enumerate(counts) if count]
        observations = sum(counts)
        if self.histogram_mode == "buckets" and len(used) <= MAX_VALUES_PER_DATUM:
            # Each bucket is represented by its midpoint (the +Inf bucket by the largest bound).
            values = [(lower[i] + upper[i]) / 2 if i < len(bounds) else upper[i] for i in used]
            return {"Values": values, "Counts": [float(counts[i]) for i in used]}
        mean = total / observations
        return {"StatisticValues": {"SampleCount": float(observations), "Sum": float(total),
                                    "Minimum": min(lower[used[0]], mean), "Maximum": max(upper[used[-1]], mean)}}

    # --- sending -----------------------------------------------------------------------------------
    def _cloudwatch(self):
        """The boto3 client, created on first use (credentials and region come from boto3's usual chain). The
        secrets the chain resolved are registered for redaction before any request can log them."""
        from ..logs import REDACT

        if self._client is None:
            import boto3
            from botocore.config import Config

            options = self.settings.options
            self._session = boto3.session.Session(region_name=options["region"])
            config = Config(
                # total_max_attempts counts the first attempt too, as AWS_MAX_ATTEMPTS does (botocore's
                # max_attempts would not).
                retries={"mode": options["retry_mode"], "total_max_attempts": options["max_attempts"]},
                connect_timeout=options["timeout"], read_timeout=options["timeout"],
                disable_request_compression=not options["request_compression"],
                user_agent_extra=f"databricks-exporter/{__version__}")
            self._client = self._session.client("cloudwatch", endpoint_url=options["endpoint_url"], config=config)
        credentials = self._session.get_credentials()
        if credentials is not None:
            frozen = credentials.get_frozen_credentials()
            REDACT.add(frozen.secret_key)
            REDACT.add(frozen.token)
        return self._client

    def push(self, families: list[Family]) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        timestamp = datetime.datetime.fromtimestamp(self.clock(), datetime.timezone.utc)
        datums, quiet, seen = self.build(families, timestamp)
        requests = list(batches(datums))
        sent, sent_requests, errors = 0, 0, []
        accepted: dict[SeriesKey, Any] = {}
        try:
            client = self._cloudwatch() if requests else None
            for batch in requests:
                try:
                    client.put_metric_data(Namespace=self.namespace, MetricData=[d.payload for d in batch])
                except ClientError as exc:
                    # Something in this request was refused (after botocore's retries for throttling); the
                    # other requests may still go through.
                    errors.append(describe(exc))
                    continue
                for datum in batch:
                    accepted.update(datum.sources)
                sent += len(batch)
                sent_requests += 1
        except Exception as exc:  # noqa: BLE001 - no client, no network, no credentials: stop this push here
            errors.append(describe(exc))
        finally:
            self._advance(quiet, accepted, seen, families)
        if errors:
            raise PushError(f"{len(requests) - sent_requests} of {len(requests)} PutMetricData requests failed "
                            f"({sent} of {len(datums)} datums sent): {errors[0]}")
        return {"datums": sent, "requests": sent_requests}

    def _advance(self, quiet, accepted, seen, families: list[Family]) -> None:
        """Move the baseline to what CloudWatch now has; series whose request failed keep their old baseline, so
        the next push sends their increase since the last push that reached CloudWatch."""
        baseline = {key: value for key, value in self.baseline.items() if key in seen}
        baseline.update(quiet)
        baseline.update(accepted)
        self.baseline = baseline
        for family in families:
            if family.metric is m.COLLECTOR_LAST_SUCCESS:
                ws_index, collector_index = (family.metric.labels.index("workspace_id"),
                                             family.metric.labels.index("collector"))
                self.settled.update((values[ws_index], values[collector_index]) for values, _ in family.samples)
        self.evaluated = True
        self._save_sidecar()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
