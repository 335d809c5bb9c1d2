"""Our C kernels (seqenc/csrc/) against the exact operation in float64, within the error bounds
that seqenc/nn/kernels.py states; which kernels ran is in the pytest header (tests/conftest.py)."""

from __future__ import annotations

import math
import platform
import sys

import pytest
import torch
import torch.nn.functional as F

from seqenc.nn import Encoder, kernels
from seqenc.nn import attend as attend_module

needs_kernels = pytest.mark.skipif(not kernels.ENABLED, reason="C kernels not built/enabled")


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64")
                    or sys.platform == "win32", reason="the kernels are built for x86-64 only")
def test_kernels_are_built_and_used_here():
    # CI's machine is x86-64 with AVX2: a silent fallback to PyTorch would hide a build break
    assert kernels._kernels is not None, "seqenc._kernels did not build (see setup.py)"
    assert kernels._kernels.supported() == kernels.ENABLED or not kernels.ENABLED


def reference(qkv: torch.Tensor, lengths: list[int], n_heads: int) -> torch.Tensor:
    """Attention sequence by sequence, in float64."""
    out, start = [], 0
    for L in lengths:
        q, k, v = qkv[start:start + L].double().view(L, 3, n_heads, -1).permute(1, 2, 0, 3)
        out.append(F.scaled_dot_product_attention(q, k, v).transpose(0, 1).reshape(L, -1))
        start += L  # q, k, v: (H, L, hd)
    return torch.cat(out)


def attention_bound(qkv: torch.Tensor, lengths: list[int], n_heads: int) -> float:
    """kernels.ATTENTION_ERROR for this problem: max|v| (a + b S), S the largest unsigned score."""
    D = qkv.shape[1] // 3
    head_dim = D // n_heads
    largest, start = 0.0, 0
    for L in lengths:
        q, k = qkv[start:start + L, :2 * D].abs().double().view(L, 2, n_heads, head_dim).unbind(1)
        largest = max(largest, torch.einsum("ihd,jhd->hij", q, k).max().item())
        start += L
    a, b = kernels.ATTENTION_ERROR
    return qkv[:, 2 * D:].abs().max().item() * (a + b * largest / math.sqrt(head_dim))


def assert_within(ours: torch.Tensor, exact: torch.Tensor, bound) -> None:
    err = (ours.double() - exact).abs()
    bound = torch.as_tensor(bound, dtype=torch.float64).expand_as(err)
    worst = (err - bound).argmax()
    assert (err <= bound).all(), (
        f"{kernels.describe()}: error {err.flatten()[worst].item():.3g} exceeds its bound "
        f"{bound.flatten()[worst].item():.3g} at flat index {worst.item()}")


@needs_kernels
@pytest.mark.parametrize("head_dim", [8, 24, 32, 40, 64])
@pytest.mark.parametrize("lengths", [[1], [7, 8, 9], [33, 16, 1, 17], [130, 64, 5]])
def test_varlen_attention_equals_sdpa_per_sequence(head_dim, lengths):
    torch.manual_seed(0)
    n_heads = 3
    qkv = torch.randn(sum(lengths), 3 * n_heads * head_dim) * 2
    lengths_t = torch.tensor(lengths)
    ours = kernels.varlen_attention(qkv, lengths_t.cumsum(0) - lengths_t, lengths_t, n_heads)
    assert_within(ours, reference(qkv, lengths, n_heads), attention_bound(qkv, lengths, n_heads))


@needs_kernels
def test_large_scores_stay_finite():
    torch.manual_seed(0)
    qkv = torch.randn(20, 3 * 2 * 16) * 40  # scores in the thousands: exp needs the max shift
    lengths = torch.tensor([12, 8])
    ours = kernels.varlen_attention(qkv, lengths.cumsum(0) - lengths, lengths, 2)
    assert torch.isfinite(ours).all()
    assert_within(ours, reference(qkv, [12, 8], 2), attention_bound(qkv, [12, 8], 2))


