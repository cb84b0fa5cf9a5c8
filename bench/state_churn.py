"""Benchmark: the state file after a simulated week of churn at the benchmark's scale, and what one save costs.

The clusters collector runs for real, on a simulated clock, over a workspace in which job clusters come and go
(each with its events); the jobs and pipelines collectors' output is replayed as cycles of the shape they commit
(10,000 jobs of which --job-churn are deleted and replaced each day, 300 pipelines with 4 flows each), with their
state as they keep it. Prints the state file's size, its parts, and the save time (median and worst) at the end.

    python bench/state_churn.py                      # 7 days, a cycle every 10 simulated minutes
    python bench/state_churn.py --days 1 --job-clusters-per-hour 100     # a quick look

Nothing here asserts: it measures and prints. docs/performance.md records the figures."""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time

from databricks_exporter import metrics as m
from databricks_exporter.collectors import COLLECTORS
from databricks_exporter.config import CollectorSettings
from databricks_exporter.cycle import Cycle
from databricks_exporter.store import MetricStore

WS = "1234567890123456"


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


class ChurningClusters:
    """The REST source's cluster calls over a workspace of long-lived clusters and job clusters that live an hour."""

    def __init__(self, clock: Clock, long_lived: int, rng: random.Random):
        self.clock, self.rng = clock, rng
        self.by_id: dict[str, dict] = {}
        self.events: dict[str, list[dict]] = {}
        self.serial = 0
        for _ in range(long_lived):
            self.start("UI")

    def start(self, source: str) -> None:
        self.serial += 1
        cluster_id = f"{self.serial:04d}-000000-{self.rng.randrange(16 ** 8):08x}"
        now_ms = int(self.clock() * 1000)
        self.by_id[cluster_id] = {"cluster_id": cluster_id, "state": "RUNNING", "cluster_source": source,
                                     "start_time": now_ms, "num_workers": 2}
        self.events[cluster_id] = [{"timestamp": now_ms - 60_000, "type": "CREATING"},
                                   {"timestamp": now_ms, "type": "RUNNING"}]

    def terminate(self, cluster_id: str) -> None:
        now_ms = int(self.clock() * 1000)
        self.by_id[cluster_id].update(state="TERMINATED", terminated_time=now_ms,
                                         termination_reason={"code": "JOB_FINISHED", "type": "SUCCESS"})
        self.events[cluster_id].append({"timestamp": now_ms, "type": "TERMINATING"})

    def step(self, job_clusters: int) -> None:
        """Job clusters older than an hour end; `job_clusters` new ones start; terminated ones older than 30 days
        leave the list, as the API's do."""
        now_ms = self.clock() * 1000
        for cluster_id, c in list(self.by_id.items()):
            if c["cluster_source"] == "JOB" and c["state"] == "RUNNING" and now_ms - c["start_time"] > 3_600_000:
                self.terminate(cluster_id)
            elif c["state"] == "TERMINATED" and now_ms - c["terminated_time"] > 30 * 86_400_000:
                del self.by_id[cluster_id], self.events[cluster_id]
        for _ in range(job_clusters):
            self.start("JOB")

    # the source's calls
    def clusters(self, states):
        return [c for c in self.by_id.values() if c["state"] in states]

    def cluster(self, cluster_id):
        return self.by_id[cluster_id]

    def cluster_events(self, cluster_id, start_ms, end_ms=None):
        return [e for e in self.events.get(cluster_id, []) if e["timestamp"] >= start_ms]


class Workspace:
    def __init__(self, rest):
        self.rest = rest


def jobs_cycle(job_ids: list[str], state: dict, now: float, rng: random.Random, runs_per_cycle: int) -> Cycle:
    """What the jobs collector commits: runs of random jobs, their histograms, last success/failure, its cursor."""
    cycle = Cycle(WS)
    seen = state.setdefault("runs", {"watermark": now * 1000, "seen": {}})
    seen["watermark"] = now * 1000 - 10_000
    seen["seen"] = {str(rng.randrange(10 ** 12)): now * 1000 for _ in range(runs_per_cycle)}
    for _ in range(runs_per_cycle):
        job_id = rng.choice(job_ids)
        result = "SUCCESS" if rng.random() < 0.9 else "FAILED"
        cycle.inc(m.JOB_RUNS, job_id=job_id, result_state=result, trigger="PERIODIC")
        cycle.observe(m.JOB_RUN_DURATION, rng.uniform(10, 7200), job_id=job_id)
        cycle.observe(m.JOB_RUN_QUEUE_DURATION, rng.uniform(0, 60), job_id=job_id)
        state.setdefault("last_success" if result == "SUCCESS" else "last_failure", {})[job_id] = now
    return cycle


