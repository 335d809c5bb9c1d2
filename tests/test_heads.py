"""Task heads of every family with one: sequence-classification logits and masked-LM logits
against transformers' own *ForSequenceClassification / *ForMaskedLM (random weights)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from heads_support import write_family_task_model
from seqenc.crossencoder import CrossEncoder
from seqenc.sparse import SparseEncoder

transformers = pytest.importorskip("transformers")

PAIRS = [("A man is playing a guitar.", "The cat sat on the mat."),
         ("Zoë's café", "東京は日本の首都です。"), ("the lazy dog " * 20, "cat")]
TEXTS = ["A man is playing a guitar.", "Zoë's café serves crème brûlée", "the lazy dog " * 20]


def _reference(directory, task, *inputs):
    """transformers' logits. The test tokenizers are plain PreTrainedTokenizerFast, which leave
    token types out unless asked: ask where the family has them, as BertTokenizerFast does."""
    tok = transformers.AutoTokenizer.from_pretrained(str(directory))
    family = transformers.AutoConfig.from_pretrained(str(directory)).model_type
    auto = (transformers.AutoModelForSequenceClassification if task == "classification"
            else transformers.AutoModelForMaskedLM)
    model = auto.from_pretrained(str(directory)).eval()
    enc = tok(*inputs, padding=True, truncation=True, max_length=40, return_tensors="pt",
              return_token_type_ids=family in ("bert", "electra"))
    with torch.no_grad():
        return model(**enc).logits, enc


@pytest.mark.parametrize("family", ["bert", "roberta", "xlm-roberta", "electra", "distilbert",
                                    "mpnet"])
@pytest.mark.parametrize("num_labels", [1, 3])
def test_sequence_classification_logits(tmp_path, family, num_labels):
    directory = write_family_task_model(tmp_path / family, family, "classification", num_labels)
    ref, _ = _reference(directory, "classification", [a for a, _ in PAIRS],
                        [b for _, b in PAIRS])
    model = CrossEncoder.from_pretrained(directory)
    assert model.family == family and model.num_labels == num_labels
    ours = model.predict(PAIRS, raw=True).reshape(len(PAIRS), -1)
    assert np.abs(ours - ref.numpy()).max() <= 1e-5
    saved = CrossEncoder.from_pretrained(model.save_pretrained(tmp_path / "saved"))
    np.testing.assert_array_equal(saved.predict(PAIRS, raw=True).reshape(len(PAIRS), -1), ours)
    again, _ = _reference(tmp_path / "saved", "classification", [a for a, _ in PAIRS],
                          [b for _, b in PAIRS])
    assert np.abs(again.numpy() - ours).max() <= 1e-5


MLM_FAMILIES = ["bert", "roberta", "xlm-roberta", "camembert", "electra", "distilbert", "mpnet",
                "nomic_bert", "gte", "modernbert"]


def test_every_family_with_a_masked_lm_class_in_transformers_has_a_head():
    """transformers' own list of *ForMaskedLM model types decides."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    from seqenc.checkpoint import FAMILIES
    from seqenc.heads import MLM_HEADS

    expected = {f.name for f in FAMILIES
                if any(t.replace("_", "-") in MODEL_FOR_MASKED_LM_MAPPING_NAMES
                       or t in MODEL_FOR_MASKED_LM_MAPPING_NAMES for t in f.model_types)}
    assert expected == set(MLM_HEADS) == set(MLM_FAMILIES)


@pytest.mark.parametrize("family", MLM_FAMILIES)
def test_masked_lm_logits_and_splade_vectors(tmp_path, family):
    directory = write_family_task_model(tmp_path / family, family, "mlm")
    ref, enc = _reference(directory, "mlm", TEXTS)
    keep = enc["attention_mask"].bool()
    model = SparseEncoder.from_pretrained(directory)
    ids = [row[m].tolist() for row, m in zip(enc["input_ids"], keep, strict=True)]
    ours, _ = model.logits_ids(ids)
    assert (ours[keep] - ref[keep]).abs().max().item() <= 1e-5
    formula = (torch.log1p(torch.relu(ref)) * keep.unsqueeze(-1)).amax(1).numpy()
    for vector, row in zip(model.encode(TEXTS), formula, strict=True):
        assert np.abs(vector.to_dense(model.vocab_size) - row).max() <= 1e-5
