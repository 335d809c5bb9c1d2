"""config.json <-> EncoderConfig for each family: field names, defaults and what each family
fixes in code rather than in its config (RoBERTa's position offset, MPNet's bucket distance).
A writer refuses, naming every field, an encoder its layout cannot hold."""

from __future__ import annotations

from typing import Any

from ..nn.config import EncoderConfig

# config.json activation names -> ours.
ACTIVATIONS = {"gelu": "gelu", "relu": "relu", "gelu_new": "gelu_tanh",
               "gelu_pytorch_tanh": "gelu_tanh", "gelu_python": "gelu"}
_ACTIVATION_NAMES = {"gelu": "gelu", "relu": "relu", "gelu_tanh": "gelu_new", "silu": "silu"}


class CheckpointError(ValueError):
    """A checkpoint that does not fit the encoder it is loaded into."""


def _field(config: dict[str, Any], key: str) -> Any:
    try:
        return config[key]
    except KeyError:
        raise CheckpointError(f"config.json lacks the field {key!r}") from None


# Our size fields -> config.json's names: BertConfig's (every family's but DistilBERT's).
_BERT_SIZES = {"vocab_size": "vocab_size", "d_model": "hidden_size",
               "n_heads": "num_attention_heads", "n_layers": "num_hidden_layers",
               "d_ff": "intermediate_size"}
_DISTILBERT_SIZES = {"vocab_size": "vocab_size", "d_model": "dim", "n_heads": "n_heads",
                     "n_layers": "n_layers", "d_ff": "hidden_dim"}


def _read_sizes(config: dict[str, Any], names: dict[str, str] = _BERT_SIZES) -> dict[str, Any]:
    """The fields every config must have, and the pad token id (0 if missing or null)."""
    return {ours: _field(config, theirs) for ours, theirs in names.items()} | {
        "pad_token_id": config.get("pad_token_id", 0) or 0}


def _written_sizes(cfg: EncoderConfig, names: dict[str, str] = _BERT_SIZES) -> dict[str, Any]:
    """_read_sizes' inverse."""
    return {theirs: getattr(cfg, ours) for ours, theirs in names.items()} | {
        "pad_token_id": cfg.pad_token_id}


def _activation(config: dict[str, Any], key: str = "hidden_act") -> str:
    act = config.get(key, "gelu")
    if act not in ACTIVATIONS:
        raise CheckpointError(f"{key} {act!r} is not supported ({', '.join(ACTIVATIONS)})")
    return ACTIVATIONS[act]


def _absolute_only(config: dict[str, Any]) -> None:
    position = config.get("position_embedding_type", "absolute")
    if position != "absolute":
        raise CheckpointError(
            f"position_embedding_type {position!r} is not supported (absolute only)"
        )


def _build(**fields: Any) -> EncoderConfig:
    try:
        return EncoderConfig(**fields)
    except ValueError as e:
        raise CheckpointError(str(e)) from None


def bert_config(config: dict[str, Any]) -> EncoderConfig:
    """A BertConfig dict (and RoBERTa's, ELECTRA's: same field names) -> EncoderConfig."""
    _absolute_only(config)
    return _build(
        **_read_sizes(config),
        dropout=config.get("hidden_dropout_prob", 0.1),
        attention_dropout=config.get("attention_probs_dropout_prob", 0.1),
        activation=_activation(config),
        layer_norm_eps=config.get("layer_norm_eps", 1e-12),
        norm="post",
        max_positions=config.get("max_position_embeddings", 512),
        position_encoding="learned",
        type_vocab_size=config.get("type_vocab_size", 2),
    )


def roberta_config(config: dict[str, Any]) -> EncoderConfig:
    """RoBERTa counts positions from pad_token_id + 1 (its padding_idx)."""
    cfg = bert_config(config)
    return _build(**{**cfg.to_dict(), "position_encoding": "learned_offset"})