@needs_kernels
def test_spans_outside_the_rows_are_refused():
    qkv = torch.randn(10, 3 * 2 * 8)
    with pytest.raises(ValueError, match="outside the 10 packed rows"):
        kernels.varlen_attention(qkv, torch.tensor([0, 6]), torch.tensor([6, 5]), 2)


def test_kernels_skip_what_they_do_not_cover():
    qkv = torch.randn(4, 3 * 2 * 12)  # head size 12: not a multiple of 8
    assert not kernels.can_attend(qkv, 2)
    assert not kernels.can_attend(torch.randn(4, 48, dtype=torch.float64), 2)
    assert not kernels.can_attend(torch.randn(4, 48, requires_grad=True), 2)


@needs_kernels
@pytest.mark.parametrize("norm", ["post", "pre", "res_post"])  # fused layer / attention only
@pytest.mark.parametrize("padded", [True, False])
def test_encoder_with_kernels_equals_encoder_without(make_cfg, monkeypatch, padded, norm):
    torch.manual_seed(0)
    encoder = Encoder(make_cfg(d_model=32, n_heads=2, max_positions=64, norm=norm)).eval()
    ids = torch.randint(0, 50, (3, 20))
    keep = torch.arange(20)[None, :] < torch.tensor([20, 11, 3] if padded else [20] * 3)[:, None]
    used = []
    real = kernels.varlen_attention
    monkeypatch.setattr(kernels, "varlen_attention", lambda *a: used.append(1) or real(*a))
    with torch.inference_mode():
        ours = encoder(ids, keep).last_hidden_state
        assert used, "the kernel did not run"
        monkeypatch.setattr(kernels, "ENABLED", False)
        theirs = encoder(ids, keep).last_hidden_state
    assert torch.allclose(ours[keep], theirs[keep], atol=1e-5)
    assert torch.all(ours[~keep] == 0)
    assert attend_module.kernels is kernels


def gelu64(v: torch.Tensor) -> torch.Tensor:
    """x Phi(x) in float64, by erfc so that the left tail keeps its digits."""
    v = v.double()
    return 0.5 * v * torch.special.erfc(-v / math.sqrt(2.0))


@needs_kernels
def test_bias_gelu_within_its_relative_bound_everywhere():
    # every float32 step over [-14, 14] (the left tail, where gelu ~ -1e-4 at -4 and an erf with
    # only an absolute bound is 0.3% off, included), then random rows with a bias
    x = torch.linspace(-14, 14, 8 * 40_000).view(-1, 64).contiguous()
    v = x.clone()
    assert kernels.bias_gelu_(v, torch.zeros(64)) is v  # in place
    exact = gelu64(x)
    assert_within(v, exact, kernels.GELU_RELATIVE_ERROR * exact.abs() + 1e-36)

    torch.manual_seed(0)
    x, bias = torch.randn(37, 64) * 4, torch.randn(64)
    exact = gelu64(x + bias)  # the kernel adds the bias in float32, as this does
    assert_within(kernels.bias_gelu_(x, bias), exact, kernels.GELU_RELATIVE_ERROR * exact.abs()
                  + 1e-36)


@needs_kernels
@pytest.mark.parametrize("width, scale, shift", [(48, 3, 5), (384, 1, 0), (768, 10, 100),
                                                 (1024, 0.01, 0)])
def test_add_layer_norm_within_its_bound(width, scale, shift):
    torch.manual_seed(0)
    norm = torch.nn.LayerNorm(width, eps=1e-12)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    y, bias = torch.randn(19, width) * scale, torch.randn(width) * scale
    residual = torch.randn(19, width) * scale + shift
    total = y.double() + bias.double() + residual.double()
    gamma, beta = norm.weight.detach().double(), norm.bias.detach().double()
    exact = F.layer_norm(total, (width,), gamma, beta, 1e-12)
    xhat = F.layer_norm(total, (width,), eps=1e-12)
    bound = kernels.LAYER_NORM_ERROR * (gamma.abs() * (1 + xhat.abs()) + beta.abs())
    with torch.no_grad():
        assert_within(kernels.add_layer_norm_(y, bias, residual, norm.weight, norm.bias,
                                                norm.eps), exact, bound)


