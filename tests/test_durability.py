"""Counting over weeks, one collector at a time and without a network: restarts days apart, cycles that fail half
way, entities that drop out of one listing and come back. The clock is a variable here."""

from __future__ import annotations

import json

from databricks_exporter import metrics as m
from databricks_exporter.collectors import COLLECTORS
from databricks_exporter.config import CollectorSettings
from databricks_exporter.cycle import Cycle
from databricks_exporter.sources.errors import Unavailable
from databricks_exporter.store import MetricStore

DAY = 86400.0
T0 = 1_760_000_000.0


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeRest:
    """The REST source's cluster calls over a list of cluster payloads the test edits."""

    def __init__(self):
        self.clusters_by_id: dict[str, dict] = {}
        self.events: dict[str, list[dict]] = {}
        self.events_fail = False

    def clusters(self, states):
        return [c for c in self.clusters_by_id.values() if c["state"] in states]

    def cluster(self, cluster_id):
        return self.clusters_by_id[cluster_id]

    def cluster_events(self, cluster_id, start_ms, end_ms=None):
        if self.events_fail:
            raise Unavailable("503 from /api/2.1/clusters/events")
        return [e for e in self.events.get(cluster_id, []) if e["timestamp"] >= start_ms]


class FakeWorkspace:
    def __init__(self, rest):
        self.rest = rest


def collector(name: str, rest, clock: Clock, **options):
    spec = COLLECTORS[name]
    defaults = {key: default for key, (_, default) in spec.options.items()}
    settings = CollectorSettings(name, True, spec.default_interval, 30.0, {**defaults, **options})
    return spec(FakeWorkspace(rest), settings, 3600.0, clock)


def run(store: MetricStore, coll, owner: str) -> bool:
    """One cycle as the engine runs it: collect, commit, tell the collector; a failed collect commits nothing."""
    state, cycle = store.state(owner), Cycle("1")
    try:
        coll.collect(cycle, state)
    except Unavailable:
        return False
    store.commit(owner, cycle, state)
    coll.committed(state)
    return True


def terminations(store: MetricStore) -> float:
    return sum(value for f in store.families() if f.metric is m.CLUSTER_TERMINATIONS for _, value in f.samples)


def terminated(cluster_id: str, at: float) -> dict:
    return {"cluster_id": cluster_id, "state": "TERMINATED", "cluster_source": "JOB", "terminated_time": int(at * 1000),
            "termination_reason": {"code": "JOB_FINISHED", "type": "SUCCESS"}}


def test_a_termination_is_not_counted_again_by_a_restart_after_days_of_uptime(tmp_path):
    path = str(tmp_path / "state.json")
    rest, clock = FakeRest(), Clock(T0)
    store = MetricStore(path)
    coll = collector("clusters", rest, clock, events=False)
    assert run(store, coll, "1/clusters")
    rest.clusters_by_id["c1"] = {**terminated("c1", 0), "state": "RUNNING"}
    clock.now += 30
    assert run(store, coll, "1/clusters")
    rest.clusters_by_id["c1"] = terminated("c1", clock.now + 10)
    for _ in range(4):          # the termination is counted, then the exporter stays up three days
        clock.now += DAY * 0.75
        assert run(store, coll, "1/clusters")
    assert terminations(store) == 1
    restarted = MetricStore(path)
    restarted.load()
    assert run(restarted, collector("clusters", rest, clock, events=False), "1/clusters")
    assert terminations(restarted) == 1


def test_terminations_of_the_downtime_are_counted_even_when_the_first_cycle_fails(tmp_path):
    rest, clock = FakeRest(), Clock(T0)
    rest.clusters_by_id["c1"] = {"cluster_id": "c1", "state": "RUNNING", "cluster_source": "UI"}
    rest.events["c1"] = [{"timestamp": int(T0 * 1000), "type": "RUNNING"}]
    store = MetricStore(str(tmp_path / "state.json"))
    assert run(store, collector("clusters", rest, clock), "1/clusters")
    # Down for an hour, during which job cluster c2 ran and ended; the first cycle after the start fails late (the
    # events call), so the next one must scan the terminated clusters again.
    rest.clusters_by_id["c2"] = terminated("c2", T0 + 1800)
    clock.now += 3600
    rest.events["c1"].append({"timestamp": int(clock.now * 1000) - 5, "type": "RESIZING"})
    coll = collector("clusters", rest, clock)
    rest.events_fail = True
    assert not run(store, coll, "1/clusters")
    rest.events_fail = False
    clock.now += 30
    assert run(store, coll, "1/clusters")
    assert terminations(store) == 1


def cluster_events(store: MetricStore, cluster_id: str) -> float:
    return sum(value for f in store.families() if f.metric is m.CLUSTER_EVENTS
               for values, value in f.samples if values[1] == cluster_id)


