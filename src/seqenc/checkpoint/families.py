"""Encoder families: how each Hugging Face ``model_type`` maps onto EncoderConfig and our names.

A family is a config translation plus a name table, not a model class: every family below
loads into the same ``seqenc.nn.Encoder``. Names in the tables are ours (module paths, without
``.weight``/``.bias``) -> theirs; ``{i}`` is the layer index; a tuple of three names is
stacked into our fused qkv projection.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..nn.config import EncoderConfig

# config.json activation names -> ours.
ACTIVATIONS = {"gelu": "gelu", "relu": "relu", "gelu_new": "gelu_tanh",
               "gelu_pytorch_tanh": "gelu_tanh", "gelu_python": "gelu"}
_ACTIVATION_NAMES = {"gelu": "gelu", "relu": "relu", "gelu_tanh": "gelu_new"}


class CheckpointError(ValueError):
    """A checkpoint that does not fit the encoder it is loaded into."""


@dataclass(frozen=True)
class Family:
    """One checkpoint family: its config.json translation and its state-dict names."""

    name: str  # our name, shown by `seqenc info`
    model_types: tuple[str, ...]  # config.json "model_type" values it reads
    prefixes: tuple[str, ...]  # put in front of the encoder's names by task models
    top: dict[str, str]  # modules outside the layers: ours -> theirs
    layer: dict[str, str | tuple[str, ...]]  # modules of layer {i}: ours -> theirs
    ignored: tuple[str, ...]  # checkpoint keys (prefixes) that are heads or buffers, not ours
    read_config: Callable[[dict[str, Any]], EncoderConfig]
    write_config: Callable[[EncoderConfig], dict[str, Any]] | None  # None: not writable
    positions: str  # for `seqenc info` and the README table
    feed_forward: str
    norm: str
    extra: dict[str, Any] = field(default_factory=dict)


def _field(config: dict[str, Any], key: str) -> Any:
    try:
        return config[key]
    except KeyError:
        raise CheckpointError(f"config.json lacks the field {key!r}") from None


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
        vocab_size=_field(config, "vocab_size"),
        d_model=_field(config, "hidden_size"),
        n_heads=_field(config, "num_attention_heads"),
        n_layers=_field(config, "num_hidden_layers"),
        d_ff=_field(config, "intermediate_size"),
        dropout=config.get("hidden_dropout_prob", 0.1),
        attention_dropout=config.get("attention_probs_dropout_prob", 0.1),
        activation=_activation(config),
        layer_norm_eps=config.get("layer_norm_eps", 1e-12),
        norm="post",
        max_positions=config.get("max_position_embeddings", 512),
        position_encoding="learned",
        type_vocab_size=config.get("type_vocab_size", 2),
        pad_token_id=config.get("pad_token_id", 0) or 0,
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
        vocab_size=_field(config, "vocab_size"),
        d_model=_field(config, "dim"),
        n_heads=_field(config, "n_heads"),
        n_layers=_field(config, "n_layers"),
        d_ff=_field(config, "hidden_dim"),
        dropout=config.get("dropout", 0.1),
        attention_dropout=config.get("attention_dropout", 0.1),
        activation=_activation(config, "activation"),
        layer_norm_eps=1e-12,
        norm="post",
        max_positions=config.get("max_position_embeddings", 512),
        position_encoding="learned",  # sinusoidal_pos_embds tables are saved as weights too
        type_vocab_size=0,
        pad_token_id=config.get("pad_token_id", 0) or 0,
    )


def _check_writable(cfg: EncoderConfig, family: str, **wanted: Any) -> None:
    basic = dict(norm="post", final_norm=False,
                 scale_embeddings=False, embedding_norm=True, bias=True)
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
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "num_attention_heads": cfg.n_heads,
        "num_hidden_layers": cfg.n_layers,
        "intermediate_size": cfg.d_ff,
        "hidden_act": _ACTIVATION_NAMES[cfg.activation],
        "hidden_dropout_prob": cfg.dropout,
        "attention_probs_dropout_prob": cfg.attention_dropout,
        "layer_norm_eps": cfg.layer_norm_eps,
        "max_position_embeddings": cfg.max_positions,
        "position_embedding_type": "absolute",
        "type_vocab_size": cfg.type_vocab_size,
        "pad_token_id": cfg.pad_token_id,
        "initializer_range": 0.02,
    }


def write_bert(cfg: EncoderConfig) -> dict[str, Any]:
    _check_writable(cfg, "BERT", position_encoding="learned", embedding_size=None)
    if cfg.type_vocab_size == 0:
        raise CheckpointError("this encoder cannot be saved in the BERT layout: "
                              "type_vocab_size=0 (BERT needs token-type embeddings)")
    return bert_config_dict(cfg)


def roberta_writer(model_type: str, architecture: str):
    """A writer for RoBERTa's layout under ``model_type`` (roberta, xlm-roberta, camembert)."""
    def write(cfg: EncoderConfig) -> dict[str, Any]:
        _check_writable(cfg, architecture[:-5], position_encoding="learned_offset",
                        embedding_size=None)
        return bert_config_dict(cfg, model_type, architecture)
    return write


