"""The one place that knows Hugging Face BERT names: config.json and state-dict keys <-> ours.

Reading and writing go through the same table, so a checkpoint seqenc writes is one that
transformers (and seqenc) can read back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .nn.config import EncoderConfig

# BERT config.json activation names -> ours.
_ACTIVATIONS = {"gelu": "gelu", "relu": "relu", "gelu_new": "gelu_tanh",
                "gelu_pytorch_tanh": "gelu_tanh", "gelu_python": "gelu"}
SUPPORTED_MODEL_TYPES = ("bert",)

# Ours -> BERT, for everything outside the layers.
_EMBEDDINGS = {
    "embeddings.token.weight": "embeddings.word_embeddings.weight",
    "embeddings.position.weight": "embeddings.position_embeddings.weight",
    "embeddings.token_type.weight": "embeddings.token_type_embeddings.weight",
    "embeddings.norm.weight": "embeddings.LayerNorm.weight",
    "embeddings.norm.bias": "embeddings.LayerNorm.bias",
}
# Ours -> BERT inside layer i ({i} is filled in). qkv is the three BERT projections stacked.
_LAYER = {
    "attention.out": "encoder.layer.{i}.attention.output.dense",
    "attention_norm": "encoder.layer.{i}.attention.output.LayerNorm",
    "feed_forward.up": "encoder.layer.{i}.intermediate.dense",
    "feed_forward.down": "encoder.layer.{i}.output.dense",
    "feed_forward_norm": "encoder.layer.{i}.output.LayerNorm",
}
_QKV = ("query", "key", "value")
_QKV_NAME = "encoder.layer.{i}.attention.self.{part}"
# In BERT checkpoints but not part of an encoder: ignored on load, listed nowhere.
_IGNORED_PREFIXES = ("pooler.", "cls.", "embeddings.position_ids")
# Prefixes task models put in front of the encoder's names (BertForMaskedLM: "bert.").
_MODEL_PREFIXES = ("bert.", "model.")


class CheckpointError(ValueError):
    """A checkpoint that does not fit the encoder it is loaded into."""


def config_from_bert(config: dict[str, Any]) -> EncoderConfig:
    """A Hugging Face BertConfig dict -> EncoderConfig."""
    model_type = config.get("model_type", "bert")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise CheckpointError(
            f"model_type {model_type!r} is not supported "
            f"(supported: {', '.join(SUPPORTED_MODEL_TYPES)})"
        )
    act = config.get("hidden_act", "gelu")
    if act not in _ACTIVATIONS:
        raise CheckpointError(f"hidden_act {act!r} is not supported ({', '.join(_ACTIVATIONS)})")
    position = config.get("position_embedding_type", "absolute")
    if position != "absolute":
        raise CheckpointError(
            f"position_embedding_type {position!r} is not supported (absolute only)"
        )
    try:
        return EncoderConfig(
            vocab_size=config["vocab_size"],
            d_model=config["hidden_size"],
            n_heads=config["num_attention_heads"],
            n_layers=config["num_hidden_layers"],
            d_ff=config["intermediate_size"],
            dropout=config.get("hidden_dropout_prob", 0.1),
            attention_dropout=config.get("attention_probs_dropout_prob", 0.1),
            activation=_ACTIVATIONS[act],
            layer_norm_eps=config.get("layer_norm_eps", 1e-12),
            norm="post",
            max_positions=config.get("max_position_embeddings", 512),
            position_encoding="learned",
            type_vocab_size=config.get("type_vocab_size", 2),
            pad_token_id=config.get("pad_token_id", 0) or 0,
        )
    except KeyError as missing:
        raise CheckpointError(f"config.json lacks the field {missing}") from None


def config_to_bert(cfg: EncoderConfig) -> dict[str, Any]:
    """EncoderConfig -> a BertConfig dict transformers can load. Only BERT-shaped configs fit."""
    if cfg.norm != "post" or cfg.position_encoding != "learned" or cfg.final_norm \
            or cfg.scale_embeddings or not cfg.embedding_norm or not cfg.bias:
        raise CheckpointError(
            "only BERT-shaped encoders (norm='post', learned positions, embedding_norm, biases, "
            "no final_norm or embedding scale) can be saved in the BERT layout"
        )
    act = {"gelu": "gelu", "relu": "relu", "gelu_tanh": "gelu_new"}[cfg.activation]
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "num_attention_heads": cfg.n_heads,
        "num_hidden_layers": cfg.n_layers,
        "intermediate_size": cfg.d_ff,
        "hidden_act": act,
        "hidden_dropout_prob": cfg.dropout,
        "attention_probs_dropout_prob": cfg.attention_dropout,
        "layer_norm_eps": cfg.layer_norm_eps,
        "max_position_embeddings": cfg.max_positions,
        "position_embedding_type": "absolute",
        "type_vocab_size": cfg.type_vocab_size,
        "pad_token_id": cfg.pad_token_id,
        "initializer_range": 0.02,
    }


def name_map(cfg: EncoderConfig) -> dict[str, str | tuple[str, ...]]:
    """Our parameter name -> BERT name (or the three BERT names stacked into it)."""
    names: dict[str, str | tuple[str, ...]] = dict(_EMBEDDINGS)
    if cfg.type_vocab_size == 0:
        del names["embeddings.token_type.weight"]
    for i in range(cfg.n_layers):
        for ours, theirs in _LAYER.items():
            for p in ("weight", "bias"):
                names[f"layers.{i}.{ours}.{p}"] = f"{theirs.format(i=i)}.{p}"
        for p in ("weight", "bias"):
            names[f"layers.{i}.attention.qkv.{p}"] = tuple(
                f"{_QKV_NAME.format(i=i, part=part)}.{p}" for part in _QKV
            )
    return names


def from_bert_state_dict(
    bert: dict[str, Tensor], cfg: EncoderConfig, expected: dict[str, Tensor]
) -> dict[str, Tensor]:
    """BERT tensors -> our state dict. ``expected`` is our model's state dict (for shapes).

    Raises CheckpointError listing every missing, unexpected and mis-shaped tensor at once.
    """
    bert = _strip_model_prefix(bert)
    names = name_map(cfg)
    ours: dict[str, Tensor] = {}
    missing, misshaped = [], []
    used: set[str] = set()
    for our_name, theirs in names.items():
        parts = theirs if isinstance(theirs, tuple) else (theirs,)
        absent = [p for p in parts if p not in bert]
        if absent:
            missing.extend(absent)
            continue
        used.update(parts)
        tensor = torch.cat([bert[p] for p in parts]) if len(parts) > 1 else bert[parts[0]]
        want = tuple(expected[our_name].shape)
        if tuple(tensor.shape) != want:
            misshaped.append(f"{' + '.join(parts)}: checkpoint {tuple(tensor.shape)}, model {want}")
            continue
        ours[our_name] = tensor
    unexpected = sorted(
        k for k in bert if k not in used and not k.startswith(_IGNORED_PREFIXES)
    )
    problems = []
    if missing:
        problems.append("missing: " + ", ".join(missing))
    if unexpected:
        problems.append("unexpected: " + ", ".join(unexpected))
    if misshaped:
        problems.append("mis-shaped: " + "; ".join(misshaped))
    if problems:
        raise CheckpointError(
            "checkpoint does not match the model config.\n  " + "\n  ".join(problems)
        )
    return ours


def to_bert_state_dict(ours: dict[str, Tensor], cfg: EncoderConfig) -> dict[str, Tensor]:
    """Our state dict -> BERT names (qkv split back into query, key, value)."""
    bert: dict[str, Tensor] = {}
    for our_name, theirs in name_map(cfg).items():
        tensor = ours[our_name]
        if isinstance(theirs, tuple):
            for name, part in zip(theirs, tensor.chunk(3), strict=True):
                bert[name] = part.contiguous()
        else:
            bert[theirs] = tensor.contiguous()
    return bert


def _strip_model_prefix(bert: dict[str, Tensor]) -> dict[str, Tensor]:
    for prefix in _MODEL_PREFIXES:
        if any(k.startswith(prefix + "embeddings.") for k in bert):
            return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in bert.items()}
    return bert


def read_weights(directory: Path) -> dict[str, Tensor]:
    """model.safetensors, else pytorch_model.bin loaded with weights_only=True."""
    safetensors_path = directory / "model.safetensors"
    if safetensors_path.exists():
        from safetensors.torch import load_file

        return load_file(str(safetensors_path))
    bin_path = directory / "pytorch_model.bin"
    if bin_path.exists():
        return torch.load(str(bin_path), map_location="cpu", weights_only=True)
    raise CheckpointError(f"{directory} has neither model.safetensors nor pytorch_model.bin")


def read_json(path: Path) -> dict[str, Any]:
    """A JSON file that must hold an object ({...}); CheckpointError naming the file if not."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing") from None
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        kinds = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
        raise CheckpointError(
            f"{path}: expected a JSON object {{...}}, got {kinds.get(type(data), 'a number')}"
        )
    return data
