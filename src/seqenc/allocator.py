"""Memory settings for long encodes: reuse large buffers, give memory back, bound caches.

glibc serves allocations above its mmap threshold (128 KiB rising to at most 32 MiB) with
fresh mmap'd pages and hands them back on free, so every batch of a long encode page-faults
its activations in again: 450k minor faults and 207 vs 243 sentences/s for 8192-token batches
of MiniLM on 2 threads (benchmarks/RESULTS.md). Raising the mmap and trim thresholds lets the
freed buffers be reused. Called by long-running entry points (CLI encode, server, benchmark,
training) and by the first ``SentenceEncoder.encode`` of a process (unless
SEQENC_TUNE_MEMORY=0: the settings are process-wide), never at import.

The other side: batches of ever-different shapes (packed inference makes every batch's token
count different) leave the heap fragmented, and glibc keeps the free pieces. Encoding SST-2
sentences in chunks of 2,000, RSS grew 405 -> 750 MiB over 40,000 lines without any tuning,
and stayed at 347-356 MiB with ``release_free_memory()`` (malloc_trim, 10-20 ms) after each
chunk. Streaming loops call it between chunks; the server when its queue runs dry.
Both functions are no-ops off glibc.

The rest of the growth was oneDNN's primitive cache: PyTorch runs GELU through a oneDNN
eltwise primitive built for each new shape, and keeps up to 1,024 of them (~350 KiB each here).
Packed batches all have different shapes, so that cache only grows; capping it at 64 entries
(still enough for the 6 layers of one batch to share one) kept RSS flat at 405-413 MiB over
30,000 lines where it had grown 435 -> 531 MiB. ``tune_memory()`` applies all three.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 1 << 30  # 1 GiB: activations of any batch we plan stay in the heap
_TRIM_THRESHOLD = (1 << 31) - 1  # return freed heap memory to the OS only above ~2 GiB free
_ONEDNN_CACHE = "64"  # primitives; read by oneDNN when it first builds one
_done = False


def tune_memory() -> None:
    """Settings for a process that encodes batch after batch (CLI, server, benchmark).

    Call before the first forward pass: oneDNN reads its cache capacity once. A capacity the
    user set in the environment is kept.
    """
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", _ONEDNN_CACHE)
    reuse_large_buffers()


@functools.cache
def _libc():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def release_free_memory() -> bool:
    """Hand the heap's free pages back to the OS (malloc_trim). True if it ran."""
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is None:
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim(0)
    return True


def reuse_large_buffers() -> bool:
    """Raise glibc's mmap/trim thresholds once per process. True if they are set."""
    global _done
    if _done:
        return True
    mallopt = getattr(_libc(), "mallopt", None)
    if mallopt is None:
        return False  # not glibc (musl, macOS, Windows): nothing to tune
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
    )
    if not ok:
        log.debug("mallopt refused the thresholds; allocator left as it was")
    _done = ok
    return ok
