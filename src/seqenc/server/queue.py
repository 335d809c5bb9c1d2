"""Dynamic batching: requests from many clients in, forward passes of bounded size out.

Requests arrive on the event loop as lists of token-id lists. One worker thread owns the model.
It takes a *window* of pending texts in arrival order (at most ``max_batch_tokens`` real
tokens, from at most ``max_batch_requests`` requests), sorts the window by length, and cuts it
into forward passes of at most ``batch_size`` rows and ``max_batch_tokens`` padded tokens (rows
x longest row; a single longer text still runs alone). A request's future resolves, with its
vectors in input order, when its last text has run.

Arrival order bounds waiting: a text waits for at most the windows already formed, never for
texts that arrived after it. Inside a window the cut points are chosen to minimise padding
(pure wasted compute) plus a fixed cost per pass (``seqenc.batching``, the planner that
``SentenceEncoder.encode`` uses too): fixed chunks of 32 sorted texts waste a third more
compute on the long tail of a typical window.

Admission is separate from queueing: ``slot()`` admits a request (tokenisation included) or
raises ``QueueFull`` at once, so an overloaded server answers 429 instead of queueing without
bound. A request whose awaiting task is cancelled (its client went away) leaves the queue: its
texts not yet run are dropped, and its slot is freed.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from seqenc.batching import PASS_COST_TOKENS, plan_batches

log = logging.getLogger(__name__)

# (ids per row, normalise per row) -> (rows, D) float32, rows in the given order
RunBatch = Callable[[list[list[int]], list[bool]], np.ndarray]


_CUT_OFF = "the server is shutting down: its graceful timeout ran out before this request ran"


class PassInterrupted(Exception):
    """Raised inside a forward pass (by ``interrupt``) to stop it at shutdown."""


class QueueFull(Exception):
    """max_concurrent_requests requests are in progress already."""


class QueueClosed(Exception):
    """The queue is shutting down and admits no new requests."""


@dataclass(eq=False)
class _Job:
    """One request: its texts' ids, and where their vectors go."""

    ids: list[list[int]]
    normalize: bool
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    enqueued: float
    taken: int = 0  # texts already drawn into a window; the rest are still queued
    done: int = 0
    vectors: np.ndarray | None = None
    cancelled: bool = False


_Row = tuple[_Job, int]  # (request, index of one of its texts)


