"""The bf16 GEMMs' LayerNorm epilogue (csrc/gemm_bf16_amx.c and csrc/gemm_bf16.c: bias +
residual + LayerNorm on each task's whole rows, and the result's bf16 copy) against the GEMM
followed by kernels.add_layer_norm_ (bit for bit: the same function on the same sums) and
against float64 on the same bf16-rounded inputs; and the bf16 layer that runs it
(gemm_bf16.post_norm_layer) against main's path (the GEMMs, then add_layer_norm_), bit for bit.
Skipped, by name, where the CPU has no avx512bf16 kernel set (the amx cases without AMX)."""

from __future__ import annotations

import pytest
import torch

from seqenc.nn import gemm_bf16, kernels
from seqenc.nn.encoder import Encoder
from threads_support import at_thread_counts

from .test_fused_bf16 import bert_cfg, lengths_mask
from .test_gemm_bf16 import exact

needs_bf16 = pytest.mark.skipif(not kernels.supports_bf16() or not gemm_bf16.can_norm(),
                                reason="no avx512bf16 kernel set here (no bf16 GEMM)")
ISAS = [pytest.param("avx512bf16", marks=needs_bf16),
        pytest.param("amx", marks=[needs_bf16, pytest.mark.skipif(
            "amx" not in kernels.AVAILABLE, reason="no amx kernel set here")])]
# AMX tasks of 32 rows, AVX512-BF16 tasks of 64: short, exact, one over, tails, MiniLM-sized
ROWS = [1, 17, 32, 33, 64, 65, 301]


def operands(n: int, k: int, m: int, seed: int) -> tuple:
    """x (n, k), W (m, k), and the LayerNorm's bias, residual, gamma, beta: scales like a BERT
    layer's (an outlier channel in x, LayerNorm weights away from 1 and biases away from 0)."""
    g = torch.Generator().manual_seed(seed)
    x, w = torch.randn(n, k, generator=g) * 3, torch.randn(m, k, generator=g) * 0.05
    x[:, 0] = 300.0
    return (x, w, torch.randn(m, generator=g), torch.randn(n, m, generator=g) * 2,
            1 + 0.3 * torch.randn(m, generator=g), torch.randn(m, generator=g) * 0.3)


def fused(x, w, bias, residual, gamma, beta, isa: str, copy: bool):
    n, m = x.shape[0], w.shape[0]
    copy16 = torch.empty(n, m, dtype=torch.bfloat16) if copy else None
    out = gemm_bf16.gemm(x, gemm_bf16.pack_weight(w), m, isa=isa,
                         norm=(bias, residual, gamma, beta, 1e-12), copy_bf16=copy16)
    return out, copy16


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("n", ROWS)
@pytest.mark.parametrize("k,m", [(384, 384), (1536, 384), (64, 80)])  # out, down; odd tiles
def test_norm_epilogue_is_the_separate_kernels_bit_for_bit(isa, n, k, m):
    x, w, bias, residual, gamma, beta = operands(n, k, m, n + k + m)
    out, copy16 = fused(x, w, bias, residual, gamma, beta, isa, copy=True)
    assert gemm_bf16.last_kernel == ("amx" if isa == "amx" and k % 32 == 0 else "avx512bf16")
    want16 = torch.empty(n, m, dtype=torch.bfloat16)
    want = kernels.add_layer_norm_(gemm_bf16.gemm(x, gemm_bf16.pack_weight(w), m, isa=isa),
                                   bias, residual, gamma, beta, 1e-12, copy_bf16=want16)
    assert torch.equal(out.view(torch.int32), want.view(torch.int32))
    assert torch.equal(copy16.view(torch.int16), want16.view(torch.int16))
    assert torch.equal(copy16, out.to(torch.bfloat16))  # the copy: the result, rounded once
    no_copy, _ = fused(x, w, bias, residual, gamma, beta, isa, copy=False)
    assert torch.equal(no_copy.view(torch.int32), out.view(torch.int32))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("n,k", [(33, 384), (65, 1536)])
