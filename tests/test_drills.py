"""Drills: the exporter under damage, as an operator would meet it. Each drill is bounded in time."""

from __future__ import annotations

import json
import time

import pytest

from conftest import fast_config, wait_for
from test_integration import parse, total

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("content", [b'{"version": 1, "collectors": {"1/jobs": {"runs"', b"\x00\xff garbage",
                                     b"", b'{"version": 1, "counters": {"databricks_job_runs_total": [["x"]]}}'])
def test_a_damaged_state_file_means_a_warning_and_a_fresh_start(exporter_factory, content):
    exporter = exporter_factory(fast_config())
    exporter.state_file.write_bytes(content)
    started = time.time()
    exporter.start()
    samples = parse(exporter.metrics())
    since = total(samples, "databricks_exporter_counting_since_timestamp_seconds", collector="jobs")
    assert abs(since - (started - 3600)) < 60          # counting starts afresh from the lookback
    assert total(samples, "databricks_exporter_collector_up") >= 3
    assert "damaged" in exporter.log() and exporter.state_file.with_suffix(".json.corrupt").exists()
    # and the fresh state it writes is whole JSON again
    wait_for(lambda: json.loads(exporter.state_file.read_text()).get("version") == 1, 20, what="a new state file")
