"""Faults in the simulated workspace (POST /simulator/faults) and the exporter riding them out: throttling,
outages, garbage answers and expiring tokens."""

from __future__ import annotations

import json
import statistics
import time
import urllib.request

import pytest

from conftest import converge_on_truth, fast_config, http_get, truth, wait_for
from test_integration import parse, total

pytestmark = pytest.mark.integration


def set_faults(simulator, spec: dict | None) -> dict:
    method, data = ("POST", json.dumps(spec).encode()) if spec is not None else ("DELETE", None)
    request = urllib.request.Request(simulator.url + "/simulator/faults", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def raw(simulator, path: str) -> tuple[int, dict, bytes]:
    return http_get(simulator.url + path, {"Authorization": f"Bearer {simulator.token}"})


def test_each_fault_answers_as_specified(simulator):
    runs = "/api/2.2/jobs/runs/list?limit=25"
    for kind, check in [
        ("rate_limited", lambda s, h, b: s == 429 and h["Retry-After"] == "3"
         and json.loads(b)["error_code"] == "REQUEST_LIMIT_EXCEEDED"),
        ("server_error", lambda s, h, b: s == 500 and json.loads(b)["error_code"] == "INTERNAL_ERROR"),
        ("unavailable", lambda s, h, b: s == 503 and "Retry-After" in h),
        ("malformed", lambda s, h, b: s == 200 and not _is_json(b)),
        ("truncated", lambda s, h, b: s == 200 and not _is_json(b) and b.startswith(b'{"runs"')),
    ]:
        set_faults(simulator, {"rules": [{"endpoint": "GET /api/2.2/jobs/runs/list", kind: 1.0, "retry_after": 3}]})
        assert check(*raw(simulator, runs)), kind
        assert raw(simulator, "/api/2.2/jobs/list")[0] == 200      # other endpoints are untouched
    set_faults(simulator, {"rules": [{"endpoint": "GET /api/2.2/jobs/runs/list", "dropped": 1.0}]})
    with pytest.raises(OSError):
        urllib.request.urlopen(urllib.request.Request(simulator.url + runs, headers={
            "Authorization": f"Bearer {simulator.token}"}), timeout=5).read()
    set_faults(simulator, {"rules": [{"endpoint": ".*/runs/list", "slow": 1.0, "slow_seconds": 1.5}]})
    started = time.monotonic()
    assert raw(simulator, runs)[0] == 200 and time.monotonic() - started >= 1.5
    set_faults(simulator, {"token_expired": True})
    assert raw(simulator, runs)[0] == 401
    described = set_faults(simulator, None)
    assert described["rules"] == [] and raw(simulator, runs)[0] == 200


def _is_json(body: bytes) -> bool:
    try:
        json.loads(body)
        return True
    except ValueError:
        return False


def test_faults_are_deterministic_by_seed_and_validated(simulator):
    def statuses():
        set_faults(simulator, {"seed": 42, "rules": [{"endpoint": "*", "server_error": 0.5}]})
        return [raw(simulator, "/api/2.2/jobs/list?limit=1")[0] for _ in range(20)]

    first = statuses()
    assert first == statuses() and 3 <= first.count(500) <= 17
    for bad in ({"rules": [{"endpoint": "*", "server_error": 1.5}]}, {"rulez": []},
                {"rules": [{"endpoint": "*", "server_error": 0.6, "rate_limited": 0.6}]}):
        with pytest.raises(urllib.error.HTTPError) as error:
            set_faults(simulator, bad)
        assert error.value.code == 400
    set_faults(simulator, None)


def test_throttling_and_outage_drill(simulator, exporter_factory):
    """Half of all requests answer 429 or 5xx for two minutes: /metrics keeps answering 200 quickly, the affected
    collectors say so in their own metrics, and once the faults clear the counters catch up with the truth."""
    exporter = exporter_factory(fast_config()).start()
    since = total(parse(exporter.metrics()), "databricks_exporter_counting_since_timestamp_seconds", collector="jobs")
    set_faults(simulator, {"seed": 3, "rules": [{"endpoint": "*", "rate_limited": 0.2, "retry_after": 1,
                                                   "server_error": 0.15, "unavailable": 0.15}]})
    latencies, down_seen, deadline = [], set(), time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            started = time.monotonic()
            status, _, body = http_get(exporter.url + "/metrics", timeout=5)
            latencies.append(time.monotonic() - started)
            assert status == 200
            down_seen |= {labels["collector"] for name, labels, value in parse(body.decode())
                          if name == "databricks_exporter_collector_up" and value == 0}
            time.sleep(0.5)
    finally:
        injected = json.loads(http_get(simulator.url + "/simulator/faults")[2])["injected"]
        set_faults(simulator, None)
    assert sum(injected.values()) > 20, injected
    assert max(latencies) < 1.0 and statistics.median(latencies) < 0.1, (max(latencies), statistics.median(latencies))
    assert {"jobs", "clusters", "warehouses"} & down_seen, down_seen
    converge_on_truth(simulator, lambda: total(parse(exporter.metrics()), "databricks_job_runs_total"),
                      lambda: truth(simulator, since)["job_runs"]["total"], timeout=60,
                      what="job runs to catch up with the truth")
    assert total(parse(exporter.metrics()), "databricks_exporter_collector_up", collector="jobs") == 1


def test_expired_pat_fails_the_collectors_until_it_is_rotated(simulator, exporter_factory):
    exporter = exporter_factory(fast_config()).start()
    set_faults(simulator, {"token_expired": True})
    try:
        wait_for(lambda: all(total(parse(exporter.metrics()), "databricks_exporter_collector_up", collector=c) == 0
                             for c in ("jobs", "clusters", "warehouses")), 30, what="the collectors down on 401")
    finally:
        set_faults(simulator, None)
    wait_for(lambda: total(parse(exporter.metrics()), "databricks_exporter_collector_up",
                           collector="warehouses") == 1, 30, what="recovery")
    assert simulator.token not in exporter.log()


def test_short_lived_oauth_tokens_are_refreshed(simulator, exporter_factory):
    set_faults(simulator, {"oauth_token_ttl": 15})
    try:
        exporter = exporter_factory(fast_config(), env={"DATABRICKS_TOKEN": "", "DATABRICKS_CLIENT_ID":
                                                        simulator.client_id, "DATABRICKS_CLIENT_SECRET":
                                                        simulator.client_secret})
        exporter.env.pop("DATABRICKS_TOKEN")
        exporter.start()
        time.sleep(40)   # several token lifetimes
        samples = parse(exporter.metrics())
        assert total(samples, "databricks_exporter_collector_up", collector="warehouses") == 1
        refused = total(samples, "databricks_exporter_api_requests_total", status_code="401")
        assert refused == 0, f"{refused} requests were refused with 401"
        assert simulator.client_secret not in exporter.log()
    finally:
        set_faults(simulator, None)
