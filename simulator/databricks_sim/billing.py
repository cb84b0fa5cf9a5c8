"""What the simulated account is billed: hourly usage records (system.billing.usage) priced by a list-price history
(system.billing.list_prices), derived from the same activity the REST API shows, plus the ground truth per day.

Records are generated once an hour is over, and become visible to SQL only after the billing lag (default 2 hours),
as the real feed does. Activity before the world's own history (SimulatedWorkspace.history_seconds) is backfilled
from each entity's expected load, so a month to date exists on any day. Some days are billed wrong first and
corrected about a day later by a RETRACTION (the negative of the original) plus a RESTATEMENT (the right quantity);
list prices change during the backfilled history, so only a join on the price valid at usage time gives the truth.

Quantities carry 4 decimals and prices 2, so quantity x price is exact at the 6 decimals Databricks SQL keeps for a
DECIMAL(38,18) product: the truth here equals what a correct query computes, to the cent and beyond.
"""

from __future__ import annotations

import bisect
import datetime as dt
import uuid
from dataclasses import dataclass
from decimal import Decimal

from .common import DAY_MS, HOUR_MS, MINUTE_MS, stable_hex, stable_int

Q4 = Decimal("0.0001")
ZERO = Decimal(0)
CLOUD = "AWS"
CURRENCY = "USD"
PRICE_EPOCH_MS = 1_577_836_800_000      # 2020-01-01: the first list price of every SKU starts here

# DBUs per node-hour by node type (AWS premium, approximately the published rates).
NODE_DBU = {"i3.xlarge": 1.0, "i3.2xlarge": 2.0, "m5d.xlarge": 0.69, "m5d.2xlarge": 1.37, "r5d.2xlarge": 1.8,
            "c5d.4xlarge": 2.43}
PHOTON_FACTOR = 2.0
# DBUs per cluster-hour of a SQL warehouse by size.
WAREHOUSE_DBU = {"2X-Small": 4, "X-Small": 6, "Small": 12, "Medium": 24, "Large": 40, "X-Large": 80}

SKU_JOBS = "PREMIUM_JOBS_COMPUTE"
SKU_JOBS_PHOTON = "PREMIUM_JOBS_COMPUTE_(PHOTON)"
SKU_JOBS_SERVERLESS = "PREMIUM_JOBS_SERVERLESS_COMPUTE_US_WEST_OREGON"
SKU_ALL_PURPOSE = "PREMIUM_ALL_PURPOSE_COMPUTE"
SKU_ALL_PURPOSE_PHOTON = "PREMIUM_ALL_PURPOSE_COMPUTE_(PHOTON)"
SKU_DLT = "PREMIUM_DLT_ADVANCED_COMPUTE"
SKU_DLT_PHOTON = "PREMIUM_DLT_ADVANCED_COMPUTE_(PHOTON)"
SKU_SQL_CLASSIC = "PREMIUM_SQL_COMPUTE"
SKU_SQL_PRO = "PREMIUM_SQL_PRO_COMPUTE"
SKU_SQL_SERVERLESS = "PREMIUM_SERVERLESS_SQL_COMPUTE_US_WEST_OREGON"

# USD per DBU, and when it changed: (days before the anchor day, hour of that day, new price). The anchor is the
# UTC day the simulation started, so the changes fall on closed days of the backfilled history whenever it runs.
PRICE_HISTORY: dict[str, tuple[str, list[tuple[int, int, str]]]] = {
    SKU_JOBS: ("0.15", [(2, 14, "0.18")]),
    SKU_JOBS_PHOTON: ("0.15", [(2, 14, "0.18")]),
    SKU_JOBS_SERVERLESS: ("0.45", [(20, 0, "0.35")]),
    SKU_ALL_PURPOSE: ("0.55", []),
    SKU_ALL_PURPOSE_PHOTON: ("0.55", []),
    SKU_DLT: ("0.36", []),
    SKU_DLT_PHOTON: ("0.36", []),
    SKU_SQL_CLASSIC: ("0.22", []),
    SKU_SQL_PRO: ("0.55", [(16, 9, "0.60")]),
    SKU_SQL_SERVERLESS: ("0.70", []),
}
# Days (before the anchor day) billed wrong first and corrected later.
RESTATED_DAYS_BEFORE_ANCHOR = (3, 11, 19, 26, 33)
RESTATEMENT_FACTOR = Decimal("1.2")        # the original records of a restated entity over-report by 20%
TAG_KEYS_TRUTH = ("team", "cost_center", "env")


