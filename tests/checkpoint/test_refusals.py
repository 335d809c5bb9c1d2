"""A checkpoint seqenc cannot load exactly is refused with everything wrong named at once."""

from __future__ import annotations

import json

import pytest
import torch

from seqenc.checkpoint import FAMILIES, CheckpointError, detect_family
from seqenc.model import SentenceEncoder

from .builders import build_checkpoint

pytest.importorskip("transformers")


def test_unknown_model_type_names_it_and_lists_the_families(tmp_path):
    directory = build_checkpoint(tmp_path / "m", "bert")
    config = json.loads((directory / "config.json").read_text())
    config["model_type"] = "deberta-v2"
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError) as err:
        SentenceEncoder.from_pretrained(directory)
    message = str(err.value)
    assert "'deberta-v2'" in message
    for family in FAMILIES:
        assert family.name in message


def test_family_from_architectures_when_model_type_is_absent():
    assert detect_family({"architectures": ["XLMRobertaForMaskedLM"]}).name == "xlm-roberta"
    assert detect_family({"architectures": ["RobertaModel"]}).name == "roberta"
    assert detect_family({}).name == "bert"
    with pytest.raises(CheckpointError, match="'gpt2'"):
        detect_family({"model_type": "gpt2"})


def test_every_mismatched_tensor_is_listed(tmp_path):
    from safetensors.torch import load_file, save_file

    directory = build_checkpoint(tmp_path / "m", "roberta")
    weights = directory / "model.safetensors"
    tensors = load_file(str(weights))
    del tensors["encoder.layer.1.output.dense.bias"]
    tensors["embeddings.position_embeddings.weight"] = torch.zeros(64, 32)  # RoBERTa needs 66
    tensors["encoder.layer.0.attention.self.key.weight"] = torch.zeros(16, 32)
    tensors["surprise.weight"] = torch.zeros(3)
    save_file(tensors, str(weights))
    with pytest.raises(CheckpointError) as err:
        SentenceEncoder.from_pretrained(directory)
    message = str(err.value)
    assert "roberta" in message
    assert "missing: encoder.layer.1.output.dense.bias" in message
    assert "unexpected: surprise.weight" in message
    assert "embeddings.position_embeddings.weight: checkpoint (64, 32), model (66, 32)" in message
    assert "encoder.layer.0.attention.self.key.weight (16, 32)" in message


def test_config_problems_name_the_file_and_field(tmp_path):
    directory = build_checkpoint(tmp_path / "m", "distilbert")
    config = json.loads((directory / "config.json").read_text())
    del config["hidden_dim"]
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"config\.json.*'hidden_dim'"):
        SentenceEncoder.from_pretrained(directory)


def test_encoder_is_not_put_in_eval_mode_by_the_wrapper(tmp_path):
    loaded = SentenceEncoder.from_pretrained(build_checkpoint(tmp_path / "m", "electra"))
    encoder = loaded.encoder.train()
    reference = SentenceEncoder.from_pretrained(tmp_path / "m").encode(["a cat"])
    wrapped = SentenceEncoder(encoder, loaded.tokenizer, "mean")
    assert encoder.training  # no side effect on what it was given ...
    got = wrapped.encode(["a cat"])  # ... yet encoding runs without dropout
    assert encoder.training
    assert abs(got - reference).max() < 1e-6


def test_rope_scaling_is_refused_not_ignored(tmp_path):
    directory = build_checkpoint(tmp_path / "m", "gte")
    config = json.loads((directory / "config.json").read_text())
    config["rope_parameters"] = {"rope_type": "ntk", "rope_theta": 160000.0, "factor": 2.0}
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="rope scaling 'ntk'"):
        SentenceEncoder.from_pretrained(directory)