def write_electra(cfg: EncoderConfig) -> dict[str, Any]:
    _check_writable(cfg, "ELECTRA", position_encoding="learned")
    out = bert_config_dict(cfg, "electra", "ElectraModel")
    out["embedding_size"] = cfg.embedding_size or cfg.d_model
    return out


def write_distilbert(cfg: EncoderConfig) -> dict[str, Any]:
    _check_writable(cfg, "DistilBERT", position_encoding="learned", embedding_size=None,
                    type_vocab_size=0, layer_norm_eps=1e-12)
    if cfg.activation not in ("gelu", "relu"):
        raise CheckpointError("DistilBERT's activation is gelu or relu")
    return {
        "architectures": ["DistilBertModel"], "model_type": "distilbert",
        "vocab_size": cfg.vocab_size, "dim": cfg.d_model, "n_heads": cfg.n_heads,
        "n_layers": cfg.n_layers, "hidden_dim": cfg.d_ff, "activation": cfg.activation,
        "dropout": cfg.dropout, "attention_dropout": cfg.attention_dropout,
        "max_position_embeddings": cfg.max_positions, "pad_token_id": cfg.pad_token_id,
        "sinusoidal_pos_embds": False, "initializer_range": 0.02,
    }


# BERT's names, shared by RoBERTa, XLM-RoBERTa, CamemBERT and ELECTRA.
_BERT_TOP = {
    "embeddings.token": "embeddings.word_embeddings",
    "embeddings.position": "embeddings.position_embeddings",
    "embeddings.token_type": "embeddings.token_type_embeddings",
    "embeddings.norm": "embeddings.LayerNorm",
}
_BERT_LAYER: dict[str, str | tuple[str, ...]] = {
    "attention.qkv": tuple(f"encoder.layer.{{i}}.attention.self.{p}"
                           for p in ("query", "key", "value")),
    "attention.out": "encoder.layer.{i}.attention.output.dense",
    "attention_norm": "encoder.layer.{i}.attention.output.LayerNorm",
    "feed_forward.up": "encoder.layer.{i}.intermediate.dense",
    "feed_forward.down": "encoder.layer.{i}.output.dense",
    "feed_forward_norm": "encoder.layer.{i}.output.LayerNorm",
}
_BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")
_BERTLIKE = dict(top=_BERT_TOP, layer=_BERT_LAYER, positions="learned absolute",
                 feed_forward="GELU MLP", norm="post-LayerNorm")
_ROBERTA_HEADS = ("pooler.", "lm_head.", "classifier.") + _BUFFERS

