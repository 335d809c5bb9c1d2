"""Loading BERT-family checkpoints: ours against transformers' BertModel and
sentence-transformers on checkpoints the tests build themselves (random weights)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from seqenc.checkpoint import CheckpointError, config_from_hf
from seqenc.model import SentenceEncoder, default_model_path

from .builders import write_sentence_modules

transformers = pytest.importorskip("transformers")
sentence_transformers = pytest.importorskip("sentence_transformers")

TEXTS = [
    "A man is playing a guitar.",
    "",
    "Zoë's café serves crème brûlée — naïvely délicieux!",
    "東京は日本の首都です。",
    "emoji 😀🚀 and symbols ∑ ≠ ∞",
    "word " * 400,  # truncated at max_seq_length
]


def write_checkpoint(
    directory: Path,
    *,
    hidden: int = 48,
    layers: int = 2,
    heads: int = 4,
    ff: int = 96,
    pooling: str = "mean",
    normalize: bool = False,
    max_seq_length: int = 64,
    act: str = "gelu",
    seed: int = 0,
    weights: str = "safetensors",
) -> Path:
    """A random BERT saved by transformers, in the sentence-transformers layout."""
    torch.manual_seed(seed)
    cfg = transformers.BertConfig(
        vocab_size=30522, hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=heads, intermediate_size=ff, hidden_act=act,
        max_position_embeddings=128, type_vocab_size=2,
    )
    model = transformers.BertModel(cfg, add_pooling_layer=True).eval()
    # BERT init leaves LayerNorm at identity and biases at zero: randomise them so a
    # mix-up between any two tensors shows.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(directory, safe_serialization=(weights == "safetensors"))
    shutil.copy(default_model_path() / "tokenizer.json", directory / "tokenizer.json")
    write_sentence_modules(directory, pooling, normalize, max_seq_length)
    return directory


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(axis=1).min())


@pytest.mark.parametrize(
    "options",
    [
        dict(pooling="mean", normalize=True),
        dict(pooling="cls", normalize=False, hidden=64, layers=3, heads=8, ff=128),
        dict(pooling="max", normalize=False, act="relu"),
        dict(pooling="mean", normalize=False, weights="bin", act="gelu_new"),
    ],
    ids=["mean-normalize", "cls-bigger", "max-relu", "pytorch_model.bin-gelu_new"],
)
def test_random_checkpoints_match_sentence_transformers(tmp_path, options):
    path = write_checkpoint(tmp_path, **options)
    ours = SentenceEncoder.from_pretrained(path)
    assert ours.pooling == options["pooling"] and ours.normalize == options["normalize"]
    peer = sentence_transformers.SentenceTransformer(str(path), device="cpu")
    expected = peer.encode(TEXTS, convert_to_numpy=True)
    got = ours.encode(TEXTS)
    assert got.shape == expected.shape
    assert min_cosine(got, expected) >= 0.99999
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_token_states_and_token_types_match_bert_model(tmp_path):
    path = write_checkpoint(tmp_path, layers=3)
    ours = SentenceEncoder.from_pretrained(path)
    bert = transformers.BertModel.from_pretrained(path).eval()
    batch = ours.tokenize(TEXTS)
    token_types = torch.randint(0, 2, batch.input_ids.shape)
    with torch.no_grad():
        want = bert(input_ids=batch.input_ids, attention_mask=batch.attention_mask.long(),
                    token_type_ids=token_types).last_hidden_state
        got = ours.encoder(batch.input_ids, batch.attention_mask,
                           token_type_ids=token_types).last_hidden_state
    keep = batch.attention_mask
    assert (got[keep] - want[keep]).abs().max().item() < 1e-4


def test_task_model_prefix_is_stripped_and_heads_ignored(tmp_path):
    torch.manual_seed(1)
    cfg = transformers.BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1,
                                  num_attention_heads=4, intermediate_size=64)
    mlm = transformers.BertForMaskedLM(cfg).eval()  # keys are "bert.*" and "cls.*"
    mlm.save_pretrained(tmp_path)
    shutil.copy(default_model_path() / "tokenizer.json", tmp_path / "tokenizer.json")
    ours = SentenceEncoder.from_pretrained(tmp_path)
    batch = ours.tokenize(["prefix test"])
    with torch.no_grad():
        want = mlm.bert(input_ids=batch.input_ids).last_hidden_state
        got = ours.encoder(batch.input_ids, batch.attention_mask).last_hidden_state
    assert (got - want).abs().max().item() < 1e-4


def test_mismatched_checkpoint_lists_every_problem(tmp_path):
    path = write_checkpoint(tmp_path)
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(path / "model.safetensors"))
    del tensors["encoder.layer.1.output.dense.bias"]
    tensors["encoder.layer.0.intermediate.dense.weight"] = torch.zeros(7, 48)
    tensors["surprise.weight"] = torch.zeros(3)
    save_file(tensors, str(path / "model.safetensors"))
    with pytest.raises(CheckpointError) as err:
        SentenceEncoder.from_pretrained(path)
    message = str(err.value)
    assert "missing: encoder.layer.1.output.dense.bias" in message
    assert "unexpected: surprise.weight" in message
    assert ("encoder.layer.0.intermediate.dense.weight: checkpoint (7, 48), model (96, 48)"
            in message)


@pytest.mark.parametrize(
    "change, field",
    [
        ({"model_type": "gpt2"}, "model_type"),
        ({"hidden_act": "swish"}, "hidden_act"),
        ({"position_embedding_type": "relative_key"}, "position_embedding_type"),
        ({"hidden_size": 30}, "d_model"),
    ],
)
def test_unsupported_configs_are_named(change, field):
    base = json.loads((default_model_path() / "config.json").read_text())
    with pytest.raises(ValueError, match=field):
        config_from_hf({**base, **change})


def test_missing_config_field_is_named():
    base = json.loads((default_model_path() / "config.json").read_text())
    del base["intermediate_size"]
    with pytest.raises(CheckpointError, match="intermediate_size"):
        config_from_hf(base)


def test_missing_files_are_named(tmp_path):
    path = write_checkpoint(tmp_path)
    (path / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match="tokenizer.json"):
        SentenceEncoder.from_pretrained(path)
    (path / "model.safetensors").unlink()
    shutil.copy(default_model_path() / "tokenizer.json", path / "tokenizer.json")
    with pytest.raises(CheckpointError, match="model.safetensors"):
        SentenceEncoder.from_pretrained(path)


def test_save_pretrained_round_trips_through_sentence_transformers(tmp_path):
    source = write_checkpoint_dir(tmp_path / "src", pooling="cls", normalize=True)
    ours = SentenceEncoder.from_pretrained(source)
    saved = ours.save_pretrained(tmp_path / "saved")
    again = SentenceEncoder.from_pretrained(saved)
    peer = sentence_transformers.SentenceTransformer(str(saved), device="cpu")
    np.testing.assert_array_equal(again.encode(TEXTS), ours.encode(TEXTS))
    assert min_cosine(peer.encode(TEXTS), ours.encode(TEXTS)) >= 0.99999


def write_checkpoint_dir(directory: Path, **options) -> Path:
    directory.mkdir(parents=True)
    return write_checkpoint(directory, **options)
