"""Embeddings: token + position + token type, the sinusoid table, scaling."""

from __future__ import annotations

import math

import pytest
import torch

from seqenc.nn import Embeddings, sinusoidal_positions


def test_sinusoid_follows_the_paper_formula():
    table = sinusoidal_positions(10, 6)  # (P, D)
    assert table.shape == (10, 6)
    for pos in (0, 3, 9):
        for i in (0, 2, 4):
            angle = pos / 10000 ** (i / 6)
            assert table[pos, i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert table[pos, i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


def test_sinusoid_odd_width():
    table = sinusoidal_positions(4, 5)
    assert table.shape == (4, 5)
    assert table[2, 4].item() == pytest.approx(math.sin(2 / 10000 ** (4 / 5)), abs=1e-6)


def test_sum_of_parts_without_norm(make_cfg):
    torch.manual_seed(0)
    cfg = make_cfg(embedding_norm=False, scale_embeddings=True)
    emb = Embeddings(cfg).eval()
    ids = torch.tensor([[3, 1, 4, 1]])
    types = torch.tensor([[0, 0, 1, 1]])
    want = (
        emb.token.weight[ids] * math.sqrt(32)
        + emb.position.weight[:4]
        + emb.token_type.weight[types]
    )
    assert torch.allclose(emb(ids, types), want, atol=1e-6)
    # no token types given means segment 0 everywhere
    assert torch.allclose(emb(ids), emb(ids, torch.zeros_like(ids)), atol=1e-6)


@pytest.mark.parametrize("position_encoding", ["learned", "sinusoidal", "none"])
def test_shapes_and_norm(make_cfg, position_encoding):
    emb = Embeddings(make_cfg(position_encoding=position_encoding)).eval()
    out = emb(torch.randint(0, 50, (2, 7)))
    assert out.shape == (2, 7, 32)  # (B, T, D)
    # embedding LayerNorm with its initial gamma=1, beta=0: zero mean, unit variance per token
    assert out.mean(-1).abs().max().item() < 1e-5
    assert (out.var(-1, unbiased=False) - 1).abs().max().item() < 1e-3


def test_position_none_ignores_order(make_cfg):
    emb = Embeddings(make_cfg(position_encoding="none")).eval()
    ids = torch.tensor([[5, 6, 7]])
    assert torch.equal(emb(ids)[0, 0], emb(ids.flip(1))[0, 2])
    learned = Embeddings(make_cfg()).eval()
    assert not torch.allclose(learned(ids)[0, 0], learned(ids.flip(1))[0, 2])


def test_sinusoid_not_in_state_dict(make_cfg):
    # the table is recomputed, so checkpoints need not (and must not) carry it
    emb = Embeddings(make_cfg(position_encoding="sinusoidal"))
    assert not any("sinusoid" in k for k in emb.state_dict())
