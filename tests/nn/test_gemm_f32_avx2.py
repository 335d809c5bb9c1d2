"""Our AVX2 float32 GEMM (csrc/gemm_f32_avx2.c through nn/gemm_f32.py) against float64 within
GEMM_F32_ERROR, its fused epilogues against the separate kernels (bit for bit), and the fused
layers that use it. Runs on every CPU with the avx2 kernel set (AVX-512 ones included: the
tests select that set), skipped by name elsewhere."""

from __future__ import annotations

import pytest
import torch

from seqenc.nn import Encoder, gemm_f32, kernels
from threads_support import at_thread_counts

from .test_gemm_f32 import fused_layers_equal_the_modules

pytestmark = pytest.mark.skipif(
    not (kernels.ENABLED and "avx2" in kernels.AVAILABLE and kernels._has("gemm_f32_avx2")),
    reason=f"the avx2 kernel set does not run here ({kernels.describe()})")


@pytest.fixture(autouse=True)
def avx2_set(monkeypatch):
    monkeypatch.setattr(kernels, "ISA", "avx2")
    monkeypatch.setattr(gemm_f32, "ENABLED", True)


SHAPES = [(1, 8, 16), (7, 40, 80), (50, 384, 1152), (97, 1536, 384), (300, 384, 1536),
          (0, 64, 48), (5, 12, 32), (13, 12, 32), (20, 3, 16)]  # K = 12, 3: k past 8 x 8 blocks


@pytest.mark.parametrize("pack_once", [True, False], ids=["packed once", "packed per call"])
@pytest.mark.parametrize("n,k,m", SHAPES, ids=lambda v: str(v))
def test_gemm_within_its_bound(monkeypatch, n, k, m, pack_once):
    """Rows past whole register tiles and tasks (K = 384: 128 rows a task, 1536: 32), K past
    whole 8-wide packing blocks, W packed once or on the call."""
    monkeypatch.setattr(gemm_f32, "PACK_ONCE", pack_once)
    torch.manual_seed(n + k + m)
    x, w = torch.randn(n, k) * 3, torch.randn(m, k) * 0.05
    if n:
        x[:, 0] = 300.0
    if k % 8:  # the kernel's checks want rows of a width divisible by 8: call it directly
        out = torch.empty(n, m)
        if pack_once:
            packed = gemm_f32.packed_weight(w)
            kernels._kernels.gemm_f32_avx2_packed(x.data_ptr(), packed.data_ptr(),
                                                  out.data_ptr(), n, m, k, m, 1)
        else:
            kernels._kernels.gemm_f32_avx2(x.data_ptr(), w.data_ptr(), out.data_ptr(), n, m, k,
                                           m, 1)
    else:
        out = gemm_f32.gemm(x, w)
    want = x.double() @ w.double().t()
    size = x.double().abs() @ w.double().abs().t()
    assert out.shape == (n, m)
    assert torch.all((out.double() - want).abs() <= gemm_f32.GEMM_F32_ERROR * k * size + 1e-30)


@pytest.mark.parametrize("pack_once", [True, False])
def test_threads_split_the_same_sums(monkeypatch, pack_once):
    monkeypatch.setattr(gemm_f32, "PACK_ONCE", pack_once)
    torch.manual_seed(1)
    x, w = torch.randn(333, 384), torch.randn(1152, 384)
    want, *others = at_thread_counts(lambda: gemm_f32.gemm(x, w))
    assert all(torch.equal(got, want) for got in others)


@pytest.mark.parametrize("n", [1, 47, 130])
def test_epilogues_are_the_separate_kernels_bit_for_bit(n):
    torch.manual_seed(n)
    x, w_up, w_down = torch.randn(n, 64), torch.randn(256, 64) * 0.2, torch.randn(64, 256) * 0.1
    b_up, b_down = torch.randn(256), torch.randn(64)
    residual, gamma, beta = torch.randn(n, 64), torch.randn(64), torch.randn(64)
    hidden = gemm_f32.gemm(x, w_up, gelu_bias=b_up)
    assert torch.equal(hidden, kernels.bias_gelu_(gemm_f32.gemm(x, w_up), b_up, isa="avx2"))
    y = gemm_f32.gemm(hidden, w_down, norm=(b_down, residual, gamma, beta, 1e-12))
    want = kernels.add_layer_norm_(gemm_f32.gemm(hidden, w_down), b_down, residual, gamma,
                                   beta, 1e-12, isa="avx2")
    assert torch.equal(y, want)


