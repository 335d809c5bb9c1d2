"""The batching queue on its own: no HTTP, no model. A fake backend records every forward pass
and can hold passes back, so each scenario is deterministic."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqenc.server.queue import BatchQueue, PassInterrupted, QueueClosed, QueueFull

WAIT = 30  # seconds; bounds waits on the worker thread, never asserted on


class FakeBackend:
    """Row vector = (sum of ids, number of ids, normalise flag): each text's result is
    recognisable. Passes wait for a permit when ``gated``."""

    def __init__(self, gated: bool = False, fail_on: int | None = None):
        self.passes: list[list[list[int]]] = []
        self.permits = threading.Semaphore(0)
        self.entered = threading.Event()
        self.gated = gated
        self.fail_on = fail_on
        self.interrupted = False  # set by ``interrupt``: a held pass raises PassInterrupted

    def interrupt(self, worker: threading.Thread) -> FakeBackend:
        """What backend.interrupt_passes does to a real pass: stop it at its next step; the
        queue removes what it returns once the worker has stopped."""
        self.interrupted_thread = worker
        self.interrupted = True
        self.hook_removed = False
        self.allow(1)
        return self

    def remove(self) -> None:
        assert not self.interrupted_thread.is_alive()  # removed only once the worker stopped
        self.hook_removed = True

    def allow(self, n: int = 1000) -> None:
        for _ in range(n):
            self.permits.release()

    def __call__(self, ids: list[list[int]], normalize: list[bool]) -> np.ndarray:
        self.entered.set()
        if self.gated:
            assert self.permits.acquire(timeout=WAIT), "test never released the pass"
            if self.interrupted:
                raise PassInterrupted
        self.passes.append([list(x) for x in ids])
        if self.fail_on is not None and any(self.fail_on in x for x in ids):
            raise RuntimeError("backend failure")
        return np.array([expected(x, n) for x, n in zip(ids, normalize, strict=True)],
                        dtype=np.float32)


def expected(ids: list[int], normalize: bool) -> list[float]:
    return [float(sum(ids)), float(len(ids)), float(normalize)]


def make_queue(backend: FakeBackend, **kw) -> BatchQueue:
    q = BatchQueue(backend, **{"max_batch_tokens": 64, "batch_size": 4, **kw})
    q.start()
    return q


async def blocked_first_pass(q: BatchQueue, backend: FakeBackend) -> asyncio.Future:
    """A request whose pass has started and waits: everything queued after it piles up."""
    first = asyncio.ensure_future(q.embed([[1, 2]]))
    assert await asyncio.to_thread(backend.entered.wait, WAIT)
    return first


def interruptible_queue() -> tuple[FakeBackend, BatchQueue]:
    """A gated backend whose held pass the queue can interrupt (as close does past its
    graceful timeout)."""
    backend = FakeBackend(gated=True)
    return backend, make_queue(backend, interrupt=backend.interrupt)


async def held_pass_and_queued_request(
    q: BatchQueue, backend: FakeBackend
) -> tuple[asyncio.Future, asyncio.Future]:
    """A request whose pass is held, and one queued behind it."""
    first = await blocked_first_pass(q, backend)
    queued = asyncio.ensure_future(q.embed([[5, 5]]))
    await asyncio.sleep(0)
    return first, queued


def test_passes_respect_budget_and_results_keep_request_order():
    backend = FakeBackend(gated=True)
    q = make_queue(backend, max_batch_tokens=64, batch_size=4)
    rng = np.random.default_rng(0)
    requests = [[list(rng.integers(0, 100, rng.integers(1, 12))) for _ in
                 range(rng.integers(1, 7))] for _ in range(30)]
    requests.append([[7] * 100, [8] * 3])  # a text longer than the budget runs alone
    requests = [[[int(t) for t in ids] for ids in r] for r in requests]

    async def scenario():
        first = await blocked_first_pass(q, backend)
        tasks = [asyncio.ensure_future(q.embed(r, normalize=bool(i % 2)))
                 for i, r in enumerate(requests)]
        await asyncio.sleep(0)  # every task runs up to its await: all are queued now
        assert q.pending_texts == sum(len(r) for r in requests)
        backend.allow()
        await first
        return await asyncio.gather(*tasks)

    results = asyncio.run(scenario())
    q.close(WAIT)
    for i, (request, vectors) in enumerate(zip(requests, results, strict=True)):
        assert vectors.shape == (len(request), 3)
        np.testing.assert_array_equal(vectors, [expected(ids, bool(i % 2)) for ids in request])
    for rows in backend.passes:
        longest = max(len(ids) for ids in rows)
        assert len(rows) <= 4
        assert len(rows) * longest <= 64 or len(rows) == 1
    ran = Counter(tuple(ids) for rows in backend.passes for ids in rows)
    sent = Counter(tuple(ids) for r in [[[1, 2]], *requests] for ids in r)
    assert ran == sent  # every text ran exactly once
    assert len(backend.passes) < sum(sent.values()) / 2  # requests really were batched


def test_max_batch_requests_bounds_the_requests_sharing_a_window():
    backend = FakeBackend(gated=True)
    q = make_queue(backend, max_batch_tokens=1000, batch_size=100, max_batch_requests=1)
    requests = [[[k] * n for n in (3, 5, 2)] for k in range(10, 16)]

    async def scenario():
        first = await blocked_first_pass(q, backend)
        tasks = [asyncio.ensure_future(q.embed(r)) for r in requests]
        await asyncio.sleep(0)
        backend.allow()
        await first
        return await asyncio.gather(*tasks)

    asyncio.run(scenario())
    q.close(WAIT)
    later = backend.passes[1:]
    assert len(later) == len(requests)
    for rows in later:
        assert len({ids[0] for ids in rows}) == 1  # one request per window, whole


def test_sorted_window_gives_single_request_its_encode_order():
    # One request that fits a pass is one pass, rows sorted longest first (stable), as
    # SentenceEncoder.encode sorts: the padded batch is the same, so the vectors are too.
    backend = FakeBackend()
    q = make_queue(backend, max_batch_tokens=8192, batch_size=32)
    request = [[1] * 3, [2] * 7, [3] * 3, [4] * 9, [5]]
    vectors = asyncio.run(q.embed(request))
    q.close(WAIT)
    assert backend.passes[-1] == [request[i] for i in np.argsort([-len(x) for x in request],
                                                                 kind="stable")]
    np.testing.assert_array_equal(vectors, [expected(ids, False) for ids in request])


def test_cancelled_request_frees_its_slot_and_its_texts_never_run():
    backend = FakeBackend(gated=True)
    q = make_queue(backend, max_concurrent_requests=2)

    async def scenario():
        first = await blocked_first_pass(q, backend)

        async def client():
            with q.slot():
                return await q.embed([[7, 7, 7], [8, 8]])

        task = asyncio.ensure_future(client())
        await asyncio.sleep(0)
        assert (q.admitted, q.pending_texts) == (1, 2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (q.admitted, q.pending_texts) == (0, 0)
        backend.allow()
        await first
        return await q.embed([[5]])

    last = asyncio.run(scenario())
    q.close(WAIT)
    np.testing.assert_array_equal(last, [expected([5], False)])
    ran = [ids for rows in backend.passes for ids in rows]
    assert [7, 7, 7] not in ran and [8, 8] not in ran


def test_request_cancelled_between_its_passes_stops_running():
    backend = FakeBackend(gated=True)
    q = make_queue(backend, batch_size=1)

    async def scenario():
        task = asyncio.ensure_future(q.embed([[1], [2], [3], [4]]))
        assert await asyncio.to_thread(backend.entered.wait, WAIT)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        backend.allow()  # the pass in progress finishes; the rest of the request is dropped
        return await q.embed([[9]])

    asyncio.run(scenario())
    q.close(WAIT)
    assert [ids for rows in backend.passes for ids in rows] == [[1], [9]]


def test_full_queue_refuses_at_once_and_admits_again_after():
    q = BatchQueue(FakeBackend(), max_concurrent_requests=1)
    with q.slot():
        assert q.admitted == 1
        with pytest.raises(QueueFull):
            with q.slot():
                pass
    with q.slot():
        assert q.admitted == 1
    assert q.admitted == 0


def test_close_runs_queued_work_then_refuses():
    backend = FakeBackend(gated=True)
    q = make_queue(backend)

    async def scenario():
        first = await blocked_first_pass(q, backend)
        tasks = [asyncio.ensure_future(q.embed([[k, k]])) for k in range(5)]
        await asyncio.sleep(0)
        closer = threading.Thread(target=q.close, args=(WAIT,))
        closer.start()  # close waits for the worker, which waits for permits
        backend.allow()
        results = await asyncio.gather(first, *tasks)
        await asyncio.to_thread(closer.join, WAIT)
        with pytest.raises(QueueClosed):
            await q.embed([[1]])
        return results

    results = asyncio.run(scenario())
    assert [r[0, 0] for r in results[1:]] == [2.0 * k for k in range(5)]
    with pytest.raises(QueueClosed):
        with q.slot():
            pass


def test_close_past_its_timeout_drops_queued_work_interrupts_the_pass_and_stops_the_worker():
    # The worker must not outlive close: the process aborts if the interpreter exits while
    # it is inside torch (issue 17). Cut-off requests fail with QueueClosed (503).
    backend, q = interruptible_queue()

    async def scenario():
        first, queued = await held_pass_and_queued_request(q, backend)
        await asyncio.to_thread(q.close, 0.05)
        assert not backend.interrupted_thread.is_alive()
        for request in (first, queued):
            with pytest.raises(QueueClosed, match="graceful timeout"):
                await request

    asyncio.run(scenario())
    assert backend.passes == []  # the held pass was interrupted; the queued one never ran
    assert backend.hook_removed


def test_close_does_not_wait_for_work_nobody_waits_for():
    # At the lifespan's end uvicorn has cancelled every request it cut off: what is left in
    # the worker is for nobody, and close (even without a timeout) stops it at once.
    backend, q = interruptible_queue()

    async def scenario():
        first, queued = await held_pass_and_queued_request(q, backend)
        first.cancel()
        queued.cancel()
        await asyncio.gather(first, queued, return_exceptions=True)
        closer = threading.Thread(target=q.close)  # no timeout
        closer.start()
        await asyncio.to_thread(closer.join, WAIT)
        assert not closer.is_alive()  # without the check it would wait for the gated pass

    asyncio.run(scenario())
    assert backend.interrupted and not backend.interrupted_thread.is_alive()
    assert backend.passes == []


def test_backend_failure_fails_its_requests_and_the_worker_goes_on():
    backend = FakeBackend(fail_on=-1)
    q = make_queue(backend, batch_size=1)

    async def scenario():
        with pytest.raises(RuntimeError, match="backend failure"):
            await q.embed([[3], [-1], [4]])
        return await q.embed([[5]])

    np.testing.assert_array_equal(asyncio.run(scenario()), [expected([5], False)])
    q.close(WAIT)


def test_start_raises_what_warm_up_raised():
    q = BatchQueue(FakeBackend())

    def warm_up():
        raise RuntimeError("no memory")

    with pytest.raises(RuntimeError, match="no memory"):
        q.start(warm_up=warm_up)


lengths = st.lists(st.lists(st.integers(1, 40), min_size=1, max_size=8), min_size=1,
                   max_size=12)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests=lengths, budget=st.integers(1, 128), batch_size=st.integers(1, 9),
       max_requests=st.none() | st.integers(1, 4))
def test_any_load_every_text_runs_once_within_limits(requests, budget, batch_size,
                                                     max_requests):
    backend = FakeBackend()
    q = make_queue(backend, max_batch_tokens=budget, batch_size=batch_size,
                   max_batch_requests=max_requests)
    id_lists = [[[r * 100 + t] * n for t, n in enumerate(request)]
                for r, request in enumerate(requests)]

    async def scenario():
        return await asyncio.gather(*(q.embed(ids) for ids in id_lists))

    results = asyncio.run(scenario())
    q.close(WAIT)
    for ids, vectors in zip(id_lists, results, strict=True):
        np.testing.assert_array_equal(vectors, [expected(x, False) for x in ids])
    for rows in backend.passes:
        assert len(rows) <= batch_size
        assert len(rows) == 1 or len(rows) * max(map(len, rows)) <= budget
    assert sorted(map(tuple, (x for rows in backend.passes for x in rows))) == sorted(
        map(tuple, (x for ids in id_lists for x in ids)))


# ---- pass planning ---------------------------------------------------------------------------


def test_on_idle_runs_when_the_worker_runs_dry_not_while_work_waits():
    backend = FakeBackend(gated=True)
    idle_at: list[int] = []  # passes run when on_idle was called
    q = make_queue(backend, max_batch_tokens=4, batch_size=1,
                   on_idle=lambda: idle_at.append(len(backend.passes)))

    async def scenario():
        first = await blocked_first_pass(q, backend)
        more = asyncio.ensure_future(q.embed([[3], [4], [5]]))
        await asyncio.sleep(0)
        backend.allow()
        await first
        await more

    asyncio.run(scenario())
    q.close(WAIT)
    assert idle_at and idle_at[0] == 4  # only after the last of the 4 queued passes