def electra_config(config: dict[str, Any]) -> EncoderConfig:
    """ELECTRA: BERT with embeddings of width embedding_size projected up to hidden_size."""
    cfg = bert_config(config)
    size = config.get("embedding_size", cfg.d_model)
    return _build(**{**cfg.to_dict(), "embedding_size": None if size == cfg.d_model else size})


def distilbert_config(config: dict[str, Any]) -> EncoderConfig:
    """DistilBERT: BERT without token types, its own field names, eps fixed at 1e-12."""
    return _build(
        **_read_sizes(config, _DISTILBERT_SIZES),
        dropout=config.get("dropout", 0.1),
        attention_dropout=config.get("attention_dropout", 0.1),
        activation=_activation(config, "activation"),
        layer_norm_eps=1e-12,
        norm="post",
        max_positions=config.get("max_position_embeddings", 512),
        position_encoding="learned",  # sinusoidal_pos_embds tables are saved as weights too
        type_vocab_size=0,
    )


def mpnet_config(config: dict[str, Any]) -> EncoderConfig:
    """MPNet: BERT's layer with RoBERTa's positions, no token types, and one relative-position
    bucket bias (T5's buckets) shared by every layer's attention."""
    cfg = bert_config({**config, "type_vocab_size": 0})
    return _build(**{**cfg.to_dict(), "position_encoding": "learned_offset",
                     "relative_positions": "buckets",
                     "relative_buckets": config.get("relative_attention_num_buckets", 32),
                     "relative_max_distance": 128})  # fixed in MPNet's code, not its config


def _rope_theta(config: dict[str, Any], default: float, kind: str | None = None) -> float:
    """RoPE base from transformers' ``rope_parameters`` (per layer kind for ModernBERT), or the
    older flat fields."""
    params = config.get("rope_parameters") or {}
    if kind is not None and isinstance(params.get(kind), dict):
        params = params[kind]
    scaling = params.get("rope_type", "default"), config.get("rope_scaling")
    if scaling != ("default", None):
        raise CheckpointError(f"rope scaling {scaling[1] or scaling[0]!r} is not supported "
                              "(plain RoPE only)")
    if config.get("logn_attention_scale"):
        raise CheckpointError("logn_attention_scale is not supported")
    flat = {"full_attention": "global_rope_theta", "sliding_attention": "local_rope_theta"}
    return float(params.get("rope_theta") or config.get(flat.get(kind, "rope_theta"))
                 or config.get("rotary_emb_base") or default)


def _gated_rotary(config: dict[str, Any], *, bias: bool, default_theta: float,
                  default_act: str) -> EncoderConfig:
    """NomicBERT and GTE as transformers writes them: BERT's post-norm layer with rotary
    positions in attention (no position table) and a gated feed-forward network."""
    act = config.get("hidden_act", default_act)
    if act not in (*ACTIVATIONS, "silu", "swish"):
        raise CheckpointError(f"hidden_act {act!r} is not supported")
    return _build(
        **_read_sizes(config),
        dropout=config.get("hidden_dropout_prob", 0.0),
        attention_dropout=config.get("attention_probs_dropout_prob", 0.0),
        activation="silu" if act in ("silu", "swish") else ACTIVATIONS[act],
        layer_norm_eps=config.get("layer_norm_eps", 1e-12),
        norm="post",
        max_positions=config.get("max_position_embeddings", 2048),
        position_encoding="none",
        relative_positions="rotary",
        rotary_base=_rope_theta(config, default_theta),
        type_vocab_size=config.get("type_vocab_size", 2),
        feed_forward="glu",
        bias=bias,
        ffn_in_bias=False,
    )


def nomic_config(config: dict[str, Any]) -> EncoderConfig:
    """NomicBERT: SwiGLU, no biases anywhere but the LayerNorms, RoPE base 1000."""
    return _gated_rotary(config, bias=False, default_theta=1000.0, default_act="silu")


