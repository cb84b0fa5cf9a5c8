"""Benchmark: the exporter against a simulated workspace at a large customer's scale. Prints, in one run, API
requests per steady-state cycle against the minimum the data requires, CPU per cycle per collector, resident memory,
and /metrics latency under 50 concurrent scrapers at 100,000 series next to prometheus_client's own generate_latest
serving the same families.

    python bench/bench.py                           # full scale: 2,000 clusters, 10,000 jobs, 50 warehouses
                                                    # with about 1,000,000 queries a day, 300 pipelines
    python bench/bench.py --clusters 200 --jobs 1000 --pipelines 30 --query-rate 1 --minutes 2   # a quick look
    python bench/bench.py --scrape-only             # only the /metrics part, at --series series

Nothing here asserts: it measures and prints. docs/performance.md records the figures."""

from __future__ import annotations

import argparse
import http.client
import json
import math
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

from databricks_exporter.collectors import COLLECTORS

SIMULATOR = """
import json, signal, sys, threading
from databricks_sim.server import SimulatorServer
server = SimulatorServer(port=0, seed=1, **json.loads(sys.argv[1])).start()
print(server.url, server.token, flush=True)
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *a: stop.set())
stop.wait()
"""

BASELINE = """
import sys, time, threading
from prometheus_client import start_http_server
from prometheus_client.core import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
families = list(text_string_to_metric_families(open(sys.argv[1]).read()))
class Snapshot:
    def collect(self):
        return families
REGISTRY.register(Snapshot())
start_http_server(int(sys.argv[2]), addr="127.0.0.1")
print("ready", flush=True)
threading.Event().wait()
"""

# Endpoint prefixes of each collector's REST calls (the SQL collectors' statements are not REST requests).
ENDPOINT_COLLECTORS = [("/api/2.2/jobs/", "jobs"), ("/api/2.1/clusters/", "clusters"),
                       ("/api/2.0/sql/warehouses", "warehouses"), ("/api/2.0/sql/history/", "queries"),
                       ("/api/2.0/pipelines", "pipelines")]
INTERVALS = {name: spec.default_interval for name, spec in COLLECTORS.items()}      # the bench sets none of its own
SNAPSHOT_SECONDS = 30        # /metrics snapshots during the window: what changed between two is what a cycle needs


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str, timeout: float = 60) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


