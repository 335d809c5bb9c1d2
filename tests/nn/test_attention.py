"""Attention: the mask bias, the written-out formula and the multi-head module vs torch."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from seqenc.nn import MultiHeadSelfAttention, attention_bias, scaled_dot_product_attention


def test_attention_bias_shape_and_values():
    keep = torch.tensor([[1, 1, 0], [1, 0, 0]])
    bias = attention_bias(keep, torch.float32)
    assert bias.shape == (2, 1, 1, 3)  # (B, 1, 1, T): broadcasts over heads and queries
    assert bias[0, 0, 0].tolist()[:2] == [0.0, 0.0]
    assert bias[1, 0, 0, 1].item() == torch.finfo(torch.float32).min
    assert attention_bias(None, torch.float32) is None


def test_formula_equals_torch_sdpa():
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 2, 4, 5, 8).unbind(0)  # (B, H, T, hd) each
    keep = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]])
    bias = attention_bias(keep, q.dtype)
    ours, weights = scaled_dot_product_attention(q, k, v, bias)
    # torch's boolean mask: True = may attend, an independent way to express the same padding
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=keep.bool()[:, None, None, :])
    assert (ours - want).abs().max().item() < 1e-6
    assert weights.shape == (2, 4, 5, 5)


def test_equals_torch_multihead_attention(make_cfg):
    torch.manual_seed(0)
    cfg = make_cfg()
    peer = nn.MultiheadAttention(32, 4, batch_first=True).eval()
    with torch.no_grad():
        for p in peer.parameters():
            p.add_(0.1 * torch.randn_like(p))
    ours = MultiHeadSelfAttention(cfg).eval()
    ours.load_state_dict({
        "qkv.weight": peer.in_proj_weight, "qkv.bias": peer.in_proj_bias,
        "out.weight": peer.out_proj.weight, "out.bias": peer.out_proj.bias,
    })
    x = torch.randn(2, 6, 32)
    keep = torch.tensor([[1] * 6, [1, 1, 1, 0, 0, 0]]).bool()
    with torch.no_grad():
        want, want_w = peer(x, x, x, key_padding_mask=~keep, average_attn_weights=False)
        got, got_w = ours(x, keep, need_weights=True)
        fused, none = ours(x, keep, need_weights=False)
    assert none is None
    assert (got - want).abs().max().item() < 1e-5
    assert (got_w - want_w).abs().max().item() < 1e-6
    assert (fused - want).abs().max().item() < 1e-5


@st.composite
def lengths_and_width(draw):
    T = draw(st.integers(1, 9))
    lengths = draw(st.lists(st.integers(1, T), min_size=1, max_size=4))
    return T, lengths


@settings(max_examples=25, deadline=None)
@given(lengths_and_width(), st.integers(0, 2**16))
def test_rows_sum_to_one_and_ignore_padding(make_cfg, shape, seed):
    torch.manual_seed(seed)
    T, lengths = shape
    attn = MultiHeadSelfAttention(make_cfg()).eval()
    x = 3 * torch.randn(len(lengths), T, 32)  # large activations make saturation likelier
    keep = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]  # (B, T)
    with torch.no_grad():
        _, weights = attn(x, keep, need_weights=True)  # (B, H, T, T)
    assert torch.allclose(weights.sum(-1), torch.ones(()), atol=1e-5)
    pad_keys = ~keep[:, None, None, :].expand_as(weights)
    assert torch.all(weights[pad_keys] == 0)  # exactly zero, not merely small


def test_all_padding_row_stays_finite(make_cfg):
    attn = MultiHeadSelfAttention(make_cfg()).eval()
    x = torch.randn(2, 4, 32)
    keep = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0]]).bool()
    with torch.no_grad():
        out, weights = attn(x, keep, need_weights=True)
        fused, _ = attn(x, keep)
    assert torch.isfinite(out).all() and torch.isfinite(fused).all()
    assert torch.allclose(weights[1], torch.full((4, 4, 4), 0.25))  # uniform, not NaN