def gte_config(config: dict[str, Any]) -> EncoderConfig:
    """GTE "new": GeGLU without input biases, biases elsewhere, RoPE base 160000."""
    return _gated_rotary(config, bias=True, default_theta=160000.0, default_act="gelu")


def modernbert_config(config: dict[str, Any]) -> EncoderConfig:
    """ModernBERT: pre-norm without LayerNorm shifts or linear biases, GeGLU, rotary positions
    with a different base for the global layers and the local (windowed) ones."""
    act = config.get("hidden_activation", "gelu")
    if act not in ACTIVATIONS:
        raise CheckpointError(f"hidden_activation {act!r} is not supported")
    if config.get("attention_bias", False) or config.get("mlp_bias", False):
        raise CheckpointError("attention_bias / mlp_bias true is not supported for ModernBERT")
    return _build(
        **_read_sizes(config),
        dropout=config.get("mlp_dropout", 0.0),
        attention_dropout=config.get("attention_dropout", 0.0),
        activation=ACTIVATIONS[act],
        layer_norm_eps=config.get("norm_eps", 1e-5),
        norm="pre",
        first_attention_norm=False,
        final_norm=True,
        norm_bias=bool(config.get("norm_bias", False)),
        bias=False,
        max_positions=config.get("max_position_embeddings", 8192),
        position_encoding="none",
        relative_positions="rotary",
        rotary_base=_rope_theta(config, 160000.0, "full_attention"),
        rotary_local_base=_rope_theta(config, 10000.0, "sliding_attention"),
        attention_window=config.get("local_attention", 128),
        global_every=config.get("global_attn_every_n_layers", 3),
        type_vocab_size=0,
        feed_forward="glu",
    )


def _check_writable(cfg: EncoderConfig, family: str, **wanted: Any) -> None:
    basic = dict(norm="post", final_norm=False, scale_embeddings=False, embedding_norm=True,
                 bias=True, ffn_in_bias=None, norm_bias=True, feed_forward="mlp",
                 relative_positions="none", attention_window=0, first_attention_norm=True,
                 embedding_size=None)
    basic.update(wanted)
    wrong = [f"{k}={getattr(cfg, k)!r} (needs {v!r})" for k, v in basic.items()
             if getattr(cfg, k) != v]
    if wrong:
        raise CheckpointError(f"this encoder cannot be saved in the {family} layout: "
                              + ", ".join(wrong))


def bert_config_dict(cfg: EncoderConfig, model_type: str = "bert",
                     architecture: str = "BertModel") -> dict[str, Any]:
    """EncoderConfig -> a BertConfig-style dict transformers can load."""
    return {
        "architectures": [architecture],
        "model_type": model_type,
        **_written_sizes(cfg),
        "hidden_act": _ACTIVATION_NAMES[cfg.activation],
        "hidden_dropout_prob": cfg.dropout,
        "attention_probs_dropout_prob": cfg.attention_dropout,
        "layer_norm_eps": cfg.layer_norm_eps,
        "max_position_embeddings": cfg.max_positions,
        "position_embedding_type": "absolute",
        "type_vocab_size": cfg.type_vocab_size,
        "initializer_range": 0.02,
    }


def write_bert(cfg: EncoderConfig) -> dict[str, Any]:
    _check_writable(cfg, "BERT", position_encoding="learned")
    if cfg.type_vocab_size == 0:
        raise CheckpointError("this encoder cannot be saved in the BERT layout: "
                              "type_vocab_size=0 (BERT needs token-type embeddings)")
    return bert_config_dict(cfg)


def roberta_writer(model_type: str, architecture: str):
    """A writer for RoBERTa's layout under ``model_type`` (roberta, xlm-roberta, camembert)."""
    def write(cfg: EncoderConfig) -> dict[str, Any]:
        _check_writable(cfg, architecture[:-5], position_encoding="learned_offset")
        return bert_config_dict(cfg, model_type, architecture)
    return write