class BatchQueue:
    """A bounded queue of embedding requests served by one worker thread."""

    def __init__(
        self,
        run_batch: RunBatch,
        *,
        max_batch_tokens: int = 8192,
        batch_size: int = 32,
        max_batch_requests: int | None = None,
        max_concurrent_requests: int = 512,
        on_batch: Callable[[int, int, float], None] | None = None,
        on_wait: Callable[[float], None] | None = None,
        on_idle: Callable[[], None] | None = None,
        interrupt: Callable[[threading.Thread], object] | None = None,
        pass_cost_tokens: int = PASS_COST_TOKENS,
    ):
        self._run_batch = run_batch
        self.max_batch_tokens = max_batch_tokens
        self.batch_size = batch_size
        self.max_batch_requests = max_batch_requests
        self.max_concurrent_requests = max_concurrent_requests
        self.pass_cost_tokens = pass_cost_tokens
        self._on_batch = on_batch or (lambda rows, padded_tokens, seconds: None)
        self._on_wait = on_wait or (lambda seconds: None)
        self._on_idle = on_idle or (lambda: None)  # the worker ran dry (e.g. give memory back)
        # Makes the pass running in the given thread raise PassInterrupted at its next safe
        # point (backend.interrupt_passes); without it, close waits for the pass to end. What
        # it returns is removed (``.remove()``) once the worker has stopped.
        self._interrupt = interrupt
        self._cond = threading.Condition()
        self._jobs: deque[_Job] = deque()  # requests with texts not yet drawn, oldest first
        self._admitted = 0
        self._closing = False
        self._abandoned = False  # close() gave up on what is left: run no further pass
        self._running: set[_Job] = set()  # the requests of the window being run
        self._thread: threading.Thread | None = None

    # ---- life cycle ----------------------------------------------------------------------
    def start(self, warm_up: Callable[[], None] | None = None) -> None:
        """Start the worker thread. ``warm_up`` runs first in that thread (thread pools and
        caches are per thread), and start returns once it has, raising what it raised."""
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            try:
                if warm_up is not None:
                    warm_up()
            except BaseException as e:
                failure.append(e)
                return
            finally:
                started.set()
            self._work()

        self._thread = threading.Thread(target=run, name="seqenc-batcher", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            raise failure[0]

    def close(self, timeout: float | None = None) -> None:
        """Admit nothing new, run every queued text, then stop the worker. After ``timeout``
        seconds, or as soon as nobody waits for what is left (every request still queued or
        running was cancelled: the server cut it off), texts not yet run are dropped, their
        requests failed with QueueClosed, and the forward pass in progress is interrupted
        (``interrupt``; without it, it runs to its end). Returns once the worker has stopped.

        The worker must never outlive close: a thread still inside torch (GIL released) when
        the interpreter finalises is killed as it takes the GIL back, and that forced unwind
        through torch's C++ frames aborts the process (SIGABRT, exit -6; issue 17)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is None:
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._thread.is_alive() and self._awaited():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            self._thread.join(0.05 if left is None else min(0.05, left))
        with self._cond:
            self._abandoned = True
            dropped = list(self._jobs)
            self._jobs.clear()
            running = bool(self._running)
        for job in dropped:
            self._fail(job, QueueClosed(_CUT_OFF))
        hook = None
        if running:
            log.info("shutdown: stopping the forward pass in progress; %d queued requests "
                     "dropped", len(dropped))
            if self._interrupt is not None:
                hook = self._interrupt(self._thread)
        self._thread.join()
        if hook is not None and hasattr(hook, "remove"):
            hook.remove()  # a process that embeds the server goes on without the global hook

    def _awaited(self) -> bool:
        """Whether a request not cancelled is still queued or in the window being run."""
        with self._cond:
            return any(not job.cancelled for job in (*self._jobs, *self._running))

    # ---- state, for metrics and tests ----------------------------------------------------
    @property
    def admitted(self) -> int:
        """Requests in progress: tokenising, queued or running."""
        return self._admitted

    @property
    def pending_texts(self) -> int:
        """Texts not yet drawn into a forward pass."""
        with self._cond:
            return sum(len(job.ids) - job.taken for job in self._jobs)

    # ---- the event loop's side -----------------------------------------------------------
    @contextmanager
    def slot(self) -> Iterator[None]:
        """Admit one request for the duration of the block, or raise QueueFull at once."""
        with self._cond:
            if self._closing:
                raise QueueClosed("the server is shutting down")
            if self._admitted >= self.max_concurrent_requests:
                raise QueueFull(
                    f"{self._admitted} requests in progress (max_concurrent_requests="
                    f"{self.max_concurrent_requests})"
                )
            self._admitted += 1
        try:
            yield
        finally:
            with self._cond:
                self._admitted -= 1

    async def embed(self, ids: Sequence[Sequence[int]], normalize: bool = False) -> np.ndarray:
        """Vectors (N, D) for N token-id lists, in their order. Cancelling the awaiting task
        drops the request's texts that have not run yet."""
        if not ids:
            raise ValueError("embed needs at least one id list")
        loop = asyncio.get_running_loop()
        job = _Job([list(x) for x in ids], normalize, loop, loop.create_future(),
                   time.perf_counter())
        with self._cond:
            if self._closing:
                raise QueueClosed("the server is shutting down")
            self._jobs.append(job)
            self._cond.notify()
        try:
            return await job.future
        except BaseException:
            self._cancel(job)
            raise

    def _cancel(self, job: _Job) -> None:
        with self._cond:
            job.cancelled = True
            try:
                self._jobs.remove(job)
            except ValueError:  # already drawn whole, or finished
                pass

    # ---- the worker's side ---------------------------------------------------------------
    def _work(self) -> None:
        while (window := self._take_window()) is not None:
            try:
                self._run_window(window)
            except Exception as e:  # a bug here must not kill the only worker
                log.exception("batching worker failed")
                for job in {job for job, _ in window}:
                    self._fail(job, e)
            with self._cond:
                idle = not self._jobs
            if idle:
                self._on_idle()

    def _take_window(self) -> list[_Row] | None:
        """The next texts in arrival order, up to max_batch_tokens real tokens; None once
        closing and nothing is left."""
        with self._cond:
            while not self._jobs and not self._closing:
                self._cond.wait()
            window: list[_Row] = []
            tokens = requests = 0
            while self._jobs:
                if self.max_batch_requests is not None and requests >= self.max_batch_requests:
                    break
                job = self._jobs[0]
                if job.taken == 0:
                    self._on_wait(time.perf_counter() - job.enqueued)
                requests += 1
                while job.taken < len(job.ids):
                    n = len(job.ids[job.taken])
                    if window and tokens + n > self.max_batch_tokens:
                        break
                    window.append((job, job.taken))
                    tokens += n
                    job.taken += 1
                if job.taken < len(job.ids):
                    break  # the window is full; the rest of this request goes next time
                self._jobs.popleft()
            self._running = {job for job, _ in window}  # with the lock: close() sees them
            return window or None

    def _run_window(self, window: list[_Row]) -> None:
        try:
            self._run_passes(window)
        finally:
            with self._cond:
                self._running = set()

    def _run_passes(self, window: list[_Row]) -> None:
        rows = sorted(window, key=lambda row: -len(row[0].ids[row[1]]))  # stable, as encode
        lengths = [len(job.ids[i]) for job, i in rows]
        bounds = plan_batches(lengths, self.batch_size, self.max_batch_tokens,
                              self.pass_cost_tokens)
        for start, stop in pairwise(bounds):
            chunk = [row for row in rows[start:stop] if not row[0].cancelled]
            if chunk and self._abandoned:
                for job in {job for job, _ in chunk}:
                    self._fail(job, QueueClosed(_CUT_OFF))
            elif chunk:
                self._run_pass(chunk, max(len(job.ids[i]) for job, i in chunk))

    def _run_pass(self, chunk: list[_Row], longest: int) -> None:
        ids = [job.ids[i] for job, i in chunk]
        flags = [job.normalize for job, _ in chunk]
        started = time.perf_counter()
        try:
            vectors = self._run_batch(ids, flags)
        except PassInterrupted:
            for job in {job for job, _ in chunk}:
                self._fail(job, QueueClosed(_CUT_OFF))
            return
        except Exception as e:
            log.exception("forward pass of %d texts failed", len(chunk))
            for job in {job for job, _ in chunk}:
                self._fail(job, e)
            return
        self._on_batch(len(chunk), len(chunk) * longest, time.perf_counter() - started)
        for (job, i), vector in zip(chunk, vectors, strict=True):
            if job.vectors is None:
                job.vectors = np.empty((len(job.ids), vectors.shape[1]), dtype=np.float32)
            job.vectors[i] = vector
            job.done += 1
            if job.done == len(job.ids):
                _resolve(job, job.vectors, None)

    def _fail(self, job: _Job, error: BaseException) -> None:
        self._cancel(job)  # its other texts need not run
        _resolve(job, None, error)


def _resolve(job: _Job, value: np.ndarray | None, error: BaseException | None) -> None:
    def settle() -> None:
        if job.future.done():  # cancelled by a client that went away
            return
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(value)

    try:
        job.loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the loop has closed: nobody is waiting any more
        pass
