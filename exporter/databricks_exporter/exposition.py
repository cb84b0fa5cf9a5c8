"""Renders the store in the Prometheus text format or OpenMetrics, plain or gzipped, so that serving a scrape is a
write of bytes already made.

Each family is formatted (and deflated) when it changes, not when it is scraped: a store update re-renders only
the families it touched, so the request counter that moves with every API call costs a few lines, not 100,000.
The gzip body is the cached deflate blocks of the families laid end to end in one gzip member: every family's block
ends with a sync flush, so the blocks concatenate into one valid deflate stream, and the stream's CRC is combined
from the families' CRCs (as zlib's crc32_combine does) rather than computed over the whole body again.

The output is byte for byte what prometheus_client's generate_latest writes for the same families
(tests/test_exposition.py compares them); the formatting is done here because going through its objects costs
about seven times as much per sample."""

from __future__ import annotations

import struct
import threading
import zlib
from dataclasses import dataclass

from prometheus_client.utils import floatToGoString

from . import metrics as m
from .cycle import Family
from .store import MetricStore

TEXT = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
EOF = b"# EOF\n"
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"   # deflate, no name, no mtime, unknown OS
DEFLATE_END = b"\x03\x00"                                   # an empty final block
GZIP_LEVEL = 5


def _escape(value: str) -> str:
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


def _bound(value: float) -> str:
    return "+Inf" if value == float("inf") else repr(float(value))


def format_family(family: Family, openmetrics: bool) -> bytes:
    """One family in the text format (openmetrics=False) or OpenMetrics, without OpenMetrics' closing # EOF."""
    metric = family.metric
    name = metric.name
    kind = metric.type
    if kind == m.COUNTER:
        base = name[:-len("_total")]
        family_name, unit = (base, "") if openmetrics else (name, "")
    else:
        unit = metric.unit
        if unit and not name.endswith("_" + unit):
            name += "_" + unit
        family_name = name
    doc = metric.help.replace("\\", r"\\").replace("\n", r"\n")
    if openmetrics:
        doc = doc.replace('"', r"\"")
    out = [f"# HELP {family_name} {doc}\n# TYPE {family_name} {kind}\n"]
    if openmetrics and unit:
        out.append(f"# UNIT {family_name} {unit}\n")
    # Label pairs are written sorted by label name, as prometheus_client does; histograms place le among them.
    order = sorted(range(len(metric.labels)), key=lambda i: metric.labels[i])
    keys = [(i, metric.labels[i] + '="') for i in order]

    def labels_of(values) -> list[str]:
        return [key + _escape(values[i]) + '"' for i, key in keys]

    if kind != m.HISTOGRAM:
        for values, value in family.samples:
            labels = ",".join(labels_of(values))
            out.append(f"{name}{{{labels}}} {floatToGoString(value)}\n" if labels else
                       f"{name} {floatToGoString(value)}\n")
        return "".join(out).encode("utf-8")
    le_at = sum(1 for label in metric.labels if label < "le")
    bounds = [_bound(b) for b in list(metric.buckets) + [float("inf")]]
    for values, hist in family.samples:
        pairs = labels_of(values)
        before, after = ",".join(pairs[:le_at]), ",".join(pairs[le_at:])
        before, after = (before + "," if before else ""), ("," + after if after else "")
        for bound, (_, total) in zip(bounds, hist.cumulative(metric)):
            out.append(f'{name}_bucket{{{before}le="{bound}"{after}}} {floatToGoString(total)}\n')
        labels = ",".join(pairs)
        labels = f"{{{labels}}}" if labels else ""
        out.append(f"{name}_count{labels} {floatToGoString(total)}\n{name}_sum{labels} {floatToGoString(hist.sum)}\n")
    return "".join(out).encode("utf-8")


CRC_POLY = 0xEDB88320


def _multmodp(a: int, b: int) -> int:
    """a times b modulo the CRC-32 polynomial, bit-reflected (zlib's multmodp)."""
    m, p = 1 << 31, 0
    while True:
        if a & m:
            p ^= b
            if not a & (m - 1):
                return p
        m >>= 1
        b = (b >> 1) ^ CRC_POLY if b & 1 else b >> 1


