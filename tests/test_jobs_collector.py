"""Unit tests of the jobs collector's exactly-once counting, on a small in-memory stand-in for the SDK's jobs API
behind the real REST source.
(The integration tests prove the same against the simulated workspace over HTTP.)"""

from types import SimpleNamespace

from databricks.sdk.errors import NotFound, PermissionDenied

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
        self.jobs_listed = 0
        self.forbidden_jobs: set[int] = set()

    def add(self, run_id, job_id, start, end=0, result=None, life="TERMINATED", **extra):
        state = {"life_cycle_state": life if end or life == "SKIPPED" else "RUNNING"}
        if result:
            state["result_state"] = result
        fields = dict(run_id=run_id, job_id=job_id, start_time=start, end_time=end, state=state,
                      trigger="PERIODIC", queue_duration=1000, run_duration=(end - start) if end else 0)
        fields.update(extra)
        self.runs[run_id] = fields

    def list(self, limit=100):
        self.jobs_listed += 1
        return iter(self.jobs)

    def list_runs(self, limit=25, start_time_from=None, start_time_to=None, active_only=False, expand_tasks=False,
                  run_type=None):
        self.calls.append(("list_runs", start_time_from, active_only))
        runs = sorted(self.runs.values(), key=lambda r: -r["start_time"])
        if active_only:
            runs = [r for r in runs if r["state"]["life_cycle_state"] in ("RUNNING", "PENDING", "QUEUED")]
        if run_type is not None:
            runs = [r for r in runs if r.get("run_type", "JOB_RUN") == run_type.value]
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
        if self.runs[run_id]["job_id"] in self.forbidden_jobs:
            raise PermissionDenied("User may not view this run")
        return Obj(self.runs[run_id])


class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


def make(fake, clock, **options):
    opts = {key: default for key, (_, default) in JobsCollector.options.items()}
    opts.update({"listing_margin": 0.0, "max_run_duration": 86400.0})
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
    # Multitask format: the run stays attempt 0; task b was retried twice inside it.
    run = {"attempt_number": 0, "tasks": [{"task_key": "a", "attempt_number": 0}, {"task_key": "b", "attempt_number": 0},
                                          {"task_key": "b", "attempt_number": 1}, {"task_key": "b", "attempt_number": 2}]}
    assert retries(run) == 2
    # Legacy format: the run is the retry, and its one task carries the run's attempt number: one retry, not two.
    assert retries({"attempt_number": 1, "trigger": "RETRY", "tasks": [{"task_key": "main", "attempt_number": 1}]}) == 1


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


# --- runs as Databricks runs them: repairs, retries, one-time runs, permission gaps, status over state -------------

def terminated(code: str, result: str | None = None) -> dict:
    """`state` and `status` of something that ended, as the API sends both."""
    state = {"life_cycle_state": "TERMINATED"}
    if result:
        state["result_state"] = result
    return {"state": state, "status": {"state": "TERMINATED", "termination_details": {"code": code, "type": "X"}}}


def repaired(fake, run_id, original_end, repairs):
    """Run run_id as the API shows it after repairs [(id, start, end or 0, result)]: same run_id and start_time,
    repair_history, and the run's own end, state and status those of its latest repair."""
    run = fake.runs[run_id]
    if "repair_history" not in run:
        run["repair_history"] = [{"type": "ORIGINAL", "start_time": run["start_time"], "end_time": original_end,
                                  "state": run["state"], "status": run.get("status"), "task_run_ids": [run_id + 1]}]
    history = run["repair_history"][:1]
    for repair_id, start, end, result in repairs:
        entry = {"type": "REPAIR", "id": repair_id, "start_time": start, "end_time": end, "task_run_ids": [repair_id]}
        entry.update(terminated("SUCCESS" if result == "SUCCESS" else "RUN_EXECUTION_ERROR", result) if end else
                     {"state": {"life_cycle_state": "RUNNING"}, "status": {"state": "RUNNING"}})
        history.append(entry)
    run["repair_history"] = history
    run.update(end_time=history[-1]["end_time"], state=history[-1]["state"], status=history[-1]["status"])


def repairs_total(store, job_id="1", result="SUCCESS"):
    return store.value("databricks_job_run_repairs_total", workspace_id="1", job_id=job_id, result_state=result) or 0