FAMILIES: tuple[Family, ...] = (
    Family("bert", ("bert",), ("bert.", "model."), ignored=("pooler.", "cls.") + _BUFFERS,
           read_config=bert_config, write_config=write_bert, **_BERTLIKE),
    Family("roberta", ("roberta",), ("roberta.", "model."), ignored=_ROBERTA_HEADS,
           read_config=roberta_config, write_config=roberta_writer("roberta", "RobertaModel"),
           **{**_BERTLIKE, "positions": "learned absolute from pad_token_id + 1"}),
    Family("xlm-roberta", ("xlm-roberta", "xlm_roberta"), ("roberta.", "model."),
           ignored=_ROBERTA_HEADS, read_config=roberta_config,
           write_config=roberta_writer("xlm-roberta", "XLMRobertaModel"),
           **{**_BERTLIKE, "positions": "learned absolute from pad_token_id + 1"}),
    Family("camembert", ("camembert",), ("roberta.", "model."), ignored=_ROBERTA_HEADS,
           read_config=roberta_config, write_config=roberta_writer("camembert", "CamembertModel"),
           **{**_BERTLIKE, "positions": "learned absolute from pad_token_id + 1"}),
    Family("electra", ("electra",), ("electra.", "model."),
           ignored=("generator_", "discriminator_predictions.", "classifier.") + _BUFFERS,
           read_config=electra_config, write_config=write_electra,
           top={**_BERT_TOP, "embeddings.project": "embeddings_project"},
           layer=_BERT_LAYER, positions="learned absolute (embedding_size, projected)",
           feed_forward="GELU MLP", norm="post-LayerNorm"),
    Family("distilbert", ("distilbert",), ("distilbert.", "model."),
           ignored=("vocab_transform.", "vocab_layer_norm.", "vocab_projector.",
                    "pre_classifier.", "classifier.") + _BUFFERS,
           read_config=distilbert_config, write_config=write_distilbert,
           top={"embeddings.token": "embeddings.word_embeddings",
                "embeddings.position": "embeddings.position_embeddings",
                "embeddings.norm": "embeddings.LayerNorm"},
           layer={"attention.qkv": tuple(f"transformer.layer.{{i}}.attention.{p}_lin"
                                         for p in ("q", "k", "v")),
                  "attention.out": "transformer.layer.{i}.attention.out_lin",
                  "attention_norm": "transformer.layer.{i}.sa_layer_norm",
                  "feed_forward.up": "transformer.layer.{i}.ffn.lin1",
                  "feed_forward.down": "transformer.layer.{i}.ffn.lin2",
                  "feed_forward_norm": "transformer.layer.{i}.output_layer_norm"},
           positions="learned absolute", feed_forward="GELU MLP", norm="post-LayerNorm"),
)
BY_MODEL_TYPE = {t: f for f in FAMILIES for t in f.model_types}
BY_NAME = {f.name: f for f in FAMILIES}
# architectures[0] -> model_type, for config.json files that lack model_type.
_ARCHITECTURES = {"Bert": "bert", "Roberta": "roberta", "XLMRoberta": "xlm-roberta",
                  "Camembert": "camembert", "Electra": "electra", "DistilBert": "distilbert"}


def supported() -> str:
    return ", ".join(f.name for f in FAMILIES)


def detect_family(config: dict[str, Any]) -> Family:
    """config.json -> its Family, from ``model_type`` (else ``architectures``)."""
    model_type = config.get("model_type")
    if model_type is None:
        for arch in config.get("architectures") or ():
            stem = next((s for s in sorted(_ARCHITECTURES, key=len, reverse=True)
                         if arch.startswith(s)), None)
            if stem:
                model_type = _ARCHITECTURES[stem]
                break
        else:
            model_type = "bert"  # old BERT configs carry neither field
    if model_type not in BY_MODEL_TYPE:
        raise CheckpointError(
            f"model_type {model_type!r} is not supported (supported families: {supported()})"
        )
    return BY_MODEL_TYPE[model_type]


def family_for_config(cfg: EncoderConfig, preferred: str | None = None) -> Family:
    """The family to save ``cfg`` in: ``preferred`` if it can hold it, else the first that can."""
    candidates = ([BY_NAME[preferred]] if preferred in BY_NAME else []) + list(FAMILIES)
    reasons = []
    for family in candidates:
        if family.write_config is None:
            continue
        try:
            family.write_config(cfg)
            return family
        except CheckpointError as e:
            reasons.append(str(e))
    raise CheckpointError("no checkpoint layout fits this encoder:\n  " + "\n  ".join(reasons))
