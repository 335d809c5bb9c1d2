"""The components, composed as each family composes them, against that family's transformers model.

Each test builds a small random transformers model, copies its weights into an Encoder whose
config picks the family's components (the name maps here are the test's own; the loader's live
in seqenc/checkpoint.py), and compares hidden states on a padded batch of mixed lengths, through
the packed inference path and the plain padded one.
"""

from __future__ import annotations

import pytest
import torch

from seqenc.nn import Encoder, EncoderConfig
from seqenc.nn import plan as plan_module

transformers = pytest.importorskip("transformers")

SMALL = dict(vocab_size=60, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
             intermediate_size=48, max_position_embeddings=64)


def randomise(model: torch.nn.Module) -> torch.nn.Module:
    """Every weight off its init (LayerNorm gains away from 1, biases away from 0)."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.2 + (1.0 if p.dim() == 1 and (p == 1).all() else 0))
    return model.eval()


def batch(pad: int, lengths: tuple[int, ...] = (13, 9, 3)) -> tuple[torch.Tensor, torch.Tensor]:
    """Ids (B, T) padded with ``pad`` and the keep-mask of sequences of these lengths."""
    torch.manual_seed(2)
    T = max(lengths)
    ids = torch.randint(3, SMALL["vocab_size"], (len(lengths), T))
    keep = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]
    return ids.masked_fill(~keep, pad), keep


def cat(sd: dict, *names: str) -> torch.Tensor:
    return torch.cat([sd[n] for n in names])


def qkv(sd: dict, src: str, dst: str, q: str, k: str, v: str, ours: dict) -> None:
    for p in ("weight", "bias"):
        if f"{src}.{q}.{p}" in sd:
            ours[f"{dst}.qkv.{p}"] = cat(sd, *(f"{src}.{n}.{p}" for n in (q, k, v)))


def copy(sd: dict, ours: dict, pairs: dict[str, str]) -> None:
    for dst, src in pairs.items():
        for p in ("weight", "bias"):
            if f"{src}.{p}" in sd:
                ours[f"{dst}.{p}"] = sd[f"{src}.{p}"]


def compare(encoder: Encoder, peer, ids, keep, monkeypatch, atol=1e-5) -> None:
    with torch.inference_mode():
        want = peer(input_ids=ids, attention_mask=keep.long()).last_hidden_state
        packed = encoder(ids, keep).last_hidden_state
        monkeypatch.setattr(plan_module, "worth_packing", lambda keep: False)
        padded = encoder(ids, keep).last_hidden_state
        whole = encoder(ids[:1], keep[:1]).last_hidden_state  # a batch without padding
    for got in (packed, padded):
        assert (got[keep] - want[keep]).abs().max().item() < atol
    assert (whole[0] - want[0]).abs().max().item() < atol


def load(cfg: EncoderConfig, ours: dict) -> Encoder:
    encoder = Encoder(cfg).eval()
    encoder.load_state_dict(ours, strict=True)  # every tensor mapped, none left over
    return encoder


def glu_layers(sd: dict, prefix: str, n: int) -> dict:
    """NomicBERT / GTE layer names: separate q/k/v/o, gate_proj + up_proj, post-norms."""
    ours = {}
    for i in range(n):
        src, dst = f"{prefix}layers.{i}", f"layers.{i}"
        qkv(sd, f"{src}.self_attn", f"{dst}.attention", "q_proj", "k_proj", "v_proj", ours)
        copy(sd, ours, {f"{dst}.attention.out": f"{src}.self_attn.o_proj",
                        f"{dst}.attention_norm": f"{src}.post_attention_layernorm",
                        f"{dst}.feed_forward.down": f"{src}.mlp.down_proj",
                        f"{dst}.feed_forward_norm": f"{src}.post_mlp_layernorm"})
        ours[f"{dst}.feed_forward.up.weight"] = cat(sd, f"{src}.mlp.gate_proj.weight",
                                                    f"{src}.mlp.up_proj.weight")
    copy(sd, ours, {"embeddings.token": "embeddings.word_embeddings",
                    "embeddings.token_type": "embeddings.token_type_embeddings",
                    "embeddings.norm": "embeddings.LayerNorm"})
    return ours


def test_nomic_bert_rotary_swiglu_no_biases(monkeypatch):
    hf = transformers.NomicBertConfig(**SMALL, rope_parameters={"rope_type": "default",
                                                                "rope_theta": 1000.0})
    peer = randomise(transformers.NomicBertModel(hf))
    cfg = EncoderConfig(vocab_size=60, d_model=32, n_heads=4, n_layers=3, d_ff=48,
                        max_positions=64, norm="post", position_encoding="none",
                        relative_positions="rotary", rotary_base=1000.0, feed_forward="glu",
                        activation="silu", bias=False, type_vocab_size=2)
    encoder = load(cfg, glu_layers(peer.state_dict(), "", 3))
    compare(encoder, peer, *batch(hf.pad_token_id), monkeypatch)


def test_gte_rotary_geglu_mixed_biases(monkeypatch):
    hf = transformers.GteConfig(**SMALL, type_vocab_size=2)
    peer = randomise(transformers.GteModel(hf))
    cfg = EncoderConfig(vocab_size=60, d_model=32, n_heads=4, n_layers=3, d_ff=48,
                        max_positions=64, norm="post", position_encoding="none",
                        relative_positions="rotary", rotary_base=160000.0, feed_forward="glu",
                        activation="gelu", ffn_in_bias=False, type_vocab_size=2)
    encoder = load(cfg, glu_layers(peer.state_dict(), "", 3))
    compare(encoder, peer, *batch(hf.pad_token_id), monkeypatch)


@pytest.mark.parametrize("T", [13, 40])  # 40: local layers see less than the whole sequence
def test_modernbert_windows_geglu_prenorm_no_norm_bias(monkeypatch, T):
    hf = transformers.ModernBertConfig(
        **SMALL, pad_token_id=0, bos_token_id=1, eos_token_id=2, cls_token_id=1,
        sep_token_id=2, local_attention=8, global_attn_every_n_layers=2,
        global_rope_theta=160000.0, local_rope_theta=10000.0, hidden_activation="gelu",
        attn_implementation="sdpa")
    peer = randomise(transformers.ModernBertModel(hf))
    sd = peer.state_dict()
    ours = {}
    for i in range(3):
        src, dst = f"layers.{i}", f"layers.{i}"
        copy(sd, ours, {f"{dst}.attention.qkv": f"{src}.attn.Wqkv",
                        f"{dst}.attention.out": f"{src}.attn.Wo",
                        f"{dst}.attention_norm": f"{src}.attn_norm",
                        f"{dst}.feed_forward.up": f"{src}.mlp.Wi",
                        f"{dst}.feed_forward.down": f"{src}.mlp.Wo",
                        f"{dst}.feed_forward_norm": f"{src}.mlp_norm"})
    copy(sd, ours, {"embeddings.token": "embeddings.tok_embeddings",
                    "embeddings.norm": "embeddings.norm", "final_norm": "final_norm"})
    cfg = EncoderConfig(vocab_size=60, d_model=32, n_heads=4, n_layers=3, d_ff=48,
                        max_positions=64, norm="pre", first_attention_norm=False,
                        final_norm=True, norm_bias=False, bias=False, layer_norm_eps=1e-5,
                        position_encoding="none", type_vocab_size=0,
                        relative_positions="rotary", rotary_base=160000.0,
                        rotary_local_base=10000.0, attention_window=8, global_every=2,
                        feed_forward="glu", activation="gelu")
    encoder = load(cfg, ours)
    compare(encoder, peer, *batch(0, (T, T - 4, 3)), monkeypatch)


def test_mpnet_relative_buckets_offset_positions(monkeypatch):
    hf = transformers.MPNetConfig(**SMALL, relative_attention_num_buckets=32)
    peer = randomise(transformers.MPNetModel(hf, add_pooling_layer=False))
    sd = peer.state_dict()
    ours = {}
    for i in range(3):
        src, dst = f"encoder.layer.{i}", f"layers.{i}"
        qkv(sd, f"{src}.attention.attn", f"{dst}.attention", "q", "k", "v", ours)
        copy(sd, ours, {f"{dst}.attention.out": f"{src}.attention.attn.o",
                        f"{dst}.attention_norm": f"{src}.attention.LayerNorm",
                        f"{dst}.feed_forward.up": f"{src}.intermediate.dense",
                        f"{dst}.feed_forward.down": f"{src}.output.dense",
                        f"{dst}.feed_forward_norm": f"{src}.output.LayerNorm"})
    copy(sd, ours, {"embeddings.token": "embeddings.word_embeddings",
                    "embeddings.position": "embeddings.position_embeddings",
                    "embeddings.norm": "embeddings.LayerNorm",
                    "relative_bias.buckets": "encoder.relative_attention_bias"})
    cfg = EncoderConfig(vocab_size=60, d_model=32, n_heads=4, n_layers=3, d_ff=48,
                        max_positions=64, pad_token_id=1, type_vocab_size=0,
                        position_encoding="learned_offset", relative_positions="buckets",
                        relative_buckets=32, relative_max_distance=128)
    encoder = load(cfg, ours)
    compare(encoder, peer, *batch(1), monkeypatch)


def test_roberta_offset_positions(monkeypatch):
    hf = transformers.RobertaConfig(**SMALL, type_vocab_size=1, pad_token_id=1)
    peer = randomise(transformers.RobertaModel(hf, add_pooling_layer=False))
    sd = peer.state_dict()
    ours = {}
    for i in range(3):
        src, dst = f"encoder.layer.{i}", f"layers.{i}"
        qkv(sd, f"{src}.attention.self", f"{dst}.attention", "query", "key", "value", ours)
        copy(sd, ours, {f"{dst}.attention.out": f"{src}.attention.output.dense",
                        f"{dst}.attention_norm": f"{src}.attention.output.LayerNorm",
                        f"{dst}.feed_forward.up": f"{src}.intermediate.dense",
                        f"{dst}.feed_forward.down": f"{src}.output.dense",
                        f"{dst}.feed_forward_norm": f"{src}.output.LayerNorm"})
    copy(sd, ours, {"embeddings.token": "embeddings.word_embeddings",
                    "embeddings.position": "embeddings.position_embeddings",
                    "embeddings.token_type": "embeddings.token_type_embeddings",
                    "embeddings.norm": "embeddings.LayerNorm"})
    cfg = EncoderConfig(vocab_size=60, d_model=32, n_heads=4, n_layers=3, d_ff=48,
                        max_positions=64, pad_token_id=1, type_vocab_size=1,
                        position_encoding="learned_offset")
    encoder = load(cfg, ours)
    compare(encoder, peer, *batch(1), monkeypatch)
