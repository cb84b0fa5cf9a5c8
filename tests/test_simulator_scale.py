"""The simulated workspace's load parameters scale what they say (the benchmark relies on them for its sizes)."""

from databricks_sim.queries import QueryLog
from databricks_sim.workspace import SimulatedWorkspace

START = 1_790_000_000.0


def queries_a_day(query_rate: float) -> int:
    workspace = SimulatedWorkspace(seed=3, start=START, clock=lambda: START, history_seconds=86_400, n_jobs=5,
                                   n_clusters=4, n_warehouses=4, query_rate=query_rate)
    log = QueryLog(workspace)
    now = workspace.now_ms()
    log.extend(now)
    return sum(1 for load in log.loads.values() for q in load.queries if q.start_ms > now - 86_400_000)


def test_query_rate_scales_the_query_arrivals():
    base, triple = queries_a_day(1.0), queries_a_day(3.0)
    assert base > 1000
    assert 2.7 < triple / base < 3.3, (base, triple)