def day_of(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).date().isoformat()


def _uuid(*parts) -> str:
    h = stable_hex(*parts, n=32)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _q(value: float) -> Decimal:
    return Decimal(repr(value)).quantize(Q4)


@dataclass
class Billable:
    """Something that consumes DBUs under one SKU and one set of attributes."""

    key: str
    workspace_id: str
    sku: str
    product: str
    tags: dict
    meta: dict
    features: dict
    identity: dict
    usage_type: str = "COMPUTE_TIME"
    spread: int = 0                     # a stable per-billable number, for cheap deterministic jitter


@dataclass
class UsageRow:
    record_id: str
    billable: Billable
    start_ms: int
    end_ms: int
    quantity: Decimal
    record_type: str
    visible_ms: int


class BillingModel:
    """Hourly usage of the simulated workspace (and a small sibling workspace of the same account)."""

    def __init__(self, ws, lag_ms: int = 2 * HOUR_MS, history_days: int = 40,
                 correction_delay_ms: int = 26 * HOUR_MS):
        self.ws = ws
        self.workspace_id = str(ws.workspace_id)
        self.sibling_id = str(ws.workspace_id + 1)
        self.lag_ms = int(lag_ms)
        self.correction_delay_ms = int(correction_delay_ms)
        self.anchor_day_ms = int(ws.start_s * 1000) // DAY_MS * DAY_MS
        self.start_ms = self.anchor_day_ms - history_days * DAY_MS
        self.world_start_ms = ws.world_start_ms
        self.generated_until_ms = self.start_ms
        self.restated_days = {day_of(self.anchor_day_ms - d * DAY_MS) for d in RESTATED_DAYS_BEFORE_ANCHOR}
        self._restated_day_index = {self.anchor_day_ms // DAY_MS - d for d in RESTATED_DAYS_BEFORE_ANCHOR}
        self.prices: dict[str, list[tuple[int, int | None, Decimal]]] = {}
        for sku, (first, changes) in PRICE_HISTORY.items():
            points = [(PRICE_EPOCH_MS, Decimal(first))]
            for days_before, hour, price in changes:
                points.append((self.anchor_day_ms - days_before * DAY_MS + hour * HOUR_MS, Decimal(price)))
            self.prices[sku] = [(start, points[i + 1][0] if i + 1 < len(points) else None, price)
                                for i, (start, price) in enumerate(points)]
        self.price_change_days = {day_of(start) for segments in self.prices.values() for start, _, _ in segments[1:]}
        self._billables: dict[str, Billable] = {}
        self._undrained: list[UsageRow] = []
        self._pipeline_ids = self._pipeline_id_map()

    # -- prices

    def price_at(self, sku: str, ms: int) -> Decimal:
        segments = self.prices[sku]
        i = bisect.bisect_right([s for s, _, _ in segments], ms) - 1
        return segments[max(i, 0)][2]

    def list_price_rows(self) -> list[dict]:
        rows = []
        for sku, segments in self.prices.items():
            for start, end, price in segments:
                rows.append({"price_start_time": start, "price_end_time": end, "account_id": self.ws.account_id,
                             "sku_name": sku, "cloud": CLOUD, "currency_code": CURRENCY, "usage_unit": "DBU",
                             "price": price})
        return rows

    # -- billables

    def _pipeline_id_map(self) -> dict[str, str]:
        """DLT usage is attributed to the pipelines the REST API lists, when the workspace has them."""
        pipelines = getattr(getattr(self.ws, "pipelines", None), "pipelines", None) or []
        ids = [p.pipeline_id for p in pipelines]
        dlt_clusters = [c for c in self.ws.clusters if c.spec.source == "PIPELINE"]
        return {c.spec.cluster_id: (ids[i % len(ids)] if ids else _uuid(self.ws.seed, "dlt", c.spec.cluster_id))
                for i, c in enumerate(dlt_clusters)}

    def _billable(self, key: str, make) -> Billable:
        billable = self._billables.get(key)
        if billable is None:
            billable = self._billables[key] = make()
        return billable

    def _job_billable(self, job, run=None) -> Billable:
        serverless = job.compute == "serverless"
        photon = job.cluster_spec.runtime_engine == "PHOTON"
        sku = SKU_JOBS_SERVERLESS if serverless else (SKU_JOBS_PHOTON if photon else SKU_JOBS)
        key = f"run:{run.run_id}" if run is not None else f"job:{job.job_id}"

        def make():
            # One-time runs are billed under the job id of the stream that makes them (jobs.OneTimeRuns), one id
            # for all: a real workspace bills each under its own job_id, which would need the billing collector
            # to fold them as the jobs collector does.
            meta = {"job_id": str(job.job_id), "job_name": job.name}
            if run is not None:
                meta["job_run_id"] = str(run.run_id)
                meta["run_name"] = job.name
            if not serverless:
                meta["node_type"] = job.cluster_spec.node_type_id
                if run is not None and run.cluster_id:
                    meta["cluster_id"] = run.cluster_id
            return Billable(key, self.workspace_id, sku, "JOBS", dict(job.tags), meta,
                            {"jobs_tier": "CLASSIC", "is_serverless": serverless, "is_photon": photon or serverless},
                            {"run_as": job.creator})
        return self._billable(key, make)

    def _job_rate(self, job) -> float:
        """DBUs per hour of one run of the job."""
        if job.compute == "serverless":
            return 2 + stable_int(self.ws.seed, "serverless-dbu", job.job_id, bound=80) / 10
        spec = job.cluster_spec
        factor = PHOTON_FACTOR if spec.runtime_engine == "PHOTON" else 1.0
        return (spec.num_workers + 1) * NODE_DBU[spec.node_type_id] * factor

    def _cluster_billable(self, cluster) -> Billable:
        spec = cluster.spec
        photon = spec.runtime_engine == "PHOTON"

        def make():
            meta = {"cluster_id": spec.cluster_id, "node_type": spec.node_type_id}
            if spec.source == "PIPELINE":
                meta["dlt_pipeline_id"] = self._pipeline_ids[spec.cluster_id]
                # Pipelines carry their own configuration tags, which these simulated ones do not set.
                return Billable(f"cluster:{spec.cluster_id}", self.workspace_id, SKU_DLT_PHOTON if photon else SKU_DLT,
                                "DLT", {}, meta, {"dlt_tier": "ADVANCED", "is_serverless": False, "is_photon": photon},
                                {"run_as": spec.creator})
            return Billable(f"cluster:{spec.cluster_id}", self.workspace_id,
                            SKU_ALL_PURPOSE_PHOTON if photon else SKU_ALL_PURPOSE, "ALL_PURPOSE", dict(spec.custom_tags),
                            meta, {"is_serverless": False, "is_photon": photon}, {"owned_by": spec.creator})
        return self._billable(f"cluster:{spec.cluster_id}", make)

    def _cluster_rate(self, cluster, workers: int) -> float:
        spec = cluster.spec
        return (workers + 1) * NODE_DBU[spec.node_type_id] * (PHOTON_FACTOR if spec.runtime_engine == "PHOTON" else 1.0)

    def _warehouse_billable(self, warehouse) -> Billable:
        if warehouse.serverless:
            sku, tier = SKU_SQL_SERVERLESS, "PRO"
        elif warehouse.warehouse_type == "PRO":
            sku, tier = SKU_SQL_PRO, "PRO"
        else:
            sku, tier = SKU_SQL_CLASSIC, "CLASSIC"
        return self._billable(f"warehouse:{warehouse.id}", lambda: Billable(
            f"warehouse:{warehouse.id}", self.workspace_id, sku, "SQL", {t["key"]: t["value"] for t in warehouse.tags},
            {"warehouse_id": warehouse.id}, {"sql_tier": tier, "is_serverless": warehouse.serverless,
                                             "is_photon": True}, {"owned_by": warehouse.creator}))

    def _sibling_billables(self) -> list[tuple[Billable, float, float]]:
        """(billable, DBUs per active hour, share of hours active) of the sibling workspace's few entities."""
        out = []
        for i in range(3):
            job_id = str(900_000_000 + i)
            out.append((self._billable(f"sibling-job:{i}", lambda i=i, job_id=job_id: Billable(
                f"sibling-job:{i}", self.sibling_id, SKU_JOBS, "JOBS", {"team": "sibling-team"},
                {"job_id": job_id}, {"jobs_tier": "CLASSIC", "is_serverless": False, "is_photon": False},
                {"run_as": "sibling@example.com"})), 6.0 + 3 * i, 0.5))
        out.append((self._billable("sibling-warehouse", lambda: Billable(
            "sibling-warehouse", self.sibling_id, SKU_SQL_PRO, "SQL", {"team": "sibling-team"},
            {"warehouse_id": stable_hex(self.ws.seed, "sibling-warehouse", n=16)},
            {"sql_tier": "PRO", "is_serverless": False, "is_photon": True}, {})), 24.0, 0.6))
        return out

    # -- generation

    def drain(self) -> list[UsageRow]:
        """Records generated since the last drain (for the SQL tables; truth() generates too)."""
        rows, self._undrained = self._undrained, []
        return rows

    def advance(self, now_ms: int) -> None:
        """Generate the records of every hour that ended by now_ms (visible or not) and account them in the truth."""
        for billable, start, end, quantity, visible in self.ws.scenarios.apply("billing", now_ms, [], self):
            self._add_record(billable, start, end, quantity, visible)
        target = now_ms // HOUR_MS * HOUR_MS
        if target <= self.generated_until_ms:
            return
        a, b = self.generated_until_ms, target
        amounts: dict[tuple[str, int], float] = {}     # (billable key, hour start) -> DBUs
        billables: dict[str, Billable] = {}

        def add(billable: Billable, start: int, end: int, rate: float) -> None:
            start, end = max(start, a), min(end, b)
            while start < end:
                hour = start // HOUR_MS * HOUR_MS
                stop = min(end, hour + HOUR_MS)
                key = (billable.key, hour)
                amounts[key] = amounts.get(key, 0.0) + rate * (stop - start) / HOUR_MS
                billables[billable.key] = billable
                start = stop

        if a < self.world_start_ms:
            self._backfill(add, a, min(b, self.world_start_ms))
        if b > self.world_start_ms:
            self._world(add, max(a, self.world_start_ms), b)
        for billable, dbus, share in self._sibling_billables():
            for hour in range(a, b, HOUR_MS):
                if stable_int(self.ws.seed, billable.key, hour, bound=1000) < share * 1000:
                    add(billable, hour, hour + HOUR_MS, dbus)
        self.generated_until_ms = b

        rows = []
        # Truth is added up per billable, day and price first: Decimal work per record would dominate.
        sums: dict[tuple, list] = {}
        for (key, hour), dbus in sorted(amounts.items(), key=lambda item: (item[0][1], item[0][0])):
            quantity = _q(dbus)
            if quantity <= 0:
                continue
            billable = billables[key]
            records = self._records(billable, hour, quantity)
            rows.extend(records)
            self._ledger(billable, hour, quantity)
            entry = sums.setdefault((billable.key, hour // DAY_MS, self.price_at(billable.sku, hour)),
                                    [billable, ZERO, 0, False])
            entry[1] += quantity
            entry[2] = max(entry[2], max(r.visible_ms for r in records))
            entry[3] = entry[3] or len(records) > 1
        for (_, day, price), (billable, quantity, visible, restated) in sums.items():
            self._account(billable, day, quantity, price, visible, restated)
        self._undrained.extend(rows)

    def _add_record(self, billable: Billable, start: int, end: int, quantity: Decimal, visible: int) -> None:
        """One extra ORIGINAL record (an incident scenario's), in the tables and in the truth."""
        self._undrained.append(UsageRow(_uuid(self.ws.seed, billable.key, start, end), billable, start, end, quantity,
                                        "ORIGINAL", visible))
        self._account(billable, start // DAY_MS, quantity, self.price_at(billable.sku, start), visible, False)
        self._ledger(billable, start, quantity)

    def _ledger(self, billable: Billable, start: int, quantity: Decimal) -> None:
        """What a record of a job run or an all-purpose cluster costs, into the ledger (the truth of run costs)."""
        if billable.meta.get("job_run_id") or billable.product == "ALL_PURPOSE":
            self.ws.ledger.usage_priced(billable.key, start, quantity * self.price_at(billable.sku, start),
                                        job_run_id=billable.meta.get("job_run_id"),
                                        cluster_id=billable.meta.get("cluster_id"))

    def _records(self, billable: Billable, hour: int, quantity: Decimal) -> list[UsageRow]:
        end = hour + HOUR_MS
        if not billable.spread:
            billable.spread = stable_int(self.ws.seed, billable.key, "spread", bound=1 << 40) + 1
        visible = end + self.lag_ms + (billable.spread + hour // HOUR_MS) % 20 * MINUTE_MS
        restated = (hour // DAY_MS in self._restated_day_index
                    and stable_int(self.ws.seed, billable.key, hour // DAY_MS, "restate", bound=3) == 0)
        # Unique and stable without a hash per record: the billable's number, the hour and the record type.
        rid = lambda kind: str(uuid.UUID(int=(billable.spread << 80) | (hour // HOUR_MS << 8) | kind))  # noqa: E731
        if restated:
            wrong = (quantity * RESTATEMENT_FACTOR).quantize(Q4)
            corrected = (hour // DAY_MS + 1) * DAY_MS + self.correction_delay_ms + self.lag_ms
            return [UsageRow(rid(1), billable, hour, end, wrong, "ORIGINAL", visible),
                    UsageRow(rid(2), billable, hour, end, -wrong, "RETRACTION", corrected),
                    UsageRow(rid(3), billable, hour, end, quantity, "RESTATEMENT", corrected)]
        return [UsageRow(rid(1), billable, hour, end, quantity, "ORIGINAL", visible)]

    def _account(self, billable: Billable, day_index: int, quantity: Decimal, price: Decimal, visible: int,
                 restated: bool) -> None:
        self.ws.ledger.billed(
            billable.workspace_id, day_of(day_index * DAY_MS), quantity, quantity * price, visible, restated,
            sku=billable.sku, product=billable.product, job_id=billable.meta.get("job_id"),
            warehouse_id=billable.meta.get("warehouse_id"), pipeline_id=billable.meta.get("dlt_pipeline_id"),
            tags={key: billable.tags.get(key, "") for key in TAG_KEYS_TRUTH})

    def _backfill(self, add, a: int, b: int) -> None:
        """Expected load, hour by hour, of every billable entity before the world's detailed history begins."""
        seed = self.ws.seed
        for job in self.ws.jobs:
            if job.compute == "existing" or not job.scheduled:
                continue
            run_ms = sum(t.median_ms for t in job.tasks) + sum(job.launch_range_s) * 500
            rate = self._job_rate(job)
            billable = self._job_billable(job)
            for hour in range(a // HOUR_MS * HOUR_MS, b, HOUR_MS):
                runs = self._fires_in_hour(job, hour)
                if runs:
                    noise = 0.8 + stable_int(seed, "noise", job.job_id, hour, bound=400) / 1000
                    add(billable, max(hour, a), min(hour + HOUR_MS, b), rate * runs * run_ms / HOUR_MS * noise)
        for cluster in self.ws.clusters:
            if cluster.spec.source == "SQL":
                continue
            billable = self._cluster_billable(cluster)
            lo, hi = cluster.spec.autoscale or (cluster.spec.num_workers, cluster.spec.num_workers)
            for hour in range(a // HOUR_MS * HOUR_MS, b, HOUR_MS):
                share = self._active_share(cluster, hour)
                if stable_int(seed, "active", cluster.spec.cluster_id, hour, bound=1000) < share:
                    workers = lo + stable_int(seed, "workers", cluster.spec.cluster_id, hour, bound=hi - lo + 1)
                    add(billable, max(hour, a), min(hour + HOUR_MS, b), self._cluster_rate(cluster, workers))
        for warehouse in self.ws.warehouses:
            billable = self._warehouse_billable(warehouse)
            span = warehouse.max_clusters - warehouse.min_clusters + 1
            for hour in range(a // HOUR_MS * HOUR_MS, b, HOUR_MS):
                hod = hour % DAY_MS // HOUR_MS
                share = 1000 if warehouse.always_on else (550 if 7 <= hod < 19 else 120)
                if stable_int(seed, "active", warehouse.id, hour, bound=1000) < share:
                    clusters = warehouse.min_clusters + stable_int(seed, "clusters", warehouse.id, hour, bound=span)
                    add(billable, max(hour, a), min(hour + HOUR_MS, b),
                        WAREHOUSE_DBU[warehouse.cluster_size] * clusters)

    @staticmethod
    def _fires_in_hour(job, hour: int) -> int:
        period, offset = job.period_min, job.offset_min
        first_minute = hour // MINUTE_MS
        if 60 % period == 0:
            return 60 // period
        first = first_minute + (offset - first_minute) % period
        return 1 if first < first_minute + 60 else 0

    @staticmethod
    def _active_share(cluster, hour: int) -> int:
        if cluster.always_on:
            return 1000
        hod = hour % DAY_MS // HOUR_MS
        business = 8 <= hod < 19
        return {"UI": 650 if business else 80, "API": 400, "PIPELINE": 300}.get(cluster.spec.source, 0)

    def _world(self, add, a: int, b: int) -> None:
        """The detailed history: job runs, cluster sessions and warehouse sessions as the REST API shows them."""
        ws = self.ws
        runs = ws.job_set.runs
        lo = bisect.bisect_left(runs, (a - ws.job_set.max_run_span_ms - 1, 0), key=lambda r: (r.start_ms, r.run_id))
        for run in runs[lo:]:
            if run.start_ms >= b:
                break
            job = run.job
            if job.compute == "existing" or run.life_cycle == "SKIPPED" or run.latest_end_ms() <= a:
                continue
            billable, rate = self._job_billable(job, run), self._job_rate(job)
            add(billable, run.exec_start_ms, run.end_ms, rate)
            for repair in run.repairs:      # a repair re-runs tasks on the run's compute, billed to the same run
                add(billable, repair.start_ms, repair.end_ms, rate)
        for cluster in ws.clusters:
            if cluster.spec.source == "SQL":
                continue
            billable = self._cluster_billable(cluster)
            for start, end, state, workers in _segments(cluster.transitions, cluster.transition_ts, a, b):
                if state in ("RUNNING", "RESIZING", "RESTARTING"):
                    add(billable, start, end, self._cluster_rate(cluster, workers))
        for warehouse in ws.warehouses:
            billable = self._warehouse_billable(warehouse)
            for start, end, state, clusters in _segments(warehouse.transitions, warehouse.transition_ts, a, b,
                                                          value_index=2):
                if state == "RUNNING":
                    add(billable, start, end, WAREHOUSE_DBU[warehouse.cluster_size] * clusters)

    # -- truth

    def truth(self, now_ms: int) -> dict:
        """True DBUs and list cost per UTC day and workspace; `complete` once every record of the day is visible."""
        out = {}
        for workspace_id in (self.workspace_id, self.sibling_id):
            days = self.ws.ledger.billed_days(workspace_id)
            rendered = {}
            for day, t in sorted(days.items()):
                day_end = int(dt.datetime.fromisoformat(day).replace(tzinfo=dt.timezone.utc).timestamp() * 1000) \
                    + DAY_MS
                complete = self.generated_until_ms >= day_end and t.visible_ms <= now_ms
                rendered[day] = {
                    "dbus": float(t.dbus), "list_cost": float(t.cost), "complete": complete,
                    "restated": t.restated, "price_change": day in self.price_change_days,
                    "by_sku": _floats(t.by_sku), "by_product": _floats(t.by_product), "by_job": _floats(t.by_job),
                    "by_warehouse": _floats(t.by_warehouse), "by_pipeline": _floats(t.by_pipeline),
                    "by_tag": {k: _floats(v) for k, v in t.by_tag.items()},
                }
            out[workspace_id] = rendered
        return {"currency": CURRENCY, "lag_seconds": self.lag_ms / 1000, "workspaces": out}


def _floats(table: dict) -> dict:
    return {k: float(v) for k, v in sorted(table.items())}


def _segments(transitions: list, timestamps: list, a: int, b: int, value_index: int = 3):
    """(start, end, state, value) pieces of a state timeline that overlap [a, b)."""
    i = max(bisect.bisect_right(timestamps, a) - 1, 0)
    while i < len(transitions) and transitions[i][0] < b:
        start = transitions[i][0]
        end = transitions[i + 1][0] if i + 1 < len(transitions) else b
        if end > a:
            yield max(start, a), min(end, b), transitions[i][1], transitions[i][value_index]
        i += 1