def test_a_repaired_run_counts_once_and_each_of_its_repairs_once(tmp_path):
    T = 1_000_000_000
    fake, clock = FakeJobs(), Clock(T)
    fake.add(10, 1, start=(T - 100) * 1000, end=(T - 50) * 1000, **terminated("RUN_EXECUTION_ERROR", "FAILED"))
    store = MetricStore()
    collector = make(fake, clock)
    cycle(collector, store)
    assert runs_total(store, result="FAILED") == 1

    # Someone repairs it: same run_id and start_time, running again, its end_time 0.
    clock.now = T + 60
    repaired(fake, 10, (T - 50) * 1000, [(501, (T + 10) * 1000, 0, None)])
    cycle(collector, store)
    assert store.value("databricks_job_runs_active", workspace_id="1", job_id="1", state="RUNNING") == 1
    assert (runs_total(store, result="FAILED"), runs_total(store), repairs_total(store)) == (1, 0, 0)

    # The repair ends, failing again: one repair, and still one run, FAILED as it first ended.
    clock.now = T + 120
    fake.add(11, 1, start=(T + 110) * 1000, end=(T + 115) * 1000, **terminated("SUCCESS", "SUCCESS"))
    repaired(fake, 10, (T - 50) * 1000, [(501, (T + 10) * 1000, (T + 100) * 1000, "FAILED")])
    cycle(collector, store)
    cycle(collector, store)
    assert (runs_total(store, result="FAILED"), runs_total(store), repairs_total(store, result="FAILED")) == (1, 1, 1)

    # A second repair starts and ends between two cycles, after the listing's watermark passed the run: no listing
    # shows it, but the run is read again by id 10 minutes after it last ended.
    clock.now = T + 240
    repaired(fake, 10, (T - 50) * 1000, [(501, (T + 10) * 1000, (T + 100) * 1000, "FAILED"),
                                          (502, (T + 130) * 1000, (T + 170) * 1000, "SUCCESS")])
    fake.calls.clear()
    cycle(collector, store)
    assert repairs_total(store) == 0 and ("get_run", 10) not in fake.calls
    clock.now = T + 100 + 600
    cycle(collector, store)
    cycle(collector, store)
    assert fake.calls.count(("get_run", 10)) == 1
    assert (runs_total(store, result="FAILED"), runs_total(store), repairs_total(store),
            repairs_total(store, result="FAILED")) == (1, 1, 1, 1)


def test_a_repair_of_a_run_from_before_counting_began_counts_the_repair_only(tmp_path):
    T = 1_000_000_000
    fake, clock = FakeJobs(), Clock(T)
    # Started and failed five and a half hours ago, long before the listing window and counting_since (T - 3600).
    fake.add(20, 1, start=(T - 20_000) * 1000, end=(T - 19_000) * 1000, **terminated("RUN_EXECUTION_ERROR", "FAILED"))
    store = MetricStore()
    collector = make(fake, clock, max_run_duration=3600.0)
    cycle(collector, store)
    assert runs_total(store, result="FAILED") == 0
    clock.now = T + 60
    repaired(fake, 20, (T - 19_000) * 1000, [(601, (T + 30) * 1000, 0, None)])
    cycle(collector, store)                       # it comes back through the active-runs list
    clock.now = T + 120
    repaired(fake, 20, (T - 19_000) * 1000, [(601, (T + 30) * 1000, (T + 100) * 1000, "SUCCESS")])
    cycle(collector, store)
    cycle(collector, store)
    assert (runs_total(store, result="FAILED"), runs_total(store), repairs_total(store)) == (0, 0, 1)


def test_a_repair_that_ends_while_the_exporter_is_down_counts_once_after_the_restart(tmp_path):
    T = 1_000_000_000
    fake, clock = FakeJobs(), Clock(T)
    fake.add(30, 1, start=(T - 100) * 1000, end=(T - 50) * 1000, **terminated("RUN_EXECUTION_ERROR", "FAILED"))
    store = MetricStore(str(tmp_path / "s.json"))
    cycle(make(fake, clock), store)
    store.save()
    # Down for two minutes; the run was repaired meanwhile, start to end.
    clock.now = T + 120
    repaired(fake, 30, (T - 50) * 1000, [(701, (T + 20) * 1000, (T + 90) * 1000, "SUCCESS")])
    restarted = MetricStore(str(tmp_path / "s.json"))
    restarted.load()
    collector = make(fake, clock)
    cycle(collector, restarted)
    cycle(collector, restarted)
    assert (runs_total(restarted, result="FAILED"), repairs_total(restarted)) == (1, 1)


def test_each_retry_counts_once_in_either_format(tmp_path):
    T = 1_000_000_000
    fake, clock = FakeJobs(), Clock(T)
    # Multitask: task b failed, waited, and its second attempt succeeded inside the same run (attempt_number 0).
    fake.add(40, 1, start=(T - 100) * 1000, end=(T - 50) * 1000, attempt_number=0, **terminated("SUCCESS", "SUCCESS"),
             tasks=[{"task_key": "a", "run_id": 41, "attempt_number": 0}, {"task_key": "b", "run_id": 43,
                    "attempt_number": 0}, {"task_key": "b", "run_id": 44, "attempt_number": 1}])
    # Legacy single-task: the retry is a run of its own (trigger RETRY, attempt_number 1), its task attempt 1.
    fake.add(60, 1, start=(T - 40) * 1000, end=(T - 20) * 1000, attempt_number=1, **terminated("SUCCESS", "SUCCESS"),
             tasks=[{"task_key": "main", "run_id": 61, "attempt_number": 1}])
    store = MetricStore()
    collector = make(fake, clock)
    cycle(collector, store)
    cycle(collector, store)
    assert store.value("databricks_job_run_retries_total", workspace_id="1", job_id="1") == 2


