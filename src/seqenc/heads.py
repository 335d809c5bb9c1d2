"""Task heads on top of the encoder, and how their tensors are split off a checkpoint.

- ``PairHead`` — the sequence-classification head: first token -> dense -> activation ->
  out (BERT's pooler + classifier, RoBERTa's dense + tanh + out_proj, ...).
- ``MaskedLMHead`` (seqenc.train.mlm) — dense -> activation -> LayerNorm -> tied decoder + bias.

Each family's names for them are in seqenc.checkpoint.heads (``CLASSIFIER_HEADS``,
``MLM_HEADS``), beside the encoder's own names; this module only splits the head's tensors
off a checkpoint before the rest goes to the encoder loader.
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
from .checkpoint.heads import (  # noqa: F401 - the head name tables, re-exported
    CLASSIFIER_HEADS,
    MLM_HEADS,
    ClassifierNames,
    MaskedLMNames,
    classifier_names,
    mlm_names,
)
from .nn.config import EncoderConfig
from .nn.encoder import Encoder

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
    """Copy ``name.weight`` / ``name.bias`` into ``layer``, checking shapes (a layer built
    without a bias takes none; a bias left over is refused by the caller)."""
    for part in ("weight", "bias") if layer.bias is not None else ("weight",):
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
