"""Small builders shared by the training tests."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from seqenc.train.config import TrainConfig
from seqenc.train.recipes import ClassifyJob

from .conftest import SIZES


def job(data_dir: Path, tokenizer_file: Path, output: Path, sizes: dict | None = None,
        **overrides) -> ClassifyJob:
    """A from-scratch classification job on the tiny data with the tiny encoder."""
    config = data_dir / "sizes.json"
    if sizes is not None:
        config = output.parent / f"{output.name}-sizes.json"
        config.write_text(json.dumps({**SIZES, **sizes}))
    return ClassifyJob(train=str(data_dir / "train.tsv"), dev=str(data_dir / "dev.tsv"),
                       output=str(output), config=str(config), tokenizer=str(tokenizer_file),
                       max_length=32, **overrides)


def config(**overrides) -> TrainConfig:
    base = dict(epochs=2, batch_size=16, lr=3e-3, warmup_ratio=0.1, log_every=1, seed=0)
    return TrainConfig(**{**base, **overrides})


def weights(directory: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a saved classifier: encoder and head."""
    state = load_file(str(directory / "model.safetensors"))
    state.update({f"head.{k}": v for k, v in
                  load_file(str(directory / "classifier.safetensors")).items()})
    return state


def quiet(_message: str) -> None:
    pass
