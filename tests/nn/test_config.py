"""EncoderConfig: bad values fail early with a ValueError that names the field."""

from __future__ import annotations

import pytest

from seqenc.nn import EncoderConfig
from seqenc.nn.config import ACTIVATIONS, NORMS, POSITION_ENCODINGS


def test_defaults_are_minilm_sized():
    cfg = EncoderConfig()
    assert (cfg.d_model, cfg.n_heads, cfg.n_layers, cfg.d_ff) == (384, 12, 6, 1536)
    assert cfg.head_dim == 32


def test_dict_round_trip(make_cfg):
    cfg = make_cfg(norm="pre", final_norm=True, activation="relu")
    data = cfg.to_dict()
    assert data["norm"] == "pre" and data["d_model"] == 32
    assert EncoderConfig.from_dict(data) == cfg


def test_from_dict_rejects_unknown_key_by_name(make_cfg):
    data = make_cfg().to_dict() | {"hidden_size": 32, "n_head": 4}
    with pytest.raises(ValueError, match="unknown EncoderConfig field.*hidden_size, n_head"):
        EncoderConfig.from_dict(data)


def test_d_model_must_divide_by_heads(make_cfg):
    with pytest.raises(ValueError, match=r"d_model \(30\).*divisible.*n_heads \(4\)"):
        make_cfg(d_model=30)


@pytest.mark.parametrize(
    "field", ["vocab_size", "d_model", "n_heads", "n_layers", "d_ff", "max_positions"]
)
@pytest.mark.parametrize("value", [0, -4, 2.5, True, "8"])
def test_sizes_must_be_positive_integers(make_cfg, field, value):
    with pytest.raises(ValueError, match=rf"EncoderConfig\.{field} must be a positive integer"):
        make_cfg(**{field: value})


@pytest.mark.parametrize(
    ("field", "choices"),
    [("norm", NORMS), ("activation", ACTIVATIONS), ("position_encoding", POSITION_ENCODINGS)],
)
def test_unknown_choice_names_field_and_options(make_cfg, field, choices):
    with pytest.raises(ValueError, match=rf"EncoderConfig\.{field} must be one of .*'bogus'"):
        make_cfg(**{field: "bogus"})
    for choice in choices:
        assert getattr(make_cfg(**{field: choice}), field) == choice


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"dropout": -0.1}, "dropout"),
        ({"dropout": 1.0}, "dropout"),
        ({"attention_dropout": 1.5}, "attention_dropout"),
        ({"type_vocab_size": -1}, "type_vocab_size"),
        ({"layer_norm_eps": 0.0}, "layer_norm_eps"),
        ({"pad_token_id": 50}, "pad_token_id"),
        ({"pad_token_id": -1}, "pad_token_id"),
    ],
)
def test_other_bad_values_name_the_field(make_cfg, overrides, field):
    with pytest.raises(ValueError, match=rf"EncoderConfig\.{field}"):
        make_cfg(**overrides)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"relative_positions": "alibi"}, "relative_positions"),
        ({"feed_forward": "moe"}, "feed_forward"),
        ({"attention_window": -2}, "attention_window"),
        ({"global_every": 0}, "global_every"),
        ({"rotary_base": 1}, "rotary_base"),
        ({"rotary_local_base": "10k"}, "rotary_local_base"),
        ({"relative_buckets": 2, "relative_positions": "buckets"}, "relative_buckets"),
        ({"first_attention_norm": False}, "first_attention_norm"),
        ({"position_encoding": "learned_offset", "pad_token_id": 31}, "learned_offset"),
    ],
)
def test_variant_fields_are_checked_by_name(make_cfg, overrides, field):
    with pytest.raises(ValueError, match=field):
        make_cfg(**overrides)


def test_rotary_needs_an_even_head_size(make_cfg):
    with pytest.raises(ValueError, match="even head size"):
        make_cfg(d_model=36, n_heads=4, relative_positions="rotary")


def test_layer_kinds_follow_the_window_pattern(make_cfg):
    assert all(make_cfg().is_global(i) for i in range(6))
    cfg = make_cfg(attention_window=128, global_every=3)  # ModernBERT
    assert [cfg.is_global(i) for i in range(6)] == [True, False, False, True, False, False]


def test_offset_positions_leave_fewer_tokens(make_cfg):
    assert make_cfg(position_encoding="learned_offset", pad_token_id=1).longest_sequence == 30
    assert make_cfg().longest_sequence == 32
