"""The one place that knows Hugging Face and sentence-transformers names.

    configs.py   config.json <-> EncoderConfig, per family
    families.py  the families, how one is detected, and each one's state-dict name table
    weights.py   tensors between their names and ours; refusals that list every mismatch
    layout.py    the model directory: which files, the pooling config, max_seq_length
"""

from __future__ import annotations

from typing import Any

from ..nn.config import EncoderConfig
from .configs import write_bert
from .families import (
    BY_NAME,
    FAMILIES,
    CheckpointError,
    Family,
    detect_family,
    family_for_config,
    supported,
)
from .layout import Checkpoint, read_checkpoint, read_sentence_modules, write_checkpoint
from .weights import from_state_dict, name_map, read_json, read_weights, to_state_dict

SUPPORTED_MODEL_TYPES = tuple(t for f in FAMILIES for t in f.model_types)


def config_from_hf(config: dict[str, Any]) -> EncoderConfig:
    """A Hugging Face config.json dict of any supported family -> EncoderConfig."""
    return detect_family(config).read_config(config)


def config_to_bert(cfg: EncoderConfig) -> dict[str, Any]:
    """EncoderConfig -> a BertConfig dict; CheckpointError if cfg is not BERT-shaped."""
    return write_bert(cfg)


__all__ = [
    "BY_NAME", "FAMILIES", "SUPPORTED_MODEL_TYPES", "Checkpoint", "CheckpointError", "Family",
    "config_from_hf", "config_to_bert", "detect_family",
    "family_for_config", "from_state_dict", "name_map", "read_checkpoint", "read_json",
    "read_sentence_modules", "read_weights", "supported", "to_state_dict", "write_checkpoint",
]