def write_electra(cfg: EncoderConfig) -> dict[str, Any]:
    _check_writable(cfg, "ELECTRA", position_encoding="learned",
                    embedding_size=cfg.embedding_size)
    out = bert_config_dict(cfg, "electra", "ElectraModel")
    out["embedding_size"] = cfg.embedding_size or cfg.d_model
    return out


def write_distilbert(cfg: EncoderConfig) -> dict[str, Any]:
    _check_writable(cfg, "DistilBERT", position_encoding="learned",
                    type_vocab_size=0, layer_norm_eps=1e-12)
    if cfg.activation not in ("gelu", "relu"):
        raise CheckpointError("DistilBERT's activation is gelu or relu")
    return {
        "architectures": ["DistilBertModel"], "model_type": "distilbert",
        **_written_sizes(cfg, _DISTILBERT_SIZES), "activation": cfg.activation,
        "dropout": cfg.dropout, "attention_dropout": cfg.attention_dropout,
        "max_position_embeddings": cfg.max_positions,
        "sinusoidal_pos_embds": False, "initializer_range": 0.02,
    }


def write_mpnet(cfg: EncoderConfig) -> dict[str, Any]:
    _check_writable(cfg, "MPNet", position_encoding="learned_offset", type_vocab_size=0,
                    relative_positions="buckets", relative_max_distance=128)
    out = bert_config_dict(cfg, "mpnet", "MPNetModel")
    for key in ("type_vocab_size", "position_embedding_type"):
        del out[key]
    out["relative_attention_num_buckets"] = cfg.relative_buckets
    return out


def rotary_writer(model_type: str, architecture: str, bias: bool,
                  activations: tuple[str, ...]):
    """A writer for NomicBERT's or GTE's layout (transformers' field names)."""
    def write(cfg: EncoderConfig) -> dict[str, Any]:
        _check_writable(cfg, architecture[:-5], position_encoding="none", bias=bias,
                        ffn_in_bias=False, feed_forward="glu", relative_positions="rotary",
                        rotary_interleaved=False)
        if cfg.activation not in activations:
            raise CheckpointError(f"this encoder cannot be saved in the {architecture[:-5]} "
                                  f"layout: activation={cfg.activation!r}")
        out = bert_config_dict(cfg, model_type, architecture)
        del out["position_embedding_type"]
        out["rope_parameters"] = {"rope_type": "default", "rope_theta": cfg.rotary_base}
        return out
    return write


def write_modernbert(cfg: EncoderConfig) -> dict[str, Any]:
    _check_writable(cfg, "ModernBERT", norm="pre", final_norm=True, first_attention_norm=False,
                    bias=False, norm_bias=cfg.norm_bias, feed_forward="glu",
                    position_encoding="none", relative_positions="rotary", type_vocab_size=0,
                    attention_window=cfg.attention_window, rotary_interleaved=False)
    local = cfg.rotary_local_base or cfg.rotary_base
    return {
        "architectures": ["ModernBertModel"], "model_type": "modernbert",
        **_written_sizes(cfg), "hidden_activation": _ACTIVATION_NAMES[cfg.activation],
        "mlp_dropout": cfg.dropout, "attention_dropout": cfg.attention_dropout,
        "norm_eps": cfg.layer_norm_eps, "norm_bias": cfg.norm_bias, "attention_bias": False,
        "mlp_bias": False, "max_position_embeddings": cfg.max_positions,
        "local_attention": cfg.attention_window or cfg.max_positions,
        "global_attn_every_n_layers": cfg.global_every if cfg.attention_window else 1,
        "global_rope_theta": cfg.rotary_base, "local_rope_theta": local,
        "rope_parameters": {
            "full_attention": {"rope_type": "default", "rope_theta": cfg.rotary_base},
            "sliding_attention": {"rope_type": "default", "rope_theta": local}},
        "initializer_range": 0.02,
    }
