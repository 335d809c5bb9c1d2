"""Task heads on top of the encoder, and the checkpoint names each family gives them.

Two heads, both read from (and written as) Hugging Face task checkpoints:

- ``PairHead`` — the sequence-classification head: first token -> dense -> activation ->
  out. BERT calls it ``pooler.dense`` + ``classifier`` (tanh), RoBERTa/XLM-R
  ``classifier.dense`` + ``classifier.out_proj`` (tanh), ELECTRA the same names with GELU.
- ``MaskedLMHead`` (seqenc.train.mlm) — dense -> activation -> LayerNorm -> tied decoder + bias.
  BERT: ``cls.predictions.transform.*`` and ``cls.predictions.bias``; RoBERTa: ``lm_head.*``.

The encoder's own names live in seqenc.checkpoint; this module only splits the head's tensors
off a checkpoint before the rest goes to the encoder loader. A family joins by adding a row to
``CLASSIFIER_HEADS`` / ``MLM_HEADS``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .checkpoint import (
    CheckpointError,
    Family,
    detect_family,
    from_state_dict,
    read_json,
    read_weights,
)
from .nn.config import EncoderConfig
from .nn.encoder import Encoder


@dataclass(frozen=True)
class ClassifierNames:
    """Checkpoint names of a family's sequence-classification head (no .weight/.bias)."""

    dense: str
    out: str
    activation: str  # tanh | gelu | relu
    dropout_before_dense: bool  # RoBERTa drops out the first token before its dense layer


@dataclass(frozen=True)
class MaskedLMNames:
    """Checkpoint names of a family's masked-LM head (the decoder is tied to the embeddings)."""

    dense: str
    norm: str
    bias: str
    decoder: str  # a copy of the token embeddings, or absent; never a separate matrix here


_ROBERTA_CLASSIFIER = ClassifierNames("classifier.dense", "classifier.out_proj", "tanh", True)
CLASSIFIER_HEADS: dict[str, ClassifierNames] = {
    "bert": ClassifierNames("pooler.dense", "classifier", "tanh", False),
    "roberta": _ROBERTA_CLASSIFIER,
    "xlm-roberta": _ROBERTA_CLASSIFIER,
    "camembert": _ROBERTA_CLASSIFIER,
    "electra": ClassifierNames("classifier.dense", "classifier.out_proj", "gelu", True),
    "distilbert": ClassifierNames("pre_classifier", "classifier", "relu", False),
    "mpnet": _ROBERTA_CLASSIFIER,
}
_ROBERTA_MLM = MaskedLMNames("lm_head.dense", "lm_head.layer_norm", "lm_head.bias",
                             "lm_head.decoder")
MLM_HEADS: dict[str, MaskedLMNames] = {
    "bert": MaskedLMNames("cls.predictions.transform.dense", "cls.predictions.transform.LayerNorm",
                          "cls.predictions.bias", "cls.predictions.decoder"),
    "roberta": _ROBERTA_MLM,
    "xlm-roberta": _ROBERTA_MLM,
    "camembert": _ROBERTA_MLM,
    "distilbert": MaskedLMNames("vocab_transform", "vocab_layer_norm", "vocab_projector.bias",
                                "vocab_projector"),
}
# TensorFlow-era checkpoints name LayerNorm parameters gamma/beta (transformers renames them).
_LEGACY = {".gamma": ".weight", ".beta": ".bias"}


