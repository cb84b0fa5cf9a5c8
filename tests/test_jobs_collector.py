"""Unit tests of the jobs collector's exactly-once counting, on a small in-memory stand-in for the SDK's jobs API
behind the real REST source.
(The integration tests prove the same against the simulated workspace over HTTP.)"""

from types import SimpleNamespace

from databricks.sdk.errors import NotFound

from databricks_exporter.collectors.jobs import JobsCollector, listing_start, retries, run_duration_seconds, \
    run_result
from databricks_exporter.config import CollectorSettings
from databricks_exporter.sources.rest import RestSource
from databricks_exporter.cycle import Cycle
from databricks_exporter.store import MetricStore


class Obj(dict):
    def as_dict(self):
        return dict(self)


class FakeJobs:
    def __init__(self):
        self.jobs = [Obj(job_id=1, settings={"name": "etl-orders", "schedule": {"pause_status": "UNPAUSED"}}),
                     Obj(job_id=2, settings={"name": "test-scratch"})]
        self.runs: dict[int, dict] = {}
        self.calls: list[tuple] = []
        self.listed = 0

    def add(self, run_id, job_id, start, end=0, result=None, life="TERMINATED", **extra):
        state = {"life_cycle_state": life if end or life == "SKIPPED" else "RUNNING"}
        if result:
            state["result_state"] = result
        self.runs[run_id] = dict(run_id=run_id, job_id=job_id, start_time=start, end_time=end, state=state,
                                 trigger="PERIODIC", queue_duration=1000, run_duration=(end - start) if end else 0,
                                 **extra)

    def list(self, limit=100):
        return iter(self.jobs)

    def list_runs(self, limit=25, start_time_from=None, start_time_to=None, active_only=False, expand_tasks=False):
        self.calls.append(("list_runs", start_time_from, active_only))
        runs = sorted(self.runs.values(), key=lambda r: -r["start_time"])
        if active_only:
            runs = [r for r in runs if r["state"]["life_cycle_state"] in ("RUNNING", "PENDING", "QUEUED")]
        if start_time_from is not None:
            runs = [r for r in runs if r["start_time"] >= start_time_from]
        if start_time_to is not None:
            runs = [r for r in runs if r["start_time"] <= start_time_to]
        self.listed += len(runs)
        return iter(Obj(r) for r in runs)

    def get_run(self, run_id):
        self.calls.append(("get_run", run_id))
        if run_id not in self.runs:
            raise NotFound("gone")
        return Obj(self.runs[run_id])


class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


def make(fake, clock, **options):
    opts = {"include": [], "exclude": [], "task_metrics": False, "listing_margin": 0.0, "max_run_duration": 86400.0}
    opts.update(options)
    return JobsCollector(SimpleNamespace(rest=RestSource(SimpleNamespace(jobs=fake))),
                         CollectorSettings("jobs", True, 60, 60, opts), 3600, clock)


def cycle(collector, store):
    c = Cycle("1")
    state = store.state("1/jobs")
    collector.collect(c, state)
    store.commit("1/jobs", c, state)
    return c


def runs_total(store, job_id="1", result="SUCCESS"):
    return store.value("databricks_job_runs_total", workspace_id="1", job_id=job_id, result_state=result,
                       trigger="PERIODIC") or 0


def test_each_completed_run_counts_once_across_cycles_and_restarts(tmp_path):
    T = 1_000_000_000  # seconds
    fake, clock = FakeJobs(), Clock(T)
    fake.add(1, 1, start=(T - 100) * 1000, end=(T - 50) * 1000, result="SUCCESS")
    fake.add(2, 1, start=(T - 7200) * 1000, end=(T - 7100) * 1000, result="SUCCESS")  # before counting began
    fake.add(3, 1, start=(T - 30) * 1000)                                              # still running
    store = MetricStore(str(tmp_path / "s.json"))
    collector = make(fake, clock)
    cycle(collector, store)
    cycle(collector, store)
    assert runs_total(store) == 1
    assert store.value("databricks_job_runs_active", workspace_id="1", job_id="1", state="RUNNING") == 1

    fake.add(3, 1, start=(T - 30) * 1000, end=(T + 10) * 1000, result="FAILED")
    fake.add(4, 1, start=(T + 5) * 1000, end=(T + 20) * 1000, result="SUCCESS")
    clock.now = T + 30
    restarted = MetricStore(str(tmp_path / "s.json"))
    restarted.load()
    cycle(make(fake, clock), restarted)
    cycle(make(fake, clock), restarted)
    assert runs_total(restarted) == 2
    assert runs_total(restarted, result="FAILED") == 1
    assert restarted.value("databricks_job_last_failure_timestamp_seconds", workspace_id="1", job_id="1") == T + 10
    assert restarted.value("databricks_job_runs_active", workspace_id="1", job_id="1", state="RUNNING") is None


def test_a_long_run_behind_the_watermark_is_followed_with_one_get(tmp_path):
    T = 1_000_000_000
    fake, clock = FakeJobs(), Clock(T)
    fake.add(1, 1, start=(T - 600) * 1000)                 # long-running
    fake.add(2, 1, start=(T - 10) * 1000, end=(T - 5) * 1000, result="SUCCESS")
    store = MetricStore()
    collector = make(fake, clock)
    cycle(collector, store)
    fake.calls.clear()
    fake.add(1, 1, start=(T - 600) * 1000, end=T * 1000, result="SUCCESS")
    cycle(collector, store)
    assert runs_total(store) == 2
    # the watermark moved past run 1's start, so it was fetched by id rather than by re-listing history
    assert ("get_run", 1) in fake.calls
    listed_from = [c[1] for c in fake.calls if c[0] == "list_runs" and not c[2]]
    assert listed_from == [(T - 10) * 1000]


