"""Fault injection for the simulated workspace: throttling, server errors, slow answers, dropped connections,
malformed or truncated JSON, and expiring tokens, set per endpoint by POST /simulator/faults, deterministic by seed.

    POST /simulator/faults
    {"seed": 7,
     "rules": [{"endpoint": "*",                        # or "GET /api/2.2/jobs/runs/list", or a regex on that
                "rate_limited": 0.25, "retry_after": 1,  # shares of requests, 0..1, drawn in this order
                "server_error": 0.1, "unavailable": 0.1,
                "slow": 0.1, "slow_seconds": 3,
                "dropped": 0.05, "malformed": 0.05, "truncated": 0.05}],
     "token_expired": false,       # every bearer token answers 401 until faults are cleared (a rotated PAT)
     "oauth_token_ttl": 30}        # OAuth tokens issued from now on expire after this many seconds
    DELETE /simulator/faults       # back to a healthy workspace
"""

from __future__ import annotations

import random
import re
import threading
from dataclasses import dataclass

KINDS = ("rate_limited", "server_error", "unavailable", "slow", "dropped", "malformed", "truncated")


class FaultSpecError(ValueError):
    pass


@dataclass
class Rule:
    pattern: re.Pattern
    shares: dict[str, float]
    retry_after: int = 1
    slow_seconds: float = 2.0


@dataclass
class Fault:
    kind: str
    retry_after: int = 1
    slow_seconds: float = 0.0


class FaultPlan:
    def __init__(self):
        self._lock = threading.Lock()
        self.clear()

    def clear(self) -> None:
        with self._lock:
            self.rules: list[Rule] = []
            self.token_expired = False
            self.oauth_token_ttl: float | None = None
            self.injected: dict[str, int] = {}
            self._rng = random.Random(0)

    def set(self, spec: dict) -> None:
        if not isinstance(spec, dict):
            raise FaultSpecError("the body must be a JSON object")
        unknown = set(spec) - {"seed", "rules", "token_expired", "oauth_token_ttl"}
        if unknown:
            raise FaultSpecError(f"unknown keys: {sorted(unknown)}")
        rules = []
        for index, raw in enumerate(spec.get("rules") or []):
            if not isinstance(raw, dict):
                raise FaultSpecError(f"rules[{index}] must be an object")
            extra = set(raw) - set(KINDS) - {"endpoint", "retry_after", "slow_seconds"}
            if extra:
                raise FaultSpecError(f"rules[{index}]: unknown keys {sorted(extra)}")
            shares = {kind: float(raw.get(kind, 0)) for kind in KINDS}
            if any(not 0 <= share <= 1 for share in shares.values()) or sum(shares.values()) > 1:
                raise FaultSpecError(f"rules[{index}]: shares must be within 0..1 and add up to at most 1")
            endpoint = str(raw.get("endpoint", "*"))
            pattern = re.compile(".*" if endpoint == "*" else endpoint)
            rules.append(Rule(pattern, shares, int(raw.get("retry_after", 1)), float(raw.get("slow_seconds", 2))))
        with self._lock:
            self.rules = rules
            self.token_expired = bool(spec.get("token_expired", False))
            ttl = spec.get("oauth_token_ttl")
            self.oauth_token_ttl = float(ttl) if ttl is not None else None
            self._rng = random.Random(int(spec.get("seed", 0)))

    def decide(self, route: str) -> Fault | None:
        """The fault for one request to `route` ("GET /api/2.2/jobs/runs/list"), or None. Draws come from one seeded
        generator, so the same sequence of requests meets the same faults."""
        with self._lock:
            rule = next((r for r in self.rules if r.pattern.fullmatch(route)), None)
            if rule is None:
                return None
            draw, edge = self._rng.random(), 0.0
            for kind in KINDS:
                edge += rule.shares[kind]
                if draw < edge:
                    self.injected[kind] = self.injected.get(kind, 0) + 1
                    return Fault(kind, rule.retry_after, rule.slow_seconds)
            return None

    def describe(self) -> dict:
        with self._lock:
            return {"rules": [{"endpoint": r.pattern.pattern, **r.shares} for r in self.rules],
                    "token_expired": self.token_expired, "oauth_token_ttl": self.oauth_token_ttl,
                    "injected": dict(self.injected)}
