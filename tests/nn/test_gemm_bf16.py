"""Our bf16 GEMM (csrc/gemm_bf16.c: bf16 inputs, float32 sums and output) against float64 on
the same bf16-rounded inputs, within the bound nn/gemm_bf16.py states (GEMM_BF16_ERROR). Runs
where the CPU has the avx512bf16 kernel set; elsewhere skipped, by name (pack/unpack run
everywhere: they are PyTorch ops)."""

from __future__ import annotations

import math

import pytest
import torch

from seqenc.nn import gemm_bf16, kernels

needs_bf16 = pytest.mark.skipif(not kernels.supports_bf16(),
                                reason="no avx512bf16 kernel set here (no bf16 GEMM)")


def exact(x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x W^T in float64 on the bf16-rounded inputs, and sum_k |x_k w_k| per entry."""
    x64, w64 = x.to(torch.bfloat16).double(), w.to(torch.bfloat16).double()
    return x64 @ w64.t(), x64.abs() @ w64.abs().t()


def gelu64(v: torch.Tensor) -> torch.Tensor:
    return v * 0.5 * torch.erfc(-v / math.sqrt(2.0))


def within_bound(ours: torch.Tensor, x: torch.Tensor, w: torch.Tensor) -> bool:
    """ours = x W^T within GEMM_BF16_ERROR's bound of float64 on the bf16-rounded inputs."""
    want, size = exact(x, w)
    bound = gemm_bf16.GEMM_BF16_ERROR * x.shape[1] * size + 1e-30
    return bool(torch.all((ours.double() - want).abs() <= bound))


def gelu_within_bound(ours: torch.Tensor, x: torch.Tensor, w: torch.Tensor,
                      b: torch.Tensor) -> bool:
    """ours = gelu(x W^T + b) from the GEMM's epilogue, bf16, against float64: the GEMM's bound
    moves v, GELU's slope (below 1.13) carries that, then GELU_BF16_RELATIVE_ERROR and one bf16
    rounding."""
    product, size = exact(x, w)
    v = product + b.double()
    shift = (gemm_bf16.GEMM_BF16_ERROR * x.shape[1] * size + 2.0**-24 * v.abs()) * 1.13
    rel = gemm_bf16.GELU_BF16_RELATIVE_ERROR + kernels.BF16_ROUNDING
    bound = (gelu64(v).abs() + shift) * rel + shift + 1e-36
    return bool(torch.all((ours.double() - gelu64(v)).abs() <= bound))


@pytest.mark.parametrize("m", [16, 48, 80, 1152])  # whole panels of 48, and a last one of 16/32
def test_pack_and_unpack_are_inverse(m):
    w = torch.randn(m, 32)
    packed = gemm_bf16.pack_weight(w)
    assert packed.dtype == torch.bfloat16 and packed.shape == (m * 32,)
    assert torch.equal(gemm_bf16.unpack_weight(packed, m, 32), w.to(torch.bfloat16))
    # the layout gemm_bf16.c reads: panel of columns c0.., then pairs of k side by side
    assert packed[2].item() == w[1, 0].to(torch.bfloat16).item()
    assert packed[3].item() == w[1, 1].to(torch.bfloat16).item()


def test_pack_refuses_widths_it_cannot_lay_out():
    with pytest.raises(ValueError, match="even K and M divisible by 16"):
        gemm_bf16.pack_weight(torch.randn(24, 32))
    with pytest.raises(ValueError, match="even K and M divisible by 16"):
        gemm_bf16.pack_weight(torch.randn(16, 31))


@needs_bf16
@pytest.mark.parametrize("n,k,m", [
    (1, 16, 16),  # one row, one vector of columns
    (7, 32, 80),  # fewer rows than the 8-row micro-kernel; a last panel of 32 columns
    (67, 384, 1152),  # MiniLM's qkv: 64-row tiles plus 3 leftover rows
    (130, 1536, 384),  # MiniLM's FFN down: the longest K
    (0, 64, 48),  # an empty batch
])
def test_gemm_bf16_within_its_bound(n, k, m):
    torch.manual_seed(n + k + m)
    x = torch.randn(n, k) * 3
    w = torch.randn(m, k) * 0.05
    x[:, 0] = 300.0  # an outlier channel, as MiniLM has
    ours = gemm_bf16.gemm(x, gemm_bf16.pack_weight(w), m)
    assert ours.dtype == torch.float32 and ours.shape == (n, m)
    assert within_bound(ours, x, w)
    # and it is not a bf16 output: far closer than one bf16 rounding of the result
    want = exact(x, w)[0]
    if n:
        assert (ours.double() - want).abs().max() < 2.0**-12 * want.abs().max()


@needs_bf16
def test_gemm_bf16_on_two_threads_equals_one():
    x, w = torch.randn(200, 128), torch.randn(96, 128)
    packed = gemm_bf16.pack_weight(w)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = gemm_bf16.gemm(x, packed, 96)
        torch.set_num_threads(2)
        two = gemm_bf16.gemm(x, packed, 96)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)  # each entry is one thread's sum in a fixed order


