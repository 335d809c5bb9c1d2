"""Every family against transformers: a tiny random model saved by transformers, loaded by
seqenc, hidden states and pooled vectors compared (fp32, <= 1e-5) through each execution path,
padded (a mixed-length batch) and unpadded (one text at a time); then the whole pipeline
(tokenizer, the checkpoint's pooling config, normalisation) against sentence-transformers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqenc.model import SentenceEncoder
from seqenc.nn import kernels
from seqenc.pooling import pool

from .builders import SPECS, TEXTS, build_checkpoint

transformers = pytest.importorskip("transformers")

FAMILIES = list(SPECS)
TOLERANCE = 1e-5
# How the encoder may run: our packed C kernels (where built), packed PyTorch, and the
# plain padded path that also returns attention weights.
PATHS = ["kernels", "packed-torch", "plain"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {family: build_checkpoint(root / family, family) for family in FAMILIES}


def run_ours(model: SentenceEncoder, input_ids, keep, path: str, monkeypatch):
    monkeypatch.setattr(kernels, "ENABLED", kernels.ENABLED and path == "kernels")
    with torch.inference_mode():
        out = model.encoder(input_ids, keep, output_attentions=(path == "plain"))
    return out.last_hidden_state


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("family", FAMILIES)
def test_hidden_states_and_pooling_match_transformers(checkpoints, family, path, monkeypatch):
    directory = checkpoints[family]
    ours = SentenceEncoder.from_pretrained(directory)
    assert ours.family == family
    theirs = transformers.AutoModel.from_pretrained(directory).eval()
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    batch = ours.tokenize(TEXTS)  # mixed lengths, right-padded
    keep = batch.attention_mask
    # Special tokens, templates and the pad id come from the files, as transformers reads them.
    hf_batch = hf_tokenizer(TEXTS, padding=True, truncation=True, max_length=ours.max_seq_length,
                            return_tensors="pt")
    assert torch.equal(hf_batch["attention_mask"].bool(), keep)
    assert torch.equal(hf_batch["input_ids"], batch.input_ids)
    with torch.no_grad():
        want = theirs(input_ids=batch.input_ids, attention_mask=keep.long()).last_hidden_state
    got = run_ours(ours, batch.input_ids, keep, path, monkeypatch)
    assert (got[keep] - want[keep]).abs().max().item() <= TOLERANCE
    for mode in ("mean", "cls", "max"):
        assert (pool(got, keep, mode) - pool(want, keep, mode)).abs().max().item() <= TOLERANCE
    for i in range(len(TEXTS)):  # unpadded: each text alone
        row = batch.input_ids[i : i + 1, : int(keep[i].sum())]
        with torch.no_grad():
            want_row = theirs(input_ids=row).last_hidden_state
        got_row = run_ours(ours, row, torch.ones_like(row, dtype=torch.bool), path, monkeypatch)
        assert (got_row - want_row).abs().max().item() <= TOLERANCE


@pytest.mark.parametrize("family", FAMILIES)
def test_encode_matches_sentence_transformers(tmp_path, family):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    pooling = {"mode": "cls", "normalize": True} if family in ("roberta", "electra") else \
        {"mode": "mean", "normalize": False}
    directory = build_checkpoint(tmp_path / family, family, seed=1, pooling=pooling)
    ours = SentenceEncoder.from_pretrained(directory)
    assert (ours.pooling, ours.normalize) == (pooling["mode"], pooling["normalize"])
    peer = sentence_transformers.SentenceTransformer(str(directory), device="cpu")
    want = peer.encode(TEXTS, convert_to_numpy=True)
    got = ours.encode(TEXTS)
    np.testing.assert_allclose(got, want, atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_save_pretrained_keeps_the_family(checkpoints, tmp_path, family):
    ours = SentenceEncoder.from_pretrained(checkpoints[family])
    saved = ours.save_pretrained(tmp_path / "saved")
    again = SentenceEncoder.from_pretrained(saved)
    assert again.family == family
    theirs = transformers.AutoModel.from_pretrained(saved).eval()
    batch = ours.tokenize(TEXTS)
    with torch.no_grad():
        want = theirs(input_ids=batch.input_ids,
                      attention_mask=batch.attention_mask.long()).last_hidden_state
    np.testing.assert_array_equal(again.encode(TEXTS), ours.encode(TEXTS))
    keep = batch.attention_mask
    got = ours.encoder(batch.input_ids, keep).last_hidden_state
    assert (got[keep] - want[keep]).abs().max().item() <= TOLERANCE


@pytest.mark.parametrize("family", FAMILIES)
def test_fine_tuning_a_loaded_family_saves_that_family(checkpoints, tmp_path, family):
    from seqenc.train.classifier import TextClassifier

    classifier = TextClassifier.from_encoder(SentenceEncoder.from_pretrained(checkpoints[family]),
                                             ["neg", "pos"])
    model = classifier.model.train()
    batch = classifier.tokenizer.pad(classifier.tokenizer.encode(TEXTS).ids)
    labels = torch.tensor([0, 1] * (len(TEXTS) // 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)

    def eval_loss() -> float:
        model.eval()
        with torch.no_grad():
            logits = model(batch.input_ids, batch.attention_mask)
        model.train()
        return torch.nn.functional.cross_entropy(logits, labels).item()

    before = eval_loss()
    torch.manual_seed(0)
    for _ in range(5):  # training mode: dropout on, gradients through every family's modules
        loss = torch.nn.functional.cross_entropy(model(batch.input_ids, batch.attention_mask),
                                                 labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert eval_loss() < before
    classifier.save_pretrained(tmp_path / "tuned")
    assert model.training  # saving leaves training mode alone
    tuned = SentenceEncoder.from_pretrained(tmp_path / "tuned")
    assert tuned.family == family
    theirs = transformers.AutoModel.from_pretrained(tmp_path / "tuned").eval()
    keep = batch.attention_mask
    with torch.no_grad():
        want = theirs(input_ids=batch.input_ids, attention_mask=keep.long()).last_hidden_state
    got = tuned.encoder(batch.input_ids, keep).last_hidden_state
    assert (got[keep] - want[keep]).abs().max().item() <= TOLERANCE


@pytest.mark.parametrize("family", ["roberta", "distilbert"])
def test_cli_info_and_attention_on_a_family(checkpoints, tmp_path, family):
    pytest.importorskip("matplotlib")
    import json

    from click.testing import CliRunner

    from seqenc import cli

    runner = CliRunner()
    info = runner.invoke(cli.main, ["info", str(checkpoints[family]), "--json"])
    assert info.exit_code == 0, info.output
    facts = json.loads(info.output)
    assert facts["family"] == family and facts["layers"] == 2
    assert facts["positions"].startswith("learned absolute")
    png = tmp_path / "attention.png"
    drawn = runner.invoke(cli.main, ["attention", "the cat sat", "-o", str(png),
                                     "--model", str(checkpoints[family])])
    assert drawn.exit_code == 0, drawn.output
    assert png.stat().st_size > 0
