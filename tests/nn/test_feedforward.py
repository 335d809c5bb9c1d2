"""Feed-forward networks against the families' own MLP modules (transformers) and torch.nn."""

from __future__ import annotations

import pytest
import torch

from seqenc.nn import EncoderConfig, FeedForward, GatedFeedForward
from seqenc.nn.feedforward import feed_forward

transformers = pytest.importorskip("transformers")


def cfg(**overrides) -> EncoderConfig:
    return EncoderConfig(**{"vocab_size": 10, "d_model": 16, "n_heads": 2, "n_layers": 1,
                            "d_ff": 24, "dropout": 0.0, **overrides})


def randomised(module: torch.nn.Module) -> torch.nn.Module:
    torch.manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.5)
    return module.eval()


def test_swiglu_equals_nomic_bert_mlp():
    from transformers.models.nomic_bert.modeling_nomic_bert import NomicBertMLP

    peer = randomised(NomicBertMLP(transformers.NomicBertConfig(
        hidden_size=16, intermediate_size=24, num_attention_heads=2, hidden_act="silu")))
    ours = GatedFeedForward(cfg(feed_forward="glu", activation="silu", bias=False)).eval()
    ours.load_state_dict({"up.weight": torch.cat([peer.gate_proj.weight, peer.up_proj.weight]),
                          "down.weight": peer.down_proj.weight})
    x = torch.randn(3, 5, 16)
    with torch.no_grad():
        assert torch.allclose(ours(x), peer(x), atol=1e-6)


def test_geglu_with_output_bias_equals_gte_mlp():
    from transformers.models.gte.modeling_gte import GteMLP

    peer = randomised(GteMLP(transformers.GteConfig(
        hidden_size=16, intermediate_size=24, num_attention_heads=2, hidden_act="gelu")))
    ours = GatedFeedForward(cfg(feed_forward="glu", activation="gelu", ffn_in_bias=False)).eval()
    assert ours.up.bias is None and ours.down.bias is not None
    ours.load_state_dict({"up.weight": torch.cat([peer.gate_proj.weight, peer.up_proj.weight]),
                          "down.weight": peer.down_proj.weight, "down.bias": peer.down_proj.bias})
    x = torch.randn(3, 5, 16)
    with torch.no_grad():
        assert torch.allclose(ours(x), peer(x), atol=1e-6)


def test_geglu_equals_modernbert_mlp_fused_input():
    from transformers.models.modernbert.modeling_modernbert import ModernBertMLP

    peer = randomised(ModernBertMLP(transformers.ModernBertConfig(
        hidden_size=16, intermediate_size=24, num_attention_heads=2, vocab_size=10,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, cls_token_id=1, sep_token_id=2,
        hidden_activation="gelu")))
    ours = GatedFeedForward(cfg(feed_forward="glu", activation="gelu", bias=False)).eval()
    ours.load_state_dict({"up.weight": peer.Wi.weight, "down.weight": peer.Wo.weight})
    x = torch.randn(3, 5, 16)
    with torch.no_grad():
        assert torch.allclose(ours(x), peer(x), atol=1e-6)


@pytest.mark.parametrize(("activation", "torch_fn"), [
    ("relu", torch.nn.functional.relu), ("gelu", torch.nn.functional.gelu),
    ("silu", torch.nn.functional.silu),
])
def test_mlp_is_linear_activation_linear(activation, torch_fn):
    ours = randomised(FeedForward(cfg(activation=activation)))
    x = torch.randn(2, 3, 16)
    with torch.no_grad():
        want = torch.nn.functional.linear(torch_fn(ours.up(x)), ours.down.weight, ours.down.bias)
        assert torch.allclose(ours(x), want, atol=1e-6)


def test_config_picks_the_kind():
    assert isinstance(feed_forward(cfg()), FeedForward)
    gated = feed_forward(cfg(feed_forward="glu"))
    assert isinstance(gated, GatedFeedForward) and gated.up.out_features == 2 * 24
