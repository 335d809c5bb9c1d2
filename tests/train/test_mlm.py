"""Masked-LM: BERT's masking statistics, the tied head, and a tiny pretraining run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from seqenc.model import SentenceEncoder
from seqenc.nn.config import EncoderConfig
from seqenc.nn.encoder import Encoder
from seqenc.train.mlm import IGNORE, MaskedLanguageModel, Masker
from seqenc.train.recipes import MlmJob, train_mlm

from .conftest import SIZES
from .helpers import config, quiet

PAD, CLS, SEP, MASK = 0, 2, 3, 4
VOCAB = 100


def batch(rows=400, length=50, seed=0):
    """Random sentences [CLS] w... [SEP] [PAD]..., of random lengths."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (rows, length), generator=g)
    lengths = torch.randint(3, length + 1, (rows,), generator=g)
    keep = torch.arange(length)[None, :] < lengths[:, None]
    ids[:, 0] = CLS
    ids[torch.arange(rows), lengths - 1] = SEP
    ids[~keep] = PAD
    return ids, keep


def test_masking_follows_bert_80_10_10_and_spares_specials():
    ids, keep = batch()
    masker = Masker(VOCAB, MASK, [PAD, 1, CLS, SEP])
    masked, labels = masker(ids, keep, torch.Generator().manual_seed(1))
    selected = labels != IGNORE
    special = ~keep | (ids == CLS) | (ids == SEP)
    n_eligible = int((~special).sum())
    assert not (selected & special).any()
    assert torch.equal(masked[special], ids[special])  # specials and padding never touched
    assert torch.equal(labels[selected], ids[selected])  # labels are the original tokens
    assert torch.equal(masked[~selected], ids[~selected])  # unselected tokens unchanged
    n = int(selected.sum())
    assert abs(n / n_eligible - 0.15) < 0.01, n / n_eligible
    to_mask = (masked == MASK) & selected
    changed = (masked != ids) & selected & ~to_mask
    kept = (masked == ids) & selected
    shares = [int(x.sum()) / n for x in (to_mask, changed, kept)]
    # ~1,600 selected tokens: 3 standard deviations of a 10% share is about 2.2 points.
    assert abs(shares[0] - 0.8) < 0.03 and abs(shares[1] - 0.1) < 0.025, shares
    assert abs(shares[2] - 0.1) < 0.025, shares  # includes random draws of the same token (~1%)
    inserted = masked[changed]
    assert inserted.min() >= 5  # random replacements are never special tokens
    again, _ = masker(ids, keep, torch.Generator().manual_seed(1))
    assert torch.equal(again, masked)  # the same generator seed masks the same way


def test_head_is_tied_to_the_token_embeddings():
    cfg = EncoderConfig(vocab_size=VOCAB, **SIZES)
    model = MaskedLanguageModel(Encoder(cfg)).init_weights()
    ids, keep = batch(rows=4, length=10)
    masked, labels = Masker(VOCAB, MASK, [PAD, CLS, SEP])(ids, keep,
                                                           torch.Generator().manual_seed(0))
    logits, targets = model(masked, keep, labels)
    assert logits.shape == (int((labels != IGNORE).sum()), VOCAB)
    torch.nn.functional.cross_entropy(logits, targets).backward()
    assert model.encoder.embeddings.token.weight.grad is not None
    names = [n for n, _ in model.named_parameters()]
    assert not any("decoder" in n for n in names)  # no second copy of the embedding table
    assert sum(p.numel() for p in model.head.parameters()) == 32 * 32 + 32 + 2 * 32 + VOCAB