def pipelines_cycle(pipelines: int, now: float) -> Cycle:
    cycle = Cycle(WS)
    for p in range(pipelines):
        for flow in range(4):
            cycle.inc(m.PIPELINE_FLOW_OUTPUT_ROWS, 1000, pipeline_id=f"p{p}", flow_name=f"flow_{flow}")
            cycle.inc(m.PIPELINE_EXPECTATION_RECORDS, 990, pipeline_id=f"p{p}", dataset=f"flow_{flow}",
                      expectation="valid_id", outcome="passed")
    return cycle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=7)
    parser.add_argument("--cycle-minutes", type=float, default=10)
    parser.add_argument("--clusters", type=int, default=2000, help="long-lived clusters")
    parser.add_argument("--job-clusters-per-hour", type=int, default=500)
    parser.add_argument("--jobs", type=int, default=10000)
    parser.add_argument("--job-churn", type=int, default=300, help="jobs deleted and replaced each day")
    parser.add_argument("--pipelines", type=int, default=300)
    parser.add_argument("--runs-per-cycle", type=int, default=500)
    args = parser.parse_args()

    rng = random.Random(1)
    clock = Clock(1_760_000_000.0)
    rest = ChurningClusters(clock, args.clusters, rng)
    directory = tempfile.mkdtemp(prefix="state-churn-")
    path = os.path.join(directory, "state.json")
    store = MetricStore(path)
    spec = COLLECTORS["clusters"]
    settings = CollectorSettings("clusters", True, 30, 30, {k: d for k, (_, d) in spec.options.items()})
    clusters = spec(Workspace(rest), settings, 3600.0, clock)
    jobs = COLLECTORS["jobs"]
    jobs_settings = CollectorSettings("jobs", True, 60, 60, {k: d for k, (_, d) in jobs.options.items()})
    jobs_collector = jobs(Workspace(None), jobs_settings, 3600.0, clock)
    job_ids = [str(100_000 + i) for i in range(args.jobs)]
    next_job = 100_000 + args.jobs
    cycles = int(args.days * 24 * 60 / args.cycle_minutes)
    per_cycle_churn = args.job_churn * args.cycle_minutes / (24 * 60)
    churn_due = 0.0
    save_times: list[float] = []
    started = time.monotonic()
    for number in range(cycles):
        clock.now += args.cycle_minutes * 60
        rest.step(int(args.job_clusters_per_hour * args.cycle_minutes / 60))
        churn_due += per_cycle_churn
        while churn_due >= 1:
            job_ids.remove(rng.choice(job_ids))
            job_ids.append(str(next_job))
            next_job += 1
            churn_due -= 1
        for owner, make in ((f"{WS}/clusters", None), (f"{WS}/jobs", "jobs"), (f"{WS}/pipelines", "pipelines")):
            state = store.state(owner)
            if make is None:
                cycle = Cycle(WS)
                clusters.collect(cycle, state)
            elif make == "jobs":
                cycle = jobs_cycle(job_ids, state, clock.now, rng, args.runs_per_cycle)
                # The jobs collector's own forgetting of deleted jobs' maps (its keep_within_retention).
                jobs_collector.keep_within_retention(cycle, state, job_ids, "job_id",
                                                     maps=[state.get("last_success", {}),
                                                           state.get("last_failure", {})])
            else:
                cycle = pipelines_cycle(args.pipelines, clock.now)
            before = time.perf_counter()
            store.commit(owner, cycle, state)
            save_times.append(time.perf_counter() - before)
            if make is None:
                clusters.committed(state)
        if number % max(1, cycles // 10) == 0:
            print(f"  day {number * args.cycle_minutes / 1440:4.1f}: state {os.path.getsize(path) / 1e6:6.2f} MB, "
                  f"commit median {statistics.median(save_times[-30:]) * 1000:5.1f} ms", flush=True)
    document = json.load(open(path))
    parts = {key: len(json.dumps(value)) for key, value in document.items() if key != "version"}
    collectors = {owner: len(json.dumps(state)) for owner, state in document["collectors"].items()}
    series = sum(len(rows) for rows in document["counters"].values()) + \
        sum(len(rows) for rows in document["histograms"].values())
    print(f"after {args.days:g} simulated days ({cycles} cycles of each collector, {rest.serial} clusters created, "
          f"{next_job - 100_000 - args.jobs} jobs replaced), in {time.monotonic() - started:.0f} s:")
    print(f"  state file: {os.path.getsize(path) / 1e6:.2f} MB, {series} counter and histogram series")
    print("  parts (bytes): " + ", ".join(f"{k} {v}" for k, v in parts.items()))
    print("  collectors (bytes): " + ", ".join(f"{k.split('/')[1]} {v}" for k, v in collectors.items()))
    last_day = save_times[-3 * int(1440 / args.cycle_minutes):]
    print(f"  commit with save, last day: median {statistics.median(last_day) * 1000:.1f} ms, "
          f"p99 {sorted(last_day)[int(len(last_day) * 0.99)] * 1000:.1f} ms, max {max(last_day) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