@pytest.mark.parametrize("pack_once", [False, True])
def test_weights_changed_in_place_are_seen(monkeypatch, pack_once):
    """With or without the kept packed copy."""
    monkeypatch.setattr(gemm_f32, "PACK_ONCE", pack_once)
    w, x = torch.randn(32, 24), torch.randn(5, 24)
    torch.testing.assert_close(gemm_f32.gemm(x, w), x @ w.t(), rtol=1e-5, atol=1e-5)
    w.mul_(2)
    torch.testing.assert_close(gemm_f32.gemm(x, w), x @ w.t(), rtol=1e-5, atol=1e-5)


def test_gemm_refuses_what_it_cannot_take():
    with pytest.raises(ValueError, match="gemm takes"):
        gemm_f32.gemm(torch.randn(4, 32), torch.randn(24, 32))  # M not divisible by 16
    with pytest.raises(ValueError, match="gemm takes"):
        gemm_f32.gemm(torch.randn(4, 32), torch.randn(32, 16).t())  # not contiguous
    with pytest.raises(ValueError, match="residual"):
        gemm_f32.gemm(torch.randn(4, 32), torch.randn(16, 32),
                       norm=(torch.zeros(16), torch.zeros(3, 16), torch.ones(16),
                             torch.zeros(16), 1e-5))


@pytest.mark.parametrize("threads", [1, 2])
def test_fused_layers_run_on_it_and_equal_the_modules(make_cfg, monkeypatch, threads):
    fused_layers_equal_the_modules(make_cfg, monkeypatch, threads)  # on the avx2 set (avx2_set)


def test_mkl_setting_keeps_the_separate_path(monkeypatch, make_cfg):
    monkeypatch.setattr(gemm_f32, "ENABLED", False)  # SEQENC_F32_GEMM=mkl
    cfg = make_cfg(d_model=32, n_heads=2, d_ff=64, activation="gelu", norm="post")
    encoder = Encoder(cfg).eval()
    calls = []
    monkeypatch.setattr(gemm_f32, "post_norm_layer", lambda *a: calls.append(1))
    with torch.inference_mode():
        encoder(torch.randint(0, 50, (2, 9)), None)
    assert not calls


@pytest.fixture
def pack_once(monkeypatch):
    monkeypatch.setattr(gemm_f32, "PACK_ONCE", True)


def test_packed_copy_is_made_once_and_gives_the_same_sums(pack_once):
    torch.manual_seed(3)
    x, w = torch.randn(77, 384), torch.randn(1152, 384)
    first = gemm_f32.packed_weight(w)
    assert first is not None and first.data_ptr() % 64 == 0
    assert gemm_f32.packed_weight(w) is first  # nothing changed: the same copy
    out = torch.empty(77, 1152)
    kernels._kernels.gemm_f32_avx2(x.data_ptr(), w.data_ptr(), out.data_ptr(), 77, 1152, 384,
                                   1152, 1)  # packed on the call
    assert torch.equal(gemm_f32.gemm(x, w), out)


def _linear_gemm_is_current(lin: torch.nn.Linear, x: torch.Tensor) -> bool:
    with torch.inference_mode():
        got = gemm_f32.gemm(x, lin.weight)
    return torch.allclose(got, x @ lin.weight.detach().t(), rtol=1e-5, atol=1e-5)


def test_packed_copy_follows_every_change_of_the_weight(pack_once):
    """An in-place write, load_state_dict, a storage replaced through .data (twice), a plain and
    a fused optimizer step (fused AdamW writes without bumping the version counter): each is
    seen (precision.current_tensor_copy's checks)."""
    torch.manual_seed(4)
    lin, x = torch.nn.Linear(24, 32, bias=False), torch.randn(9, 24)
    assert _linear_gemm_is_current(lin, x)
    with torch.no_grad():
        lin.weight.mul_(-2)
    assert _linear_gemm_is_current(lin, x)
    lin.load_state_dict({"weight": torch.randn(32, 24)})
    assert _linear_gemm_is_current(lin, x)
    for _ in range(20):  # twice over: glibc would hand the first storage's block back
        lin.weight.data = lin.weight.data * 0.5
        lin.weight.data = lin.weight.data * 0.5
        assert _linear_gemm_is_current(lin, x)
    for fused in (False, True):
        optimizer = torch.optim.AdamW(lin.parameters(), lr=0.5, fused=fused)
        lin(x).square().sum().backward()
        before = lin.weight.detach().clone()
        optimizer.step()
        assert not torch.equal(before, lin.weight.detach())
        assert _linear_gemm_is_current(lin, x)


def test_inference_tensors_are_packed_on_each_call(pack_once):
    with torch.inference_mode():
        w, x = torch.randn(16, 8), torch.randn(3, 8)
    assert gemm_f32.packed_weight(w) is None
    torch.testing.assert_close(gemm_f32.gemm(x, w), x @ w.t(), rtol=1e-5, atol=1e-5)