def _x2n_table() -> list[int]:
    table, p = [], 1 << 30          # x^1
    for _ in range(32):
        table.append(p)
        p = _multmodp(p, p)
    return table


X2N = _x2n_table()


def crc_shift(length: int) -> int:
    """x^(8 * length) modulo the polynomial: what moves a CRC past `length` more bytes (zlib's x2nmodp(n, 3))."""
    p, k = 1 << 31, 3
    while length:
        if length & 1:
            p = _multmodp(X2N[k & 31], p)
        length >>= 1
        k += 1
    return p


def _deflate(data: bytes) -> bytes:
    """Raw deflate blocks that end on a byte boundary without a final block, so they can be concatenated."""
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)


@dataclass
class _Chunk:
    text: bytes
    deflated: bytes | None = None
    crc: int = 0
    shift: int = 0

    def compressed(self) -> bytes:
        if self.deflated is None:
            self.deflated = _deflate(self.text)
            self.crc, self.shift = zlib.crc32(self.text), crc_shift(len(self.text))
        return self.deflated


EOF_CHUNK = _Chunk(EOF)


class Renderer:
    """The exposition per format and encoding, rebuilt from per-family chunks when the store has changed.

    A scrape that finds another scrape rebuilding gets the previous body instead of waiting: the data is at most
    one rebuild old, and a burst of scrapes never queues behind a render. (A lone scrape after a store update, as
    in the tests, always sees that update.)"""

    def __init__(self, store: MetricStore):
        self.store = store
        self._lock = threading.Lock()
        self._version = -1
        self._families: dict[m.Metric, Family] = {}
        self._chunks: dict[tuple[m.Metric, bool], _Chunk] = {}
        # (store version, {(openmetrics, gzipped): body}), replaced as a whole so readers need no lock.
        self._published: tuple[int, dict[tuple[bool, bool], bytes]] = (-1, {})

    def render(self, openmetrics_format: bool = False, gzipped: bool = False) -> bytes:
        key = (openmetrics_format, gzipped)
        version, bodies = self._published
        body = bodies.get(key)
        if body is not None and version == self.store.version:
            return body
        if not self._lock.acquire(blocking=body is None):
            return body
        try:
            self._update()
            version, bodies = self._published
            if key not in bodies:
                bodies[key] = self._assemble(*key)
            return bodies[key]
        finally:
            self._lock.release()

    def _update(self) -> None:
        version, changed = self.store.changes_since(self._version)
        if version == self._version:
            return
        for metric, family in changed.items():
            self._chunks.pop((metric, False), None)
            self._chunks.pop((metric, True), None)
            if family.samples:
                self._families[metric] = family
            else:
                self._families.pop(metric, None)
        self._version = version
        self._published = (version, {})

    def _chunk(self, metric: m.Metric, openmetrics: bool) -> _Chunk:
        chunk = self._chunks.get((metric, openmetrics))
        if chunk is None:
            chunk = self._chunks[(metric, openmetrics)] = _Chunk(format_family(self._families[metric], openmetrics))
        return chunk

    def _assemble(self, openmetrics: bool, gzipped: bool) -> bytes:
        chunks = [self._chunk(metric, openmetrics) for metric in sorted(self._families, key=lambda x: x.name)]
        if openmetrics:
            chunks.append(EOF_CHUNK)
        if not gzipped:
            return b"".join(chunk.text for chunk in chunks)
        blocks = [chunk.compressed() for chunk in chunks]
        crc, size = 0, 0
        for chunk in chunks:
            crc = _multmodp(chunk.shift, crc) ^ chunk.crc      # zlib's crc32_combine
            size += len(chunk.text)
        return b"".join([GZIP_HEADER, *blocks, DEFLATE_END, struct.pack("<II", crc, size & 0xFFFFFFFF)])


def wants_openmetrics(accept: str | None) -> bool:
    return bool(accept) and "application/openmetrics-text" in accept