@needs_kernels
def test_fused_kernels_refuse_other_layouts():
    with pytest.raises(ValueError, match="multiple of 8"):
        kernels.bias_gelu_(torch.randn(3, 12), torch.randn(12))
    with pytest.raises(ValueError, match="contiguous float32"):
        kernels.bias_gelu_(torch.randn(16, 3).t(), torch.randn(3))
    with pytest.raises(ValueError, match="vector of 16"):
        kernels.bias_gelu_(torch.randn(3, 16), torch.randn(8))


@needs_kernels
@pytest.mark.parametrize("padded", [True, False])
def test_fused_layers_equal_the_modules(make_cfg, monkeypatch, padded):
    torch.manual_seed(0)
    cfg = make_cfg(d_model=32, n_heads=2, d_ff=64, activation="gelu", norm="post",
                   max_positions=64)
    encoder = Encoder(cfg).eval()
    for p in encoder.parameters():  # LayerNorm weights away from 1 and biases away from 0
        torch.nn.init.normal_(p, std=0.5)
    ids = torch.randint(0, 50, (3, 20))
    keep = torch.arange(20)[None, :] < torch.tensor([20, 11, 3] if padded else [20] * 3)[:, None]
    fused = []
    real = kernels.fused_post_norm_layer
    monkeypatch.setattr(kernels, "fused_post_norm_layer", lambda *a: fused.append(1) or real(*a))
    with torch.inference_mode():
        ours = encoder(ids, keep).last_hidden_state
        assert len(fused) == cfg.n_layers
        monkeypatch.setattr(kernels, "ENABLED", False)
        theirs = encoder(ids, keep).last_hidden_state
    assert torch.allclose(ours[keep], theirs[keep], atol=2e-5)
    assert torch.all(ours[~keep] == 0)


@pytest.mark.parametrize("change", [{"norm": "pre"}, {"norm": "res_post"},
                                    {"activation": "relu"}, {"bias": False},
                                    {"ffn_in_bias": False}, {"norm_bias": False},
                                    {"feed_forward": "glu"}, {"relative_positions": "rotary"},
                                    {"relative_positions": "buckets"},
                                    {"attention_window": 4, "global_every": 2}])
def test_only_bert_style_layers_are_fused(make_cfg, change):
    cfg = make_cfg(d_model=32, n_heads=2, d_ff=64, **change)
    encoder = Encoder(cfg).eval()
    with torch.inference_mode():
        plan = encoder.plan(torch.randn(2, 5, 32), None, need_weights=False)
        assert not plan.fused_layers
        if kernels.ENABLED:  # the same layer shape BERT-style is fused: the change decides
            assert Encoder(make_cfg(d_model=32, n_heads=2, d_ff=64)).eval().plan(
                torch.randn(2, 5, 32), None, need_weights=False).fused_layers


@needs_kernels
def test_varlen_attention_adds_the_projection_bias():
    torch.manual_seed(0)
    n_heads, head_dim, lengths = 2, 16, [9, 4]
    qkv, bias = torch.randn(13, 3 * n_heads * head_dim), torch.randn(3 * n_heads * head_dim) * 3
    lengths_t = torch.tensor(lengths)
    ours = kernels.varlen_attention(qkv, lengths_t.cumsum(0) - lengths_t, lengths_t, n_heads,
                                    bias)
    assert_within(ours, reference(qkv + bias, lengths, n_heads),
                  attention_bound(qkv + bias, lengths, n_heads))
