"""The execution plan: made once per batch, it picks each layer kind's attention implementation,
and every implementation in the table computes the same attention."""

from __future__ import annotations

import pytest
import torch

from seqenc.nn import ATTENTION, Encoder, kernels
from seqenc.nn.plan import CHUNKED_UP_TO, additive_bias, make_plan


def lengths_mask(lengths, T):
    return torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]


@pytest.mark.parametrize("packed", [True, False])
@pytest.mark.parametrize("variant", [{}, {"relative_positions": "rotary"},
                                     {"attention_window": 4, "global_every": 2},
                                     {"relative_positions": "buckets"}])
def test_every_implementation_computes_the_same_attention(make_cfg, packed, variant):
    cfg = make_cfg(d_model=32, n_heads=2, **variant)
    torch.manual_seed(0)
    x = torch.randn(3, 9, 32)
    keep = lengths_mask([9, 6, 2] if packed else [9, 9, 9], 9)
    with torch.inference_mode():
        position_bias = None
        if cfg.relative_positions == "buckets":
            position_bias = Encoder(cfg).relative_bias(9)
        plan = make_plan(cfg, x, keep, training=False, position_bias=position_bias)
        rows = plan.packing.pack(x) if plan.packing is not None else x
        qkv = torch.randn(*rows.shape[:-1], 96)
        for kind in plan.attention:
            window = cfg.attention_window if kind == "local" else 0
            full = additive_bias(None if keep.all() else keep, window, position_bias, 9,
                                 x.dtype, x.device)  # what every implementation but ours takes
            results = {}
            for name, attend in ATTENTION.items():
                if name == "varlen":
                    if full is not None and (window or position_bias is not None):
                        continue  # hidden keys inside a sequence: the plan never picks ours
                    if not kernels.ENABLED:
                        continue
                    results[name] = attend(qkv, 2, None, plan)[0]
                else:
                    results[name] = attend(qkv, 2, full, plan)[0]
            assert len(results) >= 3
            first = results["eager"]
            for name, got in results.items():
                real = got if plan.packing is not None else got[keep]
                want = first if plan.packing is not None else first[keep]
                assert torch.allclose(real, want, atol=1e-5), (kind, name)


def test_plan_choices(make_cfg):
    cfg = make_cfg(d_model=32, n_heads=2)
    x, keep = torch.randn(3, 9, 32), lengths_mask([9, 6, 2], 9)
    with torch.inference_mode():
        fast = make_plan(cfg, x, keep, training=False)
        assert fast.packing is not None
        assert fast.attention["global"].implementation == ("varlen" if kernels.ENABLED
                                                          else "chunked")
        assert fast.fused_layers == kernels.ENABLED
        weights = make_plan(cfg, x, keep, training=False, need_weights=True)
        assert weights.attention["global"].implementation == "eager" and weights.packing is None
        long = torch.randn(1, CHUNKED_UP_TO + 1, 32)
        long_mask = lengths_mask([CHUNKED_UP_TO], CHUNKED_UP_TO + 1)
        assert make_plan(make_cfg(d_model=32, n_heads=2, max_positions=256,
                                  attention_window=8), long, long_mask,
                         training=False).attention["local"].implementation == "sdpa"
        bf16 = make_plan(cfg, x.bfloat16(), keep, training=False)
        bf16_kernels = kernels.supports_bf16()  # avx512bf16: bf16 keeps the fused path
        assert bf16.attention["global"].implementation == ("varlen" if bf16_kernels
                                                           else "chunked")
        assert bf16.fused_layers == bf16_kernels
    training = make_plan(cfg, x, keep, training=True)
    assert training.attention["global"].implementation == "sdpa" and training.packing is None
    assert training.dropout_p == cfg.attention_dropout


@pytest.mark.skipif(not kernels.ENABLED, reason="C kernels not built/enabled")
def test_rotary_runs_on_the_packed_kernel_and_windows_fall_back(make_cfg):
    x, keep = torch.randn(3, 9, 32), lengths_mask([9, 6, 2], 9)
    with torch.inference_mode():
        rotary = make_plan(make_cfg(d_model=32, n_heads=2, relative_positions="rotary"), x, keep,
                           training=False)
        assert rotary.attention["global"].implementation == "varlen"
        assert rotary.attention["global"].rotary[0].shape == (17, 16)  # (N, hd) packed rows
        assert not rotary.fused_layers  # the fused BERT layer has no rotary step
        windowed = make_plan(make_cfg(d_model=32, n_heads=2, attention_window=4,
                                      global_every=2), x, keep, training=False)
        assert windowed.attention["global"].implementation == "varlen"
        assert windowed.attention["local"].implementation == "chunked"
        assert windowed.attention["local"].bias.shape == (3, 1, 9, 9)


def test_window_and_padding_never_add_up_to_minus_infinity():
    keep = lengths_mask([2], 6)
    bias = additive_bias(keep, 2, torch.full((1, 1, 6, 6), -5.0), 6, torch.float32, "cpu")
    assert torch.isfinite(bias).all()
    weights = bias.softmax(-1)  # a query far from every real key: uniform, not NaN
    assert torch.isfinite(weights).all()