def test_a_restarted_cluster_goes_on_from_its_events_cursor(tmp_path):
    rest, clock = FakeRest(), Clock(T0)
    running = {"cluster_id": "c1", "state": "RUNNING", "cluster_source": "UI", "start_time": int(T0 * 1000)}
    rest.clusters_by_id["c1"] = running
    rest.events["c1"] = [{"timestamp": int(T0 * 1000) - 60_000, "type": "CREATING"},
                         {"timestamp": int(T0 * 1000) - 1000, "type": "RUNNING"}]
    store = MetricStore(str(tmp_path / "state.json"))
    coll = collector("clusters", rest, clock)
    assert run(store, coll, "1/clusters")
    assert cluster_events(store, "c1") == 2
    rest.clusters_by_id["c1"] = terminated("c1", T0 + 60)
    rest.events["c1"].append({"timestamp": int(T0 * 1000) + 60_000, "type": "TERMINATING"})
    clock.now += 120
    assert run(store, coll, "1/clusters")
    assert cluster_events(store, "c1") == 2        # terminated: its series stays for the retention
    clock.now += 2 * DAY                              # restarted two days later
    rest.clusters_by_id["c1"] = {**running, "last_restarted_time": int(clock.now * 1000)}
    rest.events["c1"].append({"timestamp": int(clock.now * 1000) - 1000, "type": "RESTARTING"})
    assert run(store, coll, "1/clusters")
    assert cluster_events(store, "c1") == 4        # TERMINATING and RESTARTING, nothing twice
    rest.clusters_by_id["c1"] = terminated("c1", clock.now + 10)
    clock.now += 8 * DAY                              # gone for longer than the retention: forgotten
    assert run(store, coll, "1/clusters")
    assert cluster_events(store, "c1") == 0


def test_a_collector_state_of_the_wrong_shape_resets_that_collector_alone(tmp_path, caplog):
    from databricks_exporter.config import Settings, WorkspaceSettings
    from databricks_exporter.engine import Engine

    path = tmp_path / "state.json"
    jobs_state = {"counting_since": T0 - 3600, "runs": {"watermark": 1, "seen": {}}}
    path.write_text(json.dumps({"version": 2, "collectors": {
        "1/clusters": {"counting_since": T0 - 86400, "alive": ["c1"], "events": {}},
        "1/jobs": jobs_state}, "counters": {}, "histograms": {}}))
    store = MetricStore(str(path))
    store.load()
    rest, clock = FakeRest(), Clock(T0)
    settings = Settings(workspaces=[WorkspaceSettings("w", {})],
                        collectors={"clusters": CollectorSettings("clusters", True, 30, 30)})
    engine = Engine(settings, store, clock)
    workspace = engine.workspaces[0]
    workspace.rest, workspace.workspace_id = rest, "1"
    assert engine.run_cycle(workspace, collector("clusters", rest, clock))
    assert "unusable (alive is a list, not a dict); it alone starts afresh" in caplog.text
    assert store.state("1/clusters")["alive"] == {} and store.state("1/clusters")["counting_since"] == T0 - 3600
    assert store.state("1/jobs") == jobs_state


def test_the_exporter_refuses_to_start_on_a_state_file_from_a_newer_version(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "state.json"
    path.write_text('{"version": 3}')
    env = {"DATABRICKS_HOST": "http://127.0.0.1:9", "DATABRICKS_TOKEN": "x" * 10, "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "databricks_exporter", "once", "--state.file", str(path)], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"the state file {path} has version 3, written by a newer exporter" in result.stderr
    assert path.read_text() == '{"version": 3}'


def test_a_terminated_job_cluster_is_forgotten_at_once():
    # A job cluster never runs again once terminated: keeping its events cursor and counters for the retention would
    # only grow the state and /metrics with every job run.
    rest, clock = FakeRest(), Clock(T0)
    rest.clusters_by_id["j1"] = {"cluster_id": "j1", "state": "RUNNING", "cluster_source": "JOB",
                                 "start_time": int(T0 * 1000)}
    rest.events["j1"] = [{"timestamp": int(T0 * 1000) - 1000, "type": "RUNNING"}]
    store = MetricStore()
    coll = collector("clusters", rest, clock)
    assert run(store, coll, "1/clusters")
    assert cluster_events(store, "j1") == 1
    rest.clusters_by_id["j1"] = {**terminated("j1", T0 + 60), "cluster_source": "JOB"}
    clock.now += 120
    assert run(store, coll, "1/clusters")
    assert cluster_events(store, "j1") == 0 and terminations(store) == 1
    assert store.state("1/clusters")["events"] == {} and store.state("1/clusters")["last_listed"] == {}
