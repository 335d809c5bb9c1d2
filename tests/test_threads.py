"""seqenc.threads: the one place that sets PyTorch's CPU threads."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from seqenc.threads import set_threads, torchrun_share


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
