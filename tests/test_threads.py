"""seqenc.threads: the one place that sets PyTorch's CPU threads."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time

import pytest
import torch

from seqenc import threads as threads_module
from seqenc.threads import run_batches, set_threads, torchrun_share


def test_set_threads_sets_and_none_leaves_alone():
    before = torch.get_num_threads()
    try:
        set_threads(2)
        assert torch.get_num_threads() == 2
        set_threads(None)
        assert torch.get_num_threads() == 2
        for bad in (0, -1, 1.5, True):
            with pytest.raises(ValueError, match="positive integer"):
                set_threads(bad)
    finally:
        torch.set_num_threads(before)


def test_torchrun_processes_share_the_cores(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert torchrun_share() is None  # not under torchrun
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "3")
    assert torchrun_share() == 2
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "16")
    assert torchrun_share() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "4")  # the user's choice wins
    assert torchrun_share() is None


@pytest.mark.parametrize("env, expected", [
    ({}, "GOMP_SPINCOUNT=10000"),  # ours: a short spin, then sleep
    ({"OMP_WAIT_POLICY": "ACTIVE"}, "GOMP_SPINCOUNT=None"),  # the user's choice stands
    ({"GOMP_SPINCOUNT": "5"}, "GOMP_SPINCOUNT=5"),
])
def test_import_caps_openmp_spin_waits_before_torch_loads(env, expected):
    base = {k: v for k, v in os.environ.items()
            if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    code = ("import sys, os, seqenc; assert 'torch' not in sys.modules; "
            "print('GOMP_SPINCOUNT=' + str(os.environ.get('GOMP_SPINCOUNT')))")
    out = subprocess.run([sys.executable, "-c", code], env={**base, **env},
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == expected


@pytest.mark.parametrize("first", ["seqenc", "torch"])
def test_the_spin_cap_reaches_libgomp_only_before_torch_and_says_when_not(first):
    """libgomp reads GOMP_SPINCOUNT once, as it loads (with torch), and prints the value it took
    under OMP_DISPLAY_ENV=VERBOSE: seqenc first, the cap; torch first, libgomp's default, which
    openmp_waits and kernels.describe then say."""
    second = "torch" if first == "seqenc" else "seqenc"
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    code = (f"import {first}, {second}\n"
            "from seqenc.nn import kernels\nfrom seqenc.threads import openmp_waits\n"
            "print(openmp_waits()); print(kernels.describe())")
    run = subprocess.run([sys.executable, "-c", code], env={**env, "OMP_DISPLAY_ENV": "VERBOSE"},
                         capture_output=True, text=True, check=True)
    took = re.search(r"GOMP_SPINCOUNT = '(\d+)'", run.stderr)
    if took is None:
        pytest.skip("this OpenMP runtime does not display GOMP_SPINCOUNT (not libgomp)")
    waits, describe = run.stdout.splitlines()
    if first == "seqenc":
        assert took.group(1) == threads_module.SPIN_COUNT
        assert waits.startswith("spin capped") and "OpenMP" not in describe
    else:
        assert took.group(1) != threads_module.SPIN_COUNT
        assert waits.startswith("NOT capped")
        assert describe.endswith("OpenMP spin not capped (torch imported before seqenc)") or (
            "PyTorch only" in describe)


def test_run_batches_runs_each_step_once_side_by_side_on_one_thread_each():
    before = torch.get_num_threads()
    seen, lock = {}, threading.Lock()

    def step(i):
        time.sleep(0.01)  # long enough for both workers to start
        with lock:
            seen[i] = (threading.get_ident(), torch.get_num_threads())

    try:
        torch.set_num_threads(2)
        done = list(run_batches(step, 9, workers=2))
        assert sorted(done) == list(range(9)) and sorted(seen) == list(range(9))
        assert {threads for _, threads in seen.values()} == {1}  # PyTorch's threads: 1 each
        assert len({ident for ident, _ in seen.values()}) == 2  # two worker threads
        assert torch.get_num_threads() == 2  # given back
        # one worker, or one step: in the caller's thread, PyTorch's threads untouched
        seen.clear()
        assert list(run_batches(step, 3, workers=1)) == [0, 1, 2]
        assert {v for v in seen.values()} == {(threading.get_ident(), 2)}
    finally:
        torch.set_num_threads(before)


def test_run_batches_raises_a_steps_error_and_restores_the_threads():
    before = torch.get_num_threads()
    started = []

    def step(i):
        started.append(i)
        if i == 1:
            raise ValueError("batch 1 is bad")
        time.sleep(0.02)

    try:
        torch.set_num_threads(2)
        with pytest.raises(ValueError, match="batch 1 is bad"):
            list(run_batches(step, 50, workers=2))
        assert torch.get_num_threads() == 2
        assert len(started) < 50  # the steps not yet started were cancelled
        # and the next call runs side by side again (the lock was released)
        seen = set()
        assert sorted(run_batches(lambda i: seen.add(torch.get_num_threads()), 4, 2)) == [
            0, 1, 2, 3]
        assert seen == {1}
    finally:
        torch.set_num_threads(before)


def test_run_batches_keeps_its_workers_and_leaves_other_threads_counts_alone():
    before = torch.get_num_threads()
    idents, counts = [], []

    def step(i):
        time.sleep(0.01)
        idents.append(threading.get_ident())

    def started_now():  # a thread started during a call takes PyTorch's default count
        seen = []
        thread = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
        thread.start()
        thread.join()
        return seen[0]

    try:
        torch.set_num_threads(2)
        for _ in range(3):
            for _ in run_batches(step, 6, workers=2):
                counts.append((torch.get_num_threads(), started_now()))
        assert len(idents) == 18 and len(set(idents)) == 2  # the same two threads each call
        assert threading.get_ident() not in idents
        assert set(counts) == {(2, 2)}  # the caller's and new threads' counts: untouched
    finally:
        torch.set_num_threads(before)


def test_run_batches_stops_when_the_caller_stops_reading():
    before = torch.get_num_threads()
    started = []

    def step(i):
        started.append(i)
        time.sleep(0.01)

    try:
        torch.set_num_threads(2)
        batches = run_batches(step, 40, workers=2)
        assert next(batches) in (0, 1)
        batches.close()  # waits for the steps running, starts no more
        count = len(started)
        assert count < 40
        time.sleep(0.05)
        assert len(started) == count
        assert sorted(run_batches(lambda i: None, 3, 2)) == [0, 1, 2]  # the lock was released
    finally:
        torch.set_num_threads(before)


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no thread affinity here")
@pytest.mark.parametrize("pin", ["auto", "0"])
def test_workers_are_pinned_one_per_cpu_only_when_they_fill_the_cpus(monkeypatch, pin):
    """Pinned when there is one worker per CPU this process may use (so that a busy process
    beside it takes a share of one core, not of both workers); never with SEQENC_PIN=0, nor
    with fewer workers than CPUs (processes each using some cores would crowd onto the same)."""
    monkeypatch.setattr(threads_module, "PIN", pin)
    allowed = os.sched_getaffinity(0)
    before = torch.get_num_threads()
    for workers in sorted({2, len(allowed)}):
        seen: dict[int, set[int]] = {}

        def step(i, seen=seen):
            time.sleep(0.01)
            seen[threading.get_ident()] = os.sched_getaffinity(0)  # one key per thread

        try:
            torch.set_num_threads(workers)
            list(run_batches(step, 4 * workers, workers))
        finally:
            torch.set_num_threads(before)
        if pin == "auto" and workers == len(allowed):
            assert sorted(seen.values(), key=min) == [{cpu} for cpu in sorted(allowed)]
        else:
            assert all(cpus == allowed for cpus in seen.values())
    assert os.sched_getaffinity(0) == allowed  # the caller's own: untouched


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_forked_child_starts_workers_of_its_own():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert sorted(run_batches(lambda i: time.sleep(0.01), 4, 2)) == [0, 1, 2, 3]
        pid = os.fork()
        if pid == 0:  # the child: the parent's workers do not exist here
            code = 1
            try:
                import signal

                signal.alarm(20)  # a hang fails the test rather than the suite
                names = set()
                done = sorted(run_batches(
                    lambda i: names.add(threading.current_thread().name) or time.sleep(0.01),
                    6, 2))
                code = 0 if done == list(range(6)) and len(names) == 2 else 1
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    finally:
        torch.set_num_threads(before)
