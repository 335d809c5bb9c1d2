"""Our float32 GEMM (csrc/gemm_f32.c: AVX-512 FMAs on packed weights) against float64, within
the bound nn/kernels.py states (GEMM_F32_ERROR); and the fused layers use it. Runs where the
CPU has an AVX-512 kernel set; elsewhere skipped, by name."""

from __future__ import annotations

import pytest
import torch

from seqenc.nn import kernels

needs_avx512 = pytest.mark.skipif(not kernels.can_gemm_f32(16, 16),
                                  reason="no AVX-512 kernel set here (MKL's GEMM runs)")


@needs_avx512
@pytest.mark.parametrize("n,k,m", [(1, 8, 16), (7, 40, 80), (67, 384, 1152), (130, 1536, 384),
                                   (0, 64, 48)])
def test_gemm_f32_within_its_bound(n, k, m):
    torch.manual_seed(n + k + m)
    x, w = torch.randn(n, k) * 3, torch.randn(m, k) * 0.05
    x[:, 0] = 300.0
    ours = kernels.gemm_f32(x, kernels.pack_f32(w), m)
    want = x.double() @ w.double().t()
    size = x.double().abs() @ w.double().abs().t()
    assert ours.shape == (n, m)
    assert torch.all((ours.double() - want).abs() <= kernels.GEMM_F32_ERROR * k * size + 1e-30)


@needs_avx512
def test_matmul_packs_each_weight_once_and_repacks_after_an_update():
    w = torch.randn(32, 24)
    x = torch.randn(5, 24)
    first = kernels.matmul(x, w)
    assert kernels.packed_f32(w) is kernels.packed_f32(w)
    torch.testing.assert_close(first, x @ w.t(), rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        w.mul_(2)  # in place, as an optimizer step: the packed copy must not go stale
    torch.testing.assert_close(kernels.matmul(x, w), x @ w.t(), rtol=1e-5, atol=1e-5)


def test_pack_f32_refuses_widths_it_cannot_lay_out():
    with pytest.raises(ValueError, match="M divisible by 16"):
        kernels.pack_f32(torch.randn(24, 32))
