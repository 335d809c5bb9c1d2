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
it. Why only before torch: libgomp reads both variables once, in its library constructor
(initialize_env, run when libtorch_cpu loads it at ``import torch``), into a global that no
documented routine sets afterwards (OpenMP has no routine for the wait policy, libgomp none for
its spin count; kmp_set_blocktime is LLVM/Intel libomp's). A program that imports torch before
seqenc therefore keeps libgomp's default (its child processes inherit the cap); ``openmp_waits``
says which happened, and ``seqenc bench`` records and prints it.

Batches side by side: a forward pass split over T threads meets a barrier after every GEMM,
attention and epilogue (dozens per batch), each waiting for the slowest thread, and the
Python and small PyTorch ops between them run on one thread while the others wait. The
batches of one encode call are independent, so ``run_batches`` runs T of them at once, each on
one thread: no barriers, and one batch's Python overlaps another's kernels. Every row is
computed by the same code in the same order either way, so the vectors are bit for bit the
same. Measured on 2 cores (bf16, 1000 bench texts, benchmarks/RESULTS.md): quiet, wall
1.13-1.22 s vs 1.19-1.32 s one batch at a time; at load ~2.5 from other processes, 1.0-1.6 s vs
2.4-3.0 s; with `seqenc bench --busy 1` bf16 kept 52-64% of its quiet speed, against 36% before.

The workers are made once and kept. ``torch.set_num_threads`` sets the calling thread's OpenMP
and MKL counts (and the count threads started later take up), so each worker sets 1 for itself
when it starts and the caller's count is left alone; before, a pool made per call and
``set_num_threads(1)`` around it changed the count of every thread started meanwhile and cleared
oneDNN's computation cache twice per call. A worker takes the next batch when it finishes one;
batches come longest first, so a call's end waits for one short batch at most (measured tail,
a worker idle while the other finished: 14-55 ms per 6-9 s call, either way). During an
encode only the workers use CPU (no spinning OpenMP threads, no team inside a worker).

