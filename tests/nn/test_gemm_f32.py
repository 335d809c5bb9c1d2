"""Our float32 GEMM (csrc/gemm_f32.c: AVX-512 FMAs) against float64, within the bound
nn/kernels.py states (GEMM_F32_ERROR); and the fused layers use it. Runs where the CPU has an
AVX-512 kernel set; elsewhere skipped, by name."""

from __future__ import annotations

import pytest
import torch

from seqenc.nn import kernels

needs_avx512 = pytest.mark.skipif(not kernels.can_gemm_f32(16, 16),
                                  reason="no AVX-512 kernel set here (MKL's GEMM runs)")


@needs_avx512
@pytest.mark.parametrize("n,k,m", [(1, 8, 16), (7, 40, 80), (67, 384, 1152), (300, 1536, 384),
                                   (0, 64, 48)])
def test_gemm_f32_within_its_bound(n, k, m):
    torch.manual_seed(n + k + m)
    x, w = torch.randn(n, k) * 3, torch.randn(m, k) * 0.05
    x[:, 0] = 300.0
    ours = kernels.gemm_f32(x, w)
    want = x.double() @ w.double().t()
    size = x.double().abs() @ w.double().abs().t()
    assert ours.shape == (n, m)
    assert torch.all((ours.double() - want).abs() <= kernels.GEMM_F32_ERROR * k * size + 1e-30)


@needs_avx512
def test_matmul_sees_weights_changed_in_place_without_a_version_bump():
    """AdamW(fused=True) writes parameters without bumping their version counter: nothing may
    be cached from one call to the next (a packed-weight cache once went stale this way)."""
    w = torch.nn.Parameter(torch.randn(32, 24))
    x = torch.randn(5, 24)
    torch.testing.assert_close(kernels.matmul(x, w.detach()), x @ w.detach().t(),
                               rtol=1e-5, atol=1e-5)
    version = w._version
    w.data.mul_(2)  # .data: the parameter's own version counter does not move
    assert w._version == version
    torch.testing.assert_close(kernels.matmul(x, w.detach()), x @ w.detach().t(),
                               rtol=1e-5, atol=1e-5)


@needs_avx512
def test_gemm_f32_refuses_what_it_cannot_take():
    with pytest.raises(ValueError, match="gemm_f32 takes"):
        kernels.gemm_f32(torch.randn(4, 32), torch.randn(24, 32))  # M not divisible by 16
    with pytest.raises(ValueError, match="gemm_f32 takes"):
        kernels.gemm_f32(torch.randn(4, 32), torch.randn(32, 16).t())  # not contiguous