class PairHead(nn.Module):
    """First token (B, D) -> dense -> activation -> dropout -> out: logits (B, C)."""

    def __init__(self, d_model: int, n_labels: int, activation: str = "tanh",
                 dropout: float = 0.1, dropout_before_dense: bool = False):
        super().__init__()
        activations = {"tanh": nn.Tanh, "gelu": nn.GELU, "relu": nn.ReLU}
        if activation not in activations:
            raise ValueError(f"head activation must be one of {', '.join(activations)}, "
                             f"got {activation!r}")
        self.dense = nn.Linear(d_model, d_model)
        self.activation = activations[activation]()
        self.dropout = nn.Dropout(dropout)
        self.dropout_before_dense = dropout_before_dense
        self.out = nn.Linear(d_model, n_labels)

    def forward(self, first: Tensor) -> Tensor:
        if self.dropout_before_dense:
            first = self.dropout(first)
        return self.out(self.dropout(self.activation(self.dense(first))))

    @torch.no_grad()
    def init_weights(self, std: float = 0.02, dense: bool = True) -> PairHead:
        """BERT's initialisation; ``dense=False`` keeps a pretrained pooler's dense layer."""
        layers = (self.dense, self.out) if dense else (self.out,)
        for layer in layers:
            layer.weight.normal_(0.0, std)
            layer.bias.zero_()
        return self


@dataclass
class LoadedEncoder:
    """An encoder loaded from a task checkpoint, with what is left over for its head."""

    family: Family
    config: dict[str, Any]  # config.json as read
    cfg: EncoderConfig
    encoder: Encoder
    leftovers: dict[str, Tensor]  # head tensors, prefix stripped, legacy names fixed


def load_encoder(path: Path, head_names: list[str]) -> LoadedEncoder:
    """config.json + weights -> encoder, with the tensors named ``head_names`` (checkpoint names
    without .weight/.bias, encoder prefix optional) kept aside for the caller's head."""
    config = read_json(path / "config.json")
    family = detect_family(config)
    cfg = family.read_config(config)
    weights = strip_encoder_prefix(fix_legacy_names(read_weights(path)), family)
    leftovers = {}
    for key in list(weights):
        if any(key == name or key.startswith(name + ".") for name in head_names):
            leftovers[key] = weights.pop(key)
    encoder = Encoder(cfg)
    encoder.load_state_dict(from_state_dict(weights, family, encoder.state_dict()), strict=True)
    return LoadedEncoder(family, config, cfg, encoder.eval(), leftovers)


def strip_encoder_prefix(weights: dict[str, Tensor], family: Family) -> dict[str, Tensor]:
    """Drop the task model's encoder prefix ("bert.", "roberta.", ...) where present."""
    for prefix in family.prefixes:
        if any(k.startswith(prefix + "embeddings.") for k in weights):
            return {k[len(prefix):] if k.startswith(prefix) else k: v
                    for k, v in weights.items()}
    return weights


def fix_legacy_names(weights: dict[str, Tensor]) -> dict[str, Tensor]:
    """LayerNorm.gamma/beta -> weight/bias, as transformers does when it loads them."""
    fixed = {}
    for key, value in weights.items():
        for old, new in _LEGACY.items():
            if key.endswith(old):
                key = key[: -len(old)] + new
                break
        fixed[key] = value
    return fixed


def take_linear(leftovers: dict[str, Tensor], name: str, layer: nn.Linear | nn.LayerNorm,
                where: Path) -> None:
    """Copy ``name.weight`` / ``name.bias`` into ``layer``, checking shapes."""
    for part in ("weight", "bias"):
        key = f"{name}.{part}"
        if key not in leftovers:
            raise CheckpointError(f"{where}: the checkpoint has no {key}")
        param = getattr(layer, part)
        tensor = leftovers.pop(key)
        if tuple(tensor.shape) != tuple(param.shape):
            raise CheckpointError(f"{where}: {key} has shape {tuple(tensor.shape)}, the head "
                                  f"needs {tuple(param.shape)}")
        with torch.no_grad():
            param.copy_(tensor)


def classifier_names(family: str, where: Path) -> ClassifierNames:
    if family not in CLASSIFIER_HEADS:
        raise CheckpointError(f"{where}: no sequence-classification head is known for "
                              f"model_type {family!r} (known: {', '.join(CLASSIFIER_HEADS)})")
    return CLASSIFIER_HEADS[family]


def mlm_names(family: str, where: Path) -> MaskedLMNames:
    if family not in MLM_HEADS:
        raise CheckpointError(f"{where}: no masked-LM head is known for model_type {family!r} "
                              f"(known: {', '.join(MLM_HEADS)})")
    return MLM_HEADS[family]