def test_tiny_pretraining_run_learns_and_loads_as_an_encoder(data_dir, tmp_path):
    out = tmp_path / "mlm"
    sizes = tmp_path / "sizes.json"
    sizes.write_text(json.dumps({**SIZES, "dropout": 0.1}))
    job = MlmJob(corpus=str(data_dir / "corpus.txt"), output=str(out), config=str(sizes),
                 tokenizer="train", vocab_size=120, max_length=32, dev_fraction=0.25)
    result = train_mlm(job, config(epochs=12, lr=5e-3, eval_every=60), echo=quiet)
    records = [json.loads(line) for line in open(out / "metrics.jsonl")]
    train = [r["loss"] for r in records if r["event"] == "train"]
    evals = [r for r in records if r["event"] == "eval"]
    assert np.mean(train[-10:]) < 0.5 * np.mean(train[:5]), (train[:5], train[-10:])
    assert evals[-1]["loss"] < evals[0]["loss"]
    last = result.best_metrics
    assert last["masked_tokens"] > 30
    # Chance is 1/120 and always guessing the commonest word ~1/18: > 0.25 needs the context.
    assert last["masked_accuracy"] > 0.25
    assert last["perplexity"] == pytest.approx(np.exp(last["loss"]), rel=1e-6)
    assert (out / "mlm_head.safetensors").exists() and (out / "tokenizer.json").exists()
    encoder = SentenceEncoder.from_pretrained(out)
    vectors = encoder.encode(["the movie was good", "awful"])
    assert vectors.shape == (2, 32) and np.isfinite(vectors).all()
    from seqenc.train.mlm import TextMaskedLM

    mlm = TextMaskedLM.from_pretrained(out)
    assert mlm.tokenizer.tokenizer.token_to_id("[MASK]") == MASK


def test_roberta_tokenizer_masks_with_mask_and_pads_with_pad(data_dir, tmp_path):
    """A RoBERTa-style tokenizer and model saved by transformers (<s> <pad> </s> <unk> <mask>,
    no [MASK]): the masker uses <mask>, the new encoder pads with <pad> (id 1, not 0), and the
    run's output loads as a sparse encoder."""
    transformers = pytest.importorskip("transformers")
    from tests.checkpoint.builders import SPECS, build_tokenizer

    from seqenc.sparse import SparseEncoder
    from seqenc.tokenizer import TextTokenizer

    tok, names = build_tokenizer("bpe")
    roberta = tmp_path / "roberta"
    hf_tok = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, **names)
    hf_tok.save_pretrained(roberta)
    transformers.RobertaForMaskedLM(transformers.RobertaConfig(
        vocab_size=tok.get_vocab_size(), **SPECS["roberta"][1])).save_pretrained(roberta)
    assert tok.token_to_id("[MASK]") is None
    masker = Masker.for_tokenizer(TextTokenizer.from_file(roberta / "tokenizer.json", 32, 1),
                                  tok.get_vocab_size(), directory=roberta)
    assert masker.mask_id == hf_tok.mask_token_id == tok.token_to_id("<mask>")
    assert set(hf_tok.all_special_ids) <= set(masker.special_ids.tolist())

    sizes = tmp_path / "sizes.json"
    sizes.write_text(json.dumps(SIZES))
    out = tmp_path / "mlm"
    job = MlmJob(corpus=str(data_dir / "corpus.txt"), output=str(out), config=str(sizes),
                 tokenizer=str(roberta), max_length=32, dev_fraction=0.25)
    result = train_mlm(job, config(max_steps=3, eval_every=3), echo=quiet)
    assert np.isfinite(result.best_metrics["loss"])
    assert json.loads((out / "config.json").read_text())["pad_token_id"] == 1
    sparse = SparseEncoder.from_pretrained(out)
    assert sparse.tokenizer.pad_id == 1 and len(sparse.encode("the movie was good")) > 0


def test_mask_token_named_only_by_the_special_tokens_map(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    from seqenc.tokenizer import TextTokenizer

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(["the movie was good", "an awful film"], trainers.WordPieceTrainer(
        vocab_size=60, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "<hole>"]))
    tok.save(str(tmp_path / "tokenizer.json"))
    text_tok = TextTokenizer.from_file(tmp_path / "tokenizer.json", 16, 0)
    with pytest.raises(ValueError, match="no mask token"):
        Masker.for_tokenizer(text_tok, tok.get_vocab_size(), directory=tmp_path)
    (tmp_path / "special_tokens_map.json").write_text(
        json.dumps({"mask_token": {"content": "<hole>", "special": True}}))
    masker = Masker.for_tokenizer(text_tok, tok.get_vocab_size(), directory=tmp_path)
    assert masker.mask_id == tok.token_to_id("<hole>") == 4
