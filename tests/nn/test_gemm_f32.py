"""Our float32 GEMM (csrc/gemm_f32.c: AVX-512 FMAs) against float64, within the bound
nn/kernels.py states (GEMM_F32_ERROR); its fused epilogues against the separate kernels (bit for
bit); and the fused layers use it. Runs where the CPU has an AVX-512 kernel set; elsewhere
skipped, by name."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from seqenc.nn import Encoder, gemm_f32, kernels
from threads_support import at_thread_counts

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


@needs_avx512
@pytest.mark.parametrize("n,k,m", [(333, 384, 1152), (1200, 1536, 384), (45, 40, 80)])
def test_threads_split_the_same_sums(n, k, m):
    """Row tasks of 1 MiB of A (K = 1536: 170 rows) or fewer, split over threads: each output is
    the same k-ordered sum however the rows are shared out."""
    torch.manual_seed(n)
    x, w = torch.randn(n, k), torch.randn(m, k)
    want, *others = at_thread_counts(lambda: kernels.gemm_f32(x, w))
    assert all(torch.equal(got, want) for got in others)


@needs_avx512
@pytest.mark.parametrize("n", [1, 7, 47, 130])
@pytest.mark.parametrize("f", [256, 80])  # 80: a 48-column panel and a 32-column one
def test_epilogues_are_the_separate_kernels_bit_for_bit(monkeypatch, n, f):
    """gemm_f32.c's GELU (four vectors at a time over each register tile, short groups
    included) and LayerNorm epilogues give the bits of avx512.c's separate kernels."""
    monkeypatch.setattr(gemm_f32, "ENABLED", True)
    assert gemm_f32.can_gemm(64, f)
    torch.manual_seed(n + f)
    x, w_up, w_down = torch.randn(n, 64), torch.randn(f, 64) * 0.2, torch.randn(64, f) * 0.1
    b_up, b_down = torch.randn(f) * 3, torch.randn(64)
    residual, gamma, beta = torch.randn(n, 64), torch.randn(64), torch.randn(64)
    hidden = gemm_f32.gemm(x, w_up, gelu_bias=b_up)
    assert torch.equal(hidden, kernels.bias_gelu_(kernels.gemm_f32(x, w_up), b_up))
    y = gemm_f32.gemm(hidden, w_down, norm=(b_down, residual, gamma, beta, 1e-12))
    want = kernels.add_layer_norm_(kernels.gemm_f32(hidden, w_down), b_down, residual, gamma,
                                   beta, 1e-12)
    assert torch.equal(y, want)


@needs_avx512
@pytest.mark.parametrize("threads", [1, 2])
def test_fused_layers_run_on_it_and_equal_the_modules(make_cfg, monkeypatch, threads):
    """On the AVX-512 sets a float32 post-norm layer is nn/gemm_f32.py's post_norm_layer on
    gemm_f32.c, within float32 rounding of PyTorch's modules."""
    fused_layers_equal_the_modules(make_cfg, monkeypatch, threads)


def fused_layers_equal_the_modules(make_cfg, monkeypatch, threads: int) -> None:
    """Every post-norm layer of an encoder runs gemm_f32.post_norm_layer on the kernel set in
    force (the caller's), within float32 rounding of PyTorch's modules (our kernels off)."""
    monkeypatch.setattr(gemm_f32, "ENABLED", True)
    torch.manual_seed(0)
    cfg = make_cfg(d_model=64, n_heads=4, d_ff=256, activation="gelu", norm="post",
                   max_positions=64)
    encoder = Encoder(cfg).eval()
    for p in encoder.parameters():  # LayerNorm weights away from 1 and biases away from 0
        torch.nn.init.normal_(p, std=0.3)
    ids = torch.randint(0, 50, (4, 30))
    keep = torch.arange(30)[None, :] < torch.tensor([30, 17, 4, 1])[:, None]
    calls = []
    real = gemm_f32.post_norm_layer
    monkeypatch.setattr(gemm_f32, "post_norm_layer", lambda *a: calls.append(1) or real(*a))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        with torch.inference_mode():
            ours = encoder(ids, keep).last_hidden_state
            assert len(calls) == cfg.n_layers
            monkeypatch.setattr(kernels, "ENABLED", False)
            theirs = encoder(ids, keep).last_hidden_state
    finally:
        torch.set_num_threads(before)
    assert torch.allclose(ours[keep], theirs[keep], atol=2e-5)


@needs_avx512
def test_weights_packed_once_give_the_same_sums_and_follow_changes(monkeypatch):
    """SEQENC_F32_PACK_ONCE=1 on the AVX-512 sets: gemm_f32.c's own panels (not the avx2
    kernel's), kept while the weight is unchanged, made again after an in-place write."""
    monkeypatch.setattr(gemm_f32, "ENABLED", True)
    monkeypatch.setattr(gemm_f32, "PACK_ONCE", True)
    torch.manual_seed(5)
    x, w, b = torch.randn(77, 384), torch.randn(1152, 384), torch.randn(1152)
    first = gemm_f32.packed_weight(w)
    assert first is not None and first.data_ptr() % 64 == 0
    assert gemm_f32.packed_weight(w) is first
    assert torch.equal(gemm_f32.gemm(x, w), kernels.gemm_f32(x, w))  # packed on the call
    assert torch.equal(gemm_f32.gemm(x, w, gelu_bias=b),
                       kernels.bias_gelu_(kernels.gemm_f32(x, w), b))
    w.mul_(-2)
    assert torch.equal(gemm_f32.gemm(x, w), kernels.gemm_f32(x, w))


@pytest.mark.parametrize("isa", ["avx2", "avx512"])
def test_short_lived_threads_free_their_buffers(monkeypatch, isa):
    """Each thread's packed weight and row tiles (csrc/scratch.c) go when the thread exits:
    __thread pointers kept them, 2.4 MB per thread for MiniLM's up projection (143 MiB over 60
    threads). Counted in C: the threads holding scratch buffers now."""
    if isa == "avx2" and not (kernels.ENABLED and "avx2" in kernels.AVAILABLE
                              and kernels._has("gemm_f32_avx2")):
        pytest.skip(f"the avx2 kernel set does not run here ({kernels.describe()})")
    if isa == "avx512" and not kernels.can_gemm_f32(16, 16):
        pytest.skip(f"no AVX-512 kernel set here ({kernels.describe()})")
    if isa == "avx2":
        monkeypatch.setattr(kernels, "ISA", "avx2")
    monkeypatch.setattr(gemm_f32, "ENABLED", True)
    monkeypatch.setattr(gemm_f32, "PACK_ONCE", False)
    x, w = torch.randn(40, 384), torch.randn(1536, 384)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # the GEMM on the calling thread: one buffer set per thread
        want = gemm_f32.gemm(x, w)
        before = kernels._kernels.scratch_buffers()
        results = []
        for _ in range(8):
            t = threading.Thread(target=lambda: results.append(gemm_f32.gemm(x, w)))
            t.start()
            t.join()
    finally:
        torch.set_num_threads(threads)
    assert len(results) == 8 and all(torch.equal(r, want) for r in results)
    deadline = time.monotonic() + 10  # join returns before the thread's key destructors run
    while kernels._kernels.scratch_buffers() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert kernels._kernels.scratch_buffers() <= before
