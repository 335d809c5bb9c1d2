"""Encoder: input checks, outputs, and the properties any correct encoder must have."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seqenc.nn import Encoder

NORMS = ["post", "pre", "res_post"]
POSITIONS = ["learned", "sinusoidal", "none"]
PROPERTY = settings(max_examples=20, deadline=None)


def build(make_cfg, seed: int = 0, **overrides) -> Encoder:
    """A tiny encoder in eval mode with every parameter moved off its initial value."""
    torch.manual_seed(seed)
    encoder = Encoder(make_cfg(**overrides))
    with torch.no_grad():
        for p in encoder.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return encoder.eval()


def keep_from_lengths(lengths: list[int], T: int) -> torch.Tensor:
    return torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]  # (B, T)


@st.composite
def padded_batch(draw, max_len: int = 8):
    """(ids, keep): 1-3 rows, each with >= 1 real token followed by padding of arbitrary ids."""
    T = draw(st.integers(1, max_len))
    lengths = draw(st.lists(st.integers(1, T), min_size=1, max_size=3))
    ids = draw(st.lists(st.integers(0, 49), min_size=len(lengths) * T, max_size=len(lengths) * T))
    return torch.tensor(ids).view(len(lengths), T), keep_from_lengths(lengths, T)


architecture = st.fixed_dictionaries({
    "norm": st.sampled_from(NORMS),
    "position_encoding": st.sampled_from(POSITIONS),
    "final_norm": st.booleans(),
})


# ----------------------------------------------------------------------------- outputs


def test_output_shapes(tiny_cfg):
    encoder = Encoder(tiny_cfg).eval()
    ids = torch.randint(0, 50, (2, 7))
    out = encoder(ids, output_hidden_states=True, output_attentions=True)
    assert out.last_hidden_state.shape == (2, 7, 32)  # (B, T, D)
    assert len(out.hidden_states) == 3 and all(h.shape == (2, 7, 32) for h in out.hidden_states)
    assert len(out.attentions) == 2 and all(a.shape == (2, 4, 7, 7) for a in out.attentions)
    plain = encoder(ids)
    assert plain.hidden_states is None and plain.attentions is None


@pytest.mark.parametrize("final_norm", [False, True])
@pytest.mark.parametrize("norm", NORMS)
def test_hidden_states_are_embeddings_then_each_layer(make_cfg, norm, final_norm):
    encoder = build(make_cfg, norm=norm, final_norm=final_norm)
    ids = torch.randint(0, 50, (2, 6))
    keep = keep_from_lengths([6, 3], 6)
    with torch.no_grad():
        out = encoder(ids, keep, output_hidden_states=True)
        x = encoder.embeddings(ids)
        assert torch.equal(out.hidden_states[0][keep], x[keep])
        for layer in encoder.layers:
            x = layer(x, keep)
    assert len(out.hidden_states) == encoder.cfg.n_layers + 1
    assert torch.equal(out.hidden_states[-1], out.last_hidden_state)
    if final_norm:
        x = encoder.final_norm(x)
    # real tokens only: at inference the encoder runs packed and returns zeros at padding
    assert (out.last_hidden_state - x)[keep].abs().max().item() < 1e-5
    assert torch.all(out.last_hidden_state[~keep] == 0)


def test_integer_mask_equals_boolean_mask(tiny_cfg):
    encoder = Encoder(tiny_cfg).eval()
    ids = torch.randint(0, 50, (2, 5))
    keep = keep_from_lengths([5, 2], 5)
    with torch.no_grad():
        a = encoder(ids, keep).last_hidden_state
        b = encoder(ids, keep.long()).last_hidden_state
    assert torch.equal(a, b)


def test_token_types_change_the_output(tiny_cfg):
    encoder = Encoder(tiny_cfg).eval()
    ids = torch.randint(0, 50, (1, 4))
    with torch.no_grad():
        zero = encoder(ids).last_hidden_state
        explicit_zero = encoder(ids, token_type_ids=torch.zeros_like(ids)).last_hidden_state
        ones = encoder(ids, token_type_ids=torch.ones_like(ids)).last_hidden_state
    assert torch.equal(zero, explicit_zero)
    assert not torch.allclose(zero, ones)


def test_dropout_active_in_train_mode_only(make_cfg):
    encoder = build(make_cfg, dropout=0.1, attention_dropout=0.1)
    ids = torch.randint(0, 50, (2, 6))
    encoder.train()
    assert not torch.allclose(encoder(ids).last_hidden_state, encoder(ids).last_hidden_state)
    encoder.eval()
    with torch.no_grad():
        assert torch.equal(encoder(ids).last_hidden_state, encoder(ids).last_hidden_state)


def test_init_weights_is_bert_style(tiny_cfg):
    encoder = Encoder(tiny_cfg).init_weights(std=0.02)
    weight = encoder.layers[0].feed_forward.up.weight
    assert abs(weight.std().item() - 0.02) < 0.005
    assert torch.all(encoder.layers[0].feed_forward.up.bias == 0)
    assert torch.all(encoder.embeddings.norm.weight == 1)


# ----------------------------------------------------------------------------- input checks


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        (torch.tensor([[1, 50]]), r"id 50, outside \[0, vocab_size=50\)"),
        (torch.tensor([[-1, 3]]), r"id -1, outside \[0, vocab_size=50\)"),
        (torch.zeros(1, 33, dtype=torch.long), r"33 positions but max_positions is 32"),
        (torch.tensor([1, 2, 3]), r"input_ids must have shape \(batch, seq_len\)"),
        (torch.tensor([[1.0, 2.0]]), r"input_ids must be integer"),
    ],
)
def test_bad_input_ids_raise(tiny_cfg, ids, message):
    with pytest.raises(ValueError, match=message):
        Encoder(tiny_cfg)(ids)


def test_position_none_has_no_length_limit(make_cfg):
    out = Encoder(make_cfg(position_encoding="none")).eval()(torch.zeros(1, 40, dtype=torch.long))
    assert out.last_hidden_state.shape == (1, 40, 32)


@pytest.mark.parametrize("shape", [(2, 4), (3, 5), (5,), (2, 5, 1)])
def test_mask_of_wrong_shape_raises(tiny_cfg, shape):
    with pytest.raises(ValueError, match=r"attention_mask must have shape \(batch, seq_len\)"):
        Encoder(tiny_cfg)(torch.zeros(2, 5, dtype=torch.long), torch.ones(shape))


@pytest.mark.parametrize(
    ("types", "message"),
    [
        (torch.tensor([[0, 2]]), r"token_type_ids contains 2, outside \[0, type_vocab_size=2\)"),
        (torch.tensor([[0, -1]]), r"token_type_ids contains -1, outside"),
        (torch.tensor([[0, 1, 0]]), r"token_type_ids must have shape \(1, 2\)"),
    ],
)
def test_bad_token_type_ids_raise(tiny_cfg, types, message):
    with pytest.raises(ValueError, match=message):
        Encoder(tiny_cfg)(torch.tensor([[3, 4]]), token_type_ids=types)


def test_token_types_without_table_raise(make_cfg):
    encoder = Encoder(make_cfg(type_vocab_size=0))
    with pytest.raises(ValueError, match="type_vocab_size is 0"):
        encoder(torch.tensor([[3, 4]]), token_type_ids=torch.tensor([[0, 0]]))


# ----------------------------------------------------------------------------- properties


@PROPERTY
@given(architecture, padded_batch(), st.integers(1, 5), st.data())
def test_padding_never_changes_real_tokens(make_cfg, arch, batch, extra, data):
    encoder = build(make_cfg, **arch)
    ids, keep = batch
    more = data.draw(st.lists(st.integers(0, 49), min_size=extra * len(ids),
                              max_size=extra * len(ids)))
    longer_ids = torch.cat([ids, torch.tensor(more).view(len(ids), extra)], dim=1)
    longer_keep = torch.cat([keep, torch.zeros(len(ids), extra, dtype=torch.bool)], dim=1)
    with torch.no_grad():
        short = encoder(ids, keep).last_hidden_state
        long = encoder(longer_ids, longer_keep).last_hidden_state[:, : ids.size(1)]
    assert (short - long)[keep].abs().max().item() < 1e-5


@PROPERTY
@given(st.sampled_from(NORMS), padded_batch(), st.randoms(use_true_random=False))
def test_no_positions_means_permutation_equivariant(make_cfg, norm, batch, rng):
    encoder = build(make_cfg, norm=norm, position_encoding="none")
    ids, keep = batch
    order = list(range(ids.size(1)))
    rng.shuffle(order)
    perm = torch.tensor(order)
    with torch.no_grad():
        out = encoder(ids, keep).last_hidden_state
        permuted = encoder(ids[:, perm], keep[:, perm]).last_hidden_state
    assert (out[:, perm] - permuted).abs().max().item() < 1e-5


def test_learned_positions_break_permutation_equivariance(make_cfg):
    # the property above must be a real test: with positions the same check fails
    encoder = build(make_cfg, position_encoding="learned")
    ids = torch.tensor([[4, 8, 15, 16]])
    perm = torch.tensor([3, 1, 0, 2])
    with torch.no_grad():
        out = encoder(ids).last_hidden_state
        permuted = encoder(ids[:, perm]).last_hidden_state
    assert (out[:, perm] - permuted).abs().max().item() > 1e-2


@PROPERTY
@given(architecture, padded_batch())
def test_rows_of_a_batch_are_independent(make_cfg, arch, batch):
    encoder = build(make_cfg, **arch)
    ids, keep = batch
    with torch.no_grad():
        together = encoder(ids, keep).last_hidden_state
        for i in range(len(ids)):
            alone = encoder(ids[i : i + 1], keep[i : i + 1]).last_hidden_state[0]
            assert (alone - together[i]).abs().max().item() < 1e-5
            n = int(keep[i].sum())  # the row trimmed to its real tokens, no mask at all
            trimmed = encoder(ids[i : i + 1, :n]).last_hidden_state[0]
            assert (trimmed - together[i, :n]).abs().max().item() < 1e-5


@PROPERTY
@given(architecture, padded_batch())
def test_attention_rows_sum_to_one_and_skip_padding(make_cfg, arch, batch):
    encoder = build(make_cfg, **arch)
    ids, keep = batch
    with torch.no_grad():
        out = encoder(ids, keep, output_attentions=True)
    assert len(out.attentions) == encoder.cfg.n_layers
    for weights in out.attentions:  # (B, H, T, T)
        assert torch.allclose(weights.sum(-1), torch.ones(()), atol=1e-5)
        assert torch.all(weights[~keep[:, None, None, :].expand_as(weights)] == 0)


@PROPERTY
@given(architecture, padded_batch())
def test_fused_attention_equals_explicit_attention(make_cfg, arch, batch):
    # output_attentions switches every layer from F.scaled_dot_product_attention to the formula
    encoder = build(make_cfg, **arch)
    ids, keep = batch
    with torch.no_grad():
        fused = encoder(ids, keep).last_hidden_state
        explicit = encoder(ids, keep, output_attentions=True).last_hidden_state
    assert (fused - explicit)[keep].abs().max().item() < 1e-5
