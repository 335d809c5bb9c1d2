"""Keep large activation buffers in the heap between batches (glibc only).

glibc serves allocations above its mmap threshold (128 KiB rising to at most 32 MiB) with
fresh mmap'd pages and hands them back on free, so every batch of a long encode page-faults
its activations in again: 450k minor faults and 207 vs 243 sentences/s for 8192-token batches
of MiniLM on 2 threads (benchmarks/RESULTS.md). Raising the mmap and trim thresholds lets the
freed buffers be reused. Called by long-running entry points (CLI encode, server, benchmark),
never at import. A no-op off glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 1 << 30  # 1 GiB: activations of any batch we plan stay in the heap
_TRIM_THRESHOLD = (1 << 31) - 1  # return freed heap memory to the OS only above ~2 GiB free
_done = False


def reuse_large_buffers() -> bool:
    """Raise glibc's mmap/trim thresholds once per process. True if they are set."""
    global _done
    if _done:
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # not glibc (musl, macOS, Windows): nothing to tune
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
    )
    if not ok:
        log.debug("mallopt refused the thresholds; allocator left as it was")
    _done = ok
    return ok
