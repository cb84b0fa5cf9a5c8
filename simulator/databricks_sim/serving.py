"""Model serving endpoints of the simulated workspace: the endpoint list, each endpoint's metrics export (Prometheus
text, per-minute values) and the rows of system.serving.served_entities and system.serving.endpoint_usage.

Traffic is drawn per endpoint, served entity and minute from the seed; the metrics export shows the latest complete
minute (request counts are that minute's, gauges despite the `_total` suffix, as Databricks documents them), and
every minute's counts go to the ledger the truth endpoint reads. Token counts exist for the LLM endpoint only, one
usage row per request, visible USAGE_LAG_MS after the request.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .common import HOUR_MS, ApiError, does_not_exist, stable_hex
from .streams import MINUTE_MS, MinuteStream, nested, rng_for, uuid_of

USAGE_LAG_MS = 5 * MINUTE_MS           # assumption: "system tables lag"; not verified for this table
HISTORY_MS = 6 * HOUR_MS               # traffic drawn from this long before the simulator's start
LATENCY_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)
REQUESTERS = ("ana.silva@example.com", "dev.patel@example.com", "svc-recsys@example.com")


@dataclass(frozen=True)
class Entity:
    name: str                  # the served entity's name on the endpoint
    entity_name: str           # the model (Unity Catalog name, or a foundation model)
    version: str
    share: float               # of the endpoint's traffic
    workload_size: str = "Small"
    scale_to_zero: bool = False


@dataclass(frozen=True)
class Endpoint:
    name: str
    task: str | None
    entities: tuple[Entity, ...]
    rate: float                # requests per minute
    latency_ms: float          # median
    ready: str = "READY"
    config_update: str = "NOT_UPDATING"
    llm: bool = False
    concurrency: int = 4       # provisioned concurrent requests while serving
    shared: bool = False       # another team's: listed, but its metrics export answers 403 (no CAN QUERY)


ENDPOINTS = (
    Endpoint("fraud-scoring", None, (Entity("fraud_model-12", "ml.risk.fraud_model", "12", 1.0),), 300, 40),
    Endpoint("demand-forecast", None, (Entity("forecaster-7", "ml.supply.forecaster", "7", 0.8),
                                       Entity("forecaster-8", "ml.supply.forecaster", "8", 0.2)), 40, 120),
    # Scale to zero enabled and idle: scaled to zero, no concurrency provisioned.
    Endpoint("churn-predictor", None, (Entity("churn-3", "ml.crm.churn", "3", 1.0, scale_to_zero=True),), 0, 60,
             concurrency=0),
    # Its latest config update failed: not ready, serving nothing.
    Endpoint("recsys-ranker", None, (Entity("ranker-4", "ml.recsys.ranker", "4", 1.0, workload_size="Medium"),), 0,
             80, ready="NOT_READY", config_update="UPDATE_FAILED", concurrency=0),
    Endpoint("llm-chat", "llm/v1/chat", (Entity("databricks-meta-llama-3-3-70b-instruct",
                                                "system.ai.meta_llama_v3_3_70b_instruct", "1", 1.0),),
             30, 900, llm=True, concurrency=8),
    # Another team's endpoint: visible in the list, its metrics export refused (a permission gap).
    Endpoint("partner-embeddings", "llm/v1/embeddings",
             (Entity("bge-large-2", "ml.partner.bge_large", "2", 1.0),), 60, 30, shared=True),
)


@dataclass
class Traffic:
    """One served entity's minute."""
    requests: int
    errors_4xx: int
    errors_5xx: int
    latency_ms: float          # median
    cpu: float
    memory: float


