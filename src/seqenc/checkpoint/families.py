"""Encoder families: which ``model_type`` maps onto EncoderConfig how, and our names -> theirs.

A family is a config translation (configs.py) plus a name table, not a model class: every
family below loads into the same ``seqenc.nn.Encoder``. Names in the tables are ours (module
paths, without ``.weight``/``.bias``) -> theirs; ``{i}`` is the layer index; a tuple of names
is stacked (in order) into one of our fused tensors (qkv; a gated FFN's gate and value).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..nn.config import EncoderConfig
from .configs import (
    CheckpointError,
    bert_config,
    distilbert_config,
    electra_config,
    gte_config,
    modernbert_config,
    mpnet_config,
    nomic_config,
    roberta_config,
    roberta_writer,
    rotary_writer,
    write_bert,
    write_distilbert,
    write_electra,
    write_modernbert,
    write_mpnet,
)

__all__ = ["BY_NAME", "FAMILIES", "CheckpointError", "Family", "Swapped", "detect_family",
           "family_for_config", "supported"]


@dataclass(frozen=True)
class Family:
    """One checkpoint family: its config.json translation and its state-dict names."""

    name: str  # our name, shown by `seqenc info`
    model_types: tuple[str, ...]  # config.json "model_type" values it reads
    prefixes: tuple[str, ...]  # put in front of the encoder's names by task models
    top: dict[str, str]  # modules outside the layers: ours -> theirs
    layer: dict[str, Any]  # modules of layer {i}: ours -> theirs (str, tuple or Swapped)
    ignored: tuple[str, ...]  # checkpoint keys (prefixes) that are heads or buffers, not ours
    read_config: Callable[[dict[str, Any]], EncoderConfig]
    write_config: Callable[[EncoderConfig], dict[str, Any]] | None  # None: not writable
    positions: str  # for `seqenc info` and the README table
    feed_forward: str
    norm: str
    extra: dict[str, Any] = field(default_factory=dict)


# BERT's names, shared by RoBERTa, XLM-RoBERTa, CamemBERT and ELECTRA; DistilBERT and MPNet
# have its embeddings but for the token types.
_UNTYPED_EMBEDDINGS = {
    "embeddings.token": "embeddings.word_embeddings",
    "embeddings.position": "embeddings.position_embeddings",
    "embeddings.norm": "embeddings.LayerNorm",
}
_BERT_TOP = {**_UNTYPED_EMBEDDINGS, "embeddings.token_type": "embeddings.token_type_embeddings"}
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



@dataclass(frozen=True)
class Swapped:
    """Their tensor holds our two halves in the other order (GTE's up_gate_proj: value, gate)."""

    name: str


# NomicBERT, as its checkpoints (and transformers' save_pretrained) name it.
_NOMIC_TOP = {"embeddings.token": "embeddings.word_embeddings",
              "embeddings.token_type": "embeddings.token_type_embeddings",
              "embeddings.norm": "emb_ln"}
_NOMIC_LAYER: dict[str, Any] = {
    "attention.qkv": "encoder.layers.{i}.attn.Wqkv",
    "attention.out": "encoder.layers.{i}.attn.out_proj",
    "attention_norm": "encoder.layers.{i}.norm1",
    "feed_forward.up": ("encoder.layers.{i}.mlp.fc12",  # the gate (through the activation)
                        "encoder.layers.{i}.mlp.fc11"),  # the value
    "feed_forward.down": "encoder.layers.{i}.mlp.fc2",
    "feed_forward_norm": "encoder.layers.{i}.norm2",
}
# GTE "new", likewise.
_GTE_TOP = {"embeddings.token": "embeddings.word_embeddings",
            "embeddings.token_type": "embeddings.token_type_embeddings",
            "embeddings.norm": "embeddings.LayerNorm"}
_GTE_LAYER: dict[str, Any] = {
    "attention.qkv": "encoder.layer.{i}.attention.qkv_proj",
    "attention.out": "encoder.layer.{i}.attention.o_proj",
    "attention_norm": "encoder.layer.{i}.attn_ln",
    "feed_forward.up": Swapped("encoder.layer.{i}.mlp.up_gate_proj"),
    "feed_forward.down": "encoder.layer.{i}.mlp.down_proj",
    "feed_forward_norm": "encoder.layer.{i}.mlp_ln",
}

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
           top=_UNTYPED_EMBEDDINGS,
           layer={"attention.qkv": tuple(f"transformer.layer.{{i}}.attention.{p}_lin"
                                         for p in ("q", "k", "v")),
                  "attention.out": "transformer.layer.{i}.attention.out_lin",
                  "attention_norm": "transformer.layer.{i}.sa_layer_norm",
                  "feed_forward.up": "transformer.layer.{i}.ffn.lin1",
                  "feed_forward.down": "transformer.layer.{i}.ffn.lin2",
                  "feed_forward_norm": "transformer.layer.{i}.output_layer_norm"},
           positions="learned absolute", feed_forward="GELU MLP", norm="post-LayerNorm"),
    Family("mpnet", ("mpnet",), ("mpnet.", "model."), ignored=_ROBERTA_HEADS,
           read_config=mpnet_config, write_config=write_mpnet,
           top={**_UNTYPED_EMBEDDINGS,
                "relative_bias.buckets": "encoder.relative_attention_bias"},
           layer={**_BERT_LAYER,  # but for the attention's names
                  "attention.qkv": tuple(f"encoder.layer.{{i}}.attention.attn.{p}"
                                         for p in ("q", "k", "v")),
                  "attention.out": "encoder.layer.{i}.attention.attn.o",
                  "attention_norm": "encoder.layer.{i}.attention.LayerNorm"},
           positions="learned absolute from pad_token_id + 1, relative bucket bias",
           feed_forward="GELU MLP", norm="post-LayerNorm"),
    Family("nomic_bert", ("nomic_bert",), ("nomic_bert.", "model."), ignored=_ROBERTA_HEADS,
           read_config=nomic_config,
           write_config=rotary_writer("nomic_bert", "NomicBertModel", False, ("silu",)),
           top=_NOMIC_TOP,
           layer=_NOMIC_LAYER, positions="rotary (base 1000)",
           feed_forward="SwiGLU, no biases", norm="post-LayerNorm"),
    Family("gte", ("gte", "new"), ("gte.", "new.", "model."), ignored=_ROBERTA_HEADS,
           read_config=gte_config,
           write_config=rotary_writer("gte", "GteModel", True, ("gelu", "gelu_tanh", "silu")),
           top=_GTE_TOP,
           layer=_GTE_LAYER, positions="rotary (base 160000)",
           feed_forward="GeGLU", norm="post-LayerNorm"),
    Family("modernbert", ("modernbert",), ("model.",),
           ignored=("head.", "decoder.", "classifier.", "drop."),
           read_config=modernbert_config, write_config=write_modernbert,
           top={"embeddings.token": "embeddings.tok_embeddings",
                "embeddings.norm": "embeddings.norm", "final_norm": "final_norm"},
           layer={"attention.qkv": "layers.{i}.attn.Wqkv",
                  "attention.out": "layers.{i}.attn.Wo",
                  "attention_norm": "layers.{i}.attn_norm",
                  "feed_forward.up": "layers.{i}.mlp.Wi",
                  "feed_forward.down": "layers.{i}.mlp.Wo",
                  "feed_forward_norm": "layers.{i}.mlp_norm"},
           positions="rotary, global/local bases; local layers windowed",
           feed_forward="GeGLU, no biases", norm="pre-LayerNorm without bias, final LayerNorm"),
)
BY_MODEL_TYPE = {t: f for f in FAMILIES for t in f.model_types}
BY_NAME = {f.name: f for f in FAMILIES}
# architectures[0] -> model_type, for config.json files that lack model_type.
_ARCHITECTURES = {"Bert": "bert", "Roberta": "roberta", "XLMRoberta": "xlm-roberta",
                  "Camembert": "camembert", "Electra": "electra", "DistilBert": "distilbert",
                  "MPNet": "mpnet", "NomicBert": "nomic_bert", "Gte": "gte", "NewModel": "gte",
                  "ModernBert": "modernbert"}


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
