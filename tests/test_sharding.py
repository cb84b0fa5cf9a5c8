"""Sharding as it runs: six simulated workspaces, three exporter processes with one configuration and shard indexes
0..2, one real Prometheus scraping all three with the project's alert rules loaded.

What the test's copy of alerts.yml changes, and nothing else: DatabricksExporterDown's `for:` is 3s instead of 5m,
so the drill does not wait five minutes.
"""

from __future__ import annotations

import contextlib
import json
import signal
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

from databricks_exporter.config import WorkspaceSettings, shard_of

from conftest import ROOT, ExporterProcess, http_get, wait_for

pytestmark = pytest.mark.integration

SHARDS = 3
PER_SHARD = 2
WORKSPACE_IDS = [str(1000 + i) for i in range(SHARDS * PER_SHARD)]    # hand-picked, one per simulated workspace
ALERT = "DatabricksExporterDown"
# The same file for every shard; only the environment differs, as in a StatefulSet.
CONFIG = {
    "lookback": "15m",
    "shard": {"index": "${SHARD_INDEX}", "count": SHARDS},
    "collectors": {
        "jobs": {"interval": "1s"}, "clusters": {"interval": "2s"}, "warehouses": {"interval": "2s"},
        **{name: {"enabled": False} for name in ("queries", "pipelines", "billing", "utilization", "tables",
                                                "custom")},
    },
}


def start_workspaces(stack: contextlib.ExitStack) -> list:
    """Six small simulated workspaces, two in each shard. Ports are random and a workspace's shard is a hash of
    its URL, so any six could leave a shard empty and the kill below would prove nothing: start workspaces until
    every shard has two, and stop the others. (Only the set-up uses shard_of; the assertions look at what the
    exporters serve.)"""
    from databricks_sim.server import SimulatorServer

    kept: dict[int, list] = {shard: [] for shard in range(SHARDS)}
    for attempt in range(200):
        if all(len(servers) == PER_SHARD for servers in kept.values()):
            break
        workspace_id = WORKSPACE_IDS[sum(map(len, kept.values()))]
        server = SimulatorServer(port=0, seed=100 + attempt, workspace_id=int(workspace_id), n_clusters=4,
                                 n_jobs=12, n_warehouses=1, n_pipelines=1, history_seconds=3600).start()
        shard = shard_of(WorkspaceSettings(name=workspace_id, auth={"host": server.url}), SHARDS)
        if len(kept[shard]) < PER_SHARD:
            kept[shard].append(server)
            stack.callback(server.shutdown)
        else:
            server.shutdown()
    servers = [server for shard in kept.values() for server in shard]
    assert len(servers) == len(WORKSPACE_IDS)
    return servers


def rules_with_short_exporter_down(directory) -> str:
    rules = yaml.safe_load((ROOT / "prometheus" / "rules" / "alerts.yml").read_text())
    [rule] = [r for group in rules["groups"] for r in group["rules"] if r.get("alert") == ALERT]
    rule["for"] = "3s"
    path = directory / "alerts.yml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return str(path)


def settles(actual, expected, timeout: float) -> None:
    """Poll until actual() == expected; past the deadline, compare once more so the failure shows the difference."""
    try:
        wait_for(lambda: actual() == expected, timeout, what=f"{actual.__name__}() == {expected}")
    except AssertionError:
        assert actual() == expected


def post(server, path: str) -> None:
    urllib.request.urlopen(urllib.request.Request(server.url + path, method="POST", data=b""), timeout=10).read()


def test_three_shards_split_six_workspaces_and_one_going_down_pages_for_itself_alone(tmp_path, prometheus_factory):
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        servers = start_workspaces(stack)
        config = {**CONFIG, "workspaces": [{"name": f"ws-{s.workspace.workspace_id}", "host": s.url,
                                            "token": s.token} for s in servers]}
        exporters = []
        for index in range(SHARDS):
            directory = tmp_path / f"shard{index}"
            directory.mkdir()
            exporter = ExporterProcess(directory, servers[0], json.loads(json.dumps(config)),
                                       env={"SHARD_INDEX": str(index)})
            stack.callback(exporter.kill, signal.SIGTERM)
            exporters.append(exporter)
        with ThreadPoolExecutor(SHARDS) as pool:
            list(pool.map(ExporterProcess.start, exporters))
        instances = [f"127.0.0.1:{e.port}" for e in exporters]
        prometheus = prometheus_factory(instances, rule_files=[rules_with_short_exporter_down(tmp_path)])

        def shards_serving() -> dict[str, list[str]]:
            """workspace_id -> the instances whose /metrics carry a series of it, as Prometheus sees them now."""
            pairs = prometheus.query('count by (instance, workspace_id) ({__name__=~"databricks_.+", '
                                     'workspace_id!=""})')
            seen: dict[str, list[str]] = {}
            for pair in pairs:
                seen.setdefault(pair["metric"]["workspace_id"], []).append(pair["metric"]["instance"])
            return seen

        def up() -> dict[str, str]:
            return {r["metric"]["instance"]: r["value"][1] for r in prometheus.query('up{job="databricks"}')}

        # Every workspace is served by exactly one shard, and every shard serves two. (Each target is scraped at its
        # own offset: look once every shard has been scraped.)
        wait_for(lambda: up() == dict.fromkeys(instances, "1"), 30, what="Prometheus to scrape every shard")
        wait_for(lambda: sorted(shards_serving()) == WORKSPACE_IDS, 60,
                 what=f"Prometheus to scrape all of {WORKSPACE_IDS}")
        serving = shards_serving()
        assert all(len(shards) == 1 for shards in serving.values()), serving
        owner = {workspace: shard for workspace, [shard] in serving.items()}
        assert sorted(list(owner.values()).count(instance) for instance in instances) == [2, 2, 2], owner

        # The union of the shards' job run counts is each workspace's truth since its jobs collector began counting.
        since = {r["metric"]["workspace_id"]: float(r["value"][1]) for r in prometheus.query(
            'databricks_exporter_counting_since_timestamp_seconds{collector="jobs"}')}
        assert sorted(since) == WORKSPACE_IDS, since
        for server in servers:
            post(server, "/simulator/pause")
        expected = {}
        for server in servers:
            workspace = str(server.workspace.workspace_id)
            truth = json.loads(http_get(f"{server.url}/simulator/truth?since={since[workspace]}")[2])
            expected[workspace] = float(truth["job_runs"]["total"])
        assert all(expected.values()), f"a workspace completed no run to count: {expected}"

        def job_runs() -> dict[str, float]:
            return {r["metric"]["workspace_id"]: float(r["value"][1])
                    for r in prometheus.query("sum by (workspace_id) (databricks_job_runs_total)")}

        settles(job_runs, expected, 60)

        # One shard dies: its alert fires, for it alone; the others' series stay as they were.
        victim = instances[1]
        exporters[1].kill(signal.SIGKILL)

        def after_the_kill() -> dict:
            firing = [a["metric"]["instance"] for a in prometheus.query(f'ALERTS{{alertname="{ALERT}"}}')
                      if a["metric"]["alertstate"] == "firing"]
            return {"firing": firing, "up": up(), "serving": shards_serving(), "job_runs": job_runs()}

        settles(after_the_kill, {
            "firing": [victim],
            "up": {instance: "0" if instance == victim else "1" for instance in instances},
            "serving": {w: [i] for w, i in owner.items() if i != victim},
            "job_runs": {w: n for w, n in expected.items() if owner[w] != victim},
        }, 30)
    print(f"sharding: {len(servers)} workspaces over {SHARDS} shards, job runs {expected}; "
          f"{time.monotonic() - started:.1f} s")
