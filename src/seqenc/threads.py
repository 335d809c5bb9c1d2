"""PyTorch's intra-op CPU threads, set in one place for every entry point.

The thread pool is process-wide. ``seqenc encode``, ``serve`` and ``bench`` take
``--threads N``; on a machine shared with other work, fewer threads than cores keeps forward
passes from stalling on a descheduled thread. Processes that torchrun starts on one machine
share its cores, so each takes cores // LOCAL_WORLD_SIZE unless OMP_NUM_THREADS says otherwise.
Standard library at import (torch is imported when a count is set), so the CLI starts fast.

Waiting threads: PyTorch's ops, MKL's and oneDNN's GEMMs and our C kernels share one OpenMP
runtime (the libgomp torch ships). By default its idle threads spin ~300,000 times before
sleeping, between every two parallel regions; a forward pass has dozens. On a core shared with
another busy process a spinning worker burns the time slice the other thread (or process)
needed, and every region waits at its join for a descheduled thread. ``calm_openmp_waits``
(run by ``import seqenc``, before torch loads libgomp) caps the spin at SPIN_COUNT, long
enough to bridge the gap between two ops of one forward pass, short enough to sleep between
batches. Measured on 2 cores under load 8-12 (encode 200 texts, fp32, 2 threads, 3 interleaved
rounds, benchmarks/RESULTS.md): wall 6.9-9.7 s vs 11.5-14.2 s with libgomp's default spin,
CPU time 1.8-1.9 s vs 3.4-4.1 s. Set OMP_WAIT_POLICY or GOMP_SPINCOUNT yourself to override
it; a program that imports torch before seqenc keeps libgomp's default.

Batches side by side: a forward pass split over T threads meets a barrier after every GEMM,
attention and epilogue (dozens per batch), each waiting for the slowest thread, and the
Python and small PyTorch ops between them run on one thread while the others wait. The
batches of one encode call are independent, so ``run_batches`` runs T of them at once, each on
one thread (PyTorch's ops and our kernels single-threaded for the duration): no barriers, and
one batch's Python overlaps another's kernels. Every row is computed by the same code in the
same order either way, so the vectors are bit for bit the same. Measured on 2 cores (bf16,
1000 bench texts, load ~2.5 from other processes, niced; benchmarks/RESULTS.md): wall
1.0-1.6 s vs 2.4-3.0 s, CPU 1.9-2.0 s vs 2.6-3.0 s.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

SPIN_COUNT = "10000"  # libgomp's GOMP_SPINCOUNT: tens of microseconds, not a time slice


def set_threads(threads: int | None) -> None:
    """Run PyTorch's CPU ops on ``threads`` threads; None leaves PyTorch's own choice."""
    if threads is None:
        return
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    import torch

    torch.set_num_threads(threads)


def torchrun_share() -> int | None:
    """This process's share of the cores when torchrun runs several on this machine and
    OMP_NUM_THREADS is unset; else None."""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if "OMP_NUM_THREADS" in os.environ or local <= 1:
        return None
    return max(1, (os.cpu_count() or 1) // local)


def calm_openmp_waits() -> None:
    """Cap OpenMP's spin-wait (GOMP_SPINCOUNT) unless the user chose a wait policy. Takes effect
    only before libgomp loads (before torch is imported); a no-op after."""
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["GOMP_SPINCOUNT"] = SPIN_COUNT


_SIDE_BY_SIDE = threading.Lock()  # one run_batches at a time sets PyTorch's threads to 1


def run_batches(step: Callable[[int], None], n: int, workers: int) -> Iterator[int]:
    """Call ``step(i)`` for i in range(n), yielding each i once its step is done (in any
    order). With ``workers`` > 1, that many steps run at once on their own threads, PyTorch's
    ops and our kernels on one thread each (``torch.set_num_threads(1)`` for the duration, so
    other threads of this process get one thread too; restored after). Steps must not share
    mutable state beyond writes to disjoint rows. A step's exception stops the rest (those
    not started are cancelled) and is raised here. Only one call runs side by side at a time:
    a concurrent one runs its steps one after another."""
    if workers <= 1 or n <= 1 or not _SIDE_BY_SIDE.acquire(blocking=False):
        for i in range(n):
            step(i)
            yield i
        return
    import torch

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with ThreadPoolExecutor(min(workers, n), thread_name_prefix="seqenc-batch") as pool:
            pending = {pool.submit(step, i): i for i in range(n)}
            try:
                while pending:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        future.result()  # a step's exception, raised here
                        yield pending.pop(future)
            finally:
                for future in pending:
                    future.cancel()  # the pool's exit then waits for the running ones
    finally:
        torch.set_num_threads(threads)
        _SIDE_BY_SIDE.release()
