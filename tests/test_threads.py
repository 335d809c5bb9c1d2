"""seqenc.threads: the one place that sets PyTorch's CPU threads."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
import torch

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