@needs_bf16
def test_gemm_bf16_refuses_what_it_cannot_take():
    packed = gemm_bf16.pack_weight(torch.randn(32, 32))
    with pytest.raises(ValueError, match="float32"):
        gemm_bf16.gemm(torch.randn(4, 32).double(), packed, 32)
    with pytest.raises(ValueError, match="gemm_bf16 takes"):
        gemm_bf16.gemm(torch.randn(4, 32), packed, 16)  # packed for another M
    with pytest.raises(ValueError, match="gemm_bf16 takes"):
        gemm_bf16.gemm(torch.randn(4, 24), gemm_bf16.pack_weight(torch.randn(32, 24)), 32)


@needs_bf16
def test_gemm_bf16_takes_bf16_rows_as_they_are():
    """bf16 rows (written by the kernel before the GEMM) skip the conversion: the same result
    as float32 rows rounded on the way in."""
    x, packed = torch.randn(70, 64) * 2, gemm_bf16.pack_weight(torch.randn(96, 64))
    assert torch.equal(gemm_bf16.gemm(x.bfloat16(), packed, 96),
                       gemm_bf16.gemm(x, packed, 96))


def test_gemm_bf16_is_offered_only_with_the_bf16_kernel_set():
    assert gemm_bf16.can_gemm(384, 1152) == kernels.supports_bf16()
    assert not gemm_bf16.can_gemm(24, 32) and not gemm_bf16.can_gemm(32, 24)


@needs_bf16
@pytest.mark.parametrize("n,k,m", [(7, 32, 80), (67, 384, 1536)])
def test_gemm_bf16_gelu_epilogue_within_its_bound(n, k, m):
    """gelu(x W^T + b) in the GEMM's epilogue, bf16 out, against float64 (gelu_within_bound)."""
    torch.manual_seed(n + k)
    x, w, b = torch.randn(n, k) * 2, torch.randn(m, k) * 0.1, torch.randn(m)
    ours = gemm_bf16.gemm(x, gemm_bf16.pack_weight(w), m, gelu_bias=b)
    assert ours.dtype == torch.bfloat16 and ours.shape == (n, m)
    assert gelu_within_bound(ours, x, w, b)
    with pytest.raises(ValueError, match="gelu_bias"):
        gemm_bf16.gemm(x, gemm_bf16.pack_weight(w), m, gelu_bias=b[:16])


@needs_bf16
def test_gemm_bf16_gelu_is_within_its_relative_bound_across_the_range():
    """The epilogue's GELU over v in [-13, 13] (the left tail included, where GELU is tiny):
    W = I makes x W^T exactly the bf16 values of x and the bias fills the gaps between them.
    Relative everywhere: GELU_BF16_RELATIVE_ERROR plus the bf16 rounding (half an ulp)."""
    torch.manual_seed(9)
    k = m = 64
    x = torch.linspace(-13, 13, 301 * k).view(-1, k).bfloat16().float()
    b = (torch.rand(m) - 0.5) * 0.04
    ours = gemm_bf16.gemm(x, gemm_bf16.pack_weight(torch.eye(m)), m, gelu_bias=b).double()
    v = (x + b).double()  # the kernel's float32 sum, as the GEMM's exact output + the bias
    want = gelu64(v)
    bound = (gemm_bf16.GELU_BF16_RELATIVE_ERROR + kernels.BF16_ROUNDING) * want.abs() + 1e-36
    assert torch.all((ours - want).abs() <= bound)
    # most values round exactly as the float64 GELU does: the approximation is far below bf16's
    same = (ours == want.float().bfloat16().double()).float().mean().item()
    assert same > 0.99, same
