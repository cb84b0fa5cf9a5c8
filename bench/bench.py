"""Benchmark: the exporter against a simulated workspace at a large customer's scale. Prints, in one run, API
requests per steady-state cycle, CPU per cycle per collector, resident memory, and /metrics latency under 50
concurrent scrapers next to prometheus_client's own generate_latest serving the same families.

    python bench/bench.py                       # full scale: 2,000 clusters, 10,000 jobs, 50 warehouses
    python bench/bench.py --jobs 500 --minutes 2  # a quick look

Nothing here asserts: it measures and prints. docs/performance.md records the figures."""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

SIMULATOR = """
import json, signal, sys, threading
from databricks_exporter.simulator.server import SimulatorServer
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str, timeout: float = 60, gzipped: bool = False) -> bytes:
    request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"} if gzipped else {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read()


def counters(text: str, name: str, key: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels, value = line.rsplit(" ", 1)
            part = labels.split(f'{key}="', 1)[1].split('"', 1)[0]
            out[part] = out.get(part, 0.0) + float(value)
    return out


def rss_mb(pid: int) -> tuple[float, float]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def hammer(url: str, clients: int, seconds: float) -> dict:
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker():
        nonlocal errors
        mine = []
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                get(url, gzipped=True)   # as Prometheus asks
                mine.append(time.perf_counter() - started)
            except OSError:
                errors += 1
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else math.nan
    return {"requests": len(latencies), "errors": errors, "per_second": len(latencies) / elapsed,
            "p50_ms": pick(0.50), "p99_ms": pick(0.99)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clusters", type=int, default=2000)
    parser.add_argument("--jobs", type=int, default=10000)
    parser.add_argument("--warehouses", type=int, default=50)
    parser.add_argument("--history-hours", type=float, default=6.0, help="simulated history backfilled at start")
    parser.add_argument("--minutes", type=float, default=5.0, help="steady-state window measured")
    parser.add_argument("--scrapers", type=int, default=50)
    parser.add_argument("--scrape-seconds", type=float, default=20.0)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="dbx-bench-"))
    sizes = {"n_clusters": args.clusters, "n_jobs": args.jobs, "n_warehouses": args.warehouses,
             "history_seconds": args.history_hours * 3600}
    print(f"workspace: {json.dumps(sizes)}; work dir {work}", flush=True)
    started = time.monotonic()
    sim = subprocess.Popen([sys.executable, "-c", SIMULATOR, json.dumps(sizes)], stdout=subprocess.PIPE, text=True)
    url, token = sim.stdout.readline().split()
    print(f"simulator up in {time.monotonic() - started:.0f}s at {url}", flush=True)

    port = free_port()
    config = work / "config.yml"
    config.write_text(f"state_file: {work / 'state.json'}\nweb: {{listen_address: '127.0.0.1:{port}'}}\n"
                      "log: {format: json}\ncollectors: {clusters: {timeout: 120s}, jobs: {timeout: 300s}}\n")
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

        before = get(base + "/metrics").decode()
        window_start = time.time()
        time.sleep(args.minutes * 60)
        after = get(base + "/metrics").decode()
        window = time.time() - window_start
        report_requests(before, after, window, log_path, window_start)
        rss, peak = rss_mb(exporter.pid)
        series = sum(1 for line in after.splitlines() if line and not line.startswith("#"))
        print(f"\nresident memory of the exporter: {rss:.0f} MB now, {peak:.0f} MB peak (target <= 300 MB)")
        print(f"series on /metrics: {series}; exposition {len(after.encode()) / 1e6:.1f} MB")

        print(f"\n/metrics under {args.scrapers} concurrent scrapers for {args.scrape_seconds:.0f}s "
              f"(Accept-Encoding: gzip, as Prometheus sends):")
        ours = hammer(base + "/metrics", args.scrapers, args.scrape_seconds)
        snapshot = work / "exposition.txt"
        snapshot.write_text(after)
        baseline_port = free_port()
        baseline = subprocess.Popen([sys.executable, "-c", BASELINE, str(snapshot), str(baseline_port)],
                                    stdout=subprocess.PIPE, text=True)
        baseline.stdout.readline()
        theirs = hammer(f"http://127.0.0.1:{baseline_port}/metrics", args.scrapers, args.scrape_seconds)
        baseline.terminate()
        for name, result in (("databricks-exporter", ours), ("prometheus_client generate_latest", theirs)):
            print(f"  {name:<36} p50 {result['p50_ms']:8.1f} ms  p99 {result['p99_ms']:8.1f} ms  "
                  f"{result['per_second']:8.1f} req/s  ({result['requests']} requests, {result['errors']} errors)")
        print(f"  p99 target <= 10 ms; speed-up over the baseline at p99: "
              f"{theirs['p99_ms'] / ours['p99_ms']:.1f}x (target >= 10x)")
    finally:
        exporter.send_signal(signal.SIGTERM)
        sim.terminate()
        exporter.wait(30)
        sim.wait(30)


def report_requests(before: str, after: str, window: float, log_path: Path, window_start: float) -> None:
    first = counters(before, "databricks_exporter_api_requests_total", "endpoint")
    last = counters(after, "databricks_exporter_api_requests_total", "endpoint")
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
    intervals = {"clusters": 30, "warehouses": 30, "jobs": 60}
    print(f"\nsteady state over {window:.0f}s:")
    print(f"  {'collector':<12} {'cycles':>6} {'wall s/cycle':>13} {'cpu s/cycle':>12} {'max wall s':>11}  keeps up")
    for collector, entries in sorted(cycles.items()):
        wall = [e["duration_seconds"] for e in entries]
        cpu = [e.get("cpu_seconds", math.nan) for e in entries]
        keeps = max(wall) < intervals.get(collector, 60)
        print(f"  {collector:<12} {len(entries):>6} {statistics.mean(wall):>13.2f} {statistics.mean(cpu):>12.2f} "
              f"{max(wall):>11.2f}  {'yes' if keeps else 'NO'}")
    print("  API requests by endpoint (per minute):")
    for endpoint in sorted(last):
        delta = last[endpoint] - first.get(endpoint, 0)
        print(f"    {endpoint:<40} {delta * 60 / window:8.1f}")
    print(f"    {'total':<40} {(sum(last.values()) - sum(first.values())) * 60 / window:8.1f}")


if __name__ == "__main__":
    main()