def test_norm_epilogue_within_its_bound_of_float64(isa, n, k):
    """LayerNorm(v) * gamma + beta, v = x W^T + bias + residual, against float64 on the bf16
    inputs. v's error: the GEMM's bound (GEMM_BF16_ERROR) and two float32 additions; to first
    order LayerNorm carries an error E of v into (2 + |z|) E / sigma of z (the mean moves by E,
    sigma by the centred error's RMS <= E), and its own float32 mean and variance add n 2^-24
    relative to those sums, then a few roundings of the output."""
    m = 384
    x, w, bias, residual, gamma, beta = operands(n, k, m, n * k)
    out, _ = fused(x, w, bias, residual, gamma, beta, isa, copy=False)
    product, size = exact(x, w)
    v = product + bias.double() + residual.double()
    mu, sigma = v.mean(1, keepdim=True), v.var(1, unbiased=False, keepdim=True).sqrt()
    z = (v - mu) / sigma
    want = z * gamma.double() + beta.double()
    e_v = (gemm_bf16.GEMM_BF16_ERROR * k * size + 2.0**-23 * (product.abs() + bias.double().abs()
                                                              + residual.double().abs()))
    e_stats = m * 2.0**-24 * (v.abs().mean(1, keepdim=True) + sigma)
    e_z = (2 + z.abs()) * (e_v.amax(1, keepdim=True) + e_stats) / sigma + 8 * 2.0**-24 * z.abs()
    bound = gamma.double().abs() * e_z + 4 * 2.0**-24 * want.abs() + 1e-30
    error = (out.double() - want).abs()
    assert torch.all(error <= bound), (error / bound).max()
    # a worst-case bound (~1000x the error seen); and the result is float32, not rounded to
    # bf16 on the way: far closer than one bf16 rounding of the output's scale
    assert error.max() < 2.0**-16 * want.abs().max()


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("n", [17, 301])  # 17 on 2-3 threads: gemm_bf16.c's separate LN pass
def test_norm_epilogue_on_two_threads_equals_one(isa, n):
    x, w, bias, residual, gamma, beta = operands(n, 384, 384, 5)
    results = at_thread_counts(lambda: fused(x, w, bias, residual, gamma, beta, isa, True))
    for out, copy16 in results[1:]:
        assert torch.equal(out, results[0][0]) and torch.equal(copy16, results[0][1])


@needs_bf16
def test_norm_epilogue_refuses_what_it_cannot_take():
    x, w, bias, residual, gamma, beta = operands(5, 64, 32, 0)
    packed = gemm_bf16.pack_weight(w)
    norm = (bias, residual, gamma, beta, 1e-12)
    with pytest.raises(ValueError, match="one epilogue"):
        gemm_bf16.gemm(x, packed, 32, gelu_bias=bias, norm=norm)
    with pytest.raises(ValueError, match="residual"):
        gemm_bf16.gemm(x, packed, 32, norm=(bias, residual[:4], gamma, beta, 1e-12))
    with pytest.raises(ValueError, match="copy_bf16"):
        gemm_bf16.gemm(x, packed, 32, norm=norm, copy_bf16=torch.empty(5, 32))
    with pytest.raises(ValueError, match="copy_bf16 goes with norm"):
        gemm_bf16.gemm(x, packed, 32, copy_bf16=torch.empty(5, 32, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="gamma"):
        gemm_bf16.gemm(x, packed, 32, norm=(bias, residual, gamma.double(), beta, 1e-12))
    for isa in kernels.AVAILABLE[2:]:  # no rows: nothing to do, on either kernel
        empty = gemm_bf16.gemm(x[:0], packed, 32, isa=isa, norm=(bias, residual[:0], gamma,
                                                                   beta, 1e-12))
        assert empty.shape == (0, 32)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("threads", [1, 2])
def test_bf16_layer_with_the_norm_epilogues_equals_the_separate_kernels(
        make_cfg, monkeypatch, spy, isa, threads):
    """encode's bf16 encoder (precision.bf16_encoder) runs gemm_bf16.post_norm_layer, and its
    output is bit for bit the path before it (each GEMM, then add_layer_norm_), which runs when
    the build has no norm epilogue (can_norm False)."""
    from seqenc.precision import bf16_encoder

    monkeypatch.setattr(kernels, "ISA", isa)
    torch.manual_seed(11)
    cfg = bert_cfg(make_cfg, d_model=128, d_ff=512, max_positions=64)
    encoder = Encoder(cfg).eval()
    for p in encoder.parameters():  # LayerNorm weights away from 1 and biases away from 0
        torch.nn.init.normal_(p, std=0.3)
    enc = bf16_encoder(encoder)
    ids, keep = torch.randint(5, cfg.vocab_size, (5, 40)), lengths_mask([40, 33, 17, 9, 1], 40)
    calls = spy(gemm_bf16, "post_norm_layer")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        with torch.inference_mode():
            ours = enc(ids, keep).last_hidden_state
            assert len(calls) == cfg.n_layers, "the bf16 layers did not run the norm epilogues"
            monkeypatch.setattr(gemm_bf16, "can_norm", lambda: False)
            separate = enc(ids, keep).last_hidden_state
            assert len(calls) == cfg.n_layers
    finally:
        torch.set_num_threads(before)
    assert torch.equal(ours.view(torch.int32), separate.view(torch.int32))
