"""The exposition: byte for byte what prometheus_client writes for the same families, in both formats; the gzip body
assembled from per-family blocks is the plain body; a store update re-renders only what it touched; a scrape never
waits behind another scrape's render."""

from __future__ import annotations

import gzip
import math

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import openmetrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import CollectorRegistry

from databricks_exporter import exposition
from databricks_exporter import metrics as m
from databricks_exporter.exposition import Renderer, format_family
from databricks_exporter.cycle import Cycle, Family, Histogram
from databricks_exporter.store import MetricStore

# A metric that no definition has: a help text and a unit the real ones do not exercise.
ODD = m.Metric("databricks_test_odd_ratio", m.GAUGE, 'Help with "quotes", a back\\slash\nand a newline.',
               ("zeta", "alpha", "le_not"), unit="bytes")
METRICS = sorted(m.REGISTRY.values(), key=lambda metric: metric.name) + [ODD]


def reference(family: Family, openmetrics_format: bool) -> bytes:
    """prometheus_client's own rendering of the family."""
    metric = family.metric
    labels = list(metric.labels)
    if metric.type == m.COUNTER:
        out = CounterMetricFamily(metric.name, metric.help, labels=labels)
        for values, value in family.samples:
            out.add_metric(list(values), value)
    elif metric.type == m.HISTOGRAM:
        out = HistogramMetricFamily(metric.name, metric.help, labels=labels, unit=metric.unit)
        for values, hist in family.samples:
            out.add_metric(list(values), [(exposition._bound(b), c) for b, c in hist.cumulative(metric)], hist.sum)
    else:
        out = GaugeMetricFamily(metric.name, metric.help, labels=labels, unit=metric.unit)
        for values, value in family.samples:
            out.add_metric(list(values), value)

    class One:
        def collect(self):
            return [out]

    registry = CollectorRegistry(auto_describe=False)
    registry.register(One())
    if openmetrics_format:
        return openmetrics.exposition.generate_latest(registry)[:-len(b"# EOF\n")]
    return generate_latest(registry)


label_text = st.text(alphabet=st.sampled_from('ab_\\"\n{}=,é☃ 0'), max_size=6)
numbers = st.floats(allow_nan=True) | st.integers(-10**12, 10**12) | st.sampled_from([0.1, 1e21, 1e-7, 123456789.0])


@st.composite
def families(draw):
    metric = draw(st.sampled_from(METRICS))
    keys = draw(st.lists(st.tuples(*[label_text for _ in metric.labels]), max_size=4, unique=True))
    samples = []
    for values in sorted(keys):
        if metric.type == m.HISTOGRAM:
            counts = draw(st.lists(st.integers(0, 10**6), min_size=len(metric.buckets) + 1,
                                   max_size=len(metric.buckets) + 1))
            samples.append((values, Histogram(counts, draw(st.floats(0, 1e9) | st.integers(0, 10**9)))))
        else:
            value = draw(numbers)
            samples.append((values, abs(value) if metric.type == m.COUNTER and not math.isnan(value) else value))
    return Family(metric, samples)


@settings(max_examples=300, deadline=None)
@given(family=families(), openmetrics_format=st.booleans())
def test_a_family_renders_exactly_as_prometheus_client_renders_it(family, openmetrics_format):
    assert format_family(family, openmetrics_format) == reference(family, openmetrics_format)


def store_with(jobs: int) -> MetricStore:
    store = MetricStore()
    cycle = Cycle("1")
    for j in range(jobs):
        cycle.gauge(m.JOB_INFO, 1, job_id=str(j), job_name=f'job "{j}"', schedule_paused="false")
        cycle.inc(m.JOB_RUNS, j + 1, job_id=str(j), result_state="SUCCESS", trigger="PERIODIC")
        cycle.observe(m.JOB_RUN_DURATION, j * 10.0, job_id=str(j))
    store.commit("1/jobs", cycle, {})
    return store


def whole(store: MetricStore, openmetrics_format: bool) -> bytes:
    body = b"".join(reference(family, openmetrics_format) for family in store.families())
    return body + (b"# EOF\n" if openmetrics_format else b"")


def test_gzip_body_is_the_plain_body_and_follows_every_update():
    store = store_with(50)
    renderer = Renderer(store)
    for step in range(3):
        for openmetrics_format in (False, True):
            plain = renderer.render(openmetrics_format)
            assert plain == whole(store, openmetrics_format)
            assert gzip.decompress(renderer.render(openmetrics_format, gzipped=True)) == plain
        store.inc(m.API_REQUESTS, {"workspace_id": "1", "endpoint": f"/api/{step}", "status_code": "200"})


def test_an_update_re_renders_only_the_families_it_touched(monkeypatch):
    store = store_with(20)
    renderer = Renderer(store)
    renderer.render(gzipped=True)
    rendered = []
    original = exposition.format_family
    monkeypatch.setattr(exposition, "format_family",
                        lambda family, om: rendered.append(family.metric.name) or original(family, om))
    store.inc(m.API_REQUESTS, {"workspace_id": "1", "endpoint": "/api/x", "status_code": "200"})
    body = gzip.decompress(renderer.render(gzipped=True))
    assert rendered == ["databricks_exporter_api_requests_total"]
    assert b'endpoint="/api/x"' in body and b'job_name="job \\"19\\""' in body
    # A family whose last sample goes leaves the exposition.
    store.set_gauges("1/jobs", {})
    store.commit("1/jobs", Cycle("1"), {})
    assert b"databricks_job_info" not in renderer.render()


def test_a_scrape_during_another_render_gets_the_previous_body_without_waiting():
    store = store_with(3)
    renderer = Renderer(store)
    before = renderer.render(gzipped=True)
    store.inc(m.API_REQUESTS, {"workspace_id": "1", "endpoint": "/api/y", "status_code": "200"})
    with renderer._lock:            # as if another scrape were rendering the update
        assert renderer.render(gzipped=True) is before
    after = renderer.render(gzipped=True)
    assert after is not before and b'endpoint="/api/y"' in gzip.decompress(after)
    assert renderer.render(gzipped=True) is after