class ServingEndpoints(MinuteStream):
    domain = "serving"

    def __init__(self, ws):
        super().__init__(ws, max(ws.world_start_ms, ws.now_ms() - HISTORY_MS))
        self.created_ms = ws.world_start_ms - 30 * 24 * HOUR_MS
        self.by_name = {e.name: e for e in ENDPOINTS}
        for endpoint in ENDPOINTS:
            for entity in endpoint.entities:
                self.emit("serving_served_entities", self._entity_row(endpoint, entity))

    # -- traffic

    def traffic(self, endpoint: Endpoint, entity: Entity, start_ms: int) -> Traffic:
        rng = rng_for(self.seed, "serving", endpoint.name, entity.name, start_ms)
        requests = round(endpoint.rate * entity.share * (0.8 + 0.4 * rng.random()))
        traffic = Traffic(requests, min(requests, round(requests * 0.02 * rng.random())),
                          min(requests, round(requests * 0.004 * rng.random())), endpoint.latency_ms,
                          round(15 + 30 * rng.random(), 2) if endpoint.concurrency else 0.0,
                          round(35 + 20 * rng.random(), 2) if endpoint.concurrency else 0.0)
        return self.ws.scenarios.apply("serving_minute", start_ms, traffic, endpoint.name)

    def minute(self, start_ms: int) -> None:
        end = start_ms + MINUTE_MS
        for endpoint in ENDPOINTS:
            for entity in endpoint.entities:
                t = self.traffic(endpoint, entity, start_ms)
                for kind, n in (("requests", t.requests), ("4xx", t.errors_4xx), ("5xx", t.errors_5xx)):
                    if n:
                        self.record(end, end, kind, endpoint.name, entity.name, amount=n)
                if endpoint.llm:
                    self._usage_rows(endpoint, entity, start_ms, t)

    def _usage_rows(self, endpoint: Endpoint, entity: Entity, start_ms: int, t: Traffic) -> None:
        rng = rng_for(self.seed, "serving-usage", endpoint.name, entity.name, start_ms)
        statuses = [500] * t.errors_5xx + [429] * t.errors_4xx
        statuses += [200] * (t.requests - len(statuses))
        for i, status in enumerate(statuses):
            at = start_ms + int(i * MINUTE_MS / max(1, len(statuses)))
            tokens_in = rng.randint(40, 1200)
            tokens_out = rng.randint(20, 600) if status == 200 else 0
            visible = at + USAGE_LAG_MS
            self.record(at, visible, "input_tokens", endpoint.name, entity.name, amount=tokens_in)
            self.record(at, visible, "output_tokens", endpoint.name, entity.name, amount=tokens_out)
            self.record(at, visible, "usage_requests", endpoint.name, entity.name, amount=1)
            self.emit("serving_endpoint_usage", {
                "account_id": self.ws.account_id, "workspace_id": str(self.ws.workspace_id),
                "client_request_id": None, "databricks_request_id": uuid_of(self.seed, endpoint.name, at, i),
                "requester": REQUESTERS[rng.randrange(len(REQUESTERS))], "status_code": status,
                "request_time": at, "input_token_count": tokens_in, "output_token_count": tokens_out,
                "input_character_count": tokens_in * 4, "output_character_count": tokens_out * 4,
                "usage_context_k": [], "usage_context_v": [], "request_streaming": bool(rng.random() < 0.5),
                "served_entity_id": self.entity_id(endpoint, entity), "_visible_at": visible})

    # -- REST

    def entity_id(self, endpoint: Endpoint, entity: Entity) -> str:
        return stable_hex(self.seed, "served-entity", endpoint.name, entity.name)

    def _entity_row(self, endpoint: Endpoint, entity: Entity) -> dict:
        return {"account_id": self.ws.account_id, "workspace_id": str(self.ws.workspace_id),
                "served_entity_id": self.entity_id(endpoint, entity), "created_by": REQUESTERS[0],
                "endpoint_name": endpoint.name, "endpoint_id": stable_hex(self.seed, "endpoint", endpoint.name),
                "served_entity_name": entity.name,
                "entity_type": "FOUNDATION_MODEL" if endpoint.llm else "CUSTOM_MODEL",
                "entity_name": entity.entity_name, "entity_version": entity.version, "endpoint_config_version": 1,
                "task": endpoint.task, "change_time": self.created_ms, "endpoint_delete_time": None,
                "_visible_at": self.created_ms}

    def list(self) -> dict:
        return {"endpoints": [self._json(e) for e in ENDPOINTS]}

    def get(self, name: str) -> dict:
        return self._json(self._endpoint(name))

    def _endpoint(self, name: str) -> Endpoint:
        endpoint = self.by_name.get(name)
        if endpoint is None:
            raise does_not_exist(f"Serving endpoint with name {name} does not exist.")
        return endpoint

    def _json(self, e: Endpoint) -> dict:
        entities = []
        for entity in e.entities:
            item = {"name": entity.name, "entity_name": entity.entity_name, "entity_version": entity.version}
            if e.llm:
                item["foundation_model"] = {"name": entity.entity_name, "display_name": entity.name}
            else:
                item.update(workload_size=entity.workload_size, scale_to_zero_enabled=entity.scale_to_zero,
                            workload_type="CPU")
            entities.append(item)
        out = {"name": e.name, "id": stable_hex(self.seed, "endpoint", e.name), "creator": REQUESTERS[0],
               "creation_timestamp": self.created_ms, "last_updated_timestamp": self.created_ms + HOUR_MS,
               "state": {"ready": e.ready, "config_update": e.config_update},
               "config": {"served_entities": entities,
                          "traffic_config": {"routes": [{"served_model_name": x.name,
                                                         "traffic_percentage": int(x.share * 100)}
                                                        for x in e.entities]}},
               "tags": [{"key": "team", "value": "ml-platform"}], "permission_level": "CAN_MANAGE"}
        if e.task:
            out["task"] = e.task
        return out

    def metrics_text(self, name: str) -> str:
        """The endpoint's metrics export: the latest complete minute, samples stamped with its end (ms)."""
        endpoint = self._endpoint(name)
        if endpoint.shared:
            raise ApiError(403, "PERMISSION_DENIED",
                           f"User does not have permission 'Query' on serving endpoint '{name}'.")
        with self.ws.lock:
            now_ms = self.ws.now_ms()
            self.advance(now_ms)
        start = now_ms // MINUTE_MS * MINUTE_MS - MINUTE_MS
        stamp = start + MINUTE_MS
        families: dict[str, tuple[str, str, list[str]]] = {}

        def sample(family, kind, help_, value, labels, suffix="", extra=""):
            lines = families.setdefault(family, (kind, help_, []))[2]
            lines.append(f"{family}{suffix}{{{labels}{extra}}} {value} {stamp}")

        for entity in endpoint.entities:
            t = self.traffic(endpoint, entity, start)
            labels = f'endpoint_name="{endpoint.name}",served_entity_name="{entity.name}"'
            sample("cpu_usage_percentage", "gauge", "Average CPU utilization used across all the server replicas.",
                   t.cpu, labels)
            sample("mem_usage_percentage", "gauge", "Average memory utilization used across all the server replicas.",
                   t.memory, labels)
            if endpoint.llm:
                sample("gpu_usage_percentage", "gauge", "Average GPU utilization across all GPUs.",
                       round(t.cpu * 1.6, 2), labels)
                sample("gpu_memory_usage_percentage", "gauge", "Average GPU memory utilization across all GPUs.",
                       round(t.memory * 1.2, 2), labels)
            sample("provisioned_concurrent_requests_total", "gauge",
                   "Number of provisioned concurrency. Per-minute value.", endpoint.concurrency, labels)
            sample("request_count_total", "gauge", "Number of requests processed by the endpoint. Per-minute value.",
                   t.requests, labels)
            sample("request_4xx_count_total", "gauge", "Number of 4xx errors. Per-minute value.", t.errors_4xx,
                   labels)
            sample("request_5xx_count_total", "gauge", "Number of 5xx errors. Per-minute value.", t.errors_5xx,
                   labels)
            buckets = self._latencies(endpoint, entity, start, t)
            for family, scale in (("request_latency_ms", 1.0), ("model_queue_time_ms", 0.05)):
                help_ = ("Round-trip latency of requests (ms). Per-minute histogram." if scale == 1.0 else
                         "Time requests waited in the model's queue (ms). Per-minute histogram.")
                counts = [0] * (len(LATENCY_BUCKETS_MS) + 1)
                total = 0.0
                for value in buckets:
                    value *= scale
                    counts[next((i for i, b in enumerate(LATENCY_BUCKETS_MS) if value <= b),
                                len(LATENCY_BUCKETS_MS))] += 1
                    total += value
                running = 0
                for bound, count in zip(list(LATENCY_BUCKETS_MS) + ["+Inf"], counts):
                    running += count
                    sample(family, "histogram", help_, running, labels, "_bucket", f',le="{bound}"')
                sample(family, "histogram", help_, round(total, 3), labels, "_sum")
                sample(family, "histogram", help_, len(buckets), labels, "_count")
        out = []
        for family, (kind, help_, lines) in families.items():
            out += [f"# HELP {family} {help_}", f"# TYPE {family} {kind}", *lines]
        return "\n".join(out) + "\n"

    def _latencies(self, endpoint: Endpoint, entity: Entity, start_ms: int, t: Traffic) -> list[float]:
        rng = rng_for(self.seed, "serving-latency", endpoint.name, entity.name, start_ms)
        return [t.latency_ms * math.exp(0.45 * rng.gauss(0, 1)) for _ in range(t.requests)]

    # -- truth

    def truth(self, since_ms: float, now_ms: int) -> dict:
        counts = self.counts(since_ms, now_ms)
        return {"serving": nested({(k[0], k[1], k[2]): v for k, v in counts.items()})}