def by_label(text: str, name: str, key: str | None) -> dict[str, float]:
    """The samples of one metric summed by one label's value (key None: all summed under "")."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            labels, value = line.rsplit(" ", 1)
            part = labels.split(f'{key}="', 1)[1].split('"', 1)[0] if key else ""
            out[part] = out.get(part, 0.0) + float(value)
    return out


def total(text: str, name: str) -> float:
    return sum(by_label(text, name, None).values())


def rss_mb(pid: int) -> tuple[float, float]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


# --- /metrics under load -----------------------------------------------------------------------------------------

def _scrape_process(url: str, threads: int, seconds: float, paced: bool, out) -> None:
    """`threads` scrapers, each on its own keep-alive connection asking for gzip, as Prometheus scrapes. Paced: every
    scraper fires on each whole second (all at once: the worst case of many servers scraping one target)."""
    parts = urllib.parse.urlsplit(url)
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    deadline = time.time() + seconds

    def scraper():
        nonlocal errors
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)

        def scrape() -> float:
            started = time.perf_counter()
            connection.request("GET", parts.path, headers={"Accept-Encoding": "gzip"})
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise OSError(response.status)
            return time.perf_counter() - started

        mine = []
        try:
            scrape()    # connect first: Prometheus keeps its connection to a target open between scrapes
        except (OSError, http.client.HTTPException):
            connection.close()
        tick = math.ceil(time.time())
        while True:
            if paced:
                time.sleep(max(0.0, tick - time.time()))
                tick += 1
            if time.time() >= deadline:
                break
            try:
                mine.append(scrape())
            except (OSError, http.client.HTTPException):
                with lock:
                    errors += 1
                connection.close()
        connection.close()
        with lock:
            latencies.extend(mine)

    workers = [threading.Thread(target=scraper) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    out.put((latencies, errors))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def hammer(url: str, clients: int, seconds: float, paced: bool = False, pid: int | None = None) -> dict:
    """Scrapers spread over several processes, so that the load generator's own GIL does not become the latency
    measured. With the server's pid, also its CPU time per scrape."""
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    procs = max(1, min(5, clients // 10))
    shares = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
    server_cpu = cpu_seconds(pid) if pid else 0.0
    workers = [context.Process(target=_scrape_process, args=(url, share, seconds, paced, results)) for share in shares]
    for worker in workers:
        worker.start()
    latencies, errors = [], 0
    for _ in workers:
        mine, failed = results.get()
        latencies.extend(mine)
        errors += failed
    for worker in workers:
        worker.join()
    server_cpu = cpu_seconds(pid) - server_cpu if pid else math.nan
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else math.nan
    return {"requests": len(latencies), "errors": errors, "per_second": len(latencies) / seconds,
            "p50_ms": pick(0.50), "p99_ms": pick(0.99), "max_ms": latencies[-1] * 1000 if latencies else math.nan,
            "server_cpu_us": server_cpu / max(len(latencies), 1) * 1e6}


def synthetic_store(series: int):
    """A store holding about `series` series shaped like the jobs collector's (info, runs, a duration histogram and
    last-success per job), and the cycle that re-emits them all."""
    from databricks_exporter import metrics as m
    from databricks_exporter.cycle import Cycle
    from databricks_exporter.store import MetricStore

    per_job = 1 + 2 + len(m.JOB_RUN_DURATION.buckets) + 3 + 1
    jobs = max(1, series // per_job)

    def cycle():
        c = Cycle("1234567890123456")
        for j in range(jobs):
            job_id = str(1_000_000_000 + j * 7919)
            c.gauge(m.JOB_INFO, 1, job_id=job_id, job_name=f"orders-etl-{j}", schedule_paused="false")
            c.gauge(m.JOB_LAST_SUCCESS, 1.79e9 + j, job_id=job_id)
            c.inc(m.JOB_RUNS, 1, job_id=job_id, result_state="SUCCESS", trigger="PERIODIC")
            c.inc(m.JOB_RUNS, 1, job_id=job_id, result_state="FAILED", trigger="PERIODIC")
            c.observe(m.JOB_RUN_DURATION, (j % 97) * 37.0, job_id=job_id)
        return c

    store = MetricStore()
    store.commit("1234567890123456/jobs", cycle(), {})
    return store, cycle


def serve_synthetic(series: int, port: int) -> None:
    """The scrape target of the /metrics part: the exporter's own web server and renderer over a synthetic store
    that changes as a busy exporter's does (the API-request counter 10 times a second, every series every 30 s)."""
    from databricks_exporter import metrics as m
    from databricks_exporter.exposition import Renderer
    from databricks_exporter.web import serve

    store, cycle = synthetic_store(series)
    renderer = Renderer(store)
    timings = {}
    for openmetrics_format in (False, True):
        for gzipped in (False, True):
            started = time.perf_counter()
            renderer.render(openmetrics_format, gzipped)
            timings[f"{'openmetrics' if openmetrics_format else 'text'}{' gzip' if gzipped else ''}"] = \
                round((time.perf_counter() - started) * 1000, 1)
    store.inc(m.API_REQUESTS, {"workspace_id": "1234567890123456", "endpoint": "/x", "status_code": "200"})
    started = time.perf_counter()
    renderer.render(False, True)
    timings["text gzip after one counter update"] = round((time.perf_counter() - started) * 1000, 2)
    started = time.perf_counter()
    store.commit("1234567890123456/jobs", cycle(), {})
    renderer.render(False, True)
    timings["text gzip after every series changed (commit included)"] = round((time.perf_counter() - started) * 1000, 1)
    serve(f"127.0.0.1:{port}", renderer, engine=None)
    print(json.dumps({"series": sum(len(f.samples) * (len(f.metric.buckets) + 3 if f.metric.type == m.HISTOGRAM else 1)
                                    for f in store.families()), "render_ms": timings}), flush=True)
    beat = 0
    while True:
        time.sleep(0.1)
        beat += 1
        store.inc(m.API_REQUESTS, {"workspace_id": "1234567890123456", "endpoint": "/api/2.2/jobs/runs/list",
                                   "status_code": "200"})
        if beat % 300 == 0:
            store.commit("1234567890123456/jobs", cycle(), {})


# How the concurrent scrapers are shaped: back to back, or all at once each second (paced), as Prometheus servers
# with aligned scrape intervals do.
SHAPES = {"back to back": False, "all at once each 1 s": True}


def loaded_rows(server: str, url: str, pid: int, args) -> list[tuple[str, dict]]:
    return [(f"{server}, {shape}", hammer(url, args.scrapers, args.scrape_seconds, paced=paced, pid=pid))
            for shape, paced in SHAPES.items()]


def scrape_part(args, work: Path, exporter_url: str | None = None, exporter_pid: int | None = None) -> None:
    rows = []
    if exporter_url:
        rows.append(("databricks-exporter, this run's /metrics", hammer(exporter_url, args.scrapers,
                                                                      args.scrape_seconds, pid=exporter_pid)))
    port = free_port()
    target = subprocess.Popen([sys.executable, __file__, "--serve-synthetic", str(args.series), str(port)],
                              stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(target.stdout.readline())
        print(f"\n/metrics at {info['series']} series (synthetic, jobs-shaped; the store changes 10 times a second "
              f"and every series every 30 s). Render times (ms, cold unless said): {json.dumps(info['render_ms'])}")
        url = f"http://127.0.0.1:{port}/metrics"
        snapshot = work / "exposition.txt"
        snapshot.write_text(get(url))
        print(f"  exposition: {snapshot.stat().st_size / 1e6:.1f} MB plain")
        rows.append(("databricks-exporter, one scraper", hammer(url, 1, args.scrape_seconds / 2, pid=target.pid)))
        rows += loaded_rows("databricks-exporter", url, target.pid, args)
    finally:
        target.terminate()
        target.wait(30)
    baseline_port = free_port()
    baseline = subprocess.Popen([sys.executable, "-c", BASELINE, str(snapshot), str(baseline_port)],
                                stdout=subprocess.PIPE, text=True)
    try:
        baseline.stdout.readline()
        url = f"http://127.0.0.1:{baseline_port}/metrics"
        rows += loaded_rows("generate_latest", url, baseline.pid, args)
    finally:
        baseline.terminate()
        baseline.wait(30)
    print(f"\n{args.scrapers} concurrent scrapers, {args.scrape_seconds:.0f} s each, keep-alive, "
          "Accept-Encoding: gzip:")
    for name, r in rows:
        print(f"  {name:<44} p50 {r['p50_ms']:9.1f} ms  p99 {r['p99_ms']:9.1f} ms  max {r['max_ms']:9.1f} ms  "
              f"{r['per_second']:8.1f} req/s  server CPU (all its threads) {r['server_cpu_us']:7.0f} us/scrape  "
              f"({r['requests']} requests, {r['errors']} errors)")
    ours = {name: r for name, r in rows}
    for shape in SHAPES:
        a, b = ours[f"databricks-exporter, {shape}"], ours[f"generate_latest, {shape}"]
        print(f"  {shape}: p99 {a['p99_ms']:.1f} ms (target <= 10 ms); {b['p99_ms'] / a['p99_ms']:.0f}x faster at p99 "
              f"than generate_latest (target >= 10x)" + (
                  f", {a['per_second'] / max(b['per_second'], 1e-9):.0f}x its throughput" if shape == "back to back"
                  else ""))


# --- API requests against the minimum ----------------------------------------------------------------------------

def report_requests(snapshots: list[tuple[float, str]], log_path: Path, window_start: float, args) -> None:
    (t0, first), (t1, last) = snapshots[0], snapshots[-1]
    minutes = (t1 - t0) / 60
    cycles: dict[str, list[dict]] = {}
    for line in log_path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") == "collection cycle finished":
            stamp = time.mktime(time.strptime(entry["timestamp"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
            if stamp >= window_start:
                cycles.setdefault(entry["collector"], []).append(entry)
    print(f"\nsteady state over {t1 - t0:.0f} s:")
    print(f"  {'collector':<12} {'interval':>8} {'cycles':>6} {'wall s/cycle':>13} {'cpu s/cycle':>12} "
          f"{'max wall s':>11}  keeps up")
    for collector, entries in sorted(cycles.items()):
        wall = [e["duration_seconds"] for e in entries]
        cpu = [e.get("cpu_seconds", math.nan) for e in entries]
        interval = INTERVALS.get(collector, 60)
        print(f"  {collector:<12} {interval:>7}s {len(entries):>6} {statistics.mean(wall):>13.2f} "
              f"{statistics.mean(cpu):>12.2f} {max(wall):>11.2f}  {'yes' if max(wall) < interval else 'NO'}")

    before = by_label(first, "databricks_exporter_api_requests_total", "endpoint")
    after = by_label(last, "databricks_exporter_api_requests_total", "endpoint")
    per_minute = {endpoint: (after[endpoint] - before.get(endpoint, 0)) / minutes for endpoint in after}
    print("  API requests by endpoint (per minute):")
    for endpoint in sorted(per_minute):
        print(f"    {endpoint:<44} {per_minute[endpoint]:8.1f}")

    # What changed between consecutive snapshots (taken every SNAPSHOT_SECONDS, the clusters' interval).
    def moved(names: list[str], key: str) -> float:
        """(entity, snapshot interval) pairs in which any of the entity's counters grew, per minute. Circular by
        design: counters grow only when the events were read, so this counts the reads that found something, and
        a read that found nothing shows as a request above the minimum."""
        pairs = 0
        for (_, a), (_, b) in zip(snapshots, snapshots[1:]):
            grew = set()
            for name in names:
                old, new = by_label(a, name, key), by_label(b, name, key)
                grew.update(entity for entity, value in new.items() if value > old.get(entity, 0))
            pairs += len(grew - {"_other"})
        return pairs / minutes

    def mean_gauge(name: str) -> float:
        return statistics.mean(total(text, name) for _, text in snapshots)

    completed_runs = (total(last, "databricks_job_runs_total") - total(first, "databricks_job_runs_total")) / minutes
    active_runs = mean_gauge("databricks_job_runs_active")
    clusters = mean_gauge("databricks_clusters")
    terminations = (total(last, "databricks_cluster_terminations_total")
                    - total(first, "databricks_cluster_terminations_total")) / minutes
    queries = (total(last, "databricks_queries_total") - total(first, "databricks_queries_total")) / minutes
    pipeline_counters = sorted({line.split("{")[0] for line in last.splitlines()
                                if line.startswith("databricks_pipeline_") and "_total{" in line})
    pipelines_moving = moved(pipeline_counters, "pipeline_id")
    cpm = {name: 60 / interval for name, interval in INTERVALS.items()}        # cycles per minute
    pages = lambda items, size: math.ceil(items / size) if items > 0 else 0
    minimum = {   # per minute
        "jobs": pages(args.jobs, 100) * 60 / 300 + cpm["jobs"] * (pages(completed_runs / cpm["jobs"], 25)
                                                                   + pages(active_runs, 25)),
        "clusters": cpm["clusters"] * pages(clusters, 100) + terminations
        + moved(["databricks_cluster_events_total"], "cluster_id"),
        "warehouses": cpm["warehouses"],
        "queries": cpm["queries"] * max(1, pages(queries / cpm["queries"], 500)),
        "pipelines": cpm["pipelines"] * pages(args.pipelines, 100) + args.pipelines * 60 / 900 + pipelines_moving,
    }
    print(f"\n  the data: {completed_runs:.0f} job runs completed a minute ({completed_runs * 1440:.0f} a day), "
          f"{active_runs:.0f} active; {clusters:.0f} clusters not terminated, {terminations:.1f} terminations a "
          f"minute; {queries:.0f} queries a minute ({queries * 1440:.0f} a day); {args.pipelines} pipelines")
    print("  minimum per minute: jobs = jobs/100 pages every 5 min (jobs_list_interval) + per cycle "
          "ceil(runs completed/25) + ceil(active runs/25); clusters = per cycle ceil(clusters/100) + one get per "
          "termination + one events read per cluster with new events (counted between 30 s snapshots); "
          "warehouses = one list per cycle; queries = per cycle ceil(new queries/500), at least 1; pipelines = per "
          "cycle ceil(pipelines/100) + one get per pipeline every 15 min (spec_refresh) + one events read per "
          "pipeline whose counters moved (between snapshots)")
    print(f"  {'collector':<12} {'requests/min':>13} {'minimum/min':>12} {'ratio':>6}")
    measured_total = minimum_total = 0.0
    owner = {endpoint: next((c for prefix, c in ENDPOINT_COLLECTORS if endpoint.startswith(prefix)), "")
             for endpoint in per_minute}
    for collector in minimum:
        measured = sum(v for endpoint, v in per_minute.items() if owner[endpoint] == collector)
        measured_total += measured
        minimum_total += minimum[collector]
        ratio = measured / minimum[collector] if minimum[collector] else math.nan
        print(f"  {collector:<12} {measured:>13.1f} {minimum[collector]:>12.1f} {ratio:>6.2f}")
    other = sum(per_minute.values()) - measured_total
    print(f"  {'all':<12} {measured_total:>13.1f} {minimum_total:>12.1f} {measured_total / minimum_total:>6.2f}"
          f"   (target <= 1.2; {other:.1f} requests/min of other endpoints not counted)")


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--serve-synthetic":
        serve_synthetic(int(sys.argv[2]), int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clusters", type=int, default=2000)
    parser.add_argument("--jobs", type=int, default=10000)
    parser.add_argument("--warehouses", type=int, default=50)
    parser.add_argument("--pipelines", type=int, default=300)
    parser.add_argument("--query-rate", type=float, default=9.7,
                        help="scales the simulated query load; 9.7 gives about 1,000,000 queries a day on 50 "
                             "warehouses")
    parser.add_argument("--history-hours", type=float, default=6.0, help="simulated history backfilled at start")
    parser.add_argument("--minutes", type=float, default=5.0, help="steady-state window measured")
    parser.add_argument("--scrapers", type=int, default=50)
    parser.add_argument("--scrape-seconds", type=float, default=20.0)
    parser.add_argument("--series", type=int, default=100_000, help="series of the synthetic /metrics target")
    parser.add_argument("--scrape-only", action="store_true", help="only the /metrics part")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="dbx-bench-"))
    print(f"load average at start: {os.getloadavg()}", flush=True)
    if args.scrape_only:
        scrape_part(args, work)
        return
    sizes = {"n_clusters": args.clusters, "n_jobs": args.jobs, "n_warehouses": args.warehouses,
             "n_pipelines": args.pipelines, "query_rate": args.query_rate, "history_seconds": args.history_hours * 3600}
    print(f"workspace: {json.dumps(sizes)}; work dir {work}", flush=True)
    started = time.monotonic()
    sim = subprocess.Popen([sys.executable, "-c", SIMULATOR, json.dumps(sizes)], stdout=subprocess.PIPE, text=True)
    url, token = sim.stdout.readline().split()
    print(f"simulator up in {time.monotonic() - started:.0f}s at {url}", flush=True)

    port = free_port()
    config = work / "config.yml"
    config.write_text(f"state_file: {work / 'state.json'}\nweb: {{listen_address: '127.0.0.1:{port}'}}\n"
                      "log: {format: json}\ncollectors: {clusters: {timeout: 120s}, jobs: {timeout: 300s}, "
                      "queries: {timeout: 300s}, pipelines: {timeout: 300s}}\n")
    env = {**os.environ, "DATABRICKS_HOST": url, "DATABRICKS_TOKEN": token}
    log_path = work / "exporter.log"
    exporter = subprocess.Popen([sys.executable, "-m", "databricks_exporter", "serve", "--config.file", str(config)],
                                env=env, stdout=subprocess.DEVNULL, stderr=open(log_path, "w"))
    base = f"http://127.0.0.1:{port}"
    try:
        started = time.monotonic()
        while True:
            try:
                if urllib.request.urlopen(base + "/readyz", timeout=5).status == 200:
                    break
            except OSError:
                pass
            if exporter.poll() is not None:
                sys.exit(f"exporter exited:\n{log_path.read_text()[-3000:]}")
            time.sleep(2)
        print(f"first cycle of every collector done in {time.monotonic() - started:.0f}s "
              f"(includes the one-time initial scans)", flush=True)
        time.sleep(65)   # let every collector settle into its steady state

        window_start = time.time()
        snapshots = [(time.time(), get(base + "/metrics"))]
        while time.time() - window_start < args.minutes * 60:
            time.sleep(max(0.0, window_start + len(snapshots) * SNAPSHOT_SECONDS - time.time()))
            snapshots.append((time.time(), get(base + "/metrics")))
        report_requests(snapshots, log_path, window_start, args)
        rss, peak = rss_mb(exporter.pid)
        last = snapshots[-1][1]
        (work / "metrics.txt").write_text(last)
        series = sum(1 for line in last.splitlines() if line and not line.startswith("#"))
        print(f"\nresident memory of the exporter: {rss:.0f} MB now, {peak:.0f} MB peak (target <= 300 MB)")
        print(f"series on /metrics: {series}; exposition {len(last.encode()) / 1e6:.1f} MB; series folded by the "
              f"cardinality guard: {total(last, 'databricks_exporter_series_dropped'):.0f}")
        print(f"load average after the window: {os.getloadavg()}", flush=True)
        scrape_part(args, work, base + "/metrics", exporter.pid)
    finally:
        exporter.send_signal(signal.SIGTERM)
        sim.terminate()
        exporter.wait(30)
        sim.wait(30)


if __name__ == "__main__":
    main()
