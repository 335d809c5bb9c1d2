"""The NumPy reference (float64, written out) against seqenc.nn.Encoder on the same weights."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seqenc import reference
from seqenc.nn import Encoder
from seqenc.nn.config import (
    ACTIVATIONS,
    FEED_FORWARDS,
    NORMS,
    POSITION_ENCODINGS,
    RELATIVE_POSITIONS,
)


def random_encoder(cfg, seed: int) -> Encoder:
    """Random weights with every parameter (LayerNorm gamma/beta, biases) off its init."""
    torch.manual_seed(seed)
    encoder = Encoder(cfg)
    with torch.no_grad():
        for p in encoder.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return encoder.eval()


def numpy_state(encoder: Encoder) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy() for k, v in encoder.state_dict().items()}


def compare(encoder: Encoder, ids, keep=None, types=None) -> float:
    """Largest float32-vs-float64 difference, relative to the largest activation (at least 1):
    float32 rounding scales with the values, and res_post layers or a large eps let them grow
    past 1, where an absolute 1e-5 would hold the encoder to more digits than float32 has."""
    with torch.no_grad():
        got = encoder(ids, keep, token_type_ids=types).last_hidden_state.double().numpy()
    want = reference.encoder_forward(
        numpy_state(encoder), encoder.cfg, ids.numpy(),
        None if keep is None else keep.numpy(),
        token_type_ids=None if types is None else types.numpy(),
    )
    assert want.dtype == np.float64 and want.shape == got.shape
    if keep is not None:  # padding positions carry no meaning (the encoder returns zeros there)
        got, want = got[keep.numpy().astype(bool)], want[keep.numpy().astype(bool)]
    if not got.size:
        return 0.0
    return float(np.abs(got - want).max() / max(1.0, np.abs(want).max()))


@pytest.mark.parametrize(
    ("norm", "position_encoding", "activation"),
    list(itertools.product(NORMS, POSITION_ENCODINGS, ACTIVATIONS)),
)
def test_every_norm_position_activation(make_cfg, norm, position_encoding, activation):
    cfg = make_cfg(norm=norm, position_encoding=position_encoding, activation=activation)
    encoder = random_encoder(cfg, seed=1)
    torch.manual_seed(2)
    ids = torch.randint(0, 50, (2, 6))
    keep = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]]).bool()
    assert compare(encoder, ids, keep) < 1e-5


# the variants of issue 12, each on its own and in the combinations real families use
VARIANTS = {
    "rotary": dict(position_encoding="none", relative_positions="rotary", rotary_base=100.0),
    "rotary_interleaved": dict(relative_positions="rotary", rotary_interleaved=True),
    "buckets": dict(position_encoding="learned_offset", pad_token_id=1,
                    relative_positions="buckets", relative_buckets=8, relative_max_distance=6),
    "swiglu": dict(feed_forward="glu", activation="silu", bias=False),
    "geglu_gte": dict(feed_forward="glu", activation="gelu", ffn_in_bias=False,
                      relative_positions="rotary"),
    "no_norm_bias": dict(norm_bias=False, norm="pre", final_norm=True),
    "window": dict(attention_window=4, global_every=2, relative_positions="rotary",
                   rotary_base=1000.0, rotary_local_base=50.0),
    "modernbert": dict(norm="pre", first_attention_norm=False, final_norm=True,
                       norm_bias=False, bias=False, feed_forward="glu", activation="gelu",
                       position_encoding="none", type_vocab_size=0, relative_positions="rotary",
                       attention_window=4, global_every=3, n_layers=4),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("padded", [False, True])
def test_each_variant(make_cfg, variant, padded):
    cfg = make_cfg(**VARIANTS[variant])
    encoder = random_encoder(cfg, seed=4)
    torch.manual_seed(5)
    ids = torch.randint(2, 50, (3, 11))
    keep = None
    if padded:
        keep = torch.arange(11)[None, :] < torch.tensor([11, 7, 2])[:, None]
        ids = ids.masked_fill(~keep, cfg.pad_token_id)
    assert compare(encoder, ids, keep) < 1e-5


def test_each_variant_changes_the_output(make_cfg):
    # guards test_each_variant: a variant the reference ignored would still agree with itself
    ids = torch.randint(2, 50, (2, 11))
    base = reference.encoder_forward(numpy_state(random_encoder(make_cfg(), 4)), make_cfg(),
                                     ids.numpy())
    for name, variant in VARIANTS.items():
        cfg = make_cfg(**variant)
        got = reference.encoder_forward(numpy_state(random_encoder(cfg, 4)), cfg, ids.numpy())
        assert np.abs(got - base).max() > 1e-3, name


@st.composite
def config_and_inputs(draw):
    overrides = draw(st.fixed_dictionaries({
        "norm": st.sampled_from(NORMS),
        "position_encoding": st.sampled_from(POSITION_ENCODINGS),
        "activation": st.sampled_from(ACTIVATIONS),
        "final_norm": st.booleans(),
        "scale_embeddings": st.booleans(),
        "embedding_norm": st.booleans(),
        "bias": st.booleans(),
        "type_vocab_size": st.sampled_from([0, 1, 3]),
        "n_heads": st.sampled_from([1, 2, 4]),
        "n_layers": st.integers(1, 2),
        "layer_norm_eps": st.sampled_from([1e-12, 1e-5, 0.5]),  # 0.5: eps visibly matters
        "feed_forward": st.sampled_from(FEED_FORWARDS),
        "relative_positions": st.sampled_from(RELATIVE_POSITIONS),
        "rotary_interleaved": st.booleans(),
        "norm_bias": st.booleans(),
        "ffn_in_bias": st.sampled_from([None, False]),
        "attention_window": st.sampled_from([0, 2, 5]),
        "global_every": st.integers(1, 3),
    }))
    B, T = draw(st.integers(1, 3)), draw(st.integers(1, 7))
    ids = draw(st.lists(st.integers(0, 49), min_size=B * T, max_size=B * T))
    # arbitrary masks, not only trailing padding: holes, and rows with no real token at all
    keep = draw(st.none() | st.lists(st.booleans(), min_size=B * T, max_size=B * T))
    types = None
    if overrides["type_vocab_size"] and draw(st.booleans()):
        n = overrides["type_vocab_size"]
        types = draw(st.lists(st.integers(0, n - 1), min_size=B * T, max_size=B * T))

    def as_tensor(xs, dtype):
        return None if xs is None else torch.tensor(xs, dtype=dtype).view(B, T)

    return (overrides, as_tensor(ids, torch.long), as_tensor(keep, torch.bool),
            as_tensor(types, torch.long))


@settings(max_examples=40, deadline=None)
@given(config_and_inputs(), st.integers(0, 2**16))
def test_random_configs_and_masks(make_cfg, case, seed):
    overrides, ids, keep, types = case
    encoder = random_encoder(make_cfg(**overrides), seed)
    assert compare(encoder, ids, keep, types) < 1e-5


def test_reference_detects_a_wrong_weight(make_cfg):
    # guards the comparison itself: a small change to one weight must show up
    encoder = random_encoder(make_cfg(), seed=3)
    ids = torch.randint(0, 50, (1, 5))
    state = numpy_state(encoder)
    state["layers.1.feed_forward.down.weight"] = state["layers.1.feed_forward.down.weight"] * 1.01
    with torch.no_grad():
        got = encoder(ids).last_hidden_state.double().numpy()
    want = reference.encoder_forward(state, encoder.cfg, ids.numpy())
    assert np.abs(got - want).max() > 1e-4


def test_building_blocks_match_torch():
    x = np.random.default_rng(0).normal(size=(3, 8))
    t = torch.from_numpy(x)
    assert np.allclose(reference.gelu(x), torch.nn.functional.gelu(t).numpy(), atol=1e-12)
    assert np.allclose(
        reference.gelu_tanh(x),
        torch.nn.functional.gelu(t, approximate="tanh").numpy(), atol=1e-12,
    )
    gamma, beta = np.linspace(0.5, 1.5, 8), np.linspace(-1, 1, 8)
    want = torch.nn.functional.layer_norm(
        t, (8,), torch.from_numpy(gamma), torch.from_numpy(beta), eps=1e-12
    )
    assert np.allclose(reference.layer_norm(x, gamma, beta, 1e-12), want.numpy(), atol=1e-12)
    assert np.allclose(reference.softmax(x), t.softmax(-1).numpy(), atol=1e-12)
    assert np.allclose(reference.silu(x), torch.nn.functional.silu(t).numpy(), atol=1e-12)
    no_shift = torch.nn.functional.layer_norm(t, (8,), torch.from_numpy(gamma), eps=1e-12)
    assert np.allclose(reference.layer_norm(x, gamma, None, 1e-12), no_shift.numpy(), atol=1e-12)
