"""Position schemes against the implementations of the families that use them (transformers)."""

from __future__ import annotations

import pytest
import torch

from seqenc.nn.positions import (
    apply_rotary,
    offset_position_ids,
    relative_buckets,
    rotary_tables,
    sinusoidal_positions,
)

transformers = pytest.importorskip("transformers")


def test_offset_positions_equal_roberta():
    from transformers.models.roberta.modeling_roberta import RobertaEmbeddings

    ids = torch.tensor([[0, 5, 6, 2, 1, 1], [0, 7, 2, 1, 1, 1], [0, 1, 9, 2, 1, 1]])  # 1 = <pad>
    want = RobertaEmbeddings.create_position_ids_from_input_ids(ids, padding_idx=1)
    got = offset_position_ids(ids, 1)
    assert torch.equal(got, want)
    assert got[0].tolist() == [2, 3, 4, 5, 1, 1]  # real tokens from pad + 1, padding at pad


def test_relative_buckets_equal_mpnet():
    from transformers.models.mpnet.modeling_mpnet import MPNetEncoder

    relative = torch.arange(-300, 301)[None, :] - torch.arange(0, 1)[:, None]  # every j - i
    for n_buckets, max_distance in [(32, 128), (8, 6), (16, 40)]:
        want = MPNetEncoder.relative_position_bucket(relative, n_buckets, max_distance)
        assert torch.equal(relative_buckets(relative, n_buckets, max_distance), want)
    assert relative_buckets(torch.tensor([-1, 0, 1]), 32, 128).tolist() == [1, 0, 17]


@pytest.mark.parametrize("family", ["nomic_bert", "gte", "modernbert"])
def test_rotary_equals_the_families(family):
    """Their rotary embedding (cos/sin from position ids) and apply_rotary_pos_emb."""
    import importlib

    module = importlib.import_module(f"transformers.models.{family}.modeling_{family}")
    B, T, H, hd, base = 2, 9, 3, 8, 500.0
    q, k, v = torch.randn(3, B, H, T, hd, dtype=torch.float64).unbind(0)
    positions = torch.arange(T)[None].expand(B, T)
    inv_freq = 1.0 / (base ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    freqs = positions[..., None].double() * inv_freq
    emb = torch.cat((freqs, freqs), dim=-1)  # their forward, in float64
    want_q, want_k = module.apply_rotary_pos_emb(q, k, emb.cos(), emb.sin())
    cos, sin = rotary_tables(torch.arange(T)[None], hd, base, False, torch.float64)  # (1, T, hd)
    qkv = torch.cat([t.transpose(1, 2).reshape(B, T, H * hd) for t in (q, k, v)], dim=-1)
    got = apply_rotary(qkv, cos, sin, H, interleaved=False).view(B, T, 3, H, hd)
    assert torch.allclose(got[:, :, 0].transpose(1, 2), want_q, atol=1e-6)
    assert torch.allclose(got[:, :, 1].transpose(1, 2), want_k, atol=1e-6)
    assert torch.equal(got[:, :, 2].transpose(1, 2), v)


def test_rotary_tables_equal_transformers_float32():
    from transformers import NomicBertConfig
    from transformers.models.nomic_bert.modeling_nomic_bert import NomicBertRotaryEmbedding

    cfg = NomicBertConfig(hidden_size=32, num_attention_heads=2,
                          rope_parameters={"rope_type": "default", "rope_theta": 1000.0})
    positions = torch.arange(300)[None]
    want_cos, want_sin = NomicBertRotaryEmbedding(cfg)(torch.zeros(1), positions)
    cos, sin = rotary_tables(positions, 16, 1000.0, False, torch.float32)
    assert torch.allclose(cos, want_cos, atol=1e-6) and torch.allclose(sin, want_sin, atol=1e-6)


def test_interleaved_rotary_turns_neighbouring_pairs():
    """GPT-J/RoFormer layout: pair (2i, 2i+1) turns by angle t * base^(-2i/hd)."""
    hd, T = 4, 5
    x = torch.randn(1, T, 3 * hd, dtype=torch.float64)
    cos, sin = rotary_tables(torch.arange(T)[None], hd, 100.0, True, torch.float64)
    got = apply_rotary(x, cos, sin, 1, interleaved=True)
    for t in range(T):
        for i in range(hd // 2):
            angle = torch.tensor(t * 100.0 ** (-2 * i / hd), dtype=torch.float64)
            a, b = x[0, t, 2 * i], x[0, t, 2 * i + 1]
            assert torch.isclose(got[0, t, 2 * i], a * angle.cos() - b * angle.sin())
            assert torch.isclose(got[0, t, 2 * i + 1], b * angle.cos() + a * angle.sin())


def test_rotary_keeps_dot_products_relative():
    """q_m . k_n depends only on m - n: shifting both positions changes nothing."""
    hd = 8
    q, k = torch.randn(2, hd, dtype=torch.float64)

    def score(m, n):
        qkv = torch.stack([torch.cat([q, k, torch.zeros(hd, dtype=torch.float64)])] * 2)
        cos, sin = rotary_tables(torch.tensor([m, n]), hd, 10000.0, False, torch.float64)
        turned = apply_rotary(qkv, cos, sin, 1, interleaved=False)
        return turned[0, :hd] @ turned[1, hd:2 * hd]

    assert torch.isclose(score(3, 1), score(13, 11))
    assert not torch.isclose(score(3, 1), score(1, 3))


def test_sinusoids_equal_the_formula():
    table = sinusoidal_positions(6, 8)
    pos, i = 5, 3
    assert torch.isclose(table[pos, 2 * i], torch.sin(torch.tensor(pos / 10000 ** (2 * i / 8))))
    assert torch.isclose(table[pos, 2 * i + 1], torch.cos(torch.tensor(pos / 10000 ** (2 * i / 8))))


def test_sinusoids_equal_distilbert():
    from transformers.models.distilbert.modeling_distilbert import _create_sinusoidal_embeddings

    want = _create_sinusoidal_embeddings(40, 16, torch.empty(40, 16))
    assert torch.allclose(sinusoidal_positions(40, 16), want, atol=1e-6)