def test_one_time_runs_count_under_one_label_however_many_there_are(tmp_path):
    T = 1_000_000_000
    fake, clock = FakeJobs(), Clock(T)
    store = MetricStore()
    collector = make(fake, clock, task_metrics=True)
    cycle(collector, store)
    clock.now = T + 120
    fake.add(2000, 7, start=(T + 50) * 1000, end=(T + 60) * 1000, run_type="WORKFLOW_RUN",
             **terminated("RUN_EXECUTION_ERROR", "FAILED"))
    fake.add(2001, 8, start=(T + 50) * 1000, end=(T + 55) * 1000, **terminated("SUCCESS", "SUCCESS"))  # JOB_RUN
    cycle(collector, store)
    # Job 8 is not in jobs/list: the list was read again (it was over a minute old), and its run still counts as
    # one-time; the WORKFLOW_RUN needed no list, its run_type says it.
    assert fake.jobs_listed == 2
    assert (runs_total(store, job_id="_one_time"), runs_total(store, job_id="_one_time", result="FAILED")) == (1, 1)
    series = store.series_count("1")

    clock.now = T + 600
    for k in range(200):                          # runs/submit: a new job_id each, in no jobs/list answer
        fake.add(1000 + k, 5_000_000 + k, start=(T + 100 + k) * 1000, end=(T + 310 + k // 2) * 1000,
                 run_type="SUBMIT_RUN", **terminated("SUCCESS", "SUCCESS"),
                 tasks=[{"task_key": f"airflow_task_{k}", "run_id": 1_000_000 + k, "attempt_number": 0,
                         **terminated("SUCCESS", "SUCCESS")}])
    cycle(collector, store)
    assert runs_total(store, job_id="_one_time") == 201    # and job 8's run
    assert job_ids(store) == {"_one_time", "1", "2"}       # the two listed jobs' info, and one for all one-time runs
    # One more series, the one-time task runs' count; the one-time SUCCESS count existed already (job 8's run).
    assert store.series_count("1") == series + 1
    assert store.value("databricks_job_task_runs_total", workspace_id="1", job_id="_one_time", task_key="_one_time",
                       result_state="SUCCESS") == 200


def job_ids(store) -> set[str]:
    """Every job_id label value in the store's jobs families."""
    return {dict(zip(f.metric.labels, values))["job_id"] for f in store.families() for values, _ in f.samples
            if f.metric.name.startswith("databricks_job") and "job_id" in f.metric.labels}


def test_a_run_the_credential_may_not_read_is_skipped_noted_and_learned_from_the_listing(tmp_path):
    T = 1_000_000_000
    fake, clock = FakeJobs(), Clock(T)
    fake.forbidden_jobs = {2}
    fake.add(70, 2, start=(T - 600) * 1000)                       # long-running, so read by id once it ends
    fake.add(71, 1, start=(T - 10) * 1000, end=(T - 5) * 1000, **terminated("SUCCESS", "SUCCESS"))
    store = MetricStore()
    collector = make(fake, clock)
    cycle(collector, store)
    fake.add(70, 2, start=(T - 600) * 1000, end=T * 1000, **terminated("RUN_EXECUTION_ERROR", "FAILED"))
    clock.now = T + 60
    c = cycle(collector, store)
    assert ("get_run", 70) in fake.calls
    assert c.forbidden_items == {"run 70": "CAN VIEW on its job"}
    # The rest of the cycle applied, and the run itself was learned from a listing of its start millisecond.
    assert runs_total(store, job_id="2", result="FAILED") == 1 and runs_total(store) == 1


def test_the_result_comes_from_status_when_present_and_from_state_otherwise():
    both = {"state": {"life_cycle_state": "TERMINATED", "result_state": "FAILED"},
            "status": {"state": "TERMINATED", "termination_details": {"code": "USER_CANCELED", "type": "SUCCESS"}}}
    assert run_result(both) == "CANCELED"
    timed_out = {"state": {"life_cycle_state": "TERMINATED", "result_state": "TIMEDOUT"},
                 "status": {"state": "TERMINATED", "termination_details": {"code": "CANCELED", "type": "CLIENT_ERROR"}}}
    assert run_result(timed_out) == "TIMEDOUT"
    assert run_result({"status": {"state": "TERMINATED", "termination_details": {"code": "DRIVER_ERROR"}}}) == "FAILED"
    assert run_result({"status": {"state": "TERMINATED",
                                  "termination_details": {"code": "MAX_CONCURRENT_RUNS_EXCEEDED"}}}) == "SKIPPED"
    assert run_result({"state": {"life_cycle_state": "INTERNAL_ERROR"}}) == "INTERNAL_ERROR"
    assert run_result({"state": {"life_cycle_state": "TERMINATED", "result_state": "SUCCESS"}}) == "SUCCESS"
