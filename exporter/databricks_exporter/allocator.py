"""Keeps the C allocator from holding memory the exporter has freed: with glibc, fewer per-thread arenas, large
blocks always mapped on their own, and free pages handed back to the system every minute.

Why: the exporter runs a thread per collector and workspace, and each thread's large allocations (response bodies,
the state file's JSON, a first cycle's scan of hours of runs) land in its own glibc arena; after glibc has freed a
mapped block once it serves later ones from the arena instead (its dynamic mmap threshold), so freed megabytes
stay resident. Elsewhere (musl, macOS) this does nothing."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
ARENAS = 2
MMAP_THRESHOLD = 256 * 1024     # fixed, which also turns off glibc's raising of it
TRIM_EVERY_SECONDS = 60.0


def _libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def tune(stop: threading.Event) -> bool:
    """Set the allocator up and trim it every minute until `stop` is set; False where the C library is not glibc."""
    libc = _libc()
    if libc is None:
        return False
    for option, value in ((M_ARENA_MAX, ARENAS), (M_MMAP_THRESHOLD, MMAP_THRESHOLD),
                          (M_TRIM_THRESHOLD, MMAP_THRESHOLD)):
        libc.mallopt(option, value)

    def trim() -> None:
        while not stop.wait(TRIM_EVERY_SECONDS):
            libc.malloc_trim(0)

    threading.Thread(target=trim, name="malloc-trim", daemon=True).start()
    log.debug("glibc allocator: %d arenas, blocks of %d bytes and more mapped apart, trimmed every %.0f s",
              ARENAS, MMAP_THRESHOLD, TRIM_EVERY_SECONDS)
    return True
