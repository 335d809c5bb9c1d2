"""csrc/gemm_int8_amx.c, the AMX-INT8 kind: exact int32 sums against int64 where its tiles run
(K % 64 == 0) over row tails (the tile configuration of fewer rows), column tails (a panel's
last 16 or 32 columns) and K from one tile step to 24, and the same float32 bits as vnni512 (the
same sums and epilogue) through every epilogue on every schedule and thread count. The
int8 kernel tests of tests/test_int8_gemm.py run it too (and its VNNI512 fallback for other K)."""

from __future__ import annotations

import pytest
import torch

from seqenc import int8, int8_gemm
from seqenc.nn import kernels

pytestmark = pytest.mark.skipif(
    "amx" not in int8.runnable_gemms(),
    reason=f"the amx int8 kernel does not run here: needs AMX-INT8 and AVX512-VNNI and Linux's "
           f"leave for the tiles (runs: {int8.runnable_gemms()}, {kernels.describe()})")

ROWS = [1, 15, 16, 17, 33, 47, 64, 65, 130]  # tiles of 16 rows, pairs of 32, tasks of 64
COLUMNS = [16, 32, 48, 80, 112]  # 2 x 2 and 2 x 1 tile blocks; panels of 48 and their tails
DEPTHS = [64, 128, 448, 1536]


def extremes(case: str, n: int, m: int, k: int, g: torch.Generator) -> tuple:
    if case == "random":
        return (torch.randint(-127, 128, (n, k), dtype=torch.int8, generator=g),
                torch.randint(-127, 128, (m, k), dtype=torch.int8, generator=g))
    a_sign, w_sign = {"+max everywhere": (1, 1), "-max x +max": (-1, 1),
                      "+max x -max": (1, -1), "-max everywhere": (-1, -1)}[case]
    # 255 x 127 in every product of the shifted activations: the largest tile sums
    return (torch.full((n, k), 127 * a_sign, dtype=torch.int8),
            torch.full((m, k), 127 * w_sign, dtype=torch.int8))


@pytest.mark.parametrize("n", ROWS)
@pytest.mark.parametrize("k", DEPTHS)
def test_row_and_column_tails_are_exact(n, k):
    g = torch.Generator().manual_seed(n * k)
    for m in COLUMNS:
        for case in ("random", "+max everywhere", "-max x +max", "+max x -max"):
            a, w = extremes(case, n, m, k, g)
            got = int8_gemm.int8_mm(a, w, "amx")
            assert torch.equal(got.long(), a.long() @ w.long().t()), (n, m, k, case)


@pytest.mark.parametrize("schedule", ["tasks", "openmp"])
def test_threads_and_the_longest_k_are_exact(schedule, monkeypatch):
    """K = 65536 (the most any sum adds up: 65536 x 255 x 127 < 2^31) on 1 to 3 threads."""
    monkeypatch.setattr(int8, "SCHEDULE", schedule)
    threads = torch.get_num_threads()
    try:
        for t in (1, 2, 3):
            torch.set_num_threads(t)
            for case in ("+max everywhere", "-max x +max"):
                a, w = extremes(case, 17, 48, 65536, torch.Generator())
                assert torch.equal(int8_gemm.int8_mm(a, w, "amx").long(), a.long() @ w.long().t())
    finally:
        torch.set_num_threads(threads)


def layers(gemm: str, d: int, f: int, g: torch.Generator) -> tuple:
    """An FFN's two Int8Linear layers on ``gemm``, the down projection smoothed."""
    torch.manual_seed(int(torch.randint(0, 1000, (1,), generator=g)))
    up, down = torch.nn.Linear(d, f), torch.nn.Linear(f, d)
    smooth = torch.rand(f, generator=g) * 2 + 0.5
    return int8.Int8Linear(up, gemm=gemm), int8.Int8Linear(down, smooth, gemm=gemm), up, down


@pytest.mark.parametrize("n", [1, 15, 17, 33, 200])
@pytest.mark.parametrize("schedule", ["fused", "fused-tasks", "tasks", "openmp"])
def test_every_epilogue_gives_vnni512s_bits(n, schedule, monkeypatch):
    """Dequantisation, bias + GELU, bias + residual + LayerNorm, the GELU rows requantised for
    the next layer and that layer reading them: bit for bit vnni512's (the fused epilogues on
    the fused schedules, which alone run them), on 1 and 2 threads."""
    if "vnni512" not in int8.runnable_gemms():
        pytest.skip("vnni512 does not run here")
    monkeypatch.setattr(int8, "SCHEDULE", schedule)
    d, f = 128, 512
    g = torch.Generator().manual_seed(n)
    x = torch.randn(n, d, generator=g) * 3
    residual, gamma, beta = (torch.randn(n, d, generator=g), torch.rand(d, generator=g) + 0.5,
                             torch.randn(d, generator=g))
    fused = schedule.startswith("fused")
    threads = torch.get_num_threads()
    try:
        for t in (1, 2):
            torch.set_num_threads(t)
            results = {}
            for gemm in ("amx", "vnni512"):
                up, down, up_f, down_f = layers(gemm, d, f, torch.Generator().manual_seed(n))
                norm = (down_f.bias.detach(), residual, gamma, beta, 1e-12)
                got = [up(x), down(torch.randn(n, f, generator=torch.Generator().manual_seed(1)))]
                if fused:
                    got.append(up._own_gemm(x, gelu_bias=up_f.bias.detach()))
                    hidden = up._own_gemm(x, gelu_bias=up_f.bias.detach(), feeds=down)
                    got += [*hidden, down._own_gemm(hidden, norm=norm)]
                results[gemm] = got
            for ours, theirs in zip(results["amx"], results["vnni512"], strict=True):
                assert torch.equal(ours, theirs)
    finally:
        torch.set_num_threads(threads)


def test_amx_is_the_default_and_vnni512_can_be_chosen(monkeypatch):
    """Where AMX-INT8 runs, int8's GEMM is amx unless SEQENC_INT8_GEMM names another; the
    weights are packed the same way for both."""
    monkeypatch.delenv("SEQENC_INT8_GEMM", raising=False)
    assert int8._choose_gemm() == "amx"
    monkeypatch.setenv("SEQENC_INT8_GEMM", "vnni512")
    assert int8._choose_gemm() == "vnni512"
    w = torch.randint(-127, 128, (96, 256), dtype=torch.int8)
    for ours, theirs in zip(int8.pack_int8(w, "amx"), int8.pack_int8(w, "vnni512"), strict=True):
        assert torch.equal(ours, theirs)


def test_the_amx_peak_probe_runs_and_outpaces_vnni():
    """csrc/peak.c's AMX-INT8 probe (what `seqenc bench` measures int8 against where int8 runs
    on AMX): tdpbusd does 8 times vpdpbusd's work a cycle, so its probe must beat VNNI512's."""
    amx = kernels._kernels.peak(5, 20_000, 1)  # PEAK_AMX_INT8
    vnni = kernels._kernels.peak(3, 200_000, 1)  # PEAK_VNNI512
    assert amx > vnni > 0