Pinned: with one worker per CPU this process may use, worker k is pinned to the k-th, as
OpenVINO pins its streams' threads. Linux shares a core's time per thread: unpinned, two
workers and one busy process rotate over two cores, ~2/3 of a core each, 4/3 cores for the
encode; pinned, the busy process shares one core with one worker, and the encode keeps 3/2.
Measured on 2 cores (fp32, 1000 texts, 3 interleaved rounds, benchmarks/RESULTS.md) with
`--busy 1`: 7.77 s pinned, 8.58 s unpinned, 8.75 s for the per-call pool, OpenVINO's two
streams 7.37 s; quiet 6.18 / 6.08 / 6.05 s (within the rounds' spread). Not pinned with fewer
workers than CPUs (processes each using some of the cores would crowd onto the same ones), nor
with SEQENC_PIN=0.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import sys
import threading
from collections.abc import Callable, Iterator

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


_waits = "unset"  # what calm_openmp_waits found: "capped", "yours" or "late" (openmp_waits)


def calm_openmp_waits() -> None:
    """Cap OpenMP's spin-wait (GOMP_SPINCOUNT) unless the user chose a wait policy. Takes effect
    only before libgomp loads (before torch is imported); after, only in child processes."""
    global _waits
    if "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        _waits = "yours"
        return
    _waits = "late" if _libgomp_loaded() else "capped"
    os.environ["GOMP_SPINCOUNT"] = SPIN_COUNT


def _libgomp_loaded() -> bool:
    """Whether this process has mapped libgomp (Linux: /proc/self/maps); elsewhere, whether
    torch is imported (its OpenMP runtime, whatever it is, loads with it)."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            return any("/libgomp" in line for line in maps)
    except OSError:
        return "torch" in sys.modules


def openmp_waits() -> str:
    """How OpenMP's idle threads wait in this process, in words (``calm_openmp_waits``)."""
    if _waits == "capped":
        return f"spin capped at GOMP_SPINCOUNT={SPIN_COUNT} (set before libgomp loaded)"
    if _waits == "yours":
        return ", ".join(f"{k}={os.environ[k]}" for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
                         if k in os.environ) + " (from the environment)"
    if _waits == "late":
        return ("NOT capped: libgomp was loaded (torch imported) before seqenc, so its default "
                f"spin applies; import seqenc first, or set GOMP_SPINCOUNT={SPIN_COUNT}")
    return "not set by seqenc"


PIN = os.environ.get("SEQENC_PIN", "auto")  # "0": never pin run_batches' workers (see _cpus)
_SIDE_BY_SIDE = threading.Lock()  # one run_batches at a time uses the workers
_workers: _Workers | None = None  # made by the first run_batches that needs them, then kept


class _Job:
    """One run_batches call: its steps, taken one at a time by whichever worker is free."""

    def __init__(self, step: Callable[[int], None], n: int):
        self.step, self.n = step, n
        self.next = itertools.count()  # next() is atomic under the GIL
        self.stop = False
        self.done: queue.SimpleQueue = queue.SimpleQueue()  # (i, error); None: a worker left

    def work(self) -> None:
        try:
            while not self.stop:
                i = next(self.next)
                if i >= self.n:
                    return
                try:
                    self.step(i)
                except BaseException as error:  # handed to the caller, raised there
                    self.stop = True
                    self.done.put((i, error))
                    return
                self.done.put((i, None))
        finally:
            self.done.put(None)


class _Workers:
    """``count`` threads kept for every run_batches call. Each runs PyTorch's ops and our
    kernels on one thread, set once in that thread alone, and is pinned to ``cpus[k]`` if given.
    """

    def __init__(self, count: int, cpus: list[int] | None):
        import torch

        self.count, self.cpus = count, cpus
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        default = torch.get_num_threads()
        ready = threading.Barrier(count + 1)
        try:
            for k in range(count):
                threading.Thread(target=self._serve, args=(k, ready), daemon=True,
                                 name=f"seqenc-batch-{k}").start()
        except BaseException:
            ready.abort()  # the threads started end at their wait
            raise
        ready.wait()
        # the workers' torch.set_num_threads(1) also wrote the count that threads started
        # later take up: set it back to this (the calling) thread's count
        torch.set_num_threads(default)

    def _serve(self, k: int, ready: threading.Barrier) -> None:
        import torch

        torch.get_num_threads()  # PyTorch's per-thread set-up first: it would undo the next line
        torch.set_num_threads(1)  # this thread's OpenMP and MKL counts
        if self.cpus is not None:
            with contextlib.suppress(OSError):  # the CPU went away: run unpinned
                os.sched_setaffinity(0, {self.cpus[k]})  # 0: this thread, on Linux
        ready.wait()
        while True:
            job = self.jobs.get()
            if job is None:
                return
            job.work()
            del job  # the step's closure (the call's arrays) must not outlive the call

    def close(self) -> None:
        for _ in range(self.count):
            self.jobs.put(None)


def _cpus(count: int) -> list[int] | None:
    """The CPUs to pin ``count`` workers to, one each: this thread's allowed CPUs when there are
    exactly ``count`` of them (the call uses them all anyway); else None, no pinning, so that
    processes that each use some of the cores never crowd onto the same ones."""
    if PIN == "0" or not hasattr(os, "sched_getaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    return allowed if len(allowed) == count else None


def _workers_for(count: int) -> _Workers:
    global _workers
    cpus = _cpus(count)
    if _workers is None or _workers.count != count or _workers.cpus != cpus:
        if _workers is not None:
            _workers.close()
        _workers = _Workers(count, cpus)
    return _workers


def _forget_workers() -> None:  # in a forked child: the parent's threads do not exist here
    global _workers, _SIDE_BY_SIDE
    _workers, _SIDE_BY_SIDE = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_workers)


def run_batches(step: Callable[[int], None], n: int, workers: int) -> Iterator[int]:
    """Call ``step(i)`` for i in range(n), yielding each i once its step is done (in any
    order). With ``workers`` > 1, that many steps run at once on worker threads kept for every
    call, each taking the next step when it finishes one, PyTorch's ops and our kernels on one
    thread each (set in those threads only: the caller's and other threads' counts are left
    alone). Steps must not share mutable state beyond writes to disjoint rows. A step's
    exception stops the rest (those not started never start) and is raised here. Only one call
    runs side by side at a time: a concurrent one runs its steps one after another."""
    if workers <= 1 or n <= 1 or not _SIDE_BY_SIDE.acquire(blocking=False):
        for i in range(n):
            step(i)
            yield i
        return
    lock = _SIDE_BY_SIDE  # (a fork meanwhile replaces the module's)
    try:
        pool = _workers_for(workers)
        job = _Job(step, n)
        left = min(workers, n)  # workers on this job
        for _ in range(left):
            pool.jobs.put(job)
        try:
            while left:
                if (item := job.done.get()) is None:
                    left -= 1
                    continue
                i, error = item
                if error is not None:
                    raise error
                yield i
        finally:
            job.stop = True  # nothing more starts; wait for the steps running
            while left:
                if job.done.get() is None:
                    left -= 1
    finally:
        lock.release()
