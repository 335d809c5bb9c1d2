"""CrossEncoder against transformers' *ForSequenceClassification and sentence-transformers'
CrossEncoder on random-weight checkpoints that transformers saved."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bf16_support import gemm_inputs_only, needs_bf16_gemm
from heads_support import write_bert_classifier
from seqenc.checkpoint import CheckpointError
from seqenc.crossencoder import CrossEncoder, RankedDocument
from seqenc.model import default_model_path
from seqenc.pairs import PairTooLong
from seqenc.precision import Bf16Linear

transformers = pytest.importorskip("transformers")
sentence_transformers = pytest.importorskip("sentence_transformers")

PAIRS = [
    ("How many people live in Berlin?", "Berlin has a population of 3.5 million."),
    ("How many people live in Berlin?", "Paris is the capital of France."),
    ("a", ""),
    ("Zoë's café — naïve?", "東京は日本の首都です。 emoji 😀"),
    ("short query", "long document " * 80),  # cut: second side only
    ("long query " * 80, "short document"),  # cut: first side only
    ("long query " * 60, "long document " * 60),  # cut: both
]


@pytest.fixture(scope="module")
def bert1(tmp_path_factory):
    return write_bert_classifier(tmp_path_factory.mktemp("bert1"), num_labels=1)


@pytest.fixture(scope="module")
def bert3(tmp_path_factory):
    return write_bert_classifier(tmp_path_factory.mktemp("bert3"), num_labels=3, seed=1)


def reference_logits(directory, pairs, max_length=64):
    tok = transformers.AutoTokenizer.from_pretrained(str(directory))
    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(directory))
    enc = tok([a for a, _ in pairs], [b for _, b in pairs], padding=True, truncation=True,
              max_length=max_length, return_tensors="pt")
    with torch.no_grad():
        return model.eval()(**enc).logits.numpy(), enc


@pytest.mark.parametrize("fixture", ["bert1", "bert3"])
def test_logits_match_transformers(fixture, request):
    directory = request.getfixturevalue(fixture)
    ours = CrossEncoder.from_pretrained(directory)
    ref, enc = reference_logits(directory, PAIRS)
    got = ours.predict(PAIRS, batch_size=3, raw=True)
    got = got.reshape(len(PAIRS), -1)
    assert np.abs(got - ref).max() <= 1e-5
    # the pair template and longest-first truncation give transformers' ids and token types
    tokenized = ours.tokenizer.encode(PAIRS)
    for i in range(len(PAIRS)):
        n = int(enc["attention_mask"][i].sum())
        assert tokenized.ids[i] == enc["input_ids"][i, :n].tolist()
        assert tokenized.type_ids[i] == enc["token_type_ids"][i, :n].tolist()


def test_scores_and_ranking_match_sentence_transformers(bert1):
    ours = CrossEncoder.from_pretrained(bert1)
    peer = sentence_transformers.CrossEncoder(str(bert1), device="cpu")
    np.testing.assert_allclose(ours.predict(PAIRS), peer.predict(PAIRS), atol=1e-6)
    docs = [b for _, b in PAIRS]
    theirs = peer.rank(PAIRS[0][0], docs, top_k=4, return_documents=True)
    mine = ours.rank(PAIRS[0][0], docs, top_k=4, return_documents=True)
    assert [r.index for r in mine] == [r["corpus_id"] for r in theirs]
    np.testing.assert_allclose([r.score for r in mine], [r["score"] for r in theirs], atol=1e-6)
    assert all(isinstance(r, RankedDocument) and r.text == docs[r.index] for r in mine)
    scores = [r.score for r in ours.rank(PAIRS[0][0], docs)]
    assert scores == sorted(scores, reverse=True) and len(scores) == len(docs)


def test_one_label_is_sigmoid_of_the_logit_and_many_labels_are_raw(bert1, bert3):
    one = CrossEncoder.from_pretrained(bert1)
    raw = one.predict(PAIRS[:3], raw=True)
    np.testing.assert_allclose(one.predict(PAIRS[:3]), 1 / (1 + np.exp(-raw)), rtol=1e-6)
    assert one.predict(PAIRS[0]).shape == ()  # one pair in, one score out
    three = CrossEncoder.from_pretrained(bert3)
    logits = three.predict(PAIRS[:3])
    assert logits.shape == (3, 3)
    np.testing.assert_array_equal(logits, three.predict(PAIRS[:3], raw=True))
    probs = three.predict(PAIRS[:3], apply_softmax=True)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="one-label"):
        three.rank("q", ["d"])


def test_truncation_reports_the_side_that_was_cut(bert1):
    model = CrossEncoder.from_pretrained(bert1)
    _, report = model.predict(PAIRS, return_report=True)
    assert report.truncated == {4: "second", 5: "first", 6: "both"}
    with pytest.raises(PairTooLong, match="pair 1 has .* more than max_length=64"):
        model.predict([PAIRS[0], PAIRS[4]], truncate=False)
    left = model.tokenizer.encode([PAIRS[4]], direction="left").ids[0]
    right = model.tokenizer.encode([PAIRS[4]]).ids[0]
    assert len(left) == len(right) == 64 and left != right
    only_first = model.tokenizer.encode([PAIRS[5]], strategy="only_first")
    assert only_first.cut == {0: "first"}
    with pytest.raises(ValueError, match="only_second"):
        model.tokenizer.encode([PAIRS[5]], strategy="only_second")


def test_saved_cross_encoder_loads_in_transformers_and_sentence_transformers(bert3, tmp_path):
    model = CrossEncoder.from_pretrained(bert3)
    out = model.save_pretrained(tmp_path / "saved")
    again = CrossEncoder.from_pretrained(out)
    np.testing.assert_array_equal(again.predict(PAIRS), model.predict(PAIRS))
    ref, _ = reference_logits(out, PAIRS)
    assert np.abs(ref - model.predict(PAIRS, raw=True)).max() <= 1e-5
    peer = sentence_transformers.CrossEncoder(str(out), device="cpu")
    assert peer.max_seq_length == 64
    np.testing.assert_allclose(peer.predict(PAIRS), model.predict(PAIRS), atol=1e-5)


def test_new_head_on_a_sentence_encoder_keeps_the_pooler_like_transformers(tmp_path):
    torch.manual_seed(0)
    fresh = CrossEncoder.from_encoder("default", num_labels=1, max_length=32)
    out = fresh.save_pretrained(tmp_path / "fresh")
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(
        str(default_model_path()), num_labels=1)
    pooler = hf.bert.pooler.dense.weight.detach()
    torch.testing.assert_close(fresh.model.head.dense.weight.detach(), pooler, rtol=0, atol=0)
    assert fresh.model.head.out.weight.std() > 0  # a new, random output layer
    ref, _ = reference_logits(out, PAIRS, max_length=32)
    assert np.abs(ref[:, 0] - fresh.predict(PAIRS, raw=True)).max() <= 1e-5


def test_plain_encoder_is_refused_with_what_to_do():
    with pytest.raises(CheckpointError, match="no sequence-classification head.*train pairs"):
        CrossEncoder.from_pretrained(default_model_path())


@pytest.mark.parametrize("bad, error", [
    (["not a pair"], TypeError), ([("a",)], TypeError), ([("a", 3)], TypeError),
])
def test_bad_pairs_are_named(bert1, bad, error):
    with pytest.raises(error, match="pair 0"):
        CrossEncoder.from_pretrained(bert1).predict(bad)


@pytest.mark.parametrize("kwargs", [{"top_k": 0}, {"top_k": True}, {"batch_size": 0}])
def test_bad_rank_arguments(bert1, kwargs):
    with pytest.raises(ValueError):
        CrossEncoder.from_pretrained(bert1).rank("q", ["a", "b"], **kwargs)


def test_new_head_is_initialised_like_transformers_from_initializer_range(tmp_path):
    """normal(0, initializer_range) weights and zero biases for every new head layer."""
    cfg = transformers.BertConfig(vocab_size=30522, hidden_size=64, num_hidden_layers=1,
                                  num_attention_heads=4, intermediate_size=64,
                                  max_position_embeddings=64, initializer_range=0.5)
    transformers.BertModel(cfg, add_pooling_layer=False).save_pretrained(tmp_path)
    import shutil

    shutil.copy(default_model_path() / "tokenizer.json", tmp_path / "tokenizer.json")
    torch.manual_seed(0)
    head = CrossEncoder.from_encoder(tmp_path, num_labels=2).model.head
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(str(tmp_path),
                                                                         num_labels=2)
    # 4,096 and 128 draws: their standard deviations are within a few percent of 0.5.
    for ours, theirs in ((head.dense, hf.bert.pooler.dense), (head.out, hf.classifier)):
        assert abs(ours.weight.std().item() - 0.5) < 0.1
        assert abs(theirs.weight.std().item() - 0.5) < 0.1
        assert not ours.bias.any()


def test_bfloat16_scores_stay_as_close_to_float32_as_transformers_bf16(bert1):
    model = CrossEncoder.from_pretrained(bert1)
    ours32 = model.predict(PAIRS, raw=True)
    ours16 = model.predict(PAIRS, raw=True, dtype="bfloat16")
    ref32, enc = reference_logits(bert1, PAIRS)
    hf16 = transformers.AutoModelForSequenceClassification.from_pretrained(str(bert1)).to(
        torch.bfloat16).eval()
    with torch.no_grad():
        ref16 = hf16(**enc).logits.float().numpy()
    ours_error = np.abs(ours16 - ours32).max()
    assert 0 < ours_error <= 2 * np.abs(ref16 - ref32).max()
    assert ours16.dtype == np.float32
    assert next(model.model.parameters()).dtype == torch.float32  # the original stays fp32
    ranked = model.rank(PAIRS[0][0], [b for _, b in PAIRS[:3]], dtype="bfloat16")
    assert len(ranked) == 3
    with pytest.raises(ValueError, match="dtype"):
        model.predict(PAIRS[:1], dtype="float16")



def test_bfloat16_copy_follows_training(bert1):
    """predict(dtype="bfloat16") keeps its bf16 copy while the weights stay; after a training
    step it scores with the new weights, as a fresh model of them does."""
    from seqenc.crossencoder import _pad

    model = CrossEncoder.from_pretrained(bert1)
    before = model.predict(PAIRS, raw=True, dtype="bfloat16")
    kept = model.model_for("bfloat16")
    assert model.model_for("bfloat16") is kept
    tokenized = model.tokenizer.encode(PAIRS)
    optimizer = torch.optim.SGD(model.model.parameters(), lr=0.1)
    model.model.train()
    model.model(*_pad(tokenized.ids, tokenized.type_ids, model.tokenizer.pad_id)).sum().backward()
    optimizer.step()
    model.model.eval()
    after = model.predict(PAIRS, raw=True, dtype="bfloat16")
    assert model.model_for("bfloat16") is not kept
    assert np.abs(after - before).max() > 1e-2
    fresh = CrossEncoder.from_pretrained(bert1)
    fresh.model.load_state_dict(model.model.state_dict())
    np.testing.assert_array_equal(after, fresh.predict(PAIRS, raw=True, dtype="bfloat16"))

@needs_bf16_gemm
@pytest.mark.parametrize("fixture", ["bert1", "bert3"])
def test_bfloat16_rounds_only_the_matmul_inputs(fixture, request):
    """Where our bf16 GEMM runs, the bf16 model is float32 but for its matmuls' inputs
    (precision.bf16_encoder), the head's included. Its logits' distance to float32 measured
    0.28% (bert1) and 0.04% (bert3) of the largest logit, the model cast to bf16's 0.83% and
    0.37%: bound 0.5%."""
    model = CrossEncoder.from_pretrained(request.getfixturevalue(fixture))
    bf16 = model.model_for("bfloat16")
    gemm_inputs_only(bf16, model.model)
    assert isinstance(bf16.head.dense, Bf16Linear)
    tokenized = model.tokenizer.encode(PAIRS)
    got = model.logits_ids(tokenized.ids, tokenized.type_ids, dtype="bfloat16")
    fp32 = model.logits_ids(tokenized.ids, tokenized.type_ids)
    assert got.dtype == torch.float32
    assert (got - fp32).abs().max() <= 0.005 * fp32.abs().max()
