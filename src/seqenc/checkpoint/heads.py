"""Task-head names of each family in Hugging Face checkpoints (no .weight/.bias suffix).

The encoder's names live in families.py; these are the heads task models put beside it:

- sequence classification (``*ForSequenceClassification``): first token -> dense ->
  activation -> out. BERT: ``pooler.dense`` + ``classifier`` (tanh); RoBERTa/XLM-R/MPNet:
  ``classifier.dense`` + ``classifier.out_proj`` (tanh); ELECTRA the same names with GELU;
  DistilBERT ``pre_classifier`` + ``classifier`` (ReLU).
- masked LM (``*ForMaskedLM``): dense -> activation -> LayerNorm -> decoder tied to the token
  embeddings, plus an output bias. BERT ``cls.predictions.*``; RoBERTa/XLM-R/CamemBERT and
  MPNet ``lm_head.*``; DistilBERT ``vocab_transform``/``vocab_layer_norm``/``vocab_projector``;
  ELECTRA's generator ``generator_predictions.*`` + ``generator_lm_head`` (its head is
  embedding_size wide); ModernBERT ``head.dense``/``head.norm`` + ``decoder``; NomicBERT
  ``cls.predictions.transform.dense``/``layer_norm``; GTE ``lm_head.dense``/``norm`` (bias on
  the decoder; transformers calls the norm ``layer_norm`` in memory, ``norm`` in files).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .configs import ACTIVATIONS, CheckpointError


@dataclass(frozen=True)
class ClassifierNames:
    """A family's sequence-classification head."""

    dense: str
    out: str
    activation: str  # tanh | gelu | relu
    dropout_before_dense: bool  # RoBERTa drops out the first token before its dense layer


# NomicBERT's head uses hidden_act, which is SwiGLU's "silu" there.
_HEAD_ACTIVATIONS = {**ACTIVATIONS, "silu": "silu", "swish": "silu"}


def _all_biases(config: dict[str, Any]) -> tuple[bool, bool, bool]:
    return True, True, True


@dataclass(frozen=True)
class MaskedLMNames:
    """A family's masked-LM head. The decoder weight is the token embedding table unless
    config.json says ``tie_word_embeddings: false``."""

    dense: str
    norm: str
    decoder: str
    bias: str | None = None  # the output bias kept apart from the decoder's (BERT, RoBERTa)
    activation_key: str | None = None  # config.json field naming the activation; None: GELU
    # config.json -> whether the dense layer, the LayerNorm and the output have biases
    biases: Callable[[dict[str, Any]], tuple[bool, bool, bool]] = field(default=_all_biases)

    def activation(self, config: dict[str, Any]) -> str:
        """Our name of the head's activation (transformers hard-codes GELU for RoBERTa's,
        MPNet's and ELECTRA's heads, whatever hidden_act says)."""
        if self.activation_key is None:
            return "gelu"
        name = config.get(self.activation_key, "gelu")
        if name not in _HEAD_ACTIVATIONS:
            raise CheckpointError(f"config.json: {self.activation_key} {name!r} is not supported "
                                  f"for the masked-LM head ({', '.join(_HEAD_ACTIVATIONS)})")
        return _HEAD_ACTIVATIONS[name]


_ROBERTA_CLASSIFIER = ClassifierNames("classifier.dense", "classifier.out_proj", "tanh", True)
CLASSIFIER_HEADS: dict[str, ClassifierNames] = {
    "bert": ClassifierNames("pooler.dense", "classifier", "tanh", False),
    "roberta": _ROBERTA_CLASSIFIER,
    "xlm-roberta": _ROBERTA_CLASSIFIER,
    "camembert": _ROBERTA_CLASSIFIER,
    "electra": ClassifierNames("classifier.dense", "classifier.out_proj", "gelu", True),
    "distilbert": ClassifierNames("pre_classifier", "classifier", "relu", False),
    "mpnet": _ROBERTA_CLASSIFIER,
}

_ROBERTA_MLM = MaskedLMNames("lm_head.dense", "lm_head.layer_norm", "lm_head.decoder",
                             bias="lm_head.bias")
MLM_HEADS: dict[str, MaskedLMNames] = {
    "bert": MaskedLMNames("cls.predictions.transform.dense",
                          "cls.predictions.transform.LayerNorm", "cls.predictions.decoder",
                          bias="cls.predictions.bias", activation_key="hidden_act"),
    "roberta": _ROBERTA_MLM,
    "xlm-roberta": _ROBERTA_MLM,
    "camembert": _ROBERTA_MLM,
    "mpnet": _ROBERTA_MLM,
    "electra": MaskedLMNames("generator_predictions.dense", "generator_predictions.LayerNorm",
                             "generator_lm_head"),
    "distilbert": MaskedLMNames("vocab_transform", "vocab_layer_norm", "vocab_projector",
                                activation_key="activation"),
    "nomic_bert": MaskedLMNames("cls.predictions.transform.dense",
                                "cls.predictions.transform.layer_norm", "cls.predictions.decoder",
                                bias="cls.predictions.bias", activation_key="hidden_act"),
    "gte": MaskedLMNames("lm_head.dense", "lm_head.norm", "lm_head.decoder"),  # on disk
    "modernbert": MaskedLMNames(
        "head.dense", "head.norm", "decoder", activation_key="classifier_activation",
        biases=lambda c: (bool(c.get("classifier_bias", False)),
                          bool(c.get("norm_bias", False)), bool(c.get("decoder_bias", True)))),
}


def classifier_names(family: str, where: object) -> ClassifierNames:
    if family not in CLASSIFIER_HEADS:
        raise CheckpointError(f"{where}: no sequence-classification head is known for "
                              f"model_type {family!r} (known: {', '.join(CLASSIFIER_HEADS)})")
    return CLASSIFIER_HEADS[family]


def mlm_names(family: str, where: object) -> MaskedLMNames:
    if family not in MLM_HEADS:
        raise CheckpointError(f"{where}: no masked-LM head is known for model_type {family!r} "
                              f"(known: {', '.join(MLM_HEADS)})")
    return MLM_HEADS[family]
