"""Classifier directories: save -> load gives the same predictions, and stay sentence encoders."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqenc.checkpoint import CheckpointError
from seqenc.model import SentenceEncoder
from seqenc.nn.config import EncoderConfig
from seqenc.nn.encoder import Encoder
from seqenc.pooling import pool
from seqenc.tokenizer import TextTokenizer
from seqenc.train.classifier import TextClassifier

from .conftest import SIZES

TEXTS = ["the movie was good", "awful plot", "a film", "it was really quite boring and dull"]


def tiny_classifier(tokenizer_file, labels=("neg", "pos", "meh")) -> TextClassifier:
    torch.manual_seed(0)
    tokenizer = TextTokenizer.from_file(tokenizer_file, 32, pad_id=0)
    cfg = EncoderConfig(vocab_size=tokenizer.vocab_size, **SIZES)
    encoder = SentenceEncoder(Encoder(cfg).init_weights(), tokenizer, "mean", normalize=True)
    classifier = TextClassifier.from_encoder(encoder, list(labels))
    with torch.no_grad():  # a head that is not near zero, so predictions differ per text
        classifier.model.head.out.weight.normal_(0, 1.0)
    return classifier


def test_round_trip_gives_the_same_predictions(tokenizer_file, tmp_path):
    classifier = tiny_classifier(tokenizer_file)
    before = classifier.predict_proba(TEXTS)
    classifier.save_pretrained(tmp_path / "clf")
    loaded = TextClassifier.from_pretrained(tmp_path / "clf")
    assert loaded.labels == ["neg", "pos", "meh"]
    assert not loaded.model.training
    np.testing.assert_array_equal(loaded.predict_proba(TEXTS), before)
    np.testing.assert_allclose(before.sum(axis=1), 1.0, rtol=1e-6)
    assert np.ptp(before, axis=0).max() > 1e-4  # texts get different probabilities
    assert loaded.predict(TEXTS) == [loaded.labels[i] for i in before.argmax(axis=1)]
    for name, p in classifier.model.state_dict().items():
        assert torch.equal(p, loaded.model.state_dict()[name]), name


def test_classifier_directory_is_a_sentence_encoder(tokenizer_file, tmp_path):
    classifier = tiny_classifier(tokenizer_file)
    classifier.save_pretrained(tmp_path / "clf")
    encoder = SentenceEncoder.from_pretrained(tmp_path / "clf")
    assert encoder.normalize and encoder.pooling == "mean"
    vectors = encoder.encode(TEXTS, normalize=False)
    batch = classifier.tokenizer.pad(classifier.tokenizer.encode(TEXTS).ids)
    with torch.no_grad():
        hidden = classifier.model.encoder(batch.input_ids, batch.attention_mask)
        pooled = pool(hidden.last_hidden_state, batch.attention_mask, "mean")
    np.testing.assert_allclose(vectors, pooled.numpy(), atol=1e-5)


def test_save_keeps_the_training_mode(tokenizer_file, tmp_path):
    classifier = tiny_classifier(tokenizer_file)
    classifier.model.train()
    classifier.save_pretrained(tmp_path / "clf")
    assert all(m.training for m in classifier.model.modules())


def test_plain_encoder_directory_is_not_a_classifier(tokenizer_file, tmp_path):
    classifier = tiny_classifier(tokenizer_file)
    classifier.sentence_encoder().save_pretrained(tmp_path / "enc")
    with pytest.raises(CheckpointError, match="not a classifier directory"):
        TextClassifier.from_pretrained(tmp_path / "enc")


def test_default_model_round_trip(tmp_path):
    """The real all-MiniLM-L6-v2 with a new head: saved and reloaded, same probabilities."""
    try:
        encoder = SentenceEncoder.from_pretrained("default")
    except FileNotFoundError as e:
        pytest.skip(f"default model not installed: {e}")
    torch.manual_seed(0)
    classifier = TextClassifier.from_encoder(encoder, ["0", "1"])
    before = classifier.predict_proba(TEXTS)
    classifier.save_pretrained(tmp_path / "clf")
    after = TextClassifier.from_pretrained(tmp_path / "clf").predict_proba(TEXTS)
    np.testing.assert_array_equal(after, before)
    reloaded = SentenceEncoder.from_pretrained(tmp_path / "clf")
    np.testing.assert_allclose(reloaded.encode(TEXTS), encoder.encode(TEXTS), atol=1e-6)
