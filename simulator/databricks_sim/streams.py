"""What the serving, audit and maintenance models share: activity drawn minute by minute from the seed, rows for
their system tables with a visibility delay, and entries in the workspace's ledger (truth.py) of what happened."""

from __future__ import annotations

import random

from .common import MINUTE_MS, digest, stable_hex


def rng_for(*parts) -> random.Random:
    """A random stream for one entity and instant: the same answer however often, and in whatever order, asked."""
    return random.Random(digest(*parts))


def uuid_of(*parts) -> str:
    h = stable_hex(*parts, n=32)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def nested(counts: dict[tuple, float]) -> dict:
    """{(a, b, c): n} as {a: {b: {c: n}}} for the truth endpoint's JSON."""
    out: dict = {}
    for key, value in counts.items():
        node = out
        for part in key[:-1]:
            node = node.setdefault(part, {})
        node[key[-1]] = node.get(key[-1], 0) + value
    return out


class MinuteStream:
    """Activity generated one minute at a time up to the simulated now, from `origin_ms` on; rows for the system
    tables wait in a buffer until SQL drains them."""

    domain = ""          # the ledger's name for what this model records

    def __init__(self, ws, origin_ms: int):
        self.ws = ws
        self.seed = ws.seed
        self.generated_ms = origin_ms // MINUTE_MS * MINUTE_MS   # minutes ending at or before this are done
        self.pending: dict[str, list[dict]] = {}

    def record(self, at_ms: int, visible_ms: int, *key, amount: float = 1) -> None:
        self.ws.ledger.activity(self.domain, at_ms, visible_ms, key, amount)

    def counts(self, since_ms: float, now_ms: int, visible: bool = True) -> dict[tuple, float]:
        self.advance(now_ms)
        return self.ws.ledger.activity_counts(self.domain, since_ms, now_ms, visible)

    def advance(self, now_ms: int) -> None:
        while self.generated_ms + MINUTE_MS <= now_ms:
            self.minute(self.generated_ms)
            self.generated_ms += MINUTE_MS

    def minute(self, start_ms: int) -> None:
        raise NotImplementedError

    def emit(self, table: str, row: dict) -> None:
        self.pending.setdefault(table, []).append(row)

    def drain(self, now_ms: int) -> dict[str, list[dict]]:
        self.advance(now_ms)
        out, self.pending = self.pending, {}
        return out
