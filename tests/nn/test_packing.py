"""Packed inference (layers on real tokens only) gives the padded computation's numbers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from seqenc.nn import Encoder, attend
from seqenc.nn import plan as plan_module
from seqenc.nn.attend import chunked_attention, per_head
from seqenc.nn.attention import attention_bias
from seqenc.nn.packing import Packing, worth_packing


def lengths_mask(lengths: list[int], T: int) -> torch.Tensor:
    return torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]  # (B, T)


def test_pack_then_unpack_keeps_real_tokens_and_zeroes_padding():
    keep = lengths_mask([3, 1, 4], 4)
    x = torch.randn(3, 4, 5)
    packing = Packing.from_mask(keep)
    packed = packing.pack(x)
    assert packed.shape == (8, 5)
    assert torch.equal(packed, x[keep])  # row-major order of the real tokens
    back = packing.unpack(packed)
    assert torch.equal(back[keep], x[keep])
    assert torch.all(back[~keep] == 0)


def test_packing_only_when_there_is_padding():
    assert not worth_packing(None)
    assert not worth_packing(torch.ones(2, 3, dtype=torch.bool))
    assert worth_packing(lengths_mask([3, 2], 3))


@pytest.mark.parametrize("norm", ["post", "pre", "res_post"])
@pytest.mark.parametrize("T", [6, 40, plan_module.CHUNKED_UP_TO + 4])  # chunked and SDPA
def test_packed_inference_equals_padded_inference(make_cfg, monkeypatch, norm, T):
    torch.manual_seed(0)
    encoder = Encoder(make_cfg(norm=norm, max_positions=256, final_norm=True)).eval()
    ids = torch.randint(0, 50, (3, T))
    keep = lengths_mask([T, T - 3, 2], T)
    with torch.no_grad():
        packed = encoder(ids, keep, output_hidden_states=True)
        monkeypatch.setattr(plan_module, "worth_packing", lambda keep: False)
        padded = encoder(ids, keep, output_hidden_states=True)
    assert torch.allclose(packed.last_hidden_state[keep], padded.last_hidden_state[keep],
                          atol=1e-5)
    assert torch.all(packed.last_hidden_state[~keep] == 0)
    assert len(packed.hidden_states) == len(padded.hidden_states)
    for ours, theirs in zip(packed.hidden_states, padded.hidden_states, strict=True):
        assert ours.shape == theirs.shape
        assert torch.allclose(ours[keep], theirs[keep], atol=1e-5)


def test_training_runs_padded(make_cfg, monkeypatch):
    calls = []
    monkeypatch.setattr(plan_module, "worth_packing", lambda keep: calls.append(1) or True)
    encoder = Encoder(make_cfg()).train()
    encoder(torch.randint(0, 50, (2, 5)), lengths_mask([5, 2], 5))
    assert calls == []  # dropout and autograd see the plain padded batch


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("chunk_scores", [1, 100, attend.CHUNK_SCORES])  # 1 head .. all
def test_chunked_attention_equals_sdpa(monkeypatch, masked, chunk_scores):
    monkeypatch.setattr(attend, "CHUNK_SCORES", chunk_scores)
    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 4, 7, 8) for _ in range(3))
    bias = attention_bias(lengths_mask([7, 4, 1], 7), q.dtype) if masked else None
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    ours = chunked_attention(*(t.flatten(0, 1) for t in (q, k, v)), per_head(bias, 3, 4))
    assert torch.allclose(ours.view(3, 4, 7, 8), expected, atol=1e-6)


def test_split_and_merge_heads_match_the_padded_layout():
    B, T, H, hd = 3, 5, 2, 4
    keep = lengths_mask([5, 2, 4], T)
    packing = Packing.from_mask(keep)
    qkv = torch.randn(B, T, 3 * H * hd)
    q, k, v = packing.split_heads(packing.pack(qkv), H)
    for ours, part in zip((q, k, v), qkv.split(H * hd, dim=-1), strict=True):
        expected = part.view(B, T, H, hd).transpose(1, 2)  # (B, H, T, hd)
        assert ours.shape == (B * H, T, hd) and ours.is_contiguous()
        assert torch.equal(ours.view(B, H, T, hd).transpose(1, 2)[keep],
                           expected.transpose(1, 2)[keep])
    y = torch.randn(B, H, T, hd)
    merged = packing.merge_heads(y.reshape(B * H, T, hd), H)
    assert torch.equal(merged, y.transpose(1, 2).reshape(B, T, H * hd)[keep])


def test_an_all_padding_batch_is_not_packed():
    assert not worth_packing(torch.zeros(2, 3, dtype=torch.bool))
