"""What the serving, audit and maintenance models share: activity drawn minute by minute from the seed, rows for
their system tables with a visibility delay, and a ledger of what the simulator made happen."""

from __future__ import annotations

import bisect
import hashlib
import random

MINUTE_MS = 60_000


def rng_for(*parts) -> random.Random:
    """A random stream for one entity and instant: the same answer however often, and in whatever order, asked."""
    return random.Random(hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest())


def hex_id(*parts, n: int = 32) -> str:
    return hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=(n + 1) // 2).hexdigest()[:n]


def uuid_of(*parts) -> str:
    h = hex_id(*parts)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


class Ledger:
    """Entries (at_ms, visible_ms, key...) the model decided, appended in time order of generation; a window
    counts the entries that happened in [since, now] and are visible by now (what a reader of the table could
    have seen), or all that happened when visible is False."""

    def __init__(self):
        self.rows: list[tuple] = []
        self._sorted = True

    def add(self, at_ms: int, visible_ms: int, *key, amount: float = 1) -> None:
        if self.rows and at_ms < self.rows[-1][0]:
            self._sorted = False
        self.rows.append((at_ms, visible_ms, key, amount))

    def count(self, since_ms: float, now_ms: float, visible: bool = True) -> dict[tuple, float]:
        if not self._sorted:
            self.rows.sort(key=lambda r: r[0])
            self._sorted = True
        lo = bisect.bisect_left(self.rows, since_ms, key=lambda r: r[0])
        out: dict[tuple, float] = {}
        for at, seen, key, amount in self.rows[lo:]:
            if at > now_ms:
                break
            if not visible or seen <= now_ms:
                out[key] = out.get(key, 0) + amount
        return out


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

    def __init__(self, ws, origin_ms: int):
        self.ws = ws
        self.seed = ws.seed
        self.generated_ms = origin_ms // MINUTE_MS * MINUTE_MS   # minutes ending at or before this are done
        self.pending: dict[str, list[dict]] = {}
        self.ledger = Ledger()

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