def test_skipped_runs_and_excluded_jobs(tmp_path):
    T = 1_000_000_000
    fake, clock = FakeJobs(), Clock(T)
    fake.add(1, 1, start=(T - 20) * 1000, end=(T - 20) * 1000, life="SKIPPED")
    fake.add(2, 2, start=(T - 20) * 1000, end=(T - 10) * 1000, result="SUCCESS")
    store = MetricStore()
    cycle(make(fake, clock, exclude=["^test-"]), store)
    assert runs_total(store, result="SKIPPED") == 1
    assert runs_total(store, job_id="2") == 0
    assert store.value("databricks_job_info", workspace_id="1", job_id="2", job_name="test-scratch",
                       schedule_paused="none") is None
    assert store.value("databricks_job_info", workspace_id="1", job_id="1", job_name="etl-orders",
                       schedule_paused="false") == 1


def test_run_helpers():
    assert run_result({"state": {"life_cycle_state": "SKIPPED"}}) == "SKIPPED"
    assert run_result({"state": {"life_cycle_state": "TERMINATED", "result_state": "TIMEDOUT"}}) == "TIMEDOUT"
    assert run_duration_seconds({"run_duration": 0, "setup_duration": 1000, "execution_duration": 5000}) == 6
    assert run_duration_seconds({"start_time": 1000, "end_time": 11000, "queue_duration": 4000}) == 6
    run = {"attempt_number": 1, "tasks": [{"task_key": "a", "attempt_number": 0}, {"task_key": "b", "attempt_number": 0},
                                          {"task_key": "b", "attempt_number": 1}, {"task_key": "b", "attempt_number": 2}]}
    assert retries(run) == 3


def test_listing_start_goes_back_only_as_far_as_it_pays():
    now, watermark = 10_000_000.0, 10_000_000.0 - 60_000
    minute = 60_000
    # Ten followed runs, started 2..11 minutes ago; last cycle runs finished at 3, 5 and 7 minutes of age.
    pending = [now - k * minute for k in range(2, 12)]
    finished = [3 * minute, 5 * minute, 7 * minute]
    # Few other runs start (1 a minute): listing back to the oldest age that finished last cycle pays.
    assert listing_start(watermark, now, 1 / minute, pending, finished) == now - 7 * minute
    # A busy workspace (500 runs a minute, almost all short): every extra minute costs 20 pages; stay.
    assert listing_start(watermark, now, 500 / minute, pending, finished) == watermark
    # Nothing finished last cycle, or nothing to go on: the watermark.
    assert listing_start(watermark, now, 1 / minute, pending, []) == watermark
    assert listing_start(watermark, now, 0.0, [], [30_000]) == watermark


def test_runs_that_finish_after_the_watermark_passed_them_are_learned_from_the_listing_once():
    T = 1_000_000_000
    fake, clock = FakeJobs(), Clock(T)
    # Twelve runs running, started 1..12 minutes ago; one counted run of long ago in the same stretch.
    for k in range(1, 13):
        fake.add(k, 1, start=(T - 60 * k) * 1000)
    fake.add(100, 1, start=(T - 250) * 1000, end=(T - 200) * 1000, result="FAILED")
    store = MetricStore()
    collector = make(fake, clock)
    cycle(collector, store)
    assert runs_total(store, result="FAILED") == 1

    def finish(run_ids, at):
        for k in run_ids:
            fake.add(k, 1, start=fake.runs[k]["start_time"], end=at * 1000, result="SUCCESS")

    # A minute later runs 2, 4 and 6 finish: the collector has no history yet, so one get each.
    clock.now = T + 60
    finish([2, 4, 6], T + 50)
    fake.calls.clear()
    cycle(collector, store)
    assert runs_total(store) == 3
    assert sorted(c[1] for c in fake.calls if c[0] == "get_run") == [2, 4, 6]

    # Next minute 1, 3 and 5 finish at the ages 2, 4 and 6 finished at (3, 5, 7 minutes): listing back over
    # them pays now.
    clock.now = T + 120
    finish([1, 3, 5], T + 110)
    fake.calls.clear()
    cycle(collector, store)
    assert runs_total(store) == 6
    assert runs_total(store, result="FAILED") == 1          # the old run in the stretch is not counted again
    assert [c for c in fake.calls if c[0] == "get_run"] == []
    assert [c[1] for c in fake.calls if c[0] == "list_runs" and not c[2]] == [(T + 120 - 420) * 1000]
    assert store.value("databricks_job_runs_active", workspace_id="1", job_id="1", state="RUNNING") == 6

    # And everything that finishes is still counted exactly once, however it is learned.
    clock.now = T + 180
    finish(range(1, 13), T + 170)
    cycle(collector, store)
    cycle(collector, store)
    assert runs_total(store) == 12 and runs_total(store, result="FAILED") == 1
    assert store.value("databricks_job_runs_active", workspace_id="1", job_id="1", state="RUNNING") is None
