"""The GELU of rows quantised to int8 next (csrc/simd512.h's gelu512_for_int8): within
kernels.GELU_INT8_ERROR of float64, the same bits in the int8 GEMMs' fused epilogues (amx,
vnni512) as in the separate bias_gelu_(for_int8=True), and the erf form everywhere else."""

from __future__ import annotations

import pytest
import torch

from seqenc import int8
from seqenc.nn import kernels

from .test_kernels import assert_within, gelu64

needs_512 = pytest.mark.skipif(not kernels.ENABLED or kernels.ISAS.index(kernels.ISA) < 1,
                               reason="the 16-lane kernels do not run here")
WIDE = [pytest.param(name, marks=pytest.mark.skipif(
    name not in int8.runnable_gemms(), reason=f"the {name} int8 kernel does not run here"))
    for name in int8.WIDE_GEMMS]


def int8_bound(v: torch.Tensor) -> torch.Tensor:
    return kernels.GELU_INT8_ERROR + 2.0**-23 * gelu64(v).abs()


def floats(lo: float, hi: float, stride: int) -> torch.Tensor:
    """Every stride-th float32 of [lo, hi] (0 <= lo < hi) by bit pattern, both signs: as dense
    where the values are small as where they are large, subnormals included."""
    bits = torch.arange(torch.tensor(lo).view(torch.int32).item(),
                        torch.tensor(hi).view(torch.int32).item() + 1, stride, dtype=torch.int32)
    x = bits.view(torch.float32)
    return torch.cat([x, -x])


@needs_512
def test_int8_gelu_within_its_bound_everywhere():
    # every 331st float of +-[0, 16] (~6.5M values: the cubics' 16 intervals of [0, 6) many times
    # over), each interval's ends and their neighbours, the clamp at 6 and far beyond
    knots = torch.arange(17, dtype=torch.float32) * (6.0 / 16)
    edges = torch.cat([knots, torch.nextafter(knots, knots + 1), torch.nextafter(knots, knots - 1)])
    x = torch.cat([floats(0.0, 16.0, 331), edges, -edges, torch.tensor([1e4, -1e4, 3e38, -3e38])])
    x = torch.nn.functional.pad(x, (0, -len(x) % 64)).view(-1, 64).contiguous()
    ours = kernels.bias_gelu_(x.clone(), torch.zeros(64), for_int8=True)
    assert kernels.last_lanes == 512
    assert_within(ours, gelu64(x), int8_bound(x))
    # not the erf form in disguise: the bound is the fit's (9.4e-6), ~1000x the erf form's
    worst = (ours.double() - gelu64(x)).abs().max().item()
    assert 0.25 * kernels.GELU_INT8_ERROR < worst <= kernels.GELU_INT8_ERROR, worst

    torch.manual_seed(0)
    x, bias = torch.randn(37, 96) * 4, torch.randn(96)
    want = gelu64(x + bias)  # the kernel adds the bias in float32, as this does
    assert_within(kernels.bias_gelu_(x, bias, for_int8=True), want, int8_bound(x + bias))


@needs_512
def test_int8_gelu_special_values():
    x = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, -0.0] + [0.0] * 11)
    ours = kernels.bias_gelu_(x.view(1, 16).clone(), torch.zeros(16), for_int8=True)[0]
    assert ours[0].isnan() and ours[1] == float("inf")
    assert ours[2].abs() <= 1e-8 and (ours[3:].abs() <= kernels.GELU_INT8_ERROR).all()


@pytest.mark.skipif(not kernels.ENABLED, reason="C kernels not built/enabled")
def test_eight_lanes_keep_the_erf_form():
    """for_int8 changes the 16-lane float32 kernel only: the 8-lane one (elementwise.c, what
    avx2's int8 kernels' epilogues compute, store8) is the erf form with or without it."""
    torch.manual_seed(1)
    x, bias = torch.randn(9, 64) * 3, torch.randn(64)
    ours = kernels.bias_gelu_(x.clone(), bias, isa="avx2", for_int8=True)
    assert kernels.last_lanes == 256
    assert torch.equal(ours, kernels.bias_gelu_(x.clone(), bias, isa="avx2"))


@pytest.mark.parametrize("gemm", WIDE)
@pytest.mark.parametrize("n", [1, 17, 70])
def test_the_up_projections_epilogue_is_the_separate_int8_gelu(gemm, n, monkeypatch):
    """gelu(x W^T + b) in the int8 GEMM's epilogue: bit for bit the separate passes (the
    dequantised product, then bias_gelu_(for_int8=True)), and within GELU_INT8_ERROR of the
    float64 GELU of that product + b (the quantisation's own error is the GEMM's, not the
    GELU's). Wide inputs: v covers the cubics' whole range and the clamp beyond it."""
    monkeypatch.setattr(int8, "SCHEDULE", "fused")
    g = torch.Generator().manual_seed(n)
    up = torch.nn.Linear(128, 512)
    up.bias.data = torch.randn(512, generator=g) * 4
    layer = int8.Int8Linear(up, gemm=gemm)
    x = torch.randn(n, 128, generator=g) * 3
    fused = layer._own_gemm(x, gelu_bias=layer.bias)
    product = layer.matmul(x)  # (n, 512) float32, the same sums and dequantisation
    v = product + layer.bias  # float32, as the kernels add it
    assert torch.equal(fused, kernels.bias_gelu_(product.clone(), layer.bias, for_int8=True))
    assert_within(fused, gelu64(v), int8_bound(v))
    assert v.abs().max() > 6  # the clamp ran


@pytest.mark.parametrize("gemm", WIDE)
@pytest.mark.parametrize("f", [80, 1536])
def test_the_requantised_gelu_rows_are_the_separate_passes(gemm, f, monkeypatch):
    """The up projection's rows, requantised in its tasks for the down projection (16 lanes,
    the down projection's smoothing applied): the q and scales that bias_gelu_(for_int8=True)
    then the 8-lane quantize_int8 give on the same rows."""
    monkeypatch.setattr(int8, "SCHEDULE", "fused")
    g = torch.Generator().manual_seed(f)
    up, down = torch.nn.Linear(64, f), torch.nn.Linear(f, 64)
    up.bias.data = torch.randn(f, generator=g)
    up8 = int8.Int8Linear(up, gemm=gemm)
    down8 = int8.Int8Linear(down, torch.rand(f, generator=g) + 0.5, gemm=gemm)
    x = torch.randn(45, 64, generator=g) * 2
    q, scale = up8._own_gemm(x, gelu_bias=up8.bias, feeds=down8)
    rows = kernels.bias_gelu_(up8.matmul(x), up8.bias, for_int8=True)
    want_q, want_scale = int8.quantize_rows_kernel(rows, gemm, down8.inv_smooth)
    assert torch.equal(scale, want_scale) and torch.equal(q, want_q)
